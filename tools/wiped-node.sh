#!/usr/bin/env bash
# What a node restarted under its id after losing its data does, and what it costs.
#
# Starts three `cohort serve` nodes (2 groups) on loopback, has node 1 lead both groups (and
# no leader balance: a leader elected after the kill would not know what node 3 had
# acknowledged, and could not tell that it lost it; long election timeouts keep a loaded
# machine from electing one), writes 8 keys, kills node 3
# (SIGKILL), wipes it, starts it again with the same flags, writes 4 more keys, waits until
# node 1 and node 3 logged what node 3 lost, then prints each node's CPU time over the next
# 3 s (nothing is written meanwhile), each leader's view of node 3, and what the nodes logged
# about it. The third argument says what is wiped:
# - logs: its log's files (core-*/*.wal*, *.snap), not the rest of its dir, so it keeps its
#   incarnation (core-*/incarnation) and its peers let it in: the leaders find the lost
#   entries and send them again (what a machine crash under --sync never does to the
#   unsynced end of a log, at its extreme);
# - dir: the whole data dir (a replaced disk): it comes back on a new incarnation, its peers
#   refuse it, and it stops with an error that says how to replace it.
# (A restored older copy of a data dir is refused too: tests/node_cluster.rs shows it.)
#
#   tools/wiped-node.sh [COHORT=target/release/cohort] [BASE_PORT=19100] [logs|dir]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19100}
wipe=${3:-logs}
case $wipe in logs | dir) ;; *) echo "the third argument is logs or dir, not $wipe" >&2; exit 2 ;; esac
dir=$(mktemp -d)
a1=127.0.0.1:$base a2=127.0.0.1:$((base + 10)) a3=127.0.0.1:$((base + 20))
peers="1=$a1,2=$a2,3=$a3"
pids=()
cleanup() {
  local status=$?
  # The nodes, and a watchdog of node 3 (a bare `wait` waited it out, up to 30 s).
  kill "${pids[@]}" $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$status" != 0 ]; then
    # What went wrong is in the nodes' logs, which go with the folder.
    for i in 1 2 3; do echo "--- node $i's log, its end:" >&2; tail -n 20 "$dir/n$i.log" >&2 || true; done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
start() {
  local i=$1
  # --stop-with-parent: a script killed outright (a test's time limit) leaves none running.
  "$cohort" serve --id "$i" --peers "$peers" --data-dir "$dir/d$i" --groups 2 \
    --no-leader-balance --election-ticks 100 --stop-with-parent >>"$dir/n$i.log" 2>&1 &
  pids[i - 1]=$!
}
# Waits up to LIMIT_S seconds for PATTERN to be in FILE COUNT times; says so and fails if not.
wait_for() {
  local file=$1 pattern=$2 limit_s=$3 count=${4:-1} tenths=0 seen
  while :; do
    seen=$(grep -c -- "$pattern" "$file" 2>/dev/null || true)
    [ "${seen:-0}" -ge "$count" ] && return 0
    if [ "$tenths" -ge $((limit_s * 10)) ]; then
      echo "$file holds \"$pattern\" ${seen:-0} times after $limit_s s, not $count" >&2
      return 1
    fi
    sleep 0.1
    tenths=$((tenths + 1))
  done
}
for i in 1 2 3; do start $i; done
# Each node serves clients once its log is open (its first segment made and synced).
for i in 1 2 3; do wait_for "$dir/n$i.log" "clients on" 60; done
for g in 0 1; do "$cohort" leader transfer --nodes "$a1,$a2" --group $g --to 1 >/dev/null; done
for k in 1 2 3 4 5 6 7 8; do "$cohort" put --nodes "$a1,$a2" "k$k" "v$k" >/dev/null; done
kill -9 "${pids[2]}"
wait "${pids[2]}" 2>/dev/null || true
if [ "$wipe" = dir ]; then rm -rf "$dir/d3"; else rm -f "$dir"/d3/core-*/*.wal* "$dir"/d3/core-*/*.snap; fi
started=$(date +%s%N)
start 3
if [ "$wipe" = dir ]; then
  status=0
  # Refused, it stops within seconds; one let in would run on: 30 s, then it is killed.
  (sleep 30; kill -9 "${pids[2]}") >/dev/null 2>&1 &
  watchdog=$!
  wait "${pids[2]}" || status=$?
  if ! kill "$watchdog" 2>/dev/null; then
    echo "node 3 still ran 30 s after its start: it was not refused (killed)" >&2
    exit 1
  fi
  wait "$watchdog" 2>/dev/null || true
  echo "node 3 exited with status $status, $((($(date +%s%N) - started) / 1000000)) ms after its start"
  grep -h "other data" "$dir"/n*.log | sed 's/\x1b\[[0-9;]*m//g' | sort -u
  # Refused means: node 3 failed, saying that its peers knew it with other data.
  if [ "$status" -eq 0 ] || ! sed 's/\x1b\[[0-9;]*m//g' "$dir/n3.log" \
      | grep -q "knew this node with other data"; then
    echo "node 3 stopped, but not refused for its other data (see its log above)" >&2
    exit 1
  fi
  exit 0
fi
wait_for "$dir/n3.log" "clients on" 60 2
for k in 11 12 13 14; do "$cohort" put --nodes "$a1,$a2" "k$k" "v$k" >/dev/null; done
# Node 1 leads both groups: it finds what node 3 lost in each, and node 3 says so too.
wait_for "$dir/n1.log" "a follower lost entries" 60 2
wait_for "$dir/n3.log" "this node lost entries" 60 2
# Node 3 holds every write again once, in each group, it applied the leader's commit (which
# counts k1…k14): within 60 s, or the script fails.
behind() {
  "$cohort" status --nodes "$a1" --timeout-ms 1000 2>/dev/null | awk '
    $1 ~ /^[0-9]+$/ && NF >= 9 { role[$1" "$3] = $4; commit[$1" "$3] = $7; applied[$1" "$3] = $8; g[$3] = 1 }
    END { n = 0; groups = 0; for (k in g) { groups++; c = -1; for (i = 1; i <= 3; i++) if (role[i" "k] == "leader") c = commit[i" "k];
          if (c < 0 || applied["3 "k] < c) n++ }
          if (groups < 2) print "unknown"; else print n }'
}
tenths=0
until [ "$(behind)" = 0 ]; do
  if [ "$tenths" -ge 600 ]; then
    echo "node 3 did not apply every group's commit within 60 s of its restart" >&2
    exit 1
  fi
  sleep 0.1
  tenths=$((tenths + 1))
done
echo "node 3 holds every write again: it applied each group's commit"
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
# A leader elected after node 3's kill could not have told: say if there was one.
grep -hi ": leader in term" "$dir"/n*.log || true
