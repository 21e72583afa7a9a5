#!/usr/bin/env bash
# CNI ADD on an overlay network against CNI ADD on a local one, the same
# plugin, alternating, N each (default 100), one plugin process per call
# spawned as a runtime spawns it: an ADD on an overlay must cost no more
# than on a local network (goal ≤ 1.1×: no etcd write per ADD, only the
# node's first, which joins and is left out here). etcd runs inside the
# benchmark's sandbox, on a bridge of its own (192.0.2.254).
#   bench/cni-overlay.sh [N]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
install_missing etcd-server python3 curl || true
command -v etcd >/dev/null || { echo "bench/cni-overlay.sh: needs etcd-server" >&2; exit 2; }
enter_sandbox "$@"
n=${1:-100}
tmp=$(mktemp -d /run/bench-cni-ov.XXXXXX)
ip link add ul0 type bridge; ip addr add 192.0.2.254/24 dev ul0; ip link set ul0 up
etcd --name e1 --data-dir "$tmp/etcd" --listen-client-urls http://192.0.2.254:2379 \
  --advertise-client-urls http://192.0.2.254:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster e1=http://127.0.0.1:2380 \
  >"$tmp/etcd.log" 2>&1 &
for _ in $(seq 100); do curl -s -m 1 http://192.0.2.254:2379/health | grep -q true && break; sleep 0.1; done
cat >"$tmp/local.json" <<'EOF'
{"cniVersion": "1.0.0", "name": "loc", "type": "nsnet", "bridge": "loc0", "dns": false,
 "subnets": ["10.71.0.0/16"]}
EOF
cat >"$tmp/overlay.json" <<'EOF'
{"cniVersion": "1.0.0", "name": "ovl", "type": "nsnet", "bridge": "ovl0", "dns": false,
 "subnets": ["10.230.0.0/16"], "overlay": {"etcd": ["http://192.0.2.254:2379"], "hostSubnetLen": 22}}
EOF
for i in $(seq 0 "$n"); do ip netns add "l$i"; ip netns add "o$i"; done

python3 - "$n" "$NSNET" "$tmp" <<'PY'
import os, statistics, subprocess, sys, time
n, nsnet, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
confs = {k: open(f"{tmp}/{k}.json", "rb").read() for k in ("local", "overlay")}
prefix = {"local": "l", "overlay": "o"}
def call(kind, command, i):
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=f"c{i}",
               CNI_NETNS=f"/run/netns/{prefix[kind]}{i}", CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
    t0 = time.perf_counter_ns()
    done = subprocess.run([nsnet], input=confs[kind], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    if done.returncode != 0:
        sys.exit(f"{kind}: {command} {i} failed: {done.stderr.decode().strip()}")
    return time.perf_counter_ns() - t0
# The first ADD of each network makes it (the overlay's joins etcd).
first = {k: call(k, "ADD", 0) for k in ("local", "overlay")}
times = {("local", "ADD"): [], ("overlay", "ADD"): [], ("local", "DEL"): [], ("overlay", "DEL"): []}
for command in ("ADD", "DEL"):
    for i in range(1, n + 1):
        for kind in ("local", "overlay"):
            times[(kind, command)].append(call(kind, command, i))
ms = lambda v: statistics.median(v) / 1e6
print(f"CNI calls, one process each, medians of {n} (alternating)")
print(f"{'':28} {'local':>9} {'overlay':>9}   ratio")
for command in ("ADD", "DEL"):
    a, b = ms(times[("local", command)]), ms(times[("overlay", command)])
    print(f"{command:28} {a:7.2f} ms {b:7.2f} ms   {b / a:.2f}x")
print(f"{'first ADD (makes the network)':28} {first['local'] / 1e6:7.2f} ms {first['overlay'] / 1e6:7.2f} ms")
PY
