#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each for a bounded time, one after the other.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   build, then run every target (default 60 s each)
#   scripts/fuzz.sh --build-only           build only (what a CI check runs)
#
# Environment: FUZZ_TARGETS="a b" runs only those; FUZZ_TOOLCHAIN=nightly builds with that
# rustup toolchain instead of the default one.
#
# cargo-fuzz needs unstable compiler flags (-Zsanitizer=address, ...). On a stable toolchain
# RUSTC_BOOTSTRAP=1 allows them; a nightly toolchain does not need it, and it does no harm.
#
# Prints the executions of each target (libFuzzer's stat::number_of_executed_units) and exits
# non-zero when any target crashed; the input that crashed is kept in fuzz/artifacts/TARGET/
# and reproduces with `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-…`.
# The corpus grows in fuzz/corpus/TARGET (not committed); fuzz/seeds/TARGET holds the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BUILD_ONLY=0
SECONDS_PER_TARGET=60
case "${1:-}" in
"") ;;
--build-only) BUILD_ONLY=1 ;;
-h | --help)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    if ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
        echo "usage: $0 [SECONDS_PER_TARGET | --build-only]" >&2
        exit 2
    fi
    SECONDS_PER_TARGET=$1
    ;;
esac

ALL_TARGETS="xml_parsers sign_verify range_parse emulator_request"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}

export RUSTC_BOOTSTRAP=1
CARGO=(cargo)
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    CARGO=(cargo "+$FUZZ_TOOLCHAIN")
fi

if ! "${CARGO[@]}" fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

echo "== building fuzz targets: $TARGETS"
if [ "$TARGETS" = "$ALL_TARGETS" ]; then
    "${CARGO[@]}" fuzz build
else
    for t in $TARGETS; do
        "${CARGO[@]}" fuzz build "$t"
    done
fi
if [ "$BUILD_ONLY" = 1 ]; then
    echo "== fuzz targets built"
    exit 0
fi

# Extra libFuzzer options and corpus directories per target.
args_for() {
    case "$1" in
    emulator_request)
        echo "-dict=$ROOT/fuzz/dicts/emulator_request.dict -max_len=4096 -timeout=30"
        ;;
    *)
        echo "-timeout=10"
        ;;
    esac
}

LOGS="$ROOT/fuzz/target/fuzz-logs"
mkdir -p "$LOGS"
failed=()
summary=()
for t in $TARGETS; do
    mkdir -p "$ROOT/fuzz/corpus/$t"
    dirs=("$ROOT/fuzz/corpus/$t")
    if [ -d "$ROOT/fuzz/seeds/$t" ]; then
        dirs+=("$ROOT/fuzz/seeds/$t")
    fi
    # The emulator target keeps its buckets in a temporary directory: give it one to delete.
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/cosmount-fuzz-$t.XXXXXX")
    log="$LOGS/$t.log"
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s (log: ${log#"$ROOT"/})"
    status=0
    # shellcheck disable=SC2046 # args_for gives separate words on purpose
    TMPDIR="$scratch" "${CARGO[@]}" fuzz run "$t" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
        $(args_for "$t") >"$log" 2>&1 || status=$?
    rm -rf "$scratch"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    execs=${execs:-0}
    if [ "$status" = 0 ]; then
        line="$t: $execs executions in ${SECONDS_PER_TARGET}s, no crash"
    else
        failed+=("$t")
        line="$t: CRASHED after $execs executions (exit $status)"
        grep -E "panicked at|^ *(left|right):|ERROR: libFuzzer|SUMMARY|Test unit written to|deadly signal" "$log" |
            head -20 | sed 's/^/    /' || true
    fi
    echo "   $line"
    summary+=("$line")
done

echo "== summary"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/target/fuzz-logs/)" >&2
    exit 1
fi
