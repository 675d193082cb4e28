#!/usr/bin/env bash
# Runs every test: unit and protocol tests (normal build, then ASan+UBSan), the release builds
# with gcc and clang (compile only), a short fuzzing run, then the real-guest tests.
# Ends with one line "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
pass=0 fail=0 skip=0
failed_names=()
# The failures' own lines, repeated at the end: a CI page that shows only the log's tail
# still says what failed and why.
failure_lines=()

# Runs one GLib test binary in TAP mode and adds its subtests to the counts.
run_unit() {
    local exe=$1 label=$2 out rc
    out=$("$exe" --tap 2>&1); rc=$?
    local p f s
    p=$(grep -cE '^ok [0-9]+' <<<"$out" | tr -d ' ')
    s=$(grep -cE '^ok [0-9]+ .*# SKIP' <<<"$out" | tr -d ' ')
    f=$(grep -cE '^not ok' <<<"$out" | tr -d ' ')
    p=$((p - s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or sanitizer report
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    echo "unit[$label] $(basename "$exe"): $p passed, $f failed, $s skipped"
    if [ "$f" -ne 0 ]; then
        failed_names+=("$label/$(basename "$exe")")
        local why
        why=$(grep -E '^not ok|ERROR|runtime error|Sanitizer' <<<"$out" | head -20)
        [ -n "$why" ] || why="exited with $rc"
        echo "$why"
        mapfile -t -O "${#failure_lines[@]}" failure_lines < <(sed "s|^|unit[$label] $(basename "$exe"): |" <<<"$why")
    fi
}

run_units() {
    local dir=$1 label=$2
    for exe in "$dir"/tests/test_*; do
        [ -f "$exe" ] && [ -x "$exe" ] && run_unit "$exe" "$label"
    done
}

# Adds PASS:/FAIL:/SKIP: lines printed by a scripted suite.
run_suite() {
    local label=$1; shift
    local log; log=$(mktemp)
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local p f s
    p=$(grep -c '^PASS:' "$log"); f=$(grep -c '^FAIL:' "$log"); s=$(grep -c '^SKIP:' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL: $label exited with $rc"; fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$f" -ne 0 ]; then
        failed_names+=("$label")
        mapfile -t -O "${#failure_lines[@]}" failure_lines < <(grep '^FAIL:' "$log" | head -20)
        [ "$rc" -eq 0 ] || grep -q '^FAIL:' "$log" || failure_lines+=("FAIL: $label exited with $rc")
    fi
    rm -f "$log"
}

echo "== unit tests"
run_units "$BUILD" default

echo "== protocol tests again with the request thread pool (--thread-pool-size=4)"
for t in test_ops test_locks test_protocol test_queues; do
    VIRTIOFSD_TEST_ARGS="--thread-pool-size=4" run_unit "$BUILD/tests/$t" thread-pool
done

# Distributions build with their own flags and without --werror: check that the optimised
# builds they run compile without a warning, with both compilers (compile only).
# One line each: "PASS: build-release-gcc", "FAIL: ..." or "SKIP: ..." (no such compiler).
build_matrix() {
    local cc dir log
    for cc in gcc clang; do
        dir=build-release-$cc
        if ! command -v "$cc" >/dev/null; then echo "SKIP: $dir ($cc not installed)"; continue; fi
        log=$(mktemp)
        if { [ -f "$dir/build.ninja" ] ||
             CC=$cc meson setup "$dir" --buildtype=release --werror; } >"$log" 2>&1 &&
           ninja -C "$dir" >>"$log" 2>&1; then
            echo "PASS: $dir"
        else
            grep -E 'error|warning' "$log" | head -20
            echo "FAIL: $dir"
        fi
        rm -f "$log"
    done
}

echo "== release builds (gcc, clang; compile only, warnings are errors)"
run_suite build-matrix build_matrix

echo "== unit tests under ASan + UBSan"
if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debug --werror >/dev/null
fi
if ninja -C build-asan >/dev/null; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    run_units build-asan asan
    unset ASAN_OPTIONS UBSAN_OPTIONS
else
    echo "FAIL: the ASan build does not compile"; fail=$((fail + 1)); failed_names+=("asan-build")
fi

echo "== fuzzing (libFuzzer, ${FUZZ_CHECK_SECONDS:-30} s per target)"
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
        -Db_lundef=false --werror >/dev/null
fi
if ninja -C build-fuzz >/dev/null; then
    run_suite fuzz bash tests/fuzz/run-fuzz.sh "${FUZZ_CHECK_SECONDS:-30}"
else
    echo "FAIL: the fuzz build does not compile"; fail=$((fail + 1)); failed_names+=("fuzz-build")
fi

echo "== guest tests (QEMU, the kernel's virtiofs driver)"
export VIRTIOFSD=$PWD/$BUILD/virtiofsd
run_suite guest bash tests/guest/test-guest.sh --cache=always,never
run_suite conformance bash tests/guest/test-conformance.sh --cache=never,always
run_suite options bash tests/guest/test-options.sh
run_suite reconnect bash tests/guest/test-reconnect.sh
run_suite upgrade bash tests/guest/test-upgrade.sh
run_suite multiqueue bash tests/guest/test-multiqueue.sh
run_suite sandbox bash tests/guest/test-sandbox.sh
run_suite backing-fs bash tests/guest/test-backing-fs.sh
run_suite fd-limit bash tests/guest/test-fd-limit.sh
run_suite idmap-tag bash tests/guest/test-idmap-tag.sh
run_suite libvirt bash tests/guest/test-libvirt.sh

echo "== the guest suite again under QEMU 10 (bookworm-backports, unpacked privately)"
if qemu10=$(bash tests/guest/fetch-qemu10.sh | tail -1) && [ -x "$qemu10" ]; then
    VG_QEMU=$qemu10 run_suite guest-qemu10 bash tests/guest/test-guest.sh --cache=always
    VG_QEMU=$qemu10 run_suite upgrade-qemu10 bash tests/guest/test-upgrade.sh --only=load
    echo "== live migration between two QEMU 10s, a daemon each"
    VG_QEMU=$qemu10 run_suite migration bash tests/guest/test-migration.sh \
        --pairs=ours:ours,rust:ours --modes=find-paths,file-handles
    # To the Rust virtiofsd: its format carries no locks, so the guest keeps them itself
    # (skipped when the peer from ../shared/peers is not installed).
    rust=${RUST_VIRTIOFSD:-/opt/virtiofsd-peers/bin/rust-virtiofsd}
    VG_QEMU=$qemu10 DAEMON_DST=$rust \
        DAEMON_SRC="$PWD/$BUILD/virtiofsd --migration-format=rust -o no_posix_lock,no_flock" \
        run_suite migration-to-rust bash tests/guest/test-migration.sh --modes=find-paths
else
    echo "FAIL: QEMU 10 could not be fetched (tests/guest/fetch-qemu10.sh)"
    fail=$((fail + 1)); failed_names+=("guest-qemu10")
fi

if [ ${#failed_names[@]} -gt 0 ]; then
    echo "== what failed"
    printf '%s\n' "${failure_lines[@]}" | cut -c1-400
    echo "failed: ${failed_names[*]}"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
