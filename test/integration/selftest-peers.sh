#!/bin/bash
# selftest-peers.sh: proves the s2s harness with no fedgate at all.
#
# Run by hand (not in TESTS): bash test/integration/selftest-peers.sh
# Two *unmodified* servers federate directly through the test's private
# DNS (unbound on 127.0.N.53:53) and test CA:
#   1. Prosody a.test <-> Prosody b.test, certificates (SASL EXTERNAL),
#      s2s_secure_auth = true; a client on each side pings the other
#      server and a user there ... in both directions;
#   2. the same with dialback: b.test's certificate from an unrelated CA,
#      s2s_secure_auth = false on both;
#   3. Prosody a.test <-> ejabberd e.test (SRV targets are IPs), both
#      directions, certificates;
#   4. ejabberd with a certificate from an unrelated CA: dialback.
# Each phase asserts the authentication method in the servers' logs.
# Timings are printed per phase. SELFTEST_EJABBERD=0 skips 3-4.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init selftest-peers 240

A=a.test B=b.test E=e.test
A_IP=127.0.$FG_NET.1 B_IP=127.0.$FG_NET.3 E_IP=127.0.$FG_NET.5

fg_make_certs
fg_make_cert peer-b-other ca=other "DNS:$B"
fg_make_cert peer-e-other ca=other "DNS:$E"

dns_srv "$A" 5269 "$A_IP"
dns_srv "$B" 5269 "$B_IP"
dns_srv "$E" 5269 "$E_IP"
dns_start
dns_query "_xmpp-server._tcp.$B" SRV | grep -q "SRV 0 5 5269 $B_IP" ||
    fail "the test DNS does not answer the SRV record of $B"
dns_query nothere.test A | grep -q '^rcode 3' ||
    fail "the test DNS does not answer NXDOMAIN for an undeclared name"

t0=0
phase()
{
    t0=$(date +%s%N)
    note "phase: $*"
}
took()
{
    note "  ... $1 in $((($(date +%s%N) - t0) / 1000000)) ms"
}

# --- 1. Prosody <-> Prosody, certificates ------------------------------------
phase "Prosody $A <-> Prosody $B with certificates"
prosody_peer_setup "$A" "$A_IP"
prosody_peer_setup "$B" "$B_IP"
peer_register "$A" alice alice-pw
peer_register "$B" bob bob-pw
peer_start "$A"
peer_start "$B"
# shellcheck disable=SC2034 # read by probe in lib.sh
FG_USER=alice FG_PASSWORD=alice-pw
probe_ok --on "$A" ping "$A"
took "servers up"
probe_ok --on "$A" --timeout 20 ping "$B"
took "first $A -> $B ping (s2s set-up)"
probe_ok --on "$B" --as bob bob-pw --timeout 20 ping "$A"
took "both directions"
for d in "$A" "$B"; do
    grep -Eq 'Authenticated .*(SASL|EXTERNAL)|s2s_auth.*EXTERNAL|EXTERNAL' \
        "${PEER_DIR[$d]}/logs/debug.log" ||
        fail "$d: no SASL EXTERNAL in its debug log"
    ! grep -q 'dialback' "${PEER_DIR[$d]}/logs/prosody.log" ||
        fail "$d used dialback with valid certificates"
done
peer_stop "$B"
peer_stop "$A"

# --- 2. Prosody <-> Prosody, dialback -----------------------------------------
phase "Prosody $A <-> Prosody $B with dialback (unrelated CA)"
prosody_peer_setup "$A" "$A_IP" secure_auth=false
prosody_peer_setup "$B" "$B_IP" secure_auth=false cert=peer-b-other
peer_start "$A"
peer_start "$B"
probe_ok --on "$A" --timeout 20 ping "$B"
took "first $A -> $B ping (s2s set-up)"
probe_ok --on "$B" --as bob bob-pw --timeout 20 ping "$A"
took "both directions"
grep -Eiq 'dialback' "${PEER_DIR[$A]}/logs/debug.log" ||
    fail "$A: no dialback in its debug log"
# With s2s_secure_auth = true the untrusted certificate is refused.
peer_stop "$A"
prosody_peer_setup "$A" "$A_IP" secure_auth=true
peer_start "$A"
probe_expect 1 --on "$A" --timeout 20 ping "$B"
grep -Eq '^fail ping|remote-server' "$FG_TMP/probe.out" || fail "no error"
took "secure_auth refusal"
peer_stop "$B"
peer_stop "$A"

if [ "${SELFTEST_EJABBERD:-1}" = 1 ]; then
    # --- 3. Prosody <-> ejabberd, certificates ---------------------------------
    phase "Prosody $A <-> ejabberd $E with certificates"
    prosody_peer_setup "$A" "$A_IP"
    ejabberd_peer_setup "$E" "$E_IP"
    peer_start "$A"
    peer_start "$E"
    peer_register "$E" eve eve-pw
    took "servers up"
    probe_ok --on "$A" --timeout 20 ping "$E"
    took "first $A -> $E ping"
    probe_ok --on "$E" --as eve eve-pw --timeout 20 ping "$A"
    took "both directions"
    peer_stop "$E"
    peer_stop "$A"

    # --- 4. ejabberd with an untrusted certificate: dialback ---------------------
    phase "Prosody $A <-> ejabberd $E with dialback"
    prosody_peer_setup "$A" "$A_IP" secure_auth=false
    ejabberd_peer_setup "$E" "$E_IP" cert=peer-e-other
    peer_start "$A"
    peer_start "$E"
    took "servers up"
    probe_ok --on "$A" --timeout 20 ping "$E"
    took "first $A -> $E ping"
    probe_ok --on "$E" --as eve eve-pw --timeout 20 ping "$A"
    took "both directions"
    grep -Eiq 'dialback' "${PEER_DIR[$A]}/logs/debug.log" ||
        fail "$A: no dialback in its debug log"
    peer_stop "$E"
    peer_stop "$A"
fi
assert_loopback_only
fg_finish
