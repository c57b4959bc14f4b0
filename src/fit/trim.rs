//! [`Trim`]: the stock fitting policy. It cuts long tool results down to
//! their beginning and end, then leaves out the oldest turns, and never
//! touches the system prompt, the last user turn or the latest round.

use std::ops::Range;

use crate::env::{Message, Role};
use crate::model::{message_tokens, TokenCounter};

use super::{FitPolicy, TooLong, Trimmed};

/// Shortens a conversation in this order until it fits, stopping as soon
/// as it does:
///
/// 1. Tool results longer than `max_result` tokens (default: a quarter of
///    the budget) keep their beginning and end; the middle is replaced by a
///    note saying how much was left out.
/// 2. The oldest turns are left out, a unit at a time: a message together
///    with the tool results that answer it, so a call is never split from
///    its result. The system prompt, the last user turn and the latest
///    unit are kept; the system prompt says how many messages were left out.
/// 3. The tool results still there are cut further, longest first, down to
///    `min_result` tokens each, and as a last resort to the note alone.
///
/// A message answers a tool call when it has a
/// [`tool_call_id`](Message::tool_call_id): [`Role::Tool`] messages, and the
/// user messages that carry results to a model prompted with JSON actions.
/// If it still does not fit, the policy fails with [`TooLong`].
#[derive(Debug, Clone)]
pub struct Trim {
    max_result: Option<usize>,
    min_result: usize,
}

impl Default for Trim {
    fn default() -> Self {
        Trim {
            max_result: None,
            min_result: 48,
        }
    }
}

impl Trim {
    /// The stock settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tool results longer than this many tokens are cut first, whenever a
    /// request must be fitted (default: a quarter of the budget).
    pub fn max_result(mut self, tokens: usize) -> Self {
        self.max_result = Some(tokens);
        self
    }

    /// Tool results are cut below this many tokens (default 48) only when
    /// nothing else is left to shorten.
    pub fn min_result(mut self, tokens: usize) -> Self {
        self.min_result = tokens;
        self
    }
}

/// What the policy may do to each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Neither cut nor left out (the system prompt, the tail).
    Whole,
    /// Cut if it is a tool result, never left out.
    Pinned,
    /// Cut if it is a tool result, left out with its unit.
    Droppable,
}

impl FitPolicy for Trim {
    fn fit(
        &self,
        messages: &mut Vec<Message>,
        budget: usize,
        keep_tail: usize,
        counter: &dyn TokenCounter,
    ) -> Result<Trimmed, TooLong> {
        let mut counts: Vec<usize> = messages
            .iter()
            .map(|m| message_tokens(m, counter))
            .collect();
        let mut total: usize = counts.iter().sum();
        let mut trimmed = Trimmed::default();
        if total <= budget {
            return Ok(trimmed);
        }
        let keep = plan(messages, keep_tail);
        let units = units(messages, &keep);
        let results: Vec<usize> = (0..messages.len())
            .filter(|&i| keep[i] != Keep::Whole && messages[i].tool_call_id.is_some())
            .collect();
        let mut was_cut = vec![false; messages.len()];
        // Cuts result `i` to `max` tokens of text; whether it got shorter.
        let mut cut = |messages: &mut [Message], i: usize, max: usize, total: &mut usize| {
            let Some(text) = cut_middle(&messages[i].content, max, counter) else {
                return false;
            };
            messages[i].content = text;
            let now = message_tokens(&messages[i], counter);
            let shorter = now < counts[i];
            *total = *total - counts[i] + now;
            counts[i] = now;
            was_cut[i] = true;
            shorter
        };

        // 1. Long tool results keep their beginning and end.
        let max_result = self.max_result.unwrap_or(budget / 4).max(self.min_result);
        for &i in &results {
            cut(messages, i, max_result, &mut total);
        }

        // 2. The oldest units go, a whole unit at a time.
        let mut dropped = vec![false; messages.len()];
        let mut note = 0;
        for unit in &units {
            if total + note <= budget {
                break;
            }
            for i in unit.clone() {
                dropped[i] = true;
                total -= message_tokens(&messages[i], counter);
                trimmed.dropped += 1;
            }
            note = counter.count(&left_out_note(trimmed.dropped)) + 1;
        }

        // 3. The remaining results are cut further, longest first, down to
        // `min_result`; as a last resort, to the note alone.
        for floor in [self.min_result, 0] {
            let mut stuck = dropped.clone();
            while total + note > budget {
                let longest = results
                    .iter()
                    .copied()
                    .filter(|&i| !stuck[i])
                    .max_by_key(|&i| message_tokens(&messages[i], counter));
                let Some(i) = longest else { break };
                let excess = total + note - budget;
                let content = counter.count(&messages[i].content);
                let max = content.saturating_sub(excess).max(floor);
                let shorter = cut(messages, i, max, &mut total);
                // At the floor, or the note saying what was cut is no shorter.
                stuck[i] = max == floor || !shorter;
            }
        }
        trimmed.truncated = (0..messages.len())
            .filter(|&i| was_cut[i] && !dropped[i])
            .count();
        if total + note > budget {
            return Err(TooLong {
                tokens: total + note,
            });
        }

        let mut i = 0;
        messages.retain(|_| {
            i += 1;
            !dropped[i - 1]
        });
        if trimmed.dropped > 0 {
            let note = left_out_note(trimmed.dropped);
            match messages.first_mut() {
                Some(m) if m.role == Role::System => {
                    m.content.push_str("\n\n");
                    m.content.push_str(&note);
                }
                _ => messages.insert(0, Message::system(note)),
            }
        }
        Ok(trimmed)
    }
}

/// What the system prompt says when messages were left out.
fn left_out_note(messages: usize) -> String {
    format!("({messages} earlier messages were left out to fit the context window.)")
}

/// What may be done to each message: the leading system messages and the
/// last `keep_tail` stay whole; the last user turn (not a tool result) and
/// the latest unit stay; the rest may go.
fn plan(messages: &[Message], keep_tail: usize) -> Vec<Keep> {
    let n = messages.len();
    let tail = n.saturating_sub(keep_tail);
    let system = messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count()
        .min(tail);
    let mut keep = vec![Keep::Droppable; n];
    for k in keep.iter_mut().take(system) {
        *k = Keep::Whole;
    }
    for k in keep.iter_mut().skip(tail) {
        *k = Keep::Whole;
    }
    let question = (system..tail)
        .rev()
        .find(|&i| messages[i].role == Role::User && messages[i].tool_call_id.is_none());
    if let Some(q) = question {
        keep[q] = Keep::Pinned;
    }
    // The latest unit: from the last message that answers nothing.
    if let Some(start) = (system..tail)
        .rev()
        .find(|&i| messages[i].tool_call_id.is_none())
    {
        for k in &mut keep[start..tail] {
            *k = Keep::Pinned;
        }
    }
    keep
}

/// The droppable units, oldest first: each message that answers no call,
/// with the results that follow it.
fn units(messages: &[Message], keep: &[Keep]) -> Vec<Range<usize>> {
    let mut units: Vec<Range<usize>> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if keep[i] != Keep::Droppable {
            continue;
        }
        match units.last_mut() {
            Some(unit) if m.tool_call_id.is_some() && unit.end == i => unit.end = i + 1,
            // A result whose call is gone already, or a new turn.
            _ => units.push(i..i + 1),
        }
    }
    units
}

/// `text` cut to at most `max` tokens by leaving out its middle, or `None`
/// if it is that short already.
pub(crate) fn cut_middle(text: &str, max: usize, counter: &dyn TokenCounter) -> Option<String> {
    if counter.count(text) <= max {
        return None;
    }
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let chars = bounds.len() - 1;
    let build = |kept: usize| {
        let head = bounds[kept.div_ceil(2)];
        let tail = bounds[chars - kept / 2];
        format!(
            "{}\n[… {} characters left out …]\n{}",
            &text[..head],
            chars - kept,
            &text[tail..]
        )
    };
    // The most characters kept that still fit: counts grow with the text.
    let (mut lo, mut hi) = (0, chars);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if counter.count(&build(mid)) <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(build(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::ToolCall;
    use crate::model::Estimate;
    use serde_json::json;

    /// One token per character: makes budgets easy to reason about.
    struct PerChar;
    impl TokenCounter for PerChar {
        fn name(&self) -> &str {
            "per-char"
        }
        fn count(&self, text: &str) -> usize {
            text.chars().count()
        }
    }

    fn tokens(messages: &[Message]) -> usize {
        messages.iter().map(|m| message_tokens(m, &PerChar)).sum()
    }

    fn call(id: &str) -> Message {
        Message {
            tool_calls: vec![ToolCall::new(id, "search", json!({"q": id}))],
            ..Message::assistant("")
        }
    }

    /// system, q1, a1, q2, call c1, result c1, call c2, result c2.
    fn conversation(result: usize) -> Vec<Message> {
        vec![
            Message::system("sys"),
            Message::user("first question"),
            Message::assistant("first answer"),
            Message::user("second question"),
            call("c1"),
            Message::tool("c1", "r".repeat(result)),
            call("c2"),
            Message::tool("c2", "s".repeat(result)),
        ]
    }

    #[test]
    fn a_conversation_that_fits_is_left_alone() {
        let mut messages = conversation(10);
        let before = messages.clone();
        let t = Trim::new()
            .fit(&mut messages, tokens(&before), 0, &PerChar)
            .unwrap();
        assert_eq!((t.dropped, t.truncated), (0, 0));
        assert_eq!(messages, before);
    }

    #[test]
    fn long_results_keep_their_beginning_and_end() {
        let mut messages = conversation(0);
        messages[5].content = format!("BEGIN{}END", "x".repeat(2000));
        let budget = tokens(&messages) - 1500;
        let t = Trim::new().fit(&mut messages, budget, 0, &PerChar).unwrap();
        assert_eq!((t.dropped, t.truncated), (0, 1));
        let cut = &messages[5].content;
        assert!(cut.starts_with("BEGIN") && cut.ends_with("END"), "{cut}");
        assert!(cut.contains("characters left out"), "{cut}");
        assert!(tokens(&messages) <= budget);
        assert_eq!(messages.len(), 8);
    }

    #[test]
    fn old_turns_go_first_and_calls_stay_with_their_results() {
        let mut messages = conversation(400);
        // Room for the last question and the latest round only; results
        // are not cut first.
        let budget = 600;
        let t = Trim::new()
            .max_result(1000)
            .fit(&mut messages, budget, 0, &PerChar)
            .unwrap();
        assert!(tokens(&messages) <= budget, "{messages:#?}");
        assert_eq!((t.dropped, t.truncated), (4, 0), "{messages:#?}");
        // The system prompt says so, the last question stays.
        assert!(messages[0].content.starts_with("sys\n\n("), "{messages:#?}");
        assert!(messages.iter().any(|m| m.content == "second question"));
        // Every result still has its call, and every call its result.
        for m in &messages {
            if let Some(id) = &m.tool_call_id {
                assert!(
                    messages
                        .iter()
                        .any(|c| c.tool_calls.iter().any(|c| &c.id == id)),
                    "result {id} lost its call: {messages:#?}"
                );
            }
            for c in &m.tool_calls {
                assert!(
                    messages
                        .iter()
                        .any(|r| r.tool_call_id.as_deref() == Some(&c.id)),
                    "call {} lost its result: {messages:#?}",
                    c.id
                );
            }
        }
        // The latest round is whole.
        assert_eq!(messages.last().unwrap().content, "s".repeat(400));
    }

    #[test]
    fn the_tail_is_never_touched() {
        let mut messages = conversation(300);
        messages.push(Message::user("note ".repeat(20)));
        let tail = messages.last().unwrap().clone();
        let budget = tokens(&messages) - 400;
        Trim::new().fit(&mut messages, budget, 1, &PerChar).unwrap();
        assert_eq!(messages.last(), Some(&tail));
        assert!(tokens(&messages) <= budget);
    }

    #[test]
    fn what_cannot_shrink_is_a_typed_refusal() {
        let mut messages = vec![
            Message::system("s".repeat(500)),
            Message::user("q".repeat(500)),
        ];
        let before = messages.clone();
        let err = Trim::new()
            .fit(&mut messages, 600, 0, &PerChar)
            .unwrap_err();
        assert!(err.tokens > 600, "{err:?}");
        assert_eq!(messages, before, "nothing could be cut or left out");
    }

    #[test]
    fn json_action_results_are_user_messages_with_a_call_id() {
        // A JSON-action conversation: the result is a user message that
        // answers the call; it is a result, not the last user turn.
        let observation = Message {
            tool_call_id: Some("c1".into()),
            ..Message::user(format!("Observation:\n{}", "o".repeat(3000)))
        };
        let mut messages = vec![
            Message::system("sys"),
            Message::user("the question"),
            Message::assistant("{\"tool_calls\": []}"),
            observation,
        ];
        let t = Trim::new().fit(&mut messages, 500, 0, &PerChar).unwrap();
        assert_eq!(t.truncated, 1);
        assert_eq!(messages[1].content, "the question");
        assert!(tokens(&messages) <= 500);
    }

    #[test]
    fn cutting_keeps_both_ends_within_the_count() {
        let text = format!("{}{}", "alpha ".repeat(300), "omega");
        let cut = cut_middle(&text, 100, &Estimate).unwrap();
        assert!(Estimate.count(&cut) <= 100);
        assert!(cut.starts_with("alpha") && cut.ends_with("omega"), "{cut}");
        assert!(cut_middle("short", 100, &Estimate).is_none());
        // Multi-byte text is cut on character boundaries.
        let cut = cut_middle(&"日本語".repeat(200), 50, &Estimate).unwrap();
        assert!(Estimate.count(&cut) <= 50);
    }
}
