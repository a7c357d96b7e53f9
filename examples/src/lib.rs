//! Runnable Oxbeam example pipelines, and the pieces they share.
//!
//! | binary | shows |
//! |---|---|
//! | `wordcount` | text IO, flat map, count per element (a lifted combine) |
//! | `user_sessions` | event timestamps, session windows, per-key combines in windows |
//! | `top_scores` | several combiners per key: top-N, mean, count |
//!
//! Each takes the runner flags of [`oxbeam::PipelineOptions`] (`--runner`,
//! `--parallelism`, `--no-fusion`, `--memory-budget`, `--dump-plan`) plus its
//! own `--input` / `--output`. Without `--input`, each generates its input in
//! the pipeline, deterministically, so it runs on a fresh clone.

use std::sync::OnceLock;

use oxbeam::{PCollection, PTransform, Pipeline};
use regex::Regex;

/// The bundled sample text (`examples/data/lighthouse.txt`).
pub const SAMPLE_TEXT: &str = include_str!("../data/lighthouse.txt");

/// Bytes of words: ASCII letters and the apostrophe.
const WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphabetic() || b == b'\'' as usize;
        b += 1;
    }
    t
};

/// The next word of `bytes` from `*i` as a byte range, advancing `*i`.
#[inline]
fn next_word(bytes: &[u8], i: &mut usize) -> Option<(usize, usize)> {
    let mut j = *i;
    while j < bytes.len() && !WORD_BYTE[bytes[j] as usize] {
        j += 1;
    }
    if j == bytes.len() {
        *i = j;
        return None;
    }
    let start = j;
    while j < bytes.len() && WORD_BYTE[bytes[j] as usize] {
        j += 1;
    }
    *i = j;
    Some((start, j))
}

/// Words as Beam's wordcount defines them: matches of the regex
/// `[A-Za-z']+`, case kept. A byte scanner (the class is ASCII, so UTF-8
/// continuation bytes never match) gives exactly the regex's matches at a
/// fraction of its cost; [`words_regex`] is the reference.
pub fn words(line: &str) -> impl Iterator<Item = &str> {
    let mut i = 0;
    std::iter::from_fn(move || {
        let (a, b) = next_word(line.as_bytes(), &mut i)?;
        // Both ends are ASCII bytes, hence char boundaries.
        line.get(a..b)
    })
}

/// The words of an owned line (see [`words`]), for a by-value `flat_map`:
/// no intermediate collection per line.
pub fn into_words(line: String) -> impl Iterator<Item = String> {
    let mut i = 0;
    std::iter::from_fn(move || {
        let (a, b) = next_word(line.as_bytes(), &mut i)?;
        line.get(a..b).map(str::to_string)
    })
}

/// The words of `line` by the regex `[A-Za-z']+` itself.
pub fn words_regex(line: &str) -> impl Iterator<Item = &str> {
    static WORD: OnceLock<Regex> = OnceLock::new();
    WORD.get_or_init(|| Regex::new(r"[A-Za-z']+").expect("valid regex"))
        .find_iter(line)
        .map(|m| m.as_str())
}

/// Lines to `(word, occurrences)`.
#[derive(Debug, Clone, Copy)]
pub struct CountWords;

impl PTransform<PCollection<String>> for CountWords {
    type Output = PCollection<(String, i64)>;
    fn expand(self, lines: &PCollection<String>) -> Self::Output {
        lines
            .flat_map("ExtractWords", into_words)
            .count_per_element("CountPerWord")
    }
}

/// A deterministic pseudo-random number from `seed` (splitmix64).
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Line `i` of the generated corpus: 8 to 15 words drawn from the sample
/// text's vocabulary, skewed towards frequent words as in real text.
pub fn generated_line(vocabulary: &[String], i: u64) -> String {
    let mut r = mix(i);
    let n = 8 + (r % 8) as usize;
    let mut line = String::with_capacity(n * 8);
    for k in 0..n {
        r = mix(r ^ k as u64);
        // Squaring a uniform draw favours the front of the (frequency-sorted) vocabulary.
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        let idx = ((u * u) * vocabulary.len() as f64) as usize;
        if k > 0 {
            line.push(' ');
        }
        line.push_str(&vocabulary[idx.min(vocabulary.len() - 1)]);
    }
    line
}

/// The sample text's distinct words, most frequent first.
pub fn vocabulary() -> Vec<String> {
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for w in words(SAMPLE_TEXT) {
        *counts.entry(w).or_default() += 1;
    }
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(w, _)| w.to_string()).collect()
}

/// A generated corpus of `lines` lines (see [`generated_line`]).
pub fn generated_corpus(p: &Pipeline, lines: u64) -> PCollection<String> {
    let vocab = vocabulary();
    p.generate_sequence("GenerateLineNumbers", 0, lines as i64)
        .map("GenerateLines", move |i: &i64| {
            generated_line(&vocab, *i as u64)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_matches_the_regex() {
        for line in SAMPLE_TEXT.lines().chain(["", "'", "é-a''b ß42x", "x"]) {
            assert_eq!(
                words(line).collect::<Vec<_>>(),
                words_regex(line).collect::<Vec<_>>(),
                "{line:?}"
            );
        }
    }

    #[test]
    fn owned_words_match_borrowed_ones() {
        for line in SAMPLE_TEXT.lines().chain(["", "'", "é-a''b ß42x", "x"]) {
            assert_eq!(
                into_words(line.to_string()).collect::<Vec<_>>(),
                words(line).collect::<Vec<_>>(),
                "{line:?}"
            );
        }
    }

    #[test]
    fn words_follow_beams_definition() {
        let w: Vec<&str> = words("It's 3 o'clock -- the keeper's lamp, LIT!").collect();
        assert_eq!(w, vec!["It's", "o'clock", "the", "keeper's", "lamp", "LIT"]);
    }

    #[test]
    fn generated_lines_are_deterministic() {
        let v = vocabulary();
        assert_eq!(v[0], "the");
        assert_eq!(generated_line(&v, 7), generated_line(&v, 7));
        assert!(words(&generated_line(&v, 1)).count() >= 8);
    }
}
