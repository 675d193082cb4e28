#!/usr/bin/env bash
# Runs each libFuzzer harness for SECONDS seconds (default 30) on a copy of the seed corpus in
# a temp dir (the tree is never modified). Prints one line per target:
#   PASS: fuzz/<target> (<runs> runs in <s> s)
#   FAIL: fuzz/<target>: <reason>
# and exits non-zero if any target crashed, hit a sanitizer report or failed a check.
# Crash inputs and logs of failed targets are kept under $FUZZ_ARTIFACTS
# (default /tmp/vfs-fuzz-artifacts).
#
# Environment: BUILD_FUZZ (default build-fuzz), FUZZ_TARGETS (default: all five),
# FUZZ_ARGS (extra libFuzzer flags), FUZZ_LOG (harness log level, default off).
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
build=${BUILD_FUZZ:-build-fuzz}
targets=${FUZZ_TARGETS:-fuzz_vhost_user fuzz_virtqueue fuzz_fuse fuzz_state fuzz_journal}
artifacts=${FUZZ_ARTIFACTS:-/tmp/vfs-fuzz-artifacts}
work=$(mktemp -d "${TMPDIR:-/tmp}/vfs-fuzz-run.XXXXXX")
trap 'rm -rf "$work"' EXIT

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
for t in $targets; do
    exe=$build/tests/fuzz/$t
    if [ ! -x "$exe" ]; then
        echo "FAIL: fuzz/$t: $exe not built (configure with -Dfuzzing=true, see make fuzz)"
        failed=1
        continue
    fi
    if [ ! -d tests/fuzz/corpus/$t ]; then
        echo "FAIL: fuzz/$t: no seed corpus in tests/fuzz/corpus/$t"
        failed=1
        continue
    fi
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts" "$work/$t/tmp"
    cp tests/fuzz/corpus/$t/* "$work/$t/corpus/"
    log=$work/$t/log
    start=$(date +%s)
    # shellcheck disable=SC2086
    TMPDIR=$work/$t/tmp "$exe" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 \
        -print_final_stats=1 -detect_leaks=1 -artifact_prefix="$work/$t/artifacts/" \
        ${FUZZ_ARGS:-} "$work/$t/corpus" >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    reason=
    if grep -qE 'ERROR: (Address|Leak|Undefined|Memory|Thread)Sanitizer|runtime error:' "$log"; then
        reason="sanitizer report: $(grep -m1 -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$log")"
    elif grep -q '==FUZZ CHECK FAILED==' "$log"; then
        reason="check failed: $(grep -m1 -A0 '==FUZZ CHECK FAILED==' "$log" | sed 's/.*FAILED== //')"
    elif grep -qE '^==[0-9]+== ERROR: libFuzzer' "$log"; then
        reason="libFuzzer: $(grep -m1 -E '== ERROR: libFuzzer' "$log" | sed 's/.*ERROR: libFuzzer: //')"
    elif [ "$rc" -ne 0 ]; then
        reason="exited with status $rc"
    elif [ -z "$runs" ]; then
        reason="no final stats (did it run?)"
    fi
    if [ -n "$reason" ]; then
        dest=$artifacts/$t-$(date +%Y%m%d-%H%M%S)
        mkdir -p "$dest"
        cp "$log" "$dest/log"
        cp "$work/$t/artifacts/"* "$dest/" 2>/dev/null
        echo "FAIL: fuzz/$t: $reason (log and crash input in $dest)"
        tail -n 40 "$log" | sed 's/^/    /'
        failed=1
    else
        echo "PASS: fuzz/$t ($runs runs in $took s)"
    fi
done
exit $failed
