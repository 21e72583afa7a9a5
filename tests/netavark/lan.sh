#!/usr/bin/env bash
# podman's containers straight on a LAN through nsnet's macvlan driver, by
# netavark 2.x's plugin calls. Run by tests/netavark.rs inside the test's
# sandbox: a LAN bridge in namespace "lan" (router 192.0.2.1, another
# machine at 192.0.2.50 in "other"), the sandbox's lan0 as the parent.
#   usage: lan.sh NSNET_BINARY NETAVARK_BINARY
set -euo pipefail
if [ -z "${NSNET_NETAVARK_INNER:-}" ]; then
  export NSNET_NETAVARK_INNER=1
  exec unshare --pid --fork --kill-child --mount-proc "$0" "$@"
fi
NSNET=$1 NETAVARK=$2
W=$(mktemp -d /run/nsnet-netavark-lan.XXXXXX)
mkdir -p "$W/plugins" "$W/config"
ln -s "$NSNET" "$W/plugins/nsnet"
step() { echo "STEP $*"; }
fail() { echo "FAIL $*"; exit 1; }
na() { "$NETAVARK" --config "$W/config" --rootless=false --plugin-directory "$W/plugins" "$@"; }

"$(dirname "$0")/../common/simulated-lan.sh" 192.0.2.50

# podman network create -d nsnet --subnet 192.0.2.0/24 --gateway 192.0.2.1
#   --ip-range 192.0.2.48/29 --opt driver=macvlan --opt parent=lan0
# (podman passes the range as its first and last host address)
cat >"$W/create.json" <<EOF
{"network": {"name": "home", "id": "$(printf 'fe%.0s' $(seq 32))", "driver": "nsnet",
             "ipv6_enabled": false, "internal": false, "dns_enabled": true,
             "subnets": [{"subnet": "192.0.2.0/24", "gateway": "192.0.2.1",
                          "lease_range": {"start_ip": "192.0.2.49", "end_ip": "192.0.2.54"}}],
             "options": {"driver": "macvlan", "parent": "lan0"}},
 "used": {"interfaces": [], "names": {}, "subnets": []},
 "options": {"subnet_pools": [], "default_interface_name": "podman", "check_used_subnets": true}}
EOF
na create <"$W/create.json" >"$W/network.json" || { cat "$W/network.json"; fail "create"; }
grep -q '"network_interface": *"lan0"' "$W/network.json" || fail "interface: $(cat "$W/network.json")"
grep -q '"start_ip": *"192.0.2.49"' "$W/network.json" || fail "the lease range was dropped: $(cat "$W/network.json")"
step created
for c in c1 c2; do
  ip netns add "$c"
  cat >"$W/$c.json" <<EOF
{"container_id": "$(printf '%062d' 0)${c}", "container_name": "$c", "container_hostname": "$c",
 "networks": {"home": {"interface_name": "eth0"}},
 "network_info": {"home": $(cat "$W/network.json")}, "port_mappings": null}
EOF
  na setup "/run/netns/$c" <"$W/$c.json" >"$W/$c.out" || { cat "$W/$c.out"; fail "setup $c"; }
done
a1=$(grep -o '"ipnet": *"[0-9./]*"' "$W/c1.out" | grep -o '192[0-9.]*' | head -1)
a2=$(grep -o '"ipnet": *"[0-9./]*"' "$W/c2.out" | grep -o '192[0-9.]*' | head -1)
[ "$a1" = 192.0.2.48 ] && [ "$a2" = 192.0.2.49 ] || fail "addresses '$a1' '$a2'"
mac1=$(ip -n c1 -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
grep -q "\"mac_address\": *\"$mac1\"" "$W/c1.out" || fail "the status lacks c1's MAC $mac1: $(cat "$W/c1.out")"
step set-up "$a1 $a2"
ip netns exec c1 ping -c1 -W2 192.0.2.50 >/dev/null || fail "c1 cannot reach the other machine"
ip netns exec c1 ping -c1 -W2 192.0.2.1 >/dev/null || fail "c1 cannot reach the router"
ip netns exec c2 ping -c1 -W2 "$a1" >/dev/null || fail "c2 cannot reach c1"
ip -n lan neigh show "$a1" | grep -q "$mac1" || fail "the LAN does not see c1's MAC"
step on-the-lan
"$NSNET" check >/dev/null || { "$NSNET" check; fail "check"; }
step check-clean
# The other machine's address is never handed out.
ip netns add c3
sed -e 's/c2/c3/g' "$W/c2.json" >"$W/c3.json"
na teardown /run/netns/c2 <"$W/c2.json" || fail "teardown c2"
ip -n other addr add 192.0.2.49/24 dev o0
na setup /run/netns/c3 <"$W/c3.json" >"$W/c3.out" || { cat "$W/c3.out"; fail "setup c3"; }
a3=$(grep -o '"ipnet": *"[0-9./]*"' "$W/c3.out" | grep -o '192[0-9.]*' | head -1)
[ "$a3" = 192.0.2.51 ] || fail "c3 got '$a3' (.49 and .50 answer on the LAN)"
step probed "$a3"
for c in c1 c3; do na teardown "/run/netns/$c" <"$W/$c.json" || fail "teardown $c"; done
[ "$("$NSNET" --json network ls)" = "[]" ] || fail "the network outlived its last container"
step last-teardown-removes-network
