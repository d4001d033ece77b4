#!/bin/bash
# adhoc.sh: XEP-0050 administration of fedgate from a real client library
# (slixmpp's XEP-0050 plugin, test/tools/xmpp-adhoc.py) through a real
# Prosody.
#
# fedgate serves a.test with admins = [ "admin@a.test" ] and one peer,
# b.test, whose s2s address (host 127.0.N.9, port 5269) has nothing
# listening. Phases:
#   admin: pings b.test (the route tries and fails), lists the commands
#          (all twelve), runs list-peers and sees b.test with a last failure
#          that names the connect error; sets the log level to warn (the
#          debug lines stop at once) and back; reads the statistics;
#          walks peer-detail with next, prev and complete; asks for the
#          Prosody snippet; reloads (OK), then reloads a broken file (the
#          file:line error comes back, fedgate keeps running); rotates
#          the dialback secret and sees the rotation in the audit log.
#   malformed: a list-single value that was not offered and a missing
#          required field each get bad-request + bad-payload naming the
#          field; the session survives and a good submission completes.
#   non-admin: alice sees no commands and gets forbidden running a node
#          by name.
. "$(dirname "$0")/lib.sh"
fg_init adhoc
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
DEAD_IP=127.0.$FG_NET.9
fedgate_config "$conf"
# admins, and a peer address where nothing listens; a short queue
# timeout so that the ping is bounced quickly after the retries.
sed -i -e '/^domains = /a admins = [ "admin@a.test" ];' \
    -e "s|domain = \"b.test\";|domain = \"b.test\"; host = \"$DEAD_IP\"; port = 5269;|" \
    -e 's|^log = .*|log = { level = "debug"; };\nlimits = { queue_timeout = 3; };|' \
    "$conf"
grep -q "host = \"$DEAD_IP\"" "$conf" || hard_error "config edit failed"
port_listening "$DEAD_IP" 5269 && hard_error "something listens on $DEAD_IP:5269"
fedgate_start gw "$conf"
fedgate_wait_ready gw 15

ADHOC=$top_srcdir/test/tools/xmpp-adhoc.py
SVC=fedgate.$FG_DOMAIN
N=0
# adhoc USER PASSWORD OP...: runs the tool, output in $FG_TMP/adhoc.N.out
# (name in $OUT).
adhoc()
{
    local user=$1 pw=$2
    shift 2
    N=$((N + 1))
    OUT=$FG_TMP/adhoc.$N.out
    fg_log_add "$OUT"
    /usr/bin/python3 "$ADHOC" --cafile "$FG_CAFILE" --jid "$user@$FG_DOMAIN" \
        --password "$pw" --host "$FG_IP" --port "$FG_C2S_PORT" \
        --service "$SVC" --timeout 15 "$@" >"$OUT" 2>&1 ||
        fail "xmpp-adhoc.py failed for $user (see $OUT)"
}

# has PATTERN WHAT: the last tool output matches the ERE PATTERN.
has()
{
    grep -Eq -- "$1" "$OUT" || fail "$2 (pattern '$1' not in $OUT)"
}

note "phase: admin pings b.test, then lists commands and peers"
adhoc admin "$ADMIN_PW" ping:b.test list run:urn:fedgate:cmd:list-peers
has '^ping-error remote-server-(not-found|timeout)' "the ping to b.test was not bounced"
has '^commands 15$' "the admin does not see fifteen commands"
for c in list-peers peer-detail statistics set-log-level reload server-snippet \
    block-domain unblock-domain disconnect-route retry-route \
    rotate-dialback-secret audit-log; do
    has "^command urn:fedgate:cmd:$c " "command $c not listed"
done
has '^status completed$' "list-peers did not complete"
has '^item domain=b\.test;' "list-peers has no item for b.test"
has '^item domain=b\.test;.*last-failure=connect failed: Connection refused \([0-9T:-]+Z\)' \
    "list-peers does not show the refused connect as b.test's last failure"
has '^item domain=b\.test;.*home-link=ready' "b.test's home-server link is not shown ready"
note "$(grep '^item' "$OUT")"

note "phase: set-log-level takes effect at once"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:set-log-level submit:level=warn
has '^field level list-single debug$' "the form does not offer the current level"
has '^note info Log level is now warn\.' "set-log-level did not confirm"
wait_for_log "$log" 'log level set to warn by an administrator' 5 ||
    fail "fedgate did not log the level change"
# a ping to b.test makes the route log "connecting" at debug level
mark=$(log_mark "$log")
adhoc admin "$ADMIN_PW" ping:b.test run:urn:fedgate:cmd:statistics
[ "$(count_log "$log" 'Z debug ' "$mark")" = 0 ] ||
    fail "debug lines still logged after the level was set to warn"
has '^field uptime text-single [0-9]+$' "statistics has no uptime"
has '^field links text-single 3/3$' "statistics does not show 3/3 home-server links"
has '^field bounces text-single [1-9]' "statistics shows no bounce for the ping"
has '^field routes-idle text-single 1$|^field routes-(resolving|connecting) text-single 1$' \
    "statistics shows no route by state"
has '^field auth-failures text-single 0$' "statistics miscounts authentication failures"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:set-log-level submit:level=debug
has '^note info Log level is now debug\.' "set-log-level back to debug failed"
mark=$(log_mark "$log")
adhoc admin "$ADMIN_PW" ping:b.test
[ "$(count_log "$log" 'Z debug ' "$mark")" -gt 0 ] ||
    fail "no debug lines after the level was set back to debug"

note "phase: peer-detail with next, prev and complete; server snippet"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:peer-detail submit:peer=b.test prev \
    submit:peer=b.test submit: run:urn:fedgate:cmd:server-snippet \
    submit:server=prosody
[ "$(grep -c '^status executing$' "$OUT")" = 5 ] ||
    fail "peer-detail and server-snippet did not go through their stages"
has '^field peer list-single b\.test$' "prev did not keep the chosen peer"
has '^field - fixed .*b\.test.*last failure: connect failed' "stage 2 does not summarise b.test"
has '^item domain=b\.test;' "peer-detail result has no b.test item"
has '^field snippet text-multi .*Component "b\.test"' "no Prosody snippet for b.test"

note "phase: reload from the client"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:reload submit:confirm=1
has '^field result text-single OK$' "reload did not say OK"
wait_for_log "$log" 'configuration applied .*: 1 peer' 10 || fail "no 'configuration applied' line"
printf 'colour = "blue";\n' >>"$conf"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:reload submit:confirm=1
has '^note error Reload failed' "a broken file was not reported"
has "^field messages text-multi .*fedgate\\.conf:[0-9]+: unknown key 'colour'" \
    "the reload errors do not name file:line"
fedgate_alive gw || fail "fedgate died on a broken reload"
sed -i '/^colour = /d' "$conf"

note "phase: rotate the dialback secret, then read the audit log"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:rotate-dialback-secret \
    submit:confirm=1 run:urn:fedgate:cmd:audit-log submit:count=10
has '^note info The dialback secret is rotated' "the rotation was not confirmed"
wait_for_log "$log" 'dialback secret rotated by admin@a\.test' 10 ||
    fail "no 'dialback secret rotated' line"
has '^item when=[0-9T:-]+Z;who=admin@a\.test;what=rotate dialback secret$' \
    "the audit log does not show the rotation"
fedgate_alive gw || fail "fedgate died rotating the dialback secret"

note "phase: malformed submissions get field-level errors"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:set-log-level submit:level=loud \
    submit:other=1 submit:level=info
has "^error bad-request bad-payload field 'level' \\(Log level\\) is not one of the offered options" \
    "no field-level error for a value that was not offered"
has "^error bad-request bad-payload field 'level' \\(Log level\\) is required" \
    "no field-level error for a missing required field"
has '^note info Log level is now info\.' "the session did not survive the errors"

note "phase: a non-admin sees nothing and is refused"
adhoc "$FG_USER" "$FG_PASSWORD" list run:urn:fedgate:cmd:list-peers \
    run:urn:fedgate:cmd:reload
has '^commands 0$' "alice sees commands"
[ "$(grep -c '^error forbidden ' "$OUT")" = 2 ] ||
    fail "alice was not refused with forbidden for both nodes"
grep -q '^status ' "$OUT" && fail "alice got a command answer"

fedgate_stop gw
prosody_stop
fg_finish
