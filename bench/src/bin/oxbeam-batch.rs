//! Oxbeam's side of the batch benchmarks (see `bench/compare.py`):
//!
//! ```text
//! oxbeam-batch chain --elements N --stages K [runner flags]
//! oxbeam-batch gbk --elements N --keys K [runner flags]
//! oxbeam-batch wordcount --input FILE --output PREFIX --words N [runner flags]
//! oxbeam-batch skew --elements N --micros M [runner flags]
//! oxbeam-batch tokenize --input FILE --udf native|wasm [runner flags]
//! ```
//!
//! Prints one JSON line `{"workload", "elements", "seconds"}` where seconds
//! is the pipeline's run time (construction excluded, as for the peers).

use clap::{Parser, Subcommand};
use oxbeam::combiners::{Count, Sum};
use oxbeam::io::{ReadFromText, WriteToText};
use oxbeam::wasm::{WasmFlatMap, WasmFn};
use oxbeam::{Pipeline, PipelineOptions};
use oxbeam_examples::CountWords;

/// mimalloc, as data systems in Rust commonly ship (the workloads allocate
/// one value per element; glibc's malloc costs ~2x more per element here).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    workload: Workload,
    #[command(flatten)]
    pipeline: PipelineOptions,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// B1: 100-byte elements through K chained Maps, then counted.
    Chain {
        #[arg(long)]
        elements: i64,
        #[arg(long)]
        stages: usize,
    },
    /// B2: GroupByKey of N integers over K keys; group sizes summed.
    Gbk {
        #[arg(long)]
        elements: i64,
        #[arg(long)]
        keys: i64,
    },
    /// B4: a straggler: N numbers of M microseconds each, in one bundle
    /// when run with `--no-fusion` (dynamic work rebalancing splits it).
    Skew {
        #[arg(long)]
        elements: i64,
        #[arg(long)]
        micros: u64,
    },
    /// B3: Beam's wordcount over a text file.
    Wordcount {
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: String,
        /// Words in the input (for the rate).
        #[arg(long)]
        words: u64,
    },
    /// The wordcount tokenizer (split on ASCII whitespace) as a native Rust
    /// FlatMap or as the example Wasm guest's `tokenize` (built on first
    /// use), between a text read and a global count; `elements` is the
    /// count.
    Tokenize {
        #[arg(long)]
        input: String,
        #[arg(long, value_enum)]
        udf: Udf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Udf {
    Native,
    Wasm,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = Pipeline::new(args.pipeline);
    let mut counted = None;
    let (name, elements) = match &args.workload {
        Workload::Chain { elements, stages } => {
            let mut xs = p
                .generate_sequence("Numbers", 0, *elements)
                .map("Payload", |i: &i64| {
                    let mut v = vec![b'x'; 100];
                    v[..8].copy_from_slice(&i.to_le_bytes());
                    v
                });
            for s in 0..*stages {
                // By value: the Map modifies its element and returns it.
                xs = xs.map(&format!("Map{s}"), |mut v: Vec<u8>| {
                    v[99] = v[99].wrapping_add(1);
                    v
                });
            }
            xs.apply("Count", Count::globally());
            ("chain", *elements as u64)
        }
        Workload::Gbk { elements, keys } => {
            let keys = *keys;
            p.generate_sequence("Numbers", 0, *elements)
                .map("Key", move |i: &i64| (i % keys, *i))
                .group_by_key("Group")
                .map("Size", |(_, vs): &(i64, Vec<i64>)| vs.len() as i64)
                .apply("Total", Sum::globally());
            ("gbk", *elements as u64)
        }
        Workload::Skew { elements, micros } => {
            let cost = std::time::Duration::from_micros(*micros);
            p.generate_sequence("Numbers", 0, *elements)
                .map("Slow", move |i: &i64| {
                    std::thread::sleep(cost);
                    *i
                })
                .apply("Total", Sum::globally());
            ("skew", *elements as u64)
        }
        Workload::Wordcount {
            input,
            output,
            words,
        } => {
            p.apply("Read", ReadFromText::new(input.clone()))
                .apply("CountWords", CountWords)
                .map("Format", |(w, n): &(String, i64)| format!("{w}: {n}"))
                .apply("Write", WriteToText::new(output.clone()));
            ("wordcount", *words)
        }
        Workload::Tokenize { input, udf } => {
            let lines = p.apply("Read", ReadFromText::new(input.clone()));
            let words_out = match udf {
                Udf::Native => lines.flat_map("Tokenize", |l: &String| {
                    l.split_ascii_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                }),
                Udf::Wasm => {
                    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
                    let module = oxbeam_wasm::dev::build_guest_udfs(&root)
                        .map_err(|e| anyhow::anyhow!(e))?;
                    p.with_executor(
                        oxbeam_model::urns::wasm_functions::ENVIRONMENT,
                        std::sync::Arc::new(oxbeam_wasm::WasmExecutor::new(Default::default())),
                    );
                    lines.apply(
                        "Tokenize",
                        WasmFlatMap::<String>::new(WasmFn::new(module.into(), "tokenize")),
                    )
                }
            };
            counted = Some(
                words_out
                    .apply("Count", Count::globally())
                    .collect_for_testing("Total"),
            );
            (
                match udf {
                    Udf::Native => "tokenize-native",
                    Udf::Wasm => "tokenize-wasm",
                },
                0,
            )
        }
    };
    let started = std::time::Instant::now();
    let result = p.run()?;
    let seconds = started.elapsed().as_secs_f64();
    let splits = result.dynamic_splits;
    let elements = match counted {
        Some(total) => match total.sorted()[..] {
            [n] => n as u64,
            ref other => anyhow::bail!("{name}: the count gave {other:?}, not one number"),
        },
        None => elements,
    };
    println!(
        "{{\"workload\": \"{name}\", \"elements\": {elements}, \"seconds\": {seconds}, \"splits\": {splits}}}"
    );
    Ok(())
}
