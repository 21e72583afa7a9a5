#!/usr/bin/env bash
# Overlay networks across simulated hosts, inside a private sandbox: three
# hosts (network namespaces h1..h3 on an underlay bridge, 198.51.100.0/24)
# and one etcd member on the sandbox's end of the underlay.
#
#   bench/overlay.sh [PEERS]      (default 1000; as root; installs etcd-server,
#                                  etcd-client and iperf3 if missing)
#
# Prints:
#   - agent start -> first cross-host reply (the late host pings a peer, and a
#     peer pings it), over several runs;
#   - programming PEERS synthetic peers (claims written straight into etcd)
#     on an agent's start (the agent's own figure), and one more peer added
#     while the agent runs, with 1 and with PEERS+1 peers (put -> route);
#   - TCP throughput between namespaces on two hosts over the overlay, the
#     same namespaces routed over the underlay without VXLAN, and the two
#     hosts over the plain underlay, same run, interleaved (iperf3);
#   - etcd revisions per `connect` (writes to etcd; IPAM is local).
set -euo pipefail
need=()
for p in etcd-server etcd-client iperf3 curl; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ] && [ -z "${NSNET_BENCH_INNER:-}" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
. "$(dirname "$0")/lib.sh"
enter_sandbox "$@"
PEERS=${1:-1000}
ETCD=http://198.51.100.254:2379
export ETCDCTL_API=3
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
# Agents and etcd die with the script, whatever ends it.
trap cleanup EXIT

overlay_world 4

agent() {
  NSNET_STATE_DIR=/run/nsnet-h$1 nsenter --net=/run/netns/h$1 "$NSNET" agent 2>>/run/agent-h$1.log &
  pids+=($!)
}
ms() { echo "scale=1; ($2 - $1) / 1000000" | bc; }
addr() { ip -n "$1" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }

for i in 1 2; do
  h $i "$NSNET" -q network create lab --driver overlay --etcd $ETCD --subnet 10.200.0.0/16
  h $i "$NSNET" -q connect lab c$i
  agent $i
done
sleep 0.5

echo "## agent start -> first cross-host reply (ms; 5 runs)"
for run in 1 2 3 4 5; do
  h 3 "$NSNET" -q network create lab --driver overlay --etcd $ETCD --subnet 10.200.0.0/16
  h 3 "$NSNET" -q connect lab c3
  a1=$(addr c1)
  t0=$(now)
  agent 3
  apid=${pids[-1]}
  until ip netns exec c3 ping -c 1 -W 0.05 -q "$a1" >/dev/null 2>&1; do :; done
  t1=$(now)
  printf '  run %d: %s ms\n' "$run" "$(ms "$t0" "$t1")"
  kill "$apid"; wait "$apid" 2>/dev/null || true
  h 3 "$NSNET" -q network rm lab --force
done

echo "## programming peers (synthetic claims in etcd, network big, /29 host subnets of 10.64.0.0/10)"
h 4 "$NSNET" -q network create big --driver overlay --etcd $ETCD --subnet 10.64.0.0/10 --host-subnet-len 29
agent 4
a4=${pids[-1]}
# PEERS + 2 free /29 subnets from the top of the range: PEERS synthetic
# hosts, and two single peers added while the agent runs.
mapfile -t free < <(python3 - "$PEERS" <<'EOF2'
import base64, ipaddress, json, sys, urllib.request
n = int(sys.argv[1])
def call(path, body):
    req = urllib.request.Request("http://198.51.100.254:2379" + path, json.dumps(body).encode())
    return json.loads(urllib.request.urlopen(req).read())
b64 = lambda s: base64.b64encode(s.encode()).decode()
prefix = "/nsnet/v1/networks/big/subnets/"
taken = {base64.b64decode(kv["key"]).decode() for kv in
         call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix[:-1] + "0")}).get("kvs", [])}
out, top = [], int(ipaddress.ip_address("10.127.255.248"))
i = 0
while len(out) < n + 2:
    net = ipaddress.ip_network(f"{ipaddress.ip_address(top - 8 * i)}/29"); i += 1
    key = prefix + f"{net.network_address}-29"
    if key not in taken:
        out.append((key, str(net)))
print("\n".join(f"{key} {net}" for key, net in out))
EOF2
)
one_more() {
  local key=$1 sub=$2 t0 t1
  t0=$(now)
  curl -s -o /dev/null $ETCD/v3/kv/put -d "{\"key\":\"$(printf %s "$key" | base64 -w0)\",\"value\":\"$(printf %s '{"vtep":"192.0.2.251","vtep_mac":"02:bb:00:00:00:01"}' | base64 -w0)\"}"
  # One route lookup per poll: the cost of looking does not grow with the peers.
  local probe=${sub%/*}
  until ip -n h4 route get "$probe" 2>/dev/null | grep -q "dev nsv"; do :; done
  t1=$(now)
  ms "$t0" "$t1"
}
read -r k1 s1 <<<"${free[PEERS]}"
read -r k2 s2 <<<"${free[PEERS+1]}"
first=$(one_more "$k1" "$s1")
python3 - "$PEERS" "${free[@]:0:PEERS}" <<'EOF2'
import base64, json, sys, urllib.request
b64 = lambda s: base64.b64encode(s.encode()).decode()
for k, line in enumerate(sys.argv[2:]):
    key = line.split()[0]
    value = {"vtep": f"192.0.2.{k % 250 + 1}", "vtep_mac": "02:aa:%02x:%02x:%02x:01" % (k >> 16 & 255, k >> 8 & 255, k & 255)}
    body = json.dumps({"key": b64(key), "value": b64(json.dumps(value))}).encode()
    urllib.request.urlopen(urllib.request.Request("http://198.51.100.254:2379/v3/kv/put", body)).read()
EOF2
until [ "$(ip -n h4 route show proto 78 | wc -l)" -ge $((PEERS + 1)) ]; do sleep 0.02; done
# A fresh start programs them all at once: leave and join again.
kill "$a4"; wait "$a4" 2>/dev/null || true
h 4 "$NSNET" -q network rm big
h 4 "$NSNET" -q network create big --driver overlay --etcd $ETCD --subnet 10.64.0.0/10 --host-subnet-len 29
: > /run/agent-h4.log
agent 4
until grep -q "programmed in" /run/agent-h4.log; do sleep 0.02; done
echo "  agent start, $((PEERS + 1)) peers: $(grep -m1 -o '[0-9]* peer(s) programmed in [0-9.]* ms' /run/agent-h4.log)"
sleep 0.5
last=$(one_more "$k2" "$s2")
echo "  one more peer while running (a put with curl -> the route in the kernel): with 1 present $first ms, with $((PEERS + 1)) present $last ms"
echo "## throughput, iperf3 TCP 3 s (Gbit/s; median of 3 interleaved rounds)"
# Three paths, same run: c1 -> c2 over the overlay; c1 -> c2 routed over
# the underlay without encapsulation (each host routes the other's subnet
# to it directly, as flannel's host-gw does: same bridges, veths and
# firewall, no VXLAN), which isolates what the encapsulation costs; and
# h1 -> h2 over the plain underlay. On one machine every path is CPU: the
# namespace paths cross two more bridges and veth pairs than h1 -> h2.
tput() { # client-ns server-ns address
  ip netns exec "$2" iperf3 -s -D -1 >/dev/null; sleep 0.3
  ip netns exec "$1" iperf3 -c "$3" -t 3 -J |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))'
}
halves() { python3 -c "import ipaddress,sys; print(*ipaddress.ip_interface(sys.argv[1]).network.subnets(1))" "$1"; }
routed() { # add|del: the host-gw routes (more specific than the overlay's)
  local s
  for s in $(halves "$(ip -n c2 -4 -o addr show dev eth0 | awk '{print $4}')"); do ip -n h1 route "$1" "$s" via 198.51.100.2; done
  for s in $(halves "$(ip -n c1 -4 -o addr show dev eth0 | awk '{print $4}')"); do ip -n h2 route "$1" "$s" via 198.51.100.1; done
}
# Direct-access protection drops what reaches a network's subnet from the
# underlay device; let the routed path's traffic through, first in both
# chains.
for i in 1 2; do
  ip netns exec h$i nft insert rule inet nsnet raw_prerouting iifname eth0 ip saddr 10.200.0.0/16 accept
  ip netns exec h$i nft insert rule inet nsnet forward iifname eth0 ip saddr 10.200.0.0/16 accept
done
over=() plain=() under=()
for round in 1 2 3; do
  over+=("$(tput c1 c2 "$(addr c2)")")
  routed add; plain+=("$(tput c1 c2 "$(addr c2)")"); routed del
  under+=("$(tput h1 h2 198.51.100.2)")
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
o=$(median "${over[@]}") p=$(median "${plain[@]}") u=$(median "${under[@]}")
echo "  overlay c1 -> c2: $o (${over[*]})   routed without VXLAN c1 -> c2: $p (${plain[*]})   underlay h1 -> h2: $u (${under[*]})"
echo "  overlay / underlay: $(echo "scale=2; $o / $u" | bc)   overlay / routed without VXLAN: $(echo "scale=2; $o / $p" | bc)   routed without VXLAN / underlay: $(echo "scale=2; $p / $u" | bc)"
echo "## etcd writes per connect (10 connects on h1)"
r0=$(etcdctl --endpoints $ETCD endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
for k in $(seq 10); do h 1 "$NSNET" -q connect lab w$k; done
r1=$(etcdctl --endpoints $ETCD endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
echo "  revisions: $r0 -> $r1 ($(( (r1 - r0) )) writes for 10 connects)"
