#!/usr/bin/env bash
# The simulated LAN of the tests of networks on the LAN (macvlan,
# host-device), made in the caller's sandbox: a bridge br0 in namespace
# "lan" with the LAN's router at 192.0.2.1, a DHCP-less other machine in
# namespace "other" holding ADDRESS... (interface o0), and a veth from the
# LAN bridge to the sandbox's own namespace, lan0, up: the parent.
#   usage: simulated-lan.sh [--host ADDRESS/LEN] [--other-mac MAC] ADDRESS...
#     --host       an address of the sandbox's own on lan0
#     --other-mac  the other machine's MAC (a fixed one to look for)
# Undone by: ip link del lan0; ip netns del lan; ip netns del other
set -euo pipefail
host="" mac=()
while [ $# -gt 0 ]; do
  case $1 in
    --host) host=$2; shift 2 ;;
    --other-mac) mac=(address "$2"); shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "simulated-lan.sh: the other machine needs an address" >&2; exit 2; }
ip netns add lan
ip -n lan link set lo up
ip -n lan link add br0 type bridge
ip -n lan link set br0 up
ip -n lan addr add 192.0.2.1/24 dev br0
ip netns add other
ip link add o0 netns other "${mac[@]}" type veth peer name p-other netns lan
ip -n lan link set p-other master br0 up
ip -n other link set o0 up
for a in "$@"; do ip -n other addr add "$a/24" dev o0; done
ip link add lan0 type veth peer name p-host netns lan
ip -n lan link set p-host master br0 up
ip link set lan0 up
[ -z "$host" ] || ip addr add "$host" dev lan0
