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
    # The executable as installed (README): static, see scripts/static-build.
    . scripts/static-build
    cargo build --release --quiet --target "$NSNET_TARGET"
    export NSNET_BENCH_INNER=1 NSNET="$PWD/target/$NSNET_TARGET/release/nsnet"
    exec unshare --net --mount --pid --fork --kill-child --mount-proc \
      --propagation private "$0" "$@"
  fi
  # Nothing a benchmark writes may reach the host: tmpfs over /run and
  # /dev/shm, /etc and /var/lib as overlays whose upper layer lives in that
  # tmpfs (resolv.conf files under /etc/netns, podman and CNI state).
  mount -t tmpfs -o mode=755 bench /run
  mount -t tmpfs bench /dev/shm
  local d
  for d in etc varlib; do mkdir -p "/run/.bench/$d/up" "/run/.bench/$d/work"; done
  mount -t overlay bench-etc -o lowerdir=/etc,upperdir=/run/.bench/etc/up,workdir=/run/.bench/etc/work /etc
  mount -t overlay bench-varlib \
    -o lowerdir=/var/lib,upperdir=/run/.bench/varlib/up,workdir=/run/.bench/varlib/work /var/lib
  mkdir -p /etc/netns /run/netns /run/nsnet
  mount -t tmpfs bench /etc/netns
  ip link set lo up
}

now() { date +%s%N; }
