#!/usr/bin/env bash
# How often a put right after a delete is refused at the key-value quota: the delete frees
# room on every replica, but a follower says so only once it applied the delete, and a
# leader refuses a write that may add data while a member of the group says it is full.
#
# Starts three `cohort serve` nodes (4 groups, one core each, `--kv-quota-mib 1`) on
# loopback, puts 8000-byte values under new keys until one is refused, then ROUNDS times
# deletes one key and at once puts a new one (each a fresh `cohort` process), retrying a
# refused put, and prints how many rounds were refused at least once. A round whose put is
# refused 20 times (the state still over the quota: a put was taken past it) deletes one more
# key and is left out.
#
#   tools/quota-delete-then-put.sh [COHORT=target/release/cohort] [BASE_PORT=19500] [ROUNDS=30]
set -euo pipefail
cohort=$(realpath "${1:-target/release/cohort}")
base=${2:-19500}
rounds=${3:-30}
. "$(dirname "$0")/lib/three-nodes.sh" "$base"
for i in 1 2 3; do start_node "$i" --groups 4 --cores 1 --kv-quota-mib 1; done
wait_led 4
value=$(head -c 8000 /dev/zero | tr '\0' x)
put() { "$cohort" put --nodes "$a1" --timeout-ms 5000 "$1" "$value" >/dev/null 2>"$dir/err"; }
# Puts until one is refused for the quota.
n=0
until ! put "k$n"; do
  n=$((n + 1))
  [ "$n" -lt 1000 ] || { echo "no put refused in 1000" >&2; exit 1; }
done
grep -q "NoSpace" "$dir/err" || { echo "put $n refused, not for the quota: $(cat "$dir/err")" >&2; exit 1; }
# Two deletes (a put taken past the quota leaves no room after one), then puts until one is
# refused: at the quota's edge.
"$cohort" delete --nodes "$a1" k0 >/dev/null
"$cohort" delete --nodes "$a1" k1 >/dev/null
sleep 0.1
x=0
while put "x$x"; do x=$((x + 1)); done
sleep 0.1
echo "filled: $n puts taken before the first refusal"
refused=0 refusals=0 over=0 next=2
for round in $(seq "$rounds"); do
  "$cohort" delete --nodes "$a1" "k$next" >/dev/null
  next=$((next + 1))
  tries=0 counted=true
  until put "new$round"; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || { echo "round $round: refused 60 times: $(cat "$dir/err")" >&2; exit 1; }
    if [ "$tries" = 20 ]; then
      # Still over the quota (a put was taken past it before): one more delete, and the
      # round does not count.
      over=$((over + 1)) counted=false
      "$cohort" delete --nodes "$a1" "k$next" >/dev/null
      next=$((next + 1))
    fi
  done
  if $counted && [ "$tries" -gt 0 ]; then
    refused=$((refused + 1))
    refusals=$((refusals + tries))
  fi
done
echo "$refused of $((rounds - over)) rounds refused at least once ($refusals refusals in all;" \
  "$over rounds left out: the state was still over its quota after the delete)"
