//! Generates the `Key` and `Value` codecs for the three shapes.
//!
//! The two traits have the same structure with different item names, so one
//! generator serves both through [`Api`].

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Derive, Field, Model, Shape};

/// The item names of the trait being implemented.
pub struct Api {
    pub derive: Derive,
    pub trait_path: TokenStream,
    fixed_size: TokenStream,
    encoded_size: TokenStream,
    encode: TokenStream,
    decode: TokenStream,
    layout: TokenStream,
    fixed_size_fn: TokenStream,
    pod_marker: TokenStream,
    bytes_fn: TokenStream,
    read_fn: TokenStream,
}

impl Api {
    pub fn new(model: &Model, derive: Derive) -> Self {
        let k = &model.krate;
        match derive {
            Derive::Key => Self {
                derive,
                trait_path: quote!(#k::record::Key),
                fixed_size: quote!(FIXED_KEY_SIZE),
                encoded_size: quote!(key_size),
                encode: quote!(encode_key),
                decode: quote!(decode_key),
                layout: quote!(key_layout),
                fixed_size_fn: quote!(#k::__private::pod::key_fixed_size),
                pod_marker: quote!(#k::record::PodKey),
                bytes_fn: quote!(#k::__private::pod::key_bytes),
                read_fn: quote!(#k::__private::pod::key_read),
            },
            Derive::Value => Self {
                derive,
                trait_path: quote!(#k::record::Value),
                fixed_size: quote!(FIXED_SIZE),
                encoded_size: quote!(encoded_size),
                encode: quote!(encode),
                decode: quote!(decode),
                layout: quote!(layout),
                fixed_size_fn: quote!(#k::__private::pod::value_fixed_size),
                pod_marker: quote!(#k::record::PodValue),
                bytes_fn: quote!(#k::__private::pod::value_bytes),
                read_fn: quote!(#k::__private::pod::value_read),
            },
        }
    }
}

/// Gives every token of `tokens` the span `span`, so that an error raised
/// while compiling them (such as a failed `const` assertion) points there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                TokenTree::Group(new)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// Wraps generated items in an anonymous constant.
pub fn wrap(inner: TokenStream) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all, unsafe_code)]
        const _: () = {
            #inner
        };
    }
}

/// The complete `#[derive(FasterKey)]` output.
pub fn key_impl(model: &Model) -> TokenStream {
    let api = Api::new(model, Derive::Key);
    let mut inner = match &model.shape {
        Shape::Fixed { fields } => pod_codec(model, &api, fields),
        Shape::VarLen { fields, .. } => varlen_codec(model, &api, fields, None),
        Shape::Enum { repr, variants } => enum_codec(model, &api, repr, variants),
    };
    // A merge attribute means something only if the type is a value too.
    let (k, ident) = (&model.krate, &model.ident);
    for span in &model.key_merge_spans {
        inner.extend(quote_spanned! {*span=>
            const _: fn() = || {
                fn __oxifaster_merge_needs_value<T: #k::__private::MergeNeedsValue>() {}
                __oxifaster_merge_needs_value::<#ident>();
            };
        });
    }
    wrap(inner)
}

/// The `#[derive(FasterValue)]` codec: items to place outside the anonymous
/// constant (the view type) and inside it.
pub fn value_impl(model: &Model) -> (TokenStream, TokenStream) {
    let api = Api::new(model, Derive::Value);
    match &model.shape {
        Shape::Fixed { fields } => (TokenStream::new(), pod_codec(model, &api, fields)),
        Shape::VarLen { fields, tuple } => {
            let view = view_struct(model, fields, *tuple);
            (view, varlen_codec(model, &api, fields, Some(*tuple)))
        }
        Shape::Enum { repr, variants } => {
            (TokenStream::new(), enum_codec(model, &api, repr, variants))
        }
    }
}

fn core(model: &Model) -> TokenStream {
    let k = &model.krate;
    quote!(#k::__private::core)
}

fn result(model: &Model) -> TokenStream {
    let k = &model.krate;
    let core = core(model);
    quote!(#core::result::Result<Self, #k::record::CodecError>)
}

/// Plain old data: the struct's bytes are its encoding.
fn pod_codec(model: &Model, api: &Api, fields: &[Field]) -> TokenStream {
    let k = &model.krate;
    let core = core(model);
    let ident = &model.ident;
    let name = model.name_lit();
    let Api {
        trait_path,
        fixed_size,
        encoded_size,
        encode,
        decode,
        layout,
        pod_marker,
        bytes_fn,
        read_fn,
        ..
    } = api;
    let derive_name = match api.derive {
        Derive::Key => "FasterKey",
        Derive::Value => "FasterValue",
    };

    let field_checks = fields.iter().map(|f| {
        let ty = &f.ty;
        quote_spanned!(ty.span()=> __oxifaster_pod_field::<#ty>();)
    });
    let mut padding_checks = Vec::new();
    for pair in fields.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let (pm, pt, nm) = (&prev.member, &prev.ty, &next.member);
        let message = format!(
            "`{name}` has padding before field `{}`: a fixed-size {derive_name} must have no \
             padding bytes; order the fields from largest to smallest alignment, or fill the \
             gap with an explicit `[u8; N]` field",
            next.name
        );
        let check = quote! {
            const _: () = #core::assert!(
                #core::mem::offset_of!(#ident, #nm)
                    == #core::mem::offset_of!(#ident, #pm) + #core::mem::size_of::<#pt>(),
                #message
            );
        };
        padding_checks.push(respan(check, next.member.span()));
    }
    if let Some(last) = fields.last() {
        let (lm, lt) = (&last.member, &last.ty);
        let message = format!(
            "`{name}` has padding after its last field `{}`: a fixed-size {derive_name} must \
             have no padding bytes; add an explicit `[u8; N]` field at the end",
            last.name
        );
        let check = quote! {
            const _: () = #core::assert!(
                #core::mem::size_of::<#ident>()
                    == #core::mem::offset_of!(#ident, #lm) + #core::mem::size_of::<#lt>(),
                #message
            );
        };
        padding_checks.push(respan(check, last.member.span()));
    }
    let align_message = format!(
        "`{name}` needs an alignment above 8 bytes (a `u128` field?): records are 8-byte \
         aligned, so a fixed-size {derive_name} may need at most 8; split the field into two `u64`s"
    );
    let align_check = respan(
        quote!(const _: () = #core::assert!(#core::mem::align_of::<#ident>() <= 8, #align_message);),
        ident.span(),
    );
    let field_layouts = fields.iter().map(|f| {
        let (m, t, n) = (&f.member, &f.ty, &f.name);
        quote! {
            #k::record::FieldLayout::new(
                #n,
                #core::option::Option::Some(#core::mem::offset_of!(#ident, #m)),
                <#t as #trait_path>::#layout(),
            )
        }
    });
    let key_extras = if api.derive == Derive::Key {
        quote! {
            #[inline(always)]
            fn hash64(&self) -> u64 {
                #k::record::hash_bytes(#bytes_fn(self))
            }
            #[inline(always)]
            fn matches(&self, stored: &[u8]) -> bool {
                stored == #bytes_fn(self)
            }
        }
    } else {
        quote! {
            type View<'a> = &'a Self;
            #[inline(always)]
            fn view(bytes: &[u8]) -> #core::result::Result<&Self, #k::record::CodecError> {
                #k::__private::pod::value_view(bytes)
            }
        }
    };
    let result = result(model);
    quote! {
        const _: fn() = || {
            fn __oxifaster_pod_field<T: #pod_marker>() {}
            #(#field_checks)*
        };
        #(#padding_checks)*
        #align_check

        // SAFETY: the struct is `#[repr(C)]` (checked by the derive) and
        // `Copy` (a supertrait bound); every field is itself plain old data
        // (the bounds above); the assertions above prove that fields follow
        // each other without gaps and that nothing trails the last one, so
        // there are no padding bytes and every bit pattern is a valid value.
        unsafe impl #pod_marker for #ident {}

        impl #trait_path for #ident {
            const #fixed_size: #core::option::Option<usize> =
                #core::option::Option::Some(#core::mem::size_of::<Self>());
            #[inline(always)]
            fn #encoded_size(&self) -> usize {
                #core::mem::size_of::<Self>()
            }
            #[inline(always)]
            fn #encode<S: #k::record::Sink + ?#k::__private::core::marker::Sized>(&self, sink: &mut S) {
                #k::record::Sink::put(sink, #bytes_fn(self))
            }
            #[inline(always)]
            fn #decode(bytes: &[u8]) -> #result {
                #read_fn(bytes)
            }
            fn #layout() -> #k::record::Layout {
                #k::record::Layout::structure(
                    #name,
                    #core::option::Option::Some(#core::mem::size_of::<Self>()),
                    #core::mem::align_of::<Self>(),
                    #k::__private::vec![#(#field_layouts),*],
                )
            }
            #key_extras
        }
    }
}

/// Names of the per-field constants of a variable-length head.
pub fn offset_const(index: usize) -> syn::Ident {
    format_ident!("__OXIFASTER_OFFSET_{}", index)
}
pub fn size_const(index: usize) -> syn::Ident {
    format_ident!("__OXIFASTER_SIZE_{}", index)
}
pub const HEAD_CONST: &str = "__OXIFASTER_HEAD";
pub const TAILS_CONST: &str = "__OXIFASTER_TAILS";

/// The head constants of a variable-length struct: each fixed field's size
/// and offset, the head size and the number of tails.
pub fn head_consts(model: &Model, api: &Api, fields: &[Field]) -> TokenStream {
    let k = &model.krate;
    let fixed_size_fn = &api.fixed_size_fn;
    let mut out = TokenStream::new();
    let mut offset = quote!(0usize);
    for (i, f) in fields.iter().enumerate().filter(|(_, f)| !f.is_tail) {
        let (oc, sc, ty) = (offset_const(i), size_const(i), &f.ty);
        out.extend(quote_spanned! {ty.span()=>
            const #oc: usize = #offset;
            const #sc: usize = #fixed_size_fn::<#ty>();
        });
        offset = quote!(#oc + #sc);
    }
    let tails = fields.iter().filter(|f| f.is_tail).count();
    let (head, tails_c) = (format_ident!("{}", HEAD_CONST), format_ident!("{}", TAILS_CONST));
    out.extend(quote! {
        const #head: usize = #offset;
        const #tails_c: usize = #tails;
    });
    let _ = k;
    out
}

/// Builds `Self { field: expr, ... }` or `Self(expr, ...)`.
pub fn construct(
    fields: &[Field],
    tuple: bool,
    ty: TokenStream,
    exprs: Vec<TokenStream>,
) -> TokenStream {
    if tuple {
        quote!(#ty ( #(#exprs),* ))
    } else {
        let members = fields.iter().map(|f| &f.member);
        quote!(#ty { #(#members: #exprs),* })
    }
}

/// The variable-length codec. `view` is `Some(tuple)` for a value (which gets
/// a view), `None` for a key.
fn varlen_codec(model: &Model, api: &Api, fields: &[Field], view: Option<bool>) -> TokenStream {
    let k = &model.krate;
    let core = core(model);
    let ident = &model.ident;
    let name = model.name_lit();
    let Api { trait_path, fixed_size, encoded_size, encode, decode, layout, .. } = api;
    let tail_trait = quote!(#k::record::Tail);
    let varlen = quote!(#k::__private::varlen);
    let (head, tails) = (format_ident!("{}", HEAD_CONST), format_ident!("{}", TAILS_CONST));
    let consts = head_consts(model, api, fields);
    let tuple = matches!(model.shape, Shape::VarLen { tuple: true, .. });

    let tail_sizes = fields.iter().filter(|f| f.is_tail).map(|f| {
        let (m, t) = (&f.member, &f.ty);
        quote!(<#t as #tail_trait>::tail_bytes(&self.#m).len())
    });
    let encode_heads = fields.iter().filter(|f| !f.is_tail).map(|f| {
        let (m, t) = (&f.member, &f.ty);
        quote!(<#t as #trait_path>::#encode(&self.#m, sink);)
    });
    let encode_lens = fields.iter().filter(|f| f.is_tail).map(|f| {
        let (m, t) = (&f.member, &f.ty);
        quote!(#varlen::put_len(sink, <#t as #tail_trait>::tail_bytes(&self.#m).len());)
    });
    let encode_tails = fields.iter().filter(|f| f.is_tail).map(|f| {
        let (m, t) = (&f.member, &f.ty);
        quote!(#k::record::Sink::put(sink, <#t as #tail_trait>::tail_bytes(&self.#m));)
    });
    let tail_idents: Vec<_> = (0..fields.iter().filter(|f| f.is_tail).count())
        .map(|i| format_ident!("__oxifaster_tail_{}", i))
        .collect();
    // Field expressions for decode (owned) and view (borrowed).
    let field_exprs = |borrowed: bool| -> Vec<TokenStream> {
        let mut tail_index = 0;
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (t, n) = (&f.ty, &f.name);
                if f.is_tail {
                    let tail = &tail_idents[tail_index];
                    tail_index += 1;
                    if borrowed {
                        quote!(<#t as #tail_trait>::tail_ref(#tail, #name, #n)?)
                    } else {
                        quote!(<#t as #tail_trait>::tail_decode(#tail, #name, #n)?)
                    }
                } else {
                    let (oc, sc) = (offset_const(i), size_const(i));
                    quote!(<#t as #trait_path>::#decode(#varlen::field(__oxifaster_head, #oc, #sc))?)
                }
            })
            .collect()
    };
    let decoded = construct(fields, tuple, quote!(Self), field_exprs(false));
    let split = quote! {
        let (__oxifaster_head, [#(#tail_idents),*]) =
            #varlen::split::<#tails>(bytes, #head, #name)?;
    };
    let field_layouts = fields.iter().enumerate().map(|(i, f)| {
        let (t, n) = (&f.ty, &f.name);
        if f.is_tail {
            quote!(#k::record::FieldLayout::new(#n, #core::option::Option::None, <#t as #tail_trait>::tail_layout()))
        } else {
            let oc = offset_const(i);
            quote!(#k::record::FieldLayout::new(#n, #core::option::Option::Some(#oc), <#t as #trait_path>::#layout()))
        }
    });
    let view_items = match view {
        None => TokenStream::new(),
        Some(_) => {
            let view_ident = &model.view;
            let viewed = construct(fields, tuple, quote!(#view_ident), field_exprs(true));
            quote! {
                type View<'a> = #view_ident<'a>;
                #[inline]
                fn view(bytes: &[u8]) -> #core::result::Result<#view_ident<'_>, #k::record::CodecError> {
                    #split
                    #core::result::Result::Ok(#viewed)
                }
            }
        }
    };
    let result = result(model);
    let into_owned = match view {
        None => TokenStream::new(),
        Some(_) => into_owned_impl(model, fields, tuple),
    };
    // A key compares as bytes: its variable-length fields may hold no
    // floats (nor anything else whose equality is not byte equality).
    let key_tail_checks = match api.derive {
        Derive::Key => {
            let checks = fields.iter().filter(|f| f.is_tail).map(|f| {
                let ty = &f.ty;
                quote_spanned!(ty.span()=> __oxifaster_key_tail::<#ty>();)
            });
            quote! {
                const _: fn() = || {
                    fn __oxifaster_key_tail<T: #varlen::KeyTail>() {}
                    #(#checks)*
                };
            }
        }
        Derive::Value => TokenStream::new(),
    };
    quote! {
        #consts
        #key_tail_checks
        impl #trait_path for #ident {
            const #fixed_size: #core::option::Option<usize> = #core::option::Option::None;
            #[inline]
            fn #encoded_size(&self) -> usize {
                #head + #varlen::lengths_size(#tails) #(+ #tail_sizes)*
            }
            #[inline]
            fn #encode<S: #k::record::Sink + ?#k::__private::core::marker::Sized>(&self, sink: &mut S) {
                #(#encode_heads)*
                #(#encode_lens)*
                #(#encode_tails)*
            }
            fn #decode(bytes: &[u8]) -> #result {
                #split
                #core::result::Result::Ok(#decoded)
            }
            fn #layout() -> #k::record::Layout {
                #k::record::Layout::structure(
                    #name,
                    #core::option::Option::None,
                    1,
                    #k::__private::vec![#(#field_layouts),*],
                )
            }
            #view_items
        }
        #into_owned
    }
}

fn into_owned_impl(model: &Model, fields: &[Field], tuple: bool) -> TokenStream {
    let k = &model.krate;
    let (ident, view) = (&model.ident, &model.view);
    let exprs = fields
        .iter()
        .map(|f| {
            let (m, t) = (&f.member, &f.ty);
            if f.is_tail {
                quote!(<#t as #k::record::Tail>::tail_owned(self.#m))
            } else {
                quote!(self.#m)
            }
        })
        .collect();
    let owned = construct(fields, tuple, quote!(#ident), exprs);
    quote! {
        impl #view<'_> {
            /// Copies the viewed value into an owned one.
            pub fn into_owned(self) -> #ident {
                #owned
            }
        }
    }
}

/// The generated borrowed view of a variable-length value.
fn view_struct(model: &Model, fields: &[Field], tuple: bool) -> TokenStream {
    let k = &model.krate;
    let (ident, view, vis) = (&model.ident, &model.view, &model.vis);
    let doc = format!(
        "A zero-copy view of an encoded [`{ident}`], as returned by `Value::view`: fixed fields \
         are read out of the record, variable-length fields borrow its bytes."
    );
    let defs = fields.iter().map(|f| {
        let (fv, t, docs) = (&f.vis, &f.ty, &f.docs);
        let ty = if f.is_tail { quote!(<#t as #k::record::Tail>::Ref<'a>) } else { quote!(#t) };
        match (&f.member, tuple) {
            (syn::Member::Named(n), false) => quote!(#(#docs)* #fv #n: #ty),
            _ => quote!(#(#docs)* #fv #ty),
        }
    });
    if tuple {
        quote! {
            #[doc = #doc]
            #[allow(missing_debug_implementations)]
            #vis struct #view<'a>(#(#defs),*);
        }
    } else {
        quote! {
            #[doc = #doc]
            #[allow(missing_debug_implementations)]
            #vis struct #view<'a> { #(#defs),* }
        }
    }
}

/// A fieldless enum: its discriminant, as its repr integer.
fn enum_codec(model: &Model, api: &Api, repr: &syn::Ident, variants: &[syn::Ident]) -> TokenStream {
    let k = &model.krate;
    let core = core(model);
    let ident = &model.ident;
    let name = model.name_lit();
    let Api { trait_path, fixed_size, encoded_size, encode, decode, layout, .. } = api;
    let consts: Vec<_> = (0..variants.len()).map(|i| format_ident!("__OXIFASTER_D{}", i)).collect();
    let repr_name = repr.to_string();
    let variant_names = variants.iter().map(|v| v.to_string());
    let view_items = if api.derive == Derive::Value {
        quote! {
            type View<'a> = Self;
            #[inline]
            fn view(bytes: &[u8]) -> #core::result::Result<Self, #k::record::CodecError> {
                <Self as #trait_path>::#decode(bytes)
            }
        }
    } else {
        TokenStream::new()
    };
    let result = result(model);
    quote! {
        #(const #consts: #repr = #ident::#variants as #repr;)*
        impl #trait_path for #ident {
            const #fixed_size: #core::option::Option<usize> =
                #core::option::Option::Some(#core::mem::size_of::<#repr>());
            #[inline]
            fn #encoded_size(&self) -> usize {
                #core::mem::size_of::<#repr>()
            }
            #[inline]
            fn #encode<S: #k::record::Sink + ?#k::__private::core::marker::Sized>(&self, sink: &mut S) {
                let discriminant: #repr = match self { #(#ident::#variants => #consts,)* };
                #k::record::Sink::put(sink, &discriminant.to_le_bytes())
            }
            fn #decode(bytes: &[u8]) -> #result {
                match <#repr as #k::record::Value>::decode(bytes)? {
                    #(#consts => #core::result::Result::Ok(#ident::#variants),)*
                    other => #core::result::Result::Err(#k::record::CodecError::InvalidDiscriminant {
                        type_name: #name,
                        value: other as i128,
                    }),
                }
            }
            fn #layout() -> #k::record::Layout {
                #k::record::Layout::enumeration(
                    #name,
                    #repr_name,
                    #core::mem::size_of::<#repr>(),
                    #k::__private::vec![#((#variant_names, #consts as i128)),*],
                )
            }
            #view_items
        }
    }
}
