#!/usr/bin/env bash
# How long clients wait on a leader they cannot reach while its peers can (a firewall rule, a
# route or a link between the clients and that node alone). Its peers hear from it, so no
# election happens: before session 73 its clients waited, and their requests failed, for as
# long as the cut lasted. A client now sends such a leader's requests through another member,
# which forwards them to it and answers; and since session 74 the leader, once only forwarded
# requests reach it, hands its groups to those members (one hop a request again, not two).
#
# Starts three `cohort serve` nodes (8 groups) on loopback under an open-loop write load
# (`cohort bench --rate RATE`), drops every TCP segment to or from node 1's client port (not
# its peer port) for CUT_S seconds 3 s into the measured time, and prints the load's longest
# waits (`service` from each request's send, `request` from when the open loop meant to send
# it), its percentiles of `service`, how many requests failed, and how many groups node 1 led
# before and right after (none moved with `--no-leader-balance`, passed on with EXTRA below).
# Needs root and iptables.
#
#   tools/unreachable-leader.sh [COHORT=target/release/cohort] [BASE_PORT=19700] [CUT_S=4]
#                               [RATE=500] [EXTRA serve flags…]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19700}
cut_s=${3:-4}
rate=${4:-500}
shift $(($# < 4 ? $# : 4))
command -v iptables >/dev/null || { echo "needs iptables (and root)" >&2; exit 1; }
. "$(dirname "$0")/lib/three-nodes.sh" "$base"
chain=cohort-unreachable-$$
uncut() {
  while iptables -w -D INPUT -i lo -j "$chain" 2>/dev/null; do :; done
  iptables -w -F "$chain" 2>/dev/null || true
  iptables -w -X "$chain" 2>/dev/null || true
}
trap 'uncut; cleanup' EXIT
for i in 1 2 3; do start_node "$i" --groups 8 "$@"; done
wait_led 8
seconds=$(awk -v c="$cut_s" 'BEGIN { printf "%d", c + 6 }')
start_writes "$rate" "$seconds"
sleep 4
# Groups node 1 leads, as the nodes say (node 1's own rows, or the others' leader column).
led_by_1() {
  { "$cohort" status --nodes "$a2,$a3" 2>/dev/null || true; } \
    | awk '$1 != 1 && $4 != "leader" && $5 == 1 { g[$3] = 1 } $1 == 1 && $4 == "leader" { g[$3] = 1 }
           END { print length(g) }'
}
before=$(led_by_1)
client_port=$((base + 1))
iptables -w -N "$chain"
iptables -w -A "$chain" -p tcp --dport "$client_port" -j DROP
iptables -w -A "$chain" -p tcp --sport "$client_port" -j DROP
# Dropped on arrival, as a lost segment is (see tests/common/netfilter.rs).
iptables -w -I INPUT -i lo -j "$chain"
sleep "$cut_s"
uncut
# Asked after the heal: a status asks every member, and would wait for node 1 while cut.
after=$(led_by_1)
# A bench that stalls says so and fails: its verdict is the result then.
verdict=
wait "$load" || verdict=" (the load failed: $(grep '^cohort: ' "$dir/bench.log" | tail -n 1))"
percentiles() {
  awk -v what="$1" '$1 == what { print "p50", $2, $3 ", p90", $4, $5 ", p99", $6, $7 ", p99.9", $8, $9; exit }' \
    "$dir/bench.log"
}
failed=$(grep -o "[0-9]* requests failed" "$dir/bench.log" | head -n 1 || echo "? requests failed")
echo "node 1 (leader of $before of 8 groups; $after right after the cut) unreachable from" \
  "its clients for ${cut_s} s under ${rate} writes/s: service $(percentiles service)," \
  "longest service $(longest service)," \
  "longest request $(longest request); ${failed}${verdict}"
