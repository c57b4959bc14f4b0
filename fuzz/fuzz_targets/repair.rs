//! `repair`, `repair_prefix`, `parse_action` and the action reader on any
//! text: they must not panic, and must not take time out of proportion to the
//! input (run with `-timeout`).
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run repair -- -max_len=4096 -timeout=2
//!
//! Every crasher found is kept as a regression test in
//! `tests/repair_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use statewise::action::{parse_action, repair, repair_prefix, ActionReader};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let repaired = repair(text);
    // Valid JSON comes back unchanged.
    if let Ok(strict) = serde_json::from_str::<serde_json::Value>(text) {
        assert_eq!(repaired.as_ref().ok(), Some(&strict));
    }
    let _ = repair_prefix(text);
    let _ = parse_action(text);
    let mut reader = ActionReader::new("call_");
    let mut rest = text;
    while !rest.is_empty() {
        let cut = rest.char_indices().nth(3).map_or(rest.len(), |(i, _)| i);
        let _ = reader.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    assert_eq!(reader.finish().is_ok(), parse_action(text).is_ok());
});
