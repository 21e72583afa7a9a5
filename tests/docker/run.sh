#!/usr/bin/env bash
# A real Docker Engine (Debian's docker.io) as a client of `nsnet docker-plugin`.
# Run by tests/docker.rs inside the test's sandbox (fresh network namespace, private
# mounts, tmpfs /run and /dev/shm, overlays on /etc and /var/lib). This script adds a
# private pid namespace (containerd, dockerd, the plugin and the containers die with it),
# a tmpfs at /var/lib/docker (overlay2 cannot sit on the /var/lib overlay), and a cgroup
# parent of its own, removed at the end: cgroupfs is not namespaced. Docker's DNS
# upstream is 127.0.0.1, where nothing listens: no query leaves the sandbox.
#   usage: run.sh NSNET_BINARY [SCENARIO...]     scenarios: basic ipam restart faults bad lan
set -euo pipefail
if [ -z "${NSNET_DOCKER_INNER:-}" ]; then
  export NSNET_DOCKER_INNER=1
  # Named here, where $$ is a real PID: cgroupfs is shared by every sandbox.
  export NSNET_DOCKER_CG=nsnet-docker-test-$$
  exec unshare --pid --fork --kill-child --mount-proc "$0" "$@"
fi
NSNET=$1; shift
SCENARIOS=${*:-basic ipam restart faults bad}
W=$(mktemp -d /run/nsnet-docker.XXXXXX)
CG=$NSNET_DOCKER_CG
DOCKER=/usr/bin/docker   # Debian's CLI (a newer static one may come first in PATH)
export DOCKER_HOST=unix:///run/docker.sock DOCKER_CONFIG=$W/cli
PLUGIN=; DOCKERD=; CONTAINERD=

alive() { grep -qs '^State:[[:space:]]*[^Z[:space:]]' "/proc/$1/status"; }
stop_pid() { # TERM, up to $2 s, then KILL
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq $((${2:-10} * 10))); do alive "$1" || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null; return 1
}
cleanup() {
  $DOCKER rm -f $($DOCKER ps -aq 2>/dev/null) >/dev/null 2>&1 || true
  stop_pid "$DOCKERD" 20 || true; stop_pid "$PLUGIN" 5 || true; stop_pid "$CONTAINERD" 10 || true
  for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [ -d "$root/$CG" ] && find "$root/$CG" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}
trap cleanup EXIT
D() { timeout 60 $DOCKER "$@"; }
step() { echo "STEP $*"; }
fail() { echo "FAIL $*"; echo "--- plugin log"; tail -30 "$W/plugin.log"; exit 1; }
# HTTP GET with bash alone (busybox-static's wget crashes with -T): the body.
http_get() {
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "GET /index.html HTTP/1.0\r\n\r\n" >&3 && cat <&3' _ "$1" "$2" |
    sed '1,/^\r\?$/d'
}
in_up() { ip netns exec up "$@"; }

start_containerd() {
  mkdir -p /run/containerd /var/lib/containerd
  cat >"$W/containerd.toml" <<'EOF'
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "/run/containerd/containerd.sock"
EOF
  containerd --config "$W/containerd.toml" >"$W/containerd.log" 2>&1 </dev/null &
  CONTAINERD=$!
  for _ in $(seq 100); do [ -S /run/containerd/containerd.sock ] && return 0; sleep 0.1; done
  fail "containerd did not start"
}
start_dockerd() {
  dockerd --containerd /run/containerd/containerd.sock --data-root /var/lib/docker \
    --exec-root /run/docker --pidfile /run/docker.pid -H unix:///run/docker.sock \
    --storage-driver overlay2 --cgroup-parent "/$CG" --iptables=true --dns 127.0.0.1 \
    >>"$W/dockerd.log" 2>&1 </dev/null &
  DOCKERD=$!
  for _ in $(seq 300); do
    $DOCKER version >/dev/null 2>&1 && return 0
    alive "$DOCKERD" || break
    sleep 0.1
  done
  tail -20 "$W/dockerd.log"; fail "dockerd did not start"
}
start_plugin() {
  "$NSNET" docker-plugin >>"$W/plugin.log" 2>&1 </dev/null &
  PLUGIN=$!
  for _ in $(seq 50); do [ -S /run/docker/plugins/nsnet.sock ] && return 0; sleep 0.1; done
  fail "the plugin did not start"
}
image() { # bb:latest from static busybox, one relative symlink per applet
  local r=$W/rootfs
  mkdir -p "$r"/{bin,etc,proc,sys,dev,tmp,root,www}
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  echo hello-from-bb >"$r/www/index.html"
  tar --numeric-owner --owner=0 --group=0 -C "$r" -cf "$W/rootfs.tar" .
  D import "$W/rootfs.tar" bb:latest >/dev/null
}
# Host links, but Docker's own and the containers' (docker0's veths come and go).
links() { ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -Ev '^(docker0|docker_gwbridge|veth.*)$' | sort | tr '\n' ' '; }
leaked() { # veths or attachments nsnet still has for Docker
  ip -o link | grep -E ' dkc[0-9a-f]+|ve-[0-9a-f]{12}' || true
}
check_clean() { "$NSNET" check >"$W/check.out" 2>&1 || { cat "$W/check.out"; fail "nsnet check: $1"; }; }
serving() { # waits (at most 5 s) until a process of container $1 listens on TCP port $2
  local pid; pid=$(D inspect -f '{{.State.Pid}}' "$1")
  for _ in $(seq 100); do
    [ -n "$(nsenter -t "$pid" -n ss -Hltn "sport = :$2")" ] && return
    sleep 0.05
  done
  fail "nothing listens on port $2 in container $1"
}
no_leak() { # waits (at most 5 s) for Docker's teardown, then asserts nothing leaked
  for _ in $(seq 100); do [ -z "$(leaked)" ] && return; sleep 0.05; done
  fail "$1 leaked: $(leaked)"
}

printf 'nameserver 127.0.0.1\n' >/etc/resolv.conf
mkdir -p /var/lib/docker /run/docker/plugins "$W/cli"
mount -t tmpfs -o mode=711 nsnet-docker /var/lib/docker
# The upstream: a namespace "up" (203.0.113.1) that is the host's default route.
ip netns add up
ip link add up0 type veth peer name eth0 netns up
ip addr add 203.0.113.2/24 dev up0; ip link set up0 up
in_up ip addr add 203.0.113.1/24 dev eth0; in_up ip link set eth0 up; in_up ip link set lo up
ip route add default via 203.0.113.1 dev up0
BEFORE=$(links)
start_containerd
start_plugin
start_dockerd
step dockerd "$($DOCKER version --format '{{.Server.Version}}')"
image

scenario_basic() {
  # The tutorial, with Docker containers.
  D network create -d nsnet --subnet 172.16.0.0/16 mydocker0 >/dev/null
  local id; id=$(D network inspect -f '{{.Id}}' mydocker0)
  # (Output is read whole before grep: with pipefail, a writer cut off by
  # grep -q would fail a pipeline, and turn a negative check into a pass.)
  local ls; ls=$("$NSNET" network ls)
  grep -q "dk-${id:0:12} .*docker:${id:0:12}" <<<"$ls" || fail "nsnet network ls lacks dk-${id:0:12}"
  local inspect; inspect=$("$NSNET" --json network inspect "dk-${id:0:12}")
  grep -q "\"id\": *\"$id\"" <<<"$inspect" || fail "inspect lacks Docker's ID"
  step network-created "dk-${id:0:12}"
  D run -d --name c1 --network mydocker0 bb sleep 600 >/dev/null
  local ip1; ip1=$(D inspect -f '{{(index .NetworkSettings.Networks "mydocker0").IPAddress}}' c1)
  D run --rm --name c2 --network mydocker0 bb sh -c "ping -c1 -W2 $ip1 && ping -c1 -W2 c1" >"$W/ping.out" 2>&1 ||
    { cat "$W/ping.out"; fail "c2 cannot ping c1"; }
  step ping-by-address-and-name "$ip1"
  D exec c1 ping -c1 -W2 203.0.113.1 >/dev/null || fail "c1 cannot reach the upstream"
  step upstream-through-nat
  grep -q "default via 172.16.0.1 dev eth0" <<<"$(D exec c1 ip route)" || fail "no default route via nsnet's gateway"
  ! grep -q docker_gwbridge <<<"$(D network ls --format '{{.Name}}')" || fail "docker_gwbridge was made"
  step gateway-is-nsnet

  # Published ports, with dockerd's FORWARD policy DROP in place.
  grep -q -- '-P FORWARD DROP' <<<"$(iptables -S FORWARD)" || fail "dockerd did not set FORWARD DROP"
  D run -d --name web --network mydocker0 -p 8080:80 bb httpd -f -p 80 -h /www >/dev/null
  local webip; webip=$(D inspect -f '{{(index .NetworkSettings.Networks "mydocker0").IPAddress}}' web)
  serving web 80
  [ "$(in_up bash -c "$(declare -f http_get); http_get 203.0.113.2 8080")" = hello-from-bb ] || fail "8080 from outside"
  [ "$(http_get 127.0.0.1 8080)" = hello-from-bb ] || fail "8080 from the host (127.0.0.1)"
  [ "$(http_get 203.0.113.2 8080)" = hello-from-bb ] || fail "8080 from the host (its address)"
  grep -q hello-from-bb <<<"$(D exec c1 sh -c 'timeout 5 wget -q -O- http://203.0.113.2:8080/')" || fail "8080 by hairpin"
  step published-port-reached
  in_up ip route add 172.16.0.0/16 via 203.0.113.2
  if grep -q hello <<<"$(in_up bash -c "$(declare -f http_get); http_get $webip 80" 2>/dev/null)"; then
    fail "the container's unpublished port 80 is reachable from the upstream"
  fi
  in_up ip route del 172.16.0.0/16 via 203.0.113.2
  step direct-access-blocked
  # Published on 127.0.0.1: the host only.
  D run -d --name lo8 --network mydocker0 -p 127.0.0.1:8081:80 bb httpd -f -p 80 -h /www >/dev/null
  serving lo8 80
  [ "$(http_get 127.0.0.1 8081)" = hello-from-bb ] || fail "127.0.0.1:8081 from the host"
  if grep -q hello <<<"$(in_up bash -c "$(declare -f http_get); http_get 203.0.113.2 8081" 2>/dev/null)"; then
    fail "a port published on 127.0.0.1 is reachable from outside"
  fi
  step loopback-port-host-only
  # nsnet's networks and Docker's own bridge networks do not meet.
  D network create dockerbr >/dev/null
  D run -d --name d1 --network dockerbr bb httpd -f -p 80 -h /www >/dev/null
  local dip; dip=$(D inspect -f '{{(index .NetworkSettings.Networks "dockerbr").IPAddress}}' d1)
  ! D exec c1 ping -c1 -W1 "$dip" >/dev/null 2>&1 || fail "nsnet's c1 reaches Docker's d1"
  ! D exec d1 ping -c1 -W1 "$ip1" >/dev/null 2>&1 || fail "Docker's d1 reaches nsnet's c1"
  ! D exec d1 ping -c1 -W1 "$(D inspect -f '{{(index .NetworkSettings.Networks "mydocker0").IPAddress}}' web)" \
    >/dev/null 2>&1 || fail "Docker's d1 reaches nsnet's web"
  grep -q hello-from-bb <<<"$(D exec d1 sh -c 'timeout 5 wget -q -O- http://203.0.113.2:8080/')" ||
    fail "Docker's d1 cannot use nsnet's published port"
  step isolated-from-docker-networks
  D rm -f lo8 d1 >/dev/null; D network rm dockerbr >/dev/null
  check_clean "with containers"
  step check-clean
  D rm -f web >/dev/null
  ! grep -q 8080 <<<"$(nft list ruleset 2>/dev/null)" || fail "port 8080 left in nftables"
  D rm -f c1 >/dev/null
  D network rm mydocker0 >/dev/null
  [ -z "$(leaked)" ] || fail "leaked: $(leaked)"
  [ "$("$NSNET" --json network ls)" = "[]" ] || fail "network left: $("$NSNET" network ls)"
  [ "$(links)" = "$BEFORE" ] || fail "host links changed: $(links) (before: $BEFORE)"
  step rm-host-as-before
}

scenario_restart() {
  D network create -d nsnet --subnet 10.88.0.0/24 rnet >/dev/null
  D run -d --name r1 --network rnet bb sleep 600 >/dev/null
  stop_pid "$PLUGIN" 5; start_plugin
  D run --rm --network rnet bb ping -c1 -W2 r1 >/dev/null || fail "after a plugin restart"
  # A second driver on the socket of a live one is refused, and leaves it.
  if second=$("$NSNET" docker-plugin 2>&1 </dev/null); then fail "a second driver started"; fi
  case $second in *"another driver answers"*) ;; *) fail "second driver: $second" ;; esac
  D run --rm --network rnet bb ping -c1 -W2 r1 >/dev/null || fail "the second driver broke the first"
  step plugin-restart
  stop_pid "$DOCKERD" 30; start_dockerd
  [ -z "$(leaked)" ] || fail "dockerd stop leaked: $(leaked)"
  D start r1 >/dev/null
  D run --rm --network rnet bb ping -c1 -W2 r1 >/dev/null || fail "after a dockerd restart"
  check_clean "after restarts"
  step dockerd-restart
  # A reboot: dockerd keeps its networks, nsnet's record (a tmpfs) and the
  # kernel's objects are gone. The driver makes the network again.
  stop_pid "$DOCKERD" 30; stop_pid "$PLUGIN" 5
  local br; br=$("$NSNET" network ls | awk '/docker:/ {print $2}')
  ip link del "$br"; nft delete table inet nsnet; rm -rf /run/nsnet/*
  iptables -D DOCKER-USER -j NSNET-DOCKER; iptables -F NSNET-DOCKER; iptables -X NSNET-DOCKER
  [ "$("$NSNET" --json network ls)" = "[]" ] || fail "the record outlived the simulated reboot"
  start_plugin; start_dockerd
  D start r1 >/dev/null || fail "docker start after a reboot"
  D run --rm --network rnet bb ping -c1 -W2 r1 >/dev/null || fail "ping after a reboot"
  grep -q "made again from the request Docker sent" "$W/plugin.log" || fail "no restore logged"
  check_clean "after a reboot"
  step reboot-network-made-again
  D rm -f r1 >/dev/null; D network rm rnet >/dev/null
  [ -z "$(leaked)" ] || fail "leaked: $(leaked)"
}

scenario_faults() {
  D network create -d nsnet --subnet 10.89.0.0/24 fnet >/dev/null
  # A container killed with kill -9: Docker leaves, nsnet forgets.
  D run -d --name k9 --network fnet bb sleep 600 >/dev/null
  kill -9 "$(D inspect -f '{{.State.Pid}}' k9)"
  for _ in $(seq 50); do [ "$(D inspect -f '{{.State.Running}}' k9)" = false ] && break; sleep 0.1; done
  no_leak "kill -9 of a container"
  check_clean "after kill -9 of a container"
  step container-kill-9
  # The plugin killed with kill -9 in the middle of a docker run: the run
  # is retried by Docker against the restarted plugin, nothing leaks.
  D run -d --name k8 --network fnet bb sleep 600 >/dev/null &
  local run=$!
  sleep 0.05
  kill -9 "$PLUGIN"; start_plugin
  wait "$run" || true
  D rm -f k8 >/dev/null 2>&1 || true
  sleep 0.3
  "$NSNET" gc >/dev/null
  [ -z "$(leaked)" ] || fail "kill -9 of the plugin leaked: $(leaked)"
  check_clean "after kill -9 of the plugin"
  step plugin-kill-9
  D rm -f k9 >/dev/null; D network rm fnet >/dev/null
}

scenario_bad() {
  local out
  out=$(D network create -d nsnet --subnet 10.90.0.0/24 -o colour=red b1 2>&1) && fail "unknown option taken"
  echo "$out" | grep -q "unknown options colour" || fail "unknown option message: $out"
  step unknown-option-refused
  "$NSNET" network create own --subnet 10.91.0.0/24 >/dev/null
  out=$(D network create -d nsnet --subnet 10.91.0.0/24 b2 2>&1) && fail "overlapping subnet taken"
  echo "$out" | grep -qi "overlap" || fail "overlap message: $out"
  out=$(D network create -d nsnet --subnet 10.92.0.0/24 -o bridge=own b3 2>&1) && fail "second network on bridge own taken"
  echo "$out" | grep -q "own" || fail "bridge message: $out"
  step bad-input-named
  D network create -d nsnet --subnet 10.93.0.0/24 b4 >/dev/null
  local id; id=$(D network inspect -f '{{.Id}}' b4)
  out=$("$NSNET" network rm "dk-${id:0:12}" 2>&1) && fail "nsnet removed a Docker network"
  echo "$out" | grep -q "docker network rm" || fail "ownership message: $out"
  D network rm b4 >/dev/null
  "$NSNET" network rm own >/dev/null
  step docker-owned-network-kept
}

scenario_ipam() {
  # nsnet's IPAM: Docker's containers and nsnet's own namespaces never get
  # the same address.
  D network create -d nsnet --ipam-driver nsnet --subnet 10.94.0.0/24 inet >/dev/null
  local id; id=$(D network inspect -f '{{.Id}}' inet)
  D run -d --name i1 --network inet bb sleep 600 >/dev/null
  grep -q "default via 10.94.0.1 dev eth0" <<<"$(D exec i1 ip route)" || fail "gateway of the nsnet pool"
  ip netns add own1
  "$NSNET" connect "dk-${id:0:12}" own1 >/dev/null
  D run -d --name i2 --network inet bb sleep 600 >/dev/null
  local a1 a2 a3
  a1=$(D inspect -f '{{(index .NetworkSettings.Networks "inet").IPAddress}}' i1)
  a2=$(D inspect -f '{{(index .NetworkSettings.Networks "inet").IPAddress}}' i2)
  a3=$(ip -n own1 -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
  [ "$a1" = 10.94.0.2 ] && [ "$a3" = 10.94.0.3 ] && [ "$a2" = 10.94.0.4 ] || fail "addresses $a1 $a3 $a2"
  D exec i2 ping -c1 -W2 "$a3" >/dev/null || fail "i2 cannot reach nsnet's own namespace"
  step ipam-no-address-twice "$a1 $a3 $a2"
  local out
  out=$(D network create -d nsnet --ipam-driver nsnet --subnet 10.94.0.0/16 clash 2>&1) && fail "overlapping pool taken"
  echo "$out" | grep -q "overlaps" || fail "pool overlap message: $out"
  step ipam-refusals-named
  # --ip-range: Docker's own addresses come from it, one asked for may be
  # anywhere in the subnet (as with Docker's IPAM).
  D network create -d nsnet --ipam-driver nsnet --subnet 10.95.0.0/24 --ip-range 10.95.0.128/25 rng >/dev/null
  D run -d --name r1 --network rng bb sleep 600 >/dev/null
  D run -d --name r2 --network rng --ip 10.95.0.9 bb sleep 600 >/dev/null
  local r1 r2
  r1=$(D inspect -f '{{(index .NetworkSettings.Networks "rng").IPAddress}}' r1)
  r2=$(D inspect -f '{{(index .NetworkSettings.Networks "rng").IPAddress}}' r2)
  [ "$r1" = 10.95.0.128 ] && [ "$r2" = 10.95.0.9 ] || fail "--ip-range addresses $r1 $r2"
  D exec r1 ping -c1 -W5 10.95.0.9 >/dev/null || fail "r1 cannot reach r2"
  D rm -f r1 r2 >/dev/null
  D network rm rng >/dev/null
  step ipam-ip-range "$r1 $r2"
  # connect/disconnect of a running container; MTU; IPv6; internal.
  D network create -d nsnet --subnet 10.96.0.0/24 --ipv6 --subnet fd00:96::/64 -o mtu=1400 six >/dev/null
  D network connect six i1
  grep -q "mtu 1400" <<<"$(D exec i1 ip -o link show eth1)" || fail "MTU 1400 on eth1"
  grep -q "fd00:96::" <<<"$(D exec i1 ip -o -6 addr show eth1)" || fail "no IPv6 address on eth1"
  D network disconnect six i1
  [ -z "$(D exec i1 ip -o link show eth1 2>/dev/null)" ] || fail "eth1 still in i1"
  step connect-disconnect-mtu-ipv6
  D network create -d nsnet --internal --subnet 10.97.0.0/24 closed >/dev/null
  D run --rm --network closed bb sh -c 'ip route' >"$W/internal.out"
  ! grep -q default "$W/internal.out" || fail "an internal network got a default route"
  step internal-no-gateway
  D rm -f i1 i2 >/dev/null
  "$NSNET" disconnect "dk-${id:0:12}" own1 >/dev/null
  D network rm inet six closed >/dev/null
  # The pool was given back: the same subnet can be asked for again.
  D network create -d nsnet --ipam-driver nsnet --subnet 10.94.0.0/24 inet2 >/dev/null
  D network rm inet2 >/dev/null
  [ -z "$(leaked)" ] || fail "leaked: $(leaked)"
  check_clean "after the IPAM scenario"
  step ipam-released
}

scenario_lan() {
  # Containers straight on a LAN (nsnet's macvlan): a LAN bridge in namespace "lan"
  # with its router at 192.0.2.1 and another machine at 192.0.2.2, which nsnet's
  # IPAM finds by ARP probe and skips; lan0 is the parent.
  "$(dirname "$0")/../common/simulated-lan.sh" 192.0.2.2 192.0.2.64
  D network create -d nsnet --ipam-driver nsnet --subnet 192.0.2.0/24 --gateway 192.0.2.1 \
    --ip-range 192.0.2.64/26 -o driver=macvlan -o parent=lan0 home >/dev/null
  step lan-network-created
  local id; id=$(D network inspect -f '{{.Id}}' home)
  grep -q '"192.0.2.64/26"' <<<"$("$NSNET" --json network inspect "dk-${id:0:12}")" ||
    fail "the network does not show Docker's --ip-range"
  D run -d --name m1 --network home bb sleep 600 >/dev/null
  local a1; a1=$(D inspect -f '{{(index .NetworkSettings.Networks "home").IPAddress}}' m1)
  [ "$a1" = 192.0.2.65 ] || fail "m1 got $a1 (192.0.2.64 answers on the LAN)"
  step lan-address-probed "$a1"
  grep -q "default via 192.0.2.1 dev eth0" <<<"$(D exec m1 ip route)" || fail "no default route via the LAN's router"
  D exec m1 ping -c1 -W2 192.0.2.2 >/dev/null || fail "m1 cannot reach the other machine"
  D exec m1 ping -c1 -W2 192.0.2.1 >/dev/null || fail "m1 cannot reach the router"
  local mac1; mac1=$(D exec m1 cat /sys/class/net/eth0/address)
  grep -q "$mac1" <<<"$(ip -n lan neigh show 192.0.2.65)" || fail "the LAN does not see m1's MAC $mac1"
  step lan-reached
  local out
  out=$(D run --rm --network home -p 8090:80 bb true 2>&1) && fail "a published port on macvlan was taken"
  grep -q "publishes no ports" <<<"$out" || fail "publish message: $out"
  step lan-ports-refused
  check_clean "on the LAN"
  D rm -f m1 >/dev/null
  D network rm home >/dev/null
  [ -z "$(leaked)" ] || fail "leaked: $(leaked)"
  [ "$("$NSNET" --json network ls)" = "[]" ] || fail "network left: $("$NSNET" network ls)"
  ip link del lan0; ip netns del lan; ip netns del other
  [ "$(links)" = "$BEFORE" ] || fail "host links changed: $(links) (before: $BEFORE)"
  step lan-removed
}

for s in $SCENARIOS; do "scenario_$s"; done
stop_pid "$DOCKERD" 30; stop_pid "$PLUGIN" 5
[ ! -e /run/docker/plugins/nsnet.sock ] || fail "the plugin left its socket on SIGTERM"
step done
