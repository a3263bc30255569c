# Shared by run-smoke.sh and run-campaign.sh (sourced from fuzz/).

# targets=(the arguments, or every file in fuzz_targets/)
list_targets() {
    targets=()
    if [ "$#" -gt 0 ]; then
        targets=("$@")
    else
        for f in fuzz_targets/*.rs; do
            targets+=("$(basename "$f" .rs)")
        done
    fi
}

# Copies seeds/TARGET (and, if present, stand-in-seeds/TARGET) into corpus/TARGET.
seed_corpus() {
    local target="$1" seeds
    mkdir -p "corpus/$target"
    for seeds in "seeds/$target" "stand-in-seeds/$target"; do
        if [ -d "$seeds" ]; then
            cp -n "$seeds"/* "corpus/$target"/ 2>/dev/null || true
        fi
    done
}
