#!/usr/bin/env bash
# Runs every fuzz target for a short while, starting from the committed seeds.
#
#   fuzz/run-smoke.sh               # FUZZ_SECONDS=10 per target
#   FUZZ_SECONDS=300 fuzz/run-smoke.sh canonical_cbor
#
# Targets are the files in fuzz_targets/ (or the names given as arguments). Each one's
# corpus is fuzz/corpus/TARGET (ignored by git), seeded from fuzz/seeds/TARGET (and
# fuzz/stand-in-seeds/TARGET when present: see README.md); crashes
# land in fuzz/artifacts/TARGET. Exits non-zero if any target fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${FUZZ_SECONDS:-10}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# cargo fuzz builds take no --locked: fetch the locked versions first so its build uses
# exactly what fuzz/Cargo.lock records.
cargo fetch --locked

# shellcheck source=lib.sh
. ./lib.sh
list_targets "$@"

failed=()
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    seed_corpus "$target"
    echo "=== $target: ${seconds}s from $(find "$corpus" -type f | wc -l) corpus inputs"
    # cargo fuzz passes -Z flags to rustc; RUSTC_BOOTSTRAP lets the stable toolchain take
    # them. Only this step needs it.
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke run FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke run passed: ${targets[*]}"
