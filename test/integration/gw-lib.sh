# shellcheck shell=bash
# shellcheck disable=SC2034,SC2153,SC2154 # lib.sh's variables
#
# gw-lib.sh: the gateway topologies (issue "Gateway"): two domains
# federated end to end, a.test behind fedgate, with real servers and real
# clients (test/tools/xmpp-scenario.py). Sourced after lib.sh by
# gw-*.sh and scripts/demo.sh.
#
# Addresses (127.0.N.0/24, see lib.sh):
#   .1  home server a.test (Prosody or ejabberd, s2s off; components
#       fedgate.a.test, b.test, conference.b.test), user alice
#   .2  fedgate A (a.test), s2s 5269
#   .3  b.test: a home server behind fedgate B (s2s off; components
#       fedgate.b.test and a.test), or an unmodified server with s2s on;
#       user bob
#   .4  fedgate B (b.test), s2s 5269 (fedgate topologies only)
#   .5  c.test: an unmodified Prosody with s2s on that is nobody's peer;
#       user carol
#   .53 unbound: _xmpp-server._tcp for a.test and fedgate.a.test -> .2;
#       b.test (and fedgate.b.test) -> .4 (fedgate) or .3 (s2s);
#       c.test -> .5. Targets are IP addresses (ejabberd needs that).
#
# Every server gets vcard-temp and offline storage (Prosody: mod_vcard,
# offline is always loaded; ejabberd: mod_vcard and mod_offline added to
# the generated configuration).
#
# Use:
#   gw_setup KIND_A B_MODE   KIND_A prosody|ejabberd (the home of a.test);
#                            B_MODE fedgate-prosody | fedgate-ejabberd
#                            (b.test at home behind fedgate B) or
#                            s2s-prosody | s2s-ejabberd (unmodified,
#                            s2s on); starts everything, registers users
#   gw_scen OUT [tool options] STEP...   runs xmpp-scenario as alice, bob
#                            and carol (GW_ACTORS), output in $FG_TMP/OUT
#   gw_steps_*               the step lists (arrays GW_STEPS)
#   gw_run_all KIND_A B_MODE the whole test (the four gw-*.sh call it):
#       1. baseline: each server's own error for nobody@ (version, vCard),
#          asked by its own user: the cross-border steps then require the
#          same condition, type and text;
#       2. one client run (alice, bob; --transcript in main.out):
#          subscription both ways with rosters and presence updates;
#          normal/chat/headline/groupchat/error messages both ways with
#          thread, chat states and receipts; groupchat to a bare JID and a
#          message to nobody@ bounce with the receiving server's error;
#          100 KiB and non-ASCII bodies; iq ping/version/disco/vCard both
#          ways (to the server and to the client), errors intact; offline
#          storage both ways (<delay/>), presence probes answered after a
#          clean reconnect and after a killed connection; unsubscribe and
#          cancel; alice -> c.test refused by her home server;
#       3. fedgate's log: SASL EXTERNAL in and out (both fedgates), TLS
#          1.2+; nothing about c.test in fedgate A's log and no SRV
#          lookup of c.test at all (nothing left for it);
#       4. carol@c.test -> alice (second run): carol gets an error, alice
#          nothing, fedgate A logs "policy refuses c.test ... not a
#          configured peer".
#   gw_teardown              stops everything in order

GW_A=a.test GW_B=b.test GW_C=c.test
GW_SECRET_A=secret-a
GW_PY=/usr/bin/python3
GW_ALICE_PW=alice-pw-1 GW_BOB_PW=bob-pw-1 GW_CAROL_PW=carol-pw-1

gw_init_vars()
{
    GW_A_IP=$FG_IP
    GW_GA_IP=$FG_S2S_IP
    GW_B_IP=127.0.$FG_NET.3
    GW_GB_IP=127.0.$FG_NET.4
    GW_C_IP=127.0.$FG_NET.5
    GW_SCEN=$top_srcdir/test/tools/xmpp-scenario.py
    GW_AR=$(re_escape "$GW_A") GW_BR=$(re_escape "$GW_B")
    GW_CR=$(re_escape "$GW_C")
}

# gw_facts KIND PREFIX: what a real server answers (measured with the
# Debian 12 packages: Prosody 0.12.3, ejabberd 23.01), as PREFIX_* vars.
# Also seen (and pinned by the baseline, not here): Prosody's errors for
# nobody@ carry no text; ejabberd's version error says "No module is
# handling this query". Prosody c.test reports fedgate's refusal as
# remote-server-timeout "Server-to-server connection failed: dialback
# authentication failed".
gw_facts()
{
    local k=$1 p=$2
    case $k in
    prosody)
        printf -v "${p}_NAME" Prosody
        # groupchat to a bare account JID is refused
        printf -v "${p}_GC_BARE" service-unavailable
        # a domain with no component while s2s is off
        printf -v "${p}_UNKNOWN" not-allowed
        # an account that does not exist
        printf -v "${p}_NOUSER_VERSION" service-unavailable
        printf -v "${p}_NOUSER_VCARD" item-not-found
        printf -v "${p}_NOUSER_MSG" service-unavailable
        ;;
    ejabberd)
        printf -v "${p}_NAME" ejabberd
        printf -v "${p}_GC_BARE" service-unavailable
        printf -v "${p}_UNKNOWN" forbidden
        printf -v "${p}_NOUSER_VERSION" service-unavailable
        # vcard-temp of an account that does not exist: an empty vCard
        printf -v "${p}_NOUSER_VCARD" result
        printf -v "${p}_NOUSER_MSG" service-unavailable
        ;;
    *) hard_error "gw_facts: unknown server kind $k" ;;
    esac
}

# ---- set-up -------------------------------------------------------------------

# Adds offline storage and vcard-temp to an ejabberd.yml written by lib.sh.
gw_ejabberd_modules()
{
    local yml=$1
    grep -q '^  mod_offline:' "$yml" && return 0
    sed -i '/^modules:$/a\  mod_offline: {}\n  mod_vcard: {}' "$yml" ||
        hard_error "cannot edit $yml"
    chown ejabberd: "$yml"
}

# gw_ejabberd_home_setup DOMAIN IP "NAME:SECRET ...": an ejabberd for
# DOMAIN with its s2s off (no s2s listener, s2s_access deny) and an
# ejabberd_service listener on IP:$FG_COMP_PORT for the given components.
# Built on ejabberd_peer_setup (directories, certificate, node, inetrc),
# whose ejabberd.yml is replaced; start it with gw_ejabberd_home_start.
gw_ejabberd_home_setup()
{
    local dom=$1 ip=$2 comps=$3 d c
    ejabberd_peer_setup "$dom" "$ip"
    d=${PEER_DIR[$dom]}
    {
        cat <<EOT
# Generated by test/integration/gw-lib.sh for test $FG_NAME: home $dom
# behind fedgate (s2s off).
loglevel: info
log_rotate_count: 0
hosts:
  - $dom
certfiles:
  - "$d/etc/cert.pem"
ca_file: "$d/etc/ca.crt"
auth_method: internal
auth_password_format: scram
s2s_access: none_s2s
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  none_s2s:
    deny: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
listen:
  -
    port: $FG_C2S_PORT
    ip: "$ip"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
  -
    port: $FG_COMP_PORT
    ip: "$ip"
    module: ejabberd_service
    check_from: true
    global_routes: false
    hosts:
EOT
        for c in $comps; do
            printf '      %s:\n        password: "%s"\n' "${c%%:*}" "${c#*:}"
        done
        cat <<EOT
modules:
  mod_disco: {}
  mod_roster: {}
  mod_ping: {}
  mod_version: {}
  mod_offline: {}
  mod_vcard: {}
EOT
    } >"$d/etc/ejabberd.yml"
    chown ejabberd: "$d/etc/ejabberd.yml"
}

gw_ejabberd_home_start()
{
    local dom=$1 d=${PEER_DIR[$1]} ip=${PEER_IP[$1]} mark end pid
    mark=$(log_mark "$d/log/ejabberd.log")
    echo "=== start $(date +%T.%N)" >>"$d/log/stdout.log"
    HOME=$d/home setsid runuser -u ejabberd -- "$EJABBERDCTL_BIN" \
        --config-dir "$d/etc" --spool "$d/spool" --logs "$d/log" \
        --node "${PEER_NODE[$dom]}" foreground \
        >>"$d/log/stdout.log" 2>&1 </dev/null &
    pid=$!
    PEER_PID[$dom]=$pid
    FG_PGIDS+=("$pid")
    end=$(($(date +%s) + 60))
    while ! tail -c "+$((mark + 1))" "$d/log/ejabberd.log" 2>/dev/null |
        grep -q 'is started in the node'; do
        kill -0 "$pid" 2>/dev/null || fail "ejabberd $dom exited at start-up"
        [ "$(date +%s)" -lt "$end" ] || fail "ejabberd $dom did not start in 60s"
        sleep 0.2
    done
    if ! wait_for_port "$ip" "$FG_C2S_PORT" 10 ||
        ! wait_for_port "$ip" "$FG_COMP_PORT" 10; then
        fail "ejabberd $dom started but does not listen on $ip"
    fi
    note "ejabberd $dom (home, s2s off) up on $ip (pgid $pid)"
}

# gw_prosody_vcard DOMAIN: vcard-temp for a Prosody peer from lib.sh.
gw_prosody_vcard()
{
    printf '\nVirtualHost "%s"\n\tmodules_enabled = { "vcard" }\n' "$1" \
        >>"${PEER_CFG[$1]}"
}

gw_dns()
{
    local d t
    dns_clear
    for d in "$GW_A" "fedgate.$GW_A"; do
        dns_srv "$d" 5269 "$GW_GA_IP"
    done
    case $GW_B_MODE in
    fedgate-*) t=$GW_GB_IP ;;
    *) t=$GW_B_IP ;;
    esac
    for d in "$GW_B" "fedgate.$GW_B"; do
        dns_srv "$d" 5269 "$t"
    done
    dns_srv "$GW_C" 5269 "$GW_C_IP"
}

gw_home_a_setup()
{
    case $GW_KIND_A in
    prosody)
        PROSODY_EXTRA=$'VirtualHost "a.test"\n\tmodules_enabled = { "vcard" }'
        prosody_setup
        prosody_start
        prosody_register alice "$GW_ALICE_PW"
        ;;
    ejabberd)
        ejabberd_setup
        gw_ejabberd_modules "$EJ_DIR/etc/ejabberd.yml"
        ejabberd_start
        ejabberd_register alice "$GW_ALICE_PW"
        ;;
    esac
}

gw_b_setup()
{
    local comps="fedgate.$GW_B:$FG_SECRET_GW $GW_A:$GW_SECRET_A"
    case $GW_B_MODE in
    fedgate-prosody)
        prosody_peer_setup "$GW_B" "$GW_B_IP" s2s=off components="$comps"
        gw_prosody_vcard "$GW_B"
        peer_register "$GW_B" bob "$GW_BOB_PW"
        peer_start "$GW_B"
        ;;
    fedgate-ejabberd)
        gw_ejabberd_home_setup "$GW_B" "$GW_B_IP" "$comps"
        gw_ejabberd_home_start "$GW_B"
        peer_register "$GW_B" bob "$GW_BOB_PW"
        ;;
    s2s-prosody)
        prosody_peer_setup "$GW_B" "$GW_B_IP"
        gw_prosody_vcard "$GW_B"
        peer_register "$GW_B" bob "$GW_BOB_PW"
        peer_start "$GW_B"
        ;;
    s2s-ejabberd)
        ejabberd_peer_setup "$GW_B" "$GW_B_IP"
        gw_ejabberd_modules "${PEER_DIR[$GW_B]}/etc/ejabberd.yml"
        peer_start "$GW_B"
        peer_register "$GW_B" bob "$GW_BOB_PW"
        ;;
    *) hard_error "gw_setup: unknown b.test mode $GW_B_MODE" ;;
    esac
}

# gw_fedgates_start: fedgate A (peer b.test), and B (peer a.test) in the
# fedgate topologies. auth = "any": both certificates are valid, so SASL
# EXTERNAL is expected (asserted in gw_assert_auth).
gw_fedgates_start()
{
    s2s_gw_start ga "peer=$GW_B:any"
    case $GW_B_MODE in
    fedgate-*)
        s2s_gw_start gb domain="$GW_B" home="$GW_B_IP" secret="$GW_SECRET_A" \
            listen="$GW_GB_IP:5269" cert=gwb "peer=$GW_A:any"
        ;;
    esac
}

# gw_setup KIND_A B_MODE [c]: everything up; with "c", also c.test.
gw_setup()
{
    GW_KIND_A=$1 GW_B_MODE=$2
    GW_KIND_B=${GW_B_MODE#*-}
    gw_init_vars
    gw_facts "$GW_KIND_A" FA
    gw_facts "$GW_KIND_B" FB
    fedgate_require
    fedgate_has_s2s || fail "$FEDGATE has no s2s engine"
    [ -x "$GW_PY" ] || skip "no $GW_PY"
    "$GW_PY" -c 'import slixmpp' 2>/dev/null || skip "python3-slixmpp not installed"
    fg_make_certs
    fg_make_cert gwb "DNS:$GW_B" "DNS:fedgate.$GW_B"
    gw_dns
    dns_start
    gw_home_a_setup
    gw_b_setup
    if [ "${3:-}" = c ]; then
        prosody_peer_setup "$GW_C" "$GW_C_IP"
        peer_register "$GW_C" carol "$GW_CAROL_PW"
        peer_start "$GW_C"
    fi
    gw_fedgates_start
}

# ---- the client -----------------------------------------------------------------

# gw_scen OUT [tool options and steps]: runs xmpp-scenario with the
# accounts in GW_ACTORS (default alice bob); output shown and kept in
# $FG_TMP/OUT; returns its status.
gw_scen()
{
    local out=$FG_TMP/$1 rc a accts=()
    shift
    for a in ${GW_ACTORS:-alice bob}; do
        case $a in
        alice) accts+=(--account "alice@$GW_A:$GW_ALICE_PW@$GW_A_IP:$FG_C2S_PORT") ;;
        bob) accts+=(--account "bob@$GW_B:$GW_BOB_PW@$GW_B_IP:$FG_C2S_PORT") ;;
        carol) accts+=(--account "carol@$GW_C:$GW_CAROL_PW@$GW_C_IP:$FG_C2S_PORT") ;;
        esac
    done
    "$GW_PY" "$GW_SCEN" --cafile "$FG_CAFILE" --timeout "${GW_TIMEOUT:-15}" \
        "${accts[@]}" "$@" >"$out" 2>"$out.err"
    rc=$?
    sed 's/^/    | /' "$out" "$out.err" >&2
    return $rc
}

# gw_scen_ok OUT [options] STEP...: must pass.
gw_scen_ok()
{
    local out=$1
    gw_scen "$@" || fail "$out: xmpp-scenario failed: $(cat "$FG_TMP/$out.err"; grep -m1 '^FAIL' "$FG_TMP/$out")"
    ! grep -q '^FAIL' "$FG_TMP/$out" || fail "$out: a FAIL line in a passing run"
}

# esc TEXT: TEXT as one step field (':' and '\' escaped).
gw_esc()
{
    local s=${1//\\/\\\\}
    printf '%s' "${s//:/\\:}"
}

# gw_error_opts OUT STEP-PREFIX: from an "ok" line of a baseline run
# (iq-expect-error / expect-bounce detail), the options that pin type
# and text, e.g. ":type=cancel:text=..." (text only when the server sent
# one).
gw_error_opts()
{
    local line=$1 t x=""
    t=$(sed -nE 's/.* type=([a-z]+).*/\1/p' <<<"$line")
    [ -n "$t" ] || fail "no error type in: $line"
    if [[ $line =~ \ text=\'([^\']*)\' ]]; then
        x=":text=$(gw_esc "${BASH_REMATCH[1]}")"
    fi
    printf ':type=%s%s' "$t" "$x"
}

# ---- step lists ------------------------------------------------------------------

GW_UTF='😀👍🏽 שלום עולם e\u0301 👨‍👩‍👧 \u202eRTL\u202c ü\:ß'

# gw_okline OUT PREFIX: the first "ok PREFIX..." line of a run.
gw_okline()
{
    grep -m1 -F "ok $2" "$FG_TMP/$1"
}

# Baselines: each server's own answer for an account that does not
# exist, asked by its own user (no border crossed). The cross-border
# steps then require exactly that condition, type and text.
gw_baseline()
{
    local out=baseline.out
    gw_scen_ok "$out" \
        "alice:iq-expect-error:$FA_NOUSER_VERSION:version:nobody@$GW_A" \
        "$(gw_vcard_step alice "$FA_NOUSER_VCARD" "nobody@$GW_A")" \
        "bob:iq-expect-error:$FB_NOUSER_VERSION:version:nobody@$GW_B" \
        "$(gw_vcard_step bob "$FB_NOUSER_VCARD" "nobody@$GW_B")"
    GW_ERR_A_VERSION=$(gw_error_opts "$(gw_okline "$out" "alice:iq-expect-error:$FA_NOUSER_VERSION:version")")
    GW_ERR_B_VERSION=$(gw_error_opts "$(gw_okline "$out" "bob:iq-expect-error:$FB_NOUSER_VERSION:version")")
    GW_ERR_A_VCARD="" GW_ERR_B_VCARD=""
    [ "$FA_NOUSER_VCARD" = result ] ||
        GW_ERR_A_VCARD=$(gw_error_opts "$(gw_okline "$out" "alice:iq-expect-error:$FA_NOUSER_VCARD:vcard")")
    [ "$FB_NOUSER_VCARD" = result ] ||
        GW_ERR_B_VCARD=$(gw_error_opts "$(gw_okline "$out" "bob:iq-expect-error:$FB_NOUSER_VCARD:vcard")")
    note "baseline answers for nobody@: a.test version$GW_ERR_A_VERSION" \
        "vcard $FA_NOUSER_VCARD$GW_ERR_A_VCARD; b.test version$GW_ERR_B_VERSION" \
        "vcard $FB_NOUSER_VCARD$GW_ERR_B_VCARD"
}

# gw_vcard_step ACTOR ANSWER JID [OPTS]: the step asking JID's vCard when
# the server answers ANSWER ("result" or an error condition).
gw_vcard_step()
{
    if [ "$2" = result ]; then
        printf '%s:iq-vcard:%s' "$1" "$3"
    else
        printf '%s:iq-expect-error:%s:vcard:%s%s' "$1" "$2" "$3" "${4:-}"
    fi
}

# Subscription both ways, roster, presence updates seen across.
gw_steps_subscribe()
{
    GW_STEPS+=(
        @:note:subscription
        alice:subscribe:bob bob:expect-subscribe:alice
        alice:expect-roster:bob:none:ask
        bob:approve:alice alice:expect-subscribed:bob
        alice:expect-presence:bob:available
        alice:expect-roster:bob:to bob:expect-roster:alice:from
        bob:subscribe:alice alice:expect-subscribe:bob alice:approve:bob
        bob:expect-subscribed:alice bob:expect-presence:alice:available
        alice:expect-roster:bob:both bob:expect-roster:alice:both
        'bob:presence:show=away:status=Out to lunch \u2615'
        'alice:expect-presence:bob:available:show=away:status=Out to lunch ☕'
        'alice:presence:show=dnd:status=Ωmega \: busy'
        'bob:expect-presence:alice:available:show=dnd:status=Ωmega \: busy'
    )
}

# Every message type, threads, chat states, receipts, big and non-ASCII.
gw_steps_messages()
{
    GW_STEPS+=(
        @:note:messages
        alice:send:bob:normal:plain bob:expect-message:alice:normal:plain
        bob:send:alice:normal:plain-back alice:expect-message:bob:normal:plain-back
        'alice:send:bob:chat:hello\: world:thread=th-1:state=active:receipt'
        'bob:expect-message:alice:chat:hello\: world:thread=th-1:state=active:receipt'
        alice:expect-receipt:bob
        bob:send:alice:chat::thread=th-1:state=composing
        alice:expect-message:bob:chat::thread=th-1:state=composing
        bob:send:alice:chat::thread=th-1:state=paused
        alice:expect-message:bob:chat::thread=th-1:state=paused
        'bob:send:alice:chat:reply:thread=th-1:state=active:receipt'
        'alice:expect-message:bob:chat:reply:thread=th-1:state=active:receipt'
        bob:expect-receipt:alice
        alice:send:bob:chat::thread=th-1:state=gone
        bob:expect-message:alice:chat::thread=th-1:state=gone
        alice:send:bob:headline:news-a bob:expect-message:alice:headline:news-a
        bob:send:alice:headline:news-b alice:expect-message:bob:headline:news-b
        alice:send:bob/:groupchat:room-a:thread=g1
        bob:expect-message:alice:groupchat:room-a:thread=g1
        bob:send:alice/:groupchat:room-b:thread=g2
        alice:expect-message:bob:groupchat:room-b:thread=g2
        # groupchat to a bare JID: the receiving server's answer reaches
        # the sender across the border
        alice:send:bob:groupchat:to-bare "alice:expect-bounce:bob:$FB_GC_BARE"
        bob:send:alice:groupchat:to-bare "bob:expect-bounce:alice:$FA_GC_BARE"
        alice:send:bob/:error:failed-a:cond=item-not-found
        bob:expect-message:alice:error:failed-a:cond=item-not-found
        bob:send:alice/:error:failed-b:cond=not-acceptable
        alice:expect-message:bob:error:failed-b:cond=not-acceptable
        # a message to an account that does not exist
        "alice:send:nobody@$GW_B:chat:lost" "alice:expect-bounce:nobody@$GW_B:$FB_NOUSER_MSG"
        "bob:send:nobody@$GW_A:chat:lost" "bob:expect-bounce:nobody@$GW_A:$FA_NOUSER_MSG"
        alice:send:bob:chat:@100k bob:expect-message:alice:chat:@100k
        bob:send:alice:chat:@100k alice:expect-message:bob:chat:@100k
        "alice:send:bob:chat:$GW_UTF:thread=ü\\:1"
        "bob:expect-message:alice:chat:$GW_UTF:thread=ü\\:1"
        "bob:send:alice:normal:$GW_UTF" "alice:expect-message:bob:normal:$GW_UTF"
        bob:expect-no-message:alice:0.3 alice:expect-no-message:bob:0.3
    )
}

# iq both ways: ping, disco#info, vCard, version; errors intact.
gw_steps_iq()
{
    GW_STEPS+=(
        @:note:iq
        alice:iq-ping:bob/ bob:iq-ping:alice/
        "alice:iq-ping:$GW_B" "bob:iq-ping:$GW_A"
        "alice:iq-version:$GW_B:name=$FB_NAME" "bob:iq-version:$GW_A:name=$FA_NAME"
        alice:iq-version:bob/:name=xmpp-scenario bob:iq-version:alice/:name=xmpp-scenario
        'alice:iq-disco:bob/:feature=urn\:xmpp\:ping'
        'bob:iq-disco:alice/:feature=urn\:xmpp\:ping'
        "alice:iq-disco:$GW_B:feature=vcard-temp" "bob:iq-disco:$GW_A:feature=vcard-temp"
        'bob:vcard-set:Bob בוב 😀' 'alice:iq-vcard:bob:fn=Bob \u05d1\u05d5\u05d1 \U0001F600'
        'alice:vcard-set:Alice \: Ælis' 'bob:iq-vcard:alice:fn=Alice \: Ælis'
        "alice:iq-expect-error:feature-not-implemented:vcard:bob/:type=cancel:text=No handlers registered for this request."
        "bob:iq-expect-error:feature-not-implemented:vcard:alice/:type=cancel:text=No handlers registered for this request."
        "alice:iq-expect-error:$FB_NOUSER_VERSION:version:nobody@$GW_B$GW_ERR_B_VERSION"
        "$(gw_vcard_step alice "$FB_NOUSER_VCARD" "nobody@$GW_B" "$GW_ERR_B_VCARD")"
        "bob:iq-expect-error:$FA_NOUSER_VERSION:version:nobody@$GW_A$GW_ERR_A_VERSION"
        "$(gw_vcard_step bob "$FA_NOUSER_VCARD" "nobody@$GW_A" "$GW_ERR_A_VCARD")"
    )
}

# Offline storage both ways (delivered with <delay/> at the next login),
# and presence probes answered after a reconnect.
gw_steps_offline()
{
    GW_STEPS+=(
        @:note:offline
        bob:disconnect alice:expect-presence:bob:unavailable
        'alice:send:bob:chat:stored 1 ☃:thread=off' alice:send:bob:normal:stored-2
        # a barrier: the ping follows the messages on the same route, so
        # they are stored before bob comes back (else they may arrive live)
        "alice:iq-ping:$GW_B"
        bob:connect
        'bob:expect-message:alice:chat:stored 1 ☃:thread=off:delayed'
        bob:expect-message:alice:normal:stored-2:delayed
        bob:expect-presence:alice:available:show=dnd
        alice:expect-presence:bob:available
        alice:disconnect bob:expect-presence:alice:unavailable
        'bob:send:alice:chat:stored 3:thread=off-b'
        "bob:iq-ping:$GW_A"
        alice:connect
        'alice:expect-message:bob:chat:stored 3:thread=off-b:delayed'
        alice:expect-presence:bob:available bob:expect-presence:alice:available
        @:note:probe-after-kill
        bob:kill alice:expect-presence:bob:unavailable
        bob:connect bob:expect-presence:alice:available alice:expect-presence:bob:available
        bob:expect-no-message:alice:0.2
    )
}

# Unsubscribe, then cancel.
gw_steps_unsubscribe()
{
    GW_STEPS+=(
        @:note:unsubscribe
        alice:unsubscribe:bob bob:expect-unsubscribe:alice
        alice:expect-roster:bob:from bob:expect-roster:alice:to
        alice:cancel:bob bob:expect-unsubscribed:alice
        alice:expect-roster:bob:none bob:expect-roster:alice:none
    )
}

# alice -> c.test: no component, so the home server refuses at once.
gw_steps_policy_out()
{
    GW_STEPS+=(
        @:note:policy-out
        "alice:send:carol@$GW_C:chat:leak?" "alice:expect-bounce:carol@$GW_C:$FA_UNKNOWN"
        "alice:iq-expect-error:$FA_UNKNOWN:ping:$GW_C"
    )
}

# carol@c.test (not a peer) -> alice: carol gets an error, alice nothing.
gw_steps_policy_in()
{
    GW_STEPS+=(
        @:note:policy-in
        "carol:send:alice:chat:hello from c" "carol:expect-bounce:alice:remote-server-timeout:timeout=25"
        "carol:iq-expect-error:remote-server-timeout:ping:$GW_A:timeout=25"
        "alice:expect-no-message:carol@$GW_C:1"
    )
}

# ---- assertions on fedgate's logs ---------------------------------------------------

gw_assert_auth()
{
    s2s_log_has ga "s2s out .*authenticated $GW_AR -> $GW_BR with sasl-external"
    s2s_log_has ga "s2s in .*authenticated $GW_BR -> $GW_AR with sasl-external"
    s2s_log_has ga "s2s out $GW_AR -> $GW_BR .*: TLS TLSv1\\.[23]"
    case $GW_B_MODE in
    fedgate-*)
        s2s_log_has gb "s2s out .*authenticated $GW_BR -> $GW_AR with sasl-external"
        s2s_log_has gb "s2s in .*authenticated $GW_AR -> $GW_BR with sasl-external"
        ;;
    esac
}

# ---- the whole test --------------------------------------------------------------------

gw_run_all()
{
    local t0 n
    t0=$(date +%s%N)
    gw_setup "$@" c
    note "set-up took $((($(date +%s%N) - t0) / 1000000)) ms"
    gw_baseline

    GW_STEPS=()
    gw_steps_subscribe
    gw_steps_messages
    gw_steps_iq
    gw_steps_offline
    gw_steps_unsubscribe
    gw_steps_policy_out
    t0=$(date +%s%N)
    gw_scen_ok main.out --transcript "${GW_STEPS[@]}"
    n=$(grep -c '^ok ' "$FG_TMP/main.out")
    note "main scenario: $n ok lines in $((($(date +%s%N) - t0) / 1000000)) ms"
    gw_assert_auth

    # Nothing for c.test left: fedgate A never tried (no route, no DNS
    # query), and the DNS server was never asked about c.test.
    s2s_log_lacks ga "$GW_CR"
    if grep -q "_xmpp-server\\._tcp\\.$GW_CR" "$FG_TMP/dns/unbound.log"; then
        fail "someone looked up c.test's SRV record: $(grep -m1 "$GW_CR" "$FG_TMP/dns/unbound.log")"
    fi

    # An untrusted remote domain reaches no local user.
    GW_STEPS=()
    gw_steps_policy_in
    GW_ACTORS="alice carol" gw_scen_ok policy.out "${GW_STEPS[@]}"
    s2s_log_has ga "s2s in .*: policy refuses $GW_CR .*not a configured peer"
    s2s_log_lacks ga "authenticated $GW_CR -> "

    fedgate_alive ga || fail "fedgate A died"
    case $GW_B_MODE in fedgate-*) fedgate_alive gb || fail "fedgate B died" ;; esac
    assert_loopback_only
    gw_teardown
}

gw_teardown()
{
    fedgate_stop ga
    case $GW_B_MODE in fedgate-*) fedgate_stop gb ;; esac
    peer_stop "$GW_C"
    peer_stop "$GW_B"
    case $GW_KIND_A in
    prosody) prosody_stop ;;
    ejabberd) ejabberd_stop ;;
    esac
    dns_stop
}
