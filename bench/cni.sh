#!/usr/bin/env bash
# CNI plugin mode against the reference `bridge` + `host-local` plugins
# (Debian package containernetworking-plugins), same configuration shape,
# same run, inside a private sandbox: N sequential ADDs, then N DELs, one
# plugin process each, as a runtime calls them.
#   bench/cni.sh [N]     (default 100; as root; installs the plugins when
#                         missing)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
install_missing containernetworking-plugins bc || true
[ -x /usr/lib/cni/bridge ] || { echo "bench/cni.sh: needs containernetworking-plugins" >&2; exit 2; }
enter_sandbox "$@"
n=${1:-100}
tmp=$(mktemp -d)
mkdir -p "$tmp/plugins"
ln -s "$NSNET" "$tmp/plugins/nsnet"

conf() { # type bridge subnet ipam-type
  cat <<CONF
{"cniVersion":"1.0.0","name":"net-$2","type":"$1","bridge":"$2","isGateway":true,"ipMasq":true,
 "ipam":{"type":"$4","dataDir":"$tmp/ipam","ranges":[[{"subnet":"$3"}]],"routes":[{"dst":"0.0.0.0/0"}]}}
CONF
}

run() { # label type bridge subnet ipam-type -> "add_ns del_ns"
  local c t0 t1 t2
  c=$(conf "$2" "$3" "$4" "$5")
  for i in $(seq "$n"); do ip netns add "$3-$i"; done
  t0=$(now)
  for i in $(seq "$n"); do
    echo "$c" | CNI_COMMAND=ADD CNI_CONTAINERID="c$i" CNI_NETNS="/run/netns/$3-$i" CNI_IFNAME=eth0 \
      CNI_PATH="$tmp/plugins:/usr/lib/cni" "$tmp/plugins/$2" > /dev/null 2>&1 || \
      { echo "$1: ADD $i failed" >&2; exit 1; }
  done
  t1=$(now)
  for i in $(seq "$n"); do
    echo "$c" | CNI_COMMAND=DEL CNI_CONTAINERID="c$i" CNI_NETNS="/run/netns/$3-$i" CNI_IFNAME=eth0 \
      CNI_PATH="$tmp/plugins:/usr/lib/cni" "$tmp/plugins/$2" > /dev/null 2>&1 || \
      { echo "$1: DEL $i failed" >&2; exit 1; }
  done
  t2=$(now)
  for i in $(seq "$n"); do ip netns del "$3-$i"; done
  echo "$((t1 - t0)) $((t2 - t1))"
}

ln -s /usr/lib/cni/bridge "$tmp/plugins/bridge"
read -r ra rd < <(run "reference" bridge refbr 10.70.0.0/16 host-local)
sleep 2
read -r na nd < <(run "nsnet" nsnet nsbr 10.71.0.0/16 nsnet)
ms() { echo "scale=2; $1 / $n / 1000000" | bc; }
printf '%-40s %12s %12s\n' "N=$n, one plugin process per call" "ADD ms" "DEL ms"
printf '%-40s %12s %12s\n' "reference bridge + host-local" "$(ms "$ra")" "$(ms "$rd")"
printf '%-40s %12s %12s\n' "nsnet (own IPAM)" "$(ms "$na")" "$(ms "$nd")"
printf '%-40s %12s %12s\n' "speed-up" "$(echo "scale=1; $ra / $na" | bc)x" "$(echo "scale=1; $rd / $nd" | bc)x"
rm -rf "$tmp"
