#!/usr/bin/env bash
# How soon a restarted node is reached again by a peer that dials it: of two nodes, only the
# one of the smaller id dials, after a capped, jittered backoff, so a node back from a restart
# waits for its peers of smaller ids to try again (meanwhile their leaders send it nothing).
#
# Starts three `cohort serve` nodes (2 groups) on loopback, kills node 2 (SIGKILL), starts it
# again DOWN_S seconds later, and prints how long after its start node 1's connection came
# (node 2's log says "peer connection established ... peer=1"), ROUNDS times. Fails if a
# connection does not come within 30 s.
#
#   tools/redial-after-restart.sh [COHORT=target/release/cohort] [BASE_PORT=19400] [DOWN_S=1.5]
#                                 [ROUNDS=3]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19400}
down_s=${3:-1.5}
rounds=${4:-3}
. "$(dirname "$0")/lib/three-nodes.sh" "$base"
for i in 1 2 3; do start_node "$i" --groups 2; done
# Node 1 connected to node 2 once it is up: within 60 s, or the script fails.
reached() { grep -q "peer connection established.*peer=1" "$dir/n2.log"; }
waited=0
until reached; do
  [ "$waited" -lt 600 ] || { echo "node 1 never connected to node 2" >&2; exit 1; }
  sleep 0.1
  waited=$((waited + 1))
done
for round in $(seq "$rounds"); do
  # Grouped: bash's "Killed" notice goes with the group's stderr.
  { kill -9 "${pids[2]}"; wait "${pids[2]}"; } 2>/dev/null || true
  sleep "$down_s"
  mv "$dir/n2.log" "$dir/n2.before.log"
  began=$(date +%s%N)
  start_node 2 --groups 2
  waited=0
  until [ -f "$dir/n2.log" ] && reached; do
    [ "$waited" -lt 6000 ] || { echo "node 1 did not connect within 30 s" >&2; exit 1; }
    sleep 0.005
    waited=$((waited + 1))
  done
  echo "round $round: node 2 down ${down_s} s, reached by node 1 $((($(date +%s%N) - began) / 1000000)) ms after its start"
done
