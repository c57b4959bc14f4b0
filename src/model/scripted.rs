//! Test doubles: a model that plays a script, and one computed by a closure.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::context::{request_tokens, Estimate, TokenCounter};
use super::{
    Capabilities, ChatModel, ChatRequest, ChunkStream, ContextWindow, ModelError, ModelErrorKind,
    Reply,
};
use crate::env::ToolCall;

/// One scripted answer to one model call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scripted {
    /// Stream this reply, split into chunks as a provider would.
    Reply(Reply),
    /// Fail the call with [`ModelError::Scripted`] carrying this message.
    Error(String),
}

/// A [`ScriptedModel`] was called more often than it has replies. Reaches
/// callers as [`ModelError::Refused`] (kind `script`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scripted model `{model}` got call #{call} but its script held only {scripted} replies")]
pub struct ScriptExhausted {
    /// The model's name.
    pub model: String,
    /// The 1-based number of the call that found the script empty.
    pub call: usize,
    /// How many replies the script held in all.
    pub scripted: usize,
}

impl From<ScriptExhausted> for ModelError {
    fn from(refusal: ScriptExhausted) -> Self {
        ModelError::Refused {
            kind: ModelErrorKind::Script,
            cause: std::sync::Arc::new(refusal),
        }
    }
}

/// A model that answers calls from a queue of scripted replies, and records
/// every request it receives.
///
/// ```
/// use statewise::model::{ChatModel, ChatRequest, ScriptedModel};
///
/// # futures::executor::block_on(async {
/// let model = ScriptedModel::new().text("Paris.").error("overloaded");
/// let reply = model.complete(ChatRequest::default()).await.unwrap();
/// assert_eq!(reply.text, "Paris.");
/// assert!(model.complete(ChatRequest::default()).await.is_err());
/// assert_eq!(model.calls().len(), 2);
/// model.assert_complete();
/// # });
/// ```
#[derive(Debug)]
pub struct ScriptedModel {
    name: String,
    window: Option<ContextWindow>,
    capabilities: Capabilities,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    script: VecDeque<Scripted>,
    scripted: usize,
    calls: Vec<ChatRequest>,
}

impl Default for ScriptedModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedModel {
    /// An empty script named `scripted`.
    pub fn new() -> Self {
        Self::from_script("scripted", [])
    }

    /// A model playing `script` in order.
    pub fn from_script(
        name: impl Into<String>,
        script: impl IntoIterator<Item = Scripted>,
    ) -> Self {
        let script: VecDeque<Scripted> = script.into_iter().collect();
        ScriptedModel {
            name: name.into(),
            window: None,
            capabilities: Capabilities::default(),
            inner: Mutex::new(Inner {
                scripted: script.len(),
                script,
                calls: Vec::new(),
            }),
        }
    }

    /// Renames the model (names show in traces and errors).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Gives the model a context window and enforces it as a server does:
    /// a request longer than `window.tokens` (counted by its counter, else
    /// the [`Estimate`]) fails with [`ModelError::ContextOverflow`] without
    /// using up a scripted reply. It is still recorded in [`calls`](Self::calls).
    pub fn with_context_window(mut self, window: ContextWindow) -> Self {
        self.window = Some(window);
        self
    }

    /// Says what the model can do (default: nothing beyond plain chat),
    /// so states adapt their requests as they would for a real one, e.g.
    /// send a `response_schema` to a model that constrains its output.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Appends a reply.
    pub fn reply(self, reply: Reply) -> Self {
        self.push(Scripted::Reply(reply));
        self
    }

    /// Appends a plain text reply.
    pub fn text(self, text: impl Into<String>) -> Self {
        self.reply(Reply::text(text))
    }

    /// Appends a reply holding one native tool call.
    pub fn tool_call(self, name: impl Into<String>, arguments: Value) -> Self {
        self.reply(Reply::tool_calls(vec![ToolCall::new(
            "call_0", name, arguments,
        )]))
    }

    /// Appends a failing call.
    pub fn error(self, message: impl Into<String>) -> Self {
        self.push(Scripted::Error(message.into()));
        self
    }

    /// Appends to the script of a model that is already shared.
    pub fn push(&self, item: Scripted) {
        let mut inner = self.lock();
        inner.script.push_back(item);
        inner.scripted += 1;
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<ChatRequest> {
        self.lock().calls.clone()
    }

    /// How many scripted replies are still unplayed.
    pub fn remaining(&self) -> usize {
        self.lock().script.len()
    }

    /// Panics, naming what is left, if any scripted reply was never played.
    #[track_caller]
    pub fn assert_complete(&self) {
        let inner = self.lock();
        assert!(
            inner.script.is_empty(),
            "scripted model `{}`: {} of {} replies were never requested; next unplayed: {:?}",
            self.name,
            inner.script.len(),
            inner.scripted,
            inner.script.front()
        );
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the script from the others.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ChatModel for ScriptedModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        futures::future::ready(self.window.clone()).boxed()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        self.window.as_ref().and_then(|w| w.counter.clone())
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        let overflow = self.window.as_ref().and_then(|w| {
            let counter = w.counter.as_deref().unwrap_or(&Estimate);
            let tokens = request_tokens(&request, counter);
            (tokens >= w.tokens as usize).then(|| ModelError::ContextOverflow {
                provider: self.name.clone(),
                prompt_tokens: Some(tokens as u32),
                window: Some(w.tokens),
                message: "the request exceeds the context window".to_owned(),
            })
        });
        let mut inner = self.lock();
        inner.calls.push(request);
        if let Some(error) = overflow {
            return stream::once(async { Err(error) }).boxed();
        }
        match inner.script.pop_front() {
            Some(Scripted::Reply(reply)) => {
                stream::iter(reply.to_chunks().into_iter().map(Ok)).boxed()
            }
            Some(Scripted::Error(message)) => {
                stream::once(async { Err(ModelError::Scripted(message)) }).boxed()
            }
            None => {
                let err = ModelError::from(ScriptExhausted {
                    model: self.name.clone(),
                    call: inner.calls.len(),
                    scripted: inner.scripted,
                });
                stream::once(async { Err(err) }).boxed()
            }
        }
    }
}

type ReplyFn = dyn Fn(&ChatRequest) -> Result<Reply, ModelError> + Send + Sync;

/// A model whose reply is computed from the request by a closure, streamed in
/// chunks like [`ScriptedModel`]'s.
pub struct FnModel {
    name: String,
    reply: Box<ReplyFn>,
    pace: Option<std::time::Duration>,
    native_tools: bool,
}

impl FnModel {
    /// A model named `name` answering with `reply`.
    pub fn new(
        name: impl Into<String>,
        reply: impl Fn(&ChatRequest) -> Result<Reply, ModelError> + Send + Sync + 'static,
    ) -> Self {
        FnModel {
            name: name.into(),
            reply: Box::new(reply),
            pace: None,
            native_tools: false,
        }
    }

    /// Says the model calls tools natively (default: it is prompted for
    /// JSON actions): requests offer it tools, and its replies' tool calls
    /// are taken as they are.
    pub fn native_tools(mut self, on: bool) -> Self {
        self.native_tools = on;
        self
    }

    /// Waits `per_chunk` before each chunk of a reply, as a model that
    /// takes its time (for demos and load tests; needs a tokio runtime).
    pub fn paced(mut self, per_chunk: std::time::Duration) -> Self {
        self.pace = Some(per_chunk);
        self
    }
}

impl std::fmt::Debug for FnModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnModel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ChatModel for FnModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_tools: self.native_tools,
            ..Capabilities::default()
        }
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        match ((self.reply)(&request), self.pace) {
            (Ok(reply), None) => stream::iter(reply.to_chunks().into_iter().map(Ok)).boxed(),
            (Ok(reply), Some(pace)) => stream::iter(reply.to_chunks())
                .then(move |chunk| async move {
                    tokio::time::sleep(pace).await;
                    Ok(chunk)
                })
                .boxed(),
            (Err(e), _) => stream::once(async { Err(e) }).boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Chunk;

    #[tokio::test]
    async fn past_the_script_is_a_typed_error() {
        let model = ScriptedModel::new().text("one").named("m");
        model.complete(ChatRequest::default()).await.unwrap();
        let err = model.complete(ChatRequest::default()).await.unwrap_err();
        let exhausted = err
            .refusal::<ScriptExhausted>()
            .expect("a ScriptExhausted refusal");
        assert_eq!((exhausted.call, exhausted.scripted), (2, 1));
        assert_eq!(err.kind(), ModelErrorKind::Script);
        assert!(err.to_string().contains("call #2"), "{err}");
    }

    #[tokio::test]
    async fn text_streams_in_several_chunks() {
        let model = ScriptedModel::new().text("one two three");
        let chunks: Vec<_> = model.stream(ChatRequest::default()).collect().await;
        let texts: Vec<_> = chunks
            .iter()
            .filter_map(|c| match c {
                Ok(Chunk::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["one ", "two ", "three"]);
    }

    #[test]
    #[should_panic(expected = "1 of 2 replies were never requested")]
    fn assert_complete_fails_while_replies_remain() {
        let model = ScriptedModel::new().text("a").text("b");
        drop(model.stream(ChatRequest::default()));
        model.assert_complete();
    }

    #[test]
    fn script_round_trips_through_json() {
        let script = vec![
            Scripted::Reply(Reply::text("hi")),
            Scripted::Error("down".into()),
        ];
        let json = serde_json::to_string(&script).unwrap();
        let back: Vec<Scripted> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, script);
    }
}
