#!/usr/bin/env bash
# nsnet's DNS server against aardvark-dns (podman's), side by side in one
# sandbox, with the same 500 names:
#   - nsnet: network `n` (10.90.0.0/16) with 500 attached namespaces;
#   - aardvark-dns 1.4: its config for network `ad` naming the same 500
#     names, listening on the gateway of a second nsnet network (10.91.0.0/16,
#     --no-dns, so that nsnet's server leaves that gateway alone).
# One client namespace on both networks runs dnsperf against each (A
# queries for the 500 names, 20 s each by default), then the time from a
# `connect` returning until its name resolves (dig, 20 runs).
#
#   bench/dns.sh [SECONDS]      (as root; installs dnsperf, aardvark-dns,
#                                bind9-dnsutils when missing)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
install_missing dnsperf aardvark-dns bind9-dnsutils || exit 2
enter_sandbox "$@"
SECS=${1:-20}
AARDVARK=/usr/lib/podman/aardvark-dns
tmp=$(mktemp -d)
ad_pid=
cleanup() {
  if [ -n "$ad_pid" ]; then kill "$ad_pid" 2>/dev/null || true; fi
  "$NSNET" -q network rm n ad --force 2>/dev/null || true
}
trap cleanup EXIT

"$NSNET" -q network create n --subnet 10.90.0.0/16
"$NSNET" -q network create ad --subnet 10.91.0.0/16 --no-dns
# shellcheck disable=SC2046
"$NSNET" -q connect n $(seq -f 'h%g' 500)
"$NSNET" -q connect n client
"$NSNET" -q connect ad client --ifname eth1

mkdir -p "$tmp/aardvark"
# aardvark-dns answers only sources it knows as containers of the network:
# the client is one of its entries too.
client_ad=$(ip -n client -4 -o addr show dev eth1 | awk '{print $4}' | cut -d/ -f1)
{
  echo "10.91.0.1"
  printf '%064x %s  client\n' 0 "$client_ad"
  for i in $(seq 500); do
    printf '%064x 10.91.%d.%d  h%d\n' "$i" $((i / 200 + 1)) $((i % 200 + 10)) "$i"
  done
} > "$tmp/aardvark/ad"
"$AARDVARK" --config "$tmp/aardvark" -p 53 run >"$tmp/aardvark.log" 2>&1 &
ad_pid=$!
for _ in $(seq 100); do
  ip netns exec client dig +short +tries=1 +time=1 @10.91.0.1 h1 A 2>/dev/null | grep -q '^10\.' && break
  sleep 0.05
done
ip netns exec client dig +short +tries=1 +time=1 @10.91.0.1 h1 A | grep -q '^10\.' ||
  { echo "aardvark-dns does not answer: $(cat "$tmp/aardvark.log")" >&2; exit 1; }

for i in $(seq 500); do echo "h$i A"; done > "$tmp/queries"
run() {
  ip netns exec client dnsperf -s "$1" -d "$tmp/queries" -l "$SECS" -c 4 -Q 1000000 2>&1 |
    awk '/Queries per second/ {q=$4} /Average Latency/ {a=$4} /Latency StdDev/ {sd=$4} END {printf "%s %s %s\n", q, a, sd}'
}
echo "## dnsperf, A queries for 500 names, ${SECS} s, 4 clients"
read -r nq na nsd < <(run 10.90.0.1)
read -r aq aa asd < <(run 10.91.0.1)
printf '  %-14s %12s q/s   mean %.3f ms (sd %.3f)\n' nsnet "$nq" "$(echo "$na * 1000" | bc)" "$(echo "$nsd * 1000" | bc)"
printf '  %-14s %12s q/s   mean %.3f ms (sd %.3f)\n' aardvark-dns "$aq" "$(echo "$aa * 1000" | bc)" "$(echo "$asd * 1000" | bc)"
echo "  ratio (queries/s): $(echo "scale=2; $nq / $aq" | bc)"

echo "## p99 latency, 2,000 sequential queries each (one client, dig's measure is too coarse: python)"
p99() {
  ip netns exec client python3 - "$1" <<'EOF'
import random, socket, struct, sys, time
server = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)
lat = []
for k in range(2000):
    pkt = query("h%d" % random.randint(1, 500), k)
    t = time.perf_counter()
    s.sendto(pkt, (server, 53))
    s.recvfrom(4096)
    lat.append((time.perf_counter() - t) * 1000)
lat.sort()
print("%.3f %.3f" % (lat[len(lat) // 2], lat[int(len(lat) * 0.99)]))
EOF
}
read -r n50 n99 < <(p99 10.90.0.1)
read -r a50 a99 < <(p99 10.91.0.1)
echo "  nsnet         median $n50 ms   p99 $n99 ms"
echo "  aardvark-dns  median $a50 ms   p99 $a99 ms"

echo "## connect returns -> the new name resolves (20 runs, ms)"
times=()
for k in $(seq 20); do
  "$NSNET" -q connect n "new$k"
  t0=$(now)
  until ip netns exec client dig +short +tries=1 +time=1 @10.90.0.1 "new$k" A | grep -q .; do :; done
  t1=$(now)
  times+=("$(echo "scale=1; ($t1 - $t0) / 1000000" | bc)")
done
echo "  ${times[*]}"
base=()
for k in $(seq 5); do
  t0=$(now); ip netns exec client dig +short +tries=1 +time=1 @10.90.0.1 h1 A >/dev/null; t1=$(now)
  base+=("$(echo "scale=1; ($t1 - $t0) / 1000000" | bc)")
done
echo "  one dig of a known name, for comparison (process start included): ${base[*]}"

echo "## memory with records of 10,000 attachments (a synthetic record: 10 networks of 1,000)"
big=$(mktemp -d)
python3 - "$big/state.json" <<'EOF2'
import json, sys
nets = {}
for n in range(10):
    atts = []
    for i in range(1000):
        atts.append({"namespace": f"ns{n}-{i}", "namespace_created": True,
                     "host_ifname": f"v{n}-{i}", "ifname": "eth0", "mac": None,
                     "addresses": [f"10.{100 + n}.{i // 250}.{i % 250 + 2}/16"]})
    nets[f"big{n}"] = {"name": f"big{n}", "bridge": f"big{n}", "bridge_adopted": False,
        "bridge_mac": "02:00:00:00:00:01",
        "subnets": [{"cidr": f"10.{100 + n}.0.0/16", "gateway": f"10.{100 + n}.0.1"}],
        "internal": False, "masquerade": True, "isolate": True, "mtu": None,
        "link_group": 1 + n, "attachments": atts}
json.dump({"version": 1, "networks": nets}, open(sys.argv[1], "w"))
EOF2
"$NSNET" --state-dir "$big" dns 2>/dev/null &
dpid=$!
for _ in $(seq 200); do [ -f "$big/dns.pid" ] && break; sleep 0.02; done
sleep 0.2
echo "  nsnet-dns RSS: $(awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/$dpid/status)"
kill "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true
rm -rf "$big"
