//! Holding an answer to short tool results: a small model sometimes
//! writes a greeting or another number instead of the result it was given.
//!
//! The check is made on the answer's completed words while it streams, so
//! the answer is held back only until it has kept every number and name of
//! each short result; from then on it streams live. An answer that never
//! keeps them is replaced by the results themselves.

/// Results longer than this are not checked: a long text is summed up,
/// not copied, and its numbers need not all appear.
const CHECKED_RESULT_CHARS: usize = 200;

/// The numbers and names an answer must keep, taken from tool results.
#[derive(Debug, Clone)]
pub(crate) struct Grounding {
    /// (tool, result) pairs, in the order they came.
    results: Vec<(String, String)>,
    /// The numbers and names of the short results.
    required: Vec<String>,
}

impl Grounding {
    /// The grounding for `results` ((tool, result) pairs).
    pub(crate) fn new(results: Vec<(String, String)>) -> Self {
        let required = results
            .iter()
            .filter(|(_, content)| content.chars().count() <= CHECKED_RESULT_CHARS)
            .flat_map(|(_, content)| {
                numbers(content)
                    .into_iter()
                    .chain(names(content))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        Grounding { results, required }
    }

    /// Whether there are no results to hold an answer to.
    pub(crate) fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// Whether `answer`, so far, keeps every number and name: only its
    /// completed words count (a `39` still being written may become
    /// `391`), unless `finished`.
    pub(crate) fn holds(&self, answer: &str, finished: bool) -> bool {
        let done = match finished {
            true => answer,
            false => {
                let end = answer
                    .char_indices()
                    .rev()
                    .find(|(_, c)| !c.is_alphanumeric())
                    .map_or(0, |(i, _)| i);
                &answer[..end]
            }
        };
        let kept: Vec<&str> = numbers(done).into_iter().chain(names(done)).collect();
        self.required.iter().all(|n| kept.contains(&n.as_str()))
    }

    /// The results themselves, as an answer: `The calculator says: 134.`;
    /// a result that is a sentence as it is.
    pub(crate) fn fallback(&self) -> String {
        let said: Vec<String> = self
            .results
            .iter()
            .map(|(tool, content)| match content.trim_end().ends_with('.') {
                true => content.trim().to_owned(),
                false => format!("The {tool} says: {}.", content.trim()),
            })
            .collect();
        said.join(" ")
    }
}

/// The capitalized words of `text` that do not open a sentence (`Friday`,
/// `December`, `UTC` of `It is Friday, 4 December 2026, 21:13 UTC.`): the
/// names a result holds.
fn names(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut opens = true;
    for word in text.split_whitespace() {
        let bare = word.trim_matches(|c: char| !c.is_alphanumeric());
        if !opens && bare.chars().next().is_some_and(char::is_uppercase) {
            names.push(bare);
        }
        opens = word.ends_with(['.', '!', '?', ':']);
    }
    names
}

/// The runs of digits in `text` (`21:13` gives `21` and `13`).
fn numbers(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Grounding;

    fn calc(n: &str) -> Grounding {
        Grounding::new(vec![("calculator".to_owned(), n.to_owned())])
    }

    fn clock() -> Grounding {
        Grounding::new(vec![(
            "clock".to_owned(),
            "It is Friday, 4 December 2026, 21:13 UTC.".to_owned(),
        )])
    }

    #[test]
    fn an_answer_that_keeps_the_results_numbers_holds() {
        assert!(calc("391").holds("17 * 23 = 391.", true));
        assert!(!calc("134").holds("I'm ready to help.", true));
        assert_eq!(calc("134").fallback(), "The calculator says: 134.");
    }

    #[test]
    fn names_count_as_well_as_numbers() {
        let clock = clock();
        assert!(!clock.holds("It's 2026, 21:19 UTC.", true));
        // The numbers kept, the weekday not.
        assert!(!clock.holds("The day is 4 December 2026, 21:13 UTC.", true));
        assert!(clock.holds("Today is Friday, 4 December 2026, 21:13 UTC.", true));
        assert_eq!(
            clock.fallback(),
            "It is Friday, 4 December 2026, 21:13 UTC."
        );
    }

    #[test]
    fn a_word_still_being_written_does_not_count() {
        let g = calc("39");
        assert!(!g.holds("The result is 39", false));
        assert!(g.holds("The result is 39", true));
        assert!(g.holds("The result is 39.", false));
        assert!(!g.holds("The result is 391.", false));
    }

    #[test]
    fn long_results_are_not_checked() {
        let long = Grounding::new(vec![(
            "search".to_owned(),
            format!("{} 42", "word ".repeat(60)),
        )]);
        assert!(long.holds("A summary.", true));
        assert!(!long.is_empty());
    }
}
