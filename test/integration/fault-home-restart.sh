#!/bin/bash
# fault-home-restart.sh: alice's home server (Prosody a.test) restarted
# while bob keeps writing to her; every message accounted for.
#
# Topology (127.0.N.0/24, lib.sh "fault tests"):
#   alice@a.test -- Prosody a.test (.1) -- fedgate A (.2)
#       ==s2s== fedgate B (.4) -- Prosody b.test (.3) -- bob@b.test
# Phases (one xmpp-scenario run):
#   1. both send a batch of N chat messages: all delivered
#   2. Prosody a.test is stopped (SIGTERM) while nothing is in flight:
#      alice's session ends, fedgate A's upstream links go down and it
#      reconnects with backoff
#   3. bob sends N: they cross s2s and wait in fedgate A's bounded
#      upstream queue for b.test (asserted with fedgate A's SIGUSR1 status
#      dump: "N queued"); limits.queue_timeout is 30 s, the outage ~2 s
#   4. Prosody a.test is started again; fedgate A re-attaches and flushes
#      its queue; Prosody stores the messages offline (or hands them to
#      alice if she is back already); alice logs in again (connect:retry)
#      and gets them
#   5. both send N more: all delivered
# Accounting per direction (the tool's report): bob sent 3N, delivered 3N,
# bounced 0; alice sent 2N, delivered 2N; unaccounted 0, no duplicates.
#
# Loss window (not exercised: the test is quiescent on purpose):
#   - stanzas fedgate A has already written to the component socket and
#     Prosody a.test had not routed yet when it stopped: XEP-0114 has no
#     acknowledgements, fedgate cannot know (nor bounce) them;
#   - stanzas Prosody a.test had already written toward alice's client
#     when it stopped (no XEP-0198 resumption across a server restart);
#   - fedgate A's upstream queue lives in memory: killing fedgate A during
#     the outage loses it. Past limits.queue_timeout (or queue_max_*) the
#     queue is bounced to the sender (remote-server-timeout "the home
#     server link is down"), so a long outage is accounted, not lost.
# What Prosody stored offline before it stopped is on disk and survives.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init fault-home-restart 115

N=${FAULT_N:-10}
QT=30
OUTAGE=2
fault_topology
fault_gw_start ga "limits = { queue_timeout = $QT; };"
fault_gw_start gb "limits = { queue_timeout = $QT; };"
GA_LOG=$FG_TMP/ga.log
S=$FG_TMP

t0=$(date +%s%N)
fault_scen home.out \
    @:note:phase-1 alice:flood:bob:$N:chat bob:flood:alice:$N:chat \
    alice:collect:bob:20:delivered=$((2 * N)):bounced=0 \
    "@:signal:$S/quiet" "@:wait-file:$S/stopped:timeout=40" \
    alice:await-disconnect:timeout=10 \
    @:note:phase-3 bob:flood:alice:$N:chat \
    "@:signal:$S/sent-down" "@:wait-file:$S/restarted:timeout=60" \
    @:note:phase-4 alice:connect:retry:timeout=30 \
    bob:collect:alice:$((QT + 10)):delivered=$((3 * N)):bounced=0 \
    @:note:phase-5 alice:flood:bob:$N:chat bob:flood:alice:$N:chat \
    alice:collect:bob:30:delivered=$((5 * N)):bounced=0 \
    --settle 2 --max-time 110

# ---- 2. stop alice's home server ----
fault_await "$S/quiet" 40
ma=$(log_mark "$GA_LOG")
prosody_stop
t_stop=$(date +%s%N)
wait_for_log "$GA_LOG" 'upstream b\.test .*(retrying|closed|lost|refused)' 10 "$ma" ||
    fail "fedgate A did not notice its upstream link for b.test go down"
note "fedgate A: $(tail -c "+$((ma + 1))" "$GA_LOG" | grep -Em1 'upstream b\.test .*(retrying|closed|lost|refused)' | cut -c1-200)"
touch "$S/stopped"

# ---- 3. bob's batch waits in fedgate A's upstream queue ----
fault_await "$S/sent-down" 40
queued=""
end=$(($(date +%s) + 10))
while [ "$(date +%s)" -lt "$end" ]; do
    m=$(log_mark "$GA_LOG")
    kill -USR1 "$(fedgate_pid ga)"
    wait_for_log "$GA_LOG" 'status: upstream b\.test: ' 3 "$m" ||
        fail "fedgate A wrote no status on SIGUSR1"
    line=$(tail -c "+$((m + 1))" "$GA_LOG" | grep -m1 'status: upstream b\.test: ')
    queued=$(sed -nE 's/.* ([0-9]+) queued.*/\1/p' <<<"$line")
    [ "$queued" = "$N" ] && break
    sleep 0.2
done
note "fedgate A: ${line#*Z }"
[ "$queued" = "$N" ] || fail "fedgate A's upstream queue for b.test holds '$queued', expected $N"
grep -q 'queued' <<<"$line" && ! grep -q ': ready,' <<<"$line" ||
    fail "fedgate A's upstream link for b.test is not down: $line"
# A few seconds of outage (reconnect attempts with backoff meanwhile).
sleep "$OUTAGE"
fedgate_alive ga || fail "fedgate A died while its home server was down"
attempts=$(count_log "$GA_LOG" 'upstream b\.test .*retrying' "$ma")
note "fedgate A: $attempts reconnect attempt(s) for b.test during the outage"

# ---- 4. start it again ----
ma2=$(log_mark "$GA_LOG")
prosody_start
t_start=$(date +%s%N)
FG_STREAM_DOMAINS=(fedgate.a.test b.test)
fedgate_wait_ready ga 15 "$ma2"
note "home server a.test down for $(((t_start - t_stop) / 1000000)) ms;" \
    "fedgate A re-attached $((($(date +%s%N) - t_start) / 1000000)) ms after its start"
touch "$S/restarted"

wait "$FAULT_SCEN_PID"
rc=$?
sed 's/^/    | /' "$S/home.out.err" >&2
grep -Ev '^ +[0-9.]+ (alice|bob) ' "$S/home.out" | sed 's/^/    | /' >&2
note "scenario exit $rc in $((($(date +%s%N) - t0) / 1000000)) ms"
[ "$rc" = 0 ] || fail "the scenario failed (exit $rc)"

# ---- accounting ----
read -r a_sent a_del a_bnc a_un a_dup a_cond <<<"$(fault_counts home.out alice)"
read -r b_sent b_del b_bnc b_un b_dup b_cond <<<"$(fault_counts home.out bob)"
[ -n "$a_sent" ] && [ -n "$b_sent" ] || fail "no report lines"
note "ACCOUNTING alice->bob: sent=$a_sent delivered=$a_del bounced=$a_bnc unaccounted=$a_un duplicates=$a_dup conditions=$a_cond"
note "ACCOUNTING bob->alice: sent=$b_sent delivered=$b_del bounced=$b_bnc unaccounted=$b_un duplicates=$b_dup conditions=$b_cond"
[ "$a_sent/$a_del/$a_bnc/$a_un/$a_dup" = "$((2 * N))/$((2 * N))/0/0/0" ] ||
    fail "alice: expected sent=delivered=$((2 * N)), nothing bounced/unaccounted/duplicated"
[ "$b_sent/$b_del/$b_bnc/$b_un/$b_dup" = "$((3 * N))/$((3 * N))/0/0/0" ] ||
    fail "bob: expected sent=delivered=$((3 * N)), nothing bounced/unaccounted/duplicated"
# How bob's outage batch reached alice: from offline storage (<delay/>) or
# live (she was back before fedgate A re-attached).
nd=$(grep -Ec "^ +[0-9.]+ alice +<- <message[^>]*id=\"[^\"]*-bob-f[0-9]+-[0-9]+\".*urn:xmpp:delay" "$S/home.out")
note "bob's outage batch: $nd of $N delivered from Prosody's offline storage (<delay/>), $((N - nd)) live"

fedgate_alive ga || fail "fedgate A died"
fedgate_alive gb || fail "fedgate B died"
assert_loopback_only
fedgate_stop ga
fedgate_stop gb
peer_stop b.test
prosody_stop
fg_finish
