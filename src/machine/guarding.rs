//! Guardrails in a run: the input check that runs alongside the first
//! state, answer pieces passed through the output guardrails before they
//! leave, and the trips tool calls report on the run's tripwire.
//!
//! The input check is a future the attempt loop polls beside the state's
//! stream; until it passes, the state's events are held, and when it trips
//! the stream is dropped, which cancels the model call in flight. Answer
//! text is let out as far as every output guardrail says it is settled,
//! each time judged from the answer's start, so a guardrail sees a match
//! whole even when its pieces arrived apart.

use futures::future::BoxFuture;

use super::Machine;
use crate::env::{Message, Role};
use crate::guard::{self, Guardrails, Trip};
use crate::metric;
use crate::state::{Custom, Emit};

impl Machine {
    /// Runs `guardrails` on every run: on its input, on its answer before
    /// it leaves, and on every tool call its states make through a
    /// [`Toolbox`](crate::tool::Toolbox). A guardrail that stops the run
    /// ends it with [`MachineError::Guardrail`](super::MachineError::Guardrail),
    /// whatever state was running; every trip is also an event
    /// ([`Trip`] as the custom event `guardrail_tripped`) and the
    /// `statewise_guardrail_trips_total` metric.
    ///
    /// With output guardrails, the model's raw text (`Emit::Token`,
    /// `Emit::Reasoning`) and partial typed outputs are not passed on:
    /// they would carry what the guardrails take out of the answer.
    pub fn with_guardrails(mut self, guardrails: Guardrails) -> Self {
        self.guardrails = guardrails;
        self
    }

    /// The guardrails its runs use.
    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }
}

/// What a run's guardrails hold from event to event.
pub(super) struct Guarding {
    guardrails: Guardrails,
    /// The input check running alongside the first state, until it ends;
    /// in a mutex only so that a run is `Sync` (it is reached through
    /// `&mut`, never locked).
    input: std::sync::Mutex<Option<BoxFuture<'static, Option<Trip>>>>,
    /// The run's input, for the checks before the first state.
    first: Option<String>,
    answer: AnswerFilter,
    /// The last answer a state wrote, and the text judged from it.
    judged: Option<(String, String)>,
}

impl Guarding {
    /// The guarding of a run with `guardrails`; `input` is the run's input
    /// when it starts afresh (a resumed run's input was judged already).
    pub(super) fn new(guardrails: &Guardrails, input: Option<String>) -> Self {
        let alongside = guardrails.input_guardrails().to_vec();
        let check = match (&input, alongside.is_empty()) {
            (Some(text), false) => {
                let text = text.clone();
                let check: BoxFuture<'static, Option<Trip>> =
                    Box::pin(async move { guard::check_input(&alongside, &text).await });
                Some(check)
            }
            _ => None,
        };
        let first = input.filter(|_| !guardrails.input_first_guardrails().is_empty());
        Guarding {
            guardrails: guardrails.clone(),
            input: std::sync::Mutex::new(check),
            first,
            answer: AnswerFilter::default(),
            judged: None,
        }
    }

    /// The input check still running alongside the first state.
    pub(super) fn input(&mut self) -> &mut Option<BoxFuture<'static, Option<Trip>>> {
        self.input
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the input is still being judged.
    pub(super) fn judging(&mut self) -> bool {
        self.input().is_some()
    }

    /// Runs the checks that come before the first state.
    pub(super) async fn before_first(&mut self) -> Option<Trip> {
        let input = self.first.take()?;
        guard::check_input(self.guardrails.input_first_guardrails(), &input).await
    }

    /// `emit` as it may go to consumers, if at all: with output
    /// guardrails, the model's raw text and partial outputs may not, and a
    /// state's own event (which may quote the answer, as `action_parsed`
    /// does) goes as the guardrails rewrite its JSON, or not at all.
    pub(super) async fn judge_event(&self, emit: Emit) -> Option<Emit> {
        let guardrails = self.guardrails.output_guardrails();
        if guardrails.is_empty() {
            return Some(emit);
        }
        match emit {
            Emit::Token(_) | Emit::Reasoning(_) | Emit::PartialOutput(_) => None,
            Emit::Custom(custom) => {
                let text = custom.value.to_string();
                let judged = guard::check_output(guardrails, &text).await.ok()?;
                let value = match judged == text {
                    true => custom.value,
                    false => serde_json::from_str(&judged).ok()?,
                };
                Some(Emit::Custom(Custom { value, ..custom }))
            }
            other => Some(other),
        }
    }

    /// Whether answer pieces go through output guardrails.
    pub(super) fn filters_answer(&self) -> bool {
        !self.guardrails.output_guardrails().is_empty()
    }

    /// Takes an answer piece in: the text that may leave now, if any.
    pub(super) async fn answer_piece(&mut self, piece: &str) -> Result<Option<String>, Trip> {
        let guardrails = self.guardrails.output_guardrails();
        self.answer.raw.push_str(piece);
        let settled = guard::settled(guardrails, &self.answer.raw);
        if settled <= self.answer.judged {
            return Ok(None);
        }
        self.answer.judged = settled;
        let judged = guard::check_output(guardrails, &self.answer.raw[..settled]).await?;
        Ok(self.answer.extend(judged))
    }

    /// Judges the rest of the state's answer text once its stream ended:
    /// the text that may leave now, if any.
    pub(super) async fn answer_end(&mut self) -> Result<Option<String>, Trip> {
        if self.answer.judged == self.answer.raw.len() {
            return Ok(None);
        }
        let guardrails = self.guardrails.output_guardrails();
        self.answer.judged = self.answer.raw.len();
        let judged = guard::check_output(guardrails, &self.answer.raw).await?;
        Ok(self.answer.extend(judged))
    }

    /// After a state's attempt: judges the answer it wrote, if it wrote
    /// one. An answer that is the text it streamed takes the judged text;
    /// another one is judged whole. The env keeps the answer as written
    /// (a later state compares it with what it was given); the run's
    /// result takes the judged one ([`Guarding::final_answer`]).
    pub(super) async fn settle_answer(
        &mut self,
        answer: Option<&str>,
        before: Option<&str>,
    ) -> Result<(), Trip> {
        let filter = std::mem::take(&mut self.answer);
        let Some(text) = answer.filter(|a| Some(*a) != before) else {
            return Ok(());
        };
        let judged = match (text == filter.raw, filter.judged == filter.raw.len()) {
            (true, true) => filter.sent,
            _ => guard::check_output(self.guardrails.output_guardrails(), text).await?,
        };
        self.judged = Some((text.to_owned(), judged));
        Ok(())
    }

    /// The run's answer as the output guardrails let it out: the judged
    /// text of the state that wrote it, or, for an answer no state's
    /// attempt judged (set before the run), the answer judged now. The
    /// assistant messages quoting it are rewritten alike.
    pub(super) async fn final_answer(
        &mut self,
        answer: &mut Option<String>,
        messages: &mut [Message],
    ) -> Result<(), Trip> {
        let Some(text) = answer.as_deref().filter(|_| self.filters_answer()) else {
            return Ok(());
        };
        let judged = match self.judged.take() {
            Some((raw, judged)) if raw == text => judged,
            _ => guard::check_output(self.guardrails.output_guardrails(), text).await?,
        };
        if judged != text {
            // The conversation quotes the answer too, as written or as a
            // JSON string inside the model's action.
            let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
            let (raw, raw_quoted) = (text.to_owned(), quoted(text));
            let judged_quoted = quoted(&judged);
            for message in messages.iter_mut().filter(|m| m.role == Role::Assistant) {
                if message.content.contains(&raw) {
                    message.content = message.content.replace(&raw, &judged);
                }
                if message.content.contains(&raw_quoted) {
                    message.content = message.content.replace(&raw_quoted, &judged_quoted);
                }
            }
        }
        *answer = Some(judged);
        Ok(())
    }

    /// Forgets the answer text of an attempt that ended early.
    pub(super) fn reset_answer(&mut self) {
        self.answer = AnswerFilter::default();
    }
}

/// One state's answer text: as streamed, how much of it was judged, and
/// what was let out.
#[derive(Default)]
struct AnswerFilter {
    raw: String,
    judged: usize,
    sent: String,
}

impl AnswerFilter {
    /// The part of `judged` (the judged text from the start) not let out
    /// yet. A guardrail whose verdict on a longer text no longer begins
    /// with what was let out broke its `settled` promise; nothing more
    /// streams then, and the answer in the env is the judged one.
    fn extend(&mut self, judged: String) -> Option<String> {
        if judged.len() <= self.sent.len() || !judged.starts_with(self.sent.as_str()) {
            return None;
        }
        let new = judged[self.sent.len()..].to_owned();
        self.sent = judged;
        Some(new)
    }
}

/// The event a trip is sent as, and its count on the metric.
pub(super) fn tripped(trip: &Trip) -> Emit {
    metric::guardrail_tripped(&trip.guardrail, trip.stage.as_str(), trip.stops);
    tracing::warn!(guardrail = %trip.guardrail, stage = trip.stage.as_str(), stops = trip.stops, reason = %trip.reason, "guardrail tripped");
    Emit::Custom(Custom::new(trip))
}
