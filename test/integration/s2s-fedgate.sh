#!/bin/bash
# s2s-fedgate.sh: fedgate <-> fedgate, each the only border of its domain.
#
# Topology (127.0.N.0/24, see lib.sh):
#   .1 home Prosody a.test (s2s OFF; components fedgate.a.test, b.test)
#   .2 fedgate A (a.test): s2s 5269, direct TLS 5270 (case c)
#   .3 home Prosody b.test (s2s OFF; components fedgate.b.test, a.test)
#   .4 fedgate B (b.test): s2s 5269, direct TLS 5270 (case c)
#   .53 unbound: {a.test, fedgate.a.test} -> .2, {b.test, fedgate.b.test} -> .4
# Cases (fresh fedgates each time):
#   a. certificates (auth = "certificate" on both): alice@a.test and
#      bob@b.test ping the other domain and the other fedgate; SASL
#      EXTERNAL logged by both fedgates in both directions
#   b. dialback (auth = "dialback" on both)
#   b2. auth = "any" with B's certificate from an unrelated CA: both
#      directions fall back to dialback
#   c. direct TLS (XEP-0368) both ways
#   n. B's certificate from an unrelated CA, A requires certificates: alice
#      gets remote-server-not-found, fedgate A logs why.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init s2s-fedgate

A=$FG_DOMAIN B=b.test
GA_IP=$FG_S2S_IP HB_IP=127.0.$FG_NET.3 GB_IP=127.0.$FG_NET.4
SECRET_A=secret-a

fedgate_require
fedgate_has_s2s || fail "$FEDGATE has no s2s engine (no s2s.direct_tls_listen)"
fg_make_certs
fg_make_cert gwb "DNS:$B" "DNS:fedgate.$B"
fg_make_cert gwb-other ca=other "DNS:$B" "DNS:fedgate.$B"

dns_records()
{
    local d
    dns_clear
    for d in "$A" "fedgate.$A"; do
        dns_srv "$d" 5269 "$GA_IP" 10
        [ "${1:-}" = direct ] && dns_srvs "$d" 5270 "$GA_IP"
    done
    for d in "$B" "fedgate.$B"; do
        dns_srv "$d" 5269 "$GB_IP" 10
        [ "${1:-}" = direct ] && dns_srvs "$d" 5270 "$GB_IP"
    done
}
dns_records
dns_start

# Home servers: A from lib.sh's prosody_setup, B as a peer-style Prosody
# with s2s off and the mirror-image components.
prosody_setup
prosody_start
prosody_register "$FG_USER" "$FG_PASSWORD"
prosody_peer_setup "$B" "$HB_IP" s2s=off \
    components="fedgate.$B:$FG_SECRET_GW $A:$SECRET_A"
peer_register "$B" bob bob-pw
peer_start "$B"

# ga_start / gb_start AUTH [keys]: fedgate A (peer b.test) / B (peer a.test).
ga_start()
{
    local auth=$1
    shift
    s2s_gw_start ga "peer=$B:$auth" "$@"
}
gb_start()
{
    local auth=$1
    shift
    s2s_gw_start gb domain="$B" home="$HB_IP" secret="$SECRET_A" \
        listen="$GB_IP:5269" cert=gwb "peer=$A:$auth" "$@"
}
bob() { probe --on "$B" --as bob bob-pw "$@"; }
AR=$(re_escape "$A") BR=$(re_escape "$B")

# both_ways: pings across in both directions. (The other side's service
# JID is not reachable: a home server routes only the domains it has a
# component for, and these configs give none for fedgate.b.test/a.test;
# alice gets not-allowed for it.)
both_ways()
{
    probe_ok --timeout 15 ping "$B"
    probe_out_has "^ok ping $BR"
    bob --timeout 15 ping "$A" || fail "$S2S_CASE: bob@$B could not ping $A"
}

# ---- a. certificates ---------------------------------------------------------------
s2s_case a-certificates
ga_start certificate
gb_start certificate
both_ways
s2s_log_has ga "s2s out .*authenticated $AR -> $BR with sasl-external"
s2s_log_has ga "s2s in .*authenticated $BR -> $AR with sasl-external"
s2s_log_has gb "s2s out .*authenticated $BR -> $AR with sasl-external"
s2s_log_has gb "s2s in .*authenticated $AR -> $BR with sasl-external"
s2s_log_lacks ga "with dialback"
s2s_log_lacks gb "with dialback"
probe_ok expect-error not-allowed ping "fedgate.$B"
s2s_case_done

# ---- b. dialback only ------------------------------------------------------------
s2s_case b-dialback
ga_start dialback
gb_start dialback
both_ways
s2s_log_has ga "s2s out .*authenticated $AR -> $BR with dialback"
s2s_log_has ga "s2s in .*authenticated $BR -> $AR with dialback"
s2s_log_has gb "s2s out .*authenticated $BR -> $AR with dialback"
s2s_log_has gb "s2s in .*authenticated $AR -> $BR with dialback"
s2s_log_lacks ga "with sasl-external"
s2s_log_lacks gb "with sasl-external"
s2s_case_done

# ---- b2. auth = "any": an untrusted certificate falls back to dialback ---------------
s2s_case b2-any-fallback
ga_start any
gb_start any cert=gwb-other
both_ways
s2s_log_has ga "s2s in .*authenticated $BR -> $AR with dialback"
# A cannot verify B's certificate, so it does not rely on TLS for B's
# identity either: it authenticates to B with dialback too (which checks B
# through DNS), although B would accept A's certificate.
s2s_log_has gb "s2s in .*authenticated $AR -> $BR with dialback"
s2s_case_done

# ---- c. direct TLS ---------------------------------------------------------------------
s2s_case c-direct-tls
dns_records direct
dns_restart
ga_start certificate "direct_tls=$GA_IP:5270"
gb_start certificate "direct_tls=$GB_IP:5270"
both_ways
s2s_log_has ga "s2s out $AR -> $BR $(re_escape "$GB_IP"):5270 \\(direct TLS\\): authenticated $AR -> $BR with sasl-external"
s2s_log_has gb "s2s out $BR -> $AR $(re_escape "$GA_IP"):5270 \\(direct TLS\\): authenticated $BR -> $AR with sasl-external"
s2s_log_has ga "s2s in [^ ]+ via $(re_escape "$GA_IP"):5270 \\(direct TLS\\): authenticated $BR -> $AR"
s2s_log_has gb "s2s in [^ ]+ via $(re_escape "$GB_IP"):5270 \\(direct TLS\\): authenticated $AR -> $BR"
dns_records
dns_restart
s2s_case_done

# ---- n. untrusted certificate, certificates required ----------------------------------
s2s_case n-cert-other
ga_start certificate
gb_start any cert=gwb-other
probe_ok --timeout 15 expect-error remote-server-not-found ping "$B"
note "$S2S_CASE: alice gets: $(head -1 "$FG_TMP/probe.out")"
s2s_log_has ga "s2s out $AR -> $BR .*: peer certificate for $BR: present=1 chain=unable to get local issuer certificate"
s2s_log_has ga "s2s out $AR -> $BR .*: authentication of $AR -> $BR failed: "
bob --timeout 15 ping "$A"
rc=$?
[ "$rc" = 1 ] || fail "$S2S_CASE: bob pinging $A: exit $rc (expected a stanza error)"
note "$S2S_CASE: bob gets: $(head -1 "$FG_TMP/probe.out")"
s2s_log_has ga "s2s in .*: authentication of $BR -> $AR failed: "
s2s_case_done

fedgate_alive ga || fail "fedgate A died"
fedgate_alive gb || fail "fedgate B died"
assert_loopback_only
fedgate_stop ga
fedgate_stop gb
peer_stop "$B"
prosody_stop
fg_finish
