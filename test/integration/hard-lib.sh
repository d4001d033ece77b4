# shellcheck shell=bash
# shellcheck disable=SC2034,SC2153,SC2154 # lib.sh's variables
#
# hard-lib.sh: the bad-input and load tests (hard-*.sh, issue "Bad input
# and load"): a hostile s2s peer (test/tools/s2s-attack.py) against
# fedgate while a real peer keeps federating through it. Sourced after
# lib.sh.
#
# Topology (127.0.N.0/24, see lib.sh):
#   .1  home Prosody a.test (s2s off; components fedgate.a.test, b.test,
#       evil.test), user alice
#   .2  fedgate a.test: STARTTLS 5269, direct TLS 5270;
#       s2s.negotiate_timeout = HARD_NEGOTIATE (3 s)
#   .3  Prosody b.test, s2s on: the real peer, user bob
#   .5  Prosody c.test, s2s on, user carol (HARD_WITH_C=1): a second real
#       peer that connects for the first time during an attack
#   .53 unbound: a.test, fedgate.a.test -> .2; b.test -> .3; c.test -> .5
#   .128-.159  the attacker's source addresses (.128 unless a case says)
# evil.test is a configured peer (auth = certificate) whose certificate
# (from the test CA) the attacker holds, so it can authenticate with SASL
# EXTERNAL and attack from inside an authenticated stream.
#
#   hard_setup              everything above, started; the routes to b.test
#                           warmed up; HARD_RSS0 = fedgate's VmRSS (KiB)
#   hard_rss                fedgate's VmRSS in KiB
#   hard_fds, hard_cpu      its open fds, its CPU seconds
#   hard_attacker_conns     its TCP connections with the attacker's
#                           addresses; hard_wait_drained SECS until none
#   hard_relay_ok           bob@b.test pings a.test (B -> fedgate -> home
#                           and back) and alice pings b.test (home ->
#                           fedgate -> B): the real peer still federates
#   hard_attack OUT ARGS... runs s2s-attack.py (output in $FG_TMP/OUT, also
#                           shown); its exit status
#   hard_case_log PORT COND the attacker's connection from source port PORT
#                           got a "stream error sent COND" line in fedgate's
#                           log
#   hard_cases OUT [--opt=V] CASE=COND...  runs payload cases (STAGE:NAME=COND)
#                           in one attacker run with --check-alive (and the
#                           attacker options given), then checks for
#                           each: the condition, fedgate's log line for it
#                           (COND none: a clean close), fedgate alive
#   hard_rss_check LABEL    fedgate's VmRSS within HARD_RSS_MARGIN KiB of
#                           HARD_RSS0 (fails otherwise), noted; only noted
#                           under ASan or valgrind (hard_rss_meaningful)

HARD_GW=gw
HARD_NEGOTIATE=${HARD_NEGOTIATE:-3}
HARD_RSS_MARGIN=${HARD_RSS_MARGIN:-16384}
HARD_ATTACK=$top_srcdir/test/tools/s2s-attack.py

hard_init_vars()
{
    HARD_B=b.test HARD_C=c.test HARD_EVIL=evil.test
    HARD_B_IP=127.0.$FG_NET.3
    HARD_C_IP=127.0.$FG_NET.5
    HARD_ATK_NET=127.0.$FG_NET.128/27
    HARD_ATK_IP=127.0.$FG_NET.128
    HARD_ATK_RANGE=127.0.$FG_NET.128-127.0.$FG_NET.159
    HARD_LOG=$FG_TMP/$HARD_GW.log
}

hard_setup()
{
    hard_init_vars
    fedgate_require
    fedgate_has_s2s || fail "$FEDGATE has no s2s engine"
    [ -x /usr/bin/python3 ] || skip "no /usr/bin/python3"
    fg_make_certs
    fg_make_cert evil "DNS:$HARD_EVIL"
    dns_srv "$FG_DOMAIN" 5269 "$FG_S2S_IP"
    dns_srv "fedgate.$FG_DOMAIN" 5269 "$FG_S2S_IP"
    dns_srv "$HARD_B" 5269 "$HARD_B_IP"
    [ "${HARD_WITH_C:-0}" = 1 ] && dns_srv "$HARD_C" 5269 "$HARD_C_IP"
    dns_start
    PROSODY_EXTRA=$(printf 'Component "%s"\n\tcomponent_secret = "%s"\n' \
        "$HARD_EVIL" "$FG_SECRET_B")
    [ "${HARD_WITH_C:-0}" = 1 ] && PROSODY_EXTRA+=$(printf '\nComponent "%s"\n\tcomponent_secret = "%s"\n' \
        "$HARD_C" "$FG_SECRET_B")
    prosody_setup
    prosody_start
    prosody_register "$FG_USER" "$FG_PASSWORD"
    prosody_peer_setup "$HARD_B" "$HARD_B_IP"
    peer_register "$HARD_B" bob bob-pw
    peer_start "$HARD_B"
    local peers=("peer=$HARD_B:certificate" "peer=$HARD_EVIL:certificate")
    FG_STREAM_DOMAINS=("fedgate.$FG_DOMAIN" "$HARD_B" "$HARD_EVIL")
    if [ "${HARD_WITH_C:-0}" = 1 ]; then
        prosody_peer_setup "$HARD_C" "$HARD_C_IP"
        peer_register "$HARD_C" carol carol-pw
        peer_start "$HARD_C"
        peers+=("peer=$HARD_C:certificate")
        FG_STREAM_DOMAINS+=("$HARD_C")
    fi

    local conf=$FG_TMP/$HARD_GW/fedgate.conf
    fedgate_s2s_config "$conf" "${peers[@]}" "direct_tls=$FG_S2S_IP:5270"
    # fedgate_s2s_config has no key for it: a short negotiation timeout,
    # so the slowloris and half-open cases end within the test.
    sed -i "s/^s2s = {/s2s = {\n    negotiate_timeout = $HARD_NEGOTIATE;/" "$conf"
    grep -q "negotiate_timeout = $HARD_NEGOTIATE;" "$conf" ||
        hard_error "could not set s2s.negotiate_timeout in $conf"
    fedgate_start "$HARD_GW" "$conf"
    fedgate_wait_ready "$HARD_GW" 15
    wait_for_port "$FG_S2S_IP" 5269 5 || fail "fedgate does not listen on 5269"
    wait_for_port "$FG_S2S_IP" 5270 5 || fail "fedgate does not listen on 5270"
    assert_loopback_only
    # Warm-up: both routes to b.test up, so the baseline holds them.
    hard_relay_ok
    HARD_RSS0=$(hard_rss)
    note "fedgate VmRSS baseline ${HARD_RSS0} KiB"
}

# Open fds of fedgate, and its TCP connections with the attacker's
# addresses (any state).
hard_fds()
{
    find "/proc/$(fedgate_pid "$HARD_GW")/fd" -mindepth 1 -maxdepth 1 | wc -l
}

hard_attacker_conns()
{
    ss -Htanp "dst $HARD_ATK_NET" 2>/dev/null |
        grep -c "pid=$(fedgate_pid "$HARD_GW"),"
}

# hard_wait_drained TIMEOUT: until fedgate holds no connection with the
# attacker's addresses.
hard_wait_drained()
{
    local end=$(($(date +%s) + $1)) n
    while :; do
        n=$(hard_attacker_conns)
        [ "$n" = 0 ] && return 0
        [ "$(date +%s)" -lt "$end" ] || fail "fedgate still holds $n connections with the attacker after ${1}s"
        sleep 0.2
    done
}

# CPU seconds (user + system) fedgate has used.
hard_cpu()
{
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' \
        "/proc/$(fedgate_pid "$HARD_GW")/stat"
}

hard_rss()
{
    local pid
    pid=$(fedgate_pid "$HARD_GW")
    awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0
}

# 0 when fedgate's memory figures mean something: not under
# AddressSanitizer (its quarantine keeps freed memory) nor valgrind (the
# process is valgrind's). The leak checks of those runs cover leaks there.
hard_rss_meaningful()
{
    case ${FEDGATE_WRAPPER:-} in
    *valgrind*) return 1 ;;
    esac
    ! grep -q __asan_init "$FEDGATE" 2>/dev/null
}

hard_rss_check()
{
    local label=$1 rss
    fedgate_alive "$HARD_GW" || fail "$label: fedgate died"
    rss=$(hard_rss)
    note "$label: fedgate VmRSS ${rss} KiB (baseline ${HARD_RSS0} KiB, delta $((rss - HARD_RSS0)) KiB)"
    hard_rss_meaningful || return 0
    [ "$rss" -le $((HARD_RSS0 + HARD_RSS_MARGIN)) ] ||
        fail "$label: fedgate's VmRSS ${rss} KiB exceeds the baseline ${HARD_RSS0} KiB by more than ${HARD_RSS_MARGIN} KiB"
}

hard_relay_ok()
{
    probe --on "$HARD_B" --as bob bob-pw --timeout 15 ping "$FG_DOMAIN" \
        >/dev/null 2>&1 || fail "bob@$HARD_B can no longer reach $FG_DOMAIN through fedgate"
    probe --timeout 15 ping "$HARD_B" >/dev/null 2>&1 ||
        fail "alice can no longer reach $HARD_B through fedgate"
}

hard_attack()
{
    local out=$FG_TMP/$1 rc
    shift
    /usr/bin/python3 "$HARD_ATTACK" --host "$FG_S2S_IP" --port 5269 \
        --tls-port 5270 --cafile "$FG_CAFILE" --cert "$FG_TMP/pki/evil.crt" \
        --key "$FG_TMP/pki/evil.key" --from "$HARD_EVIL" --to "$FG_DOMAIN" \
        --bind "$HARD_ATK_IP" "$@" >"$out" 2>"$out.err"
    rc=$?
    sed 's/^/    attack: /' "$out" "$out.err" >&2
    return $rc
}

hard_case_log()
{
    local port=$1 cond=$2 ip re
    ip=$(re_escape "$HARD_ATK_IP")
    if [ "$cond" = none ]; then
        re="s2s in $ip:$port via .*: connection closed"
    else
        re="s2s in $ip:$port via .*: stream error sent $cond: "
    fi
    wait_for_log "$HARD_LOG" "$re" 5 "$HARD_MARK" ||
        fail "no line matching /$re/ in fedgate's log"
}

hard_cases()
{
    local out=$1 kv case cond line port got rc
    shift
    local cases=() conds=() args=()
    for kv in "$@"; do
        case $kv in
        --*) args+=("$kv") ;; # an attacker option, as --name=value
        *)
            cases+=("${kv%=*}")
            conds+=("${kv##*=}")
            ;;
        esac
    done
    for cond in "${conds[@]}"; do
        args+=(--expect "$cond")
    done
    HARD_MARK=$(log_mark "$HARD_LOG")
    hard_attack "$out" --check-alive "${args[@]}" "${cases[@]}"
    rc=$?
    [ "$rc" = 4 ] && fail "fedgate stopped answering new streams (see above)"
    fedgate_alive "$HARD_GW" || fail "fedgate died during $out"
    for i in "${!cases[@]}"; do
        case=${cases[i]} cond=${conds[i]}
        line=$(grep -F "result $case port=" "$FG_TMP/$out" | head -1)
        [ -n "$line" ] || fail "$case: no result (attacker exit $rc)"
        got=$(sed -n 's/.* condition=\([^ ]*\) .*/\1/p' <<<"$line")
        port=$(sed -n 's/.* port=\([0-9]*\) .*/\1/p' <<<"$line")
        [ "$got" = "$cond" ] || fail "$case: fedgate answered $got, expected $cond"
        hard_case_log "$port" "$cond"
    done
    [ "$rc" = 0 ] || fail "the attacker exited $rc"
    note "$out: ${#cases[@]} cases as expected"
}
