#!/usr/bin/env bash
# run.sh: fedgate's benchmarks, one command (issue 6):
#
#   sudo ./bench/run.sh
#
# On Debian 12, from a fresh clone: installs the dependencies
# (scripts/install-deps.sh), builds fedgate and the bench programs (`make
# bench`) out of tree in _build/ as scripts/demo.sh does (a tree already
# configured in place is built in place instead: automake allows only one),
# then runs every sub-bench:
#
#   bench/e2e.sh    figure 1: end-to-end throughput, Prosody ⇄ fedgate ═
#                   fedgate ⇄ Prosody versus Prosody's own s2s, side by side
#   bench/relay.sh  figures 2-5: fedgate's own relay rate, latency, memory per
#                   idle session, handshake rate
#
# Each prints "FIGURE <key> <value> <unit> <text>" and "TARGET <key>
# <met|missed> <text>" lines on stdout. This script collects them, prints one
# table (figures, then targets), and writes bench/results.json and
# bench/results.csv with the figures, the targets and the machine they came
# from (CPU model, cores, kernel, OS, load average, date, git describe).
# Each sub-bench's output is kept in bench/logs/.
#
# Exit status: 0 when every sub-bench ran to its end (a missed target does
# not change it), 1 when one failed, was skipped or is missing.
#
# Environment:
#   BENCH_SUITES    sub-benches to run (default "e2e relay")
#   BENCH_QUICK=1   a short run (minutes less; noisier figures): fewer
#                   messages, one e2e round, shorter relay phases
#   BENCH_SKIP_DEPS=1, BENCH_SKIP_BUILD=1   leave those steps out
#   BENCH_OUT       where results.json/.csv and logs/ go (default bench/)
#   BENCH_NO_GIT=1  do not run git (the commit is then read from .git)
#   BENCH_ALLOW_SANITIZERS=1  run even when the build has sanitizers on
#   and each sub-bench's own knobs: E2E_* (bench/e2e.sh), BENCH_* (see
#   bench/relay.sh). The defaults take about 5 minutes on 2 cores.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
SUITES=${BENCH_SUITES:-e2e relay}
OUT=${BENCH_OUT:-$top/bench}
LOGS=$OUT/logs
jobs=$(nproc 2>/dev/null || echo 2)
t_start=$(date +%s)

say() { printf '\n== %s\n' "$*" >&2; }
die()
{
    printf 'bench/run.sh: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (sudo ./bench/run.sh): the servers bind port 53 on 127.x and run as their own users"
mkdir -p "$LOGS" || die "cannot create $LOGS"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    : "${E2E_MESSAGES:=5000}" "${E2E_ROUNDS:=1}"
    : "${BENCH_RELAY_STANZAS:=60000}" "${BENCH_LAT_SECONDS:=4}"
    : "${BENCH_MEM_SESSIONS:=1000}" "${BENCH_HS_SECONDS:=3}"
    export E2E_MESSAGES E2E_ROUNDS BENCH_RELAY_STANZAS BENCH_LAT_SECONDS \
        BENCH_MEM_SESSIONS BENCH_HS_SECONDS
fi

# ---- dependencies and build ---------------------------------------------------

if [ "${BENCH_SKIP_DEPS:-0}" != 1 ]; then
    say "installing dependencies (scripts/install-deps.sh)"
    ./scripts/install-deps.sh >&2 || die "scripts/install-deps.sh failed"
fi

if [ -f "$top/config.status" ]; then
    # A developer tree configured in place: automake refuses a second,
    # out-of-tree configuration, so build here.
    BUILD_DIR=$top
else
    BUILD_DIR=$top/_build
fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building fedgate and the bench programs in $BUILD_DIR"
    if [ "$BUILD_DIR" != "$top" ]; then
        ./autogen.sh >"$LOGS/build.log" 2>&1 || {
            tail -n 30 "$LOGS/build.log" >&2
            die "autogen.sh failed"
        }
        mkdir -p "$BUILD_DIR"
        if [ ! -f "$BUILD_DIR/Makefile" ]; then
            (cd "$BUILD_DIR" && ../configure -q) >>"$LOGS/build.log" 2>&1 || {
                tail -n 30 "$LOGS/build.log" >&2
                die "configure failed (see $LOGS/build.log)"
            }
        fi
    fi
    make -C "$BUILD_DIR" -j"$jobs" fedgate >>"$LOGS/build.log" 2>&1 || {
        tail -n 30 "$LOGS/build.log" >&2
        die "building fedgate failed (see $LOGS/build.log)"
    }
    if grep -q '^bench:' "$top/Makefile.am"; then
        make -C "$BUILD_DIR" -j"$jobs" bench >>"$LOGS/build.log" 2>&1 || {
            tail -n 30 "$LOGS/build.log" >&2
            die "make bench failed (see $LOGS/build.log)"
        }
    else
        echo "bench/run.sh: Makefile.am has no bench target yet: bench programs not built" >&2
    fi
fi
export FEDGATE=$BUILD_DIR/fedgate BUILD_DIR top_srcdir=$top top_builddir=$BUILD_DIR
[ -x "$FEDGATE" ] || die "no fedgate binary at $FEDGATE"
# Figures from a sanitizer build say nothing about fedgate (ASan doubles its
# CPU per stanza): a tree configured in place may carry any configuration.
build_cflags=$(sed -n 's/^CFLAGS = //p' "$BUILD_DIR/Makefile" 2>/dev/null)
build_san=$(sed -n 's/^SAN_CFLAGS = //p' "$BUILD_DIR/Makefile" 2>/dev/null)
if [ -n "$build_san" ] && [ "${BENCH_ALLOW_SANITIZERS:-0}" != 1 ]; then
    die "$BUILD_DIR is configured with sanitizers ($build_san): reconfigure" \
        "without --enable-sanitizers/--enable-fuzzing, or set BENCH_ALLOW_SANITIZERS=1"
fi

# ---- machine facts ---------------------------------------------------------------

cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)
cores=$(nproc)
kernel=$(uname -sr)
os=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
date_iso=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# git describe when git is there; else the commit named by .git/HEAD.
git_rev=""
if [ "${BENCH_NO_GIT:-0}" != 1 ] && command -v git >/dev/null 2>&1 &&
    [ -e "$top/.git" ]; then
    git_rev=$(git -C "$top" describe --always --dirty --tags 2>/dev/null)
fi
if [ -z "$git_rev" ] && [ -f "$top/.git/HEAD" ]; then
    head_ref=$(cat "$top/.git/HEAD")
    case $head_ref in
    ref:\ *)
        ref=${head_ref#ref: }
        git_rev=$(cat "$top/.git/$ref" 2>/dev/null ||
            awk -v r="$ref" '$2 == r { print $1 }' "$top/.git/packed-refs" 2>/dev/null)
        ;;
    *) git_rev=$head_ref ;;
    esac
    git_rev=${git_rev:0:12}
fi

# ---- the sub-benches ----------------------------------------------------------------

declare -A STATUS=() SECONDS_TAKEN=()
run_suite()
{
    local name=$1 script=$top/bench/$1.sh rc t0
    if [ ! -f "$script" ]; then
        say "$name: $script is missing: skipped"
        STATUS[$name]=missing
        return
    fi
    say "$name: $script (stderr also in $LOGS/$name.log)"
    t0=$(date +%s)
    (cd "$top" && bash "$script") >"$LOGS/$name.out" 2> >(tee "$LOGS/$name.log" >&2)
    rc=$?
    SECONDS_TAKEN[$name]=$(($(date +%s) - t0))
    case $rc in
    0) STATUS[$name]=ok ;;
    77) STATUS[$name]=skipped ;;
    *) STATUS[$name]="failed (exit $rc)" ;;
    esac
    say "$name: ${STATUS[$name]} in ${SECONDS_TAKEN[$name]} s"
}

for s in $SUITES; do
    run_suite "$s"
done
# Let tee finish writing the logs.
wait

# ---- the table and the files -----------------------------------------------------------

lines=$OUT/.lines.$$
: >"$lines"
for s in $SUITES; do
    [ -f "$LOGS/$s.out" ] || continue
    grep -E '^(FIGURE|TARGET) ' "$LOGS/$s.out" | sed "s/^/$s /" >>"$lines"
done

say "results ($(($(date +%s) - t_start)) s in all)"
printf '%s, %s cores, %s, %s; load at start %s; %s%s\n\n' "$cpu_model" "$cores" \
    "$kernel" "$os" "$load_start" "$date_iso" "${git_rev:+; $git_rev}"
awk '$2 == "FIGURE" {
        if (!n++) printf "%-32s %12s  %-11s %s\n", "figure", "value", "unit", "description"
        d = ""; for (i = 6; i <= NF; i++) d = d (i > 6 ? " " : "") $i
        printf "%-32s %12s  %-11s %s\n", $3, $4, $5, d
    }' "$lines"
echo
awk '$2 == "TARGET" {
        if (!n++) printf "%-32s %-7s %s\n", "target", "", "what"
        d = ""; for (i = 5; i <= NF; i++) d = d (i > 5 ? " " : "") $i
        printf "%-32s %-7s %s\n", $3, $4, d
    }' "$lines"
echo
ok=1
for s in $SUITES; do
    printf '%-8s %s%s\n' "$s" "${STATUS[$s]:-not run}" \
        "${SECONDS_TAKEN[$s]:+ (${SECONDS_TAKEN[$s]} s)}"
    [ "${STATUS[$s]:-}" = ok ] || ok=0
done

suites_kv=""
for s in $SUITES; do
    suites_kv+="$s=${STATUS[$s]:-not run}=${SECONDS_TAKEN[$s]:-0};"
done
knobs=$(env | grep -E '^(E2E|BENCH)_' | sort | tr '\n' ';')
/usr/bin/python3 - "$lines" "$OUT/results.json" "$OUT/results.csv" \
    "$cpu_model" "$cores" "$kernel" "$os" "$load_start" "$date_iso" \
    "$git_rev" "$suites_kv" "$knobs" "$build_cflags $build_san" \
    <<'PY' || die "cannot write the results files"
import csv, json, sys

(lines, out_json, out_csv, cpu, cores, kernel, os_name, load, date, rev,
 suites_kv, knobs, cflags) = sys.argv[1:]

def number(v):
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v else f

figures, targets = [], []
with open(lines, encoding="utf-8") as f:
    for line in f:
        parts = line.rstrip("\n").split(" ")
        suite, kind = parts[0], parts[1]
        if kind == "FIGURE" and len(parts) >= 5:
            figures.append({"suite": suite, "key": parts[2],
                            "value": number(parts[3]), "unit": parts[4],
                            "description": " ".join(parts[5:])})
        elif kind == "TARGET" and len(parts) >= 4:
            targets.append({"suite": suite, "key": parts[2],
                            "status": parts[3], "text": " ".join(parts[4:])})
suites = {}
for item in filter(None, suites_kv.split(";")):
    name, status, secs = item.split("=", 2)
    suites[name] = {"status": status, "seconds": int(secs)}
machine = {"cpu_model": cpu, "cores": int(cores), "kernel": kernel,
           "os": os_name, "loadavg_at_start": load,
           "build_cflags": cflags.strip()}
settings = dict(kv.split("=", 1) for kv in filter(None, knobs.split(";")))
doc = {"date": date, "git": rev or None, "machine": machine,
       "settings": settings, "suites": suites, "figures": figures,
       "targets": targets}
with open(out_json, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
with open(out_csv, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(["kind", "suite", "key", "value", "unit", "description"])
    for k, v in [("date", date), ("git", rev)] + list(machine.items()):
        w.writerow(["machine", "", k, v, "", ""])
    for fig in figures:
        w.writerow(["figure", fig["suite"], fig["key"], fig["value"],
                    fig["unit"], fig["description"]])
    for t in targets:
        w.writerow(["target", t["suite"], t["key"], t["status"], "", t["text"]])
PY
rm -f "$lines"
echo
echo "written: $OUT/results.json $OUT/results.csv (logs in $LOGS)"
[ "$ok" = 1 ] || exit 1
exit 0
