//! Derives for oxifaster. Placeholder.
use proc_macro::TokenStream;
/// Derives `Key`.
#[proc_macro_derive(FasterKey, attributes(faster))]
pub fn derive_key(_input: TokenStream) -> TokenStream { TokenStream::new() }
/// Derives `Value`.
#[proc_macro_derive(FasterValue, attributes(faster))]
pub fn derive_value(_input: TokenStream) -> TokenStream { TokenStream::new() }
