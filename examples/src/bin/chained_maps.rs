//! Throughput probe: `--maps` chained `Map`s over `--elements` integers,
//! summed. Prints elements per second.
//!
//! ```text
//! cargo run --release -p oxbeam-examples --bin chained_maps -- --parallelism 1
//! ```

use clap::Parser;
use oxbeam::combiners::Sum;
use oxbeam::{Pipeline, PipelineOptions};

/// Chained maps.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pipeline: PipelineOptions,
    /// Elements to generate.
    #[arg(long, default_value_t = 20_000_000)]
    elements: i64,
    /// Maps in the chain.
    #[arg(long, default_value_t = 10)]
    maps: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = Pipeline::new(args.pipeline);
    let mut xs = p.generate_sequence("Numbers", 0, args.elements);
    for i in 0..args.maps {
        xs = xs.map(&format!("Map{i}"), |x: &i64| x.wrapping_add(1));
    }
    let sum = xs.apply("Sum", Sum::globally());
    let _ = sum;
    let started = std::time::Instant::now();
    p.run()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} elements through {} maps in {secs:.2}s: {:.1}M elements/s",
        args.elements,
        args.maps,
        args.elements as f64 / secs / 1e6
    );
    Ok(())
}
