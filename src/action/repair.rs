//! Finding and mending the JSON in a model's reply.

use serde_json::Value;

/// Why no JSON value could be recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// The text is empty or blank.
    #[error("the reply is empty")]
    Empty,
    /// Nothing in the text could be read as JSON.
    #[error("no JSON found in the reply (it starts with {excerpt:?})")]
    NoJson {
        /// The first characters of the text.
        excerpt: String,
    },
}

/// Recovers the JSON value in `text`.
pub fn repair(text: &str) -> Result<Value, RepairError> {
    if text.trim().is_empty() {
        return Err(RepairError::Empty);
    }
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let no_json = || RepairError::NoJson {
        excerpt: text.chars().take(40).collect(),
    };
    if !text.contains(['{', '[']) {
        return Err(no_json());
    }
    let options = llm_json::RepairOptions {
        ensure_ascii: false,
        ..Default::default()
    };
    llm_json::loads(text, &options).map_err(|_| no_json())
}
