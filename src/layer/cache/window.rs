//! A cached model's context window, kept in the cache's store beside its
//! replies: a run whose replies all come from the cache asks the server
//! nothing, not even how large its window is.
//!
//! The size is stored as a one-chunk entry under a key of its own, and an
//! unknown size is stored too: offline, a cached run would otherwise try
//! the server's `/props` and `/v1/models` before every run.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::model::Chunk;

/// The store key of `model`'s window (apart from every reply's key, which
/// hashes a request).
pub(super) fn window_key(model: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"context-window\0");
    hash.update(model.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry recording a window of `tokens` (`None`: unknown).
pub(super) fn window_entry(tokens: Option<u32>) -> Vec<Chunk> {
    vec![Chunk::Text(json!({ "context_window": tokens }).to_string())]
}

/// The window an entry records: `None` when it is not such an entry,
/// `Some(None)` when it records that the size is unknown.
pub(super) fn window_of(entry: &[Chunk]) -> Option<Option<u32>> {
    let [Chunk::Text(text)] = entry else {
        return None;
    };
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    match value.get("context_window")? {
        serde_json::Value::Null => Some(None),
        tokens => Some(Some(u32::try_from(tokens.as_u64()?).ok()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_the_window_it_records() {
        assert_eq!(window_of(&window_entry(Some(8192))), Some(Some(8192)));
        assert_eq!(window_of(&window_entry(None)), Some(None));
        assert_eq!(window_of(&[Chunk::Text("4".into())]), None);
        assert_eq!(window_of(&[]), None);
        assert_ne!(window_key("a"), window_key("b"));
    }
}
