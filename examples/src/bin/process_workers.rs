//! Native Rust stages in SDK harness processes: this binary, started by the
//! runner as its own harness (worker mode, as in Beam's Go SDK).
//!
//! ```text
//! cargo run -p oxbeam-examples --bin process_workers -- --environment-type PROCESS --output out/sums
//! ```
//!
//! Sums the numbers `0..--count` by their last digit; each output line is
//! `digit: sum`. With `--environment-type PROCESS` the runner starts this
//! binary again with `--worker` and Beam's boot flags, and sends it the
//! bundles of every stage over the gRPC Fn API on 127.0.0.1; without it,
//! everything runs in this process.
//!
//! `--fail-on N` makes the function that sees number `N` fail, to show what
//! the runner does about it (`--fail-how`): `exit-once` kills its harness
//! process the first time (the runner restarts the harness and retries the
//! bundle, with exactly the same output), `exit` every time (the job fails
//! after `--max-bundle-attempts`), `panic` raises a user-code error (never
//! retried), `hang-once` hangs the first time (for a test to kill the
//! harness). Each time, a line with the harness's pid is appended to
//! `--attempt-log`. `--slow-micros N` makes the function take N µs per
//! number; with `--no-fusion` its stage then reads the numbers as one
//! bundle, which the runner splits for the idle worker.

use std::io::Write;

use clap::Parser;
use oxbeam::io::WriteToText;
use oxbeam::{Pipeline, PipelineOptions};

/// How the function fails on `--fail-on`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FailHow {
    /// Exit the harness process the first time only.
    ExitOnce,
    /// Exit the harness process every time.
    Exit,
    /// Panic (a user-code error).
    Panic,
    /// Hang the first time (for a test to kill the harness process, whose
    /// pid is in the attempt log).
    HangOnce,
}

/// Sums numbers by last digit, in SDK harness processes with
/// `--environment-type PROCESS`.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pipeline: PipelineOptions,
    /// Output file prefix.
    #[arg(long, default_value = "out/sums")]
    output: String,
    /// Sum the numbers `0..count`.
    #[arg(long, default_value_t = 100_000)]
    count: i64,
    /// Fail on this number (see `--fail-how`).
    #[arg(long, requires = "attempt_log")]
    fail_on: Option<i64>,
    /// How to fail on `--fail-on`.
    #[arg(long, value_enum, default_value = "exit-once")]
    fail_how: FailHow,
    /// File getting one line each time `--fail-on` is reached.
    #[arg(long)]
    attempt_log: Option<std::path::PathBuf>,
    /// Microseconds the function spends on each number (to show dynamic
    /// work rebalancing: a straggling bundle split for an idle worker).
    #[arg(long, default_value_t = 0)]
    slow_micros: u64,
}

/// Records one attempt at the failing number; returns how many there were.
fn log_attempt(log: &std::path::Path) -> usize {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("attempt log opens");
    writeln!(f, "pid {}", std::process::id()).expect("attempt log is writable");
    drop(f);
    std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = Pipeline::new(args.pipeline);
    let (fail_on, how, log) = (args.fail_on, args.fail_how, args.attempt_log.clone());
    let slow = std::time::Duration::from_micros(args.slow_micros);
    p.generate_sequence("Numbers", 0, args.count)
        .map("Check", move |x: &i64| {
            if !slow.is_zero() {
                std::thread::sleep(slow);
            }
            if Some(*x) == fail_on {
                let attempts = log.as_deref().map_or(1, log_attempt);
                match how {
                    FailHow::ExitOnce if attempts == 1 => std::process::exit(3),
                    FailHow::ExitOnce => {}
                    FailHow::Exit => std::process::exit(3),
                    FailHow::Panic => panic!("refusing number {x}"),
                    FailHow::HangOnce if attempts == 1 => {
                        std::thread::sleep(std::time::Duration::from_secs(120));
                    }
                    FailHow::HangOnce => {}
                }
            }
            *x
        })
        .with_keys("ByDigit", |x: &i64| x % 10)
        .group_by_key("Group")
        .map("Format", |(digit, xs): &(i64, Vec<i64>)| {
            format!("{digit}: {}", xs.iter().sum::<i64>())
        })
        .apply("Write", WriteToText::new(args.output.clone()));
    let result = p.run()?;
    eprintln!(
        "process_workers: wrote {}-* ({} dynamic splits)",
        args.output, result.dynamic_splits
    );
    Ok(())
}
