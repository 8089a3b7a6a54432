//! Reads a derive input into a model and rejects what cannot be stored.
//!
//! The checks here are syntactic and give the precise message and span a user
//! needs (a reference, a pointer type, a tuple, a missing `#[repr(C)]`, a
//! merge on a variable-length field). What syntax cannot see (padding,
//! whether a field type is plain old data, whether a merge applies to a
//! type) is left to bounds and assertions in the generated code.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Member, Path, Type, Visibility};

use crate::attr::{Combined, ContainerAttrs, Errors, FieldAttrs, MergeKind, MergeSpec};

/// Which derive is running.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Derive {
    Key,
    Value,
}

impl Derive {
    fn name(self) -> &'static str {
        match self {
            Derive::Key => "FasterKey",
            Derive::Value => "FasterValue",
        }
    }
}

/// One field of a struct.
pub struct Field {
    pub member: Member,
    /// The name recorded in the layout (`"0"` for a tuple field).
    pub name: String,
    pub ty: Type,
    pub vis: Visibility,
    pub docs: Vec<syn::Attribute>,
    /// A variable-length field (`Vec<T>`, `String`, `Box<[u8]>`).
    pub is_tail: bool,
    /// The effective merge (field attribute, else struct default, else
    /// replace).
    pub merge: MergeSpec,
}

/// What is being derived on.
pub enum Shape {
    /// A `#[repr(C)]` struct of plain-old-data fields.
    Fixed { fields: Vec<Field> },
    /// A struct with at least one variable-length field.
    VarLen { fields: Vec<Field>, tuple: bool },
    /// A fieldless enum with an integer repr.
    Enum { repr: Ident, variants: Vec<Ident> },
}

pub struct Model {
    pub ident: Ident,
    pub vis: Visibility,
    pub krate: TokenStream,
    pub shape: Shape,
    /// A struct-level `merge_with` function for the whole value.
    pub merge_with: Option<Path>,
    pub view: Ident,
    /// Where merge attributes are, for a key derive (keys are never
    /// merged: the type must derive `FasterValue` too for them to mean
    /// anything; the generated code checks it).
    pub key_merge_spans: Vec<Span>,
}

impl Model {
    pub fn from_input(input: &DeriveInput, derive: Derive) -> Result<Self, Combined> {
        let mut errors = Errors::default();
        let attrs = ContainerAttrs::parse(&input.attrs, &mut errors);
        if !input.generics.params.is_empty() {
            errors.push(
                input.generics.span(),
                format!(
                    "`{}` cannot be derived for a generic type: a stored type needs one byte \
                     layout and one layout fingerprint; derive it on a concrete struct instead",
                    derive.name()
                ),
            );
        }
        let mut key_merge_spans = Vec::new();
        if derive == Derive::Key
            && let Some(spec) = &attrs.merge
        {
            key_merge_spans.push(spec.span());
        }
        let (default_merge, merge_with) = match &attrs.merge {
            Some(MergeSpec::With(path)) => (None, Some(path.clone())),
            Some(spec @ MergeSpec::Kind(..)) => (Some(spec.clone()), None),
            None => (None, None),
        };
        let shape = match &input.data {
            Data::Struct(data) => {
                let shape = struct_shape(input, &data.fields, default_merge, derive, &mut errors);
                if derive == Derive::Key {
                    for field in &data.fields {
                        let field_attrs = FieldAttrs::parse(&field.attrs, &mut Errors::default());
                        key_merge_spans.extend(field_attrs.merge.map(|m| m.span()));
                    }
                }
                shape
            }
            Data::Enum(data) => enum_shape(input, data, &attrs, derive, &mut errors),
            Data::Union(data) => {
                errors.push(
                    data.union_token.span(),
                    format!(
                        "`{}` cannot be derived for a union: which field is live is not recorded \
                         in its bytes; use a struct, or an enum with `#[repr(u8)]`",
                        derive.name()
                    ),
                );
                None
            }
        };
        // A fixed-size value is viewed as `&Self`: a `view` name would be
        // silently unused.
        if derive == Derive::Value
            && let (Some(view), Some(Shape::Fixed { .. } | Shape::Enum { .. })) =
                (&attrs.view, &shape)
        {
            errors.push(
                view.span(),
                format!(
                    "`view` names the generated view of a variable-length value; `{}` is \
                     fixed-size and is viewed as `&{}`: remove the `view` attribute",
                    input.ident, input.ident
                ),
            );
        }
        errors.finish()?;
        let krate = match attrs.krate {
            Some(path) => path.into_token_stream(),
            None => quote!(::oxifaster),
        };
        let view = attrs
            .view
            .unwrap_or_else(|| Ident::new(&format!("{}Ref", input.ident), input.ident.span()));
        Ok(Self {
            ident: input.ident.clone(),
            vis: input.vis.clone(),
            krate,
            // `errors.finish()` succeeded, so every branch produced a shape.
            shape: shape.unwrap_or(Shape::Enum {
                repr: Ident::new("u8", Span::call_site()),
                variants: Vec::new(),
            }),
            merge_with,
            view,
            key_merge_spans,
        })
    }

    pub fn name_lit(&self) -> String {
        self.ident.to_string()
    }
}

/// The `#[repr(...)]` words of a type.
fn reprs(attrs: &[syn::Attribute]) -> Vec<Ident> {
    let mut out = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("repr")) {
        let _ = attr.parse_nested_meta(|meta| {
            if let Some(ident) = meta.path.get_ident() {
                out.push(ident.clone());
            }
            // Skip `align(N)` / `packed(N)` arguments.
            if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                let _: TokenStream = content.parse()?;
            }
            Ok(())
        });
    }
    out
}

fn struct_shape(
    input: &DeriveInput,
    fields: &Fields,
    default_merge: Option<MergeSpec>,
    derive: Derive,
    errors: &mut Errors,
) -> Option<Shape> {
    if fields.is_empty() {
        errors.push(
            input.ident.span(),
            format!("`{}` has no fields: there is nothing to store", input.ident),
        );
        return None;
    }
    let mut out = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let field_attrs = FieldAttrs::parse(&field.attrs, errors);
        let (member, name) = match &field.ident {
            Some(ident) => (Member::Named(ident.clone()), ident.to_string()),
            None => (Member::Unnamed(index.into()), index.to_string()),
        };
        let is_tail = check_type(&field.ty, true, errors);
        let merge = if derive == Derive::Key {
            MergeSpec::Kind(MergeKind::Replace, Span::call_site())
        } else if is_tail {
            match field_attrs.merge {
                Some(MergeSpec::Kind(kind, span)) if kind != MergeKind::Replace => {
                    errors.push(
                        span,
                        format!(
                            "field `{name}` is variable-length: it can merge only by \
                             `merge = \"replace\"` or `merge_with = \"path::to::fn\"`"
                        ),
                    );
                    MergeSpec::Kind(MergeKind::Replace, span)
                }
                Some(spec) => spec,
                None => MergeSpec::Kind(MergeKind::Replace, Span::call_site()),
            }
        } else {
            field_attrs
                .merge
                .or_else(|| default_merge.clone())
                .unwrap_or(MergeSpec::Kind(MergeKind::Replace, Span::call_site()))
        };
        let docs = field.attrs.iter().filter(|a| a.path().is_ident("doc")).cloned().collect();
        out.push(Field {
            member,
            name,
            ty: field.ty.clone(),
            vis: field.vis.clone(),
            docs,
            is_tail,
            merge,
        });
    }
    if out.iter().any(|f| f.is_tail) {
        return Some(Shape::VarLen { fields: out, tuple: matches!(fields, Fields::Unnamed(_)) });
    }
    let reprs = reprs(&input.attrs);
    let stable = reprs.iter().any(|r| r == "C" || r == "transparent");
    if !stable {
        errors.push(
            input.ident.span(),
            format!(
                "fixed-size `{}` needs `#[repr(C)]`: without it Rust may reorder its fields, and \
                 the bytes on disk would depend on the compiler; add `#[repr(C)]` above the struct",
                input.ident
            ),
        );
    }
    Some(Shape::Fixed { fields: out })
}

const INT_REPRS: [&str; 8] = ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"];

fn enum_shape(
    input: &DeriveInput,
    data: &syn::DataEnum,
    attrs: &ContainerAttrs,
    derive: Derive,
    errors: &mut Errors,
) -> Option<Shape> {
    let all = reprs(&input.attrs);
    if let Some(other) =
        all.iter().find(|r| ["usize", "isize", "u128", "i128"].iter().any(|i| *r == i))
    {
        errors.push(
            other.span(),
            format!(
                "`#[repr({other})]` is not supported for `{}`: {}; use a fixed-width repr: \
                 u8, u16, u32, u64, i8, i16, i32 or i64",
                input.ident,
                if other == "usize" || other == "isize" {
                    "its size depends on the platform, and the stored bytes must not"
                } else {
                    "a 128-bit discriminant is not stored"
                }
            ),
        );
        return None;
    }
    let repr = all.into_iter().find(|r| INT_REPRS.iter().any(|i| r == i));
    let Some(repr) = repr else {
        errors.push(
            input.ident.span(),
            format!(
                "enum `{}` needs an integer repr such as `#[repr(u8)]` to derive `{}`: its \
                 discriminant is what is stored",
                input.ident,
                derive.name()
            ),
        );
        return None;
    };
    if data.variants.is_empty() {
        errors.push(
            input.ident.span(),
            format!("enum `{}` has no variants: it has no values to store", input.ident),
        );
    }
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            errors.push(
                variant.ident.span(),
                format!(
                    "variant `{}` has fields: `{}` supports enums of unit variants only; use a \
                     struct with a `#[repr(u8)]` enum tag field instead",
                    variant.ident,
                    derive.name()
                ),
            );
        }
        for attr in variant.attrs.iter().filter(|a| a.path().is_ident("faster")) {
            errors.push(attr.span(), "`faster` attributes do not apply to enum variants");
        }
    }
    if derive == Derive::Value
        && let Some(MergeSpec::Kind(kind, span)) = &attrs.merge
        && *kind != MergeKind::Replace
    {
        errors.push(
            *span,
            "an enum merges only by `merge = \"replace\"` or `merge_with = \"path::to::fn\"`",
        );
    }
    Some(Shape::Enum { repr, variants: data.variants.iter().map(|v| v.ident.clone()).collect() })
}

/// Pointer-like and interior-mutable standard types that can never be stored.
const POINTER_TYPES: [&str; 12] = [
    "Box",
    "Rc",
    "Arc",
    "Weak",
    "NonNull",
    "Cell",
    "RefCell",
    "UnsafeCell",
    "Mutex",
    "RwLock",
    "PhantomData",
    "Pin",
];

/// Checks a field type; returns whether it is a variable-length field.
/// `top` is false inside arrays, where nothing may vary in length.
fn check_type(ty: &Type, top: bool, errors: &mut Errors) -> bool {
    match ty {
        Type::Reference(r) => {
            errors.push_spanned(
                r,
                "a reference cannot be stored: records hold bytes, not borrowed data; use an owned \
                 type (an integer, an array, `String`, `Vec<u8>`)",
            );
            false
        }
        Type::Ptr(p) => {
            errors.push_spanned(
                p,
                "a raw pointer cannot be stored: an address means nothing after a restart; store \
                 the data it points to, or an integer id",
            );
            false
        }
        Type::BareFn(f) => {
            errors.push_spanned(
                f,
                "a function pointer cannot be stored: an address means nothing after a restart",
            );
            false
        }
        Type::Tuple(t) => {
            errors.push_spanned(
                t,
                "a tuple has no stable layout: use an array, or a `#[repr(C)]` struct that derives \
                 the same trait",
            );
            false
        }
        Type::Slice(s) => {
            errors.push_spanned(s, "a bare slice has no size: use `Vec<T>` or `Box<[u8]>`");
            false
        }
        Type::TraitObject(_) | Type::ImplTrait(_) | Type::Infer(_) | Type::Never(_) => {
            errors.push_spanned(
                ty,
                "this type cannot be stored: use integers, arrays, `String` or `Vec<T>`",
            );
            false
        }
        Type::Array(a) => {
            check_type(&a.elem, false, errors);
            false
        }
        Type::Paren(p) => check_type(&p.elem, top, errors),
        Type::Group(g) => check_type(&g.elem, top, errors),
        Type::Path(p) => {
            let Some(last) = p.path.segments.last() else {
                return false;
            };
            let name = last.ident.to_string();
            // Types are recognised by name (a derive cannot resolve them):
            // only a bare name or the standard library's own path counts,
            // so a type of the user's written as a path (`grid::Cell`,
            // `crate::String`) is taken for what it is.
            let standard = is_standard_path(&p.path, &name);
            let generic = matches!(last.arguments, syn::PathArguments::AngleBracketed(_));
            let is_tail = standard
                && match name.as_str() {
                    "Vec" => generic,
                    "String" => true,
                    "Box" => is_box_of_bytes(&last.arguments),
                    _ => false,
                };
            if is_tail {
                if !top {
                    errors.push_spanned(ty, "a variable-length type cannot be an array element");
                }
                return top;
            }
            // A pointer type of the standard library always has a type
            // argument: a plain `Cell` is a type of the user's.
            if standard && generic && POINTER_TYPES.contains(&name.as_str()) {
                errors.push_spanned(
                    ty,
                    format!(
                        "`{name}` cannot be stored: pointer and interior-mutable types have no byte \
                         encoding; store the data itself (the only boxed type allowed is `Box<[u8]>`, \
                         a variable-length field)"
                    ),
                );
            }
            false
        }
        _ => false,
    }
}

/// Whether `path` names the standard type `name`: the bare name, or a path
/// through `std`, `core` or `alloc` (`std::vec::Vec`, `::std::cell::Cell`).
fn is_standard_path(path: &syn::Path, name: &str) -> bool {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [only] => path.leading_colon.is_none() && only == name,
        [root, .., last] => matches!(root.as_str(), "std" | "core" | "alloc") && last == name,
        [] => false,
    }
}

fn is_box_of_bytes(args: &syn::PathArguments) -> bool {
    let syn::PathArguments::AngleBracketed(args) = args else {
        return false;
    };
    let Some(syn::GenericArgument::Type(Type::Slice(slice))) = args.args.first() else {
        return false;
    };
    matches!(&*slice.elem, Type::Path(p) if p.path.is_ident("u8"))
}
