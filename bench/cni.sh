#!/usr/bin/env bash
# CNI plugin mode against the reference `bridge` + `host-local` plugins
# (Debian package containernetworking-plugins), same configuration shape,
# same run, inside a private sandbox: N sequential ADDs, then N DELs, one
# plugin process each, spawned as a runtime spawns them, the two plugins'
# calls alternating.
#   bench/cni.sh [N]     (default 100; as root; installs the plugins when
#                         missing)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
install_missing containernetworking-plugins bc python3 || true
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

# The calls, spawned as a runtime spawns a plugin (Python's subprocess:
# vfork and exec, the configuration on a pipe), not through a shell
# pipeline, whose two forks of bash (about 1 ms each here) would weigh on
# the quicker plugin's figure; each call's wall time is its own. The two
# plugins' calls alternate (reference ADD i, nsnet ADD i, ...; then the
# DELs alike) so that the machine's slow phases, which last minutes, weigh
# on both alike. Prints "reference-ADD nsnet-ADD reference-DEL nsnet-DEL",
# sums in ns.
calls() {
  python3 - "$n" "$tmp/plugins" <<'PY'
import os, subprocess, sys, time
n, plugins = int(sys.argv[1]), sys.argv[2]
confs = {kind: open(f"{plugins}/../{kind}.json", "rb").read() for kind in ("bridge", "nsnet")}
bridges = {"bridge": "refbr", "nsnet": "nsbr"}
sums = []
for command in ("ADD", "DEL"):
    total = {"bridge": 0, "nsnet": 0}
    for i in range(1, n + 1):
        for kind in ("bridge", "nsnet"):
            env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=f"c{i}",
                       CNI_NETNS=f"/run/netns/{bridges[kind]}-{i}", CNI_IFNAME="eth0",
                       CNI_PATH=f"{plugins}:/usr/lib/cni")
            t0 = time.perf_counter_ns()
            done = subprocess.run([f"{plugins}/{kind}"], input=confs[kind], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            total[kind] += time.perf_counter_ns() - t0
            if done.returncode != 0:
                sys.exit(f"{kind}: {command} {i} failed: {done.stderr.decode().strip()}")
    sums += [total["bridge"], total["nsnet"]]
print(*sums)
PY
}

ln -s /usr/lib/cni/bridge "$tmp/plugins/bridge"
conf bridge refbr 10.70.0.0/16 host-local > "$tmp/bridge.json"
conf nsnet nsbr 10.71.0.0/16 nsnet > "$tmp/nsnet.json"
for i in $(seq "$n"); do ip netns add "refbr-$i"; ip netns add "nsbr-$i"; done
read -r ra na rd nd < <(calls)
for i in $(seq "$n"); do ip netns del "refbr-$i"; ip netns del "nsbr-$i"; done
ms() { echo "scale=2; $1 / $n / 1000000" | bc; }
printf '%-40s %12s %12s\n' "N=$n, one plugin process per call" "ADD ms" "DEL ms"
printf '%-40s %12s %12s\n' "reference bridge + host-local" "$(ms "$ra")" "$(ms "$rd")"
printf '%-40s %12s %12s\n' "nsnet (own IPAM)" "$(ms "$na")" "$(ms "$nd")"
printf '%-40s %12s %12s\n' "speed-up" "$(echo "scale=1; $ra / $na" | bc)x" "$(echo "scale=1; $rd / $nd" | bc)x"
rm -rf "$tmp"
