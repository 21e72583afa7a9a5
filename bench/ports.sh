#!/usr/bin/env bash
# Published ports at scale, inside a private sandbox (the host is untouched):
#   1. 10,000 mappings applied by one `nsnet connect -p 10000-19999:...`
#      (one nft transaction);
#   2. the cost of publishing one more port on a host with 0 and with
#      10,000 existing mappings (median of R runs each), and their ratio:
#      map lookups and element-only updates make it independent of the
#      number of mappings.
#   3. with direct-access protection (gateway mode nat) and the routed
#      filter: one more attachment with a published port, with 0 and with
#      NSNET_BENCH_ATTACHMENTS (200) attachments, and the rule count a
#      packet may walk through (it must not grow with attachments).
#   bench/ports.sh [R]     (default R=9; as root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
enter_sandbox "$@"
runs=${1:-9}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The firewall step's own time, as `nsnet -v` prints it.
fw_ms() { grep 'apply nftables' | awk '{print $2}'; }

# One more mapping, R times: connect a fresh namespace with one port, then
# disconnect it again. Prints "command_ms firewall_ms" medians.
one_more() {
  local cmd=() fw=()
  for i in $(seq "$runs"); do
    local t0 t1 out
    t0=$(now)
    out=$("$NSNET" -v connect bench "probe$i" -p "$((30000 + i)):80" 2>&1 >/dev/null)
    t1=$(now)
    cmd+=("$(( (t1 - t0) / 1000 ))")
    fw+=("$(echo "$out" | fw_ms)")
    "$NSNET" -q disconnect bench "probe$i"
  done
  echo "$(printf '%s\n' "${cmd[@]}" | median) $(printf '%s\n' "${fw[@]}" | median)"
}

"$NSNET" -q network create bench --subnet 10.97.0.0/16
read -r c0 f0 < <(one_more)

t0=$(now)
out=$("$NSNET" -v connect bench big -p 10000-19999:10000-19999 2>&1 >/dev/null)
t1=$(now)
big_ms=$(( (t1 - t0) / 1000000 ))
big_fw=$(echo "$out" | fw_ms)
# Entries of the port map (its "type ... : ..." line is not one).
entries=$(( $(nft list map inet nsnet ports4_any_dport | grep -o ' : ' | wc -l) - 1 ))

read -r c1 f1 < <(one_more)

printf '10,000 published ports in one command: %s ms (nft transaction %s ms), %s map entries\n' \
  "$big_ms" "$big_fw" "$entries"
printf '%-34s %14s %16s\n' "one more published port" "command ms" "nft step ms"
printf '%-34s %14s %16s\n' "with 0 existing mappings" "$(echo "scale=2; $c0/1000" | bc)" "$f0"
printf '%-34s %14s %16s\n' "with 10,000 existing mappings" "$(echo "scale=2; $c1/1000" | bc)" "$f1"
printf '%-34s %14s %16s\n' "ratio (10,000 / 0)" "$(echo "scale=2; $c1/$c0" | bc)" "$(echo "scale=2; $f1/$f0" | bc)"
"$NSNET" -q network rm bench --force

# Direct-access protection and the routed filter: one rule per subnet,
# one set element per published container port. One more attachment (with
# a published port) on a nat network and on a routed one, with 0 and with
# A attachments already there, and the rules a packet walks through.
attachments=${NSNET_BENCH_ATTACHMENTS:-200}
one_more_attachment() { # network
  local cmd=()
  for i in $(seq "$runs"); do
    local t0 t1
    t0=$(now)
    "$NSNET" -q connect "$1" "extra$i" -p "$((40000 + i)):80"
    t1=$(now)
    cmd+=("$(( (t1 - t0) / 1000 ))")
    "$NSNET" -q disconnect "$1" "extra$i"
  done
  printf '%s\n' "${cmd[@]}" | median
}
rules() { nft list table inet nsnet | grep -c -E '^\s+(ip|ip6|oifname|iifname|meta|fib|ct) '; }
printf '\n%-44s %10s %10s %8s %12s\n' "one more attachment with a published port" "0 before" "$attachments before" "ratio" "rules 0/$attachments"
for mode in nat routed; do
  "$NSNET" -q network create "p$mode" --subnet "10.$([ $mode = nat ] && echo 98 || echo 99).0.0/16" --gateway-mode "$mode"
  a0=$(one_more_attachment "p$mode"); r0=$(rules)
  names=(); for i in $(seq "$attachments"); do names+=("q$mode$i"); done
  "$NSNET" -q connect "p$mode" "${names[@]}"
  a1=$(one_more_attachment "p$mode"); r1=$(rules)
  printf '%-44s %10s %10s %8s %12s\n' "gateway mode $mode (ms)" "$(echo "scale=2; $a0/1000" | bc)" \
    "$(echo "scale=2; $a1/1000" | bc)" "$(echo "scale=2; $a1/$a0" | bc)" "$r0/$r1"
  "$NSNET" -q network rm "p$mode" --force
done
