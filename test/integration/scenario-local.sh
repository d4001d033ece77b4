#!/bin/bash
# scenario-local.sh: self-test of test/tools/xmpp-scenario.py against one
# private Prosody 0.12 (s2s off, so both users live on a.test; vcard-temp
# enabled for the vCard steps). Real TLS against the test CA.
#
# Runs every step type once: subscription (subscribe, approve, unsubscribe,
# cancel), presence updates and probes after a client kill and after a
# Prosody restart, every message type with thread/chat state/receipt,
# a 100 KiB body and non-ASCII bodies, iq both ways (ping, version, disco,
# vCard) with error cases, offline storage, and the counting mode (100
# delivered; 100 to a JID that does not exist, all bounced). Then checks
# that the tool fails when it must: wrong CA and wrong password (exit 2),
# a body changed by Unicode normalisation and a wrong --expect-delivered
# (exit 1), usage errors (exit 3).
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init scenario-local 90

PY=/usr/bin/python3
SCEN=$top_srcdir/test/tools/xmpp-scenario.py
[ -x "$PY" ] || skip "no $PY"
"$PY" -c 'import slixmpp' 2>/dev/null || skip "python3-slixmpp not installed"

fg_make_certs
PROSODY_EXTRA=$'VirtualHost "a.test"\n\tmodules_enabled = { "vcard" }'
prosody_setup
prosody_register alice alice-pw-1
prosody_register bob 'bob:pw@2'    # ':' and '@' in a password
prosody_start

# scen OUTFILE [tool options and steps]: runs the tool as alice and bob;
# its output is shown and kept in $FG_TMP/OUTFILE; returns its status.
scen()
{
    local out=$FG_TMP/$1 rc
    shift
    "$PY" "$SCEN" --cafile "$FG_CAFILE" --timeout 10 \
        --account "alice@a.test:alice-pw-1@$FG_IP:$FG_C2S_PORT" \
        --account "bob@a.test:bob:pw@2@$FG_IP:$FG_C2S_PORT" \
        "$@" >"$out" 2>"$out.err"
    rc=$?
    sed 's/^/    | /' "$out" "$out.err" >&2
    return $rc
}

# expect_rc WANT OUTFILE REGEX [tool args]: exit status WANT and a line of
# the output matching REGEX.
expect_rc()
{
    local want=$1 out=$2 re=$3 rc
    shift 3
    scen "$out" "$@"
    rc=$?
    [ "$rc" = "$want" ] || fail "$out: xmpp-scenario exited $rc, expected $want"
    grep -Eq -- "$re" "$FG_TMP/$out" "$FG_TMP/$out.err" ||
        fail "$out: no output line matching /$re/"
}

# ---- 1. the full scenario -----------------------------------------------
# The middle part restarts Prosody: the tool signals, we restart, then let
# it go on (both clients must see the session drop and log in again).
t0=$(date +%s%N)
BIG=@100k
UTF='😀👍🏽 שלום עולם e\u0301 👨‍👩‍👧 \u202eRTL\u202c'
scen main.out --transcript \
    alice:subscribe:bob bob:expect-subscribe:alice \
    alice:expect-roster:bob:none:ask \
    bob:approve:alice alice:expect-subscribed:bob \
    alice:expect-presence:bob:available \
    alice:expect-roster:bob:to bob:expect-roster:alice:from \
    bob:subscribe:alice alice:expect-subscribe:bob alice:approve:bob \
    bob:expect-subscribed:alice bob:expect-presence:alice:available \
    alice:expect-roster:bob:both bob:expect-roster:alice:both \
    'bob:presence:show=away:status=Out to lunch \u2615' \
    'alice:expect-presence:bob:available:show=away:status=Out to lunch ☕' \
    @:note:messages \
    alice:send:bob:normal:plain bob:expect-message:alice:normal:plain \
    'alice:send:bob:chat:hello\: world:thread=th-1:state=active:receipt' \
    'bob:expect-message:alice:chat:hello\: world:thread=th-1:state=active:receipt' \
    alice:expect-receipt:bob \
    bob:send:alice:chat::thread=th-1:state=composing \
    alice:expect-message:bob:chat::thread=th-1:state=composing \
    'bob:send:alice:chat:reply:thread=th-1:state=active:receipt' \
    'alice:expect-message:bob:chat:reply:thread=th-1:state=active:receipt' \
    bob:expect-receipt:alice \
    alice:send:bob:headline:news:id=fixed-id-1 bob:expect-message:alice:headline:news \
    alice:send:bob/:groupchat:room-text:thread=g1 \
    bob:expect-message:alice:groupchat:room-text:thread=g1 \
    alice:send:bob/:error:failed:cond=item-not-found \
    bob:expect-message:alice:error:failed:cond=item-not-found \
    alice:send:bob:groupchat:to-bare alice:expect-bounce:bob:service-unavailable \
    alice:send:nobody@a.test:chat:lost alice:expect-bounce:nobody@a.test:service-unavailable:type=cancel \
    "alice:send:bob:chat:$BIG" "bob:expect-message:alice:chat:$BIG" \
    "bob:send:alice:chat:$UTF:thread=ü\:1" "alice:expect-message:bob:chat:$UTF:thread=ü\:1" \
    bob:expect-no-message:alice:0.3 \
    @:note:iq \
    alice:iq-ping:bob/ bob:iq-ping:alice/ alice:iq-ping:a.test \
    alice:iq-version:a.test:name=Prosody bob:iq-version:alice/:name=xmpp-scenario \
    'alice:iq-disco:bob/:feature=urn\:xmpp\:ping' alice:iq-disco:a.test:feature=vcard-temp \
    alice:iq-expect-error:item-not-found:vcard:bob \
    'bob:vcard-set:Bob בוב 😀' 'alice:iq-vcard:bob:fn=Bob \u05d1\u05d5\u05d1 \U0001F600' \
    alice:iq-expect-error:feature-not-implemented:vcard:bob/ \
    alice:iq-expect-error:service-unavailable:version:nobody@a.test \
    bob:iq-expect-error:service-unavailable:disco:nobody@a.test:type=cancel \
    alice:iq-expect-error:remote-server-timeout:ping:b.test \
    @:note:offline \
    bob:disconnect alice:expect-presence:bob:unavailable \
    'alice:send:bob:chat:stored 1:thread=off' alice:send:bob:normal:stored-2 \
    alice:send:bob:headline:not-stored \
    bob:connect \
    'bob:expect-message:alice:chat:stored 1:thread=off:delayed' \
    bob:expect-message:alice:normal:stored-2:delayed \
    bob:expect-no-message:alice:0.5 \
    alice:expect-presence:bob:available bob:expect-presence:alice:available \
    @:note:client-kill \
    alice:kill bob:expect-presence:alice:unavailable \
    alice:connect bob:expect-presence:alice:available alice:expect-presence:bob:available \
    @:note:server-restart \
    "@:signal:$FG_TMP/at-restart" "@:wait-file:$FG_TMP/restarted:timeout=30" \
    alice:await-disconnect bob:await-disconnect \
    alice:connect:retry bob:connect:retry:nopresence \
    alice:expect-no-message:bob:0.2 bob:presence \
    alice:expect-presence:bob:available bob:expect-presence:alice:available \
    @:note:counting \
    alice:flood:bob:100:chat bob:collect:alice:20:delivered=100:bounced=0 \
    alice:flood:nobody@a.test:100:chat alice:collect:nobody@a.test:20:delivered=0:bounced=100 \
    @:note:unsubscribe \
    alice:unsubscribe:bob bob:expect-unsubscribe:alice \
    alice:expect-roster:bob:from bob:expect-roster:alice:to \
    alice:cancel:bob bob:expect-unsubscribed:alice bob:expect-presence:alice:unavailable \
    alice:expect-roster:bob:none bob:expect-roster:alice:none \
    bob:forget 'bob:presence:status=after' \
    alice:expect-no-message:bob:0.2 \
    --expect-delivered 100 --expect-bounced 100 &
SCEN_PID=$!
FG_PIDS+=("$SCEN_PID")
end=$(($(date +%s) + 40))
while [ ! -e "$FG_TMP/at-restart" ]; do
    kill -0 "$SCEN_PID" 2>/dev/null || break
    [ "$(date +%s)" -lt "$end" ] || fail "the scenario did not reach the restart"
    sleep 0.05
done
if [ -e "$FG_TMP/at-restart" ]; then
    prosody_restart
    touch "$FG_TMP/restarted"
fi
wait "$SCEN_PID"
rc=$?
note "full scenario: exit $rc in $((($(date +%s%N) - t0) / 1000000)) ms"
[ "$rc" = 0 ] || fail "the scenario failed (exit $rc)"
out=$FG_TMP/main.out
grep -q '^FAIL' "$out" && fail "a FAIL line in a passing run"
# Every step printed one ok line (+2 for the initial connects).
steps=$(grep -c '^ok ' "$out")
[ "$steps" -ge 100 ] || fail "only $steps ok lines"
grep -Eq '^report total sent=200 delivered=100 bounced=100 unaccounted=0 duplicates=0 conditions=service-unavailable:100$' "$out" ||
    fail "no exact report line"
grep -Eq '^ok alice:iq-version:a.test:name=Prosody .*: Prosody 0\.12' "$out" ||
    fail "no version detail"
# The transcript shows the stanzas that crossed.
grep -Eq '^ +[0-9.]+ bob +<- <message .*id="fixed-id-1"' "$out" ||
    fail "the transcript lacks the headline"
grep -Eq '<- <presence .*type="subscribe"' "$out" || fail "transcript lacks subscribe"
note "main scenario: $steps ok lines"

# ---- 2. the tool must fail when it should ----------------------------------
expect_rc 2 badca.out 'FAIL connect alice: .*TLS' \
    --cafile "$FG_OTHER_CAFILE" alice:iq-ping:a.test
expect_rc 2 badpw.out 'FAIL connect carol: .*authentication failed' \
    --account "carol=alice@a.test:wrong@$FG_IP:$FG_C2S_PORT" alice:iq-ping:a.test
# NFD "e + combining acute" must not match NFC "é"; a wrong count fails.
expect_rc 1 nfc.out 'FAIL bob:expect-message:.*first difference|body .*expected' \
    'alice:send:bob:chat:e\u0301' 'bob:expect-message:alice:chat:\u00e9'
expect_rc 1 thread.out 'FAIL bob:expect-message:.*thread None, expected x' \
    alice:send:bob:chat:t bob:expect-message:alice:chat:t:thread=x
# Headlines to a bare JID reach only available resources and are never
# stored, so the floods go to bob's full JID (no race with his presence).
expect_rc 1 count.out 'FAIL report: delivered=5, expected 6' --expect-delivered 6 \
    alice:flood:bob/:5:headline bob:collect:alice:10
expect_rc 1 noreply.out 'FAIL alice:expect-message:bob:chat:never:timeout=0.5: no message from bob@a.test within 0.5 s' \
    alice:expect-message:bob:chat:never:timeout=0.5
expect_rc 1 unacc.out 'FAIL alice:collect:.*unaccounted' \
    alice:flood:bob/:3:headline 'alice:collect:bob:0' 'bob:collect:alice:5'
expect_rc 3 usage1.out 'unknown verb' alice:frobnicate:bob
expect_rc 3 usage2.out 'type must be one of' alice:send:bob:shout:x
expect_rc 3 usage3.out 'no account named' carol:iq-ping:a.test

note "total $((($(date +%s%N) - t0) / 1000000)) ms"
fg_finish
