//! The RunTools state: run the pending tool calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use statewise::tool::approval::{approval_request, Approvals, Verdict};
use statewise::tool::client::{client_request, ClientResults};
use statewise::tool::{ToolContext, Toolbox};
use statewise::{
    Emit, EmitStream, Env, Message, Next, Observation, Role, ScratchKey, State, StateError,
    ToolCall,
};

use crate::{REASONING, TOOLS};

/// Runs the pending tool calls concurrently and records their observations
/// in call order (in `env.observations`, and as tool messages). Unknown,
/// forbidden and failing tools become error observations the model sees.
///
/// Calls of tools the toolbox marks as needing approval
/// ([`Toolbox::require_approval`]) pause the run first with one request for
/// all of them ([`approval_request`]); once
/// [`Machine::resume_with`](statewise::Machine::resume_with) brings the
/// response, the state runs again without asking, runs the approved calls
/// (with edited arguments where the person edited them), and turns each
/// rejected one into the error observation `rejected by the user:
/// <reason>`. Nothing runs before the response, so nothing runs twice.
///
/// Calls of client tools ([`Toolbox::with_client_tools`]) are the caller's
/// to run: once approvals are settled, the run pauses with one
/// [`client_request`] for them, and the results in the response
/// ([`ClientResults`]) become their observations, beside those of the
/// tools run here.
///
/// A call repeated within one request (the same tool with the same
/// arguments, in any key order: [`ToolCall::signature`]) is answered from
/// the observation of the first, without running the tool again: a small
/// model asks twice, and a second run of a tool with effects would do them
/// twice. A failed call runs again; a new user request starts afresh.
///
/// Its name is `tools` unless renamed ([`TOOLS`](crate::TOOLS)), as the
/// stock Reasoning state routes tool calls there.
///
/// Routing: back to `reasoning`.
#[derive(Debug, Clone)]
pub struct RunTools {
    name: String,
    tools: Toolbox,
    then: String,
    /// The calls that ran and succeeded, by signature: each one's call id.
    ran: ScratchKey<BTreeMap<String, String>>,
}

impl RunTools {
    /// A RunTools state (named `tools`) that may call the tools of `tools`.
    pub fn new(tools: Toolbox) -> Self {
        RunTools {
            name: TOOLS.to_owned(),
            tools,
            then: REASONING.to_owned(),
            ran: ran_key(TOOLS),
        }
    }

    /// Renames the state.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.ran = ran_key(&self.name);
        self
    }

    /// The state to go to after the tools ran (default `reasoning`).
    pub fn then(mut self, state: impl Into<String>) -> Self {
        self.then = state.into();
        self
    }
}

fn ran_key(name: &str) -> ScratchKey<BTreeMap<String, String>> {
    ScratchKey::named(format!("{name}.ran"))
}

/// What a person and the caller answered about a step's calls.
struct Answers {
    /// The person's verdicts, when a call needed approval.
    approvals: Option<Approvals>,
    /// The caller's results, when a call was the caller's to run.
    client_results: Option<ClientResults>,
}

/// Why the calls cannot run yet.
enum Ask {
    /// A request to pause on: nobody has answered it yet.
    Interrupt(Box<statewise::Interrupt>),
    /// The answer could not be read.
    Failed(StateError),
}

impl RunTools {
    /// The observation of an earlier call like `call` (same signature),
    /// as the answer to `call`.
    fn earlier(
        &self,
        env: &Env,
        ran: &BTreeMap<String, String>,
        call: &ToolCall,
    ) -> Option<Observation> {
        let id = ran.get(&call.signature())?;
        let earlier = env
            .observations
            .iter()
            .rev()
            .find(|o| &o.call_id == id && !o.is_error)?;
        Some(Observation {
            call_id: call.id.clone(),
            ..earlier.clone()
        })
    }

    /// The answers the calls wait for: approvals first, then the caller's
    /// results (so a rejected call is never handed out).
    fn answers(&self, env: &Env, calls: &[ToolCall]) -> Result<Answers, Ask> {
        let guarded: Vec<&ToolCall> = calls
            .iter()
            .filter(|c| self.tools.needs_approval(&c.name))
            .collect();
        let approvals = match response_to(env, &guarded, approval_request)? {
            None => None,
            Some(response) => Some(
                Approvals::from_response(response)
                    .map_err(|e| Ask::Failed(StateError::custom(e)))?,
            ),
        };
        let client: Vec<&ToolCall> = calls
            .iter()
            .filter(|c| self.tools.is_client_tool(&c.name))
            .collect();
        let client_results =
            response_to(env, &client, client_request)?.map(ClientResults::from_response);
        Ok(Answers {
            approvals,
            client_results,
        })
    }
}

/// The response to the request `ask` makes about `calls`; `None` when there
/// are no calls to ask about, the request itself while nobody answered.
fn response_to<'e>(
    env: &'e Env,
    calls: &[&ToolCall],
    ask: fn(&[&ToolCall]) -> statewise::Interrupt,
) -> Result<Option<&'e serde_json::Value>, Ask> {
    if calls.is_empty() {
        return Ok(None);
    }
    let request = ask(calls);
    match env.response(&request.id) {
        Some(response) => Ok(Some(response)),
        None => Err(Ask::Interrupt(Box::new(request))),
    }
}

impl State for RunTools {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let Some(calls) = env.pending_calls().map(<[ToolCall]>::to_vec) else {
                Err(StateError::Precondition {
                    state: self.name.clone(),
                    missing: "no pending tool calls in env.action".to_owned(),
                })?;
                return;
            };
            // Calls that wait for a person or the caller: ask, and stop
            // here with the calls still pending; run again, find the response
            // and follow it.
            let Answers { approvals, client_results } = match self.answers(env, &calls) {
                Ok(answers) => answers,
                Err(Ask::Interrupt(request)) => {
                    yield Emit::Interrupt(request);
                    return;
                }
                Err(Ask::Failed(e)) => Err(e)?,
            };
            env.action = None;
            // The calls that ran since the last user request (earlier
            // ones are forgotten: a new request starts afresh).
            let mut ran = env.scratch.get(&self.ran)?.unwrap_or_default();
            let asked = env.messages.iter().rposition(|m| m.role == Role::User).unwrap_or(0);
            let answered: BTreeSet<&str> = env.messages[asked..]
                .iter()
                .filter_map(|m| m.tool_call_id.as_deref())
                .collect();
            ran.retain(|_, id| answered.contains(id.as_str()));
            let mut done: Vec<Option<Observation>> = vec![None; calls.len()];
            let mut approved = Vec::with_capacity(calls.len());
            for (i, call) in calls.iter().enumerate() {
                if let Some(observation) = self.earlier(env, &ran, call) {
                    done[i] = Some(observation);
                    continue;
                }
                if let (Some(results), true) = (&client_results, self.tools.is_client_tool(&call.name)) {
                    done[i] = Some(results.observe(call));
                    continue;
                }
                match approvals.as_ref().filter(|_| self.tools.needs_approval(&call.name)) {
                    None => approved.push((i, call.clone())),
                    Some(approvals) => match approvals.apply(call) {
                        Verdict::Run(call) => approved.push((i, call)),
                        Verdict::Rejected(rejected) => done[i] = Some(rejected),
                    },
                }
            }
            for (_, call) in &approved {
                yield Emit::ToolCallStarted(call.clone());
            }
            let (settings, step) = (&env.settings, env.step);
            // What tool guardrails know of the run, built once for the
            // calls, and only when a guardrail will read it.
            let guarded = self.tools.has_guardrails() || !settings.guardrails.tool_guardrails().is_empty();
            let scope = Arc::new(if guarded { env.call_scope() } else { Default::default() });
            let mut running: FuturesUnordered<_> = approved
                .iter()
                .map(|(i, call)| {
                    let ctx = ToolContext::for_call(settings, step, &call.id).in_scope(Arc::clone(&scope));
                    async move {
                    let started = Instant::now();
                    let observation = self.tools.observe(call, ctx).await;
                    (*i, observation, started.elapsed())
                    }
                })
                .collect();
            while let Some((i, observation, elapsed)) = running.next().await {
                yield Emit::ToolCallFinished {
                    call_id: observation.call_id.clone(),
                    tool: observation.tool.clone(),
                    is_error: observation.is_error,
                    elapsed,
                };
                if let (false, Some((_, call))) = (observation.is_error, approved.iter().find(|(j, _)| *j == i)) {
                    ran.insert(call.signature(), observation.call_id.clone());
                }
                done[i] = Some(observation);
            }
            drop(running);
            env.scratch.set(&self.ran, &ran)?;
            for observation in done.into_iter().flatten() {
                env.messages.push(Message::tool(observation.call_id.clone(), observation.render()));
                env.observations.push(observation.clone());
                yield Emit::Observation(observation);
            }
        })
    }

    fn targets(&self) -> Option<Vec<Next>> {
        Some(vec![Next::to(self.then.clone())])
    }

    fn transition(&self, _env: &Env) -> Next {
        Next::to(self.then.clone())
    }
}
