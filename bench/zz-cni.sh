#!/usr/bin/env bash
set -euo pipefail
. "$(dirname "$0")/lib.sh"
enter_sandbox "$@"
tmp=$(mktemp -d); mkdir -p "$tmp/plugins"; ln -s "$NSNET" "$tmp/plugins/nsnet"
c='{"cniVersion":"1.0.0","name":"net-b","type":"nsnet","bridge":"b","isGateway":true,"ipMasq":true,"ipam":{"type":"nsnet","ranges":[[{"subnet":"10.99.0.0/16"}]],"routes":[{"dst":"0.0.0.0/0"}]}}'
add() { echo "$c" | CNI_COMMAND=ADD CNI_CONTAINERID="c$1" CNI_NETNS="/run/netns/n$1" CNI_IFNAME=eth0 CNI_PATH="$tmp/plugins" "$tmp/plugins/nsnet" >/dev/null; }
for i in $(seq 100); do ip netns add n$i; add $i; done
for i in 101 102 103 104 105; do ip netns add n$i; done
for i in 101 102 103; do echo "$c" | NSNET_VERBOSE=1 CNI_COMMAND=ADD CNI_CONTAINERID="c$i" CNI_NETNS="/run/netns/n$i" CNI_IFNAME=eth0 CNI_PATH="$tmp/plugins" "$tmp/plugins/nsnet" 2>&1 >/dev/null | tail -30; echo ---; done
perf stat -r 20 -e task-clock sh -c "echo '$c' | CNI_COMMAND=VERSION $tmp/plugins/nsnet >/dev/null" 2>&1 | grep -E "task-clock|elapsed"
perf stat -r 20 -e task-clock /bin/true 2>&1 | grep -E "task-clock|elapsed"
