//! `#[derive(FasterKey)]` and `#[derive(FasterValue)]` for oxifaster.
//!
//! Use them through the `oxifaster` crate, which re-exports both. The derives
//! read the struct into a model ([`model`]), reporting every problem at once
//! with a span on the offending field or attribute, then generate the trait
//! implementations ([`codec`], [`merge`]). Soundness is not computed here:
//! the generated code states it as trait bounds and compile-time assertions
//! (plain-old-data fields, no padding, alignment) that the compiler checks.
//! Everything generated is wrapped in `const _: () = { … };` and names items
//! by absolute paths (`::oxifaster::…`, or the `#[faster(crate = "…")]`
//! override), so it works under `#![no_implicit_prelude]`.

mod attr;
mod codec;
mod merge;
mod model;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `oxifaster::record::Key` (and `PodKey` for fixed-size structs).
///
/// - A `#[repr(C)]` struct of integers, integer arrays and other fixed-size
///   key structs is a plain-old-data key: its bytes are its encoding.
/// - A struct with `Vec<T>`, `String` or `Box<[u8]>` fields is a
///   variable-length key: fixed fields, then length-prefixed tails.
/// - A `#[repr(u8)]` (or other integer repr) enum of unit variants encodes
///   as its discriminant.
#[proc_macro_derive(FasterKey, attributes(faster))]
pub fn derive_faster_key(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, model::Derive::Key).into()
}

/// Derives `oxifaster::record::Value` and `oxifaster::record::Merge`.
///
/// Fixed-size (`#[repr(C)]`, zero-copy `&Self` view) and variable-length
/// structs (a generated `NameRef<'a>` view), and integer-repr enums.
///
/// Attributes: `#[faster(merge = "sum" | "min" | "max" | "replace" | "or" |
/// "and")]` or `#[faster(merge_with = "path::to::fn")]` on a field (a
/// `fn(&mut Field, &Field)`) or on the struct (the default for its fields, or
/// a `fn(&mut Self, &Self)` for the whole value); `#[faster(view = "Name")]`
/// renames the view type; `#[faster(crate = "path")]` names the oxifaster
/// crate.
#[proc_macro_derive(FasterValue, attributes(faster))]
pub fn derive_faster_value(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, model::Derive::Value).into()
}

fn expand(input: &DeriveInput, derive: model::Derive) -> proc_macro2::TokenStream {
    match model::Model::from_input(input, derive) {
        Ok(model) => match derive {
            model::Derive::Key => codec::key_impl(&model),
            model::Derive::Value => {
                let (mut outside, mut inside) = codec::value_impl(&model);
                inside.extend(merge::merge_impl(&model));
                outside.extend(codec::wrap(inside));
                outside
            }
        },
        Err(errors) => errors.into_compile_error(),
    }
}
