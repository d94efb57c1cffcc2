#!/usr/bin/env bash
# Whether a pause of a node's process (SIGSTOP, then SIGCONT: what a debugger, a frozen VM or
# an overloaded host gives) is taken for a disk that stopped answering. A core that finds a
# sync of its log in flight past its patience (1 s by default) warns "a sync of the log has
# not ended …" and hands the groups it leads over; a pause of the process is no such thing.
#
# Starts three `cohort serve` nodes (4 groups) on loopback under a write load (`cohort
# bench`), stops each node in turn for PAUSE_S seconds, ROUNDS times, and prints how many
# such warnings the nodes logged: none is right. (Session 67's build logged 3 in 60 pauses
# of 1.5 s; io_uring hands a sync's end over some turns after the thread continues.)
#
#   tools/pause-then-continue.sh [COHORT=target/release/cohort] [BASE_PORT=19600] [PAUSE_S=1.5]
#                                [ROUNDS=5]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19600}
pause_s=${3:-1.5}
rounds=${4:-5}
. "$(dirname "$0")/lib/three-nodes.sh" "$base"
for i in 1 2 3; do start_node "$i" --groups 4; done
wait_led 4
# Writes all along, so that syncs are in flight when a pause comes.
seconds=$(awk -v r="$rounds" -v p="$pause_s" 'BEGIN { printf "%d", r * 3 * (p + 0.5) + 5 }')
(cd "$dir" && exec "$cohort" bench --nodes "$a1,$a2,$a3" --read-percent 0 --seconds "$seconds" \
  --warmup-seconds 0 --ceiling-seconds 0 --clients 2 --depth 2 --batch 4 --quiet \
  >"$dir/bench.log" 2>&1) &
sleep 1
for round in $(seq "$rounds"); do
  for i in 1 2 3; do
    kill -STOP "${pids[i]}"
    sleep "$pause_s"
    kill -CONT "${pids[i]}"
    sleep 0.5
  done
done
# The last node continued: its core's next ticks would say it.
sleep 1
warned=$(cat "$dir"/n[123].log | grep -c "a sync of the log has not ended" || true)
echo "$((rounds * 3)) pauses of ${pause_s} s under writes: ${warned} warnings that a sync had not ended"
