//! Tools: typed [`Tool`]s, a [`ToolRegistry`] of them, and per-state [`Toolbox`]es.
//!
//! A tool failure is data, not a crash: [`Toolbox::observe`] turns every
//! outcome (success, bad arguments, unknown or forbidden tool, tool error)
//! into an [`Observation`](crate::env::Observation) the model can react to. A toolbox can mark tools
//! as needing a person's approval ([`Toolbox::require_approval`],
//! [`approval`]).

pub mod approval;
pub mod client;
mod context;
mod func;
#[cfg(feature = "mcp")]
pub mod mcp;
mod policy;
mod schema;
mod toolbox;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use context::ToolContext;
pub use func::{tool_fn, FnTool, ToolFn};
pub use policy::{Blocking, BlockingTool, ToolPolicy};
pub use schema::parameters_of;
pub use toolbox::{ToolSource, Toolbox};

use schema::ArgumentCheck;

/// What a model is told about a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// Why a tool call produced no output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// No tool has that name.
    #[error("unknown tool `{name}`; available tools: {}", .available.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names this state may call.
        available: Vec<String>,
    },
    /// The tool exists but this state may not call it.
    #[error("tool `{name}` is not allowed here; allowed tools: {}", .allowed.join(", "))]
    NotAllowed {
        /// The name asked for.
        name: String,
        /// The names this state may call.
        allowed: Vec<String>,
    },
    /// The arguments do not fit the tool's schema or argument type.
    #[error(
        "invalid arguments for `{tool}`{}: {message}",
        .field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default()
    )]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// Where in the arguments, as a dotted path (`address.city`,
        /// `items.2`), when known.
        field: Option<String>,
        /// What did not fit.
        message: String,
    },
    /// The tool ran and failed.
    #[error("`{tool}` failed: {source}")]
    Failed {
        /// The tool.
        tool: String,
        /// The tool's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// One attempt ran longer than the tool's time limit
    /// ([`ToolPolicy::timeout`]).
    #[error("`{tool}` took longer than {after:?}")]
    TimedOut {
        /// The tool.
        tool: String,
        /// The limit.
        after: std::time::Duration,
    },
    /// A guardrail refused the call, or its result
    /// ([`ToolGuardrail`](crate::guard::ToolGuardrail)); the model reads
    /// the reason.
    #[error("guardrail `{guardrail}` refused the call of `{tool}`: {reason}")]
    Refused {
        /// The tool.
        tool: String,
        /// The guardrail.
        guardrail: String,
        /// Why, for the model.
        reason: String,
    },
    /// The tool's output could not be serialized.
    #[error("`{tool}` returned output that is not JSON: {message}")]
    Output {
        /// The tool.
        tool: String,
        /// What serde said.
        message: String,
    },
}

impl ToolError {
    /// The error's kind in snake_case (`unknown`, `not_allowed`,
    /// `invalid_arguments`, `failed`, `timed_out`, `refused`, `output`): the
    /// `error.type` of its span and the `outcome` of its metric.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ToolError::Unknown { .. } => "unknown",
            ToolError::NotAllowed { .. } => "not_allowed",
            ToolError::InvalidArguments { .. } => "invalid_arguments",
            ToolError::Failed { .. } => "failed",
            ToolError::TimedOut { .. } => "timed_out",
            ToolError::Refused { .. } => "refused",
            ToolError::Output { .. } => "output",
        }
    }
}

/// A tool with typed arguments and output. Its JSON Schema is derived from
/// the argument type ([`parameters_of`]), doc comments becoming field
/// descriptions, and the model's arguments are checked against it before
/// the call.
///
/// ```
/// use schemars::JsonSchema;
/// use serde::Deserialize;
/// use statewise::tool::{Tool, ToolContext};
///
/// struct Add;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Args {
///     /// The first addend.
///     a: i64,
///     /// The second addend.
///     b: i64,
/// }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("overflow")]
/// struct Overflow;
///
/// impl Tool for Add {
///     type Args = Args;
///     type Output = i64;
///     type Error = Overflow;
///
///     fn name(&self) -> &str { "add" }
///     fn description(&self) -> &str { "Adds two integers." }
///     async fn call(&self, args: Args, _ctx: ToolContext) -> Result<i64, Overflow> {
///         args.a.checked_add(args.b).ok_or(Overflow)
///     }
/// }
///
/// use statewise::tool::DynTool;
/// assert_eq!(Add.spec().parameters["required"], serde_json::json!(["a", "b"]));
/// ```
pub trait Tool: Send + Sync + 'static {
    /// The arguments, deserialized from the model's JSON; their schema is
    /// what the model is shown.
    type Args: DeserializeOwned + JsonSchema + Send;
    /// The result, serialized into the observation.
    type Output: Serialize + Send;
    /// The tool's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The name the model calls it by.
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// JSON Schema of [`Tool::Args`], as the model is shown it: derived
    /// from the type unless written by hand.
    fn parameters(&self) -> Value {
        parameters_of::<Self::Args>()
    }
    /// The scopes a principal must hold to be offered this tool and to
    /// call it ([`Principal`](crate::guard::Principal)); none by default.
    fn scopes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Runs the tool; `ctx` says which call of which run this is, with its
    /// deadline and cancellation signal.
    fn call(
        &self,
        args: Self::Args,
        ctx: ToolContext,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// The object-safe form of [`Tool`] the registry stores: JSON in, JSON out.
/// Every `Tool` is one; implement it directly for tools without fixed types.
pub trait DynTool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &str;
    /// The spec shown to models.
    fn spec(&self) -> ToolSpec;
    /// The scopes a principal must hold to use it; none by default.
    fn scopes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Runs the tool on JSON arguments (already checked against the
    /// spec's schema when the call comes through a [`Toolbox`]).
    fn call_json(
        &self,
        arguments: Value,
        ctx: ToolContext,
    ) -> BoxFuture<'_, Result<Value, ToolError>>;
}

impl<T: Tool> DynTool for T {
    fn name(&self) -> &str {
        Tool::name(self)
    }

    fn scopes(&self) -> Vec<String> {
        Tool::scopes(self)
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: Tool::name(self).to_owned(),
            description: self.description().to_owned(),
            parameters: self.parameters(),
        }
    }

    fn call_json(
        &self,
        arguments: Value,
        ctx: ToolContext,
    ) -> BoxFuture<'_, Result<Value, ToolError>> {
        async move {
            let tool = || Tool::name(self).to_owned();
            let args =
                T::Args::deserialize(arguments).map_err(|e| ToolError::InvalidArguments {
                    tool: tool(),
                    field: None,
                    message: e.to_string(),
                })?;
            let output = self.call(args, ctx).await.map_err(|e| ToolError::Failed {
                tool: tool(),
                source: Box::new(e),
            })?;
            serde_json::to_value(output).map_err(|e| ToolError::Output {
                tool: tool(),
                message: e.to_string(),
            })
        }
        .boxed()
    }
}

/// Every tool a machine knows, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn DynTool>>,
    /// Each tool's schema, compiled when it was registered.
    checks: BTreeMap<String, Arc<ArgumentCheck>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.tools.keys()).finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tool`, replacing one of the same name.
    pub fn with(mut self, tool: impl DynTool + 'static) -> Self {
        self.register(tool);
        self
    }

    /// Adds `tool`, returning the one of the same name it replaces.
    pub fn register(&mut self, tool: impl DynTool + 'static) -> Option<Arc<dyn DynTool>> {
        self.register_shared(Arc::new(tool))
    }

    /// Adds a tool already shared, returning the one of the same name it
    /// replaces.
    pub fn register_shared(&mut self, tool: Arc<dyn DynTool>) -> Option<Arc<dyn DynTool>> {
        let name = tool.name().to_owned();
        let check = ArgumentCheck::new(&name, &tool.spec().parameters);
        self.checks.insert(name.clone(), Arc::new(check));
        self.tools.insert(name, tool)
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynTool>> {
        self.tools.get(name)
    }

    /// Every tool name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }
}
