#!/usr/bin/env bash
# demo.sh: fedgate's main job, end to end, on a fresh Debian 12.
#
# Installs the dependencies, builds fedgate, then on a private loopback
# address: makes a test CA and certificates, starts Prosody for a.test
# with its s2s module off and component entries for fedgate, starts
# fedgate attached to it, logs a real XMPP client (libstrophe) in over
# verified TLS and has it talk to fedgate's service JID and to the peer
# domain b.test, prints what crossed, and stops everything it started.
# (The two-domain federation demo arrives with the peering engine.)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

echo "== installing dependencies and building fedgate"
./scripts/install-deps.sh
./autogen.sh >/dev/null
mkdir -p _build
if [ ! -f _build/Makefile ]; then
    (cd _build && ../configure -q)
fi
make -C _build -j"$(nproc)" fedgate test/tools/xmpp-probe >/dev/null

export top_srcdir=$top top_builddir=$top/_build
set +eu
# shellcheck source=../test/integration/lib.sh
. "$top/test/integration/lib.sh"
fg_init demo 300
FG_SERVER=prosody
fg_server_facts
fg_make_certs

echo
echo "== starting Prosody for $FG_DOMAIN on $FG_IP (s2s disabled)"
prosody_setup
prosody_start
prosody_register "$FG_USER" "$FG_PASSWORD"

conf=$FG_TMP/gw/fedgate.conf
fedgate_config "$conf" level=info
echo
echo "== the home-server snippet fedgate prints for this configuration"
"$FEDGATE" -c "$conf" --print-server-config prosody | sed 's/^/   | /'

echo
echo "== starting fedgate"
fedgate_start gw "$conf"
fedgate_wait_ready gw 15
grep -E 'stream ready' "$FG_TMP/gw.log" | sed 's/^/   fedgate: /'

transcript() {
    local what=$1
    shift
    echo
    echo "-> $FG_USER@$FG_DOMAIN: $what"
    "$PROBE" --jid "$FG_USER@$FG_DOMAIN" --password "$FG_PASSWORD" \
        --host "$FG_IP" --port "$FG_C2S_PORT" --cafile "$FG_CAFILE" \
        --timeout 10 "$@" 2>&1 | sed 's/^/<- /'
    return "${PIPESTATUS[0]}"
}

echo
echo "== a real XMPP client talks to fedgate through Prosody"
ok=1
transcript "XEP-0199 ping to fedgate.$FG_DOMAIN" ping "fedgate.$FG_DOMAIN" || ok=0
transcript "XEP-0030 disco#info" disco-info "fedgate.$FG_DOMAIN" || ok=0
transcript "XEP-0030 disco#items (the peer domains)" disco-items "fedgate.$FG_DOMAIN" || ok=0
transcript "XEP-0092 version" version "fedgate.$FG_DOMAIN" || ok=0
transcript "ping bob@b.test (no DNS for b.test in this demo: an error, not silence)" \
    expect-error remote-server-not-found ping bob@b.test || ok=0
transcript "ping c.test (not a peer: Prosody refuses at once)" \
    expect-error "$COND_UNKNOWN" ping c.test || ok=0

echo
echo "== stopping"
fedgate_stop gw
prosody_stop
if [ "$ok" = 1 ]; then
    echo "demo: everything answered as expected"
    fg_finish
fi
fail "demo: some exchange did not go as expected (see above)"
