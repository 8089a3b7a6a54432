#!/usr/bin/env bash
# The peer comparison (benches/compare.rs): oxifaster against dashmap,
# oxifaster 0.1.3, RocksDB, redb, fjall and sled, side by side in one run.
# Installs what RocksDB and the chart need (Debian packages) if missing;
# the knobs are the bench's environment variables (see its header), e.g.
#
#   scripts/compare.sh
#   OXIFASTER_COMPARE_KEYS=50000000 OXIFASTER_COMPARE_CHART=BENCHMARKS.png scripts/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -e /usr/include/rocksdb/c.h ] || need+=(librocksdb-dev)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -q
    $sudo_cmd apt-get install -y -q "${need[@]}"
fi
export ROCKSDB_LIB_DIR="${ROCKSDB_LIB_DIR:-/usr/lib/$(uname -m)-linux-gnu}"
exec cargo bench --features compare --bench compare
