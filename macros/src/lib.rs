//! `#[statewise::tool]`: a statewise tool from a plain async function.
//!
//! The function stays as written (call it, test it); beside it the macro
//! writes a unit struct named after it in CamelCase (`calculator` →
//! `Calculator`), its arguments' struct (`CalculatorArgs`, one field per
//! parameter, doc comments kept as the schema's descriptions) and the
//! `statewise::tool::Tool` impl: the name is the function's, the
//! description its doc comment's first paragraph. Use it through the `statewise` crate, which
//! re-exports it; the generated code names `::statewise`.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, ReturnType, Type,
};

/// Makes a tool of an `async fn`: its doc comment's first paragraph is the
/// description the model reads, its parameters the arguments (their doc comments describe
/// them), a parameter of type `ToolContext` receives the call's context,
/// and it returns `Result<T, E>` (the tool's output and error) or a plain
/// value (a tool that cannot fail).
///
/// `#[statewise::tool(name = "other_name")]` names the tool otherwise.
///
/// ```text
/// /// Adds two numbers.
/// #[statewise::tool]
/// async fn add(
///     /// The first number.
///     a: f64,
///     /// The second number.
///     b: f64,
/// ) -> f64 {
///     a + b
/// }
/// // ToolRegistry::new().with(Add)
/// ```
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// One parameter of the function that becomes a field of the arguments.
struct Field {
    ident: Ident,
    ty: Type,
    docs: Vec<Attribute>,
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut name: Option<LitStr> = None;
    if !attr.is_empty() {
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                name = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("unknown option: the one option is `name = \"...\"`"))
            }
        });
        syn::parse::Parser::parse2(parser, attr)?;
    }
    let mut func: ItemFn = syn::parse2(item)?;
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "a tool is an `async fn`: write `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a tool function cannot be generic: its arguments need one JSON Schema",
        ));
    }
    let description = docs_text(&func.attrs);
    if description.is_empty() {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a tool needs a doc comment (`/// What it does.`): it is the description the model reads",
        ));
    }

    let mut fields = Vec::new();
    let mut takes_context = false;
    let mut call_args = Vec::new();
    for input in func.sig.inputs.iter_mut() {
        let typed = match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "a tool is a free function, not a method",
                ))
            }
            FnArg::Typed(t) => t,
        };
        let Pat::Ident(pat) = &*typed.pat else {
            return Err(syn::Error::new(
                typed.pat.span(),
                "name each parameter (`city: String`): the names are the arguments the model writes",
            ));
        };
        let ident = pat.ident.clone();
        if let Type::Reference(r) = &*typed.ty {
            return Err(syn::Error::new(
                r.span(),
                "a tool's parameters are owned values (`String`, not `&str`): they are read from the model's JSON",
            ));
        }
        let docs: Vec<Attribute> = typed
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect();
        typed.attrs.retain(|a| !a.path().is_ident("doc"));
        if last_ident(&typed.ty).is_some_and(|i| i == "ToolContext") {
            if takes_context {
                return Err(syn::Error::new(
                    typed.ty.span(),
                    "a tool takes at most one `ToolContext`",
                ));
            }
            takes_context = true;
            call_args.push(quote!(__ctx));
            continue;
        }
        call_args.push(quote!(#ident));
        fields.push(Field {
            ident,
            ty: (*typed.ty).clone(),
            docs,
        });
    }

    let (output, error, wrap) = outputs(&func.sig.output)?;
    let vis = &func.vis;
    let fn_ident = &func.sig.ident;
    let base = camel(&fn_ident.to_string());
    let tool = Ident::new(&base, fn_ident.span());
    let args = format_ident!("{}Args", base, span = fn_ident.span());
    let tool_name = name.unwrap_or_else(|| {
        LitStr::new(
            fn_ident.to_string().trim_start_matches("r#"),
            fn_ident.span(),
        )
    });
    let tool_doc =
        format!("The tool [`{fn_ident}`] makes: register it (`ToolRegistry::with({base})`).");
    let args_doc = format!("Arguments of the [`{fn_ident}`] tool.");
    let field_defs = fields.iter().map(|f| {
        let (ident, ty, docs) = (&f.ident, &f.ty, &f.docs);
        quote!(#(#docs)* #vis #ident: #ty,)
    });
    let field_names: Vec<&Ident> = fields.iter().map(|f| &f.ident).collect();
    let call = quote!(#fn_ident(#(#call_args),*).await);
    let body = match wrap {
        Wrap::Result => call,
        Wrap::Value => quote!(::core::result::Result::Ok(#call)),
        Wrap::Unit => quote!({ #call; ::core::result::Result::Ok(()) }),
    };
    let ctx_ident = Ident::new(
        if takes_context { "__ctx" } else { "_ctx" },
        Span::call_site(),
    );
    let call_fn = quote_spanned! {fn_ident.span()=>
        async fn call(
            &self,
            args: #args,
            #ctx_ident: ::statewise::tool::ToolContext,
        ) -> ::core::result::Result<#output, #error> {
            let #args { #(#field_names),* } = args;
            #body
        }
    };
    Ok(quote! {
        #func

        #[doc = #tool_doc]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #tool;

        #[doc = #args_doc]
        #[derive(Debug, Clone, ::statewise::__private::serde::Deserialize, ::statewise::__private::schemars::JsonSchema)]
        #[serde(crate = "::statewise::__private::serde")]
        #[schemars(crate = "::statewise::__private::schemars")]
        // The doc above is for rustdoc; the model reads the tool's description.
        #[schemars(transform = ::statewise::__private::tool_arguments)]
        #vis struct #args {
            #(#field_defs)*
        }

        impl ::statewise::tool::Tool for #tool {
            type Args = #args;
            type Output = #output;
            type Error = #error;

            fn name(&self) -> &str {
                #tool_name
            }

            fn description(&self) -> &str {
                #description
            }

            #call_fn
        }
    })
}

enum Wrap {
    /// It returns `Result<T, E>`: passed on.
    Result,
    /// It returns a plain value: `Ok(value)`.
    Value,
    /// It returns nothing: `Ok(())`.
    Unit,
}

/// The tool's output and error types, and how the call's value becomes
/// a `Result`.
fn outputs(output: &ReturnType) -> syn::Result<(TokenStream2, TokenStream2, Wrap)> {
    let infallible = quote!(::core::convert::Infallible);
    let ty = match output {
        ReturnType::Default => return Ok((quote!(()), infallible, Wrap::Unit)),
        ReturnType::Type(_, ty) => ty,
    };
    if let Type::Path(path) = &**ty {
        let last = path.path.segments.last();
        if let Some(seg) = last.filter(|s| s.ident == "Result") {
            let types: Vec<&Type> = match &seg.arguments {
                PathArguments::AngleBracketed(a) => a
                    .args
                    .iter()
                    .filter_map(|g| match g {
                        GenericArgument::Type(t) => Some(t),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            return match types[..] {
                [ok, err] => Ok((quote!(#ok), quote!(#err), Wrap::Result)),
                _ => Err(syn::Error::new(
                    seg.span(),
                    "write the error type out: `Result<T, E>` (E is the tool's error, a std::error::Error)",
                )),
            };
        }
    }
    Ok((quote!(#ty), infallible, Wrap::Value))
}

/// The last identifier of a type's path (`statewise::tool::ToolContext` →
/// `ToolContext`).
fn last_ident(ty: &Type) -> Option<&Ident> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| &s.ident),
        _ => None,
    }
}

/// The doc comment's first paragraph, its lines joined by spaces: the
/// rest (examples, notes for programmers) stays in rustdoc.
fn docs_text(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .flat_map(|l| match l.trim().is_empty() {
            true => vec![String::new()],
            false => l.lines().map(|l| l.trim().to_owned()).collect(),
        })
        .collect();
    let first: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    first.join(" ")
}

/// `snake_case` → `CamelCase`.
fn camel(snake: &str) -> String {
    snake
        .trim_start_matches("r#")
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
