//! The RunTools state: run the pending tool calls.

use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use statewise::tool::Toolbox;
use statewise::{Emit, EmitStream, Env, Message, Next, State, StateError};

use crate::{ACTION, REASONING};

/// Runs the pending tool calls concurrently and records their observations
/// in call order (in `env.observations`, and as tool messages). Unknown,
/// forbidden and failing tools become error observations the model sees.
///
/// Its name is `action` unless renamed ([`ACTION`](crate::ACTION)), as the
/// stock Reasoning state routes tool calls there.
///
/// Routing: back to `reasoning`.
#[derive(Debug, Clone)]
pub struct RunTools {
    name: String,
    tools: Toolbox,
    then: String,
}

impl RunTools {
    /// A RunTools state (named `action`) that may call the tools of `tools`.
    pub fn new(tools: Toolbox) -> Self {
        RunTools {
            name: ACTION.to_owned(),
            tools,
            then: REASONING.to_owned(),
        }
    }

    /// Renames the state.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The state to go to after the tools ran (default `reasoning`).
    pub fn then(mut self, state: impl Into<String>) -> Self {
        self.then = state.into();
        self
    }
}

impl State for RunTools {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let calls = match env.action.take() {
                Some(statewise::Action::ToolCalls(calls)) => calls,
                other => {
                    env.action = other;
                    Err(StateError::Precondition {
                        state: self.name.clone(),
                        missing: "no pending tool calls in env.action".to_owned(),
                    })?;
                    return;
                }
            };
            for call in &calls {
                yield Emit::ToolCallStarted(call.clone());
            }
            let mut running: FuturesUnordered<_> = calls
                .iter()
                .enumerate()
                .map(|(i, call)| async move {
                    let started = Instant::now();
                    let observation = self.tools.observe(call).await;
                    (i, observation, started.elapsed())
                })
                .collect();
            let mut done = vec![None; calls.len()];
            while let Some((i, observation, elapsed)) = running.next().await {
                yield Emit::ToolCallFinished {
                    call_id: observation.call_id.clone(),
                    tool: observation.tool.clone(),
                    is_error: observation.is_error,
                    elapsed,
                };
                done[i] = Some(observation);
            }
            drop(running);
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
