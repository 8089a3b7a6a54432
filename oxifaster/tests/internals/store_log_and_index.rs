// A store hands out no reference to its log or its index: only read-only
// values (`log_regions`, `index_stats`).
fn main() {
    let store = oxifaster::Store::<u64, u64>::builder().open().unwrap();
    let _ = store.log();
    let _ = store.index();
}
