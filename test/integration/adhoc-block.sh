#!/bin/bash
# adhoc-block.sh: blocking a domain, and route control, from a real client
# library (slixmpp's XEP-0050 plugin, test/tools/xmpp-adhoc.py) through a
# real Prosody; the blocks live in SQLite (state_db) and survive a restart.
#
# fedgate serves a.test with admins = [ "admin@a.test" ] and one peer,
# b.test, whose s2s address (127.0.N.9:5269) has nothing listening, so a
# stanza for b.test waits in the route's queue while the route retries.
# Phases:
#   start:   a state_db in a missing directory stops fedgate at start with
#            an error naming the file.
#   block:   alice pings b.test (it waits, queued); the admin blocks b.test:
#            alice's ping comes back at once with not-allowed naming
#            the block, list-peers shows b.test blocked, a new ping is
#            refused without any connect attempt; the audit table holds
#            the change with the admin's bare JID.
#   restart: fedgate stops and starts again: b.test is still blocked.
#   unblock: the admin unblocks b.test (a list-single of blocked domains);
#            a ping makes the route connect again; retry-route connects at
#            once; disconnect-route is accepted; every change is audited.
. "$(dirname "$0")/lib.sh"
fg_init adhoc-block
FG_SERVER=prosody
fg_server_facts
fg_make_certs
prosody_setup
prosody_start
prosody_register "$FG_USER" "$FG_PASSWORD"
ADMIN_PW=admin-pw-1
prosody_register admin "$ADMIN_PW"

conf=$FG_TMP/gw/fedgate.conf
log=$FG_TMP/gw.log
db=$FG_TMP/gw/state.db
DEAD_IP=127.0.$FG_NET.9
fedgate_config "$conf"
# a queue timeout long enough that only the block can bounce the first
# ping in time, short enough for the client's 20 s timeout
sed -i -e '/^domains = /a admins = [ "admin@a.test" ];' \
    -e "s|domain = \"b.test\";|domain = \"b.test\"; host = \"$DEAD_IP\"; port = 5269;|" \
    -e 's|^log = .*|log = { level = "debug"; };\nlimits = { queue_timeout = 12; };|' \
    "$conf"
grep -q "host = \"$DEAD_IP\"" "$conf" || hard_error "config edit failed"
grep -q "state_db = \"$db\"" "$conf" || hard_error "state_db is not $db"
port_listening "$DEAD_IP" 5269 && hard_error "something listens on $DEAD_IP:5269"

note "phase: a state_db in a missing directory stops the start, named"
bad_db=$FG_TMP/no/such/dir/state.db
sed "s|^state_db = .*|state_db = \"$bad_db\";|" "$conf" >"$FG_TMP/gw/bad.conf"
fg_log_add "$FG_TMP/bad-start.out"
timeout 10 "$FEDGATE" -c "$FG_TMP/gw/bad.conf" >"$FG_TMP/bad-start.out" 2>&1 </dev/null &&
    fail "fedgate started with state_db in a missing directory"
grep -Fq "state_db $bad_db: cannot open" "$FG_TMP/bad-start.out" ||
    fail "the start-up error does not name $bad_db"

fedgate_start gw "$conf"
fedgate_wait_ready gw 15
[ -f "$db" ] || fail "fedgate did not create $db"

ADHOC=$top_srcdir/test/tools/xmpp-adhoc.py
SVC=fedgate.$FG_DOMAIN
N=0
# adhoc_cmd USER PASSWORD OP...: the tool's command line.
adhoc_cmd()
{
    local user=$1 pw=$2
    shift 2
    echo /usr/bin/python3 "$ADHOC" --cafile "$FG_CAFILE" \
        --jid "$user@$FG_DOMAIN" --password "$pw" --host "$FG_IP" \
        --port "$FG_C2S_PORT" --service "$SVC" --timeout 20 "$@"
}
# adhoc USER PASSWORD OP...: runs the tool, output in $OUT.
adhoc()
{
    N=$((N + 1))
    OUT=$FG_TMP/adhoc.$N.out
    fg_log_add "$OUT"
    $(adhoc_cmd "$@") >"$OUT" 2>&1 || fail "xmpp-adhoc.py failed (see $OUT)"
}

# has PATTERN WHAT: the last tool output matches the ERE PATTERN.
has()
{
    grep -Eq -- "$1" "$OUT" || fail "$2 (pattern '$1' not in $OUT)"
}

# audit: the audit rows as "who|what" lines.
audit()
{
    /usr/bin/python3 - "$db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
for who, what in con.execute("SELECT who, what FROM audit ORDER BY rowid"):
    print("%s|%s" % (who, what))
PY
}

BLOCKED='^ping-error not-allowed b\.test is blocked by fedgate.s administrator'

note "phase: block b.test while alice's stanza waits for it"
mark=$(log_mark "$log")
ALICE_OUT=$FG_TMP/alice-wait.out
fg_log_add "$ALICE_OUT"
$(adhoc_cmd "$FG_USER" "$FG_PASSWORD" ping:b.test) >"$ALICE_OUT" 2>&1 &
alice=$!
wait_for_log "$log" 'route a\.test -> b\.test: .*retrying in' 15 "$mark" ||
    fail "the route to b.test did not start retrying"
started=$(date +%s)
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:block-domain \
    submit:domain=user@b.test submit:domain=b.test \
    run:urn:fedgate:cmd:list-peers ping:b.test
has "^error bad-request bad-payload field 'domain' \\(Domain\\) is not a domain" \
    "a JID with a user part was accepted as a domain"
has '^note info b\.test is blocked' "block-domain did not confirm"
has '^item domain=b\.test;local=a\.test;state=blocked;' \
    "list-peers does not show b.test blocked"
has "$BLOCKED" "the admin's own ping to a blocked domain was not refused"
wait "$alice" || fail "alice's client failed (see $ALICE_OUT)"
grep -Eq -- "$BLOCKED" "$ALICE_OUT" ||
    fail "alice's waiting ping was not bounced with the block (see $ALICE_OUT)"
[ $(($(date +%s) - started)) -lt 12 ] ||
    fail "alice's ping came back only after the queue timeout"
wait_for_log "$log" 'domain b\.test blocked by admin@a\.test' 5 "$mark" ||
    fail "fedgate did not log the block with the admin's bare JID"
mark=$(log_mark "$log")
adhoc "$FG_USER" "$FG_PASSWORD" ping:b.test
has "$BLOCKED" "a new ping to the blocked b.test was not refused"
[ "$(count_log "$log" 'connect(ing)? .*127\.0\.[0-9]+\.9' "$mark")" = 0 ] ||
    fail "fedgate tried to connect to the blocked b.test"
[ "$(audit)" = "admin@a.test|block b.test" ] ||
    fail "audit rows are not [admin@a.test|block b.test]: $(audit)"

note "phase: restart; b.test stays blocked"
fedgate_stop gw
mark=$(log_mark "$log")
fedgate_start gw "$conf"
fedgate_wait_ready gw 15 "$mark"
wait_for_log "$log" 'state_db: b\.test is blocked \(by admin@a\.test' 5 "$mark" ||
    fail "the stored block was not loaded at start"
adhoc "$FG_USER" "$FG_PASSWORD" ping:b.test
has "$BLOCKED" "b.test is not blocked after a restart"

note "phase: unblock; the route tries again; retry and disconnect"
mark=$(log_mark "$log")
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:unblock-domain \
    submit:domain=b.test run:urn:fedgate:cmd:list-peers
has '^field domain list-single ' "unblock-domain offers no list of blocked domains"
has '^note info b\.test is no longer blocked' "unblock-domain did not confirm"
grep -Eq '^item domain=b\.test;[^ ]*state=blocked' "$OUT" &&
    fail "list-peers still shows b.test blocked"
adhoc "$FG_USER" "$FG_PASSWORD" ping:b.test
has '^ping-error remote-server-(not-found|timeout)' \
    "the ping after unblocking was not bounced as unreachable"
grep -Eq "$BLOCKED" "$OUT" && fail "b.test still refused as blocked"
wait_for_log "$log" 'route a\.test -> b\.test: .*(retrying|failed)' 5 "$mark" ||
    fail "the route to b.test did not try again after the unblock"
mark=$(log_mark "$log")
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:retry-route \
    submit:route=a.test/b.test run:urn:fedgate:cmd:disconnect-route \
    submit:route=a.test/b.test
has '^note info Route a\.test -> b\.test is connecting now' "retry-route did not confirm"
has '^note info Route a\.test -> b\.test is disconnected' "disconnect-route did not confirm"
wait_for_log "$log" 'route a\.test -> b\.test: retried now by an administrator' 5 "$mark" ||
    fail "retry-route did not start an attempt"
expected="admin@a.test|block b.test
admin@a.test|unblock b.test
admin@a.test|retry a.test -> b.test
admin@a.test|disconnect a.test -> b.test"
[ "$(audit)" = "$expected" ] || fail "audit rows are wrong: $(audit)"

fedgate_stop gw
prosody_stop
fg_finish
