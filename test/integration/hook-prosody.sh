#!/bin/bash
# hook-prosody.sh: config/hooks/prosody-peer-hook against a real Prosody 0.12
# and a real fedgate, without fedgate's runtime-peer code: fedgate's config
# lists the peer b.test (service conference.b.test) from the start, and the
# home server learns about them only through the hook.
#
# Topology (127.0.N.x): .1 Prosody a.test, s2s off, components: only
# fedgate.a.test, plus `Include "peers.d/*.cfg.lua"` (relative: Prosody
# 0.12 resolves it against the main config's directory); .2 fedgate; .53 a
# DNS server that knows no peer (so fedgate answers a stanza for b.test
# at once with an error of its own).
# Phases:
#   refused:  fedgate's streams for b.test and conference.b.test are
#             refused (host-unknown) and a client's ping to b.test is
#             refused by Prosody itself (not-allowed);
#   add:      the hook adds both: exit 0, one line per domain, files 0640;
#             both streams come up with nothing restarted (fedgate's
#             service stream keeps its one connection, Prosody its pid);
#             SIGUSR1 status says ready; the ping now reaches fedgate;
#   again:    add twice (unchanged; then a changed secret) is fine;
#   remove:   the hook removes both and closes fedgate's open streams
#             (Prosody 0.12 would leave them open); fedgate's retries are
#             refused again, the ping is refused by Prosody again; remove
#             twice is fine;
#   re-add:   adding again brings the streams back;
#   failures: usage errors (2), a missing secret, removing fedgate's own
#             JID (not the hook's: refused, its stream stays), a Component that
#             clashes with the VirtualHost (Prosody refuses; the file is
#             put back), Prosody down: each a non-zero exit with a clear
#             line and peers.d left as it was;
#   no hook output ever shows a secret.
# Prints how long add and remove take.
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=test/integration/hook-lib.sh
. "$(dirname "$0")/hook-lib.sh"
fg_init hook-prosody
fedgate_require
HOOK=$top_srcdir/config/hooks/prosody-peer-hook
[ -x "$HOOK" ] || fail "no executable $HOOK"

fg_make_certs
# One record (dns_start refuses an empty list); none for the peers.
dns_a "$FG_DOMAIN" "$FG_S2S_IP"
dns_start

PEERS_DIR=$FG_TMP/prosody/peers.d
PROSODY_COMPONENTS=0
PROSODY_GLOBAL_EXTRA="modules_disabled = { \"s2s\" }
component_interfaces = { \"$FG_IP\" }
component_ports = { $FG_COMP_PORT }"
PROSODY_EXTRA="Component \"fedgate.$FG_DOMAIN\"
	component_secret = \"$FG_SECRET_GW\"

Include \"peers.d/*.cfg.lua\""
prosody_setup
mkdir -p "$PEERS_DIR"
chmod 750 "$PEERS_DIR"
prosody_register "$FG_USER" "$FG_PASSWORD"
prosody_start
PPID0=$PROSODY_PID
HOOK_CMD="$HOOK --config $PROSODY_CFG --dir $PEERS_DIR"

# fedgate with the peer b.test and its service conference.b.test, and a
# DNS that knows neither.
CONF=$FG_TMP/gw/fedgate.conf
LOG=$FG_TMP/gw.log
fedgate_config "$CONF"
# A stanza for b.test finds no address for it: bounced at once with
# remote-server-not-found (queue_timeout = 1 bounds any wait).
printf 'dns = { forwarders = [ "%s@53" ]; };\nlimits = { queue_timeout = 1; };\n' \
    "$FG_DNS_IP" >>"$CONF"
fedgate_start gw "$CONF"
FG_STREAM_DOMAINS=("fedgate.$FG_DOMAIN")
GW_NSTREAMS=3
fedgate_wait_ready gw 15
PEER_DOMAINS=(b.test conference.b.test)
# A secret that needs escaping in Lua and YAML (quotes, a backslash, a
# space): the server must still load it.
ROTATED='rotated "muc" \secret'
SECRETS=("$FG_SECRET_B" "$FG_SECRET_MUC" "$ROTATED")
svc_ready=$(count_log "$LOG" 'upstream fedgate\.a\.test [^ ]+: stream ready')
# What Prosody sends for a domain it has no component for: a header with
# id='' and <host-unknown/>; fedgate reports the host-unknown.
REFUSED='home server closed the stream: host-unknown'

assert_refused()
{
    local d re mark=$1
    for d in "${PEER_DOMAINS[@]}"; do
        re="upstream $(re_escape "$d") [^ ]+: .*$REFUSED"
        wait_for_log "$LOG" "$re" 15 "$mark" ||
            fail "fedgate's log has no refusal for $d"
        note "fedgate: $(tail -c "+$((mark + 1))" "$LOG" | grep -Em1 -- "$re" | cut -c1-200)"
    done
    probe_ok expect-error not-allowed ping b.test
}

assert_ready()
{
    local d mark=$1
    for d in "${PEER_DOMAINS[@]}"; do
        wait_for_log "$LOG" "upstream $(re_escape "$d") [^ ]+: stream ready" 15 "$mark" ||
            fail "fedgate's stream for $d did not come up"
    done
    for d in "${PEER_DOMAINS[@]}"; do
        [ "$(gw_upstream_state gw "$d")" = ready ] ||
            fail "SIGUSR1 status: $d is not ready: $(gw_status gw | grep -F "$d:")"
    done
    note "status: $(gw_status gw | grep -F 'b.test:' | tr '\n' ';')"
    # The home server now hands b.test to fedgate, which tries a route
    # and bounces the ping (no address for b.test; Prosody itself would
    # say not-allowed, or "Component unavailable" with no stream).
    mark=$(log_mark "$LOG")
    probe_ok expect-error remote-server-not-found ping b.test
    ! grep -q 'Component unavailable' "$FG_TMP/probe.out" ||
        fail "the ping was bounced by Prosody, not fedgate"
    wait_for_log "$LOG" 'route a\.test -> b\.test: ' 1 "$mark" ||
        fail "fedgate's log does not show the ping for b.test"
}

# Nothing was restarted: Prosody is the same process and fedgate's service
# stream never reconnected.
assert_nothing_restarted()
{
    if [ "$PROSODY_PID" != "$PPID0" ] || ! kill -0 "$PROSODY_PID"; then
        fail "Prosody was restarted"
    fi
    [ "$(count_log "$LOG" 'upstream fedgate\.a\.test [^ ]+: stream ready')" = "$svc_ready" ] ||
        fail "fedgate's service stream reconnected"
}

secrets_in()
{
    printf 'b.test %s\nconference.b.test %s\n' "$1" "$2"
}

note "phase: refused"
assert_refused 0

note "phase: add"
mark=$(log_mark "$LOG")
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
ADD_MS=$HOOK_MS
hook_out_has '^prosody: component b\.test added and activated$'
hook_out_has '^prosody: component conference\.b\.test added and activated$'
for d in "${PEER_DOMAINS[@]}"; do
    f=$PEERS_DIR/$d.cfg.lua
    [ -f "$f" ] || fail "no $f"
    [ "$(stat -c %a "$f")" = 640 ] || fail "$f has mode $(stat -c %a "$f")"
    grep -q "^Component \"$(re_escape "$d")\"" "$f" || fail "$f has no Component line"
done
[ -z "$(find "$PEERS_DIR" -name '.*' -type f)" ] || fail "the hook left temporary files in $PEERS_DIR"
assert_ready "$mark"
assert_nothing_restarted

note "phase: again"
mark=$(log_mark "$LOG")
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
hook_out_has '^prosody: component b\.test already active \(unchanged\)$'
hook_out_has '^prosody: component conference\.b\.test already active \(unchanged\)$'
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$ROTATED")
hook_out_has '^prosody: component conference\.b\.test already active; its new secret applies from its next connection$'
prosodyctl_run shell config get conference.b.test component_secret >"$FG_TMP/secret.out"
grep -qF 'rotated \"muc\" \\secret' "$FG_TMP/secret.out" ||
    fail "Prosody did not load the escaped secret as written"
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
[ "$(count_log "$LOG" 'upstream (conference\.)?b\.test [^ ]+: (stream ready|.*closed)' "$mark")" = 0 ] ||
    fail "adding again disturbed fedgate's open streams"
assert_nothing_restarted

note "phase: remove"
mark=$(log_mark "$LOG")
hook_run 0 remove "${PEER_DOMAINS[@]}" </dev/null
REMOVE_MS=$HOOK_MS
hook_out_has '^prosody: component b\.test deactivated and removed; its open stream was closed$'
hook_out_has '^prosody: component conference\.b\.test deactivated and removed; its open stream was closed$'
for d in "${PEER_DOMAINS[@]}"; do
    [ ! -e "$PEERS_DIR/$d.cfg.lua" ] || fail "$PEERS_DIR/$d.cfg.lua is still there"
    wait_for_log "$LOG" "upstream $(re_escape "$d") [^ ]+: home server closed the stream: host-gone" 10 "$mark" ||
        fail "fedgate's stream for $d was not closed by the removal"
done
assert_refused "$mark"
for d in "${PEER_DOMAINS[@]}"; do
    [ "$(gw_upstream_state gw "$d")" != ready ] || fail "$d still ready after remove"
done
hook_run 0 remove "${PEER_DOMAINS[@]}" </dev/null
hook_out_has '^prosody: component b\.test was not configured \(nothing to do\)$'
assert_nothing_restarted

note "phase: re-add"
mark=$(log_mark "$LOG")
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
hook_out_has '^prosody: component b\.test added and activated$'
assert_ready "$mark"
assert_nothing_restarted

note "phase: failures"
ls -la "$PEERS_DIR" >"$FG_TMP/peers.before"
HOOK_CMD_SAVED=$HOOK_CMD
HOOK_CMD="$HOOK --config $PROSODY_CFG"
hook_run 2 add b.test </dev/null
hook_out_has 'error: --dir DIR is required'
HOOK_CMD=$HOOK_CMD_SAVED
hook_run 2 add '../etc/passwd' </dev/null
hook_out_has "not a usable domain name"
hook_run 2 frobnicate b.test </dev/null
hook_run 1 add b.test conference.b.test < <(printf 'b.test %s\n' "$FG_SECRET_B")
hook_out_has 'error: no secret on standard input for conference\.b\.test'
# fedgate's own JID is defined in the main config, not through peers.d:
# remove refuses it and its stream stays.
hook_run 1 remove "fedgate.$FG_DOMAIN" </dev/null
hook_out_has "error: fedgate\.a\.test is not one of this hook's components"
assert_nothing_restarted
probe_ok ping "fedgate.$FG_DOMAIN"
# A Component named like the VirtualHost: Prosody refuses the config, the
# hook puts peers.d back and says so.
hook_run 1 add a.test < <(printf 'a.test %s\n' clash-secret)
hook_out_has "error: Prosody's configuration does not load"
hook_out_has 'clashes with previously defined VirtualHost'
[ ! -e "$PEERS_DIR/a.test.cfg.lua" ] || fail "the refused a.test.cfg.lua was left in place"
# Prosody down.
prosody_stop
hook_run 1 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$ROTATED")
hook_out_has "error: cannot reach Prosody's admin socket"
grep -q "\"$FG_SECRET_MUC\"" "$PEERS_DIR/conference.b.test.cfg.lua" ||
    fail "conference.b.test.cfg.lua was not put back after the failure"
hook_run 1 remove b.test </dev/null
hook_out_has "error: cannot reach Prosody's admin socket"
[ -e "$PEERS_DIR/b.test.cfg.lua" ] || fail "b.test.cfg.lua deleted though Prosody was down"
ls -la "$PEERS_DIR" >"$FG_TMP/peers.after"
diff <(awk '{print $1, $NF}' "$FG_TMP/peers.before") \
    <(awk '{print $1, $NF}' "$FG_TMP/peers.after") >&2 ||
    fail "the failed runs changed $PEERS_DIR"

hook_no_secrets "${SECRETS[@]}" clash-secret
fedgate_stop gw
note "timing: add (2 domains) ${ADD_MS} ms, remove (2 domains) ${REMOVE_MS} ms"
fg_finish
