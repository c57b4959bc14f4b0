//! [`chunks`]: a document cut into passages small enough to embed well.
//!
//! Cuts fall between paragraphs where they can, then between sentences,
//! and only inside a sentence longer than a whole passage; a passage
//! repeats the end of the one before it, so a fact that straddles a cut is
//! whole in one of the two.

/// `text` in passages of at most `max_words` words (at least 1), each
/// starting with up to `overlap` words from the end of the one before.
/// Blank text gives none. A plain function: the same text always gives
/// the same passages, so re-indexing an unchanged document changes
/// nothing.
pub fn chunks(text: &str, max_words: usize, overlap: usize) -> Vec<String> {
    let max_words = max_words.max(1);
    let overlap = overlap.min(max_words / 2);
    // Units: sentences, with paragraph ends marked so a passage prefers
    // to end there.
    let mut units: Vec<(Vec<&str>, bool)> = Vec::new();
    for paragraph in text.split("\n\n") {
        let words: Vec<&str> = paragraph.split_whitespace().collect();
        let mut start = 0;
        for (i, word) in words.iter().enumerate() {
            let ends = word.ends_with(['.', '!', '?', ':', ';']) || i + 1 == words.len();
            if ends {
                units.push((words[start..=i].to_vec(), i + 1 == words.len()));
                start = i + 1;
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut fresh = 0; // words in `current` not carried over
    let flush = |current: &mut Vec<&str>, fresh: &mut usize, out: &mut Vec<String>| {
        if *fresh > 0 {
            out.push(current.join(" "));
        }
        let keep = current.len().saturating_sub(overlap);
        current.drain(..keep);
        *fresh = 0;
    };
    for (sentence, paragraph_end) in units {
        for piece in sentence.chunks(max_words) {
            if current.len() + piece.len() > max_words {
                flush(&mut current, &mut fresh, &mut out);
                if current.len() + piece.len() > max_words {
                    current.clear();
                }
            }
            current.extend_from_slice(piece);
            fresh += piece.len();
        }
        // A paragraph's end is a good place to cut when the passage is
        // already more than half full.
        if paragraph_end && current.len() * 2 > max_words {
            flush(&mut current, &mut fresh, &mut out);
        }
    }
    flush(&mut current, &mut fresh, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passages_keep_sentences_whole_and_overlap() {
        let text = "One two three. Four five six seven. Eight nine.\n\nTen eleven twelve.";
        let out = chunks(text, 7, 2);
        assert_eq!(
            out,
            [
                "One two three. Four five six seven.",
                "six seven. Eight nine.",
                "Eight nine. Ten eleven twelve."
            ]
        );
        assert!(out.iter().all(|c| c.split_whitespace().count() <= 7));
    }

    #[test]
    fn every_word_is_in_some_passage_and_none_is_too_long() {
        let text = "a ".repeat(25) + "end.\n\nShort one. " + &"b ".repeat(9);
        let out = chunks(&text, 10, 3);
        assert!(
            out.iter().all(|c| c.split_whitespace().count() <= 10),
            "{out:?}"
        );
        // The long sentence is cut inside, and nothing is lost.
        let a_words: usize = out.iter().map(|c| c.matches('a').count()).sum();
        assert!(a_words >= 25, "{out:?}");
        assert!(out[0].starts_with("a a"));
        assert!(out.last().unwrap().ends_with('b'));
        assert!(out.iter().any(|c| c.contains("Short one.")));
        assert!(chunks("   \n\n ", 10, 3).is_empty());
        assert_eq!(chunks("x", 0, 5), ["x"]);
    }
}
