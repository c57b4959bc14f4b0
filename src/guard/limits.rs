//! Stock guardrails on size and words: [`InputSize`] and [`DenyList`].

use futures::future::BoxFuture;
use serde_json::Value;

use super::{
    CallCheck, CallScope, Check, InputGuardrail, OutputCheck, OutputGuardrail, ToolGuardrail,
};

/// Trips on input longer than a number of characters: a prompt stuffed
/// with text to drown the instructions, or to run up the bill.
#[derive(Debug, Clone, Copy)]
pub struct InputSize {
    max_chars: usize,
}

impl InputSize {
    /// Input of at most `max_chars` characters passes.
    pub fn chars(max_chars: usize) -> Self {
        InputSize { max_chars }
    }
}

impl InputGuardrail for InputSize {
    fn name(&self) -> &str {
        "input_size"
    }

    fn check<'a>(&'a self, input: &'a str) -> BoxFuture<'a, Check> {
        // Counting stops past the limit: a huge input costs no more.
        let over = input.chars().nth(self.max_chars).is_some();
        let check = match over {
            true => Check::Trip(format!(
                "the input is longer than {} characters",
                self.max_chars
            )),
            false => Check::Pass,
        };
        Box::pin(std::future::ready(check))
    }
}

/// Trips on any of a list of terms, matched as whole words without regard
/// to case: in the input, in the answer (which is blocked) and in a tool
/// call's arguments (which is rejected; the model is told).
#[derive(Debug, Clone)]
pub struct DenyList {
    /// Each term as lower-case words.
    terms: Vec<Vec<String>>,
    /// The most words a term has.
    longest: usize,
}

impl DenyList {
    /// A deny-list of `terms` (a term may be several words).
    pub fn new<S: AsRef<str>>(terms: impl IntoIterator<Item = S>) -> Self {
        let terms: Vec<Vec<String>> = terms
            .into_iter()
            .map(|t| words(t.as_ref()).map(|(_, w)| w).collect::<Vec<_>>())
            .filter(|w| !w.is_empty())
            .collect();
        let longest = terms.iter().map(Vec::len).max().unwrap_or(1);
        DenyList { terms, longest }
    }

    /// The first term found in `text`.
    fn found(&self, text: &str) -> Option<String> {
        let words: Vec<String> = words(text).map(|(_, w)| w).collect();
        self.terms
            .iter()
            .find(|term| words.windows(term.len()).any(|w| w == term.as_slice()))
            .map(|term| term.join(" "))
    }
}

/// The words of `text` (letters and digits), lower-cased, with where each
/// starts.
fn words(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut start = None;
    let mut chars = text.char_indices().chain([(text.len(), ' ')]);
    std::iter::from_fn(move || {
        for (i, c) in chars.by_ref() {
            match (c.is_alphanumeric(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    start = None;
                    return Some((s, text[s..i].to_lowercase()));
                }
                _ => {}
            }
        }
        None
    })
}

impl InputGuardrail for DenyList {
    fn name(&self) -> &str {
        "deny_list"
    }

    fn check<'a>(&'a self, input: &'a str) -> BoxFuture<'a, Check> {
        let check = match self.found(input) {
            Some(term) => Check::Trip(format!("the input contains the denied term \"{term}\"")),
            None => Check::Pass,
        };
        Box::pin(std::future::ready(check))
    }
}

impl OutputGuardrail for DenyList {
    fn name(&self) -> &str {
        "deny_list"
    }

    fn check<'a>(&'a self, text: &'a str) -> BoxFuture<'a, OutputCheck> {
        let check = match self.found(text) {
            Some(term) => {
                OutputCheck::Block(format!("the answer contains the denied term \"{term}\""))
            }
            None => OutputCheck::Pass,
        };
        Box::pin(std::future::ready(check))
    }

    /// Everything before the last words a term could still be finishing.
    fn settled(&self, text: &str) -> usize {
        let starts: Vec<usize> = words(text).map(|(s, _)| s).collect();
        match starts.len().checked_sub(self.longest) {
            Some(i) => starts[i],
            None => 0,
        }
    }
}

impl ToolGuardrail for DenyList {
    fn name(&self) -> &str {
        "deny_list"
    }

    fn before<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a Value,
        _scope: &'a CallScope,
    ) -> BoxFuture<'a, CallCheck> {
        let check = match self.found(&arguments.to_string()) {
            Some(term) => CallCheck::Reject(format!(
                "the arguments of `{tool}` contain the denied term \"{term}\"; do not use it"
            )),
            None => CallCheck::Allow,
        };
        Box::pin(std::future::ready(check))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn terms_match_whole_words_in_any_case() {
        let deny = DenyList::new(["drop table", "rm"]);
        assert_eq!(
            InputGuardrail::check(&deny, "please DROP   Table users").await,
            Check::Trip("the input contains the denied term \"drop table\"".into())
        );
        assert_eq!(
            InputGuardrail::check(&deny, "a farm and a drop").await,
            Check::Pass
        );
        assert!(matches!(
            InputGuardrail::check(&deny, "run rm -rf").await,
            Check::Trip(_)
        ));
    }

    #[test]
    fn the_words_a_term_could_still_finish_are_held() {
        let deny = DenyList::new(["drop table"]);
        // "the answer is drop" may go on with "table".
        assert_eq!(deny.settled("the answer is drop"), "the answer ".len());
        assert_eq!(deny.settled("one"), 0);
    }

    #[tokio::test]
    async fn input_longer_than_the_limit_trips() {
        let size = InputSize::chars(5);
        assert_eq!(size.check("héllo").await, Check::Pass);
        assert!(matches!(size.check("héllo!").await, Check::Trip(_)));
    }
}
