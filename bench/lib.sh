# Shared by the benchmarks: re-runs the calling script inside a private
# sandbox (fresh network, mount and PID namespaces, tmpfs /run, its own
# /proc) with a release build of nsnet in $NSNET. The host is untouched,
# and whatever the script starts (etcd, agents, DNS servers, aardvark-dns)
# dies with it, however it ends: the PID namespace goes when the script,
# its first process, exits or is killed.
#   . "$(dirname "$0")/lib.sh"; enter_sandbox "$@"
enter_sandbox() {
  if [ -z "${NSNET_BENCH_INNER:-}" ]; then
    [ "$(id -u)" = 0 ] || { echo "$(basename "$0"): run as root" >&2; exit 2; }
    cd "$(dirname "$0")/.."
    cargo build --release --quiet
    export NSNET_BENCH_INNER=1 NSNET="$PWD/target/release/nsnet"
    exec unshare --net --mount --pid --fork --kill-child --mount-proc \
      --propagation private "$0" "$@"
  fi
  mount -t tmpfs bench /run
  mkdir -p /run/netns /run/nsnet
  ip link set lo up
}

now() { date +%s%N; }
