#!/usr/bin/env bash
# demo.sh: fedgate's main job, end to end, on a fresh Debian 12 (as root).
#
# Installs the dependencies, builds fedgate out of tree in _build/, then
# brings up two domains on a private loopback network 127.0.N.0/24, each a
# home server whose own s2s is off with fedgate in front of it:
#
#   alice ⇄ Prosody a.test ⇄ fedgate A ═══ TLS s2s ═══ fedgate B ⇄ ejabberd b.test ⇄ bob
#            (127.0.N.1)      (.2:5269)                 (.4:5269)    (127.0.N.3)
#
# with certificates from a test CA made on the spot and DNS (SRV records)
# from a private unbound on 127.0.N.53. It logs alice@a.test and
# bob@b.test in with a real XMPP client (test/tools/xmpp-scenario.py,
# slixmpp), runs a presence subscription both ways and a chat (thread,
# chat state, delivery receipt) across the border, prints the transcript
# of what the two clients sent and received and a summary of the routes
# the fedgates authenticated (method, TLS version), and stops everything
# it started. Exit 0 only if every step went as expected.
# KEEP_TMP=1 keeps the configurations and logs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

echo "== installing dependencies and building fedgate (out of tree, _build/)"
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
# shellcheck source=../test/integration/gw-lib.sh
. "$top/test/integration/gw-lib.sh"
fg_init demo 150
t0=$(date +%s)

echo
echo "== starting: DNS, Prosody a.test + fedgate A, ejabberd b.test + fedgate B"
gw_setup prosody fedgate-ejabberd
cat <<EOF

   alice@a.test ⇄ Prosody a.test ($GW_A_IP, s2s off) ⇄ fedgate A ($GW_GA_IP:5269)
        ═══ s2s ═══
   fedgate B ($GW_GB_IP:5269) ⇄ ejabberd b.test ($GW_B_IP, s2s off) ⇄ bob@b.test
   DNS: unbound on $FG_DNS_IP (_xmpp-server._tcp SRV records); CA: $FG_CAFILE
EOF

echo
echo "== alice@a.test and bob@b.test: subscription both ways, then a chat"
steps=(
    '@:note:alice asks to see bob'"'"'s presence; bob approves'
    alice:subscribe:bob bob:expect-subscribe:alice bob:approve:alice
    alice:expect-subscribed:bob alice:expect-presence:bob:available
    '@:note:bob asks back; alice approves'
    bob:subscribe:alice alice:expect-subscribe:bob alice:approve:bob
    bob:expect-subscribed:alice bob:expect-presence:alice:available
    alice:expect-roster:bob:both bob:expect-roster:alice:both
    '@:note:a chat in one thread, with chat states and a delivery receipt'
    'alice:send:bob:chat:Hi Bob, federated greetings from a.test!:thread=demo-1:state=active:receipt'
    'bob:expect-message:alice:chat:Hi Bob, federated greetings from a.test!:thread=demo-1:state=active:receipt'
    alice:expect-receipt:bob
    bob:send:alice:chat::thread=demo-1:state=composing
    alice:expect-message:bob:chat::thread=demo-1:state=composing
    'bob:send:alice:chat:Hello Alice — got it, über die Grenze ✓:thread=demo-1:state=active'
    'alice:expect-message:bob:chat:Hello Alice — got it, über die Grenze ✓:thread=demo-1:state=active'
)
ok=1
GW_TIMEOUT=15 gw_scen demo.out --transcript "${steps[@]}" 2>/dev/null || ok=0
# The readable part: the notes, the checks, and every message and
# presence the two clients sent or received (log-in, roster and bind
# traffic left out; all of it is in demo.out). "<-" lines from the other
# domain are what crossed the border, marked with ⇐.
echo "   seconds who    stanza (-> sent by the client, <- received by it)"
awk '
    /^ok connect / { print "   " $0; next }
    /^ok @:note:/ { sub(/^ok @:note:[^:]*\([0-9]+ ms\): /, ""); print "\n   --- " $0 " ---"; next }
    /^ok |^FAIL/ { print "   " $0; next }
    /^ +[0-9.]+ +(alice|bob) +(->|<-) <(message|presence)/ {
        mark = ""
        if (($2 == "alice" && $3 == "<-" && $0 ~ /from="bob@b\.test/) ||
            ($2 == "bob" && $3 == "<-" && $0 ~ /from="alice@a\.test/))
            mark = "  ⇐ crossed the border"
        print "   " $0 mark
    }
' "$FG_TMP/demo.out"
crossed=$(grep -Ec '^ +[0-9.]+ +(alice +<- .*from="bob@b\.test|bob +<- .*from="alice@a\.test)' "$FG_TMP/demo.out")
echo
echo "   $crossed stanzas crossed the border between the two clients" \
    "(KEEP_TMP=1 keeps the full client log and every server's log)"
grep -q '^FAIL' "$FG_TMP/demo.out" && ok=0

echo
echo "== what the fedgates logged about the border"
summary()
{
    local label=$2 log=$FG_TMP/$1.log line conn tls
    grep -E 's2s (out|in) .*: authenticated .* with ' "$log" | while IFS= read -r line; do
        line=$(sed -E 's/^[^ ]+ +[a-z]+ +//' <<<"$line")
        conn=${line%%: authenticated*}
        tls=$(grep -F "$conn: TLS " "$log" | head -1 | sed -E 's/.*: TLS //')
        printf '   %s\n      %s\n      %s, TLS: %s\n' "$label" "$conn" \
            "${line#"$conn": }" "${tls:-none logged}"
    done
}
summary ga "fedgate A (a.test)"
summary gb "fedgate B (b.test)"
for n in ga gb; do
    if ! grep -Eq 's2s out .*authenticated .* with (sasl-external|dialback)' "$FG_TMP/$n.log" ||
        ! grep -Eq 's2s in .*authenticated .* with (sasl-external|dialback)' "$FG_TMP/$n.log"; then
        echo "   $n: no authenticated route in both directions"
        ok=0
    fi
    grep -Eq ': TLS TLSv1\.[23] ' "$FG_TMP/$n.log" || {
        echo "   $n: no TLS 1.2/1.3 session logged"
        ok=0
    }
done

echo
echo "== stopping everything"
fedgate_alive ga || ok=0
fedgate_alive gb || ok=0
gw_teardown
echo
if [ "$ok" = 1 ]; then
    echo "demo: alice@a.test and bob@b.test subscribed to each other and chatted" \
        "through fedgate in $(($(date +%s) - t0)) s — everything as expected"
    fg_finish
fi
fail "demo: something did not go as expected (see above)"
