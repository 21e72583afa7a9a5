#!/usr/bin/env bash
# `nsnet up` of a routed lab against the kernel floor for the same objects,
# side by side in one run, inside a private sandbox (the host is untouched).
#
#   bench/lab.sh [N]      (default 200 namespaces; as root)
#
# The lab: N namespaces in a chain, N-1 point-to-point links (an address on
# each end), forwarding on, and one impairment per link (both ends; a rate
# limit: tbf, or with netem in the kernel a 1 ms delay, netem).
# Floor (as bench/README.md defines it): ip -batch for the namespaces and
# the veth pairs, then per namespace one `ip -n NS -batch` (addresses, up)
# and one `tc -n NS -batch` (the qdiscs), minus what starting those
# processes costs (`ip -n NS -batch /dev/null`, `tc -n NS -batch /dev/null`),
# and one `ip netns exec NS sysctl -w` for forwarding (minus a sysctl read).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
enter_sandbox "$@"
n=${1:-200}
tmp=$(mktemp -d)
ms() { echo "scale=1; $1 / 1000000" | bc; }

# netem if this kernel has it, tbf otherwise (CONFIG_NET_SCH_NETEM unset).
ip link add probe0 type veth peer name probe1
if tc qdisc add dev probe0 root netem delay 1ms 2>/dev/null; then
  impair_toml='impair = { delay = "1ms" }'; impair_tc='netem delay 1ms'; kind=netem
else
  impair_toml='impair = { rate = "100mbit" }'; impair_tc='tbf rate 100mbit burst 12500 limit 1250000'; kind=tbf
fi
ip link del probe0

addr() { # link i, end 0|1 -> 10.X.Y.Z/30
  local base=$(( (($1 - 1) * 4) )) e=$2
  echo "10.$((100 + base / 65536)).$(( (base / 256) % 256 )).$(( base % 256 + 1 + e ))/30"
}

floor_run() {
  : > "$tmp/ns.batch"; : > "$tmp/link.batch"
  for i in $(seq "$n"); do echo "netns add c$i" >> "$tmp/ns.batch"; done
  for i in $(seq $((n - 1))); do
    echo "link add e1 netns c$i type veth peer name e0 netns c$((i + 1))" >> "$tmp/link.batch"
  done
  local t0 t1 t2 t3
  t0=$(now)
  ip -batch "$tmp/ns.batch"
  ip -batch "$tmp/link.batch"
  for i in $(seq "$n"); do
    : > "$tmp/in.batch"; : > "$tmp/tc.batch"
    echo "link set lo up" >> "$tmp/in.batch"
    if [ "$i" -gt 1 ]; then
      echo "addr add $(addr $((i - 1)) 1) dev e0" >> "$tmp/in.batch"
      echo "link set e0 up" >> "$tmp/in.batch"
      echo "qdisc add dev e0 root $impair_tc" >> "$tmp/tc.batch"
    fi
    if [ "$i" -lt "$n" ]; then
      echo "addr add $(addr "$i" 0) dev e1" >> "$tmp/in.batch"
      echo "link set e1 up" >> "$tmp/in.batch"
      echo "qdisc add dev e1 root $impair_tc" >> "$tmp/tc.batch"
    fi
    ip -n "c$i" -batch "$tmp/in.batch"
    tc -n "c$i" -batch "$tmp/tc.batch"
    ip netns exec "c$i" sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  done
  t1=$(now)
  for i in $(seq "$n"); do
    ip -n "c$i" -batch /dev/null; tc -n "c$i" -batch /dev/null
    ip netns exec "c$i" sysctl -q -n net.ipv4.ip_forward >/dev/null
  done
  t2=$(now)
  for i in $(seq "$n"); do ip netns del "c$i"; done
  t3=$(now)
  echo "$(( (t1 - t0) - (t2 - t1) )) $((t3 - t2))"
}

nsnet_run() {
  local file="$tmp/lab.toml"
  : > "$file"
  for i in $(seq $((n - 1))); do
    printf '[[links]]\nendpoints = ["c%s:e1", "c%s:e0"]\nips = ["%s", "%s"]\n%s\n' \
      "$i" $((i + 1)) "$(addr "$i" 0)" "$(addr "$i" 1)" "$impair_toml" >> "$file"
  done
  for i in $(seq "$n"); do printf '[namespaces.c%s]\nforward = true\n' "$i" >> "$file"; done
  local t0 t1 t2
  t0=$(now)
  /usr/bin/time -f '%M' -o "$tmp/rss" "$NSNET" -q up -f "$file"
  t1=$(now)
  "$NSNET" -q pingall -f "$file" -c 1 >/dev/null || echo "      (pingall: some pairs failed)"
  t2=$(now)
  "$NSNET" -q down -f "$file"
  echo "$((t1 - t0)) $(cat "$tmp/rss") $(( $(now) - t2 )) $((t2 - t1))"
}

read -r fs ft < <(floor_run); sleep 2
read -r us rss ut pt < <(nsnet_run); sleep 2
echo "lab of $n namespaces, $((n - 1)) links, an impairment ($kind) on both ends of each"
printf '%-34s %10s %8s\n' method "up ms" ratio
printf '%-34s %10s %8s\n' "floor (ip -batch, tc -batch)" "$(ms "$fs")" 1.00
printf '%-34s %10s %8s\n' "nsnet up -f" "$(ms "$us")" "$(echo "scale=2; $us / $fs" | bc)"
echo "      peak RSS of up: $((rss / 1024)) MB; down $(ms "$ut") ms (floor, ip netns del each: $(ms "$ft") ms); pingall of every link $(ms "$pt") ms"
rm -rf "$tmp"
