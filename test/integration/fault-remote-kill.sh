#!/bin/bash
# fault-remote-kill.sh: the remote fedgate killed with SIGKILL between two
# messages of a conversation, then restarted; every message accounted for.
#
# Topology (127.0.N.0/24, lib.sh "fault tests"):
#   alice@a.test -- Prosody a.test (.1) -- fedgate A (.2)
#       ==s2s== fedgate B (.4) -- Prosody b.test (.3) -- bob@b.test
# Phases (one xmpp-scenario run; alice and bob stay logged in throughout):
#   1. both send a batch of N chat messages: all delivered
#   2. fedgate B is killed with SIGKILL while nothing is in flight (the
#      test waits until fedgate A and Prosody b.test have both seen the
#      connections drop, so the run is deterministic)
#   3. bob sends N: Prosody b.test has no component for a.test any more and
#      bounces each at once: remote-server-timeout "Component unavailable"
#   4. alice sends N: fedgate A's route to b.test is down (connection
#      refused). Today (no s2s retry) fedgate A bounces them at once with
#      remote-server-not-found and the connect error as text; with the
#      s2s retry (transient failures keep the queue and reconnect with
#      backoff until limits.queue_timeout), they wait in fedgate A's
#      queue and are delivered once B is back. The test detects which
#      (the word "retry" in component/s2s.c or a retry line for the route
#      in fedgate A's log) and then requires that behaviour strictly.
#   5. fedgate B restarted; then both send N more: all delivered.
# Accounting: per direction (the tool's "report alice"/"report bob"),
# sent = delivered + bounced, unaccounted = 0, no duplicates, and the
# bounce conditions (and texts, from the transcript) as above.
#
# Loss window (not exercised here: the test is quiescent on purpose):
#   - a stanza fedgate A has already written to its socket to B (kernel
#     buffer, or read by B but not yet handed to Prosody b.test) when B is
#     SIGKILLed is gone without an error: s2s has no acknowledgements
#     (no XEP-0198 on s2s), fedgate A has no way to know;
#   - stanzas in fedgate B's memory (its upstream queue to Prosody b.test,
#     its s2s route queue toward a.test) are lost with the process;
#   - stanzas written to the component socket toward a dead fedgate B are
#     lost in Prosody b.test's buffers the same way.
# Everything a client sends after the peer is known to be down is
# accounted for (delivered or bounced), which is what this test asserts.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init fault-remote-kill 115

N=${FAULT_N:-10}
QT=30 # fedgate A's limits.queue_timeout (s)
fault_topology
fault_gw_start ga "limits = { queue_timeout = $QT; };"
fault_gw_start gb "limits = { queue_timeout = $QT; };"
GA_LOG=$FG_TMP/ga.log

# The s2s retry (the lead's change to component/s2s.c) is in this build?
RETRY=0
grep -qi 'retry' "$top_srcdir/component/s2s.c" && RETRY=1
# FAULT_RETRY=1 demands the retry behaviour whatever the source says.
RETRY=${FAULT_RETRY:-$RETRY}
note "s2s retry in component/s2s.c: $RETRY"

S=$FG_TMP
t0=$(date +%s%N)
fault_scen kill.out \
    @:note:phase-1 alice:flood:bob:$N:chat bob:flood:alice:$N:chat \
    alice:collect:bob:20:delivered=$((2 * N)):bounced=0 \
    "@:signal:$S/quiet" "@:wait-file:$S/killed:timeout=40" \
    @:note:phase-3 bob:flood:alice:$N:chat \
    bob:collect:alice:20:delivered=$((2 * N)):bounced=$N \
    @:note:phase-4 alice:flood:bob:$N:chat \
    "@:signal:$S/sent-down" "@:wait-file:$S/restarted:timeout=60" \
    @:note:phase-5 alice:collect:bob:$((QT + 10)) \
    alice:flood:bob:$N:chat bob:flood:alice:$N:chat \
    alice:collect:bob:30 \
    --settle 2 --max-time 110

# ---- 2. kill B between messages ----
fault_await "$S/quiet" 40
ma=$(log_mark "$GA_LOG")
mhb=$(log_mark "$(peer_log b.test)")
fault_gw_kill gb
t_kill=$(date +%s%N)
wait_for_log "$(peer_log b.test)" 'component disconnected: a\.test' 10 "$mhb" ||
    fail "Prosody b.test did not see fedgate B's component go"
wait_for_log "$GA_LOG" 's2s out a\.test -> b\.test .*connection closed' 10 "$ma" ||
    fail "fedgate A did not see its connection to B close"
wait_for_log "$GA_LOG" 's2s in .*connection closed' 10 "$ma" ||
    fail "fedgate A did not see B's connection to it close"
note "fedgate A: $(tail -c "+$((ma + 1))" "$GA_LOG" | grep -m1 's2s out a\.test -> b\.test .*connection closed' | cut -c1-200)"
touch "$S/killed"

# ---- 4. alice's batch while B is down ----
fault_await "$S/sent-down" 40
# fedgate A tried B and was refused (the route really was down).
wait_for_log "$GA_LOG" 's2s out a\.test -> b\.test .*(refused|connect failed)' 10 "$ma" ||
    fail "fedgate A did not try to reach B (no refused connect in its log)"
note "fedgate A: $(tail -c "+$((ma + 1))" "$GA_LOG" | grep -Em1 's2s out a\.test -> b\.test .*(refused|connect failed)' | cut -c1-200)"
# A retry on the s2s route (not fedgate A's upstream links: those are up).
RETRY_RE='b\.test.*([Rr]etr(y|ies|ying)|reconnecting)|([Rr]etr(y|ies|ying)|reconnecting).*b\.test'
retry_line()
{
    tail -c "+$((ma + 1))" "$GA_LOG" | grep -v '^[^ ]* [a-z]* *upstream ' |
        grep -Em1 "$RETRY_RE"
}
end=$(($(date +%s) + 10))
while [ -z "$(retry_line)" ] && [ "$(date +%s)" -lt "$end" ]; do
    # Without the retry, the bounce ends the wait.
    [ "$RETRY" = 0 ] && [ "$(count_log "$GA_LOG" 'bounced [0-9]+ queued' "$ma")" -gt 0 ] &&
        break
    sleep 0.1
done
if [ -n "$(retry_line)" ]; then
    RETRY=1
    note "fedgate A: $(retry_line | cut -c1-200)"
elif [ "$RETRY" = 1 ]; then
    fail "the s2s retry is expected (component/s2s.c mentions it, or FAULT_RETRY=1) but fedgate A logged no retry for b.test within 10 s"
fi
[ "$RETRY" = 1 ] || [ "$(count_log "$GA_LOG" 'bounced [0-9]+ queued' "$ma")" -gt 0 ] ||
    fail "fedgate A neither bounced alice's batch nor retried"
# B stays down at least a second (a retry with backoff has time to fail).
sleep 1
down_ms=$((($(date +%s%N) - t_kill) / 1000000))
note "fedgate B down for ${down_ms} ms so far; restarting it (retry mode: $RETRY)"

# ---- 5. restart B ----
fault_gw_start gb
t_up=$(date +%s%N)
touch "$S/restarted"

wait "$FAULT_SCEN_PID"
rc=$?
sed 's/^/    | /' "$S/kill.out.err" >&2
grep -Ev '^ +[0-9.]+ (alice|bob) ' "$S/kill.out" | sed 's/^/    | /' >&2
note "scenario exit $rc in $((($(date +%s%N) - t0) / 1000000)) ms"
[ "$rc" = 0 ] || fail "the scenario failed (exit $rc)"

# ---- accounting ----
read -r a_sent a_del a_bnc a_un a_dup a_cond <<<"$(fault_counts kill.out alice)"
read -r b_sent b_del b_bnc b_un b_dup b_cond <<<"$(fault_counts kill.out bob)"
[ -n "$a_sent" ] && [ -n "$b_sent" ] || fail "no report lines"
note "ACCOUNTING alice->bob: sent=$a_sent delivered=$a_del bounced=$a_bnc unaccounted=$a_un duplicates=$a_dup conditions=$a_cond"
note "ACCOUNTING bob->alice: sent=$b_sent delivered=$b_del bounced=$b_bnc unaccounted=$b_un duplicates=$b_dup conditions=$b_cond"
fault_balanced()
{
    [ "$5" = 0 ] || fail "$1: $5 unaccounted"
    [ "$6" = 0 ] || fail "$1: $6 duplicates"
    [ $(($3 + $4)) = "$2" ] || fail "$1: delivered $3 + bounced $4 != sent $2"
}
fault_balanced alice "$a_sent" "$a_del" "$a_bnc" "$a_un" "$a_dup"
fault_balanced bob "$b_sent" "$b_del" "$b_bnc" "$b_un" "$b_dup"
# bob: N before, N while B was down (bounced by Prosody b.test), N after.
[ "$b_sent" = $((3 * N)) ] && [ "$b_del" = $((2 * N)) ] && [ "$b_bnc" = "$N" ] ||
    fail "bob: expected sent=$((3 * N)) delivered=$((2 * N)) bounced=$N"
[ "$b_cond" = "remote-server-timeout:$N" ] ||
    fail "bob's bounces: $b_cond (expected remote-server-timeout:$N)"
# alice: N before, N while B was down, N after.
[ "$a_sent" = $((3 * N)) ] || fail "alice: sent $a_sent, expected $((3 * N))"
if [ "$RETRY" = 1 ]; then
    [ "$a_del" = $((3 * N)) ] && [ "$a_bnc" = 0 ] ||
        fail "alice: with the s2s retry, the batch sent while B was down must be delivered after its restart (delivered=$a_del bounced=$a_bnc)"
else
    [ "$a_del" = $((2 * N)) ] && [ "$a_bnc" = "$N" ] ||
        fail "alice: expected delivered=$((2 * N)) bounced=$N (bounced at once)"
    [[ $a_cond =~ ^(remote-server-not-found|remote-server-timeout):$N$ ]] ||
        fail "alice's bounces: $a_cond"
fi

# Bounce texts, from the transcript: every error reply to a flood message.
err_lines()
{
    grep -E "^ +[0-9.]+ $1 +<- <message[^>]*type=\"error\"" "$S/kill.out"
}
nb=$(err_lines bob | grep -c 'remote-server-timeout.*<text[^>]*>Component unavailable</text>')
[ "$nb" = "$N" ] || fail "bob: $nb of $N bounces say remote-server-timeout 'Component unavailable'"
na=$(err_lines alice | grep -c '<text[^>]*>[^<]')
[ "$na" = "$a_bnc" ] || fail "alice: only $na of $a_bnc bounces carry a text"
if [ "$a_bnc" -gt 0 ]; then
    note "alice's bounce: $(err_lines alice | head -1 | grep -o '<error.*</error>')"
    err_lines alice | grep -Eq '<text[^>]*>[^<]*(refused|connect|reach|timed out)' ||
        fail "alice's bounce text does not name the reason"
fi
note "bob's bounce: $(err_lines bob | head -1 | grep -o '<error.*</error>')"
# How long did alice's batch wait (retry mode)?
if [ "$RETRY" = 1 ]; then
    note "alice's batch sent while B was down: delivered after B's restart (restart at +$(((t_up - t0) / 1000000)) ms)"
fi

fedgate_alive ga || fail "fedgate A died"
fedgate_alive gb || fail "fedgate B (restarted) died"
assert_loopback_only
fedgate_stop ga
fedgate_stop gb
peer_stop b.test
prosody_stop
fg_finish
