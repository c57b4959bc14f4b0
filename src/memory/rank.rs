//! The rankings behind search, as plain functions: BM25 over words,
//! cosine over vectors, and relative score fusion of several rankings.

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
    /// Its fused score, from 0 to 1: the weighted sum over the rankings
    /// of its score divided by the ranking's best (0 where one lacks it).
    pub score: f64,
}

/// How much the keyword ranking counts in a fused score; the vector
/// ranking counts the rest. Meaning leads and words settle (Weaviate's
/// hybrid default leans as far toward vectors, alpha 0.75): a keyword
/// match on a name alone scores a person's memories about alike, and
/// their small differences (BM25 favours short texts) must not outweigh
/// the vector ranking's.
pub const KEYWORD_WEIGHT: f64 = 0.3;

/// Relative score fusion of a `keyword` and a `vector` ranking (item
/// indexes with their scores, best first, where 0 means no match: BM25,
/// cosine), best first; ties go to the lower index.
///
/// Each ranking's scores are divided by its best (negative ones count as
/// 0), then summed with weights [`KEYWORD_WEIGHT`] and the rest. Unlike
/// reciprocal rank fusion, items a ranking scores about alike stay about
/// alike, so the other ranking decides among them. On
/// `tests/data/retrieval_set.json` (the guide's figures, "Memory") this fusion beats
/// both rankings alone, where reciprocal rank fusion fell below the
/// vector ranking.
pub fn fuse(keyword: &[(usize, f64)], vector: &[(usize, f64)]) -> Vec<Fused> {
    let mut scores: HashMap<usize, f64> = HashMap::new();
    for (ranking, weight) in [(keyword, KEYWORD_WEIGHT), (vector, 1.0 - KEYWORD_WEIGHT)] {
        let best = ranking
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| s.is_finite())
            .fold(0.0_f64, f64::max);
        for (index, score) in ranking {
            let scaled = match best > 0.0 {
                true => (score / best).clamp(0.0, 1.0),
                false => 0.0,
            };
            *scores.entry(*index).or_default() += weight * scaled;
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
        let fused = fuse(&[(2, 9.0), (0, 8.0), (1, 1.0)], &[(0, 0.9), (3, 0.2)]);
        assert_eq!(fused[0].index, 0);
        assert_eq!(fused.len(), 4);
        // Scored alike by one ranking, ordered by the other.
        let fused = fuse(&[(0, 2.0), (1, 2.0)], &[(1, 0.8), (0, 0.5), (2, 0.4)]);
        let order: Vec<usize> = fused.iter().map(|f| f.index).collect();
        assert_eq!(order, [1, 0, 2]);
        assert!(fused.iter().all(|f| (0.0..=1.0).contains(&f.score)));
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-9);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
