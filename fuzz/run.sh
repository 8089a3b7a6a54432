#!/usr/bin/env bash
# Runs the fuzz targets with libFuzzer (cargo fuzz), each for SECS seconds
# (default 60), starting from the committed seed corpora in corpus/<target>.
#
#   fuzz/run.sh                 # every target, 60 s each
#   fuzz/run.sh 600 log_commit  # one target, 10 minutes
#
# Installs cargo-fuzz if it is missing. libFuzzer needs the sanitizer flags
# of a nightly compiler; RUSTC_BOOTSTRAP=1 lets the stable one accept them.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(log_entry log_commit checkpoint_meta index_checkpoint record log_page log_ops store_ops store_dir)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    # A private copy of the corpus, so that a run does not add its finds to
    # the committed seeds.
    work="$(mktemp -d)"
    cp -r "corpus/$target/." "$work/"
    echo "== $target ($secs s)"
    cargo fuzz run --release "$target" "$work" -- \
        -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" 2>&1 |
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb|ERROR|panicked|SUMMARY" || true
    rm -rf "$work"
done
