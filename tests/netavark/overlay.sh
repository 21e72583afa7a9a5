#!/usr/bin/env bash
# podman's containers on two hosts on one nsnet overlay, through netavark 2.x.
# Run by tests/netavark.rs inside the test's sandbox, whose namespace is the
# underlay: a bridge ul0 (192.0.2.254/24) with etcd on it. A simulated host
# is a network namespace hN (192.0.2.N) with a state directory of its own,
# its `nsnet agent`, and netavark run in it; its containers are namespaces
# cN (the hosts share the sandbox's /run/netns, under different names).
#   usage: overlay.sh NSNET_BINARY NETAVARK_BINARY
set -euo pipefail
if [ -z "${NSNET_NETAVARK_INNER:-}" ]; then
  export NSNET_NETAVARK_INNER=1
  exec unshare --pid --fork --kill-child --mount-proc "$0" "$@"
fi
NSNET=$1 NETAVARK=$2
W=$(mktemp -d /run/nsnet-netavark-ov.XXXXXX)
mkdir -p "$W/plugins"
ln -s "$NSNET" "$W/plugins/nsnet"
step() { echo "STEP $*"; }
fail() { echo "FAIL $*"; for h in 1 2; do echo "--- agent $h"; tail -5 "$W/agent$h.log"; done; exit 1; }
# netavark on host $1, with that host's nsnet state.
na() {
  local h=$1; shift
  mkdir -p "$W/config$h"
  ip netns exec "h$h" env NSNET_STATE_DIR="$W/state$h" \
    "$NETAVARK" --config "$W/config$h" --rootless=false --plugin-directory "$W/plugins" "$@"
}

ip link add ul0 type bridge; ip addr add 192.0.2.254/24 dev ul0; ip link set ul0 up
etcd --name e1 --data-dir "$W/etcd" --listen-client-urls http://192.0.2.254:2379 \
  --advertise-client-urls http://192.0.2.254:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster e1=http://127.0.0.1:2380 \
  >"$W/etcd.log" 2>&1 &
for h in 1 2; do
  ip netns add "h$h"
  ip link add "ul$h" type veth peer name eth0 netns "h$h"
  ip link set "ul$h" master ul0 up
  ip -n "h$h" addr add "192.0.2.$h/24" dev eth0
  ip -n "h$h" link set eth0 up; ip -n "h$h" link set lo up
done
for _ in $(seq 100); do curl -s -m 1 http://192.0.2.254:2379/health | grep -q true && break; sleep 0.1; done
for h in 1 2; do
  ip netns exec "h$h" env NSNET_STATE_DIR="$W/state$h" "$NSNET" agent >"$W/agent$h.log" 2>&1 &
done

# podman network create -d nsnet --subnet 10.210.0.0/16 --opt driver=overlay --opt etcd=... ov
cat >"$W/create.json" <<EOF
{"network": {"name": "ov", "id": "$(printf 'ef%.0s' $(seq 32))", "driver": "nsnet",
             "ipv6_enabled": false, "internal": false, "dns_enabled": false,
             "subnets": [{"subnet": "10.210.0.0/16"}],
             "options": {"driver": "overlay", "etcd": "http://192.0.2.254:2379"}},
 "used": {"interfaces": [], "names": {}, "subnets": []},
 "options": {"subnet_pools": [], "default_interface_name": "podman", "check_used_subnets": true}}
EOF
na 1 create <"$W/create.json" >"$W/network.json" || { cat "$W/network.json"; fail "create"; }
grep -q '"driver": *"nsnet"' <<<"$(grep -A2 ipam_options "$W/network.json")" || fail "no own IPAM: $(cat "$W/network.json")"
step created
for h in 1 2; do
  ip netns add "c$h"
  cat >"$W/c$h.json" <<EOF
{"container_id": "$(printf '%064d' "$h")", "container_name": "c$h", "container_hostname": "c$h",
 "networks": {"ov": {"interface_name": "eth0"}},
 "network_info": {"ov": $(cat "$W/network.json")}, "port_mappings": null}
EOF
  na "$h" setup "/run/netns/c$h" <"$W/c$h.json" >"$W/c$h.out" || { cat "$W/c$h.out"; fail "setup on h$h"; }
done
a1=$(grep -o '"ipnet": *"[0-9./]*"' "$W/c1.out" | grep -o '10[0-9.]*' | head -1)
a2=$(grep -o '"ipnet": *"[0-9./]*"' "$W/c2.out" | grep -o '10[0-9.]*' | head -1)
[ -n "$a1" ] && [ -n "$a2" ] && [ "${a1%.*}" != "${a2%.*}" ] || fail "host subnets: '$a1' '$a2'"
step host-subnets "$a1 $a2"
ok=
for _ in $(seq 50); do ip netns exec c2 ping -c1 -W1 "$a1" >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
[ -n "$ok" ] || fail "c2 on h2 cannot ping c1 on h1"
step ping-across-hosts
for h in 1 2; do
  ip netns exec "h$h" env NSNET_STATE_DIR="$W/state$h" "$NSNET" check >/dev/null || fail "check on h$h"
done
step check-clean
for h in 1 2; do na "$h" teardown "/run/netns/c$h" <"$W/c$h.json" || fail "teardown on h$h"; done
for h in 1 2; do
  [ "$(ip netns exec "h$h" env NSNET_STATE_DIR="$W/state$h" "$NSNET" --json network ls)" = "[]" ] ||
    fail "the network outlived its last container on h$h"
done
step removed
