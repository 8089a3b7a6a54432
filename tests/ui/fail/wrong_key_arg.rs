use oxifaster::Store;

fn main() {
    let store = Store::<u64, String>::builder().open().unwrap();
    let mut session = store.start_session().unwrap();
    // A `&str` cannot stand for a `u64` key.
    session.upsert("seven", "value").unwrap();
}
