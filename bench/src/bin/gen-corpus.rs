//! Writes a deterministic text corpus for the wordcount benchmarks.
//!
//! `gen-corpus --words N --dist uniform|zipf --out FILE [--vocab V] [--seed S]`
//! writes N words in lines of ~12 words, drawn from a vocabulary of V
//! synthetic words (letters and apostrophes) uniformly or by Zipf's law (s=1).

use std::io::{BufWriter, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let words: u64 = get("--words", "1000000").parse().expect("--words N");
    let vocab: usize = get("--vocab", "50000").parse().expect("--vocab V");
    let seed: u64 = get("--seed", "42").parse().expect("--seed S");
    let zipf = match get("--dist", "uniform").as_str() {
        "uniform" => false,
        "zipf" => true,
        other => {
            eprintln!("--dist must be uniform or zipf, not {other}");
            std::process::exit(2);
        }
    };
    let out = get("--out", "");
    if out.is_empty() {
        eprintln!("usage: gen-corpus --words N --dist uniform|zipf --out FILE");
        std::process::exit(2);
    }
    let vocabulary = oxbeam_bench::corpus::vocabulary(vocab, seed);
    let file = std::fs::File::create(&out).unwrap_or_else(|e| {
        eprintln!("cannot create {out}: {e}");
        std::process::exit(1)
    });
    let mut w = BufWriter::with_capacity(1 << 20, file);
    oxbeam_bench::corpus::write(&mut w, &vocabulary, words, zipf, seed).expect("write corpus");
    w.flush().expect("flush corpus");
}
