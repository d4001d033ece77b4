# shellcheck shell=bash
#
# lib.sh: shared harness for fedgate's integration tests (sourced, bash).
#
# A test calls fg_init NAME first. That gives it:
#   - a private directory $FG_TMP under ${TMPDIR:-/tmp}, removed at exit
#     unless KEEP_TMP=1;
#   - its own loopback network 127.0.N.0/24 ($FG_NET) with the home server
#     on $FG_IP (127.0.N.1), so tests run in parallel without port clashes;
#   - a trap that stops every process the test started (by the process id
#     or process-group id recorded at start, never by name), also on
#     failure, on a signal and on the overall watchdog timeout;
#   - fail/skip/note helpers; fail prints the tail of every log registered
#     with fg_log_add.
#
# Address scheme (lock-free): N starts at a hash of the test name (so a
# given test usually lands on the same network, which helps reading logs)
# and is claimed with an atomic mkdir of ${TMPDIR:-/tmp}/fedgate-it-nets/N
# holding the owner's pid. A claim whose owner is dead is stale and is taken
# over; a network where anything already listens on 127.0.N.1 or .2 is
# skipped. Either way the test moves on to N+1; nothing waits on a lock.
# N is kept in 20..239, away from 127.0.0.x and Debian's 127.0.1.1. The
# home server uses 127.0.N.1 (c2s $FG_C2S_PORT, components 5347, ejabberd's Erlang
# distribution 47101, no epmd); fedgate's s2s listener 127.0.N.2:5269.
#
# Servers (run as private instances; /etc is never read or touched):
#   prosody_setup / prosody_start / prosody_stop / prosody_restart /
#   prosody_register USER PW              (Prosody 0.12, s2s disabled)
#   ejabberd_setup / ejabberd_start / ejabberd_stop / ejabberd_restart /
#   ejabberd_register USER PW             (ejabberd 23.01, s2s denied)
# Both host a.test with components fedgate.a.test, b.test and
# conference.b.test (secrets $FG_SECRET_GW, $FG_SECRET_B, $FG_SECRET_MUC),
# c2s on $FG_IP:$FG_C2S_PORT (TLS required) with a certificate from a CA made at
# test time (DNS SANs only: ejabberd 23.01 fails on id-on-xmppAddr), and
# the component listener on $FG_IP:5347. PROSODY_COMPONENTS=0 and
# EJ_COMPONENTS=0 leave the component set-up to the test (cli.sh feeds in
# fedgate's own snippets; EJ_EXTRA is top-level YAML appended to
# ejabberd.yml, as PROSODY_EXTRA is Lua appended to prosody.cfg.lua).
# Readiness: Prosody when both ports listen
# (about 60 ms); ejabberd at its "is started in the node" log line (its
# open port is not a readiness signal). Both run under setsid so stopping
# the process group stops everything they spawned; ejabberd runs as user
# ejabberd via runuser (not its script's su, which would start a session
# of its own).
#
# fedgate:
#   fedgate_config FILE [KEY=VALUE...]  writes a config (see below)
#   fedgate_start NAME CONF [NFDS]      starts it, log in $FG_TMP/NAME.log;
#                                       NFDS > 0 first opens that many fds
#                                       (ulimit -n 4096, fds 3..NFDS) so
#                                       its own sockets get numbers above
#                                       1023
#   fedgate_wait_ready NAME TIMEOUT [FROM_BYTE]
#                                       every stream logged "stream ready"
#   fedgate_stop NAME                   SIGTERM; fails the test unless it
#                                       exits 0 within 5 s
#
# Probing: probe ARGS... runs xmpp-probe as $FG_USER@a.test against $FG_IP
# with the test CA; output goes to $FG_TMP/probe.out and stderr. probe_ok,
# probe_expect RC, probe_out_has REGEX and probe_until SECS build on it.
#
# Waiting: wait_for_log FILE REGEX TIMEOUT [FROM_BYTE], log_mark FILE,
# count_log FILE REGEX [FROM_BYTE], wait_for_port IP PORT TIMEOUT.
#
# fg_home_scenario prosody|ejabberd is the whole of prosody.sh and
# ejabberd.sh: one scenario, with the two servers' different answers in
# fg_server_facts.
#
# s2s (peering) tests: a private DNS server (dns_*), per-domain test
# certificates (fg_make_cert), unmodified Prosody/ejabberd peers with s2s
# on (prosody_peer_setup, ejabberd_peer_setup, peer_*), a fedgate config
# with its s2s side on (fedgate_s2s_config) and case helpers (s2s_*): see
# the section "s2s" below. selftest-peers.sh proves that part without
# fedgate (run by hand).
#
# Environment: FEDGATE, PROBE (binaries; default from top_builddir),
# FEDGATE_WRAPPER (words run in front of fedgate, which they must exec:
# `make check-valgrind` sets valgrind, hard-load.sh prlimit),
# KEEP_TMP=1, FG_TEST_TIMEOUT (watchdog, default 115 s), TMPDIR,
# FG_C2S_PORT (default 15222, which sidesteps a stray system-wide
# XMPP server on 0.0.0.0:5222, which fg_init reports as a hard error).
#
# Exit codes follow automake: 0 pass, 1 fail, 77 skip (only when a server
# binary is really missing), 99 hard error in the harness itself.

FG_DOMAIN=a.test
FG_USER=alice
FG_PASSWORD=alice-pw-1
FG_SECRET_GW=secret-gw
FG_SECRET_B=secret-b
FG_SECRET_MUC=secret-b-muc
FG_C2S_PORT=${FG_C2S_PORT:-15222}
FG_COMP_PORT=5347
FG_EJ_DIST_PORT=47101

FG_PGIDS=()    # process groups we created (setsid), stopped at exit
FG_PIDS=()     # single processes we started, stopped at exit
FG_LOGS=()     # logs shown on failure
FG_CLAIM=""    # network claim directory
FG_WATCHDOG=""
FG_DONE=0

note()
{
    printf '%s [%s] %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" \
        "${FG_NAME:-test}" "$*" >&2
}

fg_log_add()
{
    FG_LOGS+=("$1")
}

fg_show_logs()
{
    local f
    for f in "${FG_LOGS[@]}"; do
        [ -f "$f" ] || continue
        printf '\n----- last 40 lines of %s -----\n' "$f" >&2
        # Prosody's banner about lua-unbound says nothing about the failure.
        grep -v -e 'lua-unbound' -e '^\*\*\*' -e 'luarocks' \
            -e 'Debian/Ubuntu' -e 'Source |' -e 'Old DNS resolver' \
            -e 'More help can be found' -e 'This package can be obtained' \
            -e '^ *$' "$f" | tail -n 40 >&2
    done
    printf '\n' >&2
}

fail()
{
    note "FAIL: $*"
    fg_show_logs
    exit 1
}

skip()
{
    note "SKIP: $*"
    exit 77
}

# Hard error in the harness itself (not the code under test).
hard_error()
{
    note "ERROR: $*"
    fg_show_logs
    exit 99
}

# ---- lifecycle ----------------------------------------------------------

fg_claim_net()
{
    local base="${TMPDIR:-/tmp}/fedgate-it-nets" n start owner i
    mkdir -p "$base" 2>/dev/null
    chmod 1777 "$base" 2>/dev/null
    start=$(printf '%s' "$FG_NAME" | cksum | cut -d' ' -f1)
    start=$((start % 220 + 20))
    for ((i = 0; i < 220; i++)); do
        n=$(((start - 20 + i) % 220 + 20))
        if ! mkdir "$base/$n" 2>/dev/null; then
            owner=$(cat "$base/$n/pid" 2>/dev/null)
            if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then
                continue
            fi
            # Stale claim (owner gone): take it over, but only if we win
            # the race for the rename.
            mv "$base/$n" "$base/$n.stale.$$" 2>/dev/null || continue
            rm -rf "$base/$n.stale.$$"
            mkdir "$base/$n" 2>/dev/null || continue
        fi
        echo $$ >"$base/$n/pid"
        # Anything (TCP or UDP) on 127.0.N.0/24: the s2s tests use .1-.9
        # and the DNS server .53.
        if [ -n "$(ss -Hltun "src 127.0.$n.0/24" 2>/dev/null)" ]; then
            rm -rf "${base:?}/$n"
            continue
        fi
        FG_CLAIM="$base/$n"
        fg_check_wildcard
        FG_NET=$n
        FG_IP=127.0.$n.1
        FG_S2S_IP=127.0.$n.2
        FG_DNS_IP=127.0.$n.53
        return 0
    done
    hard_error "no free loopback network 127.0.20-239.0/24"
}

# A listener on a wildcard address (0.0.0.0 or [::]) on a port the tests
# bind takes that port on every 127.x address: say who holds it. (A
# system-wide Prosody is the usual one: `prosody --version` starts the
# server from /etc/prosody; use `prosodyctl about`.)
fg_check_wildcard()
{
    local port held
    for port in "$FG_C2S_PORT" "$FG_COMP_PORT" 5269 5270 53; do
        held=$(ss -Hltunp "( sport = :$port )" 2>/dev/null |
            awk '$5 ~ /^(0\.0\.0\.0|\*|\[::\]):/' | head -1)
        [ -z "$held" ] ||
            hard_error "port $port is taken on every address: $held"
    done
}

# Stops one process (or group with a leading '-') with TERM, then KILL
# after $2 seconds. Returns 0 if TERM was enough.
fg_terminate()
{
    local target=$1 grace=${2:-10} i
    kill -TERM -- "$target" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 -- "$target" 2>/dev/null || return 0
        sleep 0.1
    done
    note "$target ignored SIGTERM for ${grace}s: SIGKILL"
    kill -KILL -- "$target" 2>/dev/null
    return 1
}

fg_cleanup()
{
    local rc=$? i
    trap - EXIT INT TERM HUP
    [ "$FG_DONE" = 1 ] && return
    FG_DONE=1
    [ -n "$FG_WATCHDOG" ] && kill "$FG_WATCHDOG" 2>/dev/null
    for ((i = ${#FG_PIDS[@]} - 1; i >= 0; i--)); do
        fg_terminate "${FG_PIDS[i]}" 5
    done
    for ((i = ${#FG_PGIDS[@]} - 1; i >= 0; i--)); do
        fg_terminate "-${FG_PGIDS[i]}" 15
    done
    wait 2>/dev/null
    if [ "${KEEP_TMP:-0}" = 1 ] || [ -z "${FG_TMP:-}" ]; then
        [ -n "${FG_TMP:-}" ] && note "kept $FG_TMP"
    else
        rm -rf "$FG_TMP"
    fi
    [ -n "$FG_CLAIM" ] && rm -rf "$FG_CLAIM"
    exit "$rc"
}

fg_on_signal()
{
    note "interrupted by signal"
    fg_show_logs
    exit 1
}

# fg_init NAME [TIMEOUT_SECS]: call first.
fg_init()
{
    FG_NAME=$1
    local limit=${2:-${FG_TEST_TIMEOUT:-115}} here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    : "${top_srcdir:=$(cd "$here/../.." && pwd)}"
    : "${top_builddir:=$top_srcdir}"
    FEDGATE=${FEDGATE:-$top_builddir/fedgate}
    PROBE=${PROBE:-$top_builddir/test/tools/xmpp-probe}

    trap fg_cleanup EXIT
    trap fg_on_signal INT TERM HUP
    [ -x "$PROBE" ] || hard_error "xmpp-probe not built ($PROBE)"
    FG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-$FG_NAME.XXXXXX") ||
        hard_error "cannot create a temp dir"
    # The ejabberd user must be able to walk into its part of the tree.
    chmod 755 "$FG_TMP"
    fg_claim_net
    # Overall watchdog: the test is killed (and cleaned up) at the limit.
    # Its sleep must not outlive it: it would hold the test's stdout open.
    (
        trap 'kill "$sp" 2>/dev/null; wait "$sp"; exit 0' TERM
        sleep "$limit" >/dev/null 2>&1 &
        sp=$!
        wait "$sp" || exit 0
        echo "watchdog: ${limit}s elapsed" >&2
        kill -TERM $$
    ) </dev/null &
    FG_WATCHDOG=$!
    FG_START=$(date +%s)
    note "tmp $FG_TMP, network $FG_IP"
}

fg_finish()
{
    note "PASS in $(($(date +%s) - FG_START))s"
    exit 0
}

# ---- waiting ------------------------------------------------------------

# Size of FILE in bytes (0 if missing): a mark for wait_for_log.
log_mark()
{
    stat -c %s "$1" 2>/dev/null || echo 0
}

# wait_for_log FILE PATTERN TIMEOUT [FROM_BYTE]: 0 once an extended regex
# matches a line of FILE (after byte FROM_BYTE), 1 at the timeout.
wait_for_log()
{
    local file=$1 pattern=$2 timeout=$3 from=${4:-0} end
    end=$(($(date +%s%N) + timeout * 1000000000))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        if [ -f "$file" ] &&
            tail -c "+$((from + 1))" "$file" | grep -Eq -- "$pattern"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Counts lines matching PATTERN in FILE after byte FROM.
count_log()
{
    local file=$1 pattern=$2 from=${3:-0}
    [ -f "$file" ] || {
        echo 0
        return
    }
    tail -c "+$((from + 1))" "$file" | grep -Ec -- "$pattern"
}

# 0 if something listens on IP:PORT (TCP).
port_listening()
{
    [ -n "$(ss -Hltn "src $1:$2" 2>/dev/null)" ]
}

# wait_for_port IP PORT TIMEOUT
wait_for_port()
{
    local end
    end=$(($(date +%s%N) + $3 * 1000000000))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        port_listening "$1" "$2" && return 0
        sleep 0.05
    done
    return 1
}

wait_port_closed()
{
    local end
    end=$(($(date +%s%N) + $3 * 1000000000))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        port_listening "$1" "$2" || return 0
        sleep 0.05
    done
    return 1
}

# Fails if a process this test started listens outside 127.0.0.0/8.
assert_loopback_only()
{
    local pids="" g p bad
    for g in "${FG_PGIDS[@]}"; do
        pids="$pids $(pgrep -g "$g" 2>/dev/null | tr '\n' ' ')"
    done
    for p in "${FG_PIDS[@]}"; do
        pids="$pids $p"
    done
    bad=""
    for p in $pids; do
        bad+=$(ss -Hltunp 2>/dev/null | grep "pid=$p," |
            awk '$5 !~ /^127\./ && $5 !~ /^\[::ffff:127\./')
    done
    [ -z "$bad" ] || fail "listening outside 127.0.0.0/8: $bad"
    note "listeners: $(for p in $pids; do ss -Hltunp | grep "pid=$p," |
        awk '{print $5}'; done | sort -u | tr '\n' ' ')"
}

# ---- certificates ---------------------------------------------------------

# fg_make_certs: a throw-away CA in $FG_TMP/pki/ca.crt and a server
# certificate for a.test with DNS SANs only (ejabberd 23.01 fails on
# id-on-xmppAddr), plus an unrelated CA for negative TLS checks.
fg_make_certs()
{
    local d=$FG_TMP/pki
    mkdir -p "$d"
    (
        set -e
        cd "$d"
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout ca.key -out ca.crt -days 2 -subj "/CN=fedgate test CA $FG_NAME" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout other-ca.key -out other-ca.crt -days 2 -subj "/CN=unrelated CA"
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout "$FG_DOMAIN.key" -out "$FG_DOMAIN.csr" -subj "/CN=$FG_DOMAIN"
        printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth,clientAuth" \
            "subjectAltName=DNS:$FG_DOMAIN" >ext.cnf
        openssl x509 -req -in "$FG_DOMAIN.csr" -CA ca.crt -CAkey ca.key \
            -CAcreateserial -days 2 -extfile ext.cnf -out "$FG_DOMAIN.crt"
        cat "$FG_DOMAIN.crt" "$FG_DOMAIN.key" >"$FG_DOMAIN.pem"
        # fedgate's own s2s certificate: the served domain and service JID.
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout gw.key -out gw.csr -subj "/CN=$FG_DOMAIN"
        printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth,clientAuth" \
            "subjectAltName=DNS:$FG_DOMAIN,DNS:fedgate.$FG_DOMAIN" >gw-ext.cnf
        openssl x509 -req -in gw.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -days 2 -extfile gw-ext.cnf -out gw.crt
    ) >"$FG_TMP/openssl.log" 2>&1 || {
        fg_log_add "$FG_TMP/openssl.log"
        hard_error "certificate generation failed"
    }
    FG_CAFILE=$d/ca.crt
    FG_OTHER_CAFILE=$d/other-ca.crt
}

# ---- xmpp-probe -------------------------------------------------------------

# probe [--on DOMAIN] [--as USER PW] [--timeout S] COMMAND...: runs
# xmpp-probe (as USER@a.test on the home server, or with --on as
# USER@DOMAIN on that peer server), output also in $FG_TMP/probe.out.
# Returns xmpp-probe's exit status.
probe()
{
    local user=$FG_USER pw=$FG_PASSWORD ca=$FG_CAFILE timeout=10 rc
    local domain=$FG_DOMAIN host=$FG_IP
    while [ $# -gt 0 ]; do
        case $1 in
        --as)
            user=$2 pw=$3
            shift 3
            ;;
        --cafile)
            ca=$2
            shift 2
            ;;
        --timeout)
            timeout=$2
            shift 2
            ;;
        --on)
            # A client of the peer server for domain $2 (see peer_*).
            domain=$2 host=${PEER_IP[$2]:?no peer server for $2}
            ca=${PEER_CLIENT_CA[$2]:-$ca}
            shift 2
            ;;
        *) break ;;
        esac
    done
    "$PROBE" --jid "$user@$domain" --password "$pw" --host "$host" \
        --port "$FG_C2S_PORT" --cafile "$ca" --timeout "$timeout" "$@" \
        >"$FG_TMP/probe.out" 2>"$FG_TMP/probe.err"
    rc=$?
    sed 's/^/    probe: /' "$FG_TMP/probe.out" "$FG_TMP/probe.err" >&2
    return $rc
}

# probe_ok COMMAND...: probe must exit 0.
probe_ok()
{
    probe "$@" || fail "xmpp-probe $* exited $? (expected 0)"
}

# probe_expect RC [probe args]: probe must exit with RC.
probe_expect()
{
    local want=$1 rc
    shift
    probe "$@"
    rc=$?
    [ "$rc" = "$want" ] || fail "xmpp-probe $* exited $rc (expected $want)"
}

# probe_out_has REGEX: the last probe's stdout has a matching line.
probe_out_has()
{
    grep -Eq -- "$1" "$FG_TMP/probe.out" ||
        fail "xmpp-probe output has no line matching /$1/"
}

# probe_until TIMEOUT COMMAND...: retries the probe until it exits 0.
probe_until()
{
    local end=$(($(date +%s) + $1))
    shift
    while :; do
        probe --timeout 5 "$@" 2>/dev/null && return 0
        [ "$(date +%s)" -ge "$end" ] && break
        sleep 0.3
    done
    fail "xmpp-probe $* did not succeed within the time limit"
}

# ---- Prosody --------------------------------------------------------------

PROSODY_BIN=${PROSODY_BIN:-/usr/bin/prosody}
PROSODYCTL_BIN=${PROSODYCTL_BIN:-/usr/bin/prosodyctl}

prosody_setup()
{
    if [ ! -x "$PROSODY_BIN" ] || [ ! -x "$PROSODYCTL_BIN" ]; then
        skip "prosody not installed ($PROSODY_BIN)"
    fi
    PROSODY_DIR=$FG_TMP/prosody
    PROSODY_CFG=$PROSODY_DIR/prosody.cfg.lua
    PROSODY_LOG=$PROSODY_DIR/logs/prosody.log
    PROSODY_OUT=$PROSODY_DIR/logs/stdout.log
    mkdir -p "$PROSODY_DIR/data" "$PROSODY_DIR/logs" "$PROSODY_DIR/certs"
    # A unix socket path must fit in sun_path (108 bytes).
    [ "${#PROSODY_DIR}" -lt 80 ] ||
        hard_error "TMPDIR too long for Prosody's admin socket: $PROSODY_DIR"
    cp "$FG_TMP/pki/$FG_DOMAIN.crt" "$FG_TMP/pki/$FG_DOMAIN.key" \
        "$FG_CAFILE" "$PROSODY_DIR/certs/"
    {
        cat <<EOF
-- Generated by test/integration/lib.sh for test $FG_NAME.
local D = "$PROSODY_DIR"
run_as_root = true
pidfile = D.."/run.pid"
data_path = D.."/data"
admin_socket = D.."/data/prosody.sock"
log = { debug = D.."/logs/debug.log"; info = D.."/logs/prosody.log"; }
interfaces = { "$FG_IP" }
c2s_ports = { $FG_C2S_PORT }
c2s_direct_tls_ports = {}; s2s_direct_tls_ports = {}
http_ports = {}; https_ports = {}
certificates = D.."/certs"
ssl = { cafile = D.."/certs/ca.crt" }
c2s_require_encryption = true
authentication = "internal_hashed"
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "version"; "admin_shell"; }
EOF
        # PROSODY_COMPONENTS=0: the test brings its own component set-up
        # (global lines in PROSODY_GLOBAL_EXTRA, sections in PROSODY_EXTRA).
        if [ "${PROSODY_COMPONENTS:-1}" = 1 ]; then
            cat <<EOF
modules_disabled = { "s2s" }
component_interfaces = { "$FG_IP" }
component_ports = { $FG_COMP_PORT }
EOF
        fi
        printf '%s\n' "${PROSODY_GLOBAL_EXTRA:-}"
        printf '\nVirtualHost "%s"\n\n' "$FG_DOMAIN"
        if [ "${PROSODY_COMPONENTS:-1}" = 1 ]; then
            cat <<EOF
Component "fedgate.$FG_DOMAIN"
	component_secret = "$FG_SECRET_GW"

Component "b.test"
	component_secret = "$FG_SECRET_B"

Component "conference.b.test"
	component_secret = "$FG_SECRET_MUC"
EOF
        fi
        printf '%s\n' "${PROSODY_EXTRA:-}"
    } >"$PROSODY_CFG"
    fg_log_add "$PROSODY_OUT"
    fg_log_add "$PROSODY_LOG"
}

prosodyctl_run()
{
    "$PROSODYCTL_BIN" --config "$PROSODY_CFG" "$@" 2>&1 |
        grep -v -e 'lua-unbound' -e '^\*\*\*' -e 'luarocks' \
            -e 'Debian/Ubuntu' -e 'Source |' -e 'Old DNS resolver' \
            -e 'More help can be found' -e 'This package can be obtained' \
            -e '^ *$'
    return "${PIPESTATUS[0]}"
}

prosody_register()
{
    prosodyctl_run register "$1" "$FG_DOMAIN" "$2" >>"$PROSODY_DIR/prosodyctl.log" ||
        fail "prosodyctl register $1 failed (see $PROSODY_DIR/prosodyctl.log)"
}

prosody_start()
{
    local mark
    mark=$(log_mark "$PROSODY_LOG")
    echo "=== start $(date +%T.%N)" >>"$PROSODY_OUT"
    setsid "$PROSODY_BIN" -F --config "$PROSODY_CFG" >>"$PROSODY_OUT" 2>&1 </dev/null &
    PROSODY_PID=$!
    FG_PGIDS+=("$PROSODY_PID")
    # Readiness = both listeners accept (about 60 ms after start).
    if ! wait_for_port "$FG_IP" "$FG_C2S_PORT" 20; then
        fail "prosody did not open $FG_IP:$FG_C2S_PORT"
    fi
    # The component port only when this config has one (see cli.sh).
    if grep -q '^component_ports' "$PROSODY_CFG" &&
        ! wait_for_port "$FG_IP" "$FG_COMP_PORT" 5; then
        fail "prosody did not open $FG_IP:$FG_COMP_PORT"
    fi
    kill -0 "$PROSODY_PID" 2>/dev/null || fail "prosody exited at start-up"
    if tail -c "+$((mark + 1))" "$PROSODY_LOG" 2>/dev/null | grep -q 'error'; then
        note "prosody logged errors at start-up:"
        tail -c "+$((mark + 1))" "$PROSODY_LOG" | grep 'error' | head -5 >&2
    fi
    note "prosody up (pid $PROSODY_PID)"
}

prosody_stop()
{
    [ -n "${PROSODY_PID:-}" ] || return 0
    fg_terminate "-$PROSODY_PID" 10 || fail "prosody needed SIGKILL"
    wait "$PROSODY_PID" 2>/dev/null
    wait_port_closed "$FG_IP" "$FG_C2S_PORT" 5 ||
        fail "prosody's port still open after it exited"
    PROSODY_PID=""
    note "prosody stopped"
}

prosody_restart()
{
    prosody_stop
    prosody_start
}

# ---- ejabberd ---------------------------------------------------------------

EJABBERDCTL_BIN=${EJABBERDCTL_BIN:-/usr/sbin/ejabberdctl}

# The ejabberd_service listener (unless EJ_COMPONENTS=0: the test merges
# its own, see cli.sh).
ejabberd_component_listener()
{
    [ "${EJ_COMPONENTS:-1}" = 1 ] || return 0
    cat <<EOF
  -
    port: $FG_COMP_PORT
    ip: "$FG_IP"
    module: ejabberd_service
    check_from: true
    global_routes: false
    hosts:
      fedgate.$FG_DOMAIN:
        password: "$FG_SECRET_GW"
      b.test:
        password: "$FG_SECRET_B"
      conference.b.test:
        password: "$FG_SECRET_MUC"
EOF
}

ejabberd_setup()
{
    if [ ! -x "$EJABBERDCTL_BIN" ] || [ ! -x /usr/bin/erl ]; then
        skip "ejabberd not installed ($EJABBERDCTL_BIN)"
    fi
    id ejabberd >/dev/null 2>&1 || skip "no ejabberd system user"
    EJ_DIR=$FG_TMP/ejabberd
    EJ_NODE=fgtest$FG_NET@$FG_IP
    EJ_LOG=$EJ_DIR/log/ejabberd.log
    EJ_OUT=$EJ_DIR/log/stdout.log
    mkdir -p "$EJ_DIR/etc" "$EJ_DIR/spool" "$EJ_DIR/log" "$EJ_DIR/run" \
        "$EJ_DIR/contrib" "$EJ_DIR/home"
    cp "$FG_TMP/pki/$FG_DOMAIN.pem" "$EJ_DIR/etc/$FG_DOMAIN.pem"
    cp "$FG_CAFILE" "$EJ_DIR/etc/ca.crt"
    # ejabberdctl points ERL_INETRC here; an empty file keeps the Erlang
    # resolver defaults without an error report at every start.
    : >"$EJ_DIR/etc/inetrc"
    cat >"$EJ_DIR/etc/ejabberdctl.cfg" <<EOF
# Generated by test/integration/lib.sh for test $FG_NAME.
ERLANG_NODE=$EJ_NODE
ERL_DIST_PORT=$FG_EJ_DIST_PORT
INET_DIST_INTERFACE=$FG_IP
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie fgtest$$"
EJABBERD_PID_PATH=$EJ_DIR/run/ejabberd.pid
CONTRIB_MODULES_PATH=$EJ_DIR/contrib
EJABBERD_BYPASS_WARNINGS=true
EOF
    cat >"$EJ_DIR/etc/ejabberd.yml" <<EOF
# Generated by test/integration/lib.sh for test $FG_NAME.
loglevel: info
log_rotate_count: 0
hosts:
  - $FG_DOMAIN
certfiles:
  - "$EJ_DIR/etc/$FG_DOMAIN.pem"
ca_file: "$EJ_DIR/etc/ca.crt"
auth_method: internal
auth_password_format: scram
$([ "${EJ_COMPONENTS:-1}" = 1 ] && echo "s2s_access: none_s2s")
acl:
  local:
    user_regexp: ""
  gw_components:
    server:
      - fedgate.$FG_DOMAIN
access_rules:
  gw_priv:
    allow: gw_components
  none_s2s:
    deny: all
  local:
    allow: local
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
listen:
  -
    port: $FG_C2S_PORT
    ip: "$FG_IP"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
$(ejabberd_component_listener)
modules:
  mod_disco: {}
  mod_roster:
    versioning: true
  mod_muc:
    host: "conference.$FG_DOMAIN"
    access_create: local
  mod_ping: {}
  mod_version: {}
  mod_privacy: {}
  mod_privilege:
    roster:
      both: gw_priv
    presence:
      roster: gw_priv
    message:
      outgoing: gw_priv
  mod_delegation:
    namespaces:
      "jabber:iq:privacy":
        access: gw_priv
EOF
    # EJ_EXTRA: top-level YAML appended as is (e.g. an include_config_file).
    [ -z "${EJ_EXTRA:-}" ] || printf '%s\n' "$EJ_EXTRA" >>"$EJ_DIR/etc/ejabberd.yml"
    # ejabberdctl switches to the ejabberd user; it needs its tree.
    chown -R ejabberd: "$EJ_DIR"
    chmod 600 "$EJ_DIR/etc/$FG_DOMAIN.pem"
    runuser -u ejabberd -- test -w "$EJ_DIR/spool" ||
        hard_error "user ejabberd cannot write $EJ_DIR (is ${TMPDIR:-/tmp}" \
            "private to root? set TMPDIR to a directory others may enter)"
    fg_log_add "$EJ_OUT"
    fg_log_add "$EJ_LOG"
    fg_log_add "$EJ_DIR/log/error.log"
}

# Runs ejabberdctl for our node as the ejabberd user (runuser instead of
# the script's own su, so the process stays in a group we own).
ejabberdctl_run()
{
    HOME=$EJ_DIR/home runuser -u ejabberd -- "$EJABBERDCTL_BIN" \
        --config-dir "$EJ_DIR/etc" --spool "$EJ_DIR/spool" \
        --logs "$EJ_DIR/log" --node "$EJ_NODE" "$@"
}

ejabberd_start()
{
    local mark end
    mark=$(log_mark "$EJ_LOG")
    echo "=== start $(date +%T.%N)" >>"$EJ_OUT"
    HOME=$EJ_DIR/home setsid runuser -u ejabberd -- "$EJABBERDCTL_BIN" \
        --config-dir "$EJ_DIR/etc" --spool "$EJ_DIR/spool" \
        --logs "$EJ_DIR/log" --node "$EJ_NODE" foreground \
        >>"$EJ_OUT" 2>&1 </dev/null &
    EJ_PID=$!
    FG_PGIDS+=("$EJ_PID")
    # The open port is not a readiness signal: wait for the start line.
    end=$(($(date +%s) + 60))
    while ! tail -c "+$((mark + 1))" "$EJ_LOG" 2>/dev/null |
        grep -q 'is started in the node'; do
        kill -0 "$EJ_PID" 2>/dev/null || fail "ejabberd exited at start-up"
        [ "$(date +%s)" -lt "$end" ] || fail "ejabberd did not start in 60s"
        sleep 0.2
    done
    if ! wait_for_port "$FG_IP" "$FG_C2S_PORT" 10 ||
        ! wait_for_port "$FG_IP" "$FG_COMP_PORT" 10; then
        fail "ejabberd started but does not listen on $FG_IP"
    fi
    note "ejabberd up (pgid $EJ_PID)"
}

ejabberd_register()
{
    ejabberdctl_run register "$1" "$FG_DOMAIN" "$2" \
        >>"$EJ_DIR/log/ejabberdctl.out" 2>&1 ||
        fail "ejabberdctl register $1 failed: $(tail -n 3 "$EJ_DIR/log/ejabberdctl.out")"
}

ejabberd_stop()
{
    [ -n "${EJ_PID:-}" ] || return 0
    # SIGTERM makes the Erlang VM stop gracefully (init:stop).
    fg_terminate "-$EJ_PID" 20 || fail "ejabberd needed SIGKILL"
    wait "$EJ_PID" 2>/dev/null
    wait_port_closed "$FG_IP" "$FG_C2S_PORT" 5 ||
        fail "ejabberd's port still open after it exited"
    EJ_PID=""
    note "ejabberd stopped"
}

ejabberd_restart()
{
    ejabberd_stop
    ejabberd_start
}

# ---- fedgate ------------------------------------------------------------------

fedgate_require()
{
    [ -x "$FEDGATE" ] || fail "fedgate binary not found at $FEDGATE"
    "$FEDGATE" --version >/dev/null 2>&1 ||
        fail "$FEDGATE --version does not work"
}

# fedgate_config FILE [upstream_secret=S] [service_secret=S] [muc_secret=S]
#                [level=L] [backoff_initial_ms=N] [backoff_max_ms=N]
# Writes a config that attaches fedgate for a.test to the home server on
# $FG_IP:$FG_COMP_PORT with the components the servers above expect.
fedgate_config()
{
    local file=$1 up=$FG_SECRET_B svc=$FG_SECRET_GW muc=$FG_SECRET_MUC
    local level=debug kv dir binit=200 bmax=2000
    shift
    for kv in "$@"; do
        case $kv in
        upstream_secret=*) up=${kv#*=} ;;
        service_secret=*) svc=${kv#*=} ;;
        muc_secret=*) muc=${kv#*=} ;;
        level=*) level=${kv#*=} ;;
        backoff_initial_ms=*) binit=${kv#*=} ;;
        backoff_max_ms=*) bmax=${kv#*=} ;;
        *) hard_error "fedgate_config: unknown $kv" ;;
        esac
    done
    dir=$(dirname "$file")
    mkdir -p "$dir"
    cat >"$file" <<EOF
# Generated by test/integration/lib.sh for test $FG_NAME.
service_jid = "fedgate.$FG_DOMAIN";
domains = [ "$FG_DOMAIN" ];
upstream = {
    host = "$FG_IP";
    port = $FG_COMP_PORT;
    secret = "$up";
    service_secret = "$svc";
    backoff_initial_ms = $binit;
    backoff_max_ms = $bmax;
};
peers = (
    {
        domain = "b.test";
        services = ( { domain = "conference.b.test"; secret = "$muc"; } );
    }
);
log = { level = "$level"; };
state_db = "$dir/state.db";
# Only 127.0.0.0/8: the s2s listener sits on this test's own network.
s2s = { listen = [ "$FG_S2S_IP:5269" ]; };
tls = {
    certificate = "$FG_TMP/pki/gw.crt";
    key = "$FG_TMP/pki/gw.key";
    ca_file = "$FG_CAFILE";
};
EOF
}

# fedgate_start NAME CONF [NFDS]: sets FEDGATE_PID_<NAME>, log $FG_TMP/NAME.log.
fedgate_start()
{
    local name=$1 conf=$2 nfds=${3:-0} log=$FG_TMP/$1.log pid
    fedgate_require
    fg_log_add "$log"
    if [ "$nfds" -gt 0 ]; then
        (
            ulimit -n 4096 || exit 99
            # bash hands out {fd} numbers from 10 up: fill 3..9 by hand so
            # that nothing below the inherited block is left free.
            for ((i = 3; i < 10; i++)); do
                [ -e "/proc/$BASHPID/fd/$i" ] || eval "exec $i</dev/null"
            done
            for ((i = 10; i < nfds; i++)); do
                # shellcheck disable=SC2034 # only the open fd matters
                exec {fd}</dev/null || exit 99
            done
            # shellcheck disable=SC2086 # FEDGATE_WRAPPER is words
            exec ${FEDGATE_WRAPPER:-} "$FEDGATE" -c "$conf"
        ) >>"$log" 2>&1 </dev/null &
    else
        # shellcheck disable=SC2086 # FEDGATE_WRAPPER is words
        ${FEDGATE_WRAPPER:-} "$FEDGATE" -c "$conf" >>"$log" 2>&1 </dev/null &
    fi
    pid=$!
    FG_PIDS+=("$pid")
    printf -v "FEDGATE_PID_$name" '%s' "$pid"
    sleep 0.1
    kill -0 "$pid" 2>/dev/null || fail "fedgate $name exited at start-up"
    note "fedgate $name started (pid $pid, $nfds extra fds)"
}

fedgate_pid()
{
    local v=FEDGATE_PID_$1
    printf '%s' "${!v:-}"
}

fedgate_alive()
{
    local pid
    pid=$(fedgate_pid "$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# fedgate_stop NAME: a clean stop on SIGTERM within 5 s, no crash.
fedgate_stop()
{
    local pid rc
    pid=$(fedgate_pid "$1")
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid"
        fail "fedgate $1 had already exited (status $?)"
    }
    fg_terminate "$pid" 5 || fail "fedgate $1 ignored SIGTERM for 5 s"
    wait "$pid"
    rc=$?
    # fedgate handles SIGTERM (closes its streams, exits 0); 143 would
    # mean it died of the signal without a clean shutdown.
    [ "$rc" = 99 ] && [ -n "${FEDGATE_WRAPPER:-}" ] &&
        fail "fedgate $1 exited 99 under '$FEDGATE_WRAPPER': see its report" \
            "in $1.log (below)"
    [ "$rc" = 0 ] || fail "fedgate $1 exited with status $rc on SIGTERM"
    printf -v "FEDGATE_PID_$1" '%s' ""
    note "fedgate $1 stopped (status $rc)"
}

# ---- home-server scenario (shared by prosody.sh and ejabberd.sh) --------

home_setup() { "${FG_SERVER}_setup"; }
home_start() { "${FG_SERVER}_start"; }
home_stop() { "${FG_SERVER}_stop"; }
home_restart() { "${FG_SERVER}_restart"; }
home_register() { "${FG_SERVER}_register" "$@"; }
home_log()
{
    case $FG_SERVER in
    prosody) printf '%s' "$PROSODY_LOG" ;;
    ejabberd) printf '%s' "$EJ_LOG" ;;
    esac
}

# What fedgate's log says when a home-server stream is up, as a regex with
# DOMAIN standing for the escaped domain.
FG_READY_FMT=${FG_READY_FMT:-'upstream DOMAIN [^ ]+: stream ready'}
FG_STREAM_DOMAINS=("fedgate.$FG_DOMAIN" b.test conference.b.test)

re_escape()
{
    printf '%s' "$1" | sed 's/[].[^$*+?(){}|\\]/\\&/g'
}

# fedgate_wait_ready NAME TIMEOUT [FROM_BYTE]: every stream reported up.
fedgate_wait_ready()
{
    local name=$1 timeout=$2 from=${3:-0} d re
    for d in "${FG_STREAM_DOMAINS[@]}"; do
        re=${FG_READY_FMT//DOMAIN/$(re_escape "$d")}
        wait_for_log "$FG_TMP/$name.log" "$re" "$timeout" "$from" ||
            fail "fedgate $name: no /$re/ in its log within ${timeout}s"
        fedgate_alive "$name" || fail "fedgate $name died"
    done
    note "fedgate $name: all ${#FG_STREAM_DOMAINS[@]} streams up"
}

# Socket fd numbers of fedgate NAME, one per line.
fedgate_socket_fds()
{
    local pid
    pid=$(fedgate_pid "$1")
    find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' \
        -printf '%f\n' 2>/dev/null | sort -n
}

# The fd numbers fedgate NAME uses for its connections to the component
# port, from the kernel's socket table.
fedgate_upstream_fds()
{
    local pid
    pid=$(fedgate_pid "$1")
    ss -Htnp state established "dst $FG_IP:$FG_COMP_PORT" 2>/dev/null |
        grep -o "pid=$pid,fd=[0-9]*" | sed 's/.*fd=//'
}

assert_high_fds()
{
    local name=$1 fds low n
    fds=$(fedgate_socket_fds "$name")
    note "fedgate $name has $(find "/proc/$(fedgate_pid "$name")/fd" -mindepth 1 -maxdepth 1 | wc -l) open fds"
    n=$(printf '%s\n' "$fds" | grep -c .)
    [ "$n" -ge "${#FG_STREAM_DOMAINS[@]}" ] ||
        fail "fedgate $name has only $n sockets: $fds"
    low=$(printf '%s\n' "$fds" | awk '$1 < 1024' | tr '\n' ' ')
    [ -z "$low" ] || fail "fedgate $name has sockets below fd 1024: $low" \
        "(the test wants them all above 1023)"
    note "fedgate $name sockets: $(printf '%s\n' "$fds" | tr '\n' ' ')"
    fds=$(fedgate_upstream_fds "$name" | tr '\n' ' ')
    if [ -n "$fds" ]; then
        note "fedgate $name upstream connections use fds: $fds"
        [ "$(wc -w <<<"$fds")" -ge "${#FG_STREAM_DOMAINS[@]}" ] ||
            fail "fedgate $name has $(wc -w <<<"$fds") upstream connections"
    fi
}

# Expectations that differ between the servers (measured, see DESIGN §2).
fg_server_facts()
{
    case $FG_SERVER in
    prosody)
        # A Component with nothing attached: "Component unavailable".
        COND_UNATTACHED=remote-server-timeout
        # A domain with no Component while s2s is disabled.
        COND_UNKNOWN=not-allowed
        SERVER_IDENTITY='^identity server/im Prosody$'
        SERVER_AUTHFAIL_RE='Component authentication failed for b\.test'
        ;;
    ejabberd)
        COND_UNATTACHED=forbidden
        COND_UNKNOWN=forbidden
        SERVER_IDENTITY='^identity server/im ejabberd$'
        SERVER_AUTHFAIL_RE='Failed external component handshake authentication for b\.test'
        ;;
    esac
}

phase_server_only()
{
    note "phase: home server without fedgate"
    probe_ok ping "$FG_DOMAIN" disco-info "$FG_DOMAIN" disco-items "$FG_DOMAIN" \
        expect-error "$COND_UNATTACHED" ping b.test \
        expect-error "$COND_UNATTACHED" ping "fedgate.$FG_DOMAIN" \
        expect-error "$COND_UNKNOWN" ping c.test
    probe_out_has "$SERVER_IDENTITY"
    probe_out_has '^feature urn:xmpp:ping$'
    # TLS really is verified: another CA's view of the server fails, as
    # does a wrong password (exit 2 = connect/TLS/auth failure).
    probe_expect 2 --cafile "$FG_OTHER_CAFILE" ping "$FG_DOMAIN"
    probe_expect 2 --as "$FG_USER" wrong-password ping "$FG_DOMAIN"
}

probe_gateway()
{
    local g=fedgate.$FG_DOMAIN
    probe_ok ping "$g" disco-info "$g" disco-items "$g" version "$g"
    probe_out_has "^ok ping $(re_escape "$g")"
    probe_out_has '^identity gateway/'
    probe_out_has "^ok disco-items $(re_escape "$g")"
    probe_out_has '^feature urn:xmpp:ping$'
    probe_out_has '^feature jabber:iq:version$'
    probe_out_has '^feature http://jabber\.org/protocol/disco#info$'
    probe_out_has "^ok version $(re_escape "$g") name=\"[^\"]+\" version=\"[^\"]+\""
}

phase_fedgate_restart()
{
    local name=$1 nfds=${2:-0} mark
    note "phase: fedgate ($name, $nfds extra fds) and a home-server restart"
    fedgate_config "$FG_TMP/$name/fedgate.conf"
    fedgate_start "$name" "$FG_TMP/$name/fedgate.conf" "$nfds"
    fedgate_wait_ready "$name" 15
    [ "$nfds" -gt 0 ] && assert_high_fds "$name"
    assert_loopback_only
    probe_gateway
    mark=$(log_mark "$FG_TMP/$name.log")
    home_restart
    fedgate_wait_ready "$name" 30 "$mark"
    # The first probe may race the last stream's handshake: retry briefly.
    probe_until 10 ping "fedgate.$FG_DOMAIN"
    probe_gateway
    [ "$nfds" -gt 0 ] && assert_high_fds "$name"
    fedgate_alive "$name" || fail "fedgate $name died"
    fedgate_stop "$name"
}

phase_wrong_secret()
{
    local name=bad log=$FG_TMP/bad.log re mark smark n ns window=6
    note "phase: fedgate with a wrong secret for b.test"
    fedgate_config "$FG_TMP/$name/fedgate.conf" upstream_secret=not-the-secret
    fedgate_start "$name" "$FG_TMP/$name/fedgate.conf"
    re='b\.test.*not-authorized'
    wait_for_log "$log" "$re" 10 ||
        fail "fedgate's log has no not-authorized line naming b.test"
    note "fedgate says: $(grep -Em1 -- "$re" "$log")"
    mark=$(log_mark "$log")
    smark=$(log_mark "$(home_log)")
    sleep "$window"
    fedgate_alive "$name" || fail "fedgate with a wrong secret exited"
    n=$(count_log "$log" "$re" "$mark")
    ns=$(count_log "$(home_log)" "$SERVER_AUTHFAIL_RE" "$smark")
    note "in ${window}s: $n not-authorized lines in fedgate's log," \
        "$ns failed component logins in the home server's log"
    # Backoff 200 ms doubling to 2 s: about 5-8 attempts in 6 s. A tight
    # loop would show hundreds; no retry at all would show none.
    [ "$n" -ge 2 ] || fail "fedgate retried $n times in ${window}s (no retry?)"
    [ "$n" -le 15 ] || fail "fedgate retried $n times in ${window}s (no backoff)"
    [ "$ns" -le 15 ] ||
        fail "the home server saw $ns failed logins in ${window}s (no backoff)"
    # The other streams are unaffected: the service JID still answers.
    probe_ok ping "fedgate.$FG_DOMAIN"
    fedgate_stop "$name"
}

# fg_home_scenario prosody|ejabberd: the whole home-server test.
fg_home_scenario()
{
    FG_SERVER=$1
    fg_server_facts
    fg_make_certs
    home_setup
    home_start
    home_register "$FG_USER" "$FG_PASSWORD"
    phase_server_only
    fedgate_require
    phase_fedgate_restart gw 0
    phase_fedgate_restart gwfd 1100
    phase_wrong_secret
    home_stop
}

# ==== s2s: private DNS, certificates and unmodified peer servers ============
#
# For the peering-engine tests (s2s-*.sh) and selftest-peers.sh. Addresses
# on the test's network 127.0.N.0/24: .1 home server, .2 fedgate's s2s
# listener, .3-.9 peer servers (tests choose), .53 the DNS server.
#
# DNS: a private unbound on $FG_DNS_IP port 53 (port 53 because Prosody's
# legacy resolver asks no other port; binding it on a 127.x address works
# as root). `local-zone: "test." static`, so a name the test did not
# declare is NXDOMAIN. Declare records first, then start it:
#   dns_srv DOMAIN PORT TARGET [PRIO WEIGHT]   _xmpp-server._tcp.DOMAIN
#   dns_srvs DOMAIN PORT TARGET [PRIO WEIGHT]  _xmpps-server._tcp.DOMAIN
#   dns_a NAME IP
#   dns_start / dns_stop / dns_restart (after changing records);
#   dns_query NAME TYPE (a tiny stub resolver: prints "rcode N" and answers)
# TARGET may be an IP address: the record then says "IP." and an A record
# "IP." -> IP is added too. ejabberd 23.01 resolves the SRV target with the
# system resolver (which cannot see this DNS), so ejabberd needs IP targets;
# Prosody and fedgate take an IP target as an address.
#
# Peer servers ("unmodified": stock packages, private config), keyed by
# their domain:
#   prosody_peer_setup DOMAIN IP [KEY=VALUE...]
#   ejabberd_peer_setup DOMAIN IP [KEY=VALUE...]
#   peer_start DOMAIN / peer_stop DOMAIN / peer_restart DOMAIN
#   peer_register DOMAIN USER PW
#   peer_log DOMAIN (path of its main log)
#   probe --on DOMAIN ...  (a client of that server)
# Keys (both servers unless noted):
#   cert=BASE      certificate $FG_TMP/pki/BASE.{crt,key} (fg_make_cert);
#                  default: a good one for DOMAIN, made on demand
#   s2s=on|off     off: the home-server role (Prosody only: s2s module
#                  disabled, component listener on IP:5347)
#   components="NAME:SECRET ..."   Prosody Component sections (s2s=off)
#   secure_auth=true|false   Prosody s2s_secure_auth (default true)
#   dialback=on|off          Prosody: mod_dialback; ejabberd: mod_s2s_dialback
#                            (default on)
#   direct_tls=PORT          s2s direct TLS (XEP-0368) listener on IP:PORT
#   level=info|debug         ejabberd loglevel (Prosody always logs debug
#                            to logs/debug.log)
# Prosody resolves through the test's DNS via the test-only plugin
# prosody-plugins/mod_fgtest_dns.lua (legacy resolver: name server, no
# jitter) or, where lua-unbound is installed, `unbound = { resolvconf }`.
# ejabberd through an inetrc `{nameserver, {127,0,N,53}, 53}`.

declare -A PEER_KIND=() PEER_IP=() PEER_DIR=() PEER_LOG=() PEER_PID=()
declare -A PEER_CFG=() PEER_NODE=() PEER_CLIENT_CA=() CERT_CA=()
FG_DNS_RECORDS=()
FG_DNS_TTL=${FG_DNS_TTL:-5}
FG_DNS_PID=""
FG_PEER_DIST_PORT=47102

# ---- DNS ----------------------------------------------------------------

# dns_target TARGET: prints TARGET as an absolute DNS name; an IP
# address also gets an A record "IP." -> IP (for resolvers that look the
# target up instead of parsing it).
dns_target()
{
    if [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
        dns_a "$1" "$1"
    fi
    DNS_TARGET="${1%.}."
}

dns_a()
{
    FG_DNS_RECORDS+=("${1%.}. $FG_DNS_TTL IN A $2")
}

dns_srv()
{
    dns_target "$3"
    FG_DNS_RECORDS+=("_xmpp-server._tcp.${1%.}. $FG_DNS_TTL IN SRV ${4:-0} ${5:-5} $2 $DNS_TARGET")
}

dns_srvs()
{
    dns_target "$3"
    FG_DNS_RECORDS+=("_xmpps-server._tcp.${1%.}. $FG_DNS_TTL IN SRV ${4:-0} ${5:-5} $2 $DNS_TARGET")
}

# dns_clear: forget every declared record (then declare, dns_restart).
dns_clear()
{
    FG_DNS_RECORDS=()
}

dns_start()
{
    local d=$FG_TMP/dns r
    mkdir -p "$d"
    {
        cat <<EOT
# Generated by test/integration/lib.sh for test $FG_NAME.
server:
    interface: $FG_DNS_IP
    port: 53
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$d"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    log-queries: yes
    log-replies: yes
    num-threads: 1
    so-reuseport: no
    outgoing-range: 64
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "test." static
EOT
        # Records may repeat (an IP target used twice): unbound refuses
        # nothing, but keep the file readable.
        printf '%s\n' "${FG_DNS_RECORDS[@]}" | awk '!seen[$0]++' |
            while IFS= read -r r; do
                printf '    local-data: "%s"\n' "$r"
            done
        printf 'remote-control:\n    control-enable: no\n'
    } >"$d/unbound.conf"
    fg_log_add "$d/unbound.log"
    /usr/sbin/unbound-checkconf "$d/unbound.conf" >"$d/checkconf.out" 2>&1 || {
        fg_log_add "$d/checkconf.out"
        hard_error "unbound-checkconf rejects $d/unbound.conf"
    }
    echo "=== start $(date +%T.%N)" >>"$d/unbound.log"
    /usr/sbin/unbound -d -c "$d/unbound.conf" >>"$d/unbound.log" 2>&1 </dev/null &
    FG_DNS_PID=$!
    FG_PIDS+=("$FG_DNS_PID")
    local end=$(($(date +%s) + 10))
    until [ -n "$(ss -Hlun "src $FG_DNS_IP:53" 2>/dev/null)" ]; do
        kill -0 "$FG_DNS_PID" 2>/dev/null || hard_error "unbound exited at start-up"
        [ "$(date +%s)" -lt "$end" ] || hard_error "unbound does not listen on $FG_DNS_IP:53"
        sleep 0.05
    done
    # Ready means answering: ask for the SOA of the zone.
    dns_query test SOA >/dev/null || hard_error "unbound on $FG_DNS_IP:53 does not answer"
    note "dns up on $FG_DNS_IP:53 (pid $FG_DNS_PID, ${#FG_DNS_RECORDS[@]} records)"
}

dns_stop()
{
    [ -n "$FG_DNS_PID" ] || return 0
    fg_terminate "$FG_DNS_PID" 5
    wait "$FG_DNS_PID" 2>/dev/null
    FG_DNS_PID=""
}

dns_restart()
{
    dns_stop
    dns_start
}

# dns_query NAME TYPE: asks the test's DNS (UDP); prints "rcode N" then one
# line per answer ("A 1.2.3.4", "SRV prio weight port target"). Exit 0 when
# it got an answer packet (whatever its rcode).
dns_query()
{
    /usr/bin/python3 - "$FG_DNS_IP" "$1" "$2" <<'PY'
import socket, struct, sys, random
server, name, qtype = sys.argv[1], sys.argv[2], sys.argv[3]
types = {"A": 1, "SOA": 6, "SRV": 33, "AAAA": 28}
qid = random.randint(0, 65535)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
for label in name.rstrip(".").split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack(">HH", types[qtype], 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, (server, 53))
try:
    r, _ = s.recvfrom(4096)
except socket.timeout:
    sys.exit(1)
def rname(buf, off):
    labels, jumped, end = [], False, off
    while True:
        n = buf[off]
        if n >= 0xC0:
            if not jumped:
                end = off + 2
            off = ((n & 0x3F) << 8) | buf[off + 1]
            jumped = True
            continue
        if n == 0:
            if not jumped:
                end = off + 1
            return ".".join(labels), end
        labels.append(buf[off + 1:off + 1 + n].decode())
        off += n + 1
_, flags, qd, an, _, _ = struct.unpack(">HHHHHH", r[:12])
print("rcode", flags & 0xF)
off = 12
for _ in range(qd):
    _, off = rname(r, off)
    off += 4
for _ in range(an):
    _, off = rname(r, off)
    t, _, _, ln = struct.unpack(">HHIH", r[off:off + 10])
    off += 10
    data = r[off:off + ln]
    if t == 1:
        print("A", socket.inet_ntoa(data))
    elif t == 33:
        p, w, port = struct.unpack(">HHH", data[:6])
        print("SRV", p, w, port, rname(r, off + 6)[0])
    off += ln
PY
}

# ---- certificates for peers -------------------------------------------------

# fg_make_cert BASE [ca=test|other] [eku=both|server] [expired=1]
#              [xmppaddr=DOMAIN] SAN...
# A certificate $FG_TMP/pki/BASE.crt (+ .key, and .pem = both for
# ejabberd), P-256, with the given subjectAltName entries (e.g.
# DNS:b.test). ca=other: signed by the unrelated CA; eku=server: only
# serverAuth; expired=1: valid for one day in 2020; xmppaddr=DOMAIN adds an
# id-on-xmppAddr entry (never for certificates ejabberd 23.01 must accept).
# Needs fg_make_certs first.
fg_make_cert()
{
    local base=$1 ca=ca eku="serverAuth,clientAuth" expired=0 xa="" sans=() kv
    shift
    for kv in "$@"; do
        case $kv in
        ca=test) ca=ca ;;
        ca=other) ca=other-ca ;;
        eku=both) eku="serverAuth,clientAuth" ;;
        eku=server) eku="serverAuth" ;;
        expired=1) expired=1 ;;
        xmppaddr=*) xa=${kv#*=} ;;
        *=*) hard_error "fg_make_cert: unknown $kv" ;;
        *) sans+=("$kv") ;;
        esac
    done
    [ -f "$FG_TMP/pki/ca.key" ] || hard_error "fg_make_cert before fg_make_certs"
    local san
    san=$(
        IFS=,
        echo "${sans[*]}"
    )
    [ -n "$xa" ] && san="$san${san:+,}otherName:1.3.6.1.5.5.7.8.5;UTF8:$xa"
    (
        set -e
        cd "$FG_TMP/pki"
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout "$base.key" -out "$base.csr" -subj "/CN=${xa:-${sans[0]#DNS:}}"
        printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=$eku" \
            "subjectAltName=$san" >"$base.ext"
        if [ "$expired" = 1 ]; then
            # openssl x509 cannot back-date: use "openssl ca".
            mkdir -p "ca-$base.db"
            : >"ca-$base.db/index.txt"
            printf '%s\n' '[ca]' 'default_ca=d' '[d]' \
                "database=ca-$base.db/index.txt" "new_certs_dir=ca-$base.db" \
                'serial=ca-'"$base"'.db/serial' 'default_md=sha256' \
                'policy=p' 'unique_subject=no' '[p]' 'commonName=supplied' \
                >"ca-$base.cnf"
            echo 01 >"ca-$base.db/serial"
            openssl ca -batch -notext -config "ca-$base.cnf" -cert "$ca.crt" \
                -keyfile "$ca.key" -in "$base.csr" -out "$base.crt" \
                -startdate 20200101000000Z -enddate 20200102000000Z \
                -extfile "$base.ext"
        else
            openssl x509 -req -in "$base.csr" -CA "$ca.crt" -CAkey "$ca.key" \
                -CAcreateserial -days 2 -extfile "$base.ext" -out "$base.crt"
        fi
        cat "$base.crt" "$base.key" >"$base.pem"
    ) >>"$FG_TMP/openssl.log" 2>&1 || {
        fg_log_add "$FG_TMP/openssl.log"
        hard_error "certificate $base generation failed"
    }
    # Clients of a server with this certificate trust its issuer.
    CERT_CA[$base]=$FG_TMP/pki/$ca.crt
}

# ---- peer servers: common -------------------------------------------------

peer_start() { "${PEER_KIND[$1]:?no peer $1}_peer_start" "$1"; }
peer_stop()
{
    [ -n "${PEER_KIND[$1]:-}" ] || return 0 # never set up: nothing to stop
    "${PEER_KIND[$1]}_peer_stop" "$1"
}
peer_register() { "${PEER_KIND[$1]:?no peer $1}_peer_register" "$@"; }
peer_log() { printf '%s' "${PEER_LOG[$1]}"; }

peer_restart()
{
    peer_stop "$1"
    peer_start "$1"
}

# The default certificate for a peer: DNS-IDs only (ejabberd-safe).
peer_default_cert()
{
    [ -f "$FG_TMP/pki/peer-$1.crt" ] ||
        fg_make_cert "peer-$1" "DNS:$1"
    printf 'peer-%s' "$1"
}

# ---- Prosody peers -----------------------------------------------------------

# prosody_peer_setup DOMAIN IP [KEY=VALUE...]: see the section comment.
prosody_peer_setup()
{
    local dom=$1 ip=$2 kv cert="" s2s=on secure=true dialback=on dtls=""
    local comps="" here d cfg c mods good
    shift 2
    for kv in "$@"; do
        case $kv in
        cert=*) cert=${kv#*=} ;;
        s2s=*) s2s=${kv#*=} ;;
        secure_auth=*) secure=${kv#*=} ;;
        dialback=*) dialback=${kv#*=} ;;
        direct_tls=*) dtls=${kv#*=} ;;
        components=*) comps=${kv#*=} ;;
        level=*) ;;
        *) hard_error "prosody_peer_setup: unknown $kv" ;;
        esac
    done
    if [ ! -x "$PROSODY_BIN" ] || [ ! -x "$PROSODYCTL_BIN" ]; then
        skip "prosody not installed ($PROSODY_BIN)"
    fi
    good=$(peer_default_cert "$dom")
    [ -n "$cert" ] || cert=$good
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    d=$FG_TMP/prosody-$dom
    cfg=$d/prosody.cfg.lua
    [ "${#d}" -lt 80 ] ||
        hard_error "TMPDIR too long for Prosody's admin socket: $d"
    mkdir -p "$d/data" "$d/logs" "$d/certs"
    # The s2s certificate (the variant under test) is DOMAIN.crt, which
    # `certificates = dir` also serves on the direct TLS port (by SNI) and
    # s2s_ssl names for STARTTLS; clients always get a good certificate
    # (ssl), so a client of this server works whatever the s2s variant.
    cp "$FG_TMP/pki/$cert.crt" "$d/certs/$dom.crt"
    cp "$FG_TMP/pki/$cert.key" "$d/certs/$dom.key"
    cp "$FG_TMP/pki/$good.crt" "$d/certs/c2s-$dom.crt"
    cp "$FG_TMP/pki/$good.key" "$d/certs/c2s-$dom.key"
    cp "$FG_CAFILE" "$d/certs/ca.crt"
    printf 'nameserver %s\n' "$FG_DNS_IP" >"$d/resolv.conf"
    mods='"roster"; "saslauth"; "tls"; "disco"; "ping"; "version"; "admin_shell"; "fgtest_dns";'
    [ "$dialback" = on ] && mods="$mods \"dialback\";"
    {
        cat <<EOT
-- Generated by test/integration/lib.sh for test $FG_NAME: peer $dom.
local D = "$d"
run_as_root = true
pidfile = D.."/run.pid"
data_path = D.."/data"
admin_socket = D.."/data/prosody.sock"
log = { debug = D.."/logs/debug.log"; info = D.."/logs/prosody.log"; }
interfaces = { "$ip" }
c2s_ports = { $FG_C2S_PORT }
s2s_ports = { 5269 }
c2s_direct_tls_ports = {}
s2s_direct_tls_ports = { $dtls }
http_ports = {}; https_ports = {}
certificates = D.."/certs"
ssl = { cafile = D.."/certs/ca.crt" }
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = $secure
s2s_timeout = 20
authentication = "internal_hashed"
-- Resolve through the test's DNS (see prosody-plugins/mod_fgtest_dns.lua).
plugin_paths = { "$here/prosody-plugins" }
fgtest_dns_server = "$FG_DNS_IP"
unbound = { resolvconf = D.."/resolv.conf"; hoststxt = false }
modules_enabled = { $mods }
EOT
        if [ "$s2s" = off ]; then
            cat <<EOT
modules_disabled = { "s2s" }
component_interfaces = { "$ip" }
component_ports = { $FG_COMP_PORT }
EOT
        fi
        printf '\nVirtualHost "%s"\n' "$dom"
        printf '\tssl = { certificate = D.."/certs/c2s-%s.crt"; key = D.."/certs/c2s-%s.key" }\n' \
            "$dom" "$dom"
        printf '\ts2s_ssl = { certificate = D.."/certs/%s.crt"; key = D.."/certs/%s.key" }\n\n' \
            "$dom" "$dom"
        for c in $comps; do
            printf 'Component "%s"\n\tcomponent_secret = "%s"\n\n' "${c%%:*}" "${c#*:}"
        done
    } >"$cfg"
    PEER_KIND[$dom]=prosody
    PEER_CLIENT_CA[$dom]=$FG_CAFILE
    PEER_IP[$dom]=$ip
    PEER_DIR[$dom]=$d
    PEER_CFG[$dom]=$cfg
    PEER_LOG[$dom]=$d/logs/prosody.log
    fg_log_add "$d/logs/stdout.log"
    fg_log_add "$d/logs/prosody.log"
}

prosody_peer_register()
{
    local dom=$1
    "$PROSODYCTL_BIN" --config "${PEER_CFG[$dom]}" register "$2" "$dom" "$3" \
        >>"${PEER_DIR[$dom]}/prosodyctl.log" 2>&1 ||
        fail "prosodyctl register $2@$dom failed (see ${PEER_DIR[$dom]}/prosodyctl.log)"
}

prosody_peer_start()
{
    local dom=$1 d=${PEER_DIR[$1]} ip=${PEER_IP[$1]} pid
    echo "=== start $(date +%T.%N)" >>"$d/logs/stdout.log"
    setsid "$PROSODY_BIN" -F --config "${PEER_CFG[$dom]}" \
        >>"$d/logs/stdout.log" 2>&1 </dev/null &
    pid=$!
    PEER_PID[$dom]=$pid
    FG_PGIDS+=("$pid")
    wait_for_port "$ip" "$FG_C2S_PORT" 20 ||
        fail "prosody $dom did not open $ip:$FG_C2S_PORT"
    if grep -q '^s2s_ports' "${PEER_CFG[$dom]}" &&
        ! grep -q '"s2s" }' "${PEER_CFG[$dom]}" &&
        ! wait_for_port "$ip" 5269 5; then
        fail "prosody $dom did not open $ip:5269"
    fi
    if grep -q '^component_ports' "${PEER_CFG[$dom]}" &&
        ! wait_for_port "$ip" "$FG_COMP_PORT" 5; then
        fail "prosody $dom did not open $ip:$FG_COMP_PORT"
    fi
    kill -0 "$pid" 2>/dev/null || fail "prosody $dom exited at start-up"
    # The DNS plugin must have loaded (or lua-unbound be in use).
    wait_for_log "$d/logs/prosody.log" 'legacy resolver: name server|lua-unbound in use' 5 ||
        fail "prosody $dom: mod_fgtest_dns did not load"
    note "prosody $dom up on $ip (pid $pid)"
}

prosody_peer_stop()
{
    local dom=$1 pid=${PEER_PID[$1]:-}
    [ -n "$pid" ] || return 0
    fg_terminate "-$pid" 10 || fail "prosody $dom needed SIGKILL"
    wait "$pid" 2>/dev/null
    wait_port_closed "${PEER_IP[$dom]}" "$FG_C2S_PORT" 5 ||
        fail "prosody $dom: port still open after it exited"
    PEER_PID[$dom]=""
    note "prosody $dom stopped"
}

# ---- ejabberd peers ------------------------------------------------------------

# ejabberd_peer_setup DOMAIN IP [KEY=VALUE...]: see the section comment.
# An s2s-enabled ejabberd 23.01 for DOMAIN: c2s IP:$FG_C2S_PORT, s2s IP:5269
# (STARTTLS required), certificate with DNS-IDs only, trusting the test CA;
# SRV lookups through the test's DNS (inetrc), targets must be IPs.
ejabberd_peer_setup()
{
    local dom=$1 ip=$2 kv cert="" dialback=on dtls="" level=info d n o1 o2 o3 o4
    shift 2
    for kv in "$@"; do
        case $kv in
        cert=*) cert=${kv#*=} ;;
        dialback=*) dialback=${kv#*=} ;;
        direct_tls=*) dtls=${kv#*=} ;;
        level=*) level=${kv#*=} ;;
        secure_auth=* | s2s=on) ;;
        *) hard_error "ejabberd_peer_setup: unknown $kv" ;;
        esac
    done
    if [ ! -x "$EJABBERDCTL_BIN" ] || [ ! -x /usr/bin/erl ]; then
        skip "ejabberd not installed ($EJABBERDCTL_BIN)"
    fi
    id ejabberd >/dev/null 2>&1 || skip "no ejabberd system user"
    [ -n "$cert" ] || cert=$(peer_default_cert "$dom")
    d=$FG_TMP/ejabberd-$dom
    n=fgpeer${FG_NET}x${ip##*.}@$ip
    mkdir -p "$d/etc" "$d/spool" "$d/log" "$d/run" "$d/contrib" "$d/home"
    # One certificate for c2s and s2s: ejabberd pools every certfile
    # (listeners' too) and picks by domain, so a good c2s certificate would
    # also be served on s2s. Clients of a server with a certificate from
    # the unrelated CA trust that CA (probe --on); with a wrong name or an
    # expired certificate, its clients cannot log in.
    cp "$FG_TMP/pki/$cert.pem" "$d/etc/cert.pem"
    cp "$FG_CAFILE" "$d/etc/ca.crt"
    IFS=. read -r o1 o2 o3 o4 <<<"$FG_DNS_IP"
    # SRV through the test's DNS; the Erlang resolver must not fall back
    # to /etc/resolv.conf or /etc/hosts.
    cat >"$d/etc/inetrc" <<EOT
{resolv_conf, ""}.
{hosts_file, ""}.
{nameserver, {$o1,$o2,$o3,$o4}, 53}.
{lookup, [file, dns]}.
{timeout, 2000}.
{retry, 2}.
EOT
    cat >"$d/etc/ejabberdctl.cfg" <<EOT
# Generated by test/integration/lib.sh for test $FG_NAME: peer $dom.
ERLANG_NODE=$n
ERL_DIST_PORT=$FG_PEER_DIST_PORT
INET_DIST_INTERFACE=$ip
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie fgpeer$$"
EJABBERD_PID_PATH=$d/run/ejabberd.pid
CONTRIB_MODULES_PATH=$d/contrib
EJABBERD_BYPASS_WARNINGS=true
EOT
    cat >"$d/etc/ejabberd.yml" <<EOT
# Generated by test/integration/lib.sh for test $FG_NAME: peer $dom.
loglevel: $level
log_rotate_count: 0
hosts:
  - $dom
certfiles:
  - "$d/etc/cert.pem"
ca_file: "$d/etc/ca.crt"
auth_method: internal
auth_password_format: scram
s2s_use_starttls: required
s2s_dns_timeout: 3
s2s_dns_retries: 1
s2s_timeout: 30
outgoing_s2s_timeout: 10
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
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
  -
    port: 5269
    ip: "$ip"
    module: ejabberd_s2s_in
    max_stanza_size: 524288
$(if [ -n "$dtls" ]; then
        printf '  -\n    port: %s\n    ip: "%s"\n    module: ejabberd_s2s_in\n    tls: true\n' \
            "$dtls" "$ip"
    fi)
modules:
  mod_disco: {}
  mod_roster: {}
  mod_ping: {}
  mod_version: {}
$([ "$dialback" = on ] && echo "  mod_s2s_dialback: {}")
EOT
    chown -R ejabberd: "$d"
    chmod 600 "$d/etc/cert.pem"
    runuser -u ejabberd -- test -w "$d/spool" ||
        hard_error "user ejabberd cannot write $d"
    PEER_KIND[$dom]=ejabberd
    PEER_CLIENT_CA[$dom]=${CERT_CA[$cert]:-$FG_CAFILE}
    PEER_IP[$dom]=$ip
    PEER_DIR[$dom]=$d
    PEER_NODE[$dom]=$n
    PEER_LOG[$dom]=$d/log/ejabberd.log
    fg_log_add "$d/log/stdout.log"
    fg_log_add "$d/log/ejabberd.log"
    fg_log_add "$d/log/error.log"
}

ejabberd_peer_ctl()
{
    local dom=$1 d=${PEER_DIR[$1]}
    shift
    HOME=$d/home runuser -u ejabberd -- "$EJABBERDCTL_BIN" \
        --config-dir "$d/etc" --spool "$d/spool" --logs "$d/log" \
        --node "${PEER_NODE[$dom]}" "$@"
}

ejabberd_peer_start()
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
    if ! wait_for_port "$ip" "$FG_C2S_PORT" 10 || ! wait_for_port "$ip" 5269 10; then
        fail "ejabberd $dom started but does not listen on $ip"
    fi
    note "ejabberd $dom up on $ip (pgid $pid)"
}

ejabberd_peer_register()
{
    local dom=$1
    ejabberd_peer_ctl "$dom" register "$2" "$dom" "$3" \
        >>"${PEER_DIR[$dom]}/log/ejabberdctl.out" 2>&1 ||
        fail "ejabberdctl register $2@$dom failed: $(tail -n 3 "${PEER_DIR[$dom]}/log/ejabberdctl.out")"
}

ejabberd_peer_stop()
{
    local dom=$1 pid=${PEER_PID[$1]:-}
    [ -n "$pid" ] || return 0
    fg_terminate "-$pid" 20 || fail "ejabberd $dom needed SIGKILL"
    wait "$pid" 2>/dev/null
    wait_port_closed "${PEER_IP[$dom]}" "$FG_C2S_PORT" 5 ||
        fail "ejabberd $dom: port still open after it exited"
    PEER_PID[$dom]=""
    note "ejabberd $dom stopped"
}

# ---- fedgate with s2s -----------------------------------------------------------

# fedgate_s2s_config FILE [KEY=VALUE...]: a fedgate config with its s2s
# side on. Keys:
#   domain=D (a.test)           the served domain; service JID fedgate.D
#   home=IP (home server, $FG_IP), home_port=P ($FG_COMP_PORT)
#   secret=S ($FG_SECRET_B)     upstream.secret (every peer's component)
#   service_secret=S ($FG_SECRET_GW)
#   listen=IP:PORT ($FG_S2S_IP:5269; "none": no STARTTLS listener)
#   direct_tls=IP:PORT          s2s.direct_tls_listen
#   cert=BASE (gw)              $FG_TMP/pki/BASE.crt/.key
#   ca=FILE ($FG_CAFILE)        tls.ca_file
#   peer=DOMAIN[:AUTH[:TRUST_ANCHOR_FILE]]   repeatable; AUTH any (default),
#                                            certificate or dialback
#   level=L (debug)
# DNS: dns.forwarders = [ "$FG_DNS_IP@53" ].
fedgate_s2s_config()
{
    local file=$1 dom=$FG_DOMAIN home=$FG_IP hport=$FG_COMP_PORT
    local up_secret=$FG_SECRET_B svc=$FG_SECRET_GW listen=$FG_S2S_IP:5269
    local dtls="" cert=gw ca=$FG_CAFILE level=debug kv p peers="" d a t
    shift
    for kv in "$@"; do
        case $kv in
        domain=*) dom=${kv#*=} ;;
        home=*) home=${kv#*=} ;;
        home_port=*) hport=${kv#*=} ;;
        secret=*) up_secret=${kv#*=} ;;
        service_secret=*) svc=${kv#*=} ;;
        listen=*) listen=${kv#*=} ;;
        direct_tls=*) dtls=${kv#*=} ;;
        cert=*) cert=${kv#*=} ;;
        ca=*) ca=${kv#*=} ;;
        level=*) level=${kv#*=} ;;
        peer=*)
            p=${kv#*=}
            IFS=: read -r d a t <<<"$p"
            peers+="    { domain = \"$d\"; auth = \"${a:-any}\";"
            [ -n "$t" ] && peers+=" trust_anchor = \"$t\";"
            peers+=" },"$'\n'
            ;;
        *) hard_error "fedgate_s2s_config: unknown $kv" ;;
        esac
    done
    local dir
    dir=$(dirname "$file")
    mkdir -p "$dir"
    cat >"$file" <<EOT
# Generated by test/integration/lib.sh for test $FG_NAME (s2s).
service_jid = "fedgate.$dom";
domains = [ "$dom" ];
upstream = {
    host = "$home";
    port = $hport;
    secret = "$up_secret";
    service_secret = "$svc";
    backoff_initial_ms = 200;
    backoff_max_ms = 2000;
};
peers = (
${peers%,$'\n'}
);
log = { level = "$level"; };
state_db = "$dir/state.db";
s2s = {
    listen = [ $([ "$listen" = none ] || printf '"%s"' "$listen") ];
    direct_tls_listen = [ $([ -n "$dtls" ] && printf '"%s"' "$dtls") ];
};
tls = {
    certificate = "$FG_TMP/pki/$cert.crt";
    key = "$FG_TMP/pki/$cert.key";
    ca_file = "$ca";
};
dns = { forwarders = [ "$FG_DNS_IP@53" ]; };
EOT
}

# fedgate_has_s2s: 0 when the fedgate binary has the s2s engine.
fedgate_has_s2s()
{
    [ -x "$FEDGATE" ] && "$FEDGATE" --print-config-doc 2>/dev/null |
        grep -q 'direct_tls_listen'
}

# ---- helpers shared by the s2s tests ---------------------------------------------

declare -A S2S_MARK=()
S2S_CASE=""
S2S_T0=0

# s2s_case NAME / s2s_case_done: named, timed cases; the name is also
# written into every fedgate log started during the case.
s2s_case()
{
    S2S_CASE=$1
    S2S_T0=$(date +%s%N)
    note "case $S2S_CASE"
}

s2s_case_done()
{
    note "case $S2S_CASE passed in $((($(date +%s%N) - S2S_T0) / 1000000)) ms"
}

# s2s_gw_start NAME [fedgate_s2s_config keys]: (re)starts fedgate NAME with
# a fresh config and waits until its upstream streams (service JID and
# every peer) are ready and its STARTTLS listener accepts.
s2s_gw_start()
{
    local name=$1 kv dom=$FG_DOMAIN listen=$FG_S2S_IP:5269 p
    shift
    local streams=()
    for kv in "$@"; do
        case $kv in
        domain=*) dom=${kv#*=} ;;
        listen=*) listen=${kv#*=} ;;
        peer=*)
            p=${kv#*=}
            streams+=("${p%%:*}")
            ;;
        esac
    done
    fedgate_stop "$name"
    fedgate_s2s_config "$FG_TMP/$name/fedgate.conf" "$@"
    S2S_MARK[$name]=$(log_mark "$FG_TMP/$name.log")
    echo "=== case ${S2S_CASE:-?}" >>"$FG_TMP/$name.log"
    fedgate_start "$name" "$FG_TMP/$name/fedgate.conf"
    FG_STREAM_DOMAINS=("fedgate.$dom" "${streams[@]}")
    fedgate_wait_ready "$name" 15 "${S2S_MARK[$name]}"
    if [ "$listen" != none ]; then
        wait_for_port "${listen%:*}" "${listen##*:}" 5 ||
            fail "fedgate $name does not listen on $listen"
    fi
}

# s2s_log_has NAME REGEX [TIMEOUT]: fedgate NAME logged a matching line
# since its last s2s_gw_start; the line is shown.
s2s_log_has()
{
    local name=$1 re=$2 log=$FG_TMP/$1.log
    wait_for_log "$log" "$re" "${3:-5}" "${S2S_MARK[$name]:-0}" ||
        fail "$S2S_CASE: fedgate $name's log has no line matching /$re/"
    note "$S2S_CASE: $name: $(tail -c "+$((${S2S_MARK[$name]:-0} + 1))" "$log" |
        grep -Em1 -- "$re" | cut -c1-220)"
}

# s2s_log_lacks NAME REGEX: no matching line since the last s2s_gw_start.
s2s_log_lacks()
{
    local name=$1 re=$2 log=$FG_TMP/$1.log
    ! tail -c "+$((${S2S_MARK[$name]:-0} + 1))" "$log" | grep -Eq -- "$re" ||
        fail "$S2S_CASE: fedgate $name logged /$re/: $(tail -c "+$((${S2S_MARK[$name]:-0} + 1))" "$log" | grep -Em1 -- "$re")"
}

# ==== fault tests (fault-*.sh) ===================================================
#
# Topology: .1 home Prosody a.test (alice), .2 fedgate A "ga", .3 home Prosody
# b.test (bob; components fedgate.b.test and a.test), .4 fedgate B "gb",
# .53 DNS. fault_topology sets up and starts DNS and both home servers;
# fault_gw_start ga|gb [LIMITS] starts a fedgate (LIMITS: libconfig text
# appended to its config, e.g. "limits = { queue_timeout = 3; };");
# fault_gw_kill NAME sends SIGKILL; fault_scen OUT STEPS... runs
# xmpp-scenario as alice and bob in the background (FAULT_SCEN_PID);
# fault_await FILE SECS waits for its @:signal; fault_counts OUT WHO prints
# "sent delivered bounced unaccounted duplicates conditions" of its report.

fault_topology()
{
    local d
    FAULT_HB_IP=127.0.$FG_NET.3 FAULT_GB_IP=127.0.$FG_NET.4
    fedgate_require
    fedgate_has_s2s || fail "$FEDGATE has no s2s engine"
    /usr/bin/python3 -c 'import slixmpp' 2>/dev/null || skip "no python3-slixmpp"
    fg_make_certs
    fg_make_cert gwb "DNS:b.test" "DNS:fedgate.b.test"
    for d in a.test fedgate.a.test; do dns_srv "$d" 5269 "$FG_S2S_IP" 10; done
    for d in b.test fedgate.b.test; do dns_srv "$d" 5269 "$FAULT_GB_IP" 10; done
    dns_start
    prosody_setup
    prosody_register alice alice-pw-1
    prosody_start
    prosody_peer_setup b.test "$FAULT_HB_IP" s2s=off \
        components="fedgate.b.test:$FG_SECRET_GW a.test:secret-a"
    peer_register b.test bob bob-pw
    peer_start b.test
}

fault_gw_start()
{
    local name=$1 conf=$FG_TMP/$1/fedgate.conf
    if [ -n "${2+x}" ] || [ ! -f "$conf" ]; then
        if [ "$name" = ga ]; then
            fedgate_s2s_config "$conf" peer=b.test:certificate
        else
            fedgate_s2s_config "$conf" domain=b.test home="$FAULT_HB_IP" \
                secret=secret-a listen="$FAULT_GB_IP:5269" cert=gwb \
                peer=a.test:certificate
        fi
        printf '%s\n' "${2:-}" >>"$conf"
    fi
    S2S_MARK[$name]=$(log_mark "$FG_TMP/$name.log")
    fedgate_start "$name" "$conf"
    if [ "$name" = ga ]; then
        FG_STREAM_DOMAINS=(fedgate.a.test b.test)
    else
        FG_STREAM_DOMAINS=(fedgate.b.test a.test)
    fi
    fedgate_wait_ready "$name" 15 "${S2S_MARK[$name]}"
}

fault_gw_kill()
{
    local pid
    pid=$(fedgate_pid "$1")
    kill -KILL "$pid" && wait "$pid" 2>/dev/null
    printf -v "FEDGATE_PID_$1" '%s' ""
    note "fedgate $1 (pid $pid) killed with SIGKILL"
}

fault_scen()
{
    local out=$FG_TMP/$1
    shift
    /usr/bin/python3 "$top_srcdir/test/tools/xmpp-scenario.py" \
        --cafile "$FG_CAFILE" --timeout 20 --transcript \
        --account "alice@a.test:alice-pw-1@$FG_IP:$FG_C2S_PORT" \
        --account "bob@b.test:bob-pw@$FAULT_HB_IP:$FG_C2S_PORT" \
        "$@" >"$out" 2>"$out.err" &
    FAULT_SCEN_PID=$!
    FG_PIDS+=("$FAULT_SCEN_PID")
}

fault_await()
{
    local end=$(($(date +%s) + $2))
    until [ -e "$1" ]; do
        kill -0 "$FAULT_SCEN_PID" 2>/dev/null ||
            fail "the scenario ended before $(basename "$1")"
        [ "$(date +%s)" -lt "$end" ] || fail "no $(basename "$1") within $2 s"
        sleep 0.05
    done
}

fault_counts()
{
    sed -nE "s/^report $2 sent=([0-9]+) delivered=([0-9]+) bounced=([0-9]+) unaccounted=([0-9]+) duplicates=([0-9]+).* conditions=(.*)$/\1 \2 \3 \4 \5 \6/p" \
        "$FG_TMP/$1" | tail -1
}
