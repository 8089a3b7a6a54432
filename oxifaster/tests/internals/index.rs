// The hash index (whose entry slots hold raw log addresses) is internal.
use oxifaster::index::HashIndex;

fn main() {
    let _ = HashIndex::new(1 << 10);
}
