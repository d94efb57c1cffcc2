#!/usr/bin/env bash
# How long a graceful stop (SIGTERM) takes once a node's peers are gone: a leader hands its
# groups to a follower heard from lately, or stops at once where none is left to take them,
# rather than wait its grace (two election timeouts) out for a dead one.
#
# Starts three `cohort serve` nodes (4 groups, --election-ticks TICKS of 10 ms) on loopback,
# waits until every group has a leader, kills node 2 (SIGKILL), stops node 3 a second later
# (node 1 is the one peer left to take its groups) and node 1 a second after that (node 2
# dead, node 3 gone: none left), and prints how long each stop took, beside the grace. Fails
# if a node does not stop cleanly within 30 s.
#
#   tools/stop-with-peers-gone.sh [COHORT=target/release/cohort] [BASE_PORT=19300] [TICKS=100]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19300}
ticks=${3:-100}
. "$(dirname "$0")/lib/three-nodes.sh" "$base"
for i in 1 2 3; do start_node "$i" --groups 4 --election-ticks "$ticks"; done
wait_led 4
# Stops node $1 (SIGTERM) and prints how long it took; fails past 30 s or if it failed.
stop() {
  local began status=0 watchdog
  began=$(date +%s%N)
  kill -TERM "${pids[$1]}"
  (sleep 30; kill -9 "${pids[$1]}") >/dev/null 2>&1 &
  watchdog=$!
  wait "${pids[$1]}" || status=$?
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  echo "node $1 $2: stopped in $((($(date +%s%N) - began) / 1000000)) ms (status $status)"
  [ "$status" = 0 ] || { echo "node $1 did not stop cleanly" >&2; exit 1; }
}
echo "a stop's grace: two election timeouts, $((2 * ticks * 10)) ms"
# Grouped: bash's "Killed" notice goes with the group's stderr.
{ kill -9 "${pids[2]}"; wait "${pids[2]}"; } 2>/dev/null || true
sleep 1
stop 3 "(node 2 killed 1 s before; node 1 may take its groups)"
sleep 1
stop 1 "(node 2 dead, node 3 stopped: none may take its groups)"
