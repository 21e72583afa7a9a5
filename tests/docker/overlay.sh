#!/usr/bin/env bash
# Two Docker hosts on one nsnet overlay network, without Swarm. Run by
# tests/docker.rs inside the test's sandbox, whose namespace is the underlay:
# a bridge ul0 (192.0.2.1/24, documentation range) with etcd on it. Each
# simulated host is a child with namespaces of its own (network, mount, pid)
# and private tmpfs over /run, /var/lib/docker, /var/lib/containerd and
# /etc/netns; it runs containerd, dockerd, `nsnet docker-plugin` and
# `nsnet agent`, and has one link to the underlay (192.0.2.1N/24).
#   usage: overlay.sh NSNET_BINARY
set -euo pipefail
if [ -z "${NSNET_OVERLAY_INNER:-}" ]; then
  export NSNET_OVERLAY_INNER=1
  export NSNET_DOCKER_CG=nsnet-docker-ov-$$
  exec unshare --pid --fork --kill-child --mount-proc "$0" "$@"
fi
NSNET=$1
SELF=$(readlink -f "$0")
# Shared by the hosts (each has a /run of its own): the sandbox's /var/lib overlay.
W=${NSNET_OVERLAY_W:-$(mktemp -d /var/lib/nsnet-docker-ov.XXXXXX)}
CG=$NSNET_DOCKER_CG
DOCKER=/usr/bin/docker
alive() { grep -qs '^State:[[:space:]]*[^Z[:space:]]' "/proc/$1/status"; }
step() { echo "STEP $*"; }

# --- inside one simulated host: $2 name, $3 its underlay address --------------------
if [ "${2:-}" = __host ]; then
  NAME=$3 ADDR=$4
  mount -t tmpfs -o mode=755 "host-$NAME" /run
  mkdir -p /run/netns /run/nsnet /run/docker/plugins /run/containerd /var/lib/docker /var/lib/containerd
  mount -t tmpfs -o mode=711 "host-$NAME-docker" /var/lib/docker
  mount -t tmpfs "host-$NAME-containerd" /var/lib/containerd
  mount -t tmpfs "host-$NAME-netns" /etc/netns
  ip link set lo up
  for _ in $(seq 100); do ip link show eth0 >/dev/null 2>&1 && break; sleep 0.05; done
  ip addr add "$ADDR/24" dev eth0; ip link set eth0 up
  H=$W/$NAME; mkdir -p "$H"
  cat >"$H/containerd.toml" <<'EOF'
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "/run/containerd/containerd.sock"
EOF
  containerd --config "$H/containerd.toml" >"$H/containerd.log" 2>&1 </dev/null &
  for _ in $(seq 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
  "$NSNET" docker-plugin >"$H/plugin.log" 2>&1 </dev/null &
  "$NSNET" agent >"$H/agent.log" 2>&1 </dev/null &
  dockerd --containerd /run/containerd/containerd.sock --data-root /var/lib/docker \
    --exec-root /run/docker --pidfile /run/docker.pid -H unix:///run/docker.sock \
    --storage-driver overlay2 --cgroup-parent "/$CG-$NAME" --iptables=true --dns 127.0.0.1 \
    >"$H/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 300); do $DOCKER -H unix:///run/docker.sock version >/dev/null 2>&1 && break; sleep 0.1; done
  touch "$H/ready"
  wait
  exit 0
fi

cleanup() {
  for h in A B; do
    [ -f "$W/$h.pid" ] && on "$h" sh -c "$DOCKER rm -f \$($DOCKER ps -aq) >/dev/null 2>&1" || true
  done
  for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
    for d in "$root/$CG"-*; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
  done
}
trap cleanup EXIT
fail() {
  echo "FAIL $*"
  for h in A B; do echo "--- $h plugin"; tail -15 "$W/$h/plugin.log"; echo "--- $h agent"; tail -8 "$W/$h/agent.log"; done
  exit 1
}
# Runs a command on host $1 (its network, mounts and pids).
on() { local h=$1; shift; nsenter -t "$(cat "$W/$h.pid")" -n -m -p -- env DOCKER_HOST=unix:///run/docker.sock DOCKER_CONFIG=$W/$h/cli "$@"; }
D() { local h=$1; shift; on "$h" timeout 60 $DOCKER "$@"; }

printf 'nameserver 127.0.0.1\n' >/etc/resolv.conf
ip link add ul0 type bridge; ip addr add 192.0.2.1/24 dev ul0; ip link set ul0 up
etcd --name e1 --data-dir "$W/etcd" --listen-client-urls http://192.0.2.1:2379 \
  --advertise-client-urls http://192.0.2.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster e1=http://127.0.0.1:2380 \
  >"$W/etcd.log" 2>&1 &
for _ in $(seq 100); do curl -s -m 1 http://192.0.2.1:2379/health | grep -q true && break; sleep 0.1; done

start_host() { # $1 name, $2 underlay address
  unshare --net --mount --pid --fork --kill-child --mount-proc --propagation private \
    "$SELF" "$NSNET" __host "$1" "$2" &
  local pid=$!
  # The child of unshare is the host's PID 1: its namespaces are the host's.
  for _ in $(seq 50); do
    local inner; inner=$(pgrep -P "$pid" | head -1 || true)
    [ -n "$inner" ] && break; sleep 0.05
  done
  echo "$inner" >"$W/$1.pid"
  ip link add "ul-$1" type veth peer name eth0 netns "$inner"
  ip link set "ul-$1" master ul0 up
  for _ in $(seq 300); do [ -f "$W/$1/ready" ] && return 0; sleep 0.1; done
  fail "host $1 did not start"
}
export NSNET_OVERLAY_W=$W
start_host A 192.0.2.11
start_host B 192.0.2.12
step hosts-up "$(D A version --format '{{.Server.Version}}')"

# The image, on both hosts.
r=$W/rootfs; mkdir -p "$r"/{bin,etc,proc,sys,dev,tmp,root,www}
cp /bin/busybox "$r/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
echo hello-from-bb >"$r/www/index.html"
tar --numeric-owner --owner=0 --group=0 -C "$r" -cf "$W/rootfs.tar" .
for h in A B; do D "$h" import "$W/rootfs.tar" bb:latest >/dev/null; done

for h in A B; do
  D "$h" network create -d nsnet --ipam-driver nsnet -o driver=overlay \
    -o etcd=http://192.0.2.1:2379 --subnet 10.200.0.0/16 ov >/dev/null || fail "network create on $h"
done
step overlay-created "$(on A "$NSNET" network ls | grep -c docker-10.200.0.0-16) $(on B "$NSNET" network ls | grep -c docker-10.200.0.0-16)"
D A run -d --name web --network ov bb httpd -f -p 80 -h /www >/dev/null
ipa=$(D A inspect -f '{{(index .NetworkSettings.Networks "ov").IPAddress}}' web)
D B run -d --name cli --network ov bb sleep 600 >/dev/null
ipb=$(D B inspect -f '{{(index .NetworkSettings.Networks "ov").IPAddress}}' cli)
[ "${ipa%.*}" != "${ipb%.*}" ] || fail "both hosts handed out from one host subnet: $ipa $ipb"
step host-subnets "$ipa $ipb"
ok=
for _ in $(seq 50); do
  D B exec cli ping -c1 -W1 "$ipa" >/dev/null 2>&1 && { ok=1; break; }
  sleep 0.2
done
[ -n "$ok" ] || fail "cli on B cannot ping web on A ($ipa)"
step ping-across-hosts
grep -q hello-from-bb <<<"$(D B exec cli sh -c "timeout 5 wget -q -O- http://$ipa/")" || fail "TCP across hosts"
step tcp-across-hosts
for h in A B; do on "$h" "$NSNET" check >/dev/null || fail "check on $h"; done
step check-clean
D A rm -f web >/dev/null; D B rm -f cli >/dev/null
for h in A B; do D "$h" network rm ov >/dev/null || fail "network rm on $h"; done
for h in A B; do [ "$(on "$h" "$NSNET" --json network ls)" = "[]" ] || fail "network left on $h"; done
step removed
