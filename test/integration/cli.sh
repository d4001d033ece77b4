#!/bin/bash
# cli.sh: fedgate's command line, and the server snippets it prints.
#
#   --version, --help, an unknown option;
#   --check-config on a good config and on broken ones (each error must
#   name FILE:LINE, or FILE when no line applies), and the daemon refusing
#   to start on a broken config;
#   --print-config: no secrets, and its output loads back to the same dump;
#   --print-server-config prosody: merged into a real Prosody config as its
#   comments say, `prosodyctl check config` accepts it, Prosody starts with
#   it, fedgate attaches and a client pings fedgate's service JID;
#   --print-server-config ejabberd: valid YAML with the right hosts and
#   passwords, merged into a real ejabberd config that starts, fedgate
#   attaches and a client pings the service JID (skipped, with a note, if
#   ejabberd is not installed).
# shellcheck source=test/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fg_init cli

F=$FEDGATE
fedgate_require
fg_make_certs
CONF=$FG_TMP/gw/fedgate.conf
fedgate_config "$CONF"
OUT=$FG_TMP/cli.out
ERR=$FG_TMP/cli.err

# run EXPECTED_RC ARGS...: runs fedgate, stdout in $OUT, stderr in $ERR.
run()
{
    local want=$1 rc
    shift
    timeout 10 "$F" "$@" >"$OUT" 2>"$ERR"
    rc=$?
    if [ "$rc" != "$want" ]; then
        sed 's/^/    stdout: /' "$OUT" >&2
        sed 's/^/    stderr: /' "$ERR" >&2
        fail "fedgate $* exited $rc, expected $want"
    fi
}

# run_fails ARGS...: fedgate must exit with a failure (1 or 2, no crash).
run_fails()
{
    local rc
    timeout 10 "$F" "$@" >"$OUT" 2>"$ERR"
    rc=$?
    case $rc in
    1 | 2) ;;
    *)
        sed 's/^/    stderr: /' "$ERR" >&2
        fail "fedgate $* exited $rc, expected 1 or 2"
        ;;
    esac
}

has()
{
    grep -Eq -- "$2" "$1" || {
        sed 's/^/    | /' "$1" >&2
        fail "$3: no line matching /$2/ in $(basename "$1")"
    }
}

# ---- --version, --help ------------------------------------------------------
run 0 --version
has "$OUT" '^fedgate [0-9]+\.[0-9]+\.[0-9]+' "--version"
if [ -f "$top_builddir/config.h" ]; then
    v=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$top_builddir/config.h")
    [ -z "$v" ] || has "$OUT" "^fedgate $(re_escape "$v")\$" "--version vs configure"
fi
run 0 --help
for opt in --config --check-config --print-config --print-server-config \
    --version --help; do
    has "$OUT" "$opt" "--help"
done
run_fails --no-such-option
[ -s "$ERR" ] || fail "an unknown option prints nothing on stderr"
run 0 --print-config-doc
has "$OUT" 'upstream\.secret' "--print-config-doc"

# ---- --check-config ----------------------------------------------------------
run 0 -c "$CONF" --check-config
note "good config: $(cat "$OUT")"

# broken NAME LINE_RE: the broken copy $FG_TMP/NAME.conf must be refused by
# --check-config with an error naming the file (and line, if LINE_RE says
# so), and the daemon must refuse to start with it.
broken()
{
    local name=$1 want=$2 file=$FG_TMP/$1.conf
    run_fails -c "$file" --check-config
    has "$ERR" "$(re_escape "$file")$want" "broken config '$name'"
    note "broken '$name': $(grep -m1 -F "$file" "$ERR")"
    run_fails -c "$file"
}

lines=$(wc -l <"$CONF")
# An unknown key, appended as the last line.
{ cat "$CONF"; echo 'no_such_key = 1;'; } >"$FG_TMP/unknown-key.conf"
broken unknown-key ":$((lines + 1)):.*no_such_key"
# Not libconfig at all, on line 3.
sed '3i this is { not libconfig' "$CONF" >"$FG_TMP/syntax.conf"
broken syntax ":3:"
# Out of range and wrong type on the port's line.
port_line=$(grep -n 'port = ' "$CONF" | head -n 1 | cut -d: -f1)
sed "${port_line}s/port = [0-9]*/port = 70000/" "$CONF" >"$FG_TMP/range.conf"
broken range ":$port_line:.*port"
sed "${port_line}s/port = [0-9]*/port = \"x\"/" "$CONF" >"$FG_TMP/type.conf"
broken type ":$port_line:.*port"
# A required key missing: the file is named.
grep -v '^service_jid' "$CONF" >"$FG_TMP/missing.conf"
broken missing ".*service_jid"
# No such file.
run_fails -c "$FG_TMP/nonexistent.conf" --check-config
has "$ERR" "$(re_escape "$FG_TMP/nonexistent.conf")" "missing file"

# ---- --print-config -----------------------------------------------------------
run 0 -c "$CONF" --print-config
cp "$OUT" "$FG_TMP/print1.out"
for secret in "$FG_SECRET_GW" "$FG_SECRET_B" "$FG_SECRET_MUC"; do
    ! grep -qF -- "$secret" "$OUT" ||
        fail "--print-config shows the secret '$secret'"
done
has "$OUT" "service_jid = \"fedgate\\.a\\.test\"" "--print-config"
has "$OUT" "backoff_initial_ms = 200" "--print-config"
# What it prints loads again and prints the same (the source line aside).
cp "$OUT" "$FG_TMP/reprint.conf"
run 0 -c "$FG_TMP/reprint.conf" --print-config
diff <(grep -v '^#.*\.conf' "$FG_TMP/print1.out") \
    <(grep -v '^#.*\.conf' "$OUT") >&2 ||
    fail "--print-config output does not load back to the same configuration"

# ---- --print-server-config -------------------------------------------------------
run_fails -c "$CONF" --print-server-config no-such-server

run 0 -c "$CONF" --print-server-config prosody
cp "$OUT" "$FG_TMP/prosody-snippet.cfg.lua"
for d in "fedgate.$FG_DOMAIN" b.test conference.b.test; do
    has "$OUT" "^Component \"$(re_escape "$d")\"" "prosody snippet"
done
has "$OUT" 'modules_disabled.*"s2s"' "prosody snippet"
has "$OUT" "component_secret = \"$FG_SECRET_MUC\"" "prosody snippet"

run 0 -c "$CONF" --print-server-config ejabberd
cp "$OUT" "$FG_TMP/ejabberd-snippet.yml"
/usr/bin/python3 - "$FG_TMP/ejabberd-snippet.yml" "$FG_IP" "$FG_COMP_PORT" \
    "fedgate.$FG_DOMAIN=$FG_SECRET_GW" "b.test=$FG_SECRET_B" \
    "conference.b.test=$FG_SECRET_MUC" <<'EOF' || fail "ejabberd snippet: see above"
import sys, yaml
snip = yaml.safe_load(open(sys.argv[1]))
ip, port = sys.argv[2], int(sys.argv[3])
want = dict(a.split("=", 1) for a in sys.argv[4:])
svc = [l for l in snip.get("listen", []) if l.get("module") == "ejabberd_service"]
assert len(svc) == 1, "expected one ejabberd_service listener, got %r" % svc
l = svc[0]
assert str(l.get("ip")) == ip and int(l.get("port")) == port, l
assert l.get("global_routes") is False, "global_routes must be false"
assert l.get("check_from") is not False, "check_from must not be off"
got = {h: (v or {}).get("password") for h, v in l.get("hosts", {}).items()}
assert got == want, "hosts/passwords %r, expected %r" % (got, want)
EOF

# ---- the Prosody snippet in a real Prosody -----------------------------------------
if [ -x "$PROSODY_BIN" ]; then
    note "phase: Prosody configured with fedgate's snippet"
    # As the snippet says: its global lines before the first VirtualHost,
    # its Component sections at the end of the file.
    PROSODY_COMPONENTS=0
    PROSODY_GLOBAL_EXTRA=$(awk '/^Component /{exit} {print}' "$FG_TMP/prosody-snippet.cfg.lua")
    PROSODY_EXTRA=$(awk '/^Component /{p=1} p{print}' "$FG_TMP/prosody-snippet.cfg.lua")
    prosody_setup
    prosodyctl_run check config >"$FG_TMP/prosody-check.out" 2>&1 || {
        sed 's/^/    | /' "$FG_TMP/prosody-check.out" >&2
        fail "prosodyctl check config refuses the config with the snippet"
    }
    prosody_register "$FG_USER" "$FG_PASSWORD"
    prosody_start
    fedgate_start gwp "$CONF"
    fedgate_wait_ready gwp 15
    probe_ok ping "fedgate.$FG_DOMAIN" expect-error not-allowed ping c.test
    fedgate_stop gwp
    prosody_stop
else
    note "prosody not installed: Prosody snippet checked by content only"
fi

# ---- the ejabberd snippet in a real ejabberd ----------------------------------------
if [ -x "$EJABBERDCTL_BIN" ] && id ejabberd >/dev/null 2>&1; then
    note "phase: ejabberd configured with fedgate's snippet"
    EJ_COMPONENTS=0
    ejabberd_setup
    # Merge as the snippet's comments say: its listener into listen:, its
    # access rules into access_rules:, other top-level keys as given.
    /usr/bin/python3 - "$EJ_DIR/etc/ejabberd.yml" "$FG_TMP/ejabberd-snippet.yml" <<'EOF' ||
import sys, yaml
base = yaml.safe_load(open(sys.argv[1]))
snip = yaml.safe_load(open(sys.argv[2]))
for key, val in snip.items():
    if key == "listen":
        base.setdefault("listen", []).extend(val)
    elif isinstance(val, dict) and isinstance(base.get(key), dict):
        base[key].update(val)
    else:
        base[key] = val
yaml.safe_dump(base, open(sys.argv[1], "w"), default_flow_style=False)
EOF
        fail "cannot merge the ejabberd snippet"
    chown ejabberd: "$EJ_DIR/etc/ejabberd.yml"
    ejabberd_start
    ejabberd_register "$FG_USER" "$FG_PASSWORD"
    fedgate_start gwe "$CONF"
    fedgate_wait_ready gwe 15
    # s2s is off as the snippet says: an unknown domain is refused.
    probe_ok ping "fedgate.$FG_DOMAIN" expect-error forbidden ping c.test
    fedgate_stop gwe
    ejabberd_stop
else
    note "ejabberd not installed: ejabberd snippet checked as YAML only"
fi

fg_finish
