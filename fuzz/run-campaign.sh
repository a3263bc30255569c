#!/usr/bin/env bash
# One round of the fuzz campaign (issue 13): each target until CAMPAIGN_RUNS executions or
# CAMPAIGN_SECONDS, whichever comes first, with libFuzzer's 2 GiB RSS limit and a 10 s
# per-input timeout. Every round appends one row per target to campaign/runs.tsv
# (committed); campaign/table.sh sums the rows into the table in README.md.
#
#   fuzz/run-campaign.sh                         # every target, defaults below
#   CAMPAIGN_SECONDS=600 fuzz/run-campaign.sh session event
#
# The binaries must be built first (`RUSTC_BOOTSTRAP=1 cargo fuzz build` in fuzz/); the
# script runs them directly so that two rounds can share the machine's cores without
# rebuilding. Each target's corpus is corpus/TARGET, seeded from seeds/TARGET and, if
# present, stand-in-seeds/TARGET (the same seeds signed with the fuzzing stand-in:
# `RUSTFLAGS="--cfg fuzzing" TDS_SEEDS_OUT=stand-in-seeds cargo run --example gen_seeds`).
# Crashes, timeouts and OOMs land in artifacts/TARGET/ and fail the round.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
runs="${CAMPAIGN_RUNS:-10000000}"
seconds="${CAMPAIGN_SECONDS:-3600}"
bin_dir="target/x86_64-unknown-linux-gnu/release"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- ../crates . 2>/dev/null || echo +)"
mkdir -p campaign/logs
[ -f campaign/runs.tsv ] || printf 'start_utc\ttarget\tcommit\tseconds\texecs\tcov\tft\tcorpus\tpeak_rss_mb\tresult\n' > campaign/runs.tsv

# shellcheck source=lib.sh
. ./lib.sh
list_targets "$@"

failed=()
for target in "${targets[@]}"; do
    bin="$bin_dir/$target"
    if [ ! -x "$bin" ]; then
        echo "no fuzz binary $bin: run RUSTC_BOOTSTRAP=1 cargo fuzz build first" >&2
        exit 2
    fi
    corpus="corpus/$target"
    mkdir -p "artifacts/$target"
    seed_corpus "$target"
    start="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    log="campaign/logs/$target-$start.log"
    echo "=== $target: up to $runs runs / ${seconds}s from $(find "$corpus" -type f | wc -l) inputs (log $log)"
    t0="$(date +%s)"
    status=0
    "$bin" "$corpus" -runs="$runs" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$target/" \
        > "$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - t0 ))
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)"
    last="$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corp="$(find "$corpus" -type f | wc -l)"
    result=ok
    if [ "$status" -ne 0 ]; then
        if grep -q 'ERROR: libFuzzer: timeout' "$log"; then result=timeout
        elif grep -q 'out-of-memory' "$log"; then result=oom
        else result=crash
        fi
        failed+=("$target:$result")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$start" "$target" "$commit" \
        "$elapsed" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$corp" "${rss:-0}" "$result" \
        >> campaign/runs.tsv
    echo "    $result: ${execs:-0} execs in ${elapsed}s, cov ${cov:-?} ft ${ft:-?}, peak RSS ${rss:-?} MB"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz campaign round FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
