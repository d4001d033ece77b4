#!/bin/bash
# fault-peer-unreachable.sh: the peer's fedgate down, then unreachable,
# longer than fedgate A's limits.queue_timeout (3 s here): every message
# alice sends is bounced back to her with a condition and a text naming
# the reason, none is delivered, none unaccounted; fedgate A stays up;
# once the peer is back, new messages are delivered.
#
# Topology (127.0.N.0/24, lib.sh "fault tests"):
#   alice@a.test -- Prosody a.test (.1) -- fedgate A (.2)
#       ==s2s== fedgate B (.4, not running at first) -- Prosody b.test (.3)
# Cases (one xmpp-scenario run):
#   a. down: nothing listens on B's s2s address (connection refused).
#      Without the s2s retry (today): bounced at once, remote-server-not-
#      found, text "connect failed: Connection refused". With the retry
#      (the word "retry" in component/s2s.c, or a retry line for b.test
#      in fedgate A's log): held for limits.queue_timeout while fedgate A
#      retries, then remote-server-timeout; the test checks they were held.
#   b. unreachable: a listener on B's address whose accept queue is full,
#      so the kernel drops fedgate A's SYNs and the connect hangs (a
#      black hole, without touching the firewall). s2s.connect_timeout
#      (10 s) is longer than limits.queue_timeout (3 s): the queue timeout
#      bounces them, remote-server-timeout, after about 3 s.
#   c. fedgate B started: alice and bob each send N, all delivered.
# Accounting: alice sent 3N, delivered N, bounced 2N; bob sent N,
# delivered N; unaccounted 0.
#
# Loss window: none here by construction: nothing reaches the peer
# while it is down, so every stanza is in fedgate A's queue (bounced at
# the timeout) or delivered. Stanzas would be lost only if fedgate A
# itself died while holding them in its queue (memory only), or for bytes
# already in a socket to a peer that dies (see fault-remote-kill.sh).
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init fault-peer-unreachable 115

N=${FAULT_N:-10}
QT=3
fault_topology
fault_gw_start ga "limits = { queue_timeout = $QT; };"
GA_LOG=$FG_TMP/ga.log
S=$FG_TMP
RETRY=0
grep -qi 'retry' "$top_srcdir/component/s2s.c" && RETRY=1
# FAULT_RETRY=1 demands the retry behaviour whatever the source says.
RETRY=${FAULT_RETRY:-$RETRY}
note "s2s retry in component/s2s.c: $RETRY"

t0=$(date +%s%N)
fault_scen unreach.out \
    @:note:case-a alice:flood:bob:$N:chat \
    alice:collect:bob:$((QT + 10)):delivered=0:bounced=$N \
    "@:signal:$S/a-done" "@:wait-file:$S/blackhole:timeout=30" \
    @:note:case-b alice:flood:bob:$N:chat \
    alice:collect:bob:$((QT + 10)):delivered=0:bounced=$((2 * N)) \
    "@:signal:$S/b-done" "@:wait-file:$S/b-up:timeout=60" \
    @:note:case-c alice:flood:bob:$N:chat bob:flood:alice:$N:chat \
    alice:collect:bob:20:delivered=$((2 * N)):bounced=$((2 * N)) \
    --settle 2 --max-time 110

# ---- a. down ----
fault_await "$S/a-done" 40
fedgate_alive ga || fail "fedgate A died"
RETRY_RE='b\.test.*([Rr]etr(y|ies|ying)|reconnecting)|([Rr]etr(y|ies|ying)|reconnecting).*b\.test'
if grep -v '^[^ ]* [a-z]* *upstream ' "$GA_LOG" | grep -Eq "$RETRY_RE"; then
    RETRY=1
    note "fedgate A: $(grep -v '^[^ ]* [a-z]* *upstream ' "$GA_LOG" | grep -Em1 "$RETRY_RE" | cut -c1-200)"
fi
grep -Eq 's2s out a\.test -> b\.test .*Connection refused' "$GA_LOG" ||
    fail "fedgate A logged no refused connection to b.test"

# ---- b. unreachable: a black hole on B's address ----
/usr/bin/python3 - "$FAULT_GB_IP" 5269 "$S/bh.ready" <<'PY' >"$S/blackhole.log" 2>&1 &
import socket, sys, time
ip, port, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((ip, port))
l.listen(0)
# Fill the accept queue (never accepted): the kernel then drops new SYNs.
fill = []
for i in range(3):
    c = socket.socket()
    c.settimeout(0.5)
    try:
        c.connect((ip, port))
        fill.append(c)
    except OSError:
        break
print("black hole on %s:%d, %d connection(s) in its queue" % (ip, port, len(fill)),
      flush=True)
open(ready, "w").close()
time.sleep(3600)
PY
BH_PID=$!
FG_PIDS+=("$BH_PID")
end=$(($(date +%s) + 10))
until [ -e "$S/bh.ready" ]; do
    kill -0 "$BH_PID" 2>/dev/null || fail "the black hole did not start: $(cat "$S/blackhole.log")"
    [ "$(date +%s)" -lt "$end" ] || fail "the black hole did not start"
    sleep 0.05
done
note "$(cat "$S/blackhole.log")"
# It really is one: a connect times out.
/usr/bin/python3 -c '
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect((sys.argv[1], 5269)); sys.exit(1)
except socket.timeout:
    sys.exit(0)
except OSError:
    sys.exit(1)' "$FAULT_GB_IP" || fail "a connect to the black hole did not hang"
mb=$(log_mark "$GA_LOG")
touch "$S/blackhole"
fault_await "$S/b-done" 40
fedgate_alive ga || fail "fedgate A died"
# fedgate A was still connecting (no answer from the black hole).
if tail -c "+$((mb + 1))" "$GA_LOG" | grep -Eq 's2s out a\.test -> b\.test .*: (connected|TLS)'; then
    fail "fedgate A connected to the black hole?"
fi
kill "$BH_PID"
wait "$BH_PID" 2>/dev/null
# Let fedgate A's pending connect end (refused on the next SYN, or its
# connect timeout) before B comes back, so case c starts from a known
# state.
wait_for_log "$GA_LOG" 's2s out a\.test -> b\.test .*(connect failed|timed out|timeout|[Rr]etr)' 15 "$mb" ||
    fail "fedgate A's connect to the black hole never ended"
note "fedgate A: $(tail -c "+$((mb + 1))" "$GA_LOG" | grep -Em1 's2s out a\.test -> b\.test .*(connect failed|timed out|timeout|[Rr]etr)' | cut -c1-200)"

# ---- c. B is back ----
fault_gw_start gb "limits = { queue_timeout = 30; };"
touch "$S/b-up"

wait "$FAULT_SCEN_PID"
rc=$?
sed 's/^/    | /' "$S/unreach.out.err" >&2
grep -Ev '^ +[0-9.]+ (alice|bob) ' "$S/unreach.out" | sed 's/^/    | /' >&2
note "scenario exit $rc in $((($(date +%s%N) - t0) / 1000000)) ms (retry mode: $RETRY)"
[ "$rc" = 0 ] || fail "the scenario failed (exit $rc)"

# ---- accounting ----
out=$S/unreach.out
read -r a_sent a_del a_bnc a_un a_dup a_cond <<<"$(fault_counts unreach.out alice)"
read -r b_sent b_del b_bnc b_un b_dup b_cond <<<"$(fault_counts unreach.out bob)"
[ -n "$a_sent" ] && [ -n "$b_sent" ] || fail "no report lines"
note "ACCOUNTING alice->bob: sent=$a_sent delivered=$a_del bounced=$a_bnc unaccounted=$a_un duplicates=$a_dup conditions=$a_cond"
note "ACCOUNTING bob->alice: sent=$b_sent delivered=$b_del bounced=$b_bnc unaccounted=$b_un duplicates=$b_dup conditions=$b_cond"
[ "$a_sent/$a_del/$a_bnc/$a_un/$a_dup" = "$((3 * N))/$N/$((2 * N))/0/0" ] ||
    fail "alice: expected sent=$((3 * N)) delivered=$N bounced=$((2 * N)) unaccounted=0"
[ "$b_sent/$b_del/$b_bnc/$b_un/$b_dup" = "$N/$N/0/0/0" ] ||
    fail "bob: expected sent=delivered=$N"

# Per case: conditions and texts of the error replies (transcript), and
# how long the batch took to come back (the collect step right after it).
case_lines()
{
    awk -v from="ok @:note:$1" -v to="ok @:note:$2" \
        'index($0, from) == 1 {on = 1; next} index($0, to) == 1 {on = 0} on' "$out"
}
case_errors()
{
    case_lines "$1" "$2" | grep -E '^ +[0-9.]+ alice +<- <message[^>]*type="error"'
}
case_ms()
{
    case_lines "$1" "$2" | sed -nE 's/^ok alice:collect:bob:[^ ]* \(([0-9]+) ms\).*/\1/p' | head -1
}
check_case()
{
    local c=$1 next=$2 cond=$3 text_re=$4 min_ms=$5 max_ms=$6 n nt ms
    n=$(case_errors "$c" "$next" | grep -c "<$cond ")
    nt=$(case_errors "$c" "$next" | grep -Ec "<$cond .*<text[^>]*>[^<]*($text_re)")
    ms=$(case_ms "$c" "$next")
    note "$c: $n of $N bounced $cond, $nt with a text naming the reason, in ${ms} ms:" \
        "$(case_errors "$c" "$next" | head -1 | grep -o '<error.*</error>')"
    [ "$n" = "$N" ] || fail "$c: $n of $N bounces are $cond"
    [ "$nt" = "$N" ] || fail "$c: $nt of $N bounce texts match /$text_re/"
    [ -n "$ms" ] && [ "$ms" -ge "$min_ms" ] && [ "$ms" -le "$max_ms" ] ||
        fail "$c: bounced in '$ms' ms, expected $min_ms..$max_ms"
}
if [ "$RETRY" = 1 ]; then
    # Held while fedgate A retried, bounced at the queue timeout.
    check_case case-a case-b remote-server-timeout 'refused|reach|connect|time' \
        $((QT * 1000 - 300)) $((QT * 1000 + 3000))
else
    check_case case-a case-b remote-server-not-found 'Connection refused' 0 2000
fi
check_case case-b case-c remote-server-timeout 'reach|connect|time' \
    $((QT * 1000 - 300)) $((QT * 1000 + 3000))

fedgate_alive ga || fail "fedgate A died"
fedgate_alive gb || fail "fedgate B died"
assert_loopback_only
fedgate_stop ga
fedgate_stop gb
peer_stop b.test
prosody_stop
fg_finish
