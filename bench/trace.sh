#!/usr/bin/env bash
# `nsnet trace` on a host with N namespaces (default 1,000: ten networks of
# 100, published ports on some), inside a private sandbox (the host is
# untouched): the median time of a trace across one bridge (reached) and
# of one between two isolated networks (dropped), against the floor of
# the facts a trace needs (`ip route get` in the source namespace and
# `nft -j list ruleset`, each a process of its own). Goal: <= 50 ms.
# Then the same with --probe (a real packet, its nftables trace events),
# against a plain TCP connection attempt (curl) on the same path. Goal:
# <= 200 ms.
# Last, `nsnet ui` with a client that refreshes as the page does (the
# counters every second, the topology with check's drift every other) for
# 20 s:
# the server's CPU as a share of one core. Goal: <= 5 %.
#   bench/trace.sh [N]     (as root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
enter_sandbox "$@"
n=${1:-1000}
tmp=$(mktemp -d)
per=$(( n / 10 ))
file="$tmp/many.toml"
: > "$file"
for k in $(seq 0 9); do
  printf '[networks.net%s]\nsubnets = ["10.%s.0.0/16"]\n' "$k" "$((100 + k))" >> "$file"
done
for i in $(seq 0 $((n - 1))); do
  k=$(( i / per )); j=$(( i % per ))
  pub=""
  [ "$j" -lt 10 ] && pub=", publish = [\"$((20000 + i)):80\"]"
  printf '[namespaces.n%s]\nattach = [{ network = "net%s", ip = "10.%s.%s.%s"%s }]\n' \
    "$i" "$k" "$((100 + k))" "$((j / 250))" "$((j % 250 + 2))" "$pub" >> "$file"
done
"$NSNET" -q up -f "$file"
# A listener on n2's port 80 for the probes to reach.
ip netns exec n2 python3 -c 'import socket,time;s=socket.socket();s.bind(("0.0.0.0",80));s.listen(64);time.sleep(3600)' &
listener=$!
trap 'kill $listener 2>/dev/null' EXIT
sleep 0.3
times=$(spawn_times "$NSNET trace n1 n2" "$NSNET trace n1 n$((per + 1))" \
  "ip -n n1 route get 10.100.0.3" "nft -j list ruleset" \
  "$NSNET trace n1 n2 --probe" "$NSNET trace n1 n$((per + 1)) --probe" \
  "ip netns exec n1 curl -s -m 1 -o /dev/null http://10.100.0.3/")
read -r same across route nft psame pacross curl < <(echo $times)
ms() { echo "scale=2; $1 / 1000000" | bc; }
printf '%-44s %10s %10s\n' "N=$n namespaces" "median ms" "x floor"
floor=$((route + nft))
printf '%-44s %10s\n' "floor: ip route get + nft -j list ruleset" "$(ms $floor)"
printf '%-44s %10s %10s\n' "nsnet trace, same network (reached)" "$(ms $same)" "$(echo "scale=2; $same / $floor" | bc)"
printf '%-44s %10s %10s\n' "nsnet trace, isolated networks (dropped)" "$(ms $across)" "$(echo "scale=2; $across / $floor" | bc)"
printf '%-44s %10s\n' "a connection attempt (ip netns exec + curl)" "$(ms $curl)"
printf '%-44s %10s %10s\n' "nsnet trace --probe, same network" "$(ms $psame)" "$(echo "scale=2; $psame / $curl" | bc)"
printf '%-44s %10s %10s\n' "nsnet trace --probe, isolated (dropped)" "$(ms $pacross)" "$(echo "scale=2; $pacross / $curl" | bc)"
"$NSNET" ui --listen 127.0.0.1:0 > "$tmp/url" 2>/dev/null &
ui=$!
for _ in $(seq 50); do [ -s "$tmp/url" ] && break; sleep 0.1; done
url=$(head -1 "$tmp/url"); base=${url%%/\?*}; tok=${url##*token=}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
c0=$(cpu $ui); t0=$(now)
for i in $(seq 20); do
  [ $((i % 2)) = 1 ] && curl -s -o /dev/null "$base/api/topology?token=$tok"
  curl -s -o /dev/null "$base/api/counters?token=$tok"
  sleep 1
done
c1=$(cpu $ui); t1=$(now)
kill $ui
hz=$(getconf CLK_TCK)
printf '%-44s %10s\n' "nsnet ui, refreshing as the page does (% of a core)" \
  "$(echo "scale=2; 100 * ($c1 - $c0) / $hz / (($t1 - $t0) / 1000000000)" | bc)"
"$NSNET" -q down -f "$file"
rm -rf "$tmp"
