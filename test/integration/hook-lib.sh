# shellcheck shell=bash
#
# hook-lib.sh: helpers shared by hook-prosody.sh and hook-ejabberd.sh, the
# tests of the ready-made upstream.peer_hook scripts in config/hooks/
# (sourced after lib.sh and fg_init).
#
# The hook is run the way fedgate runs it:
#   /bin/sh -c '<peer_hook> "$@"' fedgate-peer-hook ACTION DOMAIN...
# with the secrets on standard input and FEDGATE_UPSTREAM_HOST/PORT and
# FEDGATE_SERVICE_JID in the environment.
#
#   hook_run RC ACTION DOMAIN... [< stdin]   runs it; its output (stdout
#       and stderr) in $HOOK_OUT, shown indented; fails the test unless it
#       exits RC ("nonzero" accepts any failure); its wall time in
#       $HOOK_MS, also noted. It sets variables: feed it with < <(...),
#       not from a pipeline (a subshell)
#   hook_out_has REGEX / hook_out_lacks REGEX
#   hook_no_secrets SECRET...   none of them in any hook output so far
#   gw_status NAME              SIGUSR1 to fedgate NAME, then prints the
#       "status: upstream ..." lines it logged ($GW_NSTREAMS of them)
#   gw_upstream_state NAME DOMAIN   prints that stream's state (ready,
#       waiting, ...) from a fresh status dump
#
# HOOK_CMD is the peer_hook string (the test sets it).

HOOK_N=0
HOOK_ALL_OUT=()

hook_run()
{
    local want=$1 rc t0
    shift
    HOOK_N=$((HOOK_N + 1))
    HOOK_OUT=$FG_TMP/hook.$HOOK_N.out
    HOOK_ALL_OUT+=("$HOOK_OUT")
    t0=$(date +%s%N)
    FEDGATE_UPSTREAM_HOST=$FG_IP FEDGATE_UPSTREAM_PORT=$FG_COMP_PORT \
        FEDGATE_SERVICE_JID=fedgate.$FG_DOMAIN \
        timeout 60 /bin/sh -c "$HOOK_CMD \"\$@\"" fedgate-peer-hook "$@" \
        >"$HOOK_OUT" 2>&1
    rc=$?
    HOOK_MS=$((($(date +%s%N) - t0) / 1000000))
    sed 's/^/    hook: /' "$HOOK_OUT" >&2
    note "hook $* exited $rc in $HOOK_MS ms"
    case $want in
    nonzero) [ "$rc" != 0 ] || fail "hook $* succeeded; it should have failed" ;;
    *) [ "$rc" = "$want" ] || fail "hook $* exited $rc (expected $want)" ;;
    esac
    [ "$rc" != 124 ] || fail "hook $* hit the 60 s timeout"
}

hook_out_has()
{
    grep -Eq -- "$1" "$HOOK_OUT" || fail "hook output has no line matching /$1/"
}

hook_out_lacks()
{
    ! grep -Eq -- "$1" "$HOOK_OUT" || fail "hook output has a line matching /$1/"
}

hook_no_secrets()
{
    local s f
    for s in "$@"; do
        for f in "${HOOK_ALL_OUT[@]}"; do
            ! grep -qF -- "$s" "$f" || fail "hook output $f shows a secret"
        done
    done
}

gw_status()
{
    local name=$1 log=$FG_TMP/$1.log mark end
    mark=$(log_mark "$log")
    kill -USR1 "$(fedgate_pid "$name")" || fail "cannot signal fedgate $name"
    # The handler logs a header and then one line per stream, all at once.
    end=$(($(date +%s) + 5))
    until [ "$(count_log "$log" 'status: upstream ' "$mark")" -ge "$GW_NSTREAMS" ]; do
        [ "$(date +%s)" -lt "$end" ] || fail "fedgate $name wrote no full status on SIGUSR1"
        sleep 0.05
    done
    tail -c "+$((mark + 1))" "$log" | grep -o 'status: upstream .*'
}

gw_upstream_state()
{
    gw_status "$1" | sed -n "s/^status: upstream $(re_escape "$2"): \([a-z]*\),.*/\1/p"
}
