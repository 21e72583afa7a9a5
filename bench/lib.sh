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

# Installs the Debian packages of a benchmark's peers and tools that are
# missing, before the sandbox is entered (apt writes the host's /var/lib).
# Says which could not be installed and returns 1; the caller decides
# whether to go on without them (a peer is skipped, and the script says so).
install_missing() {
  [ -z "${NSNET_BENCH_INNER:-}" ] || return 0
  local need=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [ ${#need[@]} -gt 0 ] || return 0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null && return 0
  echo "$(basename "$0"): could not install ${need[*]}" >&2
  return 1
}

# Median wall time in ns of each command (one string each, no shell
# syntax), one line per command. Each process is spawned the way a runtime
# spawns a plugin (hyperfine -N: posix_spawn, no shell); a shell's fork of
# itself costs about 1 ms on the development VM, more than some commands
# measured here. Without hyperfine: a shell loop, and a note on stderr.
spawn_times() {
  local runs=${NSNET_BENCH_RUNS:-30} c t0 t1 i
  if command -v hyperfine >/dev/null; then
    hyperfine -N -w 3 -r "$runs" --export-csv "$tmp/spawn.csv" "$@" >/dev/null 2>&1
    awk -F, 'NR > 1 { printf "%d\n", $4 * 1e9 }' "$tmp/spawn.csv"
    return
  fi
  echo "hyperfine not installed: timed from a shell loop (adds a shell fork)" >&2
  for c in "$@"; do
    local times=()
    for i in $(seq "$runs"); do
      t0=$(now); $c >/dev/null 2>&1; t1=$(now); times+=($((t1 - t0)))
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
  done
}

# The overlay benchmarks' world: hosts h1..hN (network namespaces) on an
# underlay bridge `ul` (198.51.100.N/24), one etcd member on the sandbox's
# end of it at $ETCD (its pid added to the caller's `pids`), and `h I CMD`
# to run a command as host I.
overlay_world() {
  local i
  ip link add ul address 02:00:00:00:00:fe type bridge && ip link set ul up && ip addr add 198.51.100.254/24 dev ul
  for i in $(seq "$1"); do
    ip netns add h$i
    ip link add h${i}u type veth peer name eth0 netns h$i
    ip link set h${i}u master ul up
    ip -n h$i link set lo up
    ip -n h$i addr add 198.51.100.$i/24 dev eth0 && ip -n h$i link set eth0 up
  done
  mkdir -p /run/etcd-data
  etcd --name e1 --data-dir /run/etcd-data --listen-client-urls $ETCD --advertise-client-urls $ETCD \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster e1=http://127.0.0.1:2380 >/run/etcd.log 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -s -m 1 $ETCD/health | grep -q true && break; sleep 0.1; done
}
h() { local i=$1; shift; NSNET_STATE_DIR=/run/nsnet-h$i nsenter --net=/run/netns/h$i "$@"; }
