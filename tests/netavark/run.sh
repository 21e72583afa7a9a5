#!/usr/bin/env bash
# netavark 2.x (podman 5 and 6's network backend) as a real client of nsnet's
# netavark plugin mode. Run by tests/netavark.rs inside the test's sandbox;
# this script makes the calls podman makes (`netavark create`, then `netavark
# --config DIR --plugin-directory DIR setup|teardown NETNS` with the JSON
# podman writes), on namespaces made with `ip netns add` (podman's are bind
# mounts too), and an upstream namespace "up" (203.0.113.1) for the outside.
#   usage: run.sh NSNET_BINARY NETAVARK_BINARY
set -euo pipefail
if [ -z "${NSNET_NETAVARK_INNER:-}" ]; then
  export NSNET_NETAVARK_INNER=1
  exec unshare --pid --fork --kill-child --mount-proc "$0" "$@"
fi
NSNET=$1 NETAVARK=$2
W=$(mktemp -d /run/nsnet-netavark.XXXXXX)
mkdir -p "$W/plugins" "$W/config" "$W/www"
ln -s "$NSNET" "$W/plugins/nsnet"
echo served-by-c1 >"$W/www/index.html"
step() { echo "STEP $*"; }
fail() { echo "FAIL $*"; exit 1; }
na() { "$NETAVARK" --config "$W/config" --rootless=false --plugin-directory "$W/plugins" "$@"; }
http_get() {
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "GET /index.html HTTP/1.0\r\n\r\n" >&3 && cat <&3' _ "$1" "$2" |
    sed '1,/^\r\?$/d'
}
ID=$(printf 'ab%.0s' $(seq 32))

ip netns add up
ip link add up0 type veth peer name eth0 netns up
ip addr add 203.0.113.2/24 dev up0; ip link set up0 up
ip -n up addr add 203.0.113.1/24 dev eth0; ip -n up link set eth0 up; ip -n up link set lo up
ip route add default via 203.0.113.1 dev up0

# podman network create -d nsnet --subnet 10.91.0.0/24 --opt icc=true nsn
cat >"$W/create.json" <<EOF
{"network": {"name": "nsn", "id": "$ID", "driver": "nsnet", "created": "0001-01-01T00:00:00Z",
             "ipv6_enabled": false, "internal": false, "dns_enabled": true,
             "subnets": [{"subnet": "10.91.0.0/24"}], "options": {"icc": "true"}},
 "used": {"interfaces": ["podman0"], "names": {"podman": "$(printf 'cd%.0s' $(seq 32))"}, "subnets": ["10.88.0.0/16"]},
 "options": {"subnet_pools": [{"base": "10.89.0.0/16", "size": 24}], "default_interface_name": "podman",
             "check_used_subnets": true}}
EOF
na create <"$W/create.json" >"$W/network.json" || { cat "$W/network.json"; fail "netavark create"; }
grep -q '"gateway": *"10.91.0.1"' "$W/network.json" || fail "no gateway in $(cat "$W/network.json")"
[ "$("$NSNET" --json network ls)" = "[]" ] || fail "create made something"
step created

call() { # container name, static IP, ports JSON
  cat <<EOF
{"container_id": "$(printf "%064d" "${#1}")$1", "container_name": "$1", "container_hostname": "$1",
 "networks": {"nsn": {"interface_name": "eth0", "static_ips": ["$2"], "aliases": ["$1-alias"]}},
 "network_info": {"nsn": $(cat "$W/network.json")},
 "port_mappings": $3}
EOF
}
ip netns add c1; ip netns add c2
call c1 10.91.0.2 '[{"container_port": 80, "host_ip": "", "host_port": 8080, "protocol": "tcp", "range": 1}]' >"$W/c1.json"
call c2 10.91.0.3 null >"$W/c2.json"
na setup /run/netns/c1 <"$W/c1.json" >"$W/c1.out" || { cat "$W/c1.out"; fail "setup c1"; }
na setup /run/netns/c2 <"$W/c2.json" >"$W/c2.out" || { cat "$W/c2.out"; fail "setup c2"; }
grep -q '"ipnet": *"10.91.0.2/24"' "$W/c1.out" || fail "status of c1: $(cat "$W/c1.out")"
grep -q '"dns_server_ips"' "$W/c1.out" || fail "no DNS server in $(cat "$W/c1.out")"
step set-up
ip netns exec c2 ping -c1 -W2 10.91.0.2 >/dev/null || fail "c2 cannot ping c1"
step ping-by-address
got=$(ip netns exec c2 dig +short +time=2 +tries=1 @10.91.0.1 c1-alias.nsnet.internal)
[ "$got" = 10.91.0.2 ] || fail "c1-alias resolves to '$got'"
got=$(ip netns exec c2 dig +short +time=2 +tries=1 @10.91.0.1 c1.nsnet.internal)
[ "$got" = 10.91.0.2 ] || fail "c1 resolves to '$got'"
step names-resolve
ip netns exec c1 busybox httpd -f -p 80 -h "$W/www" &
httpd=$!
for _ in $(seq 100); do [ -n "$(ip netns exec c1 ss -Hltn 'sport = :80')" ] && break; sleep 0.05; done
[ "$(ip netns exec up bash -c "$(declare -f http_get); http_get 203.0.113.2 8080")" = served-by-c1 ] ||
  fail "8080 from the upstream"
kill "$httpd"
step published-port
"$NSNET" check >/dev/null || { "$NSNET" check; fail "check with two containers"; }
step check-clean

# c1 on a second nsnet network: netavark hands it the container's ports
# again, which it publishes once.
sed -e 's/"nsn"/"nsn2"/' -e "s/$ID/$(printf 'ac%.0s' $(seq 32))/" -e 's/10\.91\./10.92./g' \
  "$W/create.json" >"$W/create2.json"
na create <"$W/create2.json" >"$W/network2.json" || fail "create nsn2"
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
call = json.load(open(f"{w}/c1.json"))
call["networks"] = {"nsn2": {"interface_name": "eth1", "static_ips": ["10.92.0.2"]}}
call["network_info"] = {"nsn2": json.load(open(f"{w}/network2.json"))}
json.dump(call, open(f"{w}/c1-2.json", "w"))
PY
na setup /run/netns/c1 <"$W/c1-2.json" >"$W/c1-2.out" || { cat "$W/c1-2.out"; fail "c1 on a second network"; }
na teardown /run/netns/c1 <"$W/c1-2.json" || fail "teardown of c1 on nsn2"
grep -q 8080 <<<"$(nft list ruleset 2>/dev/null)" || fail "c1's port went with its second network"
step second-network-same-ports

# c2's namespace is gone before its teardown (podman after a crash).
ip netns del c2
na teardown /run/netns/c2 <"$W/c2.json" || fail "teardown of a gone namespace"
na teardown /run/netns/c2 <"$W/c2.json" || fail "teardown twice"
"$NSNET" check >/dev/null || { "$NSNET" check; fail "check after c2's teardown"; }
step teardown-without-namespace
na teardown /run/netns/c1 <"$W/c1.json" || fail "teardown c1"
[ "$("$NSNET" --json network ls)" = "[]" ] || fail "the network outlived its last container"
! ip link show nsn >/dev/null 2>&1 || fail "bridge nsn left"
if grep -q 8080 <<<"$(nft list ruleset 2>/dev/null)"; then fail "port 8080 left"; fi
step last-teardown-removes-network

sed 's/"icc": "true"/"colour": "red"/' "$W/create.json" >"$W/bad.json"
if out=$(na create <"$W/bad.json" 2>&1); then fail "a bad option was taken: $out"; fi
grep -q "unknown options colour" <<<"$out" || fail "the error does not name the option: $out"
step error-surfaces "$out"
