//! A whole reply, and the builder that assembles one from streamed chunks.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::time::Duration;

use super::{
    ChatModel, ChatRequest, Chunk, ChunkStream, FinishReason, Fitted, ModelError, RouteStep,
    ToolCallDelta,
};
use crate::env::{Env, RunSettings};
use crate::env::{ToolCall, ToolCallDraft, Usage};
use crate::metric;
use crate::semconv::provider_and_model;

/// A complete model reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The answer text.
    #[serde(default)]
    pub text: String,
    /// Reasoning text, if the model streamed any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// Native tool calls, assembled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Token counts.
    #[serde(default)]
    pub usage: Usage,
    /// Why generation ended, if the model said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<FinishReason>,
    /// Natural-log probabilities of the generated tokens, where the request
    /// asked for them and the provider returned them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<f32>,
    /// How a router or cascade served the call, one step per model asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteStep>,
}

impl Reply {
    /// A plain text reply.
    pub fn text(text: impl Into<String>) -> Self {
        Reply {
            text: text.into(),
            finish: Some(FinishReason::Stop),
            ..Reply::default()
        }
    }

    /// A reply made of native tool calls.
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Reply {
            tool_calls: calls,
            finish: Some(FinishReason::ToolCalls),
            ..Reply::default()
        }
    }

    /// Sets the reasoning text.
    pub fn with_reasoning(mut self, reasoning: impl Into<String>) -> Self {
        self.reasoning = reasoning.into();
        self
    }

    /// Sets the token counts.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// How sure the model was of this reply: the geometric mean of its
    /// tokens' probabilities ([`confidence`](super::confidence)); `None`
    /// without log-probabilities.
    pub fn confidence(&self) -> Option<f64> {
        super::confidence(&self.logprobs)
    }

    /// Adds the reply's usage to the run's (`env.usage`) and each model's
    /// share of a routed or cascaded call to `env.usage_by_model`. States
    /// call this with each reply they get.
    pub fn charge(&self, env: &mut Env) {
        env.usage.add(&self.usage);
        for step in self.route.iter().filter(|s| s.usage != Usage::default()) {
            env.usage_by_model
                .entry(step.model.clone())
                .or_default()
                .add(&step.usage);
        }
    }

    /// The reply `chunks` make, assembled as a [`ReplyBuilder`] does.
    pub fn from_chunks(chunks: impl IntoIterator<Item = Chunk>) -> Self {
        let mut reply = ReplyBuilder::default();
        for chunk in chunks {
            reply.push(chunk);
        }
        reply.finish()
    }

    /// The reply as a provider would stream it: text and reasoning split
    /// into word-sized chunks, each tool call's arguments split in two, then
    /// usage and the finish reason.
    pub fn to_chunks(&self) -> Vec<Chunk> {
        let mut chunks: Vec<Chunk> = split_words(&self.reasoning)
            .map(|w| Chunk::Reasoning(w.to_owned()))
            .collect();
        chunks.extend(split_words(&self.text).map(|w| Chunk::Text(w.to_owned())));
        for (index, call) in self.tool_calls.iter().enumerate() {
            let args = call.arguments.to_string();
            let mid = args.char_indices().nth(args.chars().count() / 2);
            let (head, tail) = args.split_at(mid.map_or(args.len(), |(i, _)| i));
            chunks.push(Chunk::ToolCall(ToolCallDelta {
                index,
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments: head.to_owned(),
            }));
            if !tail.is_empty() {
                chunks.push(Chunk::ToolCall(ToolCallDelta {
                    index,
                    id: None,
                    name: None,
                    arguments: tail.to_owned(),
                }));
            }
        }
        if !self.logprobs.is_empty() {
            chunks.push(Chunk::Logprobs(self.logprobs.clone()));
        }
        chunks.extend(self.route.iter().cloned().map(Chunk::Route));
        if self.usage != Usage::default() {
            chunks.push(Chunk::Usage(self.usage));
        }
        if let Some(finish) = &self.finish {
            chunks.push(Chunk::Finish(finish.clone()));
        }
        chunks
    }
}

/// Splits text into word-sized pieces, each ending after its run of
/// whitespace, the way providers stream it: concatenated, they give back the
/// text exactly.
///
/// ```
/// let pieces: Vec<&str> = statewise::model::split_words("one two  three").collect();
/// assert_eq!(pieces, ["one ", "two  ", "three"]);
/// ```
pub fn split_words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let word_end = rest
            .char_indices()
            .find(|(i, c)| c.is_whitespace() && *i > 0)
            .map_or(rest.len(), |(i, _)| i);
        let end = rest[word_end..]
            .char_indices()
            .find(|(_, c)| !c.is_whitespace())
            .map_or(rest.len(), |(i, _)| word_end + i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
    /// Announced as a [`ToolCallDraft::Named`]: its id is settled.
    announced: bool,
}

/// Assembles a [`Reply`] from streamed [`Chunk`]s.
///
/// Tool-call fragments are joined by index; usage chunks are added up, so a
/// provider that reports input and output tokens separately is counted once each.
#[derive(Debug, Default)]
pub struct ReplyBuilder {
    text: String,
    reasoning: String,
    calls: Vec<PartialCall>,
    usage: Usage,
    finish: Option<FinishReason>,
    logprobs: Vec<f32>,
    route: Vec<RouteStep>,
}

impl ReplyBuilder {
    /// Adds one chunk.
    pub fn push(&mut self, chunk: Chunk) {
        self.push_drafting(chunk, |_| {});
    }

    /// Adds one chunk; a tool-call fragment also tells `draft` what it
    /// makes known of its call: the name once complete (with the id the
    /// finished call keeps), then each piece of its arguments.
    pub fn push_drafting(&mut self, chunk: Chunk, draft: impl FnMut(ToolCallDraft)) {
        match chunk {
            Chunk::Text(t) => self.text.push_str(&t),
            Chunk::Reasoning(t) => self.reasoning.push_str(&t),
            Chunk::ToolCall(delta) => self.push_call(delta, draft),
            Chunk::Usage(u) => self.usage.add(&u),
            Chunk::Finish(f) => self.finish = Some(f),
            Chunk::Logprobs(l) => self.logprobs.extend(l),
            Chunk::Route(step) => self.route.push(step),
        }
    }

    fn push_call(&mut self, delta: ToolCallDelta, mut draft: impl FnMut(ToolCallDraft)) {
        let index = delta.index;
        if self.calls.len() <= index {
            self.calls.resize_with(index + 1, PartialCall::default);
        }
        let call = &mut self.calls[index];
        if let Some(id) = delta.id.filter(|_| !call.announced) {
            call.id = Some(id);
        }
        if let Some(name) = delta.name {
            call.name.push_str(&name);
        }
        call.arguments.push_str(&delta.arguments);
        if call.announced {
            if !delta.arguments.is_empty() {
                draft(ToolCallDraft::Arguments {
                    call_id: call.id.clone().unwrap_or_default(),
                    delta: delta.arguments,
                });
            }
        } else if !call.name.is_empty() {
            // Providers send the name whole in the call's first fragment;
            // from here on the id is the one the finished call keeps.
            call.announced = true;
            let call_id = call
                .id
                .get_or_insert_with(|| format!("call_{index}"))
                .clone();
            draft(ToolCallDraft::Named {
                call_id: call_id.clone(),
                tool: call.name.clone(),
            });
            if !call.arguments.is_empty() {
                draft(ToolCallDraft::Arguments {
                    call_id,
                    delta: call.arguments.clone(),
                });
            }
        }
    }

    /// The complete reply. Tool-call arguments that are not valid JSON are
    /// repaired as JSON actions are ([`repair`](crate::action::repair):
    /// single quotes, trailing commas, missing closers, ...); arguments no
    /// repair makes an object of are kept as a JSON string, so nothing the
    /// model sent is lost.
    pub fn finish(self) -> Reply {
        let tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .filter(|(_, c)| !c.name.is_empty() || !c.arguments.is_empty())
            .map(|(i, c)| {
                let arguments = if c.arguments.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    serde_json::from_str(&c.arguments)
                        .ok()
                        .or_else(|| crate::action::repair(&c.arguments).ok())
                        .filter(Value::is_object)
                        .unwrap_or(Value::String(c.arguments))
                };
                ToolCall {
                    id: c.id.unwrap_or_else(|| format!("call_{i}")),
                    name: c.name,
                    arguments,
                }
            })
            .collect();
        Reply {
            text: self.text,
            reasoning: self.reasoning,
            tool_calls,
            usage: self.usage,
            finish: self.finish,
            logprobs: self.logprobs,
            route: self.route,
        }
    }
}

/// What a model call streams to the state that made it; a state passes
/// each on as an [`Emit`](crate::Emit) (`Emit::from`), so providers need
/// not know the states' vocabulary.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Streamed {
    /// Generated text.
    Token(String),
    /// Reasoning ("thinking") text.
    Reasoning(String),
    /// A native tool call as it streams: its name once known, then its
    /// arguments' text.
    ToolCallDraft(crate::env::ToolCallDraft),
    /// The request was shortened to fit the context window
    /// ([`FittedCall`](crate::fit::FittedCall)).
    Fitted(Fitted),
    /// The call ended: request and whole reply, when model calls are
    /// recorded ([`RunSettings::record_model_calls`]).
    Call(Box<ModelCall>),
    /// A router or cascade's step: which model served (part of) the call,
    /// and what became of its reply ([`Chunk::Route`]).
    Route(RouteStep),
}

/// A model call as a state streams it: yields text as [`Streamed::Token`]
/// and reasoning as [`Streamed::Reasoning`] while assembling the whole
/// [`Reply`].
///
/// ```
/// use futures::StreamExt;
/// use statewise::model::{ChatModel, ChatRequest, ReplyStream, ScriptedModel, Streamed};
///
/// # futures::executor::block_on(async {
/// let model = ScriptedModel::new().text("Hello there");
/// let mut call = ReplyStream::new(model.stream(ChatRequest::default()));
/// let mut tokens = Vec::new();
/// while let Some(streamed) = call.next().await {
///     if let Streamed::Token(t) = streamed? { tokens.push(t); }
/// }
/// assert_eq!(tokens, ["Hello ", "there"]);
/// assert_eq!(call.finish().text, "Hello there");
/// # Ok::<(), statewise::model::ModelError>(())
/// # }).unwrap();
/// ```
pub struct ReplyStream<'a> {
    chunks: ChunkStream<'a>,
    reply: ReplyBuilder,
    /// Tool-call drafts a fragment made known, not yet yielded (a
    /// fragment can name a call and carry arguments).
    drafts: std::collections::VecDeque<ToolCallDraft>,
    record: Option<Box<Pending>>,
    done: Option<Reply>,
}

/// What [`ReplyStream::call`] keeps to describe the call once it ends.
struct Pending {
    model: String,
    /// Kept only while the machine records model calls: a prompt copy per
    /// call in flight is memory a run should not pay for otherwise.
    request: Option<ChatRequest>,
    started: std::time::Instant,
    first_token: Option<Duration>,
    span: tracing::Span,
    /// Set when the span carries the reply too.
    content: Option<std::sync::Arc<crate::redact::Redactor>>,
}

/// One model call as it happened: the request, the whole reply, timings.
/// [`ReplyStream::call`] streams it as [`Streamed::Call`] when the reply is
/// complete and the machine records model calls
/// ([`Machine::record_model_calls`](crate::Machine::record_model_calls), on
/// with a tracer); traces and replays are made of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCall {
    /// The model's name.
    pub model: String,
    /// What was sent.
    pub request: ChatRequest,
    /// What came back.
    pub reply: Reply,
    /// From the request to the last chunk.
    pub elapsed: Duration,
    /// From the request to the first text, if any came.
    #[serde(default)]
    pub first_token: Option<Duration>,
}

impl ModelCall {
    /// Whether a response cache served the reply.
    pub fn cached(&self) -> bool {
        self.reply.usage.cached_responses > 0
    }
}

impl<'a> ReplyStream<'a> {
    /// Wraps the chunks of one model call.
    pub fn new(chunks: ChunkStream<'a>) -> Self {
        ReplyStream {
            chunks,
            reply: ReplyBuilder::default(),
            drafts: Default::default(),
            record: None,
            done: None,
        }
    }

    /// Calls `model` with `request` and streams the reply. Unlike
    /// [`ReplyStream::new`], the call is described: it runs in a
    /// `chat` tracing span after the OpenTelemetry GenAI conventions
    /// (provider, model, token counts, finish reason, error type, and the
    /// messages when [`RunSettings::span_content`] says so) and,
    /// when `settings` (the env's, [`Env::settings`](crate::Env::settings))
    /// say the machine records model calls, a last [`Streamed::Call`]
    /// carries the request and reply for traces and replays. States should
    /// call models this way.
    pub fn call(model: &'a dyn ChatModel, request: ChatRequest, settings: &RunSettings) -> Self {
        let span = super::span::chat_span(model, &request, settings);
        let (request, chunks) = span.in_scope(|| match settings.record_model_calls {
            true => (Some(request.clone()), model.stream(request)),
            false => (None, model.stream(request)),
        });
        ReplyStream {
            chunks,
            reply: ReplyBuilder::default(),
            drafts: Default::default(),
            record: Some(Box::new(Pending {
                model: model.name().to_owned(),
                request,
                started: std::time::Instant::now(),
                first_token: None,
                span,
                content: settings.span_content.clone(),
            })),
            done: None,
        }
    }

    /// The reply assembled from the chunks received so far.
    pub fn finish(self) -> Reply {
        match self.done {
            Some(reply) => reply,
            None => self.reply.finish(),
        }
    }

    /// The whole reply, described if it is recorded, once the chunks have
    /// ended.
    fn complete(&mut self, pending: Box<Pending>) -> Option<ModelCall> {
        let reply = std::mem::take(&mut self.reply).finish();
        let span = &pending.span;
        // Set before the early return below: finish() must see the reply.
        let reply = &*self.done.insert(reply);
        super::span::record_reply(span, reply, pending.content.as_deref());
        let elapsed = pending.started.elapsed();
        metric::model_call(
            provider_and_model(&pending.model),
            call_usage(&reply.usage),
            elapsed,
            pending.first_token,
        );
        for step in &reply.route {
            metric::route_step(
                provider_and_model(&step.model),
                step.verdict.as_str(),
                call_usage(&step.usage),
            );
        }
        let request = pending.request?;
        Some(ModelCall {
            model: pending.model,
            request,
            reply: reply.clone(),
            elapsed: pending.started.elapsed(),
            first_token: pending.first_token,
        })
    }
}

/// `usage` as the metrics leaf takes it (it imports nothing from the crate).
fn call_usage(usage: &Usage) -> metric::CallUsage {
    metric::CallUsage {
        input: usage.prompt_tokens,
        output: usage.completion_tokens,
        cache_read: usage.cached_tokens,
        cache_creation: usage.cache_write_tokens,
        cost: usage.cost,
    }
}

impl Stream for ReplyStream<'_> {
    type Item = Result<Streamed, ModelError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(draft) = self.drafts.pop_front() {
                return Poll::Ready(Some(Ok(Streamed::ToolCallDraft(draft))));
            }
            let this = &mut *self;
            let polled = {
                // The provider's own events and spans belong to this call.
                let _entered = this.record.as_ref().map(|p| p.span.enter());
                ready!(this.chunks.as_mut().poll_next(cx))
            };
            let chunk = match polled {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    if let Some(p) = self.record.take() {
                        super::span::record_error(&p.span, &e);
                        metric::model_error(provider_and_model(&p.model), e.code());
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    let pending = self.record.take();
                    let call = pending.and_then(|p| self.complete(p));
                    return Poll::Ready(call.map(|c| Ok(Streamed::Call(Box::new(c)))));
                }
            };
            if let (Some(p), Chunk::Text(_) | Chunk::Reasoning(_) | Chunk::ToolCall(_)) =
                (&mut self.record, &chunk)
            {
                p.first_token.get_or_insert_with(|| p.started.elapsed());
            }
            let emit = match &chunk {
                Chunk::Text(t) => Some(Streamed::Token(t.clone())),
                Chunk::Reasoning(t) => Some(Streamed::Reasoning(t.clone())),
                Chunk::Route(step) => Some(Streamed::Route(step.clone())),
                _ => None,
            };
            let this = &mut *self;
            let drafts = &mut this.drafts;
            this.reply
                .push_drafting(chunk, |draft| drafts.push_back(draft));
            if let Some(emit) = emit {
                return Poll::Ready(Some(Ok(emit)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_rejoin_exactly() {
        for text in ["", "a", "hello  world\n", " lead", "née über 日本 😀 x"] {
            let parts: Vec<&str> = split_words(text).collect();
            assert_eq!(parts.concat(), text);
            assert!(parts.iter().all(|p| !p.is_empty()));
        }
        assert_eq!(
            split_words("a b  c").collect::<Vec<_>>(),
            ["a ", "b  ", "c"]
        );
    }

    #[test]
    fn chunks_round_trip_through_builder() {
        let reply = Reply {
            text: "The answer is 4.".into(),
            reasoning: "2+2 is 4".into(),
            tool_calls: vec![
                ToolCall::new("a", "calc", json!({"expr": "2+2", "ü": [1, 2]})),
                ToolCall::new("b", "clock", json!({})),
            ],
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                ..Usage::default()
            },
            finish: Some(FinishReason::Stop),
            logprobs: vec![-0.5, -0.01],
            route: vec![RouteStep {
                tier: "small".into(),
                model: "m".into(),
                verdict: crate::model::Verdict::Accepted,
                reason: String::new(),
                usage: Usage::default(),
                confidence: Some(0.9),
            }],
        };
        let mut builder = ReplyBuilder::default();
        for chunk in reply.to_chunks() {
            builder.push(chunk);
        }
        assert_eq!(builder.finish(), reply);
    }

    fn arguments_of(text: &str) -> Value {
        let mut b = ReplyBuilder::default();
        // Split in two deltas, as streams send them.
        let (head, tail) = text.split_at(text.len() / 2);
        for (part, name) in [(head, Some("calc".into())), (tail, None)] {
            b.push(Chunk::ToolCall(ToolCallDelta {
                index: 1,
                id: None,
                name,
                arguments: part.into(),
            }));
        }
        let reply = b.finish();
        assert_eq!(reply.tool_calls.len(), 1);
        assert_eq!(reply.tool_calls[0].id, "call_1");
        reply.tool_calls[0].arguments.clone()
    }

    #[test]
    fn broken_arguments_are_repaired_like_actions() {
        assert_eq!(arguments_of("{'expr': '6*7',}"), json!({"expr": "6*7"}));
        assert_eq!(
            arguments_of("{\"expr\": \"6*7\", \"digits\": 2"),
            json!({"expr": "6*7", "digits": 2})
        );
        // Valid JSON is taken as it is.
        assert_eq!(arguments_of("{\"expr\": \"1\"}"), json!({"expr": "1"}));
    }

    #[test]
    fn arguments_no_repair_makes_an_object_of_are_kept_verbatim() {
        assert_eq!(arguments_of("six times seven"), json!("six times seven"));
        assert_eq!(arguments_of("[1, 2]"), json!("[1, 2]"));
    }
}
