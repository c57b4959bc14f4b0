//! Filing a person's response in a paused run: the checkpoint chain from a
//! run down to the branch or sub-machine that asked.

use super::{Checkpoint, Store, StoreError};

/// What [`deliver`] found.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The response is filed; the run's last checkpoint, no longer waiting.
    Filed(Box<Checkpoint>),
    /// This run in the chain is not paused for a response; nothing was written.
    NotPaused {
        /// The run.
        run_id: String,
    },
}

/// Files `response` in the run that asked: `run_id` itself, or the child its
/// pending request names (and so on down), and saves the chain.
pub(crate) async fn deliver(
    store: &dyn Store,
    run_id: &str,
    response: serde_json::Value,
) -> Result<Delivery, StoreError> {
    let mut chain = Vec::new();
    let mut at = run_id.to_owned();
    let mut response = Some(response);
    loop {
        let mut last = store
            .get(&at, None)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                run_id: at.clone(),
                step: None,
            })?;
        let Some(request) = last.env.interrupt.take() else {
            return Ok(Delivery::NotPaused { run_id: at });
        };
        let asker = request.run_id.clone();
        if asker.is_empty() || asker == at {
            if let Some(response) = response.take() {
                last.env.responses.insert(request.id, response);
            }
            chain.push(last);
            break;
        }
        chain.push(last);
        at = asker;
    }
    // The asker first: a crash midway leaves the parent still waiting,
    // and a second response finds the asker no longer so (NotPaused).
    for checkpoint in chain.iter().rev() {
        store.put(checkpoint).await?;
    }
    Ok(Delivery::Filed(Box::new(chain.swap_remove(0))))
}
