#!/usr/bin/env bash
# Twenty simulated hosts churning on one overlay network, inside a private
# sandbox (network namespaces h1..h20 on an underlay bridge, 198.51.100.0/24,
# one etcd member on the sandbox's end of it).
#
#   bench/overlay-churn.sh [SECONDS]   (default 60; as root; installs
#                                       etcd-server and etcd-client if missing)
#
# Ten hosts join first; then, for SECONDS, a host picked by a fixed sequence
# leaves (its agent stopped, `network rm`) or joins (`network create`,
# `connect`, its agent started). Prints:
#   - a peer's arrival to reachability from every other member: from the
#     return of the new host's `network create` (its claim is in etcd) to the
#     route to its subnet in the kernel of every other member (p50, p99, max);
#   - the agents' CPU: their user+system time over their lifetime, as a share
#     of one core (mean per agent), and the busiest agent's.
set -euo pipefail
need=()
for p in etcd-server etcd-client curl; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ] && [ -z "${NSNET_BENCH_INNER:-}" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
. "$(dirname "$0")/lib.sh"
enter_sandbox "$@"
SECONDS_OF_CHURN=${1:-60}
HOSTS=20
ETCD=http://198.51.100.254:2379
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

overlay_world $HOSTS

ticks=$(getconf CLK_TCK)
declare -A agent_pid=() member=()
cpu_ticks=0 life_ticks=0 busiest=0
# utime + stime of an agent, and its age, in clock ticks.
account() {
  local pid=$1 stat up age used
  stat=($(sed 's/.*) //' /proc/$pid/stat))
  read -r up _ < /proc/uptime
  used=$(( stat[11] + stat[12] ))
  age=$(echo "$up * $ticks - ${stat[19]}" | bc | cut -d. -f1)
  cpu_ticks=$(( cpu_ticks + used )); life_ticks=$(( life_ticks + age ))
  local share; share=$(echo "scale=4; 100 * $used / $age" | bc)
  if [ "$(echo "$share > $busiest" | bc)" = 1 ]; then busiest=$share; fi
}
join() {
  local i=$1
  h $i "$NSNET" -q network create lab --driver overlay --etcd $ETCD --subnet 10.200.0.0/16
  h $i "$NSNET" -q connect lab c$i
  NSNET_STATE_DIR=/run/nsnet-h$i nsenter --net=/run/netns/h$i "$NSNET" agent 2>>/run/agent-h$i.log &
  agent_pid[$i]=$!; pids+=($!)
  member[$i]=1
}
leave() {
  local i=$1
  account "${agent_pid[$i]}"
  kill "${agent_pid[$i]}"; wait "${agent_pid[$i]}" 2>/dev/null || true
  unset "agent_pid[$i]" "member[$i]"
  h $i "$NSNET" -q network rm lab --force
}
# ms until every other member routes to host i's subnet.
reach() {
  local i=$1 t0=$2 sub waiting=() y
  sub=$(ip -n h$i -4 -o route show dev lab proto kernel | awk '{print $1}')
  for y in "${!member[@]}"; do [ "$y" != "$i" ] && waiting+=("$y"); done
  while [ ${#waiting[@]} -gt 0 ]; do
    local still=()
    for y in "${waiting[@]}"; do
      ip -n h$y -4 route show "$sub" proto 78 | grep -q . || still+=("$y")
    done
    waiting=("${still[@]}")
  done
  echo "scale=1; ($(now) - $t0) / 1000000" | bc
}

for i in $(seq 10); do join $i; done
sleep 1
seed=1853189228
latencies=()
end=$(( $(date +%s) + SECONDS_OF_CHURN ))
steps=0
while [ "$(date +%s)" -lt $end ]; do
  seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
  i=$(( seed / 65536 % HOSTS + 1 ))
  steps=$((steps + 1))
  if [ -n "${member[$i]:-}" ]; then
    leave $i
  else
    h $i "$NSNET" -q network create lab --driver overlay --etcd $ETCD --subnet 10.200.0.0/16
    t0=$(now)
    h $i "$NSNET" -q connect lab c$i
    NSNET_STATE_DIR=/run/nsnet-h$i nsenter --net=/run/netns/h$i "$NSNET" agent 2>>/run/agent-h$i.log &
    agent_pid[$i]=$!; pids+=($!); member[$i]=1
    latencies+=("$(reach $i "$t0")")
  fi
  sleep 0.2
done
for i in "${!agent_pid[@]}"; do account "${agent_pid[$i]}"; done
pct() { printf '%s\n' "${latencies[@]}" | sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'; }
echo "## $steps steps of churn in ${SECONDS_OF_CHURN} s over $HOSTS hosts (${#latencies[@]} arrivals, ${#member[@]} members at the end)"
echo "  arrival -> routed by every other member (ms): p50 $(pct 50), p99 $(pct 99), max $(pct 100)   (target p99 <= 500)"
echo "  agent CPU: mean $(echo "scale=2; 100 * $cpu_ticks / $life_ticks" | bc) % of one core per agent, busiest $(printf '%.2f' "$busiest") %   (target <= 2 %)"
