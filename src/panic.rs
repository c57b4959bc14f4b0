//! The message of a caught panic, for the error it becomes.

use std::any::Any;

/// What a panic said: its `&str` or `String` payload, or "unknown panic".
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
