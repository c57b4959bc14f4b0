//! Trying the next model when one fails.

use futures::future::BoxFuture;
use futures::StreamExt;

use crate::model::{
    Capabilities, ChatModel, ChatRequest, ChunkStream, ContextWindow, ModelError, ModelErrorKind,
    SharedModel,
};

/// Streams the first model's reply, or the next one's in line (large to
/// small, vendor to local) when a model fails before its first chunk with
/// a transient error or an open circuit. A failure after chunks were
/// delivered is passed on.
///
/// Its capabilities are those all its models share, so a request built for
/// the first model suits the others too.
#[derive(Clone)]
pub struct Fallback {
    name: String,
    models: Vec<SharedModel>,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.name)
            .finish()
    }
}

impl Fallback {
    /// The chain `models`, tried in order; it must hold at least one.
    pub fn new(models: Vec<SharedModel>) -> Result<Self, ModelError> {
        if models.is_empty() {
            return Err(ModelError::Config {
                provider: "fallback".into(),
                message: "a fallback chain needs at least one model".into(),
            });
        }
        let name = models
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(" | ");
        Ok(Fallback { name, models })
    }
}

impl ChatModel for Fallback {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        super::common_capabilities(self.models.iter())
    }

    /// The smallest window among the models (a request must fit whichever
    /// serves it); unknown if any model's is.
    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        Box::pin(super::smallest_window(self.models.iter()))
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let last = self.models.len() - 1;
            for (i, model) in self.models.iter().enumerate() {
                let mut chunks = model.stream(request.clone());
                let mut delivered = false;
                let mut failed = None;
                while let Some(chunk) = chunks.next().await {
                    match chunk {
                        Ok(c) => {
                            delivered = true;
                            yield c;
                        }
                        Err(e) => {
                            let next = i < last
                                && !delivered
                                && (e.is_transient() || e.kind() == ModelErrorKind::CircuitOpen);
                            if next {
                                failed = Some(e);
                                break;
                            }
                            Err(e)?;
                        }
                    }
                }
                if failed.is_none() {
                    return;
                }
            }
        })
    }
}
