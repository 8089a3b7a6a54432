//! Keys and values passed in a borrowed form with the same encoding:
//! `&str` for `String`, `&[u8]` and `b".."` for byte strings, slices and
//! arrays for `Vec<T>` values; every path (in place, appended, parked on
//! the device, async) finds what the owned form wrote, and the other way
//! round.

use oxifaster::store::{ReadStatus, Store};

fn small<K: oxifaster::Key, V: oxifaster::Value>() -> Store<K, V> {
    Store::<K, V>::builder()
        .table_size(1 << 10)
        .log_memory_size_bytes(1 << 16)
        .page_size_bits(12)
        .open()
        .expect("open")
}

#[test]
fn string_keys_and_byte_values_take_borrowed_forms() -> oxifaster::Result<()> {
    let store = small::<String, Vec<u8>>();
    let mut session = store.start_session()?;
    session.upsert("alpha", b"one")?;
    session.upsert(&"beta".to_string(), &b"two".to_vec())?;
    // Borrowed and owned forms find each other's records.
    assert_eq!(session.read_blocking(&"alpha".to_string())?, Some(b"one".to_vec()));
    assert_eq!(session.read_blocking("beta")?, Some(b"two".to_vec()));
    // Same length: replaced in place; another length: appended.
    session.upsert("alpha", b"uno")?;
    session.upsert("alpha", &b"eins, zwei"[..])?;
    assert_eq!(session.read("alpha")?, ReadStatus::Found(b"eins, zwei".to_vec()));
    let len = session.read_with("alpha", |v| v.map(<[u8]>::len))?;
    assert_eq!(len, Some(10));
    session.rmw("alpha", &b"!".to_vec())?;
    assert_eq!(session.read_blocking("alpha")?, Some(b"eins, zwei!".to_vec()));
    session.delete("beta")?;
    assert_eq!(session.read_blocking("beta")?, None);

    // Push the first keys to the device: reads of them park, by a
    // borrowed key, and complete.
    for i in 0..2_000u32 {
        session.upsert(format!("filler-{i}").as_str(), &[0u8; 40])?;
    }
    assert!(store.log_regions().head_address > 0, "the log spilled to the device");
    assert_eq!(session.read_blocking("alpha")?, Some(b"eins, zwei!".to_vec()));
    assert_eq!(session.read_blocking("filler-7")?, Some(vec![0u8; 40]));
    assert_eq!(session.read_blocking("missing")?, None);
    Ok(())
}

#[test]
fn vec_values_take_slices_and_arrays() -> oxifaster::Result<()> {
    let store = small::<u64, Vec<u32>>();
    let mut session = store.start_session()?;
    session.upsert(&1, &[1u32, 2, 3])?;
    session.upsert(&2, &[4u32, 5][..])?;
    assert_eq!(session.read_blocking(&1)?, Some(vec![1, 2, 3]));
    assert_eq!(session.read_blocking(&2)?, Some(vec![4, 5]));

    let store = small::<Box<[u8]>, String>();
    let mut session = store.start_session()?;
    session.upsert(b"key", "value")?;
    assert_eq!(session.read_blocking(&b"key"[..])?, Some("value".to_string()));
    let owned: Box<[u8]> = b"key"[..].into();
    assert_eq!(session.read_blocking(&owned)?, Some("value".to_string()));
    Ok(())
}

#[test]
fn integer_literals_still_infer_the_store_types() -> oxifaster::Result<()> {
    // The generic parameters must not turn `&7` into an `i32`.
    let store = small::<u64, u64>();
    let mut session = store.start_session()?;
    session.upsert(&7, &100)?;
    assert_eq!(session.read_blocking(&7)?, Some(100));
    Ok(())
}

#[tokio::test]
async fn async_operations_take_borrowed_forms() -> oxifaster::Result<()> {
    let store = small::<String, String>();
    let mut session = store.start_session()?;
    session.upsert_async("k", "v").await?;
    assert_eq!(session.read_async("k").await?, Some("v".to_string()));
    session.delete_async("k").await?;
    assert_eq!(session.read_async("k").await?, None);
    Ok(())
}
