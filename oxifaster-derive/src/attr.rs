//! Parsing of `#[faster(...)]` attributes.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Meta, Path, Token, punctuated::Punctuated};

/// Collects every error of a derive before reporting them together.
#[derive(Default)]
pub struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    pub fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    pub fn push_spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    pub fn push_error(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    pub fn finish(self) -> Result<(), Combined> {
        let mut iter = self.errors.into_iter();
        match iter.next() {
            None => Ok(()),
            Some(mut first) => {
                iter.for_each(|e| first.combine(e));
                Err(Combined(first))
            }
        }
    }
}

/// Every error of a derive, as one `compile_error!` set.
pub struct Combined(syn::Error);

impl Combined {
    pub fn into_compile_error(self) -> proc_macro2::TokenStream {
        self.0.into_compile_error()
    }
}

/// The merge kinds of `#[faster(merge = "...")]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeKind {
    Sum,
    Min,
    Max,
    Replace,
    Or,
    And,
}

pub const MERGE_KINDS: &str = "\"sum\", \"min\", \"max\", \"replace\", \"or\" or \"and\"";

impl MergeKind {
    fn parse(lit: &LitStr, errors: &mut Errors) -> Option<Self> {
        Some(match lit.value().as_str() {
            "sum" => Self::Sum,
            "min" => Self::Min,
            "max" => Self::Max,
            "replace" => Self::Replace,
            "or" => Self::Or,
            "and" => Self::And,
            other => {
                errors.push(
                    lit.span(),
                    format!("unknown merge `{other}`: expected {MERGE_KINDS}, or use `merge_with = \"path::to::fn\"`"),
                );
                return None;
            }
        })
    }
}

/// A merge requested by an attribute.
#[derive(Clone, Debug)]
pub enum MergeSpec {
    Kind(MergeKind, Span),
    With(Path),
}

impl MergeSpec {
    /// Where the attribute that asked for it is.
    pub fn span(&self) -> Span {
        match self {
            Self::Kind(_, span) => *span,
            Self::With(path) => syn::spanned::Spanned::span(path),
        }
    }
}

/// The struct-level attributes.
#[derive(Default)]
pub struct ContainerAttrs {
    pub krate: Option<Path>,
    pub merge: Option<MergeSpec>,
    pub view: Option<syn::Ident>,
}

/// The field-level attributes.
#[derive(Default)]
pub struct FieldAttrs {
    pub merge: Option<MergeSpec>,
}

fn string_value(meta: &Meta, errors: &mut Errors) -> Option<LitStr> {
    match meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Some(s.clone()),
            other => {
                errors.push(other.span(), "expected a string literal, e.g. `merge = \"sum\"`");
                None
            }
        },
        other => {
            errors.push(other.span(), "expected `name = \"value\"`");
            None
        }
    }
}

fn parse_path(lit: &LitStr, errors: &mut Errors) -> Option<Path> {
    match lit.parse::<Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.push(lit.span(), format!("`{}` is not a path", lit.value()));
            None
        }
    }
}

fn faster_metas(attrs: &[Attribute], errors: &mut Errors) -> Vec<Meta> {
    let mut out = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("faster")) {
        match attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
            Ok(metas) => out.extend(metas),
            Err(e) => errors.push_error(e),
        }
    }
    out
}

fn set_merge(slot: &mut Option<MergeSpec>, spec: MergeSpec, span: Span, errors: &mut Errors) {
    if slot.is_some() {
        errors.push(span, "a merge is already given: use one `merge` or `merge_with`");
    } else {
        *slot = Some(spec);
    }
}

fn parse_merge_meta(meta: &Meta, slot: &mut Option<MergeSpec>, errors: &mut Errors) -> bool {
    let path = meta.path();
    if path.is_ident("merge") {
        if let Some(lit) = string_value(meta, errors)
            && let Some(kind) = MergeKind::parse(&lit, errors)
        {
            set_merge(slot, MergeSpec::Kind(kind, lit.span()), meta.span(), errors);
        }
        true
    } else if path.is_ident("merge_with") {
        if let Some(lit) = string_value(meta, errors)
            && let Some(p) = parse_path(&lit, errors)
        {
            set_merge(slot, MergeSpec::With(p), meta.span(), errors);
        }
        true
    } else {
        false
    }
}

impl ContainerAttrs {
    pub fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = Self::default();
        for meta in faster_metas(attrs, errors) {
            if parse_merge_meta(&meta, &mut out.merge, errors) {
                continue;
            }
            let path = meta.path();
            if path.is_ident("crate") {
                if let Some(lit) = string_value(&meta, errors) {
                    out.krate = parse_path(&lit, errors);
                }
            } else if path.is_ident("view") {
                if let Some(lit) = string_value(&meta, errors) {
                    match lit.parse::<syn::Ident>() {
                        Ok(ident) => out.view = Some(ident),
                        Err(_) => errors.push(
                            lit.span(),
                            "`view` must name a type, e.g. `view = \"ProfileView\"`",
                        ),
                    }
                }
            } else {
                errors.push(
                    path.span(),
                    "unknown `faster` attribute: expected `crate`, `merge`, `merge_with` or `view` on a type",
                );
            }
        }
        out
    }
}

impl FieldAttrs {
    pub fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = Self::default();
        for meta in faster_metas(attrs, errors) {
            if !parse_merge_meta(&meta, &mut out.merge, errors) {
                errors.push(
                    meta.path().span(),
                    "unknown `faster` attribute: expected `merge` or `merge_with` on a field",
                );
            }
        }
        out
    }
}
