#!/usr/bin/env bash
set -euo pipefail
. /work/main/bench/lib.sh
enter_sandbox "$@"
ETCD=http://198.51.100.254:2379
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
ip link add ul address 02:00:00:00:00:fe type bridge && ip link set ul up && ip addr add 198.51.100.254/24 dev ul
for i in 1 2; do
  ip netns add h$i
  ip link add h${i}u type veth peer name eth0 netns h$i
  ip link set h${i}u master ul up
  ip -n h$i link set lo up
  ip -n h$i addr add 198.51.100.$i/24 dev eth0 && ip -n h$i link set eth0 up
done
mkdir -p /run/etcd-data
etcd --name e1 --data-dir /run/etcd-data --listen-client-urls $ETCD --advertise-client-urls $ETCD \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster e1=http://127.0.0.1:2380 >/run/etcd.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s -m 1 $ETCD/health | grep -q true && break; sleep 0.1; done
h() { local i=$1; shift; NSNET_STATE_DIR=/run/nsnet-h$i nsenter --net=/run/netns/h$i "$@"; }
addr() { ip -n "$1" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
for i in 1 2; do
  h $i "$NSNET" -q network create lab --driver overlay --etcd $ETCD --subnet 10.200.0.0/16
  h $i "$NSNET" -q connect lab c$i
  NSNET_STATE_DIR=/run/nsnet-h$i nsenter --net=/run/netns/h$i "$NSNET" agent 2>>/run/agent-h$i.log &
  pids+=($!)
done
sleep 0.5
ip netns exec c1 ping -c1 -W1 $(addr c2) >/dev/null
tput() { # ns-client dst
  ip netns exec $3 iperf3 -s -D -1 >/dev/null; sleep 0.3
  ip netns exec $1 iperf3 -c "$2" -t 3 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))'
}
export -f tput addr
bash /tmp/exp/inner.sh
