#!/bin/bash
# s2s-prosody.sh: fedgate's peering engine against an unmodified Prosody.
#
# Topology (one loopback network 127.0.N.0/24, see lib.sh):
#   .1  home Prosody for a.test (s2s OFF; components fedgate.a.test, b.test)
#   .2  fedgate for a.test: s2s 5269 (STARTTLS), 5270 (direct TLS, case c)
#   .3  Prosody b.test, s2s on (the peer), user bob
#   .4  Prosody c.test, s2s on (not a peer of fedgate), user carol
#   .53 unbound: _xmpp-server._tcp.{a.test,fedgate.a.test} -> .2,
#       b.test -> .3, c.test -> .4 (and _xmpps-server in case c)
# Cases (each with a fresh fedgate, and B restarted when its set-up changes):
#   a. certificates: SASL EXTERNAL both ways; bob -> a.test and
#      fedgate.a.test (B -> fedgate -> home), alice -> b.test (home ->
#      fedgate -> B), fedgate logs "authenticated ... with sasl-external"
#   b. dialback: B's certificate from an unrelated CA, B
#      s2s_secure_auth = false, fedgate peer auth = "dialback"
#   c. direct TLS (XEP-0368) on _xmpps-server records both ways
#   negative: c.test (not a peer) -> a.test refused; alice -> c.test
#      refused by the home server (not-allowed); with auth = "certificate":
#      B's certificate with a wrong name, expired, from an untrusted CA
#      -> authentication fails with the reason in fedgate's log, and both
#      users get an error.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init s2s-prosody

B=b.test C=c.test
B_IP=127.0.$FG_NET.3 C_IP=127.0.$FG_NET.4
GW=gw

fedgate_require
fedgate_has_s2s || fail "$FEDGATE has no s2s engine (no s2s.direct_tls_listen)"
fg_make_certs
fg_make_cert b-other ca=other "DNS:$B"
fg_make_cert b-wrong "DNS:wrong.test"
fg_make_cert b-expired expired=1 "DNS:$B"
fg_make_cert b-serverauth eku=server "DNS:$B"
fg_make_cert b-xmppaddr "xmppaddr=$B"

dns_records()
{
    dns_clear
    dns_srv "$FG_DOMAIN" 5269 "$FG_S2S_IP"
    dns_srv "fedgate.$FG_DOMAIN" 5269 "$FG_S2S_IP"
    dns_srv "$B" 5269 "$B_IP"
    dns_srv "$C" 5269 "$C_IP"
    if [ "${1:-}" = direct ]; then
        # Direct TLS preferred (priority 0 before the STARTTLS records'
        # 10), so the order of targets is certain.
        dns_clear
        dns_srv "$FG_DOMAIN" 5269 "$FG_S2S_IP" 10
        dns_srv "fedgate.$FG_DOMAIN" 5269 "$FG_S2S_IP" 10
        dns_srv "$B" 5269 "$B_IP" 10
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

# b_start [prosody_peer_setup keys]: (re)starts Prosody b.test.
b_start()
{
    peer_stop "$B"
    prosody_peer_setup "$B" "$B_IP" "$@"
    [ -f "${PEER_DIR[$B]}/data/b%2etest/accounts/bob.dat" ] ||
        peer_register "$B" bob bob-pw
    peer_start "$B"
}

gw_start() { s2s_gw_start "$GW" "$@"; }
gw_log_has() { s2s_log_has "$GW" "$@"; }
bob() { probe --on "$B" --as bob bob-pw "$@"; }

A=$(re_escape "$FG_DOMAIN") BR=$(re_escape "$B")

# ---- a. certificates + SASL EXTERNAL ---------------------------------------------
s2s_case a-certificates
b_start
gw_start "peer=$B:certificate"
# B -> fedgate (inbound) -> home; the home server's answer goes back out
# through fedgate's outbound route to B.
bob --timeout 15 ping "$FG_DOMAIN" || fail "bob@$B could not ping $FG_DOMAIN"
bob ping "fedgate.$FG_DOMAIN" || fail "bob@$B could not ping fedgate.$FG_DOMAIN"
gw_log_has "authenticated $BR -> $A with sasl-external"
gw_log_has "authenticated $A -> $BR with sasl-external"
# home -> fedgate (outbound) -> B
probe_ok --timeout 15 ping "$B"
probe_out_has "^ok ping $BR"
grep -q "Accepting SASL EXTERNAL identity from $A" "$(peer_log "$B")" ||
    fail "$S2S_CASE: Prosody $B did not accept SASL EXTERNAL from $FG_DOMAIN"
s2s_case_done

# ---- b. dialback only ---------------------------------------------------------------
s2s_case b-dialback
b_start secure_auth=false cert=b-other
gw_start "peer=$B:dialback"
bob --timeout 15 ping "$FG_DOMAIN" || fail "bob@$B could not ping $FG_DOMAIN"
probe_ok --timeout 15 ping "$B"
gw_log_has "authenticated $BR -> $A with dialback"
gw_log_has "authenticated $A -> $BR with"
s2s_log_lacks "$GW" "with sasl-external"
s2s_case_done

# ---- c. direct TLS (XEP-0368) -----------------------------------------------------------
s2s_case c-direct-tls
dns_records direct
dns_restart
b_start direct_tls=5270
gw_start "peer=$B:certificate" "direct_tls=$FG_S2S_IP:5270"
wait_for_port "$FG_S2S_IP" 5270 5 || fail "fedgate does not listen on $FG_S2S_IP:5270"
bob --timeout 15 ping "$FG_DOMAIN" || fail "bob@$B could not ping $FG_DOMAIN"
probe_ok --timeout 15 ping "$B"
GWR=$(re_escape "$FG_S2S_IP") BIPR=$(re_escape "$B_IP")
gw_log_has "target 0: $BIPR:5270 direct TLS"
# Inbound on fedgate's direct TLS port, outbound to B's.
gw_log_has "s2s in [^ ]+ via $GWR:5270 \(direct TLS\): authenticated $BR -> $A with sasl-external"
gw_log_has "s2s out $A -> $BR $BIPR:5270 \(direct TLS\): authenticated $A -> $BR with sasl-external"
dns_records
dns_restart
s2s_case_done

# ---- negative: a domain that is not a peer -------------------------------------------
s2s_case n-not-a-peer
b_start
gw_start "peer=$B:any"
prosody_peer_setup "$C" "$C_IP"
peer_register "$C" carol carol-pw
peer_start "$C"
# Prosody C reports fedgate's refusal (of both SASL EXTERNAL and
# dialback) as remote-server-timeout "dialback authentication failed".
probe_ok --on "$C" --as carol carol-pw --timeout 20 \
    expect-error remote-server-timeout ping "$FG_DOMAIN"
note "$S2S_CASE: carol@$C gets: $(head -1 "$FG_TMP/probe.out")"
CR=$(re_escape "$C")
gw_log_has "s2s in .*: policy refuses $CR \(sasl-external\): not a configured peer"
gw_log_has "s2s in .*: authentication of $CR -> $A failed: not a configured peer"
# alice -> c.test: the home server has no component for it.
probe_ok expect-error not-allowed ping "$C"
peer_stop "$C"
s2s_case_done

# ---- negative: certificate failures with auth = "certificate" -----------------------------
for v in wrong expired other; do
    s2s_case "n-cert-$v"
    b_start secure_auth=false "cert=b-$v"
    gw_start "peer=$B:certificate"
    probe --timeout 20 ping "$B"
    rc=$?
    [ "$rc" = 1 ] || fail "$S2S_CASE: alice pinging $B: exit $rc (expected a stanza error)"
    note "$S2S_CASE: alice gets: $(head -1 "$FG_TMP/probe.out")"
    probe_out_has "error cancel/remote-server-not-found"
    case $v in
    wrong)
        why="certificate not valid for the domain"
        detail="name=no subject=CN=wrong\.test"
        ;;
    expired)
        why="certificate chain not verified"
        detail="chain=certificate has expired"
        ;;
    other)
        why="certificate chain not verified"
        detail="chain=unable to get local issuer certificate"
        ;;
    esac
    gw_log_has "s2s out $A -> $BR .*: policy refuses $BR \(sasl-external\): $why"
    gw_log_has "s2s out $A -> $BR .*: authentication of $A -> $BR failed: "
    gw_log_has "s2s out $A -> $BR .*: peer certificate for $BR: present=1 .*$detail"
    # B -> fedgate: B falls back to dialback, which the policy refuses.
    bob --timeout 20 expect-error remote-server-timeout ping "$FG_DOMAIN" ||
        fail "$S2S_CASE: bob pinging $FG_DOMAIN: not the expected error"
    note "$S2S_CASE: bob gets: $(head -1 "$FG_TMP/probe.out")"
    gw_log_has "s2s in .*: peer certificate for $BR: present=1 .*$detail"
    gw_log_has "s2s in .*: policy refuses $BR \(dialback\): peer requires certificate authentication"
    gw_log_has "s2s in .*: authentication of $BR -> $A failed: "
    s2s_case_done
done

# ---- positive variants: serverAuth-only EKU, id-on-xmppAddr only ---------------------
# DESIGN §4: a certificate with only serverAuth is accepted from a peer
# that is the TLS client; Prosody accepts fedgate's either way.
for v in serverauth xmppaddr; do
    s2s_case "a-cert-$v"
    b_start "cert=b-$v"
    gw_start "peer=$B:certificate"
    bob --timeout 15 ping "$FG_DOMAIN" || fail "$S2S_CASE: bob@$B could not ping $FG_DOMAIN"
    probe_ok --timeout 15 ping "$B"
    gw_log_has "s2s in .*authenticated $BR -> $A with sasl-external"
    gw_log_has "s2s out .*authenticated $A -> $BR with sasl-external"
    [ "$v" = xmppaddr ] && gw_log_has "peer certificate for $BR: present=1 chain=ok name=(XmppAddr|xmppAddr|id-on-xmppAddr)"
    s2s_case_done
done

fedgate_alive "$GW" || fail "fedgate died"
assert_loopback_only
fedgate_stop "$GW"
peer_stop "$B"
prosody_stop
fg_finish
