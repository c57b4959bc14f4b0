//! Tools from closures, for tools made at run time (from configuration, one
//! per customer, ...); the `#[statewise::tool]` attribute makes them from
//! functions known when the program is written.

use std::future::Future;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Tool, ToolContext};

/// What [`tool_fn`] takes: an async closure from arguments and the call's
/// context to a `Result`. Any such closure is one.
pub trait ToolFn<A>: Send + Sync + 'static {
    /// The tool's result.
    type Output: Serialize + Send;
    /// The tool's failure.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The call's future.
    type Future: Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// Runs the closure.
    fn run(&self, args: A, ctx: ToolContext) -> Self::Future;
}

impl<A, F, Fut, O, E> ToolFn<A> for F
where
    F: Fn(A, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send,
    O: Serialize + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    type Output = O;
    type Error = E;
    type Future = Fut;

    fn run(&self, args: A, ctx: ToolContext) -> Fut {
        self(args, ctx)
    }
}

/// A tool made of a name, a description and a closure ([`tool_fn`]).
pub struct FnTool<A, F> {
    name: String,
    description: String,
    f: F,
    args: PhantomData<fn(A)>,
}

impl<A, F> std::fmt::Debug for FnTool<A, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnTool").field("name", &self.name).finish()
    }
}

/// A tool named `name`, described to the model as `description`, that runs
/// `f` on its arguments (any type that deserializes and has a JSON Schema)
/// and the call's context.
///
/// ```
/// use statewise::tool::{tool_fn, ToolRegistry};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Shout {
///     /// What to shout.
///     text: String,
/// }
///
/// let shout = tool_fn("shout", "Says it louder.", |a: Shout, _ctx| async move {
///     Ok::<_, std::convert::Infallible>(a.text.to_uppercase())
/// });
/// let tools = ToolRegistry::new().with(shout);
/// assert!(tools.get("shout").is_some());
/// ```
pub fn tool_fn<A, F>(name: impl Into<String>, description: impl Into<String>, f: F) -> FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: ToolFn<A>,
{
    FnTool {
        name: name.into(),
        description: description.into(),
        f,
        args: PhantomData,
    }
}

impl<A, F> Tool for FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: ToolFn<A>,
{
    type Args = A;
    type Output = F::Output;
    type Error = F::Error;

    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn call(
        &self,
        args: A,
        ctx: ToolContext,
    ) -> impl Future<Output = Result<F::Output, F::Error>> + Send {
        self.f.run(args, ctx)
    }
}
