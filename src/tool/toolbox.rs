//! [`Toolbox`]: the tools one state offers the model, with their policies
//! and approvals, and the one place a call is checked, run, timed, counted
//! and turned into an [`Observation`] the model reads.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use serde_json::{json, Value};
use tracing::Instrument;

use super::{ToolContext, ToolError, ToolPolicy, ToolRegistry, ToolSpec};
use crate::env::{Observation, ToolCall};
use crate::guard::{CallCheck, Guardrails, Principal, ResultCheck, Stage, ToolGuardrail, Trip};
use crate::semconv as sc;

/// A set of tools that changes while the program runs, such as an MCP
/// server's ([`mcp::McpServer`](mod@crate::tool)): a toolbox made on it
/// ([`Toolbox::live`]) sees the set as it is at each model request and
/// each call.
pub trait ToolSource: Send + Sync + std::fmt::Debug {
    /// The tools now. Called on every request a state builds, so it should
    /// hand out a snapshot it keeps rather than list anything.
    fn current(&self) -> Arc<ToolRegistry>;
}

/// Where a toolbox's tools come from.
#[derive(Debug, Clone)]
enum Source {
    Fixed(Arc<ToolRegistry>),
    Live(Arc<dyn ToolSource>),
}

impl Source {
    fn current(&self) -> Arc<ToolRegistry> {
        match self {
            Source::Fixed(registry) => Arc::clone(registry),
            Source::Live(source) => source.current(),
        }
    }
}

impl Default for Source {
    fn default() -> Self {
        Source::Fixed(Arc::default())
    }
}

/// The specs of the tools a toolbox may call, and the registry they were
/// read from: read again only when the source hands out another registry.
#[derive(Debug, Default)]
struct Listing {
    registry: Arc<ToolRegistry>,
    specs: Arc<[ToolSpec]>,
}

/// The tools one state may use: a shared registry (or a [`ToolSource`]
/// whose tools change) and an optional allow-list.
///
/// ```
/// # use statewise::tool::{Toolbox, ToolRegistry};
/// let all = Toolbox::new(ToolRegistry::new());
/// let only_calc = all.clone().allow(["calculator"]);
/// assert!(only_calc.specs().is_empty()); // allowed, but not registered
/// ```
#[derive(Debug, Clone, Default)]
pub struct Toolbox {
    source: Source,
    allow: Option<BTreeSet<String>>,
    /// Tools whose calls wait for a person's approval.
    approval: Arc<BTreeSet<String>>,
    /// Tools the caller runs ([`client`](crate::tool::client)), by name.
    client: Arc<BTreeMap<String, ToolSpec>>,
    /// Time limits and retries by tool name, and for the rest.
    policies: Arc<BTreeMap<String, ToolPolicy>>,
    default_policy: ToolPolicy,
    /// Scopes a principal needs for a tool, besides the tool's own.
    scopes: Arc<BTreeMap<String, Vec<String>>>,
    /// This toolbox's own tool guardrails (the machine's run too).
    guardrails: Guardrails,
    /// Shared by clones with the same allow-list: a state asks for the
    /// specs on every model call.
    listing: Arc<std::sync::Mutex<Listing>>,
}

impl Toolbox {
    /// Every tool of `registry`.
    pub fn new(registry: impl Into<Arc<ToolRegistry>>) -> Self {
        Self::from_source(Source::Fixed(registry.into()))
    }

    /// Every tool `source` offers at the time of each request and call:
    /// tools it adds are offered from the next model request on, tools it
    /// drops can no longer be called.
    pub fn live(source: Arc<dyn ToolSource>) -> Self {
        Self::from_source(Source::Live(source))
    }

    fn from_source(source: Source) -> Self {
        Toolbox {
            source,
            allow: None,
            approval: Arc::default(),
            client: Arc::default(),
            policies: Arc::default(),
            default_policy: ToolPolicy::default(),
            scopes: Arc::default(),
            guardrails: Guardrails::default(),
            listing: Arc::default(),
        }
        .relisted()
    }

    /// Restricts this toolbox to the named tools.
    pub fn allow<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.allow = Some(names.into_iter().map(Into::into).collect());
        self.relisted()
    }

    /// Marks the named tools as needing a person's approval before each
    /// call: the stock tool state pauses the run with an
    /// [`approval_request`](crate::tool::approval::approval_request) and runs, rejects or edits each call
    /// as the reply says.
    pub fn require_approval<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        Arc::make_mut(&mut self.approval).extend(names.into_iter().map(Into::into));
        self
    }

    /// Offers `tools` to the model as tools the caller runs
    /// ([`client`](crate::tool::client)): the stock tool state pauses the run on their calls
    /// with a [`client_request`](crate::tool::client::client_request) and records the results the
    /// caller replies with. A client tool hides a registered tool of the
    /// same name.
    pub fn with_client_tools(mut self, tools: impl IntoIterator<Item = ToolSpec>) -> Self {
        Arc::make_mut(&mut self.client).extend(tools.into_iter().map(|t| (t.name.clone(), t)));
        self.relisted()
    }

    /// Whether tool `name` is one the caller runs.
    pub fn is_client_tool(&self, name: &str) -> bool {
        self.client.contains_key(name)
    }

    /// Runs tool `name`'s calls under `policy` (time limit, retries).
    pub fn policy(mut self, name: impl Into<String>, policy: ToolPolicy) -> Self {
        Arc::make_mut(&mut self.policies).insert(name.into(), policy);
        self
    }

    /// Runs the calls of tools without a policy of their own under `policy`
    /// (by default: no limit, no retry).
    pub fn default_policy(mut self, policy: ToolPolicy) -> Self {
        self.default_policy = policy;
        self
    }

    /// The policy tool `name`'s calls run under.
    pub fn policy_of(&self, name: &str) -> ToolPolicy {
        self.policies
            .get(name)
            .copied()
            .unwrap_or(self.default_policy)
    }

    /// Lets only principals holding every one of `scopes` see and call
    /// tool `name` (besides the scopes the tool declares itself,
    /// [`DynTool::scopes`](super::DynTool::scopes)).
    pub fn require_scopes<S: Into<String>>(
        mut self,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        Arc::make_mut(&mut self.scopes)
            .entry(name.into())
            .or_default()
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Runs `guardrail` around every call of this toolbox, after the
    /// machine's tool guardrails.
    pub fn guard(mut self, guardrail: impl ToolGuardrail + 'static) -> Self {
        self.guardrails = self.guardrails.tool(guardrail);
        self
    }

    /// Whether this toolbox has tool guardrails of its own.
    pub fn has_guardrails(&self) -> bool {
        !self.guardrails.tool_guardrails().is_empty()
    }

    /// The scopes a principal needs to use tool `name`.
    fn needed(&self, registry: &ToolRegistry, name: &str) -> Vec<String> {
        let own = registry.get(name).map(|t| t.scopes()).unwrap_or_default();
        own.into_iter()
            .chain(self.scopes.get(name).into_iter().flatten().cloned())
            .collect()
    }

    /// Specs of the tools `principal` may call, sorted by name: every tool
    /// of [`Toolbox::specs`] whose scopes it holds (all of them for a run
    /// acting for no one). What a state offers the model.
    pub fn specs_for(&self, principal: Option<&Principal>) -> Arc<[ToolSpec]> {
        let (registry, specs) = self.listed();
        match principal {
            None => specs,
            Some(p) => specs
                .iter()
                .filter(|s| p.holds(self.needed(&registry, &s.name)))
                .cloned()
                .collect(),
        }
    }

    /// The names `principal` may call, sorted.
    pub fn names_for(&self, principal: Option<&Principal>) -> Vec<String> {
        self.specs_for(principal)
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Whether calls of tool `name` wait for approval.
    pub fn needs_approval(&self, name: &str) -> bool {
        self.approval.contains(name)
    }

    /// The same toolbox with a listing of its own, read now.
    fn relisted(mut self) -> Self {
        let registry = self.source.current();
        let specs = self.specs_of(&registry);
        self.listing = Arc::new(std::sync::Mutex::new(Listing { registry, specs }));
        self
    }

    fn specs_of(&self, registry: &ToolRegistry) -> Arc<[ToolSpec]> {
        let mut specs: Vec<ToolSpec> = registry
            .tools
            .iter()
            .filter(|(n, _)| self.allowed(n) && !self.client.contains_key(*n))
            .map(|(_, t)| t.spec())
            .chain(self.client.values().cloned())
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs.into()
    }

    /// The registry as the source has it now, with the specs read from it.
    fn listed(&self) -> (Arc<ToolRegistry>, Arc<[ToolSpec]>) {
        let registry = self.source.current();
        // A poisoned lock only means a panic elsewhere while listing: the
        // listing is rebuilt below if it is stale anyway.
        let mut listing = self
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !Arc::ptr_eq(&listing.registry, &registry) {
            listing.specs = self.specs_of(&registry);
            listing.registry = Arc::clone(&registry);
        }
        (registry, Arc::clone(&listing.specs))
    }

    fn allowed(&self, name: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.contains(name))
    }

    /// The names this toolbox may call, sorted.
    pub fn names(&self) -> Vec<String> {
        self.specs().iter().map(|s| s.name.clone()).collect()
    }

    /// Specs of the tools this toolbox may call, sorted by name: the same
    /// `Arc` for as long as the tools do not change, so a state can keep
    /// what it builds from them until they do.
    pub fn specs(&self) -> Arc<[ToolSpec]> {
        self.listed().1
    }

    /// Calls tool `name` under its [`ToolPolicy`] and the tool guardrails
    /// (the machine's, then this toolbox's), failing on an unknown or
    /// forbidden name, a principal lacking the tool's scopes, arguments its
    /// schema rejects, or a guardrail's refusal (the tool is not called
    /// then); a guardrail may replace or refuse the result.
    pub async fn call(
        &self,
        name: &str,
        arguments: Value,
        ctx: ToolContext,
    ) -> Result<Value, ToolError> {
        let (registry, _) = self.listed();
        let principal = ctx.principal.as_deref();
        let Some(tool) = registry.get(name) else {
            return Err(ToolError::Unknown {
                name: name.to_owned(),
                available: self.names_for(principal),
            });
        };
        let permitted = principal.is_none_or(|p| p.holds(self.needed(&registry, name)));
        if !self.allowed(name) || !permitted {
            return Err(ToolError::NotAllowed {
                name: name.to_owned(),
                allowed: self.names_for(principal),
            });
        }
        if let Some(check) = registry.checks.get(name) {
            check.check(name, &arguments)?;
        }
        let guardrails: Vec<&Arc<dyn ToolGuardrail>> = ctx
            .guardrails
            .tool_guardrails()
            .iter()
            .chain(self.guardrails.tool_guardrails())
            .collect();
        for guardrail in &guardrails {
            let (reason, stops) = match guardrail.before(name, &arguments, &ctx.scope).await {
                CallCheck::Allow => continue,
                CallCheck::Reject(reason) => (reason, false),
                CallCheck::Stop(reason) => (reason, true),
            };
            return Err(refused(
                &ctx,
                &***guardrail,
                name,
                Stage::ToolCall,
                reason,
                stops,
            ));
        }
        let policy = self.policy_of(name);
        let mut result = policy
            .run(name, arguments, &ctx, |arguments, ctx| {
                tool.call_json(arguments, ctx)
            })
            .await?;
        for guardrail in &guardrails {
            match guardrail.after(name, &result, &ctx.scope).await {
                ResultCheck::Keep => {}
                ResultCheck::Replace(value) => result = value,
                ResultCheck::Stop(reason) => {
                    return Err(refused(
                        &ctx,
                        &***guardrail,
                        name,
                        Stage::ToolResult,
                        reason,
                        true,
                    ))
                }
            }
        }
        Ok(result)
    }

    /// Runs `call` and records its outcome, failure included, as an
    /// observation. A tool that panics is reported the same way: one buggy
    /// tool must not take down the run, or the other runs of the process.
    ///
    /// With a journal in the context, a call recorded there (it completed
    /// before the run was resumed) is answered from the record without
    /// calling the tool, and a completed call is recorded.
    pub async fn observe(&self, call: &ToolCall, ctx: ToolContext) -> Observation {
        let Some(journal) = ctx.journal.clone() else {
            return self.observe_unjournaled(call, ctx).await;
        };
        let (run_id, key) = (Arc::clone(&ctx.run_id), ctx.idempotency_key.clone());
        match journal.recorded(&run_id, &key).await {
            Ok(Some(recorded)) => return recorded,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(tool = %call.name, error = %e, "tool journal read failed; calling the tool")
            }
        }
        let observation = self.observe_unjournaled(call, ctx).await;
        if let Err(e) = journal.record(&run_id, &key, &observation).await {
            tracing::warn!(tool = %call.name, error = %e, "tool journal write failed; a resume may call the tool again");
        }
        observation
    }

    async fn observe_unjournaled(&self, call: &ToolCall, ctx: ToolContext) -> Observation {
        let span = tracing::info_span!(
            "execute_tool",
            { sc::OTEL_NAME } = %format_args!("execute_tool {}", call.name),
            { sc::OTEL_KIND } = "internal",
            { sc::GEN_AI_OPERATION_NAME } = "execute_tool",
            { sc::GEN_AI_TOOL_NAME } = %call.name,
            { sc::GEN_AI_TOOL_CALL_ID } = %call.id,
            { sc::GEN_AI_TOOL_TYPE } = "function",
            { sc::GEN_AI_TOOL_CALL_ARGUMENTS } = tracing::field::Empty,
            { sc::GEN_AI_TOOL_CALL_RESULT } = tracing::field::Empty,
            { sc::ERROR_TYPE } = tracing::field::Empty,
            statewise.is_error = tracing::field::Empty,
        );
        let content_redactor = ctx.span_content.clone();
        let started = std::time::Instant::now();
        if let Some(redactor) = &content_redactor {
            span.record(
                sc::GEN_AI_TOOL_CALL_ARGUMENTS,
                redactor.apply(&call.arguments.to_string()),
            );
        }
        let outcome = AssertUnwindSafe(self.call(&call.name, call.arguments.clone(), ctx))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        let (content, is_error) = match outcome {
            Ok(Ok(v)) => {
                crate::metric::tool_call(&call.name, "ok", started.elapsed());
                (v, false)
            }
            Ok(Err(e)) => {
                span.record(sc::ERROR_TYPE, e.kind_name());
                crate::metric::tool_call(&call.name, e.kind_name(), started.elapsed());
                (json!({ "error": e.to_string() }), true)
            }
            Err(panic) => {
                let message = crate::panic::panic_message(&*panic);
                span.record(sc::ERROR_TYPE, "panic");
                crate::metric::tool_call(&call.name, "panic", started.elapsed());
                (
                    json!({ "error": format!("`{}` panicked: {message}", call.name) }),
                    true,
                )
            }
        };
        span.record("statewise.is_error", is_error);
        if let Some(redactor) = &content_redactor {
            span.record(
                sc::GEN_AI_TOOL_CALL_RESULT,
                redactor.apply(&content.to_string()),
            );
        }
        Observation {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            content,
            is_error,
        }
    }
}

/// Reports a guardrail's refusal on the run's tripwire and makes it the
/// call's error, which the model reads.
fn refused(
    ctx: &ToolContext,
    guardrail: &dyn ToolGuardrail,
    tool: &str,
    stage: Stage,
    reason: String,
    stops: bool,
) -> ToolError {
    let mut trip = Trip::new(guardrail.name(), stage, reason.clone());
    trip.stops = stops;
    ctx.tripwire.record(trip);
    ToolError::Refused {
        tool: tool.to_owned(),
        guardrail: guardrail.name().to_owned(),
        reason,
    }
}
