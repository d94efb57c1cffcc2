#!/usr/bin/env bash
# How long clients wait on a leader that freezes (SIGSTOP: a stalled VM, a debugger; a machine
# gone without a word looks the same to its clients: connections open and silent). A client
# whose connection says nothing for an election timeout asks the other members who leads, and
# goes to the new leader once one is elected (about an election timeout later); before session
# 72 it waited out its attempt (2 s).
#
# Starts three `cohort serve` nodes (8 groups) on loopback under an open-loop write load
# (`cohort bench --rate RATE`), freezes node 1 (which leads about a third of the groups) for
# FREEZE_S seconds 3 s into the measured time, and prints the load's longest waits: `service`
# from each request's send, `request` from when the open loop meant to send it.
#
#   tools/frozen-leader.sh [COHORT=target/release/cohort] [BASE_PORT=19700] [FREEZE_S=4]
#                          [RATE=500]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19700}
freeze_s=${3:-4}
rate=${4:-500}
. "$(dirname "$0")/lib/three-nodes.sh" "$base"
for i in 1 2 3; do start_node "$i" --groups 8; done
wait_led 8
seconds=$(awk -v f="$freeze_s" 'BEGIN { printf "%d", f + 6 }')
start_writes "$rate" "$seconds"
sleep 4
led=$({ "$cohort" status --nodes "$a1,$a2,$a3" 2>/dev/null || true; } \
  | awk '$1 == 1 && $4 == "leader" { n++ } END { print n + 0 }')
kill -STOP "${pids[1]}"
sleep "$freeze_s"
kill -CONT "${pids[1]}"
wait "$load" || { cat "$dir/bench.log" >&2; exit 1; }
failed=$(grep -o "[0-9]* requests failed" "$dir/bench.log" || echo "? requests failed")
echo "node 1 (leader of $led of 8 groups) frozen ${freeze_s} s under ${rate} writes/s:" \
  "longest service $(longest service), longest request $(longest request); ${failed}"
