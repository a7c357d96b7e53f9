//! Oxbeam's side of the streaming benchmarks (see `bench/compare.py`,
//! `bench/README.md` for the definitions):
//!
//! ```text
//! oxbeam-streaming latency --rate R --seconds S [--keys K] [--window-ms W] [runner flags]
//! oxbeam-streaming state --elements N --keys K [runner flags]
//! ```
//!
//! `latency`: generator (R events/s, K keys) → Parse → fixed windows of W
//! ms → count per key → Sink, run for S seconds, then drained. Event `i`
//! *arrives* when it is due at the fixed rate: the generator's event time
//! is the wall clock of arrival, so arrival = `origin + i/R` to the
//! microsecond (`origin` recovered from the event's timestamp). Two
//! latencies, in microseconds of wall clock:
//! - **element**: arrival → the end of the Parse bundle that processed it
//!   (its output handed to the engine);
//! - **pane**: the window's end (= the arrival of the first event after the
//!   window, when a perfect watermark passes it) → the Sink receiving that
//!   window's on-time pane, per (key, window). Panes fired by the final
//!   drain and elements of the first second (warm-up) are not counted.
//!
//! Prints one JSON line with the percentiles, the events due and processed
//! when the drain was requested, and `keeps_up`.
//!
//! `state`: N generated events over K keys (as fast as possible) through a
//! stateful DoFn that keeps a per-key count in `ValueState`; prints the
//! updates per second of pipeline run time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use oxbeam::io::Generate;
use oxbeam::state::{Declarations, StateContext, StatefulDoFn, ValueState};
use oxbeam::window::{Window, WindowFn};
use oxbeam::{
    BoundedWindow, DoFn, FinishBundleContext, ParDo, Pipeline, PipelineOptions, ProcessContext,
};

/// mimalloc, as for the batch workloads.
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
    /// Parse → keyed fixed-window count → sink at a fixed input rate.
    Latency {
        /// Events per second.
        #[arg(long)]
        rate: u64,
        /// Seconds to run before draining.
        #[arg(long)]
        seconds: f64,
        /// Distinct keys.
        #[arg(long, default_value_t = 1000)]
        keys: u64,
        /// Window size in milliseconds.
        #[arg(long, default_value_t = 1000)]
        window_ms: u64,
        /// Seconds at the start not counted.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// ValueState updates over many keys.
    State {
        #[arg(long)]
        elements: u64,
        #[arg(long)]
        keys: u64,
    },
}

/// A latency histogram in microseconds: 1 µs buckets below 10 ms, 100 µs
/// buckets up to ~10 s (above: the last bucket).
struct Histogram {
    buckets: Box<[AtomicU64]>,
}

const FINE: u64 = 10_000;
const COARSE: u64 = 100_000;

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..FINE + COARSE).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, us: i64) {
        let us = us.max(0) as u64;
        let i = if us < FINE {
            us
        } else {
            FINE + ((us - FINE) / 100).min(COARSE - 1)
        };
        self.buckets[i as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < FINE { i } else { FINE + (i - FINE) * 100 }
    }

    /// `(count, p50, p99, p999, max)` in microseconds.
    fn summary(&self) -> (u64, u64, u64, u64, u64) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let at = |q: f64| {
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::value(i);
                }
            }
            0
        };
        let max = counts.iter().rposition(|&c| c > 0).map_or(0, Self::value);
        (total, at(0.5), at(0.99), at(0.999), max)
    }
}

static ELEMENTS: std::sync::LazyLock<Histogram> = std::sync::LazyLock::new(Histogram::new);
static PANES: std::sync::LazyLock<Histogram> = std::sync::LazyLock::new(Histogram::new);
/// Events parsed, and summed in on-time panes.
static PARSED: AtomicU64 = AtomicU64::new(0);
static COUNTED: AtomicU64 = AtomicU64::new(0);
/// Wall clock (µs) before which nothing is measured, and after which panes
/// come from the drain.
static MEASURE_FROM: AtomicI64 = AtomicI64::new(i64::MAX);
static DRAIN_AT: AtomicI64 = AtomicI64::new(i64::MAX);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Parse: `(key, seq)` events to their key, noting each event's arrival.
#[derive(Clone)]
struct Parse {
    rate: u64,
    arrivals: Vec<i64>,
}

impl DoFn for Parse {
    type In = (u64, u64);
    type Out = u64;

    fn process(&mut self, (key, seq): &(u64, u64), ctx: &mut ProcessContext<'_, u64>) {
        // Event time is `origin + floor(seq·1000/rate)` ms; arrival is
        // `origin + seq/rate` s exactly.
        let r = u128::from(self.rate);
        let seq = u128::from(*seq);
        let origin_ms = ctx.timestamp().millis() - (seq * 1000 / r) as i64;
        self.arrivals
            .push(origin_ms * 1000 + (seq * 1_000_000 / r) as i64);
        ctx.output(*key);
    }

    fn finish_bundle(&mut self, _: &mut FinishBundleContext<'_, u64>) {
        let now = now_us();
        let from = MEASURE_FROM.load(Ordering::Relaxed);
        PARSED.fetch_add(self.arrivals.len() as u64, Ordering::Relaxed);
        for &a in &self.arrivals {
            if a >= from {
                ELEMENTS.record(now - a);
            }
        }
        self.arrivals.clear();
    }
}

/// Sink: notes each on-time pane's latency from its window's end.
#[derive(Clone)]
struct Sink;

impl DoFn for Sink {
    type In = (u64, i64);
    type Out = ();

    fn process(&mut self, (_, count): &(u64, i64), ctx: &mut ProcessContext<'_, ()>) {
        let now = now_us();
        COUNTED.fetch_add(*count as u64, Ordering::Relaxed);
        if let BoundedWindow::Interval { start, end } = ctx.window() {
            let end_us = end.millis() * 1000;
            if start.millis() * 1000 >= MEASURE_FROM.load(Ordering::Relaxed)
                && end_us <= DRAIN_AT.load(Ordering::Relaxed)
            {
                PANES.record(now - end_us);
            }
        }
    }
}

/// Counts events per key in `ValueState`.
#[derive(Clone)]
struct CountPerKey {
    count: ValueState<u64>,
}

impl StatefulDoFn for CountPerKey {
    type Key = u64;
    type Value = u64;
    type Out = u64;

    fn declare(&self, d: &mut Declarations) {
        d.state(&self.count);
    }

    fn process(&mut self, _: &u64, _: &u64, ctx: &mut StateContext<'_, u64>) {
        let mut cell = ctx.state(&self.count);
        let n = cell.read().unwrap_or(0) + 1;
        cell.write(&n);
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = Pipeline::new(args.pipeline);
    match args.workload {
        Workload::Latency {
            rate,
            seconds,
            keys,
            window_ms,
            warmup,
        } => {
            anyhow::ensure!(rate > 0, "--rate must be positive");
            p.apply(
                "Events",
                Generate::unbounded().rate_per_second(rate).keys(keys),
            )
            .par_do(
                "Parse",
                ParDo::of(Parse {
                    rate,
                    arrivals: Vec::new(),
                }),
            )
            .window_into(
                "Window",
                Window::into(WindowFn::fixed(Duration::from_millis(window_ms))),
            )
            .count_per_element("CountPerKey")
            .par_do("Sink", ParDo::of(Sink));
            let start = now_us();
            MEASURE_FROM.store(start + (warmup * 1e6) as i64, Ordering::Relaxed);
            let started = Instant::now();
            let job = p.start()?;
            std::thread::sleep(Duration::from_secs_f64(seconds));
            let elapsed = started.elapsed().as_secs_f64();
            let parsed = PARSED.load(Ordering::Relaxed);
            DRAIN_AT.store(now_us(), Ordering::Relaxed);
            job.drain();
            job.wait()?;
            let due = (elapsed * rate as f64) as u64;
            let total = PARSED.load(Ordering::Relaxed);
            anyhow::ensure!(
                COUNTED.load(Ordering::Relaxed) == total,
                "panes counted {} events, {} were parsed",
                COUNTED.load(Ordering::Relaxed),
                total
            );
            let (n, p50, p99, p999, max) = ELEMENTS.summary();
            let (panes, pp50, pp99, pp999, pmax) = PANES.summary();
            // Keeping up: events processed within 1% (or 100 ms) of those due,
            // and no element waits for 100 ms or more at p99.
            let lag = due.saturating_sub(parsed);
            let keeps_up = lag <= (due / 100).max(rate / 10) && p99 < 100_000;
            println!(
                "{{\"workload\": \"latency\", \"rate\": {rate}, \"seconds\": {elapsed:.3}, \
                 \"due\": {due}, \"processed\": {parsed}, \"keeps_up\": {keeps_up}, \
                 \"elements\": {n}, \"element_p50_us\": {p50}, \"element_p99_us\": {p99}, \
                 \"element_p999_us\": {p999}, \"element_max_us\": {max}, \
                 \"panes\": {panes}, \"pane_p50_us\": {pp50}, \"pane_p99_us\": {pp99}, \
                 \"pane_p999_us\": {pp999}, \"pane_max_us\": {pmax}}}"
            );
        }
        Workload::State { elements, keys } => {
            p.apply("Events", Generate::elements(elements).keys(keys))
                .stateful_par_do(
                    "CountPerKey",
                    CountPerKey {
                        count: ValueState::new("count"),
                    },
                );
            let started = Instant::now();
            p.run()?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{{\"workload\": \"state\", \"elements\": {elements}, \"keys\": {keys}, \"seconds\": {seconds}}}"
            );
        }
    }
    Ok(())
}
