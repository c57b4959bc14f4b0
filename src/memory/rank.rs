//! The rankings behind search, as plain functions: BM25 over words,
//! cosine over vectors, and reciprocal rank fusion of several rankings.

use std::collections::HashMap;

/// The words of `text` for keyword search: lower-cased runs of letters
/// and digits.
pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// English words too common to tell memories apart: left out of keyword
/// queries, where a match on "the" or "when" would rank a memory for
/// nothing (a query of nothing else keeps them).
const STOPWORDS: [&str; 96] = [
    "a", "about", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "being", "both", "but", "by", "can", "could", "did", "do", "does", "doing",
    "each", "for", "from", "had", "has", "have", "having", "he", "her", "here", "hers", "him",
    "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me", "more", "most", "my",
    "no", "nor", "not", "now", "of", "on", "once", "only", "or", "other", "our", "out", "over",
    "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "to", "too", "under", "up", "very", "was",
    "we", "were", "what", "when", "where", "which", "who", "why",
];

/// The words of a query that a keyword search looks for: its words
/// without the stopwords (all of them when nothing else is left).
pub(crate) fn query_words(query: &str) -> Vec<String> {
    let all: Vec<String> = words(query).collect();
    let kept: Vec<String> = all
        .iter()
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .cloned()
        .collect();
    if kept.is_empty() {
        all
    } else {
        kept
    }
}

/// BM25 scores (k1 = 1.2, b = 0.75) of `docs` for `query`, one per doc;
/// 0 for a doc sharing no word with the query.
pub fn bm25(query: &str, docs: &[&str]) -> Vec<f64> {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    let docs: Vec<Vec<String>> = docs.iter().map(|d| words(d).collect()).collect();
    let n = docs.len() as f64;
    let average = docs.iter().map(Vec::len).sum::<usize>() as f64 / n.max(1.0);
    let mut terms: Vec<String> = query_words(query);
    terms.sort();
    terms.dedup();
    let frequency: HashMap<&str, f64> = terms
        .iter()
        .map(|t| {
            let with = docs.iter().filter(|d| d.iter().any(|w| w == t)).count() as f64;
            (t.as_str(), with)
        })
        .collect();
    docs.iter()
        .map(|doc| {
            let len = doc.len() as f64;
            terms
                .iter()
                .map(|t| {
                    let tf = doc.iter().filter(|w| *w == t).count() as f64;
                    if tf == 0.0 {
                        return 0.0;
                    }
                    let df = frequency[t.as_str()];
                    let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                    idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / average.max(1.0)))
                })
                .sum()
        })
        .collect()
}

/// The cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    dot / (aa.sqrt() * bb.sqrt())
}

/// One item of a fused ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fused {
    /// The item's index.
    pub index: usize,
    /// Its fused score: the sum of `1 / (60 + rank)` over the rankings
    /// that hold it (rank from 1).
    pub score: f64,
}

/// Reciprocal rank fusion of `rankings` (each a list of item indexes,
/// best first), best first; ties go to the lower index.
pub fn fuse(rankings: &[Vec<usize>]) -> Vec<Fused> {
    const K: f64 = 60.0;
    let mut scores: HashMap<usize, f64> = HashMap::new();
    for ranking in rankings {
        for (rank, index) in ranking.iter().enumerate() {
            *scores.entry(*index).or_default() += 1.0 / (K + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<Fused> = scores
        .into_iter()
        .map(|(index, score)| Fused { index, score })
        .collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bm25_favours_rare_words_and_short_documents() {
        let docs = [
            "alice likes green tea",
            "bob likes coffee and tea and more tea with friends at the cafe",
            "the weather is fine",
        ];
        let scores = bm25("alice tea", &docs);
        assert!(scores[0] > scores[1] && scores[1] > 0.0);
        assert_eq!(scores[2], 0.0);
    }

    #[test]
    fn stopwords_do_not_match_but_a_query_of_nothing_else_keeps_them() {
        assert_eq!(query_words("When does the group meet?"), ["group", "meet"]);
        assert_eq!(query_words("Who is it?"), ["who", "is", "it"]);
        let scores = bm25(
            "when is the meeting",
            &["the cat is here", "the meeting is at ten"],
        );
        assert_eq!(scores[0], 0.0);
        assert!(scores[1] > 0.0);
    }

    #[test]
    fn fusion_rewards_items_both_rankings_hold() {
        let fused = fuse(&[vec![2, 0, 1], vec![0, 3]]);
        assert_eq!(fused[0].index, 0);
        assert_eq!(fused.len(), 4);
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-9);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
