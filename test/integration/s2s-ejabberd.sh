#!/bin/bash
# s2s-ejabberd.sh: fedgate's peering engine against an unmodified ejabberd.
#
# Topology (127.0.N.0/24, see lib.sh): .1 home Prosody for a.test (s2s
# OFF), .2 fedgate for a.test, .3 ejabberd 23.01 for b.test with s2s on
# (STARTTLS required, mod_s2s_dialback), user bob, .53 unbound. SRV
# targets are IP addresses (ejabberd resolves the target with the system
# resolver, which cannot see the test's DNS). Certificates carry DNS-IDs
# only (ejabberd 23.01 fails on id-on-xmppAddr).
# Cases:
#   a. certificates: SASL EXTERNAL both ways; bob -> a.test and
#      fedgate.a.test, alice -> b.test
#   b. dialback: ejabberd's certificate from an unrelated CA, fedgate peer
#      auth = "dialback"
#   c. direct TLS (XEP-0368): fedgate connects to ejabberd's direct TLS
#      s2s listener via _xmpps-server; ejabberd 23.01 connects with
#      whatever its resolver picks (asserted only on fedgate's side)
#   x. fedgate's own certificate with only serverAuth: ejabberd 23.01
#      refuses it for SASL EXTERNAL from fedgate, fedgate falls back to
#      dialback on the same stream (auth = "any")
#   n. last (ejabberd then refuses a.test for 16-126 s), fedgate auth =
#      "certificate": ejabberd's certificate from an unrelated CA (alice and
#      bob get errors), then with a wrong name (alice gets an error; bob
#      cannot log in to a server with that certificate); fedgate logs why.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init s2s-ejabberd

B=b.test
B_IP=127.0.$FG_NET.3
GW=gw

fedgate_require
fedgate_has_s2s || fail "$FEDGATE has no s2s engine (no s2s.direct_tls_listen)"
fg_make_certs
fg_make_cert b-other ca=other "DNS:$B"
fg_make_cert b-wrong "DNS:wrong.test"
fg_make_cert gw-sa eku=server "DNS:$FG_DOMAIN" "DNS:fedgate.$FG_DOMAIN"

dns_records()
{
    dns_clear
    dns_srv "$FG_DOMAIN" 5269 "$FG_S2S_IP" 10
    dns_srv "fedgate.$FG_DOMAIN" 5269 "$FG_S2S_IP" 10
    dns_srv "$B" 5269 "$B_IP" 10
    if [ "${1:-}" = direct ]; then
        dns_srvs "$FG_DOMAIN" 5270 "$FG_S2S_IP"
        dns_srvs "fedgate.$FG_DOMAIN" 5270 "$FG_S2S_IP"
        dns_srvs "$B" 5270 "$B_IP"
    fi
}
dns_records
dns_start

prosody_setup
prosody_start
prosody_register "$FG_USER" "$FG_PASSWORD"

# b_start [ejabberd_peer_setup keys]: (re)starts ejabberd b.test.
B_REGISTERED=0
b_start()
{
    peer_stop "$B"
    ejabberd_peer_setup "$B" "$B_IP" "$@"
    peer_start "$B"
    # The spool (users) survives a restart with a new config.
    [ "$B_REGISTERED" = 1 ] || peer_register "$B" bob bob-pw
    B_REGISTERED=1
}

gw_start() { s2s_gw_start "$GW" "$@"; }
gw_log_has() { s2s_log_has "$GW" "$@"; }
bob() { probe --on "$B" --as bob bob-pw "$@"; }
A=$(re_escape "$FG_DOMAIN") BR=$(re_escape "$B") BIPR=$(re_escape "$B_IP")
GWR=$(re_escape "$FG_S2S_IP")

# ---- a. certificates + SASL EXTERNAL ---------------------------------------------
s2s_case a-certificates
b_start
gw_start "peer=$B:certificate"
bob --timeout 20 ping "$FG_DOMAIN" || fail "bob@$B could not ping $FG_DOMAIN"
bob --timeout 10 ping "fedgate.$FG_DOMAIN" || fail "bob@$B could not ping fedgate.$FG_DOMAIN"
gw_log_has "s2s in .*authenticated $BR -> $A with sasl-external"
gw_log_has "s2s out .*authenticated $A -> $BR with sasl-external"
probe_ok --timeout 20 ping "$B"
probe_out_has "^ok ping $BR"
s2s_case_done

# ---- b. dialback ----------------------------------------------------------------------
s2s_case b-dialback
b_start cert=b-other
gw_start "peer=$B:dialback"
bob --timeout 20 ping "$FG_DOMAIN" || fail "bob@$B could not ping $FG_DOMAIN"
probe_ok --timeout 20 ping "$B"
gw_log_has "s2s in .*authenticated $BR -> $A with dialback"
gw_log_has "s2s out .*authenticated $A -> $BR with dialback"
s2s_log_lacks "$GW" "with sasl-external"
s2s_case_done

# ---- c. direct TLS ------------------------------------------------------------------------
s2s_case c-direct-tls
dns_records direct
dns_restart
b_start direct_tls=5270
gw_start "peer=$B:certificate" "direct_tls=$FG_S2S_IP:5270"
probe_ok --timeout 20 ping "$B"
gw_log_has "target 0: $BIPR:5270 direct TLS"
gw_log_has "s2s out $A -> $BR $BIPR:5270 \\(direct TLS\\): authenticated $A -> $BR with sasl-external"
bob --timeout 20 ping "$FG_DOMAIN" || fail "bob@$B could not ping $FG_DOMAIN"
gw_log_has "s2s in .*authenticated $BR -> $A with sasl-external"
if grep -Eq "via $GWR:5270 \\(direct TLS\\): authenticated $BR" "$FG_TMP/$GW.log"; then
    note "$S2S_CASE: ejabberd connected to fedgate with direct TLS"
else
    note "$S2S_CASE: ejabberd connected to fedgate with STARTTLS (no direct TLS client in ejabberd 23.01)"
fi
dns_records
dns_restart
s2s_case_done

# ---- x. fedgate's own certificate with only serverAuth (what public CAs
# issue since 2026). ejabberd 23.01 refuses it from a connecting peer
# ("unsupported certificate purpose", fixed in 25.07) but accepts it from a
# server it connects to: b.test -> a.test works with SASL EXTERNAL; for
# a.test -> b.test fedgate must fall back to dialback (auth = "any").
s2s_case x-gw-serverauth-only
b_start
gw_start "peer=$B:any" cert=gw-sa
bob --timeout 20 ping "$FG_DOMAIN" || fail "bob@$B could not ping $FG_DOMAIN"
gw_log_has "s2s in .*authenticated $BR -> $A with sasl-external"
probe_ok --timeout 20 ping "$B"
# ejabberd: "Failed inbound s2s EXTERNAL authentication a.test -> b.test:
# unsupported certificate purpose", then it accepts dialback on the same
# stream.
gw_log_has "s2s-out $A->$BR: SASL EXTERNAL failed \\(not-authorized\\)"
gw_log_has "s2s out $A -> $BR .*: authenticated $A -> $BR with dialback"
grep -q "Failed inbound s2s EXTERNAL authentication $A -> $BR .*unsupported certificate purpose" \
    "$(peer_log "$B")" ||
    note "$S2S_CASE: ejabberd no longer refuses a serverAuth-only client certificate"
s2s_case_done

# ---- negative cases with auth = "certificate" (last: after a certificate
# failure ejabberd refuses a.test for 16-126 s; a restart clears that) ----------
# Untrusted CA: bob (his client trusts the unrelated CA) and alice both get
# errors; fedgate logs why.
s2s_case n-cert-other
b_start cert=b-other
gw_start "peer=$B:certificate"
probe --timeout 20 expect-error remote-server-not-found ping "$B" ||
    fail "$S2S_CASE: alice pinging $B: not remote-server-not-found"
gw_log_has "s2s out $A -> $BR .*: peer certificate for $BR: present=1 chain=unable to get local issuer certificate"
gw_log_has "s2s out $A -> $BR .*: policy refuses $BR \\(sasl-external\\): certificate chain not verified"
gw_log_has "s2s out $A -> $BR .*: authentication of $A -> $BR failed: "
bob --timeout 20 ping "$FG_DOMAIN"
rc=$?
[ "$rc" = 1 ] || fail "$S2S_CASE: bob pinging $FG_DOMAIN: exit $rc (expected a stanza error)"
note "$S2S_CASE: bob gets: $(head -1 "$FG_TMP/probe.out")"
gw_log_has "s2s in .*: policy refuses $BR \\(dialback\\): peer requires certificate authentication"
gw_log_has "s2s in .*: authentication of $BR -> $A failed: "
s2s_case_done

# Wrong name: ejabberd serves that certificate to its clients too, so only
# the outbound direction can be checked.
s2s_case n-cert-wrong
b_start cert=b-wrong
gw_start "peer=$B:certificate"
probe --timeout 20 expect-error remote-server-not-found ping "$B" ||
    fail "$S2S_CASE: alice pinging $B: not remote-server-not-found"
note "$S2S_CASE: alice gets: $(head -1 "$FG_TMP/probe.out")"
gw_log_has "s2s out $A -> $BR .*: peer certificate for $BR: present=1 chain=ok name=no"
gw_log_has "s2s out $A -> $BR .*: policy refuses $BR \\(sasl-external\\): certificate not valid for the domain"
gw_log_has "s2s out $A -> $BR .*: authentication of $A -> $BR failed: "
s2s_case_done

fedgate_alive "$GW" || fail "fedgate died"
assert_loopback_only
fedgate_stop "$GW"
peer_stop "$B"
prosody_stop
fg_finish
