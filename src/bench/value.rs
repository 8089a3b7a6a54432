//! The values `oxifaster bench` stores: 8-byte counters (`u64`, FASTER's
//! headline setting) or variable-length byte payloads of a chosen size
//! (`--value-size 100`, or a range `--value-size 64-1024`), each led by a
//! counter so that every RMW run can still be checked for lost updates.

use oxifaster::FasterValue;
use oxifaster::record::{Merge, Value};

/// A variable-length value: a counter that RMW adds to, then `pad` bytes
/// that an update replaces (so an RMW whose input has the stored size
/// updates in place, and one of another size copies the record to the
/// tail).
#[derive(FasterValue, Clone, Debug, PartialEq)]
pub struct Payload {
    /// What RMW adds to.
    #[faster(merge = "sum")]
    pub count: u64,
    /// Filler up to the chosen encoded size.
    pub pad: Vec<u8>,
}

/// A value type the bench runs on.
pub trait BenchValue: Value + Merge + Clone + Send + Sync {
    /// The counter RMW adds to.
    fn counter(&self) -> u64;
    /// A value of `size` encoded bytes whose counter is `count`, or `None`
    /// if this type has no value of that size.
    fn with_size(size: usize, count: u64) -> Option<Self>;
    /// This value with its counter plus 1.
    fn incremented(&self) -> Self;
}

impl BenchValue for u64 {
    fn counter(&self) -> u64 {
        *self
    }
    fn with_size(size: usize, count: u64) -> Option<Self> {
        (size == 8).then_some(count)
    }
    fn incremented(&self) -> Self {
        self + 1
    }
}

impl BenchValue for Payload {
    fn counter(&self) -> u64 {
        self.count
    }
    fn with_size(size: usize, count: u64) -> Option<Self> {
        let base = Payload { count, pad: Vec::new() }.encoded_size();
        let value = Payload { count, pad: vec![0x5a; size.checked_sub(base)?] };
        (value.encoded_size() == size).then_some(value)
    }
    fn incremented(&self) -> Self {
        Payload { count: self.count + 1, pad: self.pad.clone() }
    }
}

/// The smallest `--value-size` a payload can have.
pub fn min_payload_size() -> usize {
    Payload { count: 0, pad: Vec::new() }.encoded_size()
}

/// The value sizes of a run: one size, or a range that values are drawn
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    /// The smallest encoded size.
    pub min: usize,
    /// The largest encoded size.
    pub max: usize,
}

impl ValueSize {
    /// Whether this is the 8-byte counter setting (a `u64` store).
    pub fn is_counter(self) -> bool {
        self.min == 8 && self.max == 8
    }
}

impl std::fmt::Display for ValueSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// Parses `--value-size`: `N` or `MIN-MAX` bytes.
pub fn parse_value_size(s: &str) -> Result<ValueSize, String> {
    let number = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{t}` is not a size in bytes (e.g. 8, 100, 64-1024)"))
    };
    let (min, max) = match s.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => (number(s)?, number(s)?),
    };
    if min > max {
        return Err(format!("the range {min}-{max} is empty"));
    }
    let size = ValueSize { min, max };
    if size.is_counter() {
        return Ok(size);
    }
    let least = min_payload_size();
    if min < least {
        return Err(format!(
            "values other than the 8-byte counter are payloads of at least {least} bytes (a counter and a length)"
        ));
    }
    if max > MAX_VALUE_SIZE {
        return Err(format!(
            "values larger than {MAX_VALUE_SIZE} bytes are not supported by the bench"
        ));
    }
    Ok(size)
}

/// The largest `--value-size` (well within a log page of the default size).
pub const MAX_VALUE_SIZE: usize = 1 << 20;

/// The number of distinct sizes a range is spread over.
const SIZE_CLASSES: usize = 16;

/// Prebuilt values, so that the measured loop never builds one: for every
/// size class, a value with counter 0 (loads and upserts) and one with
/// counter 1 (the RMW input).
#[derive(Debug)]
pub struct Values<V> {
    zeros: Vec<V>,
    ones: Vec<V>,
}

impl Values<u64> {
    /// The 8-byte counters.
    pub fn counters() -> Self {
        Self { zeros: vec![0], ones: vec![1] }
    }
}

impl<V: BenchValue> Values<V> {
    /// The values for `size`.
    pub fn new(size: ValueSize) -> Result<Self, String> {
        let classes =
            if size.min == size.max { 1 } else { SIZE_CLASSES.min(size.max - size.min + 1) };
        let sizes = (0..classes).map(|i| {
            if classes == 1 {
                size.min
            } else {
                size.min + (size.max - size.min) * i / (classes - 1)
            }
        });
        let mut zeros = Vec::with_capacity(classes);
        let mut ones = Vec::with_capacity(classes);
        for s in sizes {
            let missing = || format!("no {} value of {s} bytes", std::any::type_name::<V>());
            zeros.push(V::with_size(s, 0).ok_or_else(missing)?);
            ones.push(V::with_size(s, 1).ok_or_else(missing)?);
        }
        Ok(Self { zeros, ones })
    }

    /// The value that the load stores for `key` (its size class follows
    /// from the key, so that a reload stores the same sizes).
    #[inline]
    pub fn for_key(&self, key: u64) -> &V {
        &self.zeros[class(key, self.zeros.len())]
    }

    /// The RMW input for `key`: an increment of 1 with the size the load
    /// gave the key, so that it merges in place.
    #[inline]
    pub fn increment_for(&self, key: u64) -> &V {
        &self.ones[class(key, self.ones.len())]
    }

    /// An upsert value of a size drawn by `pick` (any `u64`): with a
    /// range, upserts change a record's size.
    #[inline]
    pub fn upsert(&self, pick: u64) -> &V {
        &self.zeros[(pick % self.zeros.len() as u64) as usize]
    }
}

#[inline]
fn class(key: u64, classes: usize) -> usize {
    // The key is already a hash (workload::fnv64); its high bits pick.
    ((key >> 32) % classes as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sizes_are_exact() {
        let least = min_payload_size();
        for size in [least, least + 1, 100, 1000, 4096] {
            let v = Payload::with_size(size, 7).expect("size");
            assert_eq!(v.encoded_size(), size);
            assert_eq!(v.counter(), 7);
        }
        assert!(Payload::with_size(least - 1, 0).is_none());
        assert_eq!(u64::with_size(8, 3), Some(3));
        assert_eq!(u64::with_size(16, 3), None);
    }

    #[test]
    fn parses_sizes_and_ranges() {
        assert!(parse_value_size("8").expect("8").is_counter());
        assert_eq!(parse_value_size("100"), Ok(ValueSize { min: 100, max: 100 }));
        assert_eq!(parse_value_size("64-1024"), Ok(ValueSize { min: 64, max: 1024 }));
        assert!(parse_value_size("1024-64").is_err());
        assert!(parse_value_size("x").is_err());
        assert!(parse_value_size("9").is_err(), "below a payload's least size");
        assert!(parse_value_size(&format!("{}", MAX_VALUE_SIZE + 1)).is_err());
    }

    #[test]
    fn a_range_spreads_over_its_classes_and_keys_keep_their_class() {
        let values = Values::<Payload>::new(ValueSize { min: 64, max: 1024 }).expect("values");
        let sizes: std::collections::BTreeSet<usize> =
            (0..1000u64).map(|k| values.for_key(k << 32).encoded_size()).collect();
        assert_eq!(sizes.len(), SIZE_CLASSES);
        assert_eq!((sizes.first().copied(), sizes.last().copied()), (Some(64), Some(1024)));
        for key in [1u64 << 40, 5 << 33, u64::MAX] {
            let stored = values.for_key(key);
            let input = values.increment_for(key);
            assert_eq!(stored.encoded_size(), input.encoded_size());
            assert_eq!((stored.counter(), input.counter()), (0, 1));
        }
    }
}
