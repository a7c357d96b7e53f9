//! Beam's WordCount: counts the words of text files.
//!
//! ```text
//! cargo run --release -p oxbeam-examples --bin wordcount -- --output out/counts
//! cargo run --release -p oxbeam-examples --bin wordcount -- --input 'examples/data/*.txt' --output out/counts
//! ```
//!
//! Words are maximal runs of `[A-Za-z']` (case kept); each output line is
//! `word: count`, in files `<output>-SSSSS-of-NNNNN`. Without `--input`, the
//! pipeline generates `--generate-lines` lines of text from the vocabulary of
//! the bundled sample (`examples/data/lighthouse.txt`).

use clap::Parser;
use oxbeam::io::{ReadFromText, WriteToText};
use oxbeam::{Pipeline, PipelineOptions};
use oxbeam_examples::{CountWords, generated_corpus};

/// Counts words in text files.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pipeline: PipelineOptions,
    /// Files to read (a glob). Omit to count a generated corpus.
    #[arg(long)]
    input: Option<String>,
    /// Output file prefix.
    #[arg(long, default_value = "out/counts")]
    output: String,
    /// Output shards.
    #[arg(long, default_value_t = 1)]
    num_shards: usize,
    /// Lines of the generated corpus (without `--input`).
    #[arg(long, default_value_t = 1_000_000)]
    generate_lines: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = Pipeline::new(args.pipeline);
    let lines = match &args.input {
        Some(glob) => p.apply("ReadLines", ReadFromText::new(glob.clone())),
        None => generated_corpus(&p, args.generate_lines),
    };
    lines
        .apply("CountWords", CountWords)
        .map("Format", |(word, n): &(String, i64)| format!("{word}: {n}"))
        .apply(
            "WriteCounts",
            WriteToText::new(args.output.clone()).with_num_shards(args.num_shards),
        );
    let started = std::time::Instant::now();
    p.run()?;
    eprintln!(
        "wordcount: wrote {}-*-of-{:05} in {:.2?}",
        args.output,
        args.num_shards,
        started.elapsed()
    );
    Ok(())
}
