#!/bin/bash
# relay.sh: fedgate's own relay benchmarks (issue 6, figures 2-5), with no
# home server in the way.
#
#   s2s-load (b.test, real s2s: TLS + SASL EXTERNAL or dialback)
#       ══ TLS ══> fedgate A (a.test) ── XEP-0114 ──> comp-sink
#
# Figures, each from a fresh fedgate (127.0.N.2:5269) and sink (127.0.N.1):
#   relay     BENCH_RELAY_STANZAS chat messages (~220 bytes) on one s2s
#             stream as fast as fedgate takes them: messages/s, fedgate's
#             CPU µs per message (/proc/PID/stat utime+stime from the first
#             write to the last arrival), and expat's raw parse rate of the
#             same bytes (bench/expat-raw) as the limit. The ratio is
#             expat's CPU per message over fedgate's (fedgate does TLS,
#             parse, tree, anti-spoofing, routing and serialisation).
#   relay_out the reverse: comp-sink sends BENCH_RELAY_STANZAS messages on
#             the b.test component link; fedgate routes them over its s2s
#             route (STARTTLS, SASL EXTERNAL) to bench/s2s-sink, which
#             plays b.test's receiving server (127.0.N.3:5269).
#   Both relay runs keep at most BENCH_RELAY_WINDOW messages in flight
#   (the receiver publishes its count, the sender waits): fedgate reads
#   one side as fast as it can and does not push back when the other side
#   is slower, so an open-loop sender overruns its bounded queues and the
#   excess bounces (resource-constraint). The figures are the sustained
#   rate without loss.
#   latency   BENCH_LAT_RATE messages/s for BENCH_LAT_SECONDS: p50/p99 of
#             (sink read - generator write), CLOCK_MONOTONIC on both sides;
#             the first second is warm-up and not counted.
#   memory    VmRSS of fedgate before and after 1,000 and then 10,000 idle
#             authenticated TLS s2s sessions (SASL EXTERNAL), per session.
#   handshake sessions authenticated per second with BENCH_HS_CONCURRENCY
#             handshakes in flight for BENCH_HS_SECONDS: SASL EXTERNAL
#             (client certificate), then dialback, where fedgate A checks
#             every key with a second fedgate B (127.0.N.3), the
#             authoritative server of b.test, whose dialback secret the
#             generator knows (XEP-0185 keys).
#
# Output: progress on stderr; on stdout one line per figure,
#   FIGURE <key> <value> <unit> <description>
# and one per target of the issue,
#   TARGET <key> <met|missed> <target>
# Run as root from a built tree (make && make bench):
#   sudo ./bench/relay.sh
# Environment: FEDGATE (./fedgate), BUILD_DIR (.), KEEP_TMP=1, and
#   BENCH_ONLY           phases (relay relay_out latency memory handshake)
#   BENCH_RELAY_STANZAS  messages per relay run (300000)
#   BENCH_RELAY_RUNS     relay runs per direction, the median reported (3)
#   BENCH_RELAY_BATCH    bytes per sender write (16384)
#   BENCH_RELAY_WINDOW   messages at most in flight (5000: less than
#                        fedgate's own buffering, about 1 MB plus 1000
#                        queued stanzas per stream; 0: no window)
#   BENCH_RAW_MS         CPU ms of expat-raw (2000)
#   BENCH_LAT_RATE, BENCH_LAT_SECONDS   latency run (10000/s, 10 s)
#   BENCH_LAT_DUMP=FILE  every latency sample with its arrival (diagnosis)
#   BENCH_MEM_SESSIONS   idle session counts ("1000 10000")
#   BENCH_HS_SECONDS, BENCH_HS_CONCURRENCY   handshake runs (10 s, 8)
#   BENCH_HS_WARMUP      1: one dialback first, so the route to B is up;
#                        0: concurrent dialbacks on a cold route
#   BENCH_LOG_LEVEL      fedgate's log level (info, its default)
#   BENCH_PIN=1          fedgate on CPU 1, the tools on CPU 0
# Every process it starts, it stops. About 75 s on 2 cores.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top_srcdir=$(cd "$here/.." && pwd)
BUILD_DIR=$(cd "${BUILD_DIR:-.}" && pwd)
top_builddir=$BUILD_DIR
FEDGATE=${FEDGATE:-./fedgate}
case $FEDGATE in
/*) ;;
*) FEDGATE=$PWD/$FEDGATE ;;
esac
# lib.sh's fg_init insists on an xmpp-probe binary (a check program); the
# bench talks to nothing through it.
PROBE=${PROBE:-/bin/true}
BENCH_BIN=$BUILD_DIR/bench

# shellcheck source=test/integration/lib.sh
. "$top_srcdir/test/integration/lib.sh"

ONLY=${BENCH_ONLY:-relay relay_out latency memory handshake}
RELAY_STANZAS=${BENCH_RELAY_STANZAS:-300000}
RELAY_BATCH=${BENCH_RELAY_BATCH:-16384}
RELAY_WINDOW=${BENCH_RELAY_WINDOW:-5000}
RELAY_RUNS=${BENCH_RELAY_RUNS:-3}
RAW_MS=${BENCH_RAW_MS:-2000}
LAT_RATE=${BENCH_LAT_RATE:-10000}
LAT_SECONDS=${BENCH_LAT_SECONDS:-10}
MEM_SESSIONS=${BENCH_MEM_SESSIONS:-1000 10000}
HS_SECONDS=${BENCH_HS_SECONDS:-10}
HS_CONC=${BENCH_HS_CONCURRENCY:-8}
LOG_LEVEL=${BENCH_LOG_LEVEL:-info}
SINK_SECRET=bench-component-secret
DB_SECRET=bench-dialback-secret-b
TICKS=$(getconf CLK_TCK)

for t in s2s-load comp-sink expat-raw; do
    [ -x "$BENCH_BIN/$t" ] || {
        echo "relay.sh: $BENCH_BIN/$t not built (run make bench)" >&2
        exit 99
    }
done

fg_init relay-bench "${BENCH_TIMEOUT:-900}"
fedgate_require
fedgate_has_s2s || fail "$FEDGATE has no s2s engine"
if ldd "$FEDGATE" 2>/dev/null | grep -q 'libasan'; then
    BUILD_NOTE=" [ASan build: not representative]"
    note "WARNING: $FEDGATE is built with sanitizers; its figures are not representative"
else
    BUILD_NOTE=""
fi
B_IP=127.0.$FG_NET.3
SRC_BASE=127.0.$FG_NET.10
# 10,000 sessions and the fds fedgate and the generator need for them:
# 65536, or the hard limit where that is lower (and cannot be raised).
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
ulimit -n "$nofile" || fail "cannot raise the open file limit to $nofile"
fg_make_certs
# The generator's certificate (b.test, client and server use), also
# fedgate B's.
fg_make_cert gwb "DNS:b.test" "DNS:fedgate.b.test"
CA=$FG_TMP/pki/ca.crt
note "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

pin_fedgate=""
pin_tools=""
if [ "${BENCH_PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    pin_fedgate="taskset -c 1"
    pin_tools="taskset -c 0"
fi

# ---- helpers ---------------------------------------------------------------

figure()
{
    printf 'FIGURE %s %s %s %s\n' "$1" "$2" "$3" "$4"
    note "FIGURE $1 = $2 $3"
}

target()
{
    printf 'TARGET %s %s %s\n' "$1" "$2" "$3"
    note "TARGET $1 $2 ($3)"
}

# kv FILE KEY: the value of KEY=... in a tool's output.
kv()
{
    sed -n "s/^$2=//p" "$1" | tail -1
}

# calc EXPR: floating-point arithmetic (awk), printed with %.PREC.
calc()
{
    awk "BEGIN { printf \"%.${2:-1}f\", ($1) }"
}

# bench_config FILE NAME: fedgate config for A (a.test) or B (b.test).
bench_config()
{
    local file=$1 who=$2 dom peer peer_ip listen cert extra="" dir
    dir=$(dirname "$file")
    if [ "$who" = a ]; then
        dom=a.test peer=b.test peer_ip=$B_IP listen=$FG_S2S_IP:5269 cert=gw
    else
        dom=b.test peer=a.test peer_ip=$FG_S2S_IP listen=$B_IP:5269 cert=gwb
        extra="dialback_secret = \"$DB_SECRET\";"
    fi
    mkdir -p "$dir"
    cat >"$file" <<EOT
# Generated by bench/relay.sh.
service_jid = "fedgate.$dom";
domains = [ "$dom" ];
upstream = {
    host = "$FG_IP";
    port = $FG_COMP_PORT;
    secret = "$SINK_SECRET";
    service_secret = "$SINK_SECRET";
    backoff_initial_ms = 100;
    backoff_max_ms = 1000;
};
peers = (
    { domain = "$peer"; auth = "any"; host = "$peer_ip"; port = 5269; }
);
log = { level = "$LOG_LEVEL"; };
state_db = "$dir/state.db";
s2s = {
    listen = [ "$listen" ];
    $extra
};
tls = {
    certificate = "$FG_TMP/pki/$cert.crt";
    key = "$FG_TMP/pki/$cert.key";
    ca_file = "$CA";
};
EOT
}

# gw_start NAME a|b [nowait]: a fresh fedgate; unless nowait, its home
# links up (on the sink, which must be listening then).
gw_start()
{
    local name=$1 who=$2 conf=$FG_TMP/$1/fedgate.conf
    bench_config "$conf" "$who"
    if [ -n "$pin_fedgate" ]; then
        FEDGATE_REAL=$FEDGATE
        FEDGATE="$FG_TMP/fedgate-pinned"
        printf '#!/bin/sh\nexec %s %s "$@"\n' "$pin_fedgate" "$FEDGATE_REAL" >"$FEDGATE"
        chmod +x "$FEDGATE"
        fedgate_start "$name" "$conf"
        FEDGATE=$FEDGATE_REAL
    else
        fedgate_start "$name" "$conf"
    fi
    [ "${3:-}" = nowait ] || gw_wait_ready "$name" "$who"
}

gw_wait_ready()
{
    if [ "$2" = a ]; then
        FG_STREAM_DOMAINS=(fedgate.a.test b.test)
    else
        FG_STREAM_DOMAINS=(fedgate.b.test a.test)
    fi
    fedgate_wait_ready "$1" 15
}

# forget_pid PID: a process we stopped and reaped is no longer ours; its
# number may be reused, so the exit trap must not signal it.
forget_pid()
{
    local i
    for i in "${!FG_PIDS[@]}"; do
        [ "${FG_PIDS[i]}" = "$1" ] && unset 'FG_PIDS[i]'
    done
    FG_PIDS=("${FG_PIDS[@]}")
}

# gw_stop NAME: lib.sh's clean stop (exit 0 on SIGTERM within 5 s).
gw_stop()
{
    local pid
    pid=$(fedgate_pid "$1")
    fedgate_stop "$1"
    [ -n "$pid" ] && forget_pid "$pid"
}

# sink_start NAME [comp-sink options]: SINK_PID; output in $FG_TMP/NAME.out.
sink_start()
{
    local name=$1
    shift
    $pin_tools "$BENCH_BIN/comp-sink" --listen "$FG_IP:$FG_COMP_PORT" \
        --secret "$SINK_SECRET" "$@" >"$FG_TMP/$name.out" \
        2>"$FG_TMP/$name.err" </dev/null &
    SINK_PID=$!
    FG_PIDS+=("$SINK_PID")
    fg_log_add "$FG_TMP/$name.err"
    wait_for_log "$FG_TMP/$name.err" 'listening' 5 ||
        fail "comp-sink $name did not start"
}

# ssink_start NAME [s2s-sink options]: b.test's receiving s2s server on
# $B_IP:5269 (the reverse direction); SSINK_PID.
ssink_start()
{
    local name=$1
    shift
    $pin_tools "$BENCH_BIN/s2s-sink" --listen "$B_IP:5269" \
        --cert "$FG_TMP/pki/gwb.crt" --key "$FG_TMP/pki/gwb.key" --ca "$CA" \
        "$@" >"$FG_TMP/$name.out" 2>"$FG_TMP/$name.err" </dev/null &
    SSINK_PID=$!
    FG_PIDS+=("$SSINK_PID")
    fg_log_add "$FG_TMP/$name.err"
    wait_for_log "$FG_TMP/$name.err" 'listening' 5 ||
        fail "s2s-sink $name did not start"
}

# gen_start NAME [s2s-load options]: GEN_PID; output in $FG_TMP/NAME.out.
gen_start()
{
    local name=$1
    shift
    $pin_tools "$BENCH_BIN/s2s-load" --connect "$FG_S2S_IP:5269" --ca "$CA" \
        --src-base "$SRC_BASE" --src-count 40 "$@" >"$FG_TMP/$name.out" \
        2>"$FG_TMP/$name.err" </dev/null &
    GEN_PID=$!
    FG_PIDS+=("$GEN_PID")
    fg_log_add "$FG_TMP/$name.err"
}

SASL_ARGS=(--auth sasl --cert "$FG_TMP/pki/gwb.crt" --key "$FG_TMP/pki/gwb.key")

# stop_pid PID: SIGTERM and wait.
stop_pid()
{
    [ -n "${1:-}" ] || return 0
    fg_terminate "$1" 10
    wait "$1" 2>/dev/null
    forget_pid "$1"
}

# established_to IP:PORT: TCP connections established to it.
established_to()
{
    ss -Htn state established "dst $1" 2>/dev/null | wc -l
}

# wait_closed IP:PORT SECS: until no connection to it is left.
wait_closed()
{
    local end=$(($(date +%s) + $2))
    while [ "$(established_to "$1")" -gt 0 ] && [ "$(date +%s)" -lt "$end" ]; do
        sleep 0.2
    done
}

rss_kib()
{
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

wants()
{
    [[ " $ONLY " == *" $1 "* ]]
}

# ---- figure 2: relay rate, CPU per message, parse limit -----------------------

# relay_in_once N: one run on a fresh fedgate and sink; appends
# "cpu_us rate received missing duplicated bounces" to $FG_TMP/relay-in.runs.
relay_in_once()
{
    local n=$1 dump=()
    # The first run's bytes are expat-raw's input.
    [ "$n" = 1 ] && dump=(--dump "$FG_TMP/stream.dump")
    # The sink samples fedgate's CPU time, so fedgate comes first; its
    # links reach the sink on a reconnect (backoff 100 ms).
    gw_start "garelay$n" a nowait
    local pid
    pid=$(fedgate_pid "garelay$n")
    sink_start "sink-relay$n" --stanzas "$RELAY_STANZAS" --cpu-pid "$pid" \
        --idle-ms 5000 --publish "$FG_TMP/progress-relay$n"
    gw_wait_ready "garelay$n" a
    gen_start "gen-relay$n" --mode blast "${SASL_ARGS[@]}" \
        --stanzas "$RELAY_STANZAS" --batch "$RELAY_BATCH" --cpu-pid "$pid" \
        --window "$RELAY_WINDOW" --window-file "$FG_TMP/progress-relay$n" \
        "${dump[@]}" --timeout 120000
    wait_for_log "$FG_TMP/sink-relay$n.out" '^done=1' 120 ||
        fail "relay: the sink did not finish (see logs)"
    local g=$FG_TMP/gen-relay$n.out k=$FG_TMP/sink-relay$n.out
    local recv missing dup t0 t1 c0 c1 bounces
    recv=$(kv "$k" received) missing=$(kv "$k" missing) dup=$(kv "$k" duplicates)
    t0=$(kv "$g" start_ns) t1=$(kv "$k" last_ns)
    c0=$(kv "$g" cpu_ticks_start) c1=$(kv "$k" cpu_ticks_end)
    bounces=$(count_log "$FG_TMP/garelay$n.log" 'queue full|not delivered')
    stop_pid "$GEN_PID"
    wait_closed "$FG_S2S_IP:5269" 10
    gw_stop "garelay$n"
    stop_pid "$SINK_PID"
    if [ -z "$recv" ] || [ "$recv" -eq 0 ]; then
        fail "relay: nothing arrived"
    fi
    local rate cpu_us
    rate=$(calc "$recv / (($t1 - $t0) / 1e9)" 0)
    cpu_us=$(calc "($c1 - $c0) * 1e6 / $TICKS / $recv" 2)
    note "relay run $n: $rate/s, $cpu_us us/stanza; $recv received, $missing missing, $dup duplicated, $bounces bounce lines in fedgate's log"
    echo "$cpu_us $rate $recv $missing $dup $bounces" >>"$FG_TMP/relay-in.runs"
}

# relay_out_once N: the same for the reverse direction ($FG_TMP/relay-out.runs).
relay_out_once()
{
    local n=$1
    gw_start "garev$n" a nowait
    local pid
    pid=$(fedgate_pid "garev$n")
    ssink_start "ssink-rev$n" --stanzas "$RELAY_STANZAS" --cpu-pid "$pid" \
        --idle-ms 5000 --publish "$FG_TMP/progress-rev$n"
    sink_start "sink-rev$n" --send "$RELAY_STANZAS" --send-link b.test \
        --batch "$RELAY_BATCH" --cpu-pid "$pid" --window "$RELAY_WINDOW" \
        --window-file "$FG_TMP/progress-rev$n"
    gw_wait_ready "garev$n" a
    # The sink's warm-up message makes fedgate open its route to b.test;
    # the run starts once that route is authenticated.
    wait_for_log "$FG_TMP/ssink-rev$n.err" 'authenticated a\.test' 20 ||
        fail "relay_out: fedgate's route to b.test did not come up"
    kill -USR1 "$SINK_PID"
    wait_for_log "$FG_TMP/ssink-rev$n.out" '^done=1' 120 ||
        fail "relay_out: the s2s sink did not finish"
    local k=$FG_TMP/ssink-rev$n.out g=$FG_TMP/sink-rev$n.out
    local recv missing dup t0 t1 c0 c1 bounces rate cpu_us
    recv=$(kv "$k" received) missing=$(kv "$k" missing) dup=$(kv "$k" duplicates)
    t0=$(kv "$g" start_ns) t1=$(kv "$k" last_ns)
    c0=$(kv "$g" cpu_ticks_start) c1=$(kv "$k" cpu_ticks_end)
    gw_stop "garev$n"
    stop_pid "$SINK_PID"
    stop_pid "$SSINK_PID"
    # Bounces come back to the sender (the component side) as errors.
    bounces=$(kv "$g" errors_received)
    if [ -z "$recv" ] || [ "$recv" -eq 0 ]; then
        fail "relay_out: nothing arrived"
    fi
    rate=$(calc "$recv / (($t1 - $t0) / 1e9)" 0)
    cpu_us=$(calc "($c1 - $c0) * 1e6 / $TICKS / $recv" 2)
    note "relay_out run $n: $rate/s, $cpu_us us/stanza; $recv received, $missing missing, $dup duplicated, $bounces bounced back"
    echo "$cpu_us $rate $recv $missing $dup ${bounces:-0}" >>"$FG_TMP/relay-out.runs"
}

# runs_summary FILE: sets MED (the run with the median CPU per stanza:
# "cpu_us rate received missing duplicated bounces"), SPREAD (min-max CPU)
# and LOST (missing + duplicated + bounced over all runs).
runs_summary()
{
    local n
    n=$(wc -l <"$1")
    MED=$(sort -n "$1" | sed -n "$(((n + 1) / 2))p")
    SPREAD="$(sort -n "$1" | head -1 | cut -d' ' -f1)-$(sort -n "$1" | tail -1 | cut -d' ' -f1)"
    LOST=$(awk '{ s += $4 + $5 + $6 } END { print s + 0 }' "$1")
}

phase_relay()
{
    local i
    note "phase relay: $RELAY_RUNS x $RELAY_STANZAS messages on one s2s stream (SASL EXTERNAL), $RELAY_BATCH-byte writes"
    : >"$FG_TMP/relay-in.runs"
    for ((i = 1; i <= RELAY_RUNS; i++)); do
        relay_in_once "$i"
    done
    runs_summary "$FG_TMP/relay-in.runs"
    local cpu_us rate recv missing dup
    read -r cpu_us rate recv missing dup _ <<<"$MED"
    [ "$LOST" = 0 ] || note "WARNING: relay: $LOST messages missing, duplicated or bounced over $RELAY_RUNS runs"
    figure relay_in_rate "$rate" stanzas/s \
        "s2s(TLS, SASL EXTERNAL, ${RELAY_BATCH}-byte writes, at most $RELAY_WINDOW in flight)->fedgate->component sink, one stream, fedgate single-threaded; the median of $RELAY_RUNS runs of $RELAY_STANZAS; $LOST missing, duplicated or bounced in all$BUILD_NOTE"
    figure relay_in_cpu_us "$cpu_us" us/stanza \
        "fedgate CPU (utime+stime) per relayed ~220-byte message: TLS decrypt, parse, tree, checks, serialise, write; median of $RELAY_RUNS runs (range $SPREAD)$BUILD_NOTE"
    "$BENCH_BIN/expat-raw" --file "$FG_TMP/stream.dump" --ms "$RAW_MS" \
        >"$FG_TMP/raw.out" 2>"$FG_TMP/raw.err" ||
        fail "expat-raw failed: $(cat "$FG_TMP/raw.err")"
    local raw_rate raw_ns ratio
    raw_rate=$(kv "$FG_TMP/raw.out" rate)
    raw_ns=$(kv "$FG_TMP/raw.out" ns_per_stanza)
    ratio=$(calc "100 * $raw_ns / ($cpu_us * 1000)" 1)
    figure expat_raw_rate "$raw_rate" stanzas/s \
        "expat alone on the same byte stream (16 KiB chunks, no-op element handlers), per CPU second: $raw_ns ns/stanza"
    figure relay_parse_ratio "$ratio" % \
        "fedgate's relay rate per CPU second as a share of expat's raw parse rate (expat ns/stanza / fedgate ns/stanza)"
    if [ "$(calc "$cpu_us <= 3" 0)" = 1 ]; then
        target relay_in_cpu_us met "<= 3 us CPU per stanza"
    else
        target relay_in_cpu_us missed "<= 3 us CPU per stanza"
    fi
    if [ "$(calc "$ratio >= 50" 0)" = 1 ]; then
        target relay_parse_ratio met ">= 50% of expat's raw parse rate"
    else
        target relay_parse_ratio missed ">= 50% of expat's raw parse rate"
    fi
}

# ---- figure 2, reverse: component -> fedgate -> s2s -----------------------------

phase_relay_out()
{
    local i
    note "phase relay_out: $RELAY_RUNS x $RELAY_STANZAS messages from the component side to one s2s route (SASL EXTERNAL), $RELAY_BATCH-byte writes"
    : >"$FG_TMP/relay-out.runs"
    for ((i = 1; i <= RELAY_RUNS; i++)); do
        relay_out_once "$i"
    done
    runs_summary "$FG_TMP/relay-out.runs"
    local cpu_us rate
    read -r cpu_us rate _ <<<"$MED"
    [ "$LOST" = 0 ] || note "WARNING: relay_out: $LOST messages missing, duplicated or bounced over $RELAY_RUNS runs"
    figure relay_out_rate "$rate" stanzas/s \
        "component source (${RELAY_BATCH}-byte writes, at most $RELAY_WINDOW in flight)->fedgate->s2s(TLS, SASL EXTERNAL) receiver, one route; the median of $RELAY_RUNS runs of $RELAY_STANZAS; $LOST missing, duplicated or bounced in all$BUILD_NOTE"
    figure relay_out_cpu_us "$cpu_us" us/stanza \
        "fedgate CPU per message from the home-server side to a peer: parse, tree, policy, route, serialise, TLS encrypt, write; median of $RELAY_RUNS runs (range $SPREAD)$BUILD_NOTE"
}

# ---- figure 3: latency at a fixed rate -------------------------------------------

phase_latency()
{
    local total=$((LAT_RATE * LAT_SECONDS))
    note "phase latency: $LAT_RATE messages/s for $LAT_SECONDS s"
    sink_start sink-lat --stanzas "$total" --warmup "$LAT_RATE" --idle-ms 5000 \
        ${BENCH_LAT_DUMP:+--lat-dump "$BENCH_LAT_DUMP"}
    gw_start galat a
    gen_start gen-lat --mode rate "${SASL_ARGS[@]}" --rate "$LAT_RATE" \
        --duration "$((LAT_SECONDS * 1000))" --timeout 60000
    wait_for_log "$FG_TMP/sink-lat.out" '^done=1' $((LAT_SECONDS + 60)) ||
        fail "latency: the sink did not finish"
    local k=$FG_TMP/sink-lat.out recv missing dup p50 p99 p999 mx n
    recv=$(kv "$k" received) missing=$(kv "$k" missing) dup=$(kv "$k" duplicates)
    p50=$(calc "$(kv "$k" lat_p50_ns) / 1000" 0)
    p99=$(calc "$(kv "$k" lat_p99_ns) / 1000" 0)
    p999=$(calc "$(kv "$k" lat_p999_ns) / 1000" 0)
    mx=$(calc "$(kv "$k" lat_max_ns) / 1000" 0)
    n=$(kv "$k" lat_samples)
    stop_pid "$GEN_PID"
    wait_closed "$FG_S2S_IP:5269" 10
    gw_stop galat
    stop_pid "$SINK_PID"
    note "latency: $recv received, $missing missing, $dup duplicated; p99.9 $p999 us, max $mx us over $n samples"
    figure latency_p50_us "$p50" us \
        "generator TLS write -> sink read through fedgate at $LAT_RATE stanzas/s, one s2s stream, $n samples after 1 s warm-up"
    figure latency_p99_us "$p99" us \
        "as latency_p50_us (p99.9 $p999 us, max $mx us); $missing missing, $dup duplicated$BUILD_NOTE"
    if [ "$(calc "$p99 < 1000" 0)" = 1 ]; then
        target latency_p99_us met "p99 < 1 ms at $LAT_RATE stanzas/s"
    else
        target latency_p99_us missed "p99 < 1 ms at $LAT_RATE stanzas/s"
    fi
}

# ---- figure 4: memory per idle authenticated session ------------------------------

phase_memory()
{
    note "phase memory: idle authenticated TLS sessions: $MEM_SESSIONS"
    sink_start sink-mem
    gw_start gamem a
    local pid base total=0 n i=0 rss per gens=()
    pid=$(fedgate_pid gamem)
    sleep 1
    base=$(rss_kib "$pid")
    note "memory: fedgate VmRSS $base KiB with no session"
    for n in $MEM_SESSIONS; do
        i=$((i + 1))
        gen_start "gen-mem$i" --mode idle "${SASL_ARGS[@]}" \
            --sessions "$((n - total))" --concurrency 32 --timeout 120000
        gens+=("$GEN_PID")
        wait_for_log "$FG_TMP/gen-mem$i.out" '^ready ' 150 ||
            fail "memory: $((n - total)) sessions did not all authenticate"
        total=$n
        sleep 1
        rss=$(rss_kib "$pid")
        per=$(calc "($rss - $base) / $n" 1)
        note "memory: $n sessions: VmRSS $rss KiB (+$((rss - base)) KiB), $per KiB per session; fedgate counts $(count_log "$FG_TMP/gamem.log" 'authenticated b\.test -> a\.test') authenticated"
        local key
        if [ $((n % 1000)) = 0 ]; then
            key=mem_idle_session_$((n / 1000))k_kib
        else
            key=mem_idle_session_${n}_kib
        fi
        figure "$key" "$per" KiB/session \
            "fedgate VmRSS growth per idle authenticated TLS s2s session (SASL EXTERNAL) at $n sessions ($base KiB -> $rss KiB)$BUILD_NOTE"
        if [ "$(calc "$per <= 32" 0)" = 1 ]; then
            target "$key" met "<= 32 KiB per idle session"
        else
            target "$key" missed "<= 32 KiB per idle session"
        fi
    done
    for ((i = ${#gens[@]} - 1; i >= 0; i--)); do
        stop_pid "${gens[i]}"
    done
    wait_closed "$FG_S2S_IP:5269" 30
    gw_stop gamem
    stop_pid "$SINK_PID"
}

# ---- figure 5: handshake rate -----------------------------------------------------------

phase_handshake()
{
    note "phase handshake: $HS_CONC in flight for $HS_SECONDS s each"
    sink_start sink-hs
    gw_start gb b
    gw_start gahs a
    local auth out rate p50 fails
    for auth in sasl dialback; do
        out=$FG_TMP/gen-hs-$auth.out
        if [ "$auth" = sasl ]; then
            gen_start "gen-hs-$auth" --mode handshake "${SASL_ARGS[@]}" \
                --concurrency "$HS_CONC" --duration "$((HS_SECONDS * 1000))"
        else
            # Warm-up, one at a time: the first dialback opens fedgate A's
            # route to B, which then carries every db:verify (the steady
            # state). It also keeps concurrent db:results away from a route
            # that is still connecting (see the report on s2s.c
            # route_send_verifies).
            if [ "${BENCH_HS_WARMUP:-1}" = 1 ]; then
                gen_start gen-hs-warm --mode handshake --auth dialback \
                    --secret "$DB_SECRET" --concurrency 1 --duration 1000
                wait "$GEN_PID" || fail "handshake dialback warm-up failed"
                forget_pid "$GEN_PID"
            fi
            gen_start "gen-hs-$auth" --mode handshake --auth dialback \
                --secret "$DB_SECRET" --concurrency "$HS_CONC" \
                --duration "$((HS_SECONDS * 1000))"
        fi
        wait "$GEN_PID" || fail "handshake $auth: s2s-load failed"
        forget_pid "$GEN_PID"
        fedgate_alive gahs || fail "handshake $auth: fedgate A died (see its log)"
        fedgate_alive gb || fail "handshake $auth: fedgate B died (see its log)"
        [ "$(kv "$out" handshakes_in_window)" -gt 0 ] ||
            fail "handshake $auth: no session authenticated"
        rate=$(calc "$(kv "$out" handshakes_in_window) / ($(kv "$out" window_ns) / 1e9)" 0)
        p50=$(calc "$(kv "$out" handshake_p50_ns) / 1e6" 2)
        fails=$(kv "$out" failures)
        note "handshake $auth: $(kv "$out" handshakes) sessions, $fails failed, p50 $p50 ms"
        if [ "$auth" = sasl ]; then
            figure handshake_rate_sasl "$rate" sessions/s \
                "TCP+STARTTLS+TLS (P-256 certificates, full handshakes)+SASL EXTERNAL to authenticated, $HS_CONC concurrent; p50 $p50 ms each; $fails failed$BUILD_NOTE"
        else
            figure handshake_rate_dialback "$rate" sessions/s \
                "TCP+STARTTLS+TLS (no client certificate)+XEP-0220 dialback, each key verified with the authoritative fedgate over the open route, $HS_CONC concurrent; p50 $p50 ms each; $fails failed$BUILD_NOTE"
        fi
        wait_closed "$FG_S2S_IP:5269" 10
    done
    gw_stop gahs
    gw_stop gb
    stop_pid "$SINK_PID"
}

wants relay && phase_relay
wants relay_out && phase_relay_out
wants latency && phase_latency
wants memory && phase_memory
wants handshake && phase_handshake
fg_finish
