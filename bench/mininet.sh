#!/usr/bin/env bash
# nsnet against Mininet 2.3 (Debian mininet, Linux bridges, no controller)
# for Mininet's `single,N` topology (one switch, N hosts with an address
# each) and `linear,N` (a chain of N switches, a host on each), N = 100
# and 500 by default, and the kernel floor for the same objects, in one run
# inside a private sandbox (the host is untouched).
#
#   bench/mininet.sh [N...]     (as root; installs mininet and bridge-utils
#                                if missing)
#
# Mininet: its Python API, Mininet(SingleSwitchTopo(N) or LinearTopo(N),
# switch=LinuxBridge, controller=None): build = construction + start(),
# tear down = stop().
# nsnet, single: a topology file with one network and N namespaces on it,
# `up` and `down` (nsnet also makes the gateway, NAT, firewall and DNS).
# nsnet, linear: N switches (`network:sI`, a bridge in a namespace of its
# own each) linked in a chain, a host linked to each.
# Floor, single: ip -batch for the namespaces, the bridge and the veth
# pairs, then one `ip -n NS -batch` per namespace (address, up) minus what
# starting those processes costs; tear down: ip netns del each, the bridge.
# Floor, linear: nsnet's objects (2N namespaces, a bridge in each switch's,
# 2N-1 veth pairs made from the switches' side), one `ip -n NS -batch` per
# namespace, process starts subtracted; tear down: ip netns del each.
# Mininet makes its bridges in the host's namespace (N fewer namespaces).
set -euo pipefail
need=()
for p in mininet bridge-utils; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ] && [ -z "${NSNET_BENCH_INNER:-}" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
. "$(dirname "$0")/lib.sh"
enter_sandbox "$@"
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100 500)
tmp=$(mktemp -d)
ms() { echo "scale=1; $1 / 1000000" | bc; }
# The kernel destroys deleted namespaces in the background, and that work
# slows down whatever comes next (a run right after another's teardown
# measured 1.6 s instead of 0.3 s for linear,100): let it finish first.
settle() { sleep $(( 2 + $1 / 25 )); }
host_addr() { echo "10.0.$(( $1 / 250 )).$(( $1 % 250 + 2 ))"; }

mininet_run() { # topo n -> "build_ns teardown_ns"
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys, time
from mininet.net import Mininet
from mininet.topo import SingleSwitchTopo, LinearTopo
from mininet.nodelib import LinuxBridge
from mininet.log import setLogLevel
setLogLevel("error")
topo, n = sys.argv[1], int(sys.argv[2])
t0 = time.monotonic_ns()
made = SingleSwitchTopo(n) if topo == "single" else LinearTopo(k=n, n=1)
net = Mininet(topo=made, switch=LinuxBridge, controller=None)
net.start()
t1 = time.monotonic_ns()
net.stop()
t2 = time.monotonic_ns()
print(t1 - t0, t2 - t1)
PY
}

floor_single() { # n -> "build_ns teardown_ns"
  local n=$1 t0 t1 t2 t3
  : > "$tmp/host.batch"
  echo "link add s1 type bridge" >> "$tmp/host.batch"
  echo "link set s1 up" >> "$tmp/host.batch"
  for i in $(seq "$n"); do
    echo "netns add h$i" >> "$tmp/host.batch"
    echo "link add s1-eth$i master s1 up type veth peer name eth0 netns h$i" >> "$tmp/host.batch"
  done
  t0=$(now)
  ip -batch "$tmp/host.batch"
  for i in $(seq "$n"); do
    printf 'link set lo up\naddr add %s/16 dev eth0\nlink set eth0 up\n' "$(host_addr "$i")" > "$tmp/in.batch"
    ip -n "h$i" -batch "$tmp/in.batch"
  done
  t1=$(now)
  for i in $(seq "$n"); do ip -n "h$i" -batch /dev/null; done
  t2=$(now)
  for i in $(seq "$n"); do ip netns del "h$i"; done
  ip link del s1
  t3=$(now)
  echo "$(( (t1 - t0) - (t2 - t1) )) $((t3 - t2))"
}

floor_linear() { # n -> "build_ns teardown_ns"
  local n=$1 t0 t1 t2 t3 i runs=$((2 * n + 1))
  : > "$tmp/host.batch"
  for i in $(seq "$n"); do printf 'netns add s%s\nnetns add h%s\n' "$i" "$i" >> "$tmp/host.batch"; done
  t0=$(now)
  ip -batch "$tmp/host.batch"
  for i in $(seq "$n"); do
    {
      printf 'link set lo up\nlink add br0 type bridge\nlink set br0 up\n'
      printf 'link add h%s-eth0 master br0 up type veth peer name eth0 netns h%s\n' "$i" "$i"
      if [ "$i" -gt 1 ]; then printf 'link set s%s master br0 up\n' "$((i - 1))"; fi
      if [ "$i" -lt "$n" ]; then
        printf 'link add s%s master br0 up type veth peer name s%s netns s%s\n' \
          "$((i + 1))" "$i" "$((i + 1))"
      fi
    } > "$tmp/s.batch"
    ip -n "s$i" -batch "$tmp/s.batch"
    printf 'link set lo up\naddr add %s/16 dev eth0\nlink set eth0 up\n' "$(host_addr "$i")" > "$tmp/in.batch"
    ip -n "h$i" -batch "$tmp/in.batch"
  done
  t1=$(now)
  for i in $(seq "$runs"); do ip -n "h1" -batch /dev/null; done
  t2=$(now)
  for i in $(seq "$n"); do ip netns del "s$i"; ip netns del "h$i"; done
  t3=$(now)
  echo "$(( (t1 - t0) - (t2 - t1) )) $((t3 - t2))"
}

nsnet_run() { # topo n -> "up_ns down_ns"
  local topo=$1 n=$2 file="$tmp/$1.toml" t0 t1 t2 i
  if [ "$topo" = single ]; then
    printf '[networks.s1]\nsubnets = ["10.0.0.0/16"]\n' > "$file"
    for i in $(seq "$n"); do
      printf '[namespaces.h%s]\nattach = [{ network = "s1", ip = "%s" }]\n' "$i" "$(host_addr "$i")" >> "$file"
    done
  else
    : > "$file"
    for i in $(seq "$n"); do
      printf '[[links]]\nendpoints = ["h%s:eth0", "network:s%s"]\nips = ["%s/16"]\n' \
        "$i" "$i" "$(host_addr "$i")" >> "$file"
      if [ "$i" -lt "$n" ]; then
        printf '[[links]]\nendpoints = ["network:s%s", "network:s%s"]\n' "$i" "$((i + 1))" >> "$file"
      fi
    done
  fi
  t0=$(now)
  "$NSNET" -q up -f "$file"
  t1=$(now)
  "$NSNET" -q down -f "$file"
  t2=$(now)
  echo "$((t1 - t0)) $((t2 - t1))"
}

for topo in single linear; do
  printf '%-28s %10s %10s %12s %12s\n' "$topo,N" "build ms" "down ms" "nsnet faster" "over floor"
  for n in "${sizes[@]}"; do
    read -r fb fd < <("floor_$topo" "$n"); settle "$n"
    read -r nb nd < <(nsnet_run "$topo" "$n"); settle "$n"
    read -r mb md < <(mininet_run "$topo" "$n"); settle "$n"
    printf '%-28s %10s %10s\n' "N=$n floor (ip -batch)" "$(ms "$fb")" "$(ms "$fd")"
    printf '%-28s %10s %10s %12s %12s\n' "N=$n nsnet up/down" "$(ms "$nb")" "$(ms "$nd")" "" \
      "$(echo "scale=2; $nb / $fb" | bc)x / $(echo "scale=2; $nd / $fd" | bc)x"
    printf '%-28s %10s %10s %12s\n' "N=$n Mininet 2.3 (lxbr)" "$(ms "$mb")" "$(ms "$md")" \
      "$(echo "scale=1; $mb / $nb" | bc)x / $(echo "scale=1; $md / $nd" | bc)x"
  done
done
rm -rf "$tmp"
