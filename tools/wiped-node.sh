#!/usr/bin/env bash
# What a node restarted under its id on a wiped data dir costs and whether it gets its data
# back: the case of a replaced disk, or an operator's slip.
#
# Starts three `cohort serve` nodes (2 groups) on loopback, writes 8 keys, kills node 3
# (SIGKILL), deletes its data dir, starts it again with the same flags, writes 4 more keys,
# then prints each node's CPU time over the next 3 s (nothing is written meanwhile), each
# leader's view of node 3, node 3's groups, and the lines the nodes logged about lost entries.
#
#   tools/wiped-node.sh [COHORT=target/release/cohort] [BASE_PORT=19100]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19100}
dir=$(mktemp -d)
a1=127.0.0.1:$base a2=127.0.0.1:$((base + 10)) a3=127.0.0.1:$((base + 20))
peers="1=$a1,2=$a2,3=$a3"
pids=(0 0 0)
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
start() {
  local i=$1 a=$2
  "$cohort" serve --id "$i" --listen "$a" --peers "$peers" --data-dir "$dir/d$i" --groups 2 \
    >>"$dir/n$i.log" 2>&1 &
  pids[i - 1]=$!
}
i=1
for a in $a1 $a2 $a3; do
  start $i "$a"
  i=$((i + 1))
done
sleep 2
for k in 1 2 3 4 5 6 7 8; do "$cohort" put --nodes "$a1,$a2" "k$k" "v$k" >/dev/null; done
kill -9 "${pids[2]}"
wait "${pids[2]}" 2>/dev/null || true
rm -rf "$dir/d3"
start 3 "$a3"
sleep 2
for k in 11 12 13 14; do "$cohort" put --nodes "$a1,$a2" "k$k" "v$k" >/dev/null; done
sleep 1
ticks() { for p in "${pids[@]}"; do awk '{print $14 + $15}' "/proc/$p/stat"; done; }
mapfile -t before < <(ticks)
sleep 3
mapfile -t after < <(ticks)
hz=$(getconf CLK_TCK)
for i in 0 1 2; do
  echo "node $((i + 1)): $(((after[i] - before[i]) * 1000 / hz)) ms of CPU in 3 s"
done
"$cohort" status --nodes "$a1" | grep -E "peer 3|^3 " || true
grep -h "lost entries" "$dir"/n*.log || echo "no node logged lost entries"
