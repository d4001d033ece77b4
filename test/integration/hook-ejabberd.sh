#!/bin/bash
# hook-ejabberd.sh: config/hooks/ejabberd-peer-hook against a real ejabberd
# 23.01 and a real fedgate, without fedgate's runtime-peer code: fedgate's
# config lists the peer b.test (service conference.b.test) from the start,
# and the home server learns about them only through the hook.
#
# Topology (127.0.N.x): .1 ejabberd a.test, s2s denied; its component
# listener lives in etc/fedgate-listener.yml, pulled in by ejabberd.yml's
# include_config_file, with only fedgate.a.test and an empty
# "# BEGIN fedgate peers" / "# END fedgate peers" block in its hosts: map;
# .2 fedgate; .53 a DNS server that knows no peer.
# Phases:
#   refused:  fedgate's streams for b.test and conference.b.test are refused
#             (not-authorized: ejabberd says "unconfigured for external
#             component"), a client's ping to b.test gets ejabberd's
#             forbidden;
#   add:      the hook adds both: exit 0, a line per domain, the listener
#             checked; both streams come up with nothing restarted (the
#             service stream keeps its one connection, ejabberd its pid);
#             SIGUSR1 status says ready; the ping now reaches fedgate;
#   again:    add twice (unchanged: no reload), a changed secret, back;
#   listener: the component listener is taken down (moved to another port
#             and back in the file without a reload, as a failed rebind
#             leaves it); an unchanged add notices and reloads;
#   remove:   the hook removes both (open streams stay: ejabberd cannot close
#             them); fedgate drops its peers by a reload (as it does when a
#             peer is removed) and gets them back: the new streams are
#             refused, the ping gets forbidden again; remove twice is fine;
#   re-add:   the streams come back;
#   failures: usage errors (2), no marked block, removing fedgate's own JID
#             (outside the block: refused), ejabberd refusing the
#             configuration (the listener file is put back), ejabberd down;
#   no hook output ever shows a secret.
# Prints how long add and remove take and how many reloads needed a
# second one (ejabberd 23.01's rebind race).
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=test/integration/hook-lib.sh
. "$(dirname "$0")/hook-lib.sh"
fg_init hook-ejabberd 170
fedgate_require
HOOK=$top_srcdir/config/hooks/ejabberd-peer-hook
[ -x "$HOOK" ] || fail "no executable $HOOK"

fg_make_certs
# One record (dns_start refuses an empty list); none for the peers.
dns_a "$FG_DOMAIN" "$FG_S2S_IP"
dns_start

L=$FG_TMP/ejabberd/etc/fedgate-listener.yml
EJ_COMPONENTS=0
EJ_EXTRA="s2s_access: none_s2s
include_config_file: \"$L\""
ejabberd_setup
# listener_file PORT: the listener as config/ejabberd.yml.sample has it.
listener_file()
{
    cat <<EOF
# fedgate's component listener (included from ejabberd.yml).
listen:
  -
    port: $1
    ip: "$FG_IP"
    module: ejabberd_service
    check_from: true
    global_routes: false
    hosts:
      fedgate.$FG_DOMAIN:
        password: "$FG_SECRET_GW"
      # BEGIN fedgate peers
      # END fedgate peers
EOF
}
listener_file "$FG_COMP_PORT" >"$L"
chown ejabberd: "$L"
chmod 640 "$L"
ejabberd_start
ejabberd_register "$FG_USER" "$FG_PASSWORD"
EJPID0=$EJ_PID
CTL="env HOME=$EJ_DIR/home runuser -u ejabberd -- $EJABBERDCTL_BIN --config-dir $EJ_DIR/etc --spool $EJ_DIR/spool --logs $EJ_DIR/log --node $EJ_NODE"
HOOK_CMD="$HOOK --file $L --ejabberdctl '$CTL'"

CONF=$FG_TMP/gw/fedgate.conf
LOG=$FG_TMP/gw.log
fedgate_config "$CONF"
# A stanza for b.test finds no address for it: bounced at once with
# remote-server-not-found (queue_timeout = 1 bounds any wait).
printf 'dns = { forwarders = [ "%s@53" ]; };\nlimits = { queue_timeout = 1; };\n' \
    "$FG_DNS_IP" >>"$CONF"
cp "$CONF" "$FG_TMP/gw/with-peers.conf"
# The same without peers (what fedgate runs once the peer is removed).
awk '/^peers = \(/ { print "peers = ( );"; skip = 1; next }
    skip && /^\);/ { skip = 0; next } !skip' "$CONF" >"$FG_TMP/gw/no-peers.conf"
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
LISTENER_RE="listener $(re_escape "$FG_IP:$FG_COMP_PORT") is up"
SECOND_RELOADS=0
RELOADS=0

assert_refused()
{
    local d re mark=$1
    for d in "${PEER_DOMAINS[@]}"; do
        re="upstream $(re_escape "$d") [^ ]+: .*not-authorized"
        wait_for_log "$LOG" "$re" 15 "$mark" ||
            fail "fedgate's log has no refusal for $d"
        note "fedgate: $(tail -c "+$((mark + 1))" "$LOG" | grep -Em1 -- "$re" | cut -c1-200)"
    done
    probe_ok expect-error forbidden ping b.test
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
    # ejabberd now hands b.test to fedgate, which bounces the ping when its
    # queue time is up (ejabberd itself would say forbidden).
    mark=$(log_mark "$LOG")
    probe_ok expect-error remote-server-not-found ping b.test
    wait_for_log "$LOG" 'route a\.test -> b\.test: ' 1 "$mark" ||
        fail "fedgate's log does not show the ping for b.test"
}

assert_nothing_restarted()
{
    if [ "$EJ_PID" != "$EJPID0" ] || ! kill -0 "$EJ_PID"; then
        fail "ejabberd was restarted"
    fi
    [ "$(count_log "$LOG" 'upstream fedgate\.a\.test [^ ]+: stream ready')" = "$svc_ready" ] ||
        fail "fedgate's service stream reconnected"
}

# Counts the reloads of the last hook run, and the second ones.
count_reloads()
{
    if grep -q 'configuration reloaded' "$HOOK_OUT"; then
        RELOADS=$((RELOADS + 1))
    fi
    SECOND_RELOADS=$((SECOND_RELOADS + $(grep -c 'reloading again' "$HOOK_OUT")))
}

secrets_in()
{
    printf 'b.test %s\nconference.b.test %s\n' "$1" "$2"
}

# fedgate_reload FILE: fedgate rereads its config (SIGHUP) from FILE.
fedgate_reload()
{
    cp "$1" "$CONF"
    kill -HUP "$(fedgate_pid gw)" || fail "cannot signal fedgate"
}

note "phase: refused"
assert_refused 0
grep -q 'Domain b\.test is unconfigured for external component' "$EJ_LOG" ||
    fail "ejabberd's log does not say why it refused b.test"

note "phase: add"
mark=$(log_mark "$LOG")
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
ADD_MS=$HOOK_MS
count_reloads
hook_out_has '^ejabberd: component b\.test added$'
hook_out_has '^ejabberd: component conference\.b\.test added$'
hook_out_has "^ejabberd: configuration reloaded; $LISTENER_RE"
[ "$(stat -c '%U %a' "$L")" = "ejabberd 640" ] ||
    fail "$L lost its owner or mode: $(stat -c '%U %a' "$L")"
[ -z "$(find "$(dirname "$L")" -name '.*fedgate-*' -type f)" ] ||
    fail "the hook left temporary files next to $L"
assert_ready "$mark"
assert_nothing_restarted

note "phase: again"
mark=$(log_mark "$LOG")
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
hook_out_has '^ejabberd: component b\.test already configured \(unchanged\)$'
hook_out_lacks 'reloaded'
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$ROTATED")
count_reloads
hook_out_has '^ejabberd: component conference\.b\.test: secret updated'
hook_out_has '^ejabberd: component b\.test already configured \(unchanged\)$'
ejabberdctl_run dump_config "$EJ_DIR/log/dump.yml" >/dev/null 2>&1 ||
    fail "ejabberdctl dump_config failed"
grep -qF -e 'rotated \"muc\" \\secret' -e "'rotated \"muc\" \\secret'" \
    "$EJ_DIR/log/dump.yml" ||
    fail "ejabberd did not load the escaped secret as written"
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
count_reloads
[ "$(count_log "$LOG" 'upstream (conference\.)?b\.test [^ ]+: (stream ready|.*closed)' "$mark")" = 0 ] ||
    fail "adding again disturbed fedgate's open streams"
assert_nothing_restarted

note "phase: listener"
# Move the listener away and back in the file only: 5347 stays closed, as
# after a failed rebind.
cp -p "$L" "$FG_TMP/listener.saved"
sed -i "s/^    port: $FG_COMP_PORT\$/    port: $((FG_COMP_PORT + 1))/" "$L"
ejabberdctl_run reload_config >/dev/null 2>&1 || fail "reload_config failed"
wait_port_closed "$FG_IP" "$FG_COMP_PORT" 5 || fail "the listener did not move away"
cp -p "$FG_TMP/listener.saved" "$L"
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
count_reloads
hook_out_has "listener $(re_escape "$FG_IP:$FG_COMP_PORT") is down; reloading"
hook_out_has "$LISTENER_RE"
port_listening "$FG_IP" "$FG_COMP_PORT" || fail "the listener is not back"
# fedgate's open streams outlived the listener's restarts.
assert_nothing_restarted

note "phase: remove"
hook_run 0 remove "${PEER_DOMAINS[@]}" </dev/null
REMOVE_MS=$HOOK_MS
count_reloads
hook_out_has '^ejabberd: component b\.test removed'
hook_out_has '^ejabberd: component conference\.b\.test removed'
hook_out_has "$LISTENER_RE"
! grep -q 'b\.test' "$L" || fail "$L still names b.test"
# fedgate closes the streams of a removed peer; here a reload without
# peers does it, and one with them opens new streams: refused now.
mark=$(log_mark "$LOG")
fedgate_reload "$FG_TMP/gw/no-peers.conf"
for d in "${PEER_DOMAINS[@]}"; do
    wait_for_log "$LOG" "upstream $(re_escape "$d") [^ ]+: domain removed; closing" 10 "$mark" ||
        fail "fedgate did not close its stream for $d"
done
mark=$(log_mark "$LOG")
fedgate_reload "$FG_TMP/gw/with-peers.conf"
assert_refused "$mark"
hook_run 0 remove "${PEER_DOMAINS[@]}" </dev/null
hook_out_has '^ejabberd: component b\.test was not configured \(nothing to do\)$'
hook_out_lacks 'reloaded'
assert_nothing_restarted

note "phase: re-add"
mark=$(log_mark "$LOG")
hook_run 0 add "${PEER_DOMAINS[@]}" < <(secrets_in "$FG_SECRET_B" "$FG_SECRET_MUC")
count_reloads
hook_out_has '^ejabberd: component b\.test added$'
assert_ready "$mark"

note "phase: failures"
cp -p "$L" "$FG_TMP/listener.before"
HOOK_CMD_SAVED=$HOOK_CMD
HOOK_CMD="$HOOK --ejabberdctl '$CTL'"
hook_run 2 add b.test </dev/null
hook_out_has 'error: --file FILE is required'
HOOK_CMD=$HOOK_CMD_SAVED
hook_run 2 add 'b.test:evil' </dev/null
hook_run 2 remove </dev/null
hook_run 1 add b.test conference.b.test < <(printf 'b.test %s\n' "$FG_SECRET_B")
hook_out_has 'error: no secret on standard input for conference\.b\.test'
# A listener file without the marked block.
grep -v 'fedgate peers' "$L" >"$FG_TMP/nomarks.yml"
HOOK_CMD="$HOOK --file $FG_TMP/nomarks.yml --ejabberdctl '$CTL'"
hook_run 1 add c.test < <(printf 'c.test %s\n' secret-c)
hook_out_has "has no well-formed '# BEGIN fedgate peers' \\.\\.\\. '# END fedgate peers' block"
HOOK_CMD=$HOOK_CMD_SAVED
# fedgate's own JID is outside the block: remove refuses to touch it.
hook_run 1 remove "fedgate.$FG_DOMAIN" </dev/null
hook_out_has "error: component fedgate\.a\.test is configured in .* outside the '# BEGIN fedgate peers' block: not removed"
cmp -s "$L" "$FG_TMP/listener.before" || fail "$L changed"
# ejabberd refuses the configuration (an unknown option elsewhere): the
# listener file goes back.
echo 'no_such_option_for_the_test: 1' >>"$EJ_DIR/etc/ejabberd.yml"
hook_run 1 add c.test < <(printf 'c.test %s\n' secret-c)
hook_out_has 'error: ejabberd refused the configuration'
hook_out_has 'no_such_option_for_the_test'
hook_out_has 'is back as it was'
cmp -s "$L" "$FG_TMP/listener.before" || fail "$L was not put back"
sed -i '/^no_such_option_for_the_test/d' "$EJ_DIR/etc/ejabberd.yml"
# ejabberd down.
ejabberd_stop
hook_run 1 add c.test < <(printf 'c.test %s\n' secret-c)
hook_out_has 'error: cannot reach the ejabberd node'
cmp -s "$L" "$FG_TMP/listener.before" || fail "$L was not put back"
[ "$(stat -c '%U %a' "$L")" = "ejabberd 640" ] ||
    fail "$L lost its owner or mode: $(stat -c '%U %a' "$L")"

hook_no_secrets "${SECRETS[@]}" secret-c
fedgate_stop gw
note "timing: add (2 domains) ${ADD_MS} ms, remove (2 domains) ${REMOVE_MS} ms;" \
    "$SECOND_RELOADS of $RELOADS reloading hook runs needed a second reload"
fg_finish
