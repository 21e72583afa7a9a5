#!/usr/bin/env bash
# What an nsnet network costs Docker, against Docker's own bridge driver on
# the same daemon: `docker run --rm --network X bb true`, `docker network
# create` + `rm`, and `docker network connect` + `disconnect` of a running
# container, with X an nsnet network (`nsnet docker-plugin`, release build)
# and X a Docker bridge network, alternating, medians of N (default 30).
# Docker's default bridge is printed too. Goal: ≤ 1.0× (nsnet's network
# costs Docker no more than its own bridge driver).
#
# dockerd, containerd, the plugin and the containers run inside the
# benchmark's sandbox (bench/lib.sh), with /var/lib/docker on a tmpfs and
# a cgroup parent of their own, removed at the end (cgroupfs is shared).
#   usage: bench/docker.sh [N]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if [ -z "${NSNET_BENCH_INNER:-}" ]; then
  install_missing docker.io containerd runc busybox-static iptables || exit 1
  export NSNET_BENCH_CG=nsnet-bench-docker-$$
fi
enter_sandbox "$@"
N=${1:-30}
CG=$NSNET_BENCH_CG
tmp=$(mktemp -d /run/bench-docker.XXXXXX)
export DOCKER_HOST=unix:///run/docker.sock DOCKER_CONFIG=$tmp/cli
D() { /usr/bin/docker "$@"; }
cleanup() {
  D rm -f $(D ps -aq) >/dev/null 2>&1 || true
  [ -n "${dockerd:-}" ] && kill "$dockerd" 2>/dev/null && sleep 1
  for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [ -d "$root/$CG" ] && find "$root/$CG" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}
trap cleanup EXIT

printf 'nameserver 127.0.0.1\n' >/etc/resolv.conf
mkdir -p /var/lib/docker /run/containerd /var/lib/containerd /run/docker/plugins
mount -t tmpfs -o mode=711 bench-docker /var/lib/docker
printf 'version = 2\nroot = "/var/lib/containerd"\nstate = "/run/containerd"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "/run/containerd/containerd.sock"\n' >"$tmp/containerd.toml"
containerd --config "$tmp/containerd.toml" >"$tmp/containerd.log" 2>&1 &
for _ in $(seq 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
"$NSNET" docker-plugin 2>"$tmp/plugin.log" &
dockerd --containerd /run/containerd/containerd.sock --data-root /var/lib/docker \
  --exec-root /run/docker -H unix:///run/docker.sock --storage-driver overlay2 \
  --cgroup-parent "/$CG" --iptables=true --dns 127.0.0.1 >"$tmp/dockerd.log" 2>&1 &
dockerd=$!
for _ in $(seq 300); do D version >/dev/null 2>&1 && break; sleep 0.1; done
r=$tmp/rootfs; mkdir -p "$r/bin"; cp /bin/busybox "$r/bin/"
for a in true sleep sh; do ln -s busybox "$r/bin/$a"; done
tar -C "$r" -cf "$tmp/rootfs.tar" . && D import "$tmp/rootfs.tar" bb >/dev/null

D network create -d nsnet --subnet 10.60.0.0/24 xnsnet >/dev/null
D network create -d bridge --subnet 10.61.0.0/24 xbridge >/dev/null
D run -d --name cc bb sleep 3600 >/dev/null
# Warm-up: the first container of each network pays one-off costs.
for net in xnsnet xbridge bridge; do D run --rm --network "$net" bb true; done

ms() { awk -v t="$1" 'BEGIN { printf "%.1f", t / 1e6 }'; }
median() { sort -n | sed -n "$(((N + 1) / 2))p"; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo $((t1 - t0)); }

declare -A T
for i in $(seq "$N"); do
  for net in xnsnet xbridge bridge; do
    T[run-$net]+="$(timed D run --rm --network "$net" bb true) "
  done
  for drv in nsnet bridge; do
    octet=70; [ "$drv" = nsnet ] || octet=71
    T[create-$drv]+="$(timed D network create -d "$drv" --subnet "10.$octet.$i.0/24" "n$drv$i") "
    T[rm-$drv]+="$(timed D network rm "n$drv$i") "
  done
  for net in xnsnet xbridge; do
    T[connect-$net]+="$(timed D network connect "$net" cc) "
    T[disconnect-$net]+="$(timed D network disconnect "$net" cc) "
  done
done

med() { printf '%s\n' ${T[$1]} | median; }
row() { # label, nsnet key, bridge key
  local a b; a=$(med "$2"); b=$(med "$3")
  printf '%-34s %9s ms %9s ms   %5s×\n' "$1" "$(ms "$a")" "$(ms "$b")" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
}
echo "Docker $(D version --format '{{.Server.Version}}'), medians of $N, alternating"
printf '%-34s %12s %12s   %6s\n' "" "nsnet" "bridge" "ratio"
row "docker run --rm --network X true" run-xnsnet run-xbridge
row "docker network create" create-nsnet create-bridge
row "docker network rm" rm-nsnet rm-bridge
row "docker network connect" connect-xnsnet connect-xbridge
row "docker network disconnect" disconnect-xnsnet disconnect-xbridge
printf '%-34s %9s ms (Docker'"'"'s default bridge)\n' "docker run --rm true" "$(ms "$(med run-bridge)")"
