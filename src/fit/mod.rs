//! Fitting a request to its model's context window before it is sent.
//!
//! The decision is a plain function of the request, a token budget and a
//! counter ([`FitPolicy`], stock [`Trim`]), tested without a model; the
//! [`Fitter`] only looks up the window (an async question to the model,
//! answered once) and works out the budget. States call the model through
//! [`Fitter::call`], which also sends a request once more, fitted tighter,
//! when the provider still says it overflows.

mod call;
mod trim;

use std::sync::Arc;

use crate::env::{Message, RunSettings};
use crate::model::{
    fixed_tokens, request_tokens, ChatModel, ChatRequest, ContextWindow, Estimate, ModelError,
    TokenCounter,
};

pub use crate::model::Fitted;
pub use call::FittedCall;
pub use trim::Trim;

/// How a conversation is shortened to fit a token budget.
///
/// Implementations are plain functions of their arguments: no I/O, so they
/// can be tested with a fixed counter.
pub trait FitPolicy: Send + Sync {
    /// Shortens `messages` to at most `budget` tokens as `counter` counts
    /// them (with [`message_tokens`](crate::model::message_tokens)),
    /// leaving the last `keep_tail` messages as they are. Fails when it
    /// cannot shorten them enough.
    fn fit(
        &self,
        messages: &mut Vec<Message>,
        budget: usize,
        keep_tail: usize,
        counter: &dyn TokenCounter,
    ) -> Result<Trimmed, TooLong>;
}

/// What a [`FitPolicy`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Messages left out.
    pub dropped: usize,
    /// Messages cut short.
    pub truncated: usize,
}

/// A [`FitPolicy`] could not bring the conversation within its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the messages it must keep take {tokens} tokens")]
pub struct TooLong {
    /// The tokens left after everything the policy may do.
    pub tokens: usize,
}

/// Fits requests to their model's context window with a [`FitPolicy`].
///
/// The window is the model's own ([`ChatModel::context_window`]) unless set
/// here; tokens are counted by the model's counter where it has one, else
/// by the conservative [`Estimate`]. The reply's share of the window is
/// `params.max_tokens` when the request sets it, else `reserve` (default
/// 1,024, at most a quarter of the window). A model whose window is unknown
/// gets its requests as they are, until a provider's overflow error says
/// how large the window is.
///
/// ```
/// use statewise::fit::{Fitter, Trim};
/// use statewise::model::{ChatRequest, ContextWindow, ScriptedModel};
/// use statewise::Message;
///
/// # futures::executor::block_on(async {
/// let model = ScriptedModel::new().with_context_window(ContextWindow::new(200));
/// let mut request = ChatRequest::new(vec![
///     Message::system("Be brief."),
///     Message::user("an old question ".repeat(40)),
///     Message::assistant("an old answer ".repeat(40)),
///     Message::user("What is 2 + 2?"),
/// ]);
/// let fitted = Fitter::new(Trim::new()).fit(&model, &mut request, 0).await?.unwrap();
/// assert_eq!(fitted.dropped, 2);
/// assert_eq!(request.messages.last().unwrap().content, "What is 2 + 2?");
/// # Ok::<(), statewise::model::ModelError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Fitter {
    policy: Option<Arc<dyn FitPolicy>>,
    window: Option<u32>,
    counter: Option<Arc<dyn TokenCounter>>,
    reserve: u32,
}

impl std::fmt::Debug for Fitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fitter")
            .field("on", &self.policy.is_some())
            .field("window", &self.window)
            .field(
                "counter",
                &self.counter.as_ref().map(|c| c.name().to_owned()),
            )
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

impl Default for Fitter {
    /// [`Trim`] with the model's window.
    fn default() -> Self {
        Self::new(Trim::new())
    }
}

impl Fitter {
    /// Fits with `policy`.
    pub fn new(policy: impl FitPolicy + 'static) -> Self {
        Fitter {
            policy: Some(Arc::new(policy)),
            window: None,
            counter: None,
            reserve: 1024,
        }
    }

    /// Never changes a request (and so never retries an overflow).
    pub fn off() -> Self {
        Fitter {
            policy: None,
            ..Self::default()
        }
    }

    /// Fits to a window of `tokens`, whatever the model says.
    pub fn window(mut self, tokens: u32) -> Self {
        self.window = Some(tokens);
        self
    }

    /// Counts tokens with `counter`, whatever the model has.
    pub fn counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Tokens kept free for the reply when a request does not set
    /// `params.max_tokens` (default 1,024; never more than a quarter of the
    /// window).
    pub fn reserve(mut self, tokens: u32) -> Self {
        self.reserve = tokens;
        self
    }

    /// Fits `request` to `model`'s window, leaving its last `keep_tail`
    /// messages as they are (notes a state adds for this call only).
    /// `None` when the window is unknown and the request was left as it is.
    pub async fn fit(
        &self,
        model: &dyn ChatModel,
        request: &mut ChatRequest,
        keep_tail: usize,
    ) -> Result<Option<Fitted>, ModelError> {
        let Some(policy) = &self.policy else {
            return Ok(None);
        };
        let Some(window) = self.resolve(model).await else {
            return Ok(None);
        };
        let limits = Limits {
            window: &window,
            scale: 1.0,
            tighter: false,
        };
        self.fit_to(policy.as_ref(), model, request, keep_tail, limits)
            .map(Some)
    }

    /// Fits `request` again, tighter, after `overflow` (a
    /// [`ModelError::ContextOverflow`]) answered the request sent after
    /// `previous`: to the window the provider reported, scaled by how far
    /// the count was off. The same error again when there is nothing to
    /// fit to (no window known) or fitting is off.
    pub async fn refit(
        &self,
        model: &dyn ChatModel,
        request: &mut ChatRequest,
        keep_tail: usize,
        previous: Option<&Fitted>,
        overflow: ModelError,
    ) -> Result<Fitted, ModelError> {
        let ModelError::ContextOverflow {
            prompt_tokens,
            window: reported,
            ..
        } = &overflow
        else {
            return Err(overflow);
        };
        let Some(policy) = &self.policy else {
            return Err(overflow);
        };
        let known = self.resolve(model).await;
        let tokens = match (reported, &known) {
            (Some(w), Some(k)) => (*w).min(k.tokens),
            (Some(w), None) => *w,
            (None, Some(k)) => k.tokens,
            (None, None) => return Err(overflow),
        };
        let window = ContextWindow {
            tokens,
            counter: known.and_then(|k| k.counter),
        };
        let counter = self.counter_for(&window);
        // What we counted for what was sent, against what the provider did.
        let sent = previous.map_or_else(
            || request_tokens(request, counter.as_ref()),
            |p| p.tokens_after as usize,
        );
        let scale = match prompt_tokens {
            Some(real) if *real as usize > sent => 0.9 * sent as f64 / f64::from(*real),
            _ => 0.75,
        };
        let limits = Limits {
            window: &window,
            scale,
            tighter: true,
        };
        self.fit_to(policy.as_ref(), model, request, keep_tail, limits)
    }

    /// Calls `model` with the request `make` builds, fitted, under the
    /// running state's `settings` ([`Env::settings`](crate::Env::settings));
    /// see [`FittedCall`].
    pub fn call<'a>(
        &'a self,
        model: &'a dyn ChatModel,
        keep_tail: usize,
        settings: &RunSettings,
        make: impl Fn() -> ChatRequest + Send + 'a,
    ) -> FittedCall<'a> {
        FittedCall::new(self, model, keep_tail, settings.clone(), Box::new(make))
    }

    /// The window in force: set here, else the model's.
    async fn resolve(&self, model: &dyn ChatModel) -> Option<ContextWindow> {
        match self.window {
            Some(tokens) => Some(ContextWindow {
                tokens,
                counter: model.context_window().await.and_then(|w| w.counter),
            }),
            None => model.context_window().await,
        }
    }

    fn counter_for(&self, window: &ContextWindow) -> Arc<dyn TokenCounter> {
        self.counter
            .clone()
            .or_else(|| window.counter.clone())
            .unwrap_or_else(|| Arc::new(Estimate))
    }

    fn fit_to(
        &self,
        policy: &dyn FitPolicy,
        model: &dyn ChatModel,
        request: &mut ChatRequest,
        keep_tail: usize,
        limits: Limits<'_>,
    ) -> Result<Fitted, ModelError> {
        let Limits {
            window,
            scale,
            tighter,
        } = limits;
        let counter = self.counter_for(window);
        let reserve = reply_share(request, window.tokens, self.reserve);
        let fixed = fixed_tokens(request, counter.as_ref());
        let room = (window.tokens as usize).saturating_sub(reserve + fixed);
        let budget = (room as f64 * scale) as usize;
        let tokens_before = request_tokens(request, counter.as_ref());
        let overflow = |tokens: usize, message: String| ModelError::ContextOverflow {
            provider: model.name().to_owned(),
            prompt_tokens: Some(tokens as u32),
            window: Some(window.tokens),
            message,
        };
        let trimmed = policy
            .fit(&mut request.messages, budget, keep_tail, counter.as_ref())
            .map_err(|e| {
                overflow(
                    e.tokens + fixed,
                    format!(
                        "fitting it left {} tokens of messages it must keep (the system prompt, \
                         the last user turn, the latest tool round) against a budget of \
                         {budget}, with {reserve} tokens kept for the reply and {fixed} for \
                         tools and schema; shorten those messages, lower max_tokens or use a \
                         model with a larger window",
                        e.tokens
                    ),
                )
            })?;
        Ok(Fitted {
            window: window.tokens,
            counter: counter.name().to_owned(),
            budget: (budget + fixed) as u32,
            tokens_before: tokens_before as u32,
            tokens_after: request_tokens(request, counter.as_ref()) as u32,
            dropped: trimmed.dropped as u32,
            truncated: trimmed.truncated as u32,
            tighter,
        })
    }
}

/// The window to fit to, and how much of it to use.
struct Limits<'w> {
    window: &'w ContextWindow,
    /// 1 for a first fit; less for a tighter one.
    scale: f64,
    tighter: bool,
}

/// The tokens a reply may need: what the request asks for, else `reserve`
/// but at most a quarter of the window.
fn reply_share(request: &ChatRequest, window: u32, reserve: u32) -> usize {
    match request.params.max_tokens {
        Some(max) => max as usize,
        None => reserve.min(window / 4) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Params, ScriptedModel};

    fn long_request() -> ChatRequest {
        ChatRequest::new(vec![
            Message::system("Be brief."),
            Message::user("old question ".repeat(100)),
            Message::assistant("old answer ".repeat(100)),
            Message::user("What is 2 + 2?"),
        ])
    }

    #[tokio::test]
    async fn an_unknown_window_leaves_the_request_alone() {
        let model = ScriptedModel::new();
        let mut request = long_request();
        let fitted = Fitter::default()
            .fit(&model, &mut request, 0)
            .await
            .unwrap();
        assert_eq!(fitted, None);
        assert_eq!(request, long_request());
    }

    #[tokio::test]
    async fn the_budget_sets_the_reply_share_aside() {
        let model = ScriptedModel::new().with_context_window(ContextWindow::new(800));
        let mut request = long_request();
        request.params = Params {
            max_tokens: Some(300),
            ..Params::default()
        };
        let fitted = Fitter::default()
            .fit(&model, &mut request, 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fitted.window, 800);
        assert_eq!(fitted.budget, 500);
        assert!(fitted.changed());
        assert!(fitted.tokens_after <= 500, "{fitted:?}");
        assert!(fitted.tokens_before > 500, "{fitted:?}");
        assert_eq!(fitted.counter, "estimate");

        // Without max_tokens, a quarter of a small window is kept.
        assert_eq!(reply_share(&ChatRequest::default(), 800, 1024), 200);
        assert_eq!(reply_share(&ChatRequest::default(), 128_000, 1024), 1024);
    }

    #[tokio::test]
    async fn a_refit_uses_the_reported_window_and_the_count_it_missed_by() {
        let model = ScriptedModel::new();
        let mut request = long_request();
        let sent = request_tokens(&request, &Estimate);
        let overflow = ModelError::ContextOverflow {
            provider: "server".into(),
            // The server counted twice what the estimate did.
            prompt_tokens: Some(2 * sent as u32),
            window: Some(600),
            message: "exceeds".into(),
        };
        let fitted = Fitter::default()
            .refit(&model, &mut request, 0, None, overflow)
            .await
            .unwrap();
        assert!(fitted.tighter && fitted.changed());
        assert_eq!(fitted.window, 600);
        // 600 less 150 for the reply, then less than half of that.
        assert!(fitted.budget < 225, "{fitted:?}");

        // Nothing known at all: the error stands.
        let overflow = ModelError::ContextOverflow {
            provider: "server".into(),
            prompt_tokens: None,
            window: None,
            message: "exceeds".into(),
        };
        let err = Fitter::default()
            .refit(&model, &mut long_request(), 0, None, overflow)
            .await
            .unwrap_err();
        assert!(err.is_context_overflow());
    }

    #[tokio::test]
    async fn what_cannot_fit_is_a_context_overflow() {
        let model = ScriptedModel::new().with_context_window(ContextWindow::new(100));
        let mut request = ChatRequest::new(vec![Message::user("word ".repeat(200))]);
        let err = Fitter::default()
            .fit(&model, &mut request, 0)
            .await
            .unwrap_err();
        let ModelError::ContextOverflow {
            window,
            prompt_tokens,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*window, Some(100));
        assert!(prompt_tokens.unwrap() > 100);
        assert!(err.to_string().contains("larger window"), "{err}");
    }

    #[tokio::test]
    async fn off_never_changes_a_request() {
        let model = ScriptedModel::new().with_context_window(ContextWindow::new(100));
        let mut request = long_request();
        assert_eq!(
            Fitter::off().fit(&model, &mut request, 0).await.unwrap(),
            None
        );
        assert_eq!(request, long_request());
    }
}
