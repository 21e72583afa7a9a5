#!/usr/bin/env bash
# One container's `netavark setup` + `teardown` (what podman runs for each
# container start and stop): netavark's own bridge driver against the nsnet
# plugin, the same netavark binary, each network with another container on
# it already, alternating, medians of N (default 50). Goal: the nsnet plugin
# ≥ 3× faster. Also the plugin alone (nsnet setup + teardown, as netavark
# runs it) and netavark with a trivial plugin (`nsnet info` answers setup
# as a plugin that does nothing would), to show netavark's own share.
#
# netavark 2.1.0 as scripts/test builds it (/opt/nsnet-tools/bin/netavark,
# or NSNET_NETAVARK). Everything runs inside the benchmark's sandbox.
#   usage: bench/netavark.sh [N]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
enter_sandbox "$@"
N=${1:-50}
NETAVARK=${NSNET_NETAVARK:-/opt/nsnet-tools/bin/netavark}
[ -x "$NETAVARK" ] || { echo "netavark not found at $NETAVARK (see scripts/test)" >&2; exit 2; }
tmp=$(mktemp -d /run/bench-netavark.XXXXXX)
mkdir -p "$tmp/plugins" "$tmp/config"
ln -s "$NSNET" "$tmp/plugins/nsnet"
export NETAVARK_FW=nftables
na() { "$NETAVARK" --config "$tmp/config" --rootless=false --plugin-directory "$tmp/plugins" "$@"; }

network() { # name, driver, subnet
  na create <<EOF
{"network": {"name": "$1", "id": "$(printf '%064d' "${#1}")", "driver": "$2", "ipv6_enabled": false,
  "internal": false, "dns_enabled": false, "subnets": [{"subnet": "$3"}],
  "network_interface": "$1"},
 "used": {"interfaces": [], "names": {}, "subnets": []},
 "options": {"subnet_pools": [], "default_interface_name": "podman", "check_used_subnets": false}}
EOF
}
call() { # network JSON file, network name, container, address
  cat <<EOF
{"container_id": "$(printf '%060d' 0)$3", "container_name": "c$3", "container_hostname": "c$3",
 "networks": {"$2": {"interface_name": "eth0", "static_ips": ["$4"]}},
 "network_info": {"$2": $(cat "$1")}, "port_mappings": null}
EOF
}
network brnet bridge 10.80.0.0/24 >"$tmp/br.json"
network nsnet0 nsnet 10.81.0.0/24 >"$tmp/ns.json"
for kind in br ns; do
  net=$([ $kind = br ] && echo brnet || echo nsnet0)
  prefix=$([ $kind = br ] && echo 10.80.0 || echo 10.81.0)
  call "$tmp/$kind.json" "$net" 1000 "$prefix.10" >"$tmp/$kind-keep.json"
  call "$tmp/$kind.json" "$net" 2000 "$prefix.20" >"$tmp/$kind-one.json"
  ip netns add "keep-$kind"; ip netns add "one-$kind"
  na setup "/run/netns/keep-$kind" <"$tmp/$kind-keep.json" >/dev/null
done
# The plugin's own input for one call, as netavark passes it.
printf '{"container_id": "x", "container_name": "cx", "port_mappings": null, "network": %s,
  "network_options": {"interface_name": "eth0", "static_ips": ["10.81.0.20"]}}' "$(cat "$tmp/ns.json")" >"$tmp/plugin.json"

ms() { awk -v t="$1" 'BEGIN { printf "%.1f", t / 1e6 }'; }
median() { sort -n | sed -n "$(((N + 1) / 2))p"; }
cycle() { # kind: one setup + teardown through netavark
  na setup "/run/netns/one-$1" <"$tmp/$1-one.json" >/dev/null
  na teardown "/run/netns/one-$1" <"$tmp/$1-one.json" >/dev/null
}
plugin_only() {
  "$NSNET" setup /run/netns/one-ns <"$tmp/plugin.json" >/dev/null
  "$NSNET" teardown /run/netns/one-ns <"$tmp/plugin.json" >/dev/null
}
declare -A T
for _ in $(seq "$N"); do
  for k in br ns; do
    t0=$(now); cycle "$k"; t1=$(now); T[$k]+="$((t1 - t0)) "
  done
  t0=$(now); plugin_only; t1=$(now); T[plugin]+="$((t1 - t0)) "
  t0=$(now); "$NSNET" info >/dev/null; "$NSNET" info >/dev/null; t1=$(now); T[exec]+="$((t1 - t0)) "
done
med() { printf '%s\n' ${T[$1]} | median; }
br=$(med br) ns=$(med ns)
echo "netavark $("$NETAVARK" --version | cut -d' ' -f2), setup + teardown of one container, medians of $N"
printf '%-46s %8s ms\n' "netavark, its bridge driver" "$(ms "$br")"
printf '%-46s %8s ms   %s× faster\n' "netavark, the nsnet plugin" "$(ms "$ns")" \
  "$(awk -v a="$br" -v b="$ns" 'BEGIN { printf "%.1f", a / b }')"
printf '%-46s %8s ms\n' "  of which nsnet setup + teardown (by hand)" "$(ms "$(med plugin)")"
printf '%-46s %8s ms\n' "  of which two nsnet processes doing nothing" "$(ms "$(med exec)")"
