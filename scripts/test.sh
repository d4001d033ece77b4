#!/usr/bin/env bash
# test.sh: set up and run fedgate's whole test suite on Debian 12.
#
#   1. install the build and test dependencies (apt, idempotent)
#   2. build with -Werror and run `make check` (unit + integration tests
#      with real Prosody and ejabberd), and the format check
#   3. build again with AddressSanitizer + UBSan and run `make check`
#   3b. `make check-valgrind` in the first build (unit tests, fuzz corpora
#      and fedgate itself in a few integration tests under valgrind)
#   4. a short libFuzzer run of every fuzz target (clang)
#   5. `make distcheck` (the tarball builds and its unit tests pass)
#
# Build trees go to _build/ and _build-san/ so the source stays clean.
# Set FEDGATE_SKIP_SAN=1, FEDGATE_SKIP_VALGRIND=1, FEDGATE_SKIP_FUZZ=1 or
# FEDGATE_SKIP_DISTCHECK=1 to leave a step out; FEDGATE_FUZZ_SECONDS sets
# the time per fuzz target.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '\n=== %s ===\n' "$*"; }

total_pass=0
total_fail=0
# Adds up one build's results: each Check program's "Checks: N, Failures:
# F, Errors: E" line, and each shell test's PASS/FAIL.
count_results() {
    local dir=$1 line checks bad f
    while read -r line; do
        checks=$(sed -n 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' <<<"$line")
        [ -n "$checks" ] || continue
        set -- $checks
        total_pass=$((total_pass + $1 - $2 - $3))
        total_fail=$((total_fail + $2 + $3))
    done < <(cat "$dir"/test/check_*.log 2>/dev/null)
    for f in "$dir"/test/integration/*.trs; do
        [ -f "$f" ] || continue
        if grep -q '^:test-result: PASS' "$f"; then
            total_pass=$((total_pass + 1))
        elif grep -q '^:test-result: SKIP' "$f"; then
            :
        else
            total_fail=$((total_fail + 1))
        fi
    done
}

step "dependencies"
./scripts/install-deps.sh

step "autogen"
./autogen.sh >/dev/null

run_suite() {
    local dir=$1; shift
    mkdir -p "$dir"
    (cd "$dir" && "$top/configure" -q "$@")
    make -C "$dir" -j"$jobs" >/dev/null
    if ! make -C "$dir" -j"$jobs" check; then
        for log in "$dir"/test-suite.log; do
            [ -f "$log" ] && cat "$log"
        done
        count_results "$dir"
        echo "$total_pass passed, $total_fail failed"
        return 1
    fi
    count_results "$dir"
}

step "build (-Werror) and make check"
run_suite _build

if [ "${FEDGATE_SKIP_SAN:-0}" != 1 ]; then
    step "sanitizer build (ASan + UBSan) and make check"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    LSAN_OPTIONS=suppressions=$top/test/fuzz/lsan.supp \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_suite _build-san --enable-sanitizers
fi

if [ "${FEDGATE_SKIP_VALGRIND:-0}" != 1 ]; then
    # about 2 minutes on 2 cores
    step "valgrind: unit tests, fuzz corpora, fedgate in three integration tests"
    if ! make -C _build check-valgrind; then
        [ -f _build/test-suite.log ] && cat _build/test-suite.log
        exit 1
    fi
fi

if [ "${FEDGATE_SKIP_FUZZ:-0}" != 1 ]; then
    step "fuzz targets (libFuzzer, ${FEDGATE_FUZZ_SECONDS:-60} s each)"
    mkdir -p _build-fuzz
    (cd _build-fuzz && "$top/configure" -q --enable-fuzzing CC=clang)
    make -C _build-fuzz -j"$jobs" >/dev/null
    make -C _build-fuzz fuzz-run FUZZ_SECONDS="${FEDGATE_FUZZ_SECONDS:-60}"
fi

if [ "${FEDGATE_SKIP_DISTCHECK:-0}" != 1 ]; then
    step "distcheck"
    make -C _build -j"$jobs" distcheck \
        TESTS='$(CHECK_TESTS) test/integration/cli.sh' >/dev/null
    echo "distcheck passed"
fi
step "format check"
make -C _build format-check

step "all tests passed"
echo "$total_pass passed, $total_fail failed"
