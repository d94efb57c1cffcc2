# Sourced by the measuring scripts in tools/ that run three local `cohort serve` nodes, with
# the base port as its argument (nodes at BASE, BASE + 10 and BASE + 20): sets `dir` (a
# temporary folder for their data dirs and logs), `a1`, `a2`, `a3`, `peers` and `pids`
# (indexed by node id), and a cleanup on exit that kills the nodes and any job the script
# left, shows the end of each node's log if the script failed, and removes the folder.
# `start_node ID FLAGS…` starts one node; `wait_led GROUPS` waits until every group has a
# leader; `start_writes RATE SECONDS` starts an open-loop write load on the three (its pid in
# `load`, its output in $dir/bench.log), and `longest WHAT` says the load's longest `service`
# or `request` wait.
#
#   . "$(dirname "$0")/lib/three-nodes.sh" "$base"
dir=$(mktemp -d)
a1=127.0.0.1:$1 a2=127.0.0.1:$(($1 + 10)) a3=127.0.0.1:$(($1 + 20))
peers="1=$a1,2=$a2,3=$a3"
pids=()
cleanup() {
  local status=$?
  # A node a script stopped (SIGSTOP) and did not continue would never take the SIGTERM.
  kill -CONT "${pids[@]}" 2>/dev/null || true
  kill "${pids[@]}" $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$status" != 0 ]; then
    for i in 1 2 3; do echo "--- node $i's log, its end:" >&2; tail -n 20 "$dir/n$i.log" >&2 || true; done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
# Starts node ID of `$cohort` with the flags after it, its log in $dir/nID.log.
start_node() {
  local id=$1
  shift
  # --stop-with-parent: a script killed outright (a test's time limit) leaves none running.
  "$cohort" serve --id "$id" --peers "$peers" --data-dir "$dir/d$id" --stop-with-parent "$@" \
    >>"$dir/n$id.log" 2>&1 &
  pids[id]=$!
}
# Waits until each of GROUPS groups has a leader: within 60 s, or the script fails.
wait_led() {
  local deadline=$((SECONDS + 60)) led
  while true; do
    led=$({ "$cohort" status --nodes "$a1,$a2,$a3" 2>/dev/null || true; } \
      | awk '$4 == "leader" { g[$3] = 1 } END { print length(g) }')
    [ "$led" = "$1" ] && return 0
    # By the clock: a status of thousands of groups, or of a node that does not answer,
    # takes a while (counted in rounds of 0.1 s, the 60 s took over 10 minutes).
    [ "$SECONDS" -lt "$deadline" ] || { echo "not every group had a leader within 60 s ($led of $1)" >&2; exit 1; }
    sleep 0.1
  done
}
# Starts an open-loop load of RATE writes/s for SECONDS measured seconds (after one of
# warm-up) on the three nodes: its pid in `load`, its output in $dir/bench.log.
start_writes() {
  (cd "$dir" && exec "$cohort" bench --nodes "$a1,$a2,$a3" --read-percent 0 --rate "$1" \
    --clients 4 --seconds "$2" --warmup-seconds 1 --ceiling-seconds 0 --quiet \
    >"$dir/bench.log" 2>&1) &
  load=$!
}
# The load's longest `service` (from each request's send) or `request` (from when the open
# loop meant to send it) wait, as the bench printed it.
longest() { awk -v what="$1" '$1 == what { print $(NF - 1), $NF; exit }' "$dir/bench.log"; }
