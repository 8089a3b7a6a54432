#!/usr/bin/env bash
# Runs the unsafe-heavy tests under AddressSanitizer (TESTING.md, L8): the
# engine's unit tests (epoch, hash index, hybrid log, devices, records,
# FasterLog), the stress tests and the FasterLog and checkpoint suites.
#
#   scripts/asan.sh            # the default set
#   scripts/asan.sh --test faster_log   # any cargo test arguments
#
# Needs the sanitizer flags of a nightly compiler; RUSTC_BOOTSTRAP=1 lets
# the stable one accept them. Skips (exit 0, with a message) where the
# sanitizer cannot run: not x86_64/aarch64 Linux, or no sanitizer runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
host="$(rustc -vV | sed -n 's/^host: //p')"
case "$host" in
    x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
    *) echo "asan.sh: AddressSanitizer is not supported on $host; skipping"; exit 0 ;;
esac
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address ${RUSTFLAGS:-}"
export RUSTDOCFLAGS="-Zsanitizer=address"
# Leaks of intentionally leaked test fixtures are not errors here; memory
# errors are.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
# Huge-page mappings are fine under ASan, but keep allocations on the heap
# so that the sanitizer sees them.
export OXIFASTER_NO_HUGE_PAGES=1
if ! echo 'fn main() {}' | rustc -Zsanitizer=address --target "$host" -o /tmp/asan-probe - 2>/dev/null; then
    echo "asan.sh: this toolchain cannot build with -Zsanitizer=address; skipping"
    exit 0
fi
# A separate target directory: sanitized and normal builds do not mix.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/asan}"
if [ $# -gt 0 ]; then
    exec cargo test --target "$host" "$@"
fi
cargo test --target "$host" -p oxifaster --lib
cargo test --target "$host" \
    --test epoch_stress --test index_stress --test store_stress --test store_model \
    --test faster_log --test faster_log_crash --test checkpoint --test fuzz_smoke \
    --test trait_boundary --test hostile_index --test read_integrity --test pending_ops
