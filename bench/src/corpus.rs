//! Deterministic synthetic text for wordcount benchmarks.

use std::io::{self, Write};

/// A small, fast, seedable PRNG (xorshift64*): benchmarks need repeatable
/// data, not cryptographic quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `size` distinct words of 2–10 letters (some with an apostrophe).
pub fn vocabulary(size: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let mut seen = std::collections::HashSet::with_capacity(size);
    let mut words = Vec::with_capacity(size);
    while words.len() < size {
        let len = 2 + (rng.next_u64() % 9) as usize;
        let mut w: String = (0..len)
            .map(|i| {
                let c = (b'a' + (rng.next_u64() % 26) as u8) as char;
                if i == 0 && rng.next_u64() % 5 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        if rng.next_u64() % 20 == 0 {
            w.insert(len / 2, '\'');
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

/// Writes `count` words from `vocabulary`, ~12 per line, separated by spaces
/// and punctuation, uniformly or Zipf-distributed (s = 1).
///
/// # Errors
/// Propagates write errors.
pub fn write(
    out: &mut impl Write,
    vocabulary: &[String],
    count: u64,
    zipf: bool,
    seed: u64,
) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    // Zipf by inverse CDF over the harmonic weights.
    let cdf: Vec<f64> = if zipf {
        let mut acc = 0.0;
        let mut c: Vec<f64> = (1..=vocabulary.len())
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect();
        for x in &mut c {
            *x /= acc;
        }
        c
    } else {
        Vec::new()
    };
    let seps = [" ", " ", " ", ", ", ". ", "; ", " -- "];
    let mut line_words = 0;
    for _ in 0..count {
        let idx = if zipf {
            let u = rng.next_f64();
            cdf.partition_point(|&p| p < u).min(vocabulary.len() - 1)
        } else {
            (rng.next_u64() % vocabulary.len() as u64) as usize
        };
        out.write_all(vocabulary[idx].as_bytes())?;
        line_words += 1;
        if line_words == 12 {
            out.write_all(b".\n")?;
            line_words = 0;
        } else {
            out.write_all(seps[(rng.next_u64() % seps.len() as u64) as usize].as_bytes())?;
        }
    }
    if line_words > 0 {
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_has_exactly_the_requested_words() {
        let vocab = vocabulary(100, 1);
        let mut buf = Vec::new();
        write(&mut buf, &vocab, 1000, true, 7).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let words = text
            .split(|c: char| !(c.is_ascii_alphabetic() || c == '\''))
            .filter(|w| !w.is_empty())
            .count();
        assert_eq!(words, 1000);
    }

    #[test]
    fn same_seed_same_corpus() {
        let vocab = vocabulary(50, 3);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write(&mut a, &vocab, 500, false, 9).unwrap();
        write(&mut b, &vocab, 500, false, 9).unwrap();
        assert_eq!(a, b);
    }
}
