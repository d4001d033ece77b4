#!/bin/bash
# adhoc-peers.sh: peers added, diagnosed, kept and removed at run time by an
# admin with a real client library (slixmpp's XEP-0050 plugin,
# test/tools/xmpp-adhoc.py), through a real Prosody whose routing the
# ready-made hook (config/hooks/prosody-peer-hook) changes; nothing is
# restarted until the restart phase.
#
# Topology (127.0.N.x): .1 Prosody a.test (s2s off; components: only
# fedgate.a.test, plus whatever the hook writes into peers.d/, which the
# config Includes), .2 fedgate A (admins = admin@a.test, no peers at
# start, upstream.peer_hook = the Prosody hook), .3 Prosody b.test behind
# .4 fedgate B (which peers with a.test), .53 DNS.
# Phases:
#   before:  alice pings b.test: her own Prosody refuses it (no component).
#   add:     a malformed submission gets a field-level error (port); then
#            the admin adds b.test, certificate-only, with a trust_anchor
#            that did not sign fedgate B's certificate: the reply reports
#            the hook's success; fedgate's stream for b.test comes up at
#            once; alice's ping fails naming the certificate, and
#            list-peers shows b.test's last failure with that reason.
#   edit:    the admin edits b.test (the form comes filled in; auth any,
#            no trust_anchor): alice's ping is answered by b.test's
#            server; list-peers shows the route ready with TLS and since
#            when; statistics count stanzas in.
#   restart: fedgate A restarts: b.test is still a peer (from state_db,
#            not the file) and alice reaches b.test again.
#   remove:  the admin removes b.test: the hook removes the component,
#            alice's ping is refused by Prosody again; audit rows for each
#            change carry the admin's bare JID.
. "$(dirname "$0")/lib.sh"
fg_init adhoc-peers
FG_SERVER=prosody
fg_server_facts
fedgate_require
fedgate_has_s2s || fail "$FEDGATE has no s2s engine"
/usr/bin/python3 -c 'import slixmpp' 2>/dev/null || skip "no python3-slixmpp"
HOOK=${FG_TEST_PEER_HOOK:-$top_srcdir/config/hooks/prosody-peer-hook}
[ -x "$HOOK" ] || fail "no executable $HOOK"

GB_IP=127.0.$FG_NET.4 HB_IP=127.0.$FG_NET.3
fg_make_certs
fg_make_cert gwb "DNS:b.test" "DNS:fedgate.b.test"
for d in a.test fedgate.a.test; do dns_srv "$d" 5269 "$FG_S2S_IP" 10; done
for d in b.test fedgate.b.test; do dns_srv "$d" 5269 "$GB_IP" 10; done
dns_start

# Prosody a.test: fedgate's own component only, and the hook's directory
PEERS_DIR=$FG_TMP/prosody-peers.d
mkdir -p "$PEERS_DIR"
PROSODY_COMPONENTS=0
PROSODY_GLOBAL_EXTRA="modules_disabled = { \"s2s\" }
component_interfaces = { \"$FG_IP\" }
component_ports = { $FG_COMP_PORT }"
PROSODY_EXTRA="Component \"fedgate.$FG_DOMAIN\"
	component_secret = \"$FG_SECRET_GW\"

Include \"$PEERS_DIR/*.cfg.lua\""
prosody_setup
ADMIN_PW=admin-pw-1
prosody_register alice alice-pw-1
prosody_register admin "$ADMIN_PW"
prosody_start

prosody_peer_setup b.test "$HB_IP" s2s=off \
    components="fedgate.b.test:$FG_SECRET_GW a.test:secret-a"
peer_start b.test
s2s_gw_start gb domain=b.test home="$HB_IP" secret=secret-a \
    listen="$GB_IP:5269" cert=gwb peer=a.test:any

conf=$FG_TMP/ga/fedgate.conf
log=$FG_TMP/ga.log
db=$FG_TMP/ga/state.db
fedgate_s2s_config "$conf"
sed -i -e '/^domains = /a admins = [ "admin@a.test" ];' \
    -e "s|^    backoff_max_ms = .*|&\n    peer_hook = \"$HOOK --config $PROSODY_CFG --dir $PEERS_DIR\";|" \
    "$conf"
grep -q 'peer_hook = ' "$conf" || hard_error "config edit failed"
grep -q 'domain = ' "$conf" && hard_error "fedgate A must start without peers"
fedgate_start ga "$conf"
FG_STREAM_DOMAINS=("fedgate.$FG_DOMAIN")
fedgate_wait_ready ga 15

ADHOC=$top_srcdir/test/tools/xmpp-adhoc.py
SVC=fedgate.$FG_DOMAIN
N=0
# adhoc USER PASSWORD OP...: runs the tool, output in $OUT.
adhoc()
{
    local user=$1 pw=$2
    shift 2
    N=$((N + 1))
    OUT=$FG_TMP/adhoc.$N.out
    fg_log_add "$OUT"
    /usr/bin/python3 "$ADHOC" --cafile "$FG_CAFILE" --jid "$user@$FG_DOMAIN" \
        --password "$pw" --host "$FG_IP" --port "$FG_C2S_PORT" \
        --service "$SVC" --timeout 30 "$@" >"$OUT" 2>&1 ||
        fail "xmpp-adhoc.py failed (see $OUT)"
}
has()
{
    grep -Eq -- "$1" "$OUT" || fail "$2 (pattern '$1' not in $OUT)"
}
audit()
{
    /usr/bin/python3 - "$db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
for who, what in con.execute("SELECT who, what FROM audit ORDER BY rowid"):
    print("%s|%s" % (who, what))
PY
}

note "phase: before: b.test is nobody's peer, Prosody refuses it"
adhoc alice alice-pw-1 ping:b.test
has '^ping-error ' "a ping to b.test went somewhere before it was a peer"

note "phase: add b.test at run time, trusting the wrong CA"
ADD=run:urn:fedgate:cmd:add-peer
adhoc admin "$ADMIN_PW" "$ADD" \
    "submit:domain=b.test;secret=rt-secret-b;auth=certificate;host=$GB_IP;port=99999" \
    "submit:domain=b.test;secret=rt-secret-b;auth=certificate;host=;port=;trust_anchor=$FG_OTHER_CAFILE"
has "^error bad-request bad-payload field 'port' \\(Port with host \\(default 5269\\)\\): .*peers\\.port" \
    "a port out of range was not refused on its field"
has '^note info Peer b\.test added: stored in state_db and applied' \
    "add-peer did not confirm"
has 'Home-server hook "add" succeeded \(exit 0\)' \
    "the reply does not report the hook's success"
[ -f "$PEERS_DIR/b.test.cfg.lua" ] || fail "the hook wrote no $PEERS_DIR/b.test.cfg.lua"
wait_for_log "$log" 'upstream b\.test .*stream ready' 15 ||
    fail "fedgate's stream for b.test did not come up after the hook"
adhoc alice alice-pw-1 ping:b.test
has '^ping-error remote-server-not-found .*certificate' \
    "alice's ping to b.test (certificate from an untrusted CA) did not fail naming it"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:list-peers
has '^item domain=b\.test;[^ ]*last-failure=[^;]*certificate' \
    "list-peers does not name b.test's certificate problem"
grep -E '^item domain=b\.test' "$OUT" | sed 's/^/    | /' >&2

note "phase: edit b.test to trust the right CA: alice reaches b.test"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:edit-peer submit:peer=b.test \
    "submit:auth=any;secret=;trust_anchor="
has '^field auth list-single certificate' "the edit form is not prefilled"
has "^field trust_anchor text-single $FG_OTHER_CAFILE" \
    "the edit form does not show the trust anchor"
has '^note info Peer b\.test changed' "edit-peer did not confirm"
adhoc alice alice-pw-1 ping:b.test
has '^pong' "alice cannot reach b.test after the peer was fixed at run time"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:list-peers \
    run:urn:fedgate:cmd:statistics
has '^item domain=b\.test;local=a\.test;state=ready;direction=[a-z]+;auth=[a-z-]+;tls-version=TLSv1\.[23];[^ ]*connected-since=20[0-9-]+T' \
    "list-peers does not show b.test ready with TLS and since when"
has '^field stanzas text-single [0-9]+ out \([0-9.]+/s\), [1-9][0-9]* in' \
    "statistics show no stanzas in"

note "phase: edit the ready b.test to dialback only: its streams start over"
mark=$(log_mark "$log")
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:edit-peer submit:peer=b.test \
    "submit:auth=dialback;secret="
has '^note info Peer b\.test changed' "the second edit-peer did not confirm"
wait_for_log "$log" 'peering settings of b\.test changed' 5 "$mark" ||
    fail "editing a connected peer did not restart its streams"
adhoc alice alice-pw-1 ping:b.test run:urn:fedgate:cmd:list-peers
has '^pong' "alice cannot reach b.test after its auth was changed"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:list-peers
has '^item domain=b\.test;local=a\.test;state=ready;direction=[a-z]+;auth=dialback;' \
    "the route to b.test did not authenticate again with dialback"

note "phase: restart; the runtime peer is still there"
fedgate_stop ga
mark=$(log_mark "$log")
fedgate_start ga "$conf"
fedgate_wait_ready ga 15 "$mark"
wait_for_log "$log" 'state_db: peer b\.test as set at run time' 5 "$mark" ||
    fail "the stored peer b.test was not loaded at start"
adhoc alice alice-pw-1 ping:b.test
has '^pong' "alice cannot reach b.test after fedgate restarted"

note "phase: remove b.test"
adhoc admin "$ADMIN_PW" run:urn:fedgate:cmd:remove-peer submit:peer=b.test
has '^note info Peer b\.test removed' "remove-peer did not confirm"
has 'Home-server hook "remove" succeeded' "the hook's removal is not reported"
[ -f "$PEERS_DIR/b.test.cfg.lua" ] && fail "the hook left $PEERS_DIR/b.test.cfg.lua"
adhoc alice alice-pw-1 ping:b.test
has '^ping-error ' "alice still reaches b.test after its removal"

expected="admin@a.test|add peer b.test
admin@a.test|edit peer b.test
admin@a.test|edit peer b.test
admin@a.test|remove peer b.test"
[ "$(audit)" = "$expected" ] || fail "audit rows are wrong: $(audit)"

fedgate_stop ga
fedgate_stop gb
peer_stop b.test
prosody_stop
fg_finish
