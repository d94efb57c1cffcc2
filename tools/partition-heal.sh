#!/usr/bin/env bash
# How long a node cut off by a network partition takes to catch up once the partition heals.
#
# Starts three `cohort serve` nodes (6 groups) on loopback, keeps a writer going through
# nodes 1 and 2, drops every TCP segment to or from node 3's peer port on arrival (iptables
# INPUT: a segment lost on the wire, so TCP backs off as it would on a real network) for
# PARTITION_S seconds, heals, and prints the seconds until node 3 has applied every group's
# commit. Needs root and iptables.
#
#   tools/partition-heal.sh [PARTITION_S=20] [COHORT=target/release/cohort] [BASE_PORT=19000]
set -euo pipefail
partition_s=${1:-20}
cohort=$(realpath "${2:-target/release/cohort}")
base=${3:-19000}
dir=$(mktemp -d)
chain="cohort-heal-$$"
a1=127.0.0.1:$base a2=127.0.0.1:$((base + 10)) a3=127.0.0.1:$((base + 20))
peers="1=$a1,2=$a2,3=$a3"
pids=()
cleanup() {
  local status=$?
  if [ "$status" != 0 ]; then
    # What went wrong is in the nodes' logs, which go with the folder.
    for i in 1 2 3; do echo "--- node $i's log, its end:" >&2; tail -n 20 "$dir/n$i.log" >&2 || true; done
  fi
  iptables -w -D INPUT -i lo -j "$chain" 2>/dev/null || true
  iptables -w -F "$chain" 2>/dev/null || true
  iptables -w -X "$chain" 2>/dev/null || true
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for i in 1 2 3; do
  # --stop-with-parent: a script killed outright (a test's time limit) leaves none running.
  "$cohort" serve --id $i --peers "$peers" --data-dir "$dir/d$i" --groups 6 --stop-with-parent \
    >"$dir/n$i.log" 2>&1 &
  pids+=($!)
done
sleep 5
# While this script runs (killed outright, it would write on for good).
(while kill -0 $$ 2>/dev/null; do "$cohort" put --nodes "$a1,$a2" "k$((RANDOM % 50))" v >/dev/null 2>&1 || true; done) &
pids+=($!)
sleep 1
# Node 3 has caught up when, in every group, it applied the leader's commit; "unknown" when
# the status names no group (it failed, or a node did not answer).
behind() {
  "$cohort" status --nodes "$a1" --timeout-ms 1000 2>/dev/null | awk '
    $1 ~ /^[0-9]+$/ && NF >= 9 { role[$1" "$3] = $4; commit[$1" "$3] = $7; applied[$1" "$3] = $8; g[$3] = 1 }
    END { n = 0; groups = 0; for (k in g) { groups++; c = -1; for (i = 1; i <= 3; i++) if (role[i" "k] == "leader") c = commit[i" "k];
          if (c < 0 || applied["3 "k] < c) n++ }
          if (groups == 0) print "unknown"; else print n }'
}
if [ "$(behind)" = unknown ]; then
  echo "cohort status names no group before the partition: the nodes are not serving" >&2
  exit 1
fi
iptables -w -N "$chain"
iptables -w -A "$chain" -p tcp --dport $((base + 20)) -j DROP
iptables -w -A "$chain" -p tcp --sport $((base + 20)) -j DROP
iptables -w -I INPUT -i lo -j "$chain"
sleep "$partition_s"
iptables -w -D INPUT -i lo -j "$chain"
healed=$(date +%s.%N)
give_up=$(( $(date +%s) + 120 ))
while (( $(date +%s) < give_up )); do
  if [ "$(behind)" = 0 ]; then
    awk -v now="$(date +%s.%N)" -v healed="$healed" -v p="$partition_s" \
      'BEGIN { printf "partition of %s s: node 3 caught up %.2f s after the heal\n", p, now - healed }'
    exit 0
  fi
  sleep 0.1
done
echo "node 3 did not catch up within 120 s of the heal" >&2
exit 1
