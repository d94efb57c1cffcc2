#!/usr/bin/env bash
# What an idle cluster of many Raft groups costs: each core ticks the groups awake and looks at
# those touched in each turn of its loop, and the groups' leaders heartbeat their followers
# every --heartbeat-ticks until the groups go quiet and sleep (or for good, with --no-quiesce).
#
# Starts three `cohort serve` nodes of one core each on loopback with --groups GROUPS (and
# any serve flags after the arguments), waits until every group has a leader (60 s at most:
# past that the script fails, as a cluster too busy heartbeating to elect does), then, with
# no client, measures for SECONDS (from 1.5 s later) each node's CPU time (user and system,
# from /proc) and counts the groups still changing role (from the nodes' logs), and prints
# them with the CPU per group.
#
#   tools/idle-groups.sh [COHORT=target/release/cohort] [BASE_PORT=19600] [GROUPS=1000] \
#       [SECONDS=5, whole seconds] [SERVE FLAGS…]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19600}
groups=${3:-1000}
seconds=${4:-5}
shift $(($# < 4 ? $# : 4))
. "$(dirname "$0")/lib/three-nodes.sh" "$base"
for i in 1 2 3; do start_node "$i" --groups "$groups" "$@"; done
began=$(date +%s%N)
wait_led "$groups"
echo "$groups groups: every one led $((($(date +%s%N) - began) / 1000000)) ms after the start"
# A node's CPU time so far, in clock ticks (user and system: fields 14 and 15).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The groups that changed role in a node's log so far (a core of many groups sums them up).
role_changes() {
  awk '/groups changed role/ { for (i = 1; i <= NF; i++) if ($i == "groups") { n += $(i - 1); break } }
       / group [0-9]+: (leader|follower|candidate)/ { n++ }
       END { print n + 0 }' "$dir/n$1.log"
}
# A core of more than 64 groups says its role changes once a second: those of the elections
# are said before the window opens.
sleep 1.5
declare -A before changes
for i in 1 2 3; do before[$i]=$(cpu_ticks "${pids[$i]}"); changes[$i]=$(role_changes "$i"); done
sleep "$seconds"
hz=$(getconf CLK_TCK)
total=0
for i in 1 2 3; do
  ms=$((($(cpu_ticks "${pids[$i]}") - before[$i]) * 1000 / hz))
  total=$((total + ms))
  echo "node $i: $ms ms of CPU in $seconds s ($((ms / seconds / 10))% of a CPU), $(($(role_changes "$i") - changes[$i])) role changes"
done
echo "3 nodes: $((total / seconds)) ms of CPU a second, $((total * 1000 / seconds / groups)) µs a second per group"
