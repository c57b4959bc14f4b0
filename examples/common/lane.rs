//! The model on the realtime or the batch lane, shared by the dataset and
//! eval examples: on the batch lane every call goes through the vendor's
//! Batch API at half price, with what is in flight kept in a ledger beside
//! the output file so a rerun after a kill waits for the same batches.

use std::sync::Arc;
use std::time::Duration;

use statewise::layer::batch::{BatchConfig, SqliteLedger};
use statewise::layer::Priced;
use statewise::model::{Price, SharedModel};
use statewise::spec::{from_spec, ModelSpec, ModelSpecError};

/// `spec` built for the realtime lane, or for the batch lane with its
/// ledger at `OUTPUT.ledger.sqlite` (`poll` the first pause between
/// polls), priced when a price is given.
pub fn model(
    spec: &str,
    batch: bool,
    output: &str,
    poll: Option<Duration>,
    price: Option<Price>,
) -> Result<SharedModel, String> {
    let model = if batch {
        let spec: ModelSpec = spec.parse().map_err(|e: ModelSpecError| e.to_string())?;
        let ledger =
            SqliteLedger::open(format!("{output}.ledger.sqlite")).map_err(|e| e.to_string())?;
        let defaults = BatchConfig::default();
        // A step's calls go out together however many items there are
        // (the layer still splits them to the vendor's limits).
        let config = BatchConfig {
            max_requests: usize::MAX,
            poll_min: poll.unwrap_or(defaults.poll_min),
            ..defaults
        };
        spec.build_on_batch_lane(Arc::new(ledger), config)
            .map_err(|e| e.to_string())?
    } else {
        from_spec(spec).map_err(|e| e.to_string())?
    };
    Ok(match price {
        Some(price) => Arc::new(Priced::new(model, price)),
        None => model,
    })
}

/// Parses `--price IN,OUT`: dollars per million input and output tokens.
pub fn price(text: &str) -> Result<Price, String> {
    let parsed = text
        .split_once(',')
        .and_then(|(i, o)| Some((i.trim().parse().ok()?, o.trim().parse().ok()?)));
    let (input, output) = parsed.ok_or(format!(
        "--price takes dollars per million input and output tokens, as 0.15,0.60, not {text:?}"
    ))?;
    Ok(Price::per_million(input, output))
}

/// The batch fed through the run queue at `url` to the workers of `agent`.
#[cfg(feature = "redis")]
pub fn on_queue(url: &str) -> Result<statewise::dataset::Dataset, String> {
    let queue = statewise::worker::RunQueue::open(url).map_err(|e| e.to_string())?;
    Ok(statewise::dataset::Dataset::on_queue(queue, "agent"))
}

#[cfg(not(feature = "redis"))]
pub fn on_queue(_url: &str) -> Result<statewise::dataset::Dataset, String> {
    Err("--queue needs the run queue: build with --features redis".into())
}
