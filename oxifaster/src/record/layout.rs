//! Type layouts and their fingerprints.
//!
//! A [`Layout`] describes how a key or value type lays out its bytes: its
//! name, its size and alignment, and its fields (names, offsets, layouts) or
//! elements. Checkpoints record the layout of the store's key and value types;
//! reopening with types of another layout is an error.
//!
//! The [`Layout::fingerprint`] is XXH3-64 of a canonical, versioned byte
//! serialisation of the layout (see `docs/FORMAT.md`). It depends on nothing
//! but the layout: not on the build, the compiler, or the module path of the
//! type, so it is equal across builds and changes whenever a field's type,
//! order, name or size changes.

use std::borrow::Cow;

/// The version of the layout description format folded into every
/// fingerprint; bumped whenever an encoding rule changes.
pub const LAYOUT_FORMAT_VERSION: u32 = 1;

/// The byte layout of a key or value type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The type's name as written in its definition (`u64`, `Profile`,
    /// `[u8; 16]`).
    pub name: Cow<'static, str>,
    /// `Some(n)` for a fixed-size encoding of `n` bytes.
    pub size: Option<usize>,
    /// The alignment the type needs in memory (1 for byte strings).
    pub align: usize,
    /// What kind of type it is, with its parts.
    pub kind: LayoutKind,
}

/// The shape of a [`Layout`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutKind {
    /// An integer, float or `bool`: the name says which.
    Primitive,
    /// `[T; len]`.
    Array {
        /// The element layout.
        element: Box<Layout>,
        /// The number of elements.
        len: usize,
    },
    /// A variable number of fixed-size elements (`Vec<T>`, `Box<[u8]>`).
    Sequence {
        /// The element layout.
        element: Box<Layout>,
    },
    /// UTF-8 text (`String`).
    Utf8,
    /// A struct: fixed-size (`#[repr(C)]`, fields at their offsets) or
    /// variable-length (fixed head, then length-prefixed tails).
    Struct {
        /// The fields in declaration order.
        fields: Vec<FieldLayout>,
    },
    /// A fieldless enum stored as its `#[repr]` integer.
    Enum {
        /// The integer type of the discriminant (`u8`, `i32`, …).
        repr: Cow<'static, str>,
        /// Each variant's name and discriminant, in declaration order.
        variants: Vec<(Cow<'static, str>, i128)>,
    },
}

/// One field of a struct layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldLayout {
    /// The field's name (`"0"`, `"1"`, … for tuple structs).
    pub name: Cow<'static, str>,
    /// The byte offset of the field in the encoding; `None` for a
    /// variable-length field, whose place depends on the lengths before it.
    pub offset: Option<usize>,
    /// The field's own layout.
    pub layout: Layout,
}

impl Layout {
    /// The layout of a primitive type.
    pub fn primitive(name: &'static str, size: usize, align: usize) -> Self {
        Self { name: Cow::Borrowed(name), size: Some(size), align, kind: LayoutKind::Primitive }
    }

    /// The layout of `[element; len]`.
    pub fn array(element: Layout, len: usize) -> Self {
        let name = format!("[{}; {len}]", element.name);
        Self {
            name: Cow::Owned(name),
            size: element.size.map(|s| s.saturating_mul(len)),
            align: element.align,
            kind: LayoutKind::Array { element: Box::new(element), len },
        }
    }

    /// The layout of a variable-length sequence of `element`.
    pub fn sequence(name: &'static str, element: Layout) -> Self {
        Self {
            name: Cow::Borrowed(name),
            size: None,
            align: element.align,
            kind: LayoutKind::Sequence { element: Box::new(element) },
        }
    }

    /// The layout of UTF-8 text.
    pub fn utf8(name: &'static str) -> Self {
        Self { name: Cow::Borrowed(name), size: None, align: 1, kind: LayoutKind::Utf8 }
    }

    /// The layout of a struct.
    pub fn structure(
        name: &'static str,
        size: Option<usize>,
        align: usize,
        fields: Vec<FieldLayout>,
    ) -> Self {
        Self { name: Cow::Borrowed(name), size, align, kind: LayoutKind::Struct { fields } }
    }

    /// The layout of a fieldless enum.
    pub fn enumeration(
        name: &'static str,
        repr: &'static str,
        size: usize,
        variants: Vec<(&'static str, i128)>,
    ) -> Self {
        Self {
            name: Cow::Borrowed(name),
            size: Some(size),
            align: size,
            kind: LayoutKind::Enum {
                repr: Cow::Borrowed(repr),
                variants: variants.into_iter().map(|(n, d)| (Cow::Borrowed(n), d)).collect(),
            },
        }
    }

    /// The fingerprint: XXH3-64 of the canonical serialisation.
    pub fn fingerprint(&self) -> u64 {
        super::hash_bytes(&self.canonical_bytes())
    }

    /// The canonical serialisation that the fingerprint hashes: a magic,
    /// [`LAYOUT_FORMAT_VERSION`], then the layout tree depth-first, every
    /// integer as little-endian `u64` and every string length-prefixed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"oxifaster-layout");
        out.extend_from_slice(&LAYOUT_FORMAT_VERSION.to_le_bytes());
        self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        fn int(out: &mut Vec<u8>, v: u64) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        fn text(out: &mut Vec<u8>, s: &str) {
            int(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        text(out, &self.name);
        int(out, self.size.map_or(u64::MAX, |s| s as u64));
        int(out, self.align as u64);
        match &self.kind {
            LayoutKind::Primitive => out.push(0),
            LayoutKind::Array { element, len } => {
                out.push(1);
                int(out, *len as u64);
                element.write_canonical(out);
            }
            LayoutKind::Sequence { element } => {
                out.push(2);
                element.write_canonical(out);
            }
            LayoutKind::Utf8 => out.push(3),
            LayoutKind::Struct { fields } => {
                out.push(4);
                int(out, fields.len() as u64);
                for field in fields {
                    text(out, &field.name);
                    int(out, field.offset.map_or(u64::MAX, |o| o as u64));
                    field.layout.write_canonical(out);
                }
            }
            LayoutKind::Enum { repr, variants } => {
                out.push(5);
                text(out, repr);
                int(out, variants.len() as u64);
                for (name, discriminant) in variants {
                    text(out, name);
                    out.extend_from_slice(&discriminant.to_le_bytes());
                }
            }
        }
    }
}

impl FieldLayout {
    /// A field at a fixed offset, or variable-length (`offset: None`).
    pub fn new(name: &'static str, offset: Option<usize>, layout: Layout) -> Self {
        Self { name: Cow::Borrowed(name), offset, layout }
    }
}

impl std::fmt::Display for Layout {
    /// A one-line, Rust-like rendering: `Profile { visits: u64 @0, name: String }`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            LayoutKind::Struct { fields } => {
                write!(f, "{} {{ ", self.name)?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}", field.name, field.layout)?;
                    if let Some(offset) = field.offset {
                        write!(f, " @{offset}")?;
                    }
                }
                f.write_str(" }")
            }
            _ => f.write_str(&self.name),
        }
    }
}
