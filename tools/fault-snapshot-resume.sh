#!/usr/bin/env bash
# Fault check (root, iptables): a snapshot stream cut by connection resets resumes where the
# receiver is. Three nodes on loopback with one group write about 60 MB; a fourth node joins
# and must catch up by a snapshot streamed in 1 KiB chunks, while every 300 ms its peer
# connections are reset (iptables REJECT --reject-with tcp-reset for 10 ms). Prints the
# leader's "sending again from the last acknowledged byte" lines (after a stall or a renewed
# connection) and the installed snapshot's size; then hands the group to node 4 and reads
# values back from it. Exit 1 if node 4 does not join, if an acked offset falls back (a
# stream that started over), or if a value reads back other than written.
#
# Usage: sudo tools/fault-snapshot-resume.sh [path/to/cohort]   (default target/release/cohort)
set -euo pipefail
B="${1:-target/release/cohort}"
command -v iptables >/dev/null || { echo "needs iptables (apt-get install iptables)" >&2; exit 1; }
D=$(mktemp -d)
RULE=(INPUT -p tcp --dport 7430 -j REJECT --reject-with tcp-reset)
# -w everywhere: another iptables user (the partition tests) may hold the xtables lock.
cleanup() {
  local status=$?
  while iptables -w -D "${RULE[@]}" 2>/dev/null; do :; done
  kill $(jobs -p) 2>/dev/null || true; wait || true
  if [ "$status" != 0 ]; then
    # What went wrong is in the nodes' logs, which go with the folder.
    for i in 1 2 3 4; do echo "--- node $i's log, its end:" >&2; tail -n 20 "$D/n$i.log" >&2 || true; done
  fi
  rm -rf "$D"
}
trap cleanup EXIT
P="1=127.0.0.1:7400,2=127.0.0.1:7410,3=127.0.0.1:7420"
# --stop-with-parent: a script killed outright leaves no node running.
F=(--groups 1 --snapshot-entries 10 --snapshot-chunk-kib 1 --stop-with-parent)
for i in 1 2 3; do "$B" serve --id $i --peers $P --data-dir "$D/n$i" "${F[@]}" > "$D/n$i.log" 2>&1 & done
sleep 2
V=$(head -c 90000 /dev/urandom | base64 -w0)
for i in $(seq 1 500); do "$B" put "big$i" "$V" --nodes 127.0.0.1:7400 >/dev/null; done
"$B" serve --id 4 --listen 127.0.0.1:7430 --join 127.0.0.1:7400 --data-dir "$D/n4" "${F[@]}" > "$D/n4.log" 2>&1 &
resets=0
until grep -q "joined: voter" "$D/n4.log"; do
  (( resets < 200 )) || { echo "node 4 did not join" >&2; tail "$D/n4.log" >&2; exit 1; }
  sleep 0.3
  iptables -w -I "${RULE[@]}"; sleep 0.01; iptables -w -D "${RULE[@]}"
  resets=$((resets + 1))
done
echo "node 4 joined after $resets connection resets"
grep -h "sending again\|resumes\|installed a snapshot" "$D"/n*.log | sed 's/^.*Z *//' || true
# Resent from where the receiver acknowledged: within a leader's log, acked never falls back
# (but where a stream starts over: given up, refused by its checksum, or the receiver lost
# its part).
for i in 1 2 3; do
  sed 's/\x1b\[[0-9;]*m//g' "$D/n$i.log" | awk -v n="$i" '
    /given up|fails its checksum|resumes from/ { last = 0 }
    /sending again/ {
      if (!match($0, /acked=[0-9]+/)) next
      acked = substr($0, RSTART + 6, RLENGTH - 6) + 0
      if (acked < last) { print "node " n ": acked fell back from " last " to " acked; bad = 1 }
      last = acked
    } END { exit bad }' >&2
done
# Nothing tested unless a reset cut a stream and the leader sent it again.
resent=$(sed 's/\x1b\[[0-9;]*m//g' "$D"/n[123].log | grep -c "connection renewed: snapshot stream sending again" || true)
if [ "$resent" = 0 ]; then
  echo "no snapshot stream was sent again after a reset: the resets missed it, nothing was tested" >&2
  exit 1
fi
echo "$resent windows sent again after resets"
# A read is answered by the group's leader: node 4 must lead for its copy to be read.
"$B" leader transfer --group 0 --to 4 --nodes 127.0.0.1:7400 >/dev/null
for k in big1 big7 big250 big500; do
  if [ "$("$B" get "$k" --nodes 127.0.0.1:7430)" != "$V" ]; then
    echo "$k reads back from node 4 other than written" >&2
    exit 1
  fi
done
echo "values written before the join read back intact from node 4, leading the group"
