#!/usr/bin/env bash
# What clients see when a node is stopped (SIGTERM) and restarted under load, as in a rolling
# restart: the stop's duration and the load's latency around it.
#
# Starts three `cohort serve` nodes (8 groups) on loopback, runs `cohort bench` against them
# in an open loop at RATE requests/s for SECONDS seconds, stops node 1 a third of the way in,
# restarts it 2 s later, and prints how many groups node 1 led at the stop, how long its stop
# took, and the bench's lines (one per second, then the summary). Latencies count from each
# request's intended start, so a group left without a leader shows as the time its requests
# waited. Fails if node 1 does not stop cleanly within 30 s or does not serve again, or if the
# bench fails.
#
#   tools/rolling-stop.sh [RATE=5000] [COHORT=target/release/cohort] [BASE_PORT=19200] [SECONDS=12]
set -euo pipefail
rate=${1:-5000}
cohort=$(realpath "${2:-target/release/cohort}")
base=${3:-19200}
seconds=${4:-12}
dir=$(mktemp -d)
a1=127.0.0.1:$base a2=127.0.0.1:$((base + 10)) a3=127.0.0.1:$((base + 20))
peers="1=$a1,2=$a2,3=$a3"
declare -A pids=()
cleanup() {
  local status=$?
  if [ "$status" != 0 ]; then
    for i in 1 2 3; do echo "--- node $i's log, its end:" >&2; tail -n 20 "$dir/n$i.log" >&2 || true; done
  fi
  if [ "${#pids[@]}" -gt 0 ]; then kill "${pids[@]}" 2>/dev/null || true; fi
  # And a watchdog of `wait_within` (a bare `wait` waited it out, up to a minute).
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
serve() {
  # --stop-with-parent: a script killed outright (a test's time limit) leaves none running.
  "$cohort" serve --id "$1" --peers "$peers" --data-dir "$dir/d$1" --groups 8 --stop-with-parent \
    >>"$dir/n$1.log" 2>&1 &
  pids[$1]=$!
}
# Waits for process $1, SIGKILLing it after $2 seconds; its exit status.
wait_within() {
  # Its own streams: a sleep left behind must not hold the caller's pipe open.
  (sleep "$2"; kill -9 "$1") >/dev/null 2>&1 &
  local watchdog=$! status=0
  wait "$1" || status=$?
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  return "$status"
}
# Groups node 1 leads, from its own status.
led_by_1() {
  # A member slow to answer (status exits 3) must not end the script under pipefail.
  { "$cohort" status --nodes "$a1" 2>/dev/null || true; } \
    | awk '$1 == 1 && $4 == "leader" { n++ } END { print n + 0 }'
}
for i in 1 2 3; do serve $i; done
sleep 5
"$cohort" bench --nodes "$a1,$a2,$a3" --rate "$rate" --seconds "$seconds" --warmup-seconds 1 \
  --ceiling-seconds 0 --out "$dir/bench" >"$dir/bench.txt" 2>&1 &
pids[bench]=$!
sleep "$(awk -v s="$seconds" 'BEGIN { print 1 + s / 3 }')"
led=$(led_by_1)
began=$(date +%s%N)
kill -TERM "${pids[1]}"
status=0
wait_within "${pids[1]}" 30 || status=$?
ended=$(date +%s%N)
unset 'pids[1]'
sleep 2
serve 1
bench_status=0
wait_within "${pids[bench]}" $((seconds + 60)) || bench_status=$?
unset 'pids[bench]'
# Its files go with the folder.
bench_printed=1
grep -v '^files ' "$dir/bench.txt" || bench_printed=0
echo "node 1 led $led of 8 groups at the stop; stopped in $(( (ended - began) / 1000000 )) ms" \
  "(status $status), restarted 2 s later"
if [ "$status" != 0 ]; then
  echo "node 1 did not stop cleanly (status $status)" >&2
  exit 1
fi
if ! kill -0 "${pids[1]}" 2>/dev/null || ! "$cohort" status --nodes "$a1" >/dev/null 2>&1; then
  echo "node 1 does not serve again after its restart" >&2
  exit 1
fi
if [ "$bench_status" != 0 ]; then
  echo "cohort bench failed (status $bench_status)" >&2
  exit 1
fi
if [ "$bench_printed" = 0 ]; then
  echo "cohort bench printed nothing" >&2
  exit 1
fi
