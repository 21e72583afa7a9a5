#!/usr/bin/env bash
# One `nsnet connect` process per namespace on a macvlan network, against
# the kernel floor for the same objects, inside a private sandbox with a
# simulated LAN (a bridge in namespace "lan", router 192.0.2.1; the
# sandbox's lan0 is the parent).
#
#   bench/lan.sh [N]     (default 50; as root)
#
# floor per namespace = ( t(ip -batch: N x netns add)
#                       + t(ip -batch: N x link add link lan0 name eth0 netns fX type macvlan mode bridge)
#                       + sum t(ip -n fX -batch: addr add, eth0 up, lo up, default route)
#                       - sum t(ip -n fX -batch /dev/null) ) / N        (process starts subtracted)
# nsnet: each `nsnet connect home nX` timed alone (median), with the ARP
# probe off (--probe-wait 0) and on (the default 200 ms), and the start of
# an nsnet process (`nsnet --version`, median) beside it. The goal: a
# connect without the probe's wait within floor + process start + 3 ms.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
install_missing hyperfine bc || true
enter_sandbox "$@"
n=${1:-50}
tmp=$(mktemp -d)
ms() { echo "scale=2; $1 / 1000000" | bc; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# The tests' LAN; its other machine at .254, beyond the addresses taken.
"$(dirname "$0")/../tests/common/simulated-lan.sh" 192.0.2.254

floor() {
  : >"$tmp/ns.batch"; : >"$tmp/mv.batch"; : >"$tmp/del.batch"
  for i in $(seq "$n"); do
    echo "netns add f$i" >>"$tmp/ns.batch"
    echo "link add link lan0 name eth0 netns f$i type macvlan mode bridge" >>"$tmp/mv.batch"
    echo "netns del f$i" >>"$tmp/del.batch"
  done
  local t0 t1 t2 t3
  t0=$(now)
  ip -batch "$tmp/ns.batch"
  ip -batch "$tmp/mv.batch"
  t1=$(now)
  for i in $(seq "$n"); do
    printf 'addr add 192.0.2.%d/24 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via 192.0.2.1\n' $((i + 10)) >"$tmp/in.batch"
    ip -n "f$i" -batch "$tmp/in.batch"
  done
  t2=$(now)
  for i in $(seq "$n"); do ip -n "f$i" -batch /dev/null; done
  t3=$(now)
  ip -batch "$tmp/del.batch"
  echo $(( ((t1 - t0) + (t2 - t1) - (t3 - t2)) / n ))
}

connects() { # probe-wait: median ns of one connect process
  "$NSNET" -q network create home --driver macvlan --parent lan0 --subnet 192.0.2.0/24 \
    --gateway 192.0.2.1 --probe-wait "$1"
  local t0 t1
  for i in $(seq "$n"); do
    t0=${EPOCHREALTIME/[.,]/}
    "$NSNET" -q connect home "n$i" </dev/null
    t1=${EPOCHREALTIME/[.,]/}
    echo $(((t1 - t0) * 1000))
  done | median
  "$NSNET" -q network rm home --force
  sleep 1
}

f=$(floor); sleep 1
start=$(spawn_times "$NSNET --version")
off=$(connects 0)
on=$(connects 200)
printf 'macvlan connect, one process each, N=%s (medians)\n' "$n"
printf '  kernel floor (ip -batch, process starts subtracted) %8s ms\n' "$(ms "$f")"
printf '  nsnet process start (nsnet --version)               %8s ms\n' "$(ms "$start")"
printf '  nsnet connect, no probe (--probe-wait 0)            %8s ms  = floor + start + %s ms (goal: + 3 ms); %sx the floor + start\n' \
  "$(ms "$off")" "$(ms $((off - f - start)))" "$(echo "scale=2; $off / ($f + $start)" | bc)"
printf '  nsnet connect, ARP probe (default 200 ms wait)      %8s ms  = the above + %s ms of probe (its wait + %s ms, mostly the\n' \
  "$(ms "$on")" "$(ms $((on - off)))" "$(ms $((on - off - 200000000)))"
printf '      RCU grace period the kernel waits for when the probe'"'"'s packet socket is closed)\n'
