//! [`Priced`]: a call's cost from its token counts, at a fixed price.

use futures::StreamExt;

use crate::model::{ChatModel, ChatRequest, Chunk, ChunkStream, Price};

/// Streams the inner model's chunks unchanged but for its usage chunks,
/// which carry their cost at a fixed price.
#[derive(Debug, Clone)]
pub struct Priced<M> {
    inner: M,
    price: Price,
}

impl<M: ChatModel> Priced<M> {
    /// Prices `inner`'s usage at `price`.
    pub fn new(inner: M, price: Price) -> Self {
        Priced { inner, price }
    }
}

wrapper!(Priced);

impl<M: ChatModel> ChatModel for Priced<M> {
    forward_model_info!();

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        priced_stream(self.inner.stream(request), self.price)
    }
}

/// `chunks` with each usage chunk's cost at `price` (what [`Priced`] and a
/// priced [`Tier`](crate::layer::Tier) stream).
pub(super) fn priced_stream(chunks: ChunkStream<'_>, price: Price) -> ChunkStream<'_> {
    chunks
        .map(move |chunk| match chunk {
            // A reply served by a response cache cost nothing.
            Ok(Chunk::Usage(u)) if u.cached_responses > 0 => Ok(Chunk::Usage(u)),
            Ok(Chunk::Usage(mut u)) => {
                // Usage chunks add up, and cost is linear in them.
                u.cost = price.cost(&u);
                Ok(Chunk::Usage(u))
            }
            other => other,
        })
        .boxed()
}
