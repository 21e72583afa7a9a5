#!/usr/bin/env bash
# Before and after: the executable built from git revision REV against the
# working tree's, in one sandbox and one run of the machine, their calls
# alternating one by one (so that the machine's slow phases, which last
# minutes, weigh on both alike). Each has its own state directory and
# network with N attachments in place; then R rounds of: connect, disconnect,
# a CNI ADD and DEL (a network of its own each), `network ls` and `show`.
# Prints the median of each, old and new, and new/old.
#   bench/ab.sh REV [N] [R]      (default N = 500, R = 30; as root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if [ -z "${NSNET_BENCH_INNER:-}" ]; then
  rev=${1:?usage: bench/ab.sh REV [N] [R]}
  cd "$(dirname "$0")/.."
  . scripts/static-build
  old=/tmp/nsnet-ab-$(git rev-parse --short "$rev")
  if [ ! -x "$old/nsnet" ]; then
    rm -rf "$old.src"
    git worktree add -q --detach "$old.src" "$rev"
    (cd "$old.src" && CARGO_TARGET_DIR="$old.target" cargo build --release --quiet --target "$NSNET_TARGET")
    mkdir -p "$old"
    cp "$old.target/$NSNET_TARGET/release/nsnet" "$old/nsnet"
    git worktree remove --force "$old.src"
  fi
  export NSNET_AB_OLD="$old/nsnet"
fi
enter_sandbox "$@"
n=${2:-500}
rounds=${3:-30}
tmp=$(mktemp -d)
mkdir -p "$tmp/old" "$tmp/new"
ln -s "$NSNET_AB_OLD" "$tmp/old/nsnet"
ln -s "$NSNET" "$tmp/new/nsnet"
i=0
for side in old new; do
  i=$((i + 1))
  NSNET_STATE_DIR=/run/nsnet-$side "$tmp/$side/nsnet" -q network create "ab$side" --subnet "10.9$i.0.0/16" --no-dns
  NSNET_STATE_DIR=/run/nsnet-$side "$tmp/$side/nsnet" -q connect "ab$side" $(seq -f "$side%g" "$n")
  cat > "$tmp/$side.json" <<CONF
{"cniVersion":"1.0.0","name":"cni$side","type":"nsnet","bridge":"cni$side","dns":false,
 "ipam":{"type":"nsnet","ranges":[[{"subnet":"10.8$i.0.0/16"}]]}}
CONF
done
sleep 2 # the kernel's deferred work of the namespaces just made
python3 - "$tmp" "$rounds" <<'PY'
import os, statistics, subprocess, sys, time
tmp, rounds = sys.argv[1], int(sys.argv[2])
def run(side, args, env=None, stdin=None):
    e = dict(os.environ, NSNET_STATE_DIR=f"/run/nsnet-{side}", **(env or {}))
    t0 = time.perf_counter_ns()
    done = subprocess.run([f"{tmp}/{side}/nsnet", *args], env=e, input=stdin,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = time.perf_counter_ns() - t0
    if done.returncode != 0:
        sys.exit(f"{side} {args}: {done.stderr.decode().strip()}")
    return t
times = {}
def note(what, side, t):
    times.setdefault(what, {"old": [], "new": []})[side].append(t)
confs = {s: open(f"{tmp}/{s}.json", "rb").read() for s in ("old", "new")}
for r in range(rounds):
    sides = ("old", "new") if r % 2 == 0 else ("new", "old")
    for s in sides:
        note("connect", s, run(s, ["-q", "connect", f"ab{s}", f"x{s}{r}"]))
    for s in sides:
        note("disconnect", s, run(s, ["-q", "disconnect", f"ab{s}", f"x{s}{r}"]))
    for s in sides:
        subprocess.run(["ip", "netns", "add", f"c{s}{r}"], check=True)
    for command in ("ADD", "DEL"):
        for s in sides:
            env = {"CNI_COMMAND": command, "CNI_CONTAINERID": f"c{r}", "CNI_IFNAME": "eth0",
                   "CNI_NETNS": f"/run/netns/c{s}{r}", "CNI_PATH": f"{tmp}/{s}"}
            note(f"CNI {command}", s, run(s, [], env, confs[s]))
    for s in sides:
        subprocess.run(["ip", "netns", "del", f"c{s}{r}"], check=True)
    for what, args in (("network ls", ["network", "ls"]), ("show", ["show"])):
        for s in sides:
            note(what, s, run(s, args))
print(f"{'':<12} {'old ms':>8} {'new ms':>8} {'new/old':>8}")
for what, t in times.items():
    o, n = statistics.median(t["old"]) / 1e6, statistics.median(t["new"]) / 1e6
    print(f"{what:<12} {o:8.2f} {n:8.2f} {n / o:7.2f}x")
PY
