#!/bin/bash
# e2e.sh: figure 1 of the benchmarks (issue 6): end-to-end message
# throughput through the gateway versus Prosody's own s2s, side by side in
# one run, with real servers and real (libstrophe) clients.
#
#   gw:  s1..sN@a.test ⇄ Prosody a.test ⇄ fedgate A ═ TLS s2s ═ fedgate B
#            ⇄ Prosody b.test ⇄ r1..rN@b.test
#        (both Prosodys with s2s off, fedgates as their components: the
#        topology of test/integration/gw-prosody-prosody.sh)
#   s2s: the same clients ⇄ Prosody a.test ═ Prosody's own s2s ═ Prosody
#        b.test (STARTTLS required, certificates from the test CA,
#        s2s_secure_auth, so SASL EXTERNAL)
#
# Addresses (127.0.N.0/24 from lib.sh; gw-lib.sh's scheme): .1 Prosody
# a.test, .2 fedgate A, .3 Prosody b.test, .4 fedgate B, .53 unbound. The
# two topologies take turns on the same addresses (DNS records and server
# configs are rewritten between runs); the four Prosody configs differ
# only in s2s on/off and the component sections. Both Prosodys log at
# info level and fedgate at info: lib.sh's debug logging would cost more
# than the messages. Prosody's mod_limits is not loaded (not autoloaded in
# 0.12 and not in lib.sh's module list), so no client is throttled.
#
# Each run: start the topology, then bench/e2e-client: N sender/receiver
# pairs log in, warm the routes up with one message each, and send M
# numbered chat messages per pair with at most W in flight per pair; it
# reports messages/s over the window, missing/duplicated/bounced counts
# and each server process's CPU time per message (/proc/PID/stat
# utime+stime over the window). The runs alternate gw, s2s, gw, s2s, ...
# (E2E_ROUNDS rounds) and the figures are the medians per topology.
#
# stdout: "FIGURE <key> <value> <unit> <text>" and "TARGET <key> <met|missed>
# <text>" lines (bench/run.sh collects them); progress on stderr.
# Environment:
#   E2E_PAIRS (4)  E2E_MESSAGES (20000 per pair)  E2E_ROUNDS (3)
#   E2E_WINDOW (1024 messages in flight per pair: enough that every
#   process is busy in both topologies on 2 cores; with 64 the rate is
#   bound by the path's latency, the gateway path's more so, as it has
#   more hops)  E2E_BODY (100 bytes)
#   E2E_TOPOLOGIES ("gw s2s")  E2E_TIMEOUT (900 s, the watchdog)
#   BUILD_DIR / top_builddir (where fedgate, test/tools/xmpp-probe and
#   bench/e2e-client are built; default: the source tree), FEDGATE,
#   E2E_CLIENT, E2E_CLIENT_ARGS (e.g. --verbose), KEEP_TMP=1.
# Exit: 0 when every run completed (the figures say whether every message
# was accounted for), 1 on a failure, 77 when a server is not installed.
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
: "${top_srcdir:=$top}"
: "${top_builddir:=${BUILD_DIR:-$top}}"
export top_srcdir top_builddir
E2E_CLIENT=${E2E_CLIENT:-$top_builddir/bench/e2e-client}
E2E_PAIRS=${E2E_PAIRS:-4}
E2E_MESSAGES=${E2E_MESSAGES:-20000}
E2E_ROUNDS=${E2E_ROUNDS:-3}
E2E_WINDOW=${E2E_WINDOW:-1024}
E2E_BODY=${E2E_BODY:-100}
E2E_TOPOLOGIES=${E2E_TOPOLOGIES:-gw s2s}
E2E_PW=bench-pw-1
# lib.sh's fg_init insists on xmpp-probe (a check program); nothing here
# uses it.
PROBE=${PROBE:-/bin/true}

# shellcheck source=test/integration/lib.sh
. "$top/test/integration/lib.sh"
# shellcheck source=test/integration/gw-lib.sh
. "$top/test/integration/gw-lib.sh"
fg_init bench-e2e "${E2E_TIMEOUT:-900}"

[ -x "$E2E_CLIENT" ] ||
    hard_error "$E2E_CLIENT not built (make bench, or make bench/e2e-client)"
for v in E2E_PAIRS E2E_MESSAGES E2E_ROUNDS E2E_WINDOW E2E_BODY; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || hard_error "$v must be a positive integer"
done
case " $E2E_TOPOLOGIES " in
*" gw "*) fedgate_require && { fedgate_has_s2s || fail "$FEDGATE has no s2s engine"; } ;;
esac

declare -A E2E_USERS_DONE=() # domain -> 1 once its users are registered
declare -A R=()              # R[topo.key] = "value value ..." over the rounds

# ---- set-up -----------------------------------------------------------------

# e2e_dns gw|s2s: the SRV records of one topology, then (re)start unbound.
e2e_dns()
{
    local d
    dns_clear
    if [ "$1" = gw ]; then
        for d in "$GW_A" "fedgate.$GW_A"; do dns_srv "$d" 5269 "$GW_GA_IP"; done
        for d in "$GW_B" "fedgate.$GW_B"; do dns_srv "$d" 5269 "$GW_GB_IP"; done
    else
        dns_srv "$GW_A" 5269 "$GW_A_IP"
        dns_srv "$GW_B" 5269 "$GW_B_IP"
    fi
    dns_restart
}

# e2e_prosody DOMAIN IP gw|s2s USER_PREFIX COMPONENTS: lib.sh's Prosody peer
# (s2s on, or off with the gateway's components), logging at info level,
# with users USER_PREFIX1..N; started.
e2e_prosody()
{
    local dom=$1 ip=$2 topo=$3 user=$4 comps=$5 cfg i
    if [ "$topo" = gw ]; then
        prosody_peer_setup "$dom" "$ip" s2s=off components="$comps"
    else
        prosody_peer_setup "$dom" "$ip"
    fi
    cfg=${PEER_CFG[$dom]}
    # lib.sh logs debug to a file: for a benchmark that is most of the work.
    sed -i 's|^log = .*|log = { info = D.."/logs/prosody.log"; }|' "$cfg" ||
        hard_error "cannot edit $cfg"
    grep -q '^log = { info = D' "$cfg" || hard_error "log line not found in $cfg"
    ! grep -q '"limits"' "$cfg" || hard_error "$cfg loads mod_limits"
    if [ -z "${E2E_USERS_DONE[$dom]:-}" ]; then
        for ((i = 1; i <= E2E_PAIRS; i++)); do
            peer_register "$dom" "$user$i" "$E2E_PW"
        done
        E2E_USERS_DONE[$dom]=1
    fi
    peer_start "$dom"
}

# The Prosody process itself (setsid execs it, so normally the group
# leader; else the Lua process of its group).
e2e_prosody_pid()
{
    local pid=${PEER_PID[$1]} p
    case $(cat "/proc/$pid/comm" 2>/dev/null) in
    lua*)
        printf '%s' "$pid"
        return
        ;;
    esac
    for p in $(pgrep -g "$pid"); do
        case $(cat "/proc/$p/comm" 2>/dev/null) in
        lua*)
            printf '%s' "$p"
            return
            ;;
        esac
    done
    fail "no Lua process in Prosody $1's process group $pid"
}

e2e_up()
{
    local topo=$1
    e2e_dns "$topo"
    e2e_prosody "$GW_A" "$GW_A_IP" "$topo" s \
        "fedgate.$GW_A:$FG_SECRET_GW $GW_B:$FG_SECRET_B"
    e2e_prosody "$GW_B" "$GW_B_IP" "$topo" r \
        "fedgate.$GW_B:$FG_SECRET_GW $GW_A:$GW_SECRET_A"
    if [ "$topo" = gw ]; then
        # gw-lib.sh's gw_fedgates_start, at log level info.
        s2s_gw_start ga level=info "peer=$GW_B:any"
        s2s_gw_start gb domain="$GW_B" home="$GW_B_IP" secret="$GW_SECRET_A" \
            listen="$GW_GB_IP:5269" cert=gwb level=info "peer=$GW_A:any"
    fi
    assert_loopback_only
}

e2e_down()
{
    if [ "$1" = gw ]; then
        fedgate_alive ga || fail "fedgate A died during the run"
        fedgate_alive gb || fail "fedgate B died during the run"
        fedgate_stop ga
        fedgate_stop gb
    fi
    peer_stop "$GW_A"
    peer_stop "$GW_B"
}

# ---- one run -------------------------------------------------------------------

# e2e_run gw|s2s ROUND: one measured run; its numbers go into R.
e2e_run()
{
    local topo=$1 round=$2 out=$FG_TMP/client-$1-$2 pids=() rc line k v
    local name cpu
    e2e_up "$topo"
    pids+=(--pid "prosody_a=$(e2e_prosody_pid "$GW_A")")
    if [ "$topo" = gw ]; then
        pids+=(--pid "fedgate_a=$(fedgate_pid ga)" --pid "fedgate_b=$(fedgate_pid gb)")
    fi
    pids+=(--pid "prosody_b=$(e2e_prosody_pid "$GW_B")")
    note "run $round/$E2E_ROUNDS $topo: $E2E_PAIRS pairs x $E2E_MESSAGES messages"
    # shellcheck disable=SC2086 # E2E_CLIENT_ARGS: words, by design
    "$E2E_CLIENT" --a-host "$GW_A_IP" --b-host "$GW_B_IP" --port "$FG_C2S_PORT" \
        --a-domain "$GW_A" --b-domain "$GW_B" --cafile "$FG_CAFILE" \
        --password "$E2E_PW" --pairs "$E2E_PAIRS" --messages "$E2E_MESSAGES" \
        --window "$E2E_WINDOW" --body "$E2E_BODY" "${pids[@]}" ${E2E_CLIENT_ARGS:-} \
        >"$out.out" 2>"$out.err" </dev/null &
    local cpid=$!
    FG_PIDS+=("$cpid")
    wait "$cpid"
    rc=$?
    sed 's/^/    | /' "$out.err" "$out.out" >&2
    fg_log_add "$out.err"
    [ "$rc" = 0 ] || fail "e2e-client exited $rc in run $round ($topo)"
    line=$(grep '^e2e result ' "$out.out") || fail "no result line from e2e-client"
    for k in rate missing duplicated bounced seconds; do
        v=$(sed -nE "s/.* $k=([0-9.]+).*/\\1/p" <<<"$line")
        [ -n "$v" ] || fail "no $k in: $line"
        R[$topo.$k]+="$v "
    done
    while read -r line; do
        name=$(sed -nE 's/.* name=([a-z_]+) .*/\1/p' <<<"$line")
        cpu=$(sed -nE 's/.* us_per_msg=([0-9.]+|NA).*/\1/p' <<<"$line")
        [ "$cpu" != NA ] || fail "no CPU time for $name (process gone?)"
        R[$topo.cpu_$name]+="$cpu "
        # Diagnostics for the notes: read(2)/write(2) calls per message.
        R[$topo.io_$name]+="$(sed -nE 's/.* reads_per_msg=([0-9.]+) writes_per_msg=([0-9.]+).*/\1\/\2/p' <<<"$line") "
    done < <(grep '^e2e cpu ' "$out.out")
    e2e_down "$topo"
}

# ---- figures ---------------------------------------------------------------------

# median V...: the middle value (the mean of the two middle ones).
median()
{
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) { print "NA"; exit }
              if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

sum()
{
    printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# fmt VALUE DECIMALS
fmt()
{
    awk -v v="$1" -v d="$2" 'BEGIN { if (v == "NA") print v; else printf "%.*f\n", d, v }'
}

figure()
{
    printf 'FIGURE %s %s %s %s\n' "$1" "$2" "$3" "$4"
}

# med TOPO KEY: median over the rounds (NA when never measured).
med()
{
    local vals=${R[$1.$2]:-}
    # shellcheck disable=SC2086 # one word per value
    if [ -z "$vals" ]; then echo NA; else median $vals; fi
}

e2e_figures()
{
    local gw s2s ratio k label total_gw total_s2s missing dup bounced p verdict who
    local what="$E2E_PAIRS pairs x $E2E_MESSAGES msgs, window $E2E_WINDOW, median of $E2E_ROUNDS"
    gw=$(med gw rate)
    s2s=$(med s2s rate)
    ratio=NA
    if [ "$gw" != NA ] && [ "$s2s" != NA ]; then
        ratio=$(awk -v a="$gw" -v b="$s2s" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
    fi
    figure e2e_gateway_rate "$(fmt "$gw" 0)" msg/s \
        "end to end via Prosody-fedgate=fedgate-Prosody ($what)"
    figure e2e_prosody_s2s_rate "$(fmt "$s2s" 0)" msg/s \
        "end to end via Prosody=Prosody own s2s, TLS ($what)"
    figure e2e_ratio "$ratio" x "gateway rate / Prosody s2s rate (target >= 1.1)"
    # shellcheck disable=SC2086
    missing=$(sum ${R[gw.missing]:-} ${R[s2s.missing]:-})
    # shellcheck disable=SC2086
    dup=$(sum ${R[gw.duplicated]:-} ${R[s2s.duplicated]:-})
    # shellcheck disable=SC2086
    bounced=$(sum ${R[gw.bounced]:-} ${R[s2s.bounced]:-})
    figure e2e_missing "$missing" msgs "lost over all runs, both topologies (must be 0; $bounced bounced)"
    figure e2e_duplicated "$dup" msgs "delivered twice over all runs, both topologies (must be 0)"
    for k in prosody_a:gw fedgate_a:gw fedgate_b:gw prosody_b:gw \
        prosody_a:s2s prosody_b:s2s client:gw client:s2s; do
        p=${k%%:*}
        who=$p
        case $k in
        client:*)
            label=e2e_cpu_clients_${k#*:}
            who="the $((2 * E2E_PAIRS)) clients (one process)"
            ;;
        *) label=e2e_cpu_${p}_${k#*:} ;;
        esac
        figure "$label" "$(fmt "$(med "${k#*:}" "cpu_$p")" 1)" us/msg \
            "CPU per message of $who in the ${k#*:} topology (/proc utime+stime)"
    done
    total_gw=$(awk -v a="$(med gw cpu_prosody_a)" -v b="$(med gw cpu_fedgate_a)" \
        -v c="$(med gw cpu_fedgate_b)" -v d="$(med gw cpu_prosody_b)" \
        'BEGIN { if (a == "NA" || b == "NA" || c == "NA" || d == "NA") print "NA"; else printf "%.1f", a + b + c + d }')
    total_s2s=$(awk -v a="$(med s2s cpu_prosody_a)" -v b="$(med s2s cpu_prosody_b)" \
        'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.1f", a + b }')
    figure e2e_cpu_total_gw "$total_gw" us/msg "CPU per message, both Prosodys and both fedgates"
    figure e2e_cpu_total_s2s "$total_s2s" us/msg "CPU per message, both Prosodys (own s2s)"
    # On a machine whose cores are all busy the rates follow the CPU spent
    # per message; this ratio is far less noisy than the rates.
    figure e2e_cpu_ratio "$(awk -v g="$total_gw" -v s="$total_s2s" \
        'BEGIN { if (g == "NA" || s == "NA" || g <= 0) print "NA"; else printf "%.3f", s / g }')" x \
        "server CPU per message, Prosody s2s path / gateway path (above 1: the gateway path is cheaper)"
    verdict=missed
    if [ "$ratio" != NA ] && awk -v r="$ratio" 'BEGIN { exit !(r >= 1.1) }'; then
        verdict=met
    fi
    printf 'TARGET e2e_ratio %s gateway >= 1.1x Prosody own s2s (measured %sx)\n' \
        "$verdict" "$ratio"
    verdict=met
    [ "$missing" = 0 ] && [ "$dup" = 0 ] || verdict=missed
    printf 'TARGET e2e_accounted %s every message delivered exactly once (%s missing, %s duplicated)\n' \
        "$verdict" "$missing" "$dup"
}

# ---- main ------------------------------------------------------------------------

gw_init_vars
fg_make_certs
fg_make_cert gwb "DNS:$GW_B" "DNS:fedgate.$GW_B"
note "figure 1: $E2E_PAIRS pairs x $E2E_MESSAGES messages, window $E2E_WINDOW," \
    "body $E2E_BODY bytes, $E2E_ROUNDS round(s) of: $E2E_TOPOLOGIES"
for ((round = 1; round <= E2E_ROUNDS; round++)); do
    for topo in $E2E_TOPOLOGIES; do
        case $topo in
        gw | s2s) e2e_run "$topo" "$round" ;;
        *) hard_error "E2E_TOPOLOGIES: unknown topology $topo (gw, s2s)" ;;
        esac
    done
done
for topo in $E2E_TOPOLOGIES; do
    note "$topo: rates ${R[$topo.rate]}msg/s; windows ${R[$topo.seconds]}s"
    for k in prosody_a fedgate_a fedgate_b prosody_b client; do
        [ -n "${R[$topo.cpu_$k]:-}" ] || continue
        note "$topo: $k: CPU ${R[$topo.cpu_$k]}us/msg;" \
            "read(2)/write(2) calls per msg ${R[$topo.io_$k]:-?}(recv/send not counted)"
    done
done
e2e_figures
dns_stop
fg_finish
