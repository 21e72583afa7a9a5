#!/usr/bin/env bash
# Attach N namespaces to one bridge and tear them down: nsnet against the
# kernel floor, side by side in one run, inside a private sandbox (fresh
# network + mount namespaces; the host is untouched).
#
#   bench/attach.sh [N...]      (default: 10 100 500 1000; as root)
#
# Floor (see bench/README.md): what the kernel costs without process starts:
#   setup    = ip -batch "netns add" x N
#            + ip -batch "link add vX type veth peer name eth0 netns nsX; link set vX master br up" x N
#            + sum over X of ip -n nsX -batch (addr add, eth0 up, lo up)
#            - sum over X of ip -n nsX -batch /dev/null        (process starts)
#   teardown = ip -batch "netns del" x N + wait until no port is left on br
# nsnet, two ways:
#   per-process: one `nsnet connect` process per namespace (namespace
#              created, veth, lo up, address, eth0 up, default route, state
#              recorded), as a script or a runtime would call it
#   batch:     one `nsnet connect NET ns1 ... nsN` process
#   teardown, matching: one `nsnet disconnect` per namespace, or one
#   `nsnet disconnect NET ns1 ... nsN`, or `nsnet network rm --force`
#   (each + wait until no port is left on the bridge)
#   and declaratively: `nsnet up` / `nsnet down` of a topology file with
#   the N namespaces, with nsnet's peak RSS (GNU time) for each.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# The CNI reference plugins (a peer), hyperfine (spawns the read-only
# commands), bc and GNU time; without them the rows they serve are skipped
# or timed from the shell, and the output says so.
install_missing containernetworking-plugins hyperfine bc time || true
enter_sandbox "$@"
[ $# -gt 0 ] || set -- 10 100 500 1000
tmp=$(mktemp -d)

ms() { echo "scale=1; $1 / 1000000" | bc; }
ports_gone() { while [ -n "$(ip -o link show master "$1" 2>/dev/null)" ]; do sleep 0.001; done; }
settle() { sleep 2; }   # namespace deletion finishes asynchronously

floor_run() { # n [bridges]: the n namespaces spread over that many bridges
  local n=$1 b=${2:-1} k
  for k in $(seq "$b"); do ip link add "brf$k" type bridge && ip link set "brf$k" up; done
  : > "$tmp/ns.batch"; : > "$tmp/veth.batch"; : > "$tmp/del.batch"
  for i in $(seq "$n"); do
    echo "netns add f$i" >> "$tmp/ns.batch"
    echo "link add vf$i type veth peer name eth0 netns f$i" >> "$tmp/veth.batch"
    echo "link set vf$i master brf$(( (i - 1) % b + 1 )) up" >> "$tmp/veth.batch"
    echo "netns del f$i" >> "$tmp/del.batch"
  done
  local t0 t1 t2 t3 t4 t5
  t0=$(now)
  ip -batch "$tmp/ns.batch"
  ip -batch "$tmp/veth.batch"
  t1=$(now)
  for i in $(seq "$n"); do
    printf 'addr add 10.99.%d.%d/16 dev eth0\nlink set eth0 up\nlink set lo up\n' $((i / 250)) $((i % 250 + 2)) > "$tmp/in.batch"
    ip -n "f$i" -batch "$tmp/in.batch"
  done
  t2=$(now)
  for i in $(seq "$n"); do ip -n "f$i" -batch /dev/null; done
  t3=$(now)
  ip -batch "$tmp/del.batch"
  for k in $(seq "$b"); do ports_gone "brf$k"; done
  t4=$(now)
  for k in $(seq "$b"); do ip link del "brf$k"; done
  t5=$(( (t1 - t0) + (t2 - t1) - (t3 - t2) ))
  echo "$t5 $((t4 - t3))"
}

nsnet_run() {
  local n=$1 mode=$2
  "$NSNET" -q network create bench --subnet 10.98.0.0/16 >/dev/null
  local t0 t1 t2
  t0=$(now)
  if [ "$mode" = per-process ]; then
    for i in $(seq "$n"); do "$NSNET" -q connect bench "n$i"; done
  else
    # shellcheck disable=SC2046
    "$NSNET" -q connect bench $(seq -f 'n%g' "$n")
  fi
  t1=$(now)
  case $mode in
    per-process) for i in $(seq "$n"); do "$NSNET" -q disconnect bench "n$i"; done ;;
    # shellcheck disable=SC2046
    batch) "$NSNET" -q disconnect bench $(seq -f 'n%g' "$n") ;;
    rm) "$NSNET" -q network rm bench --force ;;
  esac
  ports_gone bench
  t2=$(now)
  [ "$mode" = rm ] || "$NSNET" -q network rm bench
  echo "$((t1 - t0)) $((t2 - t1))"
}

topology_run() { # n [networks]: the n namespaces spread over that many networks
  local n=$1 b=${2:-1} file="$tmp/topology.toml" k
  {
    for k in $(seq "$b"); do
      printf '[networks.bench%s]\nsubnets = ["10.%s.0.0/16"]\n' "$k" $((97 + k))
    done
    for i in $(seq "$n"); do
      printf '[namespaces.n%s]\nattach = [{ network = "bench%s" }]\n' "$i" $(( (i - 1) % b + 1 ))
    done
  } > "$file"
  local t0 t1 t2
  t0=$(now)
  /usr/bin/time -f '%M' -o "$tmp/rss_up" "$NSNET" -q up -f "$file"
  t1=$(now)
  /usr/bin/time -f '%M' -o "$tmp/rss_down" "$NSNET" -q down -f "$file"
  for k in $(seq "$b"); do ports_gone "bench$k" 2>/dev/null || true; done
  t2=$(now)
  echo "$((t1 - t0)) $((t2 - t1)) $(cat "$tmp/rss_up") $(cat "$tmp/rss_down")"
}

# Where one `nsnet connect` process spends its time with N attachments in
# place: process start (an `nsnet --version`), state (lock + load, journal,
# record, as -v times them), kernel (the steps, as -v times them), and the
# rest (planning, facts, exit), averaged over R connects; then the
# read-only commands, "ls inspect show bridge-link ip-master".
split_run() {
  local n=$1 r=${NSNET_BENCH_SPLIT:-10} names=()
  "$NSNET" -q network create bench --subnet 10.98.0.0/16 >/dev/null
  for i in $(seq "$n"); do names+=("n$i"); done
  "$NSNET" -q connect bench "${names[@]}"
  local t0 t1 start=0 state=0 kernel=0 total=0 clock=0
  for i in $(seq "$r"); do
    # What taking the time itself costs (a `date` process), subtracted.
    t0=$(now); t1=$(now); clock=$((clock + t1 - t0))
    t0=$(now); "$NSNET" --version >/dev/null; t1=$(now); start=$((start + t1 - t0))
    t0=$(now); "$NSNET" -v connect bench "s$i" 2>"$tmp/v" >/dev/null; t1=$(now); total=$((total + t1 - t0))
    state=$((state + $(awk '/ ms  \((lock and load the state|write the journal|record the state)\)/ {s += $2 * 1000000} END {printf "%d", s}' "$tmp/v")))
    kernel=$((kernel + $(awk '/ ms  / && !/ ms  \(/ {s += $2 * 1000000} END {printf "%d", s}' "$tmp/v")))
  done
  # Read-only commands with the N attachments in place, beside iproute2's
  # two listings of the same bridge ports (medians).
  local read_only
  read_only=$(spawn_times "$NSNET network ls" "$NSNET network inspect bench" "$NSNET show" \
    "bridge link show" "ip -br link show master bench" | paste -sd ' ')
  "$NSNET" -q network rm bench --force
  echo "$(((total - clock) / r)) $(((start - clock) / r)) $((state / r)) $((kernel / r)) $read_only"
}

row() { # n label setup_ns teardown_ns floor_setup floor_teardown
  printf '%-5s %-22s %10s %8s %7s %12s %8s %7s\n' "$1" "$2" \
    "$(ms "$3")" "$(echo "scale=2; $3 / $1 / 1000000" | bc)" "$(echo "scale=2; $3 / $5" | bc)" \
    "$(ms "$4")" "$(echo "scale=2; $4 / $1 / 1000000" | bc)" "$(echo "scale=2; $4 / $6" | bc)"
}
printf '%-5s %-22s %10s %8s %7s %12s %8s %7s\n' N method "setup ms" "ms/ns" ratio "teardown ms" "ms/ns" ratio
for n in "$@"; do
  read -r fs ft < <(floor_run "$n"); settle
  read -r ps pt < <(nsnet_run "$n" per-process); settle
  read -r bs bt < <(nsnet_run "$n" batch); settle
  read -r rs rt < <(nsnet_run "$n" rm); settle
  read -r us ut urss drss < <(topology_run "$n"); settle
  row "$n" "floor (ip -batch)" "$fs" "$ft" "$fs" "$ft"
  row "$n" "nsnet, process each" "$ps" "$pt" "$fs" "$ft"
  row "$n" "nsnet, one process" "$bs" "$bt" "$fs" "$ft"
  row "$n" "nsnet, rm --force" "$rs" "$rt" "$fs" "$ft"
  row "$n" "nsnet up / down" "$us" "$ut" "$fs" "$ft"
  echo "      peak RSS: up $((urss / 1024)) MB, down $((drss / 1024)) MB"
  read -r total start state kernel ls inspect show bridge_link ip_master < <(split_run "$n"); settle
  printf '      one more connect: %s ms = process start %s + state %s + kernel %s + the rest %s\n' \
    "$(ms "$total")" "$(ms "$start")" "$(ms "$state")" "$(ms "$kernel")" \
    "$(ms $((total - start - state - kernel)))"
  printf '      connect per process above the setup floor (the nsnet part): %s ms\n' \
    "$(ms $(( (ps - fs) / n )))"
  printf '      read-only, N in place (median, spawned without a shell): network ls %s ms, inspect %s ms, show %s ms\n' \
    "$(ms "$ls")" "$(ms "$inspect")" "$(ms "$show")"
  printf '      the same bridge ports listed by iproute2: bridge link show %s ms, ip link show master %s ms (show: %sx of the quicker)\n' \
    "$(ms "$bridge_link")" "$(ms "$ip_master")" \
    "$(echo "scale=2; $show / $((bridge_link < ip_master ? bridge_link : ip_master))" | bc)"
done
# nsnet's own part of one more connect (all but the kernel's steps) at the
# smallest and the largest N, measured alternately, round after round: the
# machine's slow phases last minutes, longer than the rows above take, and
# alternating makes them weigh on both sizes alike. Medians of all the
# connects of the rounds.
own_worker() { # net: times one `connect NET name` per name read (all but the kernel steps, ns)
  local net=$1 name t0 t1 kernel
  while read -r name; do
    # The clock read without a process (a `date` adds its own noise).
    t0=${EPOCHREALTIME/[.,]/}
    "$NSNET" -v connect "$net" "$name" 2>"$tmp/v.$net" >/dev/null </dev/null
    t1=${EPOCHREALTIME/[.,]/}
    kernel=$(awk '/ ms  / && !/ ms  \(/ {s += $2 * 1000000} END {printf "%d", s}' "$tmp/v.$net")
    echo $(((t1 - t0) * 1000 - kernel))
  done
}
own_part() { # n: all but the kernel steps of each of R more connects, ns
  local n=$1 r=${NSNET_BENCH_SPLIT:-10} names=()
  "$NSNET" -q network create bench --subnet 10.98.0.0/16 >/dev/null
  for i in $(seq "$n"); do names+=("n$i"); done
  "$NSNET" -q connect bench "${names[@]}"
  # What the kernel defers from making the namespaces would land on the
  # first connects (+1 ms each right after a thousand, by hand).
  settle
  seq -f 's%g' "$r" | own_worker bench
  "$NSNET" -q network rm bench --force
}
# The same comparison, paired: each size in a network namespace of its own
# with its own state directory (each nsnet sees only its N), both in place
# at once, their connects alternating one by one, each timed by a shell of
# its own world. Rounds minutes apart still meet the machine in different
# phases; pairs a few milliseconds apart do not.
in_world() { # world command...: runs it in that world's network namespace and state
  local world=$1; shift
  ip netns exec "bench-$world" env NSNET_STATE_DIR="/run/nsnet-$world" NSNET="$NSNET" tmp="$tmp" "$@"
}
own_part_paired() { # small large: prints count, then median q1 q3 at each size, ns
  local r=${NSNET_BENCH_PAIRED:-30} i v world n subnet=96 workers=() small=() large=()
  for world in small large; do
    n=$1; shift
    ip netns add "bench-$world"
    in_world "$world" "$NSNET" -q network create "$world" --subnet "10.$((subnet++)).0.0/16" >/dev/null
    # shellcheck disable=SC2046
    in_world "$world" "$NSNET" -q connect "$world" $(seq -f "${world}%g" 1 "$n")
    mkfifo "$tmp/in.$world" "$tmp/out.$world"
    in_world "$world" bash -c "$(declare -f own_worker); own_worker $world" \
      <"$tmp/in.$world" >"$tmp/out.$world" &
    workers+=($!)
  done
  settle
  exec 5>"$tmp/in.small" 6<"$tmp/out.small" 7>"$tmp/in.large" 8<"$tmp/out.large"
  for i in $(seq "$r"); do
    # Which size goes first alternates too.
    if [ $((i % 2)) = 0 ]; then
      echo "s$i" >&5; read -r v <&6; small+=("$v"); echo "l$i" >&7; read -r v <&8; large+=("$v")
    else
      echo "l$i" >&7; read -r v <&8; large+=("$v"); echo "s$i" >&5; read -r v <&6; small+=("$v")
    fi
  done
  exec 5>&- 6<&- 7>&- 8<&-
  wait "${workers[@]}"
  for world in small large; do
    rm -f "$tmp/in.$world" "$tmp/out.$world"
    in_world "$world" "$NSNET" -q network rm "$world" --force
    ip netns del "bench-$world"
  done
  echo "$r $(median "${small[@]}") $(quartile 1 "${small[@]}") $(quartile 3 "${small[@]}")" \
    "$(median "${large[@]}") $(quartile 1 "${large[@]}") $(quartile 3 "${large[@]}")"
}
quartile() { # q values...: the q-th quartile (2: the median)
  local q=$1; shift
  printf '%s\n' "$@" | sort -n | sed -n "$(( ($# - 1) * q / 4 + 1 ))p"
}
median() { quartile 2 "$@"; }
n_first=$1 n_last=${!#}
if [ "$n_first" != "$n_last" ]; then
  firsts=() lasts=()
  for round in $(seq "${NSNET_BENCH_OWN_ROUNDS:-3}"); do
    # shellcheck disable=SC2207
    firsts+=($(own_part "$n_first")); settle
    # shellcheck disable=SC2207
    lasts+=($(own_part "$n_last")); settle
  done
  own_first=$(median "${firsts[@]}") own_last=$(median "${lasts[@]}")
  printf 'one more connect, all but the kernel steps (process start, state, planning, exit), median of %s connects in alternate rounds: %s ms at N = %s, %s ms at N = %s: %sx\n' \
    "${#firsts[@]}" "$(ms "$own_first")" "$n_first" "$(ms "$own_last")" "$n_last" \
    "$(echo "scale=2; $own_last / $own_first" | bc)"
  echo "      quartiles: $(ms "$(quartile 1 "${firsts[@]}")")-$(ms "$(quartile 3 "${firsts[@]}")") ms at N = $n_first, $(ms "$(quartile 1 "${lasts[@]}")")-$(ms "$(quartile 3 "${lasts[@]}")") ms at N = $n_last"
  read -r -a paired < <(own_part_paired "$n_first" "$n_last"); settle
  printf 'the same, paired: both sizes in place at once, connects alternating one by one, median of %s each: %s ms at N = %s, %s ms at N = %s: %sx\n' \
    "${paired[0]}" "$(ms "${paired[1]}")" "$n_first" "$(ms "${paired[4]}")" "$n_last" \
    "$(echo "scale=2; ${paired[4]} / ${paired[1]}" | bc)"
  echo "      quartiles: $(ms "${paired[2]}")-$(ms "${paired[3]}") ms at N = $n_first, $(ms "${paired[5]}")-$(ms "${paired[6]}") ms at N = $n_last"
fi
# Two networks of N2 each (default 1000), declaratively: up/down against the
# floor for the same namespaces on two bridges.
n2=${NSNET_BENCH_TWO:-1000}
if [ "$n2" -gt 0 ]; then
  read -r fs ft < <(floor_run $((2 * n2)) 2); settle
  read -r us ut urss drss < <(topology_run $((2 * n2)) 2); settle
  row $((2 * n2)) "floor, 2 bridges" "$fs" "$ft" "$fs" "$ft"
  row $((2 * n2)) "nsnet up/down, 2 nets" "$us" "$ut" "$fs" "$ft"
  echo "      peak RSS: up $((urss / 1024)) MB, down $((drss / 1024)) MB"
fi
if [ -x /usr/lib/cni/bridge ]; then
  echo "CNI, one plugin process per call (bench/cni.sh, same machine, now):"
  NSNET_BENCH_INNER='' "$(dirname "$0")/cni.sh" 100 2>/dev/null | sed 's/^/      /' ||
    echo "      (bench/cni.sh failed)"
else
  echo "peers: containernetworking-plugins not installed (apt-get install containernetworking-plugins): no CNI rows"
fi
rm -rf "$tmp"
