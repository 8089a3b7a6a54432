//! The hot tier's value: the user's value, or a deletion marker.
//!
//! A delete in an F2 store must hide older versions of the key in the cold
//! tier, and a hot-tier lookup must tell "deleted here" from "not here, look
//! in the cold tier". The hot store's own tombstones read as absent, so the
//! F2 store writes its deletes as values: [`Tiered::Deleted`]. Migration
//! carries them to the cold tier like any other value, and cold compaction
//! drops them once nothing older of their key remains there.
//!
//! Encoding: one 8-byte word (0 live, 1 deleted, native byte order), then
//! the value's own encoding (for a deleted value of a fixed-size type,
//! zeros of that size, so that the type keeps its fixed size). The value
//! starts 8 bytes in, so it keeps the log's 8-byte alignment for views.

use crate::record::{AlignedBytes, CodecError, FieldLayout, Layout, Merge, Sink, Value, ValueArg};

const LIVE: u64 = 0;
const DELETED: u64 = 1;
/// The bytes before the value.
pub(crate) const HEAD: usize = 8;

/// A value in the hot tier of an F2 store: the user's value or a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tiered<V> {
    /// The key's value.
    Live(V),
    /// The key is deleted (older values in the cold tier are hidden).
    Deleted,
}

/// A zero-copy view of a [`Tiered`] value.
#[allow(missing_debug_implementations)] // `V::View` need not be `Debug`
pub enum TieredView<'a, V: Value> {
    /// A view of the key's value.
    Live(V::View<'a>),
    /// The key is deleted.
    Deleted,
}

/// The state word of an encoding, if `bytes` holds one.
pub(crate) fn state(bytes: &[u8]) -> Result<bool, CodecError> {
    let Some(head) = bytes.get(..HEAD) else {
        return Err(CodecError::Truncated {
            type_name: "Tiered",
            needed: HEAD,
            found: bytes.len(),
        });
    };
    let mut word = [0u8; HEAD];
    word.copy_from_slice(head);
    match u64::from_ne_bytes(word) {
        LIVE => Ok(true),
        DELETED => Ok(false),
        other => Err(CodecError::InvalidDiscriminant { type_name: "Tiered", value: other as i128 }),
    }
}

/// Whether the encoding `bytes` is a deletion (false for one that does
/// not decode: the caller keeps what it cannot read).
pub(crate) fn is_deleted(bytes: &[u8]) -> bool {
    matches!(state(bytes), Ok(false))
}

/// The encoding of [`Tiered::Live`] of the value encoded as `value`.
pub(crate) fn live_bytes(value: &[u8]) -> AlignedBytes {
    AlignedBytes::from_encoder(HEAD + value.len(), |s| {
        s.put(&LIVE.to_ne_bytes());
        s.put(value);
    })
}

/// The encoding of [`Tiered::Deleted`] for values of `V`.
pub(crate) fn deleted_bytes<V: Value>() -> AlignedBytes {
    Tiered::<V>::Deleted.to_aligned_bytes()
}

fn put_zeros<S: Sink + ?Sized>(sink: &mut S, mut n: usize) {
    const ZEROS: [u8; 64] = [0; 64];
    while n > 0 {
        let part = n.min(ZEROS.len());
        sink.put(&ZEROS[..part]);
        n -= part;
    }
}

impl<V: Value> Value for Tiered<V> {
    const FIXED_SIZE: Option<usize> = match V::FIXED_SIZE {
        Some(n) => Some(n + HEAD),
        None => None,
    };
    type View<'a> = TieredView<'a, V>;

    fn encoded_size(&self) -> usize {
        HEAD + match self {
            Tiered::Live(v) => v.encoded_size(),
            Tiered::Deleted => V::FIXED_SIZE.unwrap_or(0),
        }
    }

    fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
        match self {
            Tiered::Live(v) => {
                sink.put(&LIVE.to_ne_bytes());
                v.encode(sink);
            }
            Tiered::Deleted => {
                sink.put(&DELETED.to_ne_bytes());
                put_zeros(sink, V::FIXED_SIZE.unwrap_or(0));
            }
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match state(bytes)? {
            true => Ok(Tiered::Live(V::decode(&bytes[HEAD..])?)),
            false => Ok(Tiered::Deleted),
        }
    }

    fn view(bytes: &[u8]) -> Result<Self::View<'_>, CodecError> {
        match state(bytes)? {
            true => Ok(TieredView::Live(V::view(&bytes[HEAD..])?)),
            false => Ok(TieredView::Deleted),
        }
    }

    fn layout() -> Layout {
        let value = V::layout();
        let size = value.size.map(|n| n + HEAD);
        Layout::structure(
            "Tiered",
            size,
            8,
            vec![
                FieldLayout::new("state", Some(0), Layout::primitive("u64", 8, 8)),
                FieldLayout::new("value", value.size.map(|_| HEAD), value),
            ],
        )
    }
}

/// The hot store's own read-modify-write of a tiered value (the F2
/// session merges through conditional updates instead, which can consult
/// the cold tier; this gives the hot store the merge its pending
/// completions are written against): a live input merges into a live
/// value, a deleted value restarts from the input, a deletion input
/// deletes.
impl<V: Merge> Merge for Tiered<V> {
    fn initial(input: &Self) -> Self {
        match input {
            Tiered::Live(x) => Tiered::Live(V::initial(x)),
            Tiered::Deleted => Tiered::Deleted,
        }
    }

    fn in_place(stored: &mut [u8], input: &Self) -> bool {
        match (state(stored), input) {
            (Ok(true), Tiered::Live(x)) => V::in_place(&mut stored[HEAD..], x),
            _ => false,
        }
    }

    fn copy_update(old: Self::View<'_>, input: &Self) -> Self {
        match (old, input) {
            (TieredView::Live(old), Tiered::Live(x)) => Tiered::Live(V::copy_update(old, x)),
            (TieredView::Deleted, Tiered::Live(x)) => Tiered::Live(V::initial(x)),
            (_, Tiered::Deleted) => Tiered::Deleted,
        }
    }
}

/// A user's value argument written as a live [`Tiered`] value, without a
/// copy: the state word, then the argument's own encoding.
pub(crate) struct LiveArg<'a, W: ?Sized>(pub &'a W);

impl<V: Value, W: ValueArg<V> + ?Sized> ValueArg<Tiered<V>> for LiveArg<'_, W> {
    #[inline(always)]
    fn value_arg_size(&self) -> usize {
        HEAD + self.0.value_arg_size()
    }

    #[inline(always)]
    fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(&LIVE.to_ne_bytes());
        self.0.encode_value_arg(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_deleted_round_trip_with_a_fixed_size() {
        let live = Tiered::Live(42u64);
        assert_eq!(Tiered::<u64>::FIXED_SIZE, Some(16));
        let bytes = live.to_aligned_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(Tiered::<u64>::decode(bytes.as_slice()).expect("decode"), live);
        let deleted = Tiered::<u64>::Deleted.to_aligned_bytes();
        assert_eq!(deleted.len(), 16, "a deletion keeps the fixed size");
        assert!(is_deleted(deleted.as_slice()));
        assert_eq!(Tiered::<u64>::decode(deleted.as_slice()).expect("decode"), Tiered::Deleted);
    }

    #[test]
    fn variable_length_values_and_bad_bytes() {
        let live = Tiered::Live(String::from("hello"));
        let bytes = live.to_aligned_bytes();
        assert!(matches!(
            Tiered::<String>::view(bytes.as_slice()).expect("view"),
            TieredView::Live("hello")
        ));
        assert_eq!(Tiered::<String>::Deleted.encoded_size(), 8);
        let mut bad = bytes.as_slice().to_vec();
        bad[0] = 7;
        assert!(Tiered::<String>::decode(&bad).is_err(), "an unknown state is an error");
        assert!(Tiered::<String>::decode(&bad[..3]).is_err(), "a truncated head is an error");
        assert_ne!(Tiered::<u64>::layout_fingerprint(), u64::layout_fingerprint());
    }
}
