//! Generates `Merge<Self>` from the merge attributes.
//!
//! - Fixed-size structs merge field by field on a `&mut Self` viewed in the
//!   record: always in place. Fields are read and written by value, so
//!   `#[repr(C, packed)]` structs work too.
//! - Variable-length structs merge their fixed fields in place in the encoded
//!   head; replaced tails are overwritten in place when the new bytes have the
//!   old length, and otherwise the merge falls back to a copy-update.
//! - Enums are replaced.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::attr::{MergeKind, MergeSpec};
use crate::codec::{HEAD_CONST, TAILS_CONST, construct, offset_const, size_const};
use crate::model::{Field, Model, Shape};

pub fn merge_impl(model: &Model) -> TokenStream {
    match &model.shape {
        Shape::Fixed { fields } => pod_merge(model, fields),
        Shape::VarLen { fields, tuple } => varlen_merge(model, fields, *tuple),
        Shape::Enum { variants, .. } => enum_merge(model, variants),
    }
}

/// `merged(stored, input)` for a field of a kind, by value.
fn kind_expr(
    model: &Model,
    kind: MergeKind,
    field: &Field,
    stored: TokenStream,
    input: TokenStream,
) -> TokenStream {
    let k = &model.krate;
    let ty = &field.ty;
    let (trait_name, method) = match kind {
        MergeKind::Sum => ("MergeSum", "merge_sum"),
        MergeKind::Min => ("MergeMin", "merge_min"),
        MergeKind::Max => ("MergeMax", "merge_max"),
        MergeKind::Or => ("MergeOr", "merge_or"),
        MergeKind::And => ("MergeAnd", "merge_and"),
        MergeKind::Replace => return input,
    };
    let (t, m) = (format_ident!("{}", trait_name), format_ident!("{}", method));
    quote_spanned!(ty.span()=> <#ty as #k::record::merge::#t>::#m(#stored, #input))
}

fn pod_merge(model: &Model, fields: &[Field]) -> TokenStream {
    let k = &model.krate;
    let core = quote!(#k::__private::core);
    let ident = &model.ident;
    let body = match &model.merge_with {
        Some(path) => quote!(#path(stored, input);),
        None => {
            let statements = fields.iter().map(|f| {
                let m = &f.member;
                match &f.merge {
                    // Fields are `Copy` (plain old data); they are
                    // cloned, not moved, so that a field that is not
                    // (a variable-length struct nested by mistake) is
                    // reported once, by the field's own bound, and not
                    // again as a move out of a reference.
                    MergeSpec::Kind(MergeKind::Replace, _) => {
                        quote!(stored.#m = #core::clone::Clone::clone(&input.#m);)
                    }
                    MergeSpec::Kind(kind, _) => {
                        let merged =
                            kind_expr(model, *kind, f, quote!(stored.#m), quote!(input.#m));
                        quote!(stored.#m = #merged;)
                    }
                    MergeSpec::With(path) => quote! {{
                        let mut __oxifaster_field = #core::clone::Clone::clone(&stored.#m);
                        #path(&mut __oxifaster_field, &input.#m);
                        stored.#m = __oxifaster_field;
                    }},
                }
            });
            quote!(#(#statements)*)
        }
    };
    quote! {
        #[inline(always)]
        fn __oxifaster_merge_fields(stored: &mut #ident, input: &#ident) {
            #body
        }
        impl #k::record::Merge for #ident {
            #[inline(always)]
            fn initial(input: &Self) -> Self {
                #core::clone::Clone::clone(input)
            }
            #[inline(always)]
            fn in_place(stored: &mut [u8], input: &Self) -> bool {
                match #k::__private::pod::value_view_mut::<Self>(stored) {
                    #core::option::Option::Some(stored) => {
                        __oxifaster_merge_fields(stored, input);
                        true
                    }
                    #core::option::Option::None => false,
                }
            }
            #[inline(always)]
            fn copy_update(old: &Self, input: &Self) -> Self {
                let mut new = #core::clone::Clone::clone(old);
                __oxifaster_merge_fields(&mut new, input);
                new
            }
        }
    }
}

fn varlen_merge(model: &Model, fields: &[Field], tuple: bool) -> TokenStream {
    let k = &model.krate;
    let core = quote!(#k::__private::core);
    let ident = &model.ident;
    let name = model.name_lit();
    let view = &model.view;
    let varlen = quote!(#k::__private::varlen);
    let tail_trait = quote!(#k::record::Tail);
    let clone = quote!(#core::clone::Clone::clone);
    let (head, tails) = (format_ident!("{}", HEAD_CONST), format_ident!("{}", TAILS_CONST));

    // copy_update: every field from the old view and the input.
    let copy_update = match &model.merge_with {
        Some(path) => quote! {
            let mut new = old.into_owned();
            #path(&mut new, input);
            new
        },
        None => {
            let exprs = fields
                .iter()
                .map(|f| {
                    let (m, t) = (&f.member, &f.ty);
                    match (&f.merge, f.is_tail) {
                        (MergeSpec::Kind(MergeKind::Replace, _), _) => quote!(#clone(&input.#m)),
                        (MergeSpec::Kind(kind, _), false) => {
                            kind_expr(model, *kind, f, quote!(old.#m), quote!(input.#m))
                        }
                        (MergeSpec::Kind(..), true) => quote!(#clone(&input.#m)),
                        (MergeSpec::With(path), true) => quote! {{
                            let mut __oxifaster_field = <#t as #tail_trait>::tail_owned(old.#m);
                            #path(&mut __oxifaster_field, &input.#m);
                            __oxifaster_field
                        }},
                        (MergeSpec::With(path), false) => quote! {{
                            let mut __oxifaster_field = old.#m;
                            #path(&mut __oxifaster_field, &input.#m);
                            __oxifaster_field
                        }},
                    }
                })
                .collect();
            construct(fields, tuple, quote!(Self), exprs)
        }
    };

    // in_place: possible when no tail needs a function and no struct-level
    // function is given; tails must keep their length.
    let in_place_possible = model.merge_with.is_none()
        && fields.iter().all(|f| !f.is_tail || matches!(f.merge, MergeSpec::Kind(..)));
    let in_place = if in_place_possible {
        let ranges = format_ident!("__oxifaster_ranges");
        let mut tail_index = 0usize;
        let mut checks = Vec::new();
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            let (m, t) = (&f.member, &f.ty);
            if f.is_tail {
                let idx = tail_index;
                tail_index += 1;
                checks.push(quote! {
                    if !#varlen::same_len(&#ranges[#idx], <#t as #tail_trait>::tail_bytes(&input.#m)) {
                        return false;
                    }
                });
                writes.push(quote! {
                    #varlen::overwrite(stored, #clone(&#ranges[#idx]), <#t as #tail_trait>::tail_bytes(&input.#m));
                });
            } else {
                let (oc, sc) = (offset_const(i), size_const(i));
                let old = format_ident!("__oxifaster_old_{}", i);
                let new = format_ident!("__oxifaster_new_{}", i);
                reads.push(quote! {
                    let #old: #t = match <#t as #k::record::Value>::decode(#varlen::field(stored, #oc, #sc)) {
                        #core::result::Result::Ok(v) => v,
                        #core::result::Result::Err(_) => return false,
                    };
                });
                let merged = match &f.merge {
                    MergeSpec::Kind(MergeKind::Replace, _) => quote!(#clone(&input.#m)),
                    MergeSpec::Kind(kind, _) => {
                        kind_expr(model, *kind, f, quote!(#old), quote!(input.#m))
                    }
                    MergeSpec::With(path) => quote! {{
                        let mut __oxifaster_field = #old;
                        #path(&mut __oxifaster_field, &input.#m);
                        __oxifaster_field
                    }},
                };
                reads.push(quote!(let #new: #t = #merged;));
                writes.push(quote! {
                    let _ = <#t as #k::record::Value>::encode_into(&#new, #varlen::field_mut(stored, #oc, #sc));
                });
            }
        }
        quote! {
            let #ranges = match #varlen::tail_ranges::<#tails>(stored, #head, #name) {
                #core::result::Result::Ok(ranges) => ranges,
                #core::result::Result::Err(_) => return false,
            };
            #(#checks)*
            #(#reads)*
            // Every check has passed and every new field is computed: only
            // now is the record written, so a `false` leaves it untouched.
            #(#writes)*
            true
        }
    } else {
        quote! {
            let _ = (stored, input);
            false
        }
    };
    quote! {
        impl #k::record::Merge for #ident {
            fn initial(input: &Self) -> Self {
                #clone(input)
            }
            fn in_place(stored: &mut [u8], input: &Self) -> bool {
                #in_place
            }
            fn copy_update(old: #view<'_>, input: &Self) -> Self {
                #copy_update
            }
        }
    }
}

fn enum_merge(model: &Model, variants: &[syn::Ident]) -> TokenStream {
    let k = &model.krate;
    let ident = &model.ident;
    let copy = quote!(match input { #(#ident::#variants => #ident::#variants,)* });
    let (in_place, copy_update) = match &model.merge_with {
        None => (
            quote!(<Self as #k::record::Value>::encode_into(input, stored).is_ok()),
            quote!({ let _ = old; #copy }),
        ),
        Some(path) => (
            quote! {
                match <Self as #k::record::Value>::decode(stored) {
                    #k::__private::core::result::Result::Ok(mut value) => {
                        #path(&mut value, input);
                        <Self as #k::record::Value>::encode_into(&value, stored).is_ok()
                    }
                    #k::__private::core::result::Result::Err(_) => false,
                }
            },
            quote!({ let mut value = old; #path(&mut value, input); value }),
        ),
    };
    quote! {
        impl #k::record::Merge for #ident {
            fn initial(input: &Self) -> Self {
                #copy
            }
            fn in_place(stored: &mut [u8], input: &Self) -> bool {
                #in_place
            }
            fn copy_update(old: Self, input: &Self) -> Self {
                #copy_update
            }
        }
    }
}
