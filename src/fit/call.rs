//! [`FittedCall`]: one model call with its request fitted first, and sent
//! once more, tighter, if the provider still finds it too long.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream};

use super::{Fitted, Fitter};
use crate::env::RunSettings;
use crate::model::{ChatModel, ChatRequest, ModelError, Reply, ReplyStream, Streamed};

type Make<'a> = Box<dyn Fn() -> ChatRequest + Send + 'a>;
type Fitting<'a> = BoxFuture<'a, Result<(ChatRequest, Option<Fitted>), ModelError>>;

/// Streams one model call as [`ReplyStream::call`] does, with its request
/// fitted to the model's window first ([`Fitter::fit`]); a changed request
/// is announced by a [`Streamed::Fitted`] before the reply's tokens.
/// If the provider answers [`ModelError::ContextOverflow`] before any
/// token, the request is built again, fitted tighter ([`Fitter::refit`])
/// and sent once more; a second overflow is the call's error.
///
/// Built by [`Fitter::call`]; [`finish`](Self::finish) gives the reply.
///
/// ```
/// use futures::StreamExt;
/// use statewise::fit::Fitter;
/// use statewise::model::{ChatRequest, ContextWindow, ScriptedModel};
/// use statewise::model::Streamed;
/// use statewise::{Message, RunSettings};
///
/// # futures::executor::block_on(async {
/// let model = ScriptedModel::new()
///     .with_context_window(ContextWindow::new(200))
///     .text("4");
/// let history = vec![
///     Message::user("an old question ".repeat(60)),
///     Message::assistant("an old answer"),
///     Message::user("What is 2 + 2?"),
/// ];
/// let fitter = Fitter::default();
/// let mut call = fitter.call(&model, 0, &RunSettings::default(), || ChatRequest::new(history.clone()));
/// let mut fitted = None;
/// while let Some(streamed) = call.next().await {
///     if let Streamed::Fitted(f) = streamed? {
///         fitted = Some(f);
///     }
/// }
/// assert_eq!(call.finish().text, "4");
/// assert_eq!(fitted.unwrap().dropped, 1);
/// # Ok::<(), statewise::model::ModelError>(())
/// # }).unwrap();
/// ```
pub struct FittedCall<'a> {
    fitter: &'a Fitter,
    model: &'a dyn ChatModel,
    keep_tail: usize,
    settings: RunSettings,
    make: Make<'a>,
    stage: Stage<'a>,
    /// The fit of the request being sent, if its window was known.
    fitted: Option<Fitted>,
    refitted: bool,
}

enum Stage<'a> {
    Fitting(Fitting<'a>),
    Calling(ReplyStream<'a>),
    Ended(Option<ReplyStream<'a>>),
}

impl<'a> FittedCall<'a> {
    pub(super) fn new(
        fitter: &'a Fitter,
        model: &'a dyn ChatModel,
        keep_tail: usize,
        settings: RunSettings,
        make: Make<'a>,
    ) -> Self {
        let request = make();
        let fitting = async move {
            let mut request = request;
            let fitted = fitter.fit(model, &mut request, keep_tail).await?;
            Ok((request, fitted))
        }
        .boxed();
        FittedCall {
            fitter,
            model,
            keep_tail,
            settings,
            make,
            stage: Stage::Fitting(fitting),
            fitted: None,
            refitted: false,
        }
    }

    /// The reply assembled from the chunks received (empty if the call
    /// failed before any).
    pub fn finish(self) -> Reply {
        match self.stage {
            Stage::Calling(call) | Stage::Ended(Some(call)) => call.finish(),
            _ => Reply::default(),
        }
    }

    /// Starts the tighter second fit after `overflow`.
    fn refit(&mut self, overflow: ModelError) -> Fitting<'a> {
        let (fitter, model, keep_tail) = (self.fitter, self.model, self.keep_tail);
        let previous = self.fitted.clone();
        let request = (self.make)();
        async move {
            let mut request = request;
            let fitted = fitter
                .refit(model, &mut request, keep_tail, previous.as_ref(), overflow)
                .await?;
            Ok((request, Some(fitted)))
        }
        .boxed()
    }
}

impl Stream for FittedCall<'_> {
    type Item = Result<Streamed, ModelError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.stage {
                Stage::Fitting(fitting) => match ready!(fitting.as_mut().poll(cx)) {
                    Ok((request, fitted)) => {
                        this.stage =
                            Stage::Calling(ReplyStream::call(this.model, request, &this.settings));
                        this.fitted = fitted.clone();
                        if let Some(f) = fitted.filter(Fitted::changed) {
                            return Poll::Ready(Some(Ok(Streamed::Fitted(f))));
                        }
                    }
                    Err(e) => {
                        this.stage = Stage::Ended(None);
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Stage::Calling(call) => match ready!(Pin::new(call).poll_next(cx)) {
                    Some(Err(e)) if e.is_context_overflow() && !e.emitted() && !this.refitted => {
                        this.refitted = true;
                        this.stage = Stage::Fitting(this.refit(e));
                    }
                    Some(item) => return Poll::Ready(Some(item)),
                    None => {
                        let stage = std::mem::replace(&mut this.stage, Stage::Ended(None));
                        if let Stage::Calling(call) = stage {
                            this.stage = Stage::Ended(Some(call));
                        }
                        return Poll::Ready(None);
                    }
                },
                Stage::Ended(_) => return Poll::Ready(None),
            }
        }
    }
}
