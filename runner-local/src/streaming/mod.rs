//! The streaming engine: runs every step of a plan continuously, with event
//! time advancing step by step.
//!
//! One coordinator (the calling thread) owns the event-time state; the
//! worker pool, bundle processors and PCollection slots are the batch
//! engine's ([`crate::job::Job`] in [`Mode::Streaming`]):
//!
//! - **Queues and bundles.** Every chunk a step emits is routed to its
//!   readers: a stage's input queue, a GroupByKey, a Flatten (passed on), a
//!   side-input buffer. A stage's queue is cut into bundles of up to
//!   `bundle_bytes` whenever a worker is idle, the queue reaches that size,
//!   or its oldest chunk has waited [`MAX_BUNDLE_DELAY`]. Idle workers go to
//!   the stage whose oldest chunk waited longest, so a busy upstream stage
//!   cannot starve the stages after it.
//! - **Watermarks.** Each PCollection has a watermark: its producer's
//!   output watermark. A step's input watermark is the minimum over its
//!   main inputs; its output watermark is the input watermark held back by
//!   its pending work: each queued or in-flight chunk holds the watermark
//!   its reader had when the chunk arrived, a GroupByKey holds at its
//!   grouping's [`Grouping::watermark_hold`], a source at its own watermark.
//!   Watermarks only move forward. A pass over the steps in plan order
//!   (producers first) propagates them to a fixpoint.
//! - **GroupByKey** is a [`Grouping`] fed as chunks arrive and advanced
//!   when its input watermark or processing time moves.
//! - **Sources.** Impulse emits once; a generator emits what is due at its
//!   rate; a TestStream applies one event whenever the pipeline is
//!   quiescent (no bundle in flight, nothing queued), with processing time
//!   a synthetic clock moved only by its events. Other jobs use the wall
//!   clock.
//! - **Side inputs** are read window by window: a queued chunk waits until
//!   each side input's watermark has passed the end of the side window its
//!   elements' windows map onto ([`SideRt`]); global side windows are ready
//!   at +∞ only. Bundles see what the side inputs received so far.
//! - **Stateful stages** (state and timers): input is split by a hash of
//!   the key into partitions, each with its own state store and timer
//!   queue kept across bundles, and at most one bundle in flight (a key is
//!   never in two concurrent bundles). When the stage's input watermark or
//!   processing time moves past a partition's timers, a bundle fires them
//!   (Beam's strict "timer < watermark"); pending timers hold the output
//!   watermark at their hold timestamps; state and timers of expired
//!   windows are dropped.
//! - **Ending.** The job is done when every step's output watermark is +∞
//!   and nothing is queued or in flight. Drain stops the sources (their
//!   watermarks jump to +∞), so every window fires; cancel stops at once.

mod checkpoint;
mod grouping;
mod redis;
mod sources;
mod watch;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxbeam_fn_api::{Executors, MetricKey, Metrics};
use oxbeam_model::coders::Context;
use oxbeam_model::window::{BoundedWindow, Timestamp};
use oxbeam_runner_core::coder::read_interval_window;
use oxbeam_runner_core::state::{StageState, StateStore};
use oxbeam_runner_core::{
    Coder, ExecutionPlan, GroupByKeyStep, Stage, Step, WindowCoderKind, WindowFn, WindowedHeader,
};

use crate::data::Chunk;
use crate::job::{
    BEFORE_TIME, BundleInputs, Done, END_OF_TIME, GroupingParts, Job, KeyedRun, KeyedState, Mode,
    StageSideInputs, Task, Watermark, impulse_element,
};
use crate::{Error, LocalOptions, PipelineResult, StepReport};

use grouping::{Compactor, Gabw, Grouping};
use sources::{Generator, TestStreamScript};
use watch::FileWatcher;

/// Longest a queued chunk waits for a bundle when workers are busy.
pub(crate) const MAX_BUNDLE_DELAY: Duration = Duration::from_millis(20);

/// Shortest sleep between two polls of a generator with elements due
/// later: at high rates, waking for every element costs more CPU than the
/// elements (which then come in chunks of `rate × MIN_SOURCE_POLL`), at
/// most this much later.
const MIN_SOURCE_POLL: Duration = Duration::from_micros(100);

/// Longest the coordinator sleeps without checking cancel and drain.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// Bytes queued in stages above which generators pause (backpressure).
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// External requests to a running streaming job.
#[derive(Clone, Copy, Default)]
pub(crate) struct Control<'a> {
    /// Stop at once; the job fails with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Stop the sources and finish what they produced.
    pub drain: Option<&'a AtomicBool>,
}

impl Control<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn draining(&self) -> bool {
        self.drain.is_some_and(|d| d.load(Ordering::Relaxed))
    }
}

/// Runs `plan` on the streaming engine until it is done, drained or
/// cancelled.
pub(crate) fn run(
    plan: &ExecutionPlan,
    executors: &Executors,
    options: &LocalOptions,
    control: Control<'_>,
) -> Result<PipelineResult, Error> {
    let mut job = Job::new(plan, executors, options, Mode::Streaming)?;
    job.cancel_request = control.cancel;
    let mut engine = Engine::new(&job, control)?;
    let result = engine.run();
    let reports = engine.reports();
    let counters = engine.grouping_counters();
    drop(engine);
    result?;
    let mut metrics = oxbeam_fn_api::Metrics::default();
    for (transform, name, n) in counters {
        metrics.inc_counter(
            MetricKey {
                transform,
                namespace: "oxbeam".into(),
                name: name.into(),
            },
            n as i64,
        );
    }
    job.add_metrics(&metrics)?;
    job.finish(reports)
}

/// Who reads a PCollection.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// Main input `input` of stage `step`.
    Main { step: usize, input: usize },
    /// Side input `index` of stage `step`.
    Side { step: usize, index: usize },
    /// The GroupByKey `step`.
    Group { step: usize },
    /// The Flatten `step`.
    Flatten { step: usize },
    /// The Redis stream sink `step` (see [`redis`]).
    RedisSink { step: usize },
}

/// A chunk waiting for a bundle, with the watermark it holds.
struct Queued {
    input: usize,
    chunk: Arc<Chunk>,
    hold: Watermark,
    since: Instant,
    /// The latest end of its elements' windows (+∞ for windows without an
    /// end the runner can read, such as the global window): the side inputs
    /// of its stage must be ready that far (see [`SideRt`]).
    window_end: Watermark,
}

/// Work a splittable DoFn deferred (a residual), waiting until `due`;
/// meanwhile it holds the stage's output watermark at `hold`.
struct Deferred {
    input: usize,
    chunk: Arc<Chunk>,
    hold: Watermark,
    due: Instant,
}

#[derive(Default)]
struct StageRt {
    queue: VecDeque<Queued>,
    /// Residuals waiting for their resume time.
    deferred: Vec<Deferred>,
    queued_bytes: usize,
    /// `(bundle tag, hold)` of bundles in flight.
    in_flight: Vec<(usize, Watermark)>,
    next_tag: usize,
    /// Side inputs, if the stage has any.
    side: Option<SideRt>,
    /// Stateful stages: the key partitions (bundle tag = partition index).
    keyed: Option<Vec<KeyPartition>>,
}

/// The side inputs of a stage: what they hold so far, and how far each is
/// ready.
///
/// As on Beam's DirectRunner, an element in main-input window `w` waits
/// until each side input's watermark has passed the end of the side window
/// `w` maps onto: the side input is then complete for that window, so the
/// element sees the same contents it would at the end of the job. Fixed
/// and sliding side windows map by `w`'s end; the global window, sessions
/// and windows the runner cannot read are ready only at +∞. Bundles see
/// every element the side inputs have received when they start.
struct SideRt {
    /// Per side input: its elements so far, back to back.
    data: Vec<Vec<u8>>,
    /// Per side input: how its elements are windowed.
    window_fns: Vec<WindowFn>,
    /// Whether `data` changed since bundles were last given it.
    changed: bool,
}

impl SideRt {
    /// Whether an element whose windows end by `window_end` can be
    /// processed, the side inputs' watermarks being `watermarks`.
    fn ready(&self, watermarks: &[Watermark], window_end: Watermark) -> bool {
        self.window_fns.iter().zip(watermarks).all(|(f, &wm)| {
            wm == END_OF_TIME || side_window_end(f, window_end).is_some_and(|end| wm >= end)
        })
    }

    /// Whether every side input is complete.
    fn complete(watermarks: &[Watermark]) -> bool {
        watermarks.iter().all(|&wm| wm == END_OF_TIME)
    }
}

/// The end of the side window of `side` that a main-input window ending at
/// `main_end` maps onto (Beam's default window mapping: the window holding
/// the main window's last instant; of sliding windows, the latest one), or
/// `None` if it is ready only at +∞.
fn side_window_end(side: &WindowFn, main_end: Watermark) -> Option<Watermark> {
    if main_end == BEFORE_TIME {
        // No elements: nothing to wait for.
        return Some(BEFORE_TIME);
    }
    if main_end == END_OF_TIME {
        return None;
    }
    let t = main_end - 1;
    let (size, period, offset) = match *side {
        WindowFn::Fixed { size_ms, offset_ms } => (size_ms, size_ms, offset_ms),
        WindowFn::Sliding {
            size_ms,
            period_ms,
            offset_ms,
        } => (size_ms, period_ms, offset_ms),
        _ => return None,
    };
    if size <= 0 || period <= 0 {
        return None;
    }
    let start = t - (t - offset).rem_euclid(period);
    Some(start.saturating_add(size))
}

/// The latest end of the windows of the elements in `bytes` (windowed
/// values of `coder` with windows of `windows`); +∞ if any window has no
/// end the runner can read.
fn latest_window_end(bytes: &[u8], coder: &Coder, windows: WindowCoderKind) -> Watermark {
    if windows != WindowCoderKind::Interval {
        return END_OF_TIME;
    }
    let mut latest = BEFORE_TIME;
    let mut input = bytes;
    while !input.is_empty() {
        let Ok(h) = WindowedHeader::parse(&input, &Coder::IntervalWindow) else {
            return END_OF_TIME;
        };
        let mut ws = h.windows;
        for _ in 0..h.window_count {
            match read_interval_window(&mut ws) {
                Ok((_, end)) => latest = latest.max(to_watermark(end)),
                Err(_) => return END_OF_TIME,
            }
        }
        let mut rest = h.value;
        if coder.skip(&mut rest, Context::Nested).is_err() {
            return END_OF_TIME;
        }
        input = rest;
    }
    latest
}

/// One key partition of a stateful stage.
struct KeyPartition {
    state: Arc<Mutex<KeyedState>>,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    /// The hold of its bundle in flight, if one is.
    busy: Option<Watermark>,
    /// As of its last bundle: the timers' output hold, whether any timer
    /// is pending, and the earliest processing-time timer.
    timer_hold: Option<i64>,
    has_timers: bool,
    next_processing_time: Option<i64>,
    /// The input watermark its timers last fired at.
    fired_at: Watermark,
}

impl KeyPartition {
    fn new(state: &StageState) -> Self {
        KeyPartition {
            state: Arc::new(Mutex::new(KeyedState {
                store: StateStore::new(),
                timers: state.timer_queue(),
            })),
            queue: VecDeque::new(),
            queued_bytes: 0,
            busy: None,
            timer_hold: None,
            has_timers: false,
            next_processing_time: None,
            fired_at: BEFORE_TIME,
        }
    }

    /// Whether timers may be due at input watermark `wm` and processing
    /// time `pt`. A processing-time timer is due once the clock reaches
    /// it, as the keyed bundle fires it (and Beam's Python runners do): a
    /// TestStream that advances processing time exactly to a timer fires
    /// it before the stream's next elements.
    fn timers_due(&self, wm: Watermark, pt: i64) -> bool {
        (self.has_timers && wm > self.fired_at)
            || self.next_processing_time.is_some_and(|t| t <= pt)
    }
}

struct GroupRt {
    grouping: Box<dyn Grouping>,
    key_value: Coder,
    window_coder: Coder,
    /// New elements or a new watermark since the last advance.
    dirty: bool,
    /// The input watermark and processing time of the last advance.
    advanced_to: Watermark,
    clock: i64,
    /// Panes fired while elements were fed, written at the next pass.
    early: Vec<Vec<u8>>,
    /// As of the last advance (both scan every window: cached).
    hold: Option<Timestamp>,
    next_processing_time: Option<i64>,
    /// The last advance stopped with panes still due.
    firing: bool,
}

enum Op {
    Impulse { emitted: bool },
    Flatten,
    Stage(StageRt),
    Group(Box<GroupRt>),
    TestStream(TestStreamScript),
    Generate(Generator),
    Watch(FileWatcher),
    Redis,
}

/// Processing time: the wall clock, or a TestStream's synthetic clock.
enum Clock {
    Wall,
    Synthetic(i64),
}

struct Engine<'j, 'p> {
    job: &'j Job<'p>,
    control: Control<'j>,
    ops: Vec<Op>,
    /// Per step: slot indices of main inputs, outputs.
    main_reads: Vec<Vec<usize>>,
    side_reads: Vec<Vec<Vec<usize>>>,
    outputs: Vec<Vec<usize>>,
    /// Per slot: who reads it.
    readers: Vec<Vec<Reader>>,
    /// Per slot: its watermark.
    slot_wm: Vec<Watermark>,
    /// Per step: its output watermark.
    out_wm: Vec<Watermark>,
    clock: Clock,
    in_flight: usize,
    max_in_flight: usize,
    /// Generators paused for backpressure (wait for bundles, not for them).
    throttled: bool,
    draining: bool,
    started: Instant,
    /// Per step: bundles run, and when its output watermark reached +∞.
    tasks: Vec<usize>,
    finished_at: Vec<Option<Duration>>,
    /// Stages by the age of their oldest queued chunk (reused by
    /// `dispatch_by_age`).
    dispatch_order: Vec<(Option<Instant>, usize)>,
    /// Redis stream sources and sinks (their steps' ops are `Op::Redis`),
    /// committed together.
    redis: redis::RedisIo,
}

fn internal(msg: impl Into<String>) -> Error {
    Error::Internal(msg.into())
}

impl<'j, 'p> Engine<'j, 'p> {
    fn new(job: &'j Job<'p>, control: Control<'j>) -> Result<Self, Error> {
        let plan = job.plan;
        let steps = plan.steps();
        let n = steps.len();
        let slot = |p: &str| -> Result<usize, Error> {
            job.slot_index
                .get(p)
                .copied()
                .ok_or_else(|| internal(format!("PCollection {p} is read but no step produces it")))
        };
        let mut readers = vec![Vec::new(); job.slots.len()];
        let mut main_reads = vec![Vec::new(); n];
        let mut side_reads = vec![Vec::new(); n];
        let mut outputs = vec![Vec::new(); n];
        let mut ops = Vec::with_capacity(n);
        let mut synthetic = false;
        for (i, step) in steps.iter().enumerate() {
            for o in step.outputs() {
                outputs[i].push(slot(o)?);
            }
            let op = match step {
                Step::Impulse(_) => Op::Impulse { emitted: false },
                Step::Flatten(f) => {
                    for r in &f.inputs {
                        let s = slot(r)?;
                        readers[s].push(Reader::Flatten { step: i });
                        main_reads[i].push(s);
                    }
                    Op::Flatten
                }
                Step::GroupByKey(g) => {
                    for r in &g.inputs {
                        let s = slot(r)?;
                        readers[s].push(Reader::Group { step: i });
                        main_reads[i].push(s);
                    }
                    Op::Group(Box::new(group_rt(plan, g, job.take_grouping_parts(i))?))
                }
                Step::Stage(stage) => {
                    for (idx, input) in stage.inputs.iter().enumerate() {
                        for r in &input.reads {
                            let s = slot(r)?;
                            readers[s].push(Reader::Main {
                                step: i,
                                input: idx,
                            });
                            main_reads[i].push(s);
                        }
                    }
                    for (idx, si) in stage.side_inputs.iter().enumerate() {
                        let mut reads = Vec::new();
                        for r in &si.reads {
                            let s = slot(r)?;
                            readers[s].push(Reader::Side {
                                step: i,
                                index: idx,
                            });
                            reads.push(s);
                        }
                        side_reads[i].push(reads);
                    }
                    let side = if stage.side_inputs.is_empty() {
                        None
                    } else {
                        let window_fns = stage
                            .side_inputs
                            .iter()
                            .map(|si| {
                                plan.pcollection(&si.pcollection)
                                    .map_or(WindowFn::Global, |pc| pc.windowing.window_fn.clone())
                            })
                            .collect();
                        Some(SideRt {
                            data: vec![Vec::new(); stage.side_inputs.len()],
                            window_fns,
                            changed: true,
                        })
                    };
                    Op::Stage(StageRt {
                        side,
                        keyed: stage.state.as_ref().map(|st| {
                            (0..job.options.parallelism.max(1) * 4)
                                .map(|_| KeyPartition::new(st))
                                .collect()
                        }),
                        ..StageRt::default()
                    })
                }
                Step::TestStream(t) => {
                    synthetic = true;
                    Op::TestStream(TestStreamScript::new(t))
                }
                Step::Generate(g) => Op::Generate(Generator::new(&g.spec)),
                Step::WatchFiles(w) => Op::Watch(FileWatcher::new(w)),
                Step::RedisRead(_) => Op::Redis,
                Step::RedisWrite(w) => {
                    for r in &w.inputs {
                        let s = slot(r)?;
                        readers[s].push(Reader::RedisSink { step: i });
                        main_reads[i].push(s);
                    }
                    Op::Redis
                }
            };
            ops.push(op);
        }
        let parallelism = job.options.parallelism.max(1);
        Ok(Engine {
            job,
            control,
            ops,
            main_reads,
            side_reads,
            outputs,
            readers,
            slot_wm: vec![BEFORE_TIME; job.slots.len()],
            out_wm: vec![BEFORE_TIME; n],
            clock: if synthetic {
                Clock::Synthetic(0)
            } else {
                Clock::Wall
            },
            in_flight: 0,
            max_in_flight: parallelism * 2,
            throttled: false,
            draining: false,
            started: Instant::now(),
            tasks: vec![0; n],
            finished_at: vec![None; n],
            dispatch_order: Vec::new(),
            redis: Self::redis_io(plan)?,
        })
    }

    fn processing_time(&self) -> i64 {
        match self.clock {
            Clock::Synthetic(t) => t,
            Clock::Wall => wall_clock_millis(),
        }
    }

    fn input_wm(&self, step: usize) -> Watermark {
        self.main_reads[step]
            .iter()
            .map(|&s| self.slot_wm[s])
            .min()
            .unwrap_or(END_OF_TIME)
    }

    /// Runs the job on a worker pool until it ends.
    fn run(&mut self) -> Result<(), Error> {
        let job = self.job;
        let (task_tx, task_rx) = mpsc::channel::<Task>();
        let task_rx = Mutex::new(task_rx);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        std::thread::scope(|scope| {
            for _ in 0..job.options.parallelism.max(1) {
                let done_tx = done_tx.clone();
                let task_rx = &task_rx;
                scope.spawn(move || job.worker(task_rx, done_tx));
            }
            drop(done_tx);
            let result = self.coordinate(&task_tx, &done_rx);
            if result.is_err() {
                // Queued tasks are skipped; running bundles finish.
                job.cancelled.store(true, Ordering::Relaxed);
            }
            drop(task_tx);
            result
        })
    }

    fn coordinate(&mut self, tasks: &Sender<Task>, done: &Receiver<Done>) -> Result<(), Error> {
        loop {
            if self.control.cancelled() {
                self.job.cancelled.store(true, Ordering::Relaxed);
                if let Some(h) = &self.job.harnesses {
                    h.cancel("the job was cancelled");
                }
                return Err(Error::Cancelled);
            }
            if !self.draining && self.control.draining() {
                self.draining = true;
                for op in &mut self.ops {
                    match op {
                        Op::TestStream(t) => t.stop(),
                        Op::Generate(g) => g.stop(),
                        Op::Watch(w) => w.stop(),
                        _ => {}
                    }
                }
            }
            self.poll_generators()?;
            self.pass(tasks)?;
            // Quiescent: nothing in flight and no grouping with panes due.
            let firing = self
                .ops
                .iter()
                .any(|o| matches!(o, Op::Group(g) if g.firing));
            if self.in_flight == 0 && !firing {
                if self.next_test_stream_event()? || self.poll_redis()? {
                    continue;
                }
                if self.out_wm.iter().all(|&w| w == END_OF_TIME) {
                    return Ok(());
                }
            }
            let wait = self.next_wakeup();
            match done.recv_timeout(wait) {
                Ok(d) => {
                    self.finished_bundle(d)?;
                    // Take every other finished bundle before the next pass.
                    while let Ok(d) = done.try_recv() {
                        self.finished_bundle(d)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(internal("all workers exited"));
                }
            }
        }
    }

    /// How long the coordinator may sleep: until a generator has elements
    /// due, a grouping's processing-time trigger, a queued chunk's bundle
    /// delay, or [`MAX_WAIT`].
    fn next_wakeup(&self) -> Duration {
        let mut wait = MAX_WAIT;
        let now_pt = self.processing_time();
        for (i, op) in self.ops.iter().enumerate() {
            match op {
                Op::Generate(g) if !self.throttled => {
                    if let Some(d) = g.next_due() {
                        wait = wait.min(d.max(MIN_SOURCE_POLL));
                    }
                }
                Op::Watch(w) if !self.throttled => {
                    if let Some(d) = w.next_due() {
                        wait = wait.min(d.max(MIN_SOURCE_POLL));
                    }
                }
                // More panes to fire: right after this round's bundles
                // are dispatched.
                Op::Group(g) if g.firing => return Duration::ZERO,
                Op::Group(g) if matches!(self.clock, Clock::Wall) => {
                    if let Some(t) = g.next_processing_time {
                        // Processing-time triggers fire once the clock is past t.
                        let ms = t.saturating_add(1).saturating_sub(now_pt).max(0) as u64;
                        wait = wait.min(Duration::from_millis(ms));
                    }
                }
                Op::Stage(s) => {
                    // Waiting for side inputs, a queue is not due.
                    if let Some(q) = s.queue.front().filter(|q| self.side_ready(i, q)) {
                        wait = wait.min(MAX_BUNDLE_DELAY.saturating_sub(q.since.elapsed()));
                    }
                    for r in &s.deferred {
                        wait = wait.min(r.due.saturating_duration_since(Instant::now()));
                    }
                    for part in s.keyed.iter().flatten() {
                        if let Some(q) = part.queue.front().filter(|q| self.side_ready(i, q)) {
                            wait = wait.min(MAX_BUNDLE_DELAY.saturating_sub(q.since.elapsed()));
                        }
                        if let (Some(t), Clock::Wall) = (part.next_processing_time, &self.clock) {
                            let ms = t.saturating_sub(now_pt).max(0) as u64;
                            wait = wait.min(Duration::from_millis(ms));
                        }
                    }
                }
                _ => {}
            }
        }
        wait
    }

    fn finished_bundle(&mut self, d: Done) -> Result<(), Error> {
        self.in_flight -= 1;
        d.result?;
        // Route the outputs while the bundle's hold is still in place.
        self.collect(d.step)?;
        let draining = self.draining;
        let Op::Stage(s) = &mut self.ops[d.step] else {
            return Ok(());
        };
        if !d.residuals.is_empty() {
            let Step::Stage(stage) = &self.job.plan.steps()[d.step] else {
                return Err(internal("bundle of a non-stage step"));
            };
            let bundle_hold = s
                .in_flight
                .iter()
                .find(|(t, _)| *t == d.tag)
                .map_or(END_OF_TIME, |(_, h)| *h);
            // Draining: sources stop, and so does deferred work (dropped).
            if !draining {
                for r in d.residuals {
                    let input = stage
                        .inputs
                        .iter()
                        .position(|i| i.source_transform == r.source)
                        .ok_or_else(|| {
                            internal(format!(
                                "residual for {}, not a data source of stage {}",
                                r.source, stage.id
                            ))
                        })?;
                    // The SDK's watermark estimate, else the element's own
                    // timestamp (a windowed value starts with it).
                    let hold = r
                        .watermark_millis
                        .or_else(|| {
                            let ts = r.element.first_chunk::<8>()?;
                            Some((u64::from_be_bytes(*ts) ^ (1 << 63)) as i64)
                        })
                        .map_or(bundle_hold, to_watermark);
                    s.deferred.push(Deferred {
                        input,
                        chunk: Arc::new(Chunk { bytes: r.element }),
                        hold,
                        due: Instant::now() + r.delay,
                    });
                }
            }
        }
        if let Some(parts) = &mut s.keyed {
            let part = parts
                .get_mut(d.tag)
                .ok_or_else(|| internal("bundle of an unknown key partition"))?;
            part.busy = None;
            let st = part
                .state
                .lock()
                .map_err(|_| internal("poisoned key partition"))?;
            part.timer_hold = st.timers.hold();
            part.has_timers = !st.timers.is_empty();
            part.next_processing_time = st.timers.next_processing_time();
        } else if let Some(i) = s.in_flight.iter().position(|(t, _)| *t == d.tag) {
            s.in_flight.swap_remove(i);
        }
        Ok(())
    }

    /// Routes everything step `step` has written to its output slots.
    fn collect(&mut self, step: usize) -> Result<(), Error> {
        for k in 0..self.outputs[step].len() {
            let s = self.outputs[step][k];
            let chunks = std::mem::take(
                &mut *self.job.slots[s]
                    .chunks
                    .lock()
                    .map_err(|_| internal("poisoned chunk list"))?,
            );
            for c in chunks {
                self.route(s, c)?;
            }
        }
        Ok(())
    }

    /// Hands a chunk of slot `slot` to every reader.
    fn route(&mut self, slot: usize, chunk: Arc<Chunk>) -> Result<(), Error> {
        if chunk.bytes.is_empty() {
            return Ok(());
        }
        for ri in 0..self.readers[slot].len() {
            match self.readers[slot][ri] {
                Reader::Main { step, input } => {
                    let hold = self.input_wm(step);
                    let window_end = self.window_end(step, slot, &chunk);
                    let Op::Stage(s) = &mut self.ops[step] else {
                        return Err(internal("main input of a non-stage step"));
                    };
                    if let Some(parts) = &mut s.keyed {
                        let Step::Stage(Stage {
                            state: Some(state), ..
                        }) = &self.job.plan.steps()[step]
                        else {
                            return Err(internal("keyed op of a stateless stage"));
                        };
                        let n = parts.len();
                        for (p, inputs) in crate::stateful::partition_indexed(
                            state,
                            vec![(input, chunk.clone())],
                            n,
                        )? {
                            let part = &mut parts[p];
                            for (input, chunk) in inputs {
                                s.queued_bytes += chunk.bytes.len();
                                part.queued_bytes += chunk.bytes.len();
                                part.queue.push_back(Queued {
                                    input,
                                    chunk,
                                    hold,
                                    since: Instant::now(),
                                    window_end,
                                });
                            }
                        }
                        continue;
                    }
                    s.queued_bytes += chunk.bytes.len();
                    s.queue.push_back(Queued {
                        input,
                        chunk: chunk.clone(),
                        hold,
                        since: Instant::now(),
                        window_end,
                    });
                }
                Reader::Side { step, index } => {
                    if let Op::Stage(StageRt {
                        side: Some(side), ..
                    }) = &mut self.ops[step]
                    {
                        side.data[index].extend_from_slice(&chunk.bytes);
                        side.changed = true;
                    }
                }
                Reader::Group { step } => {
                    let pt = self.processing_time();
                    let Op::Group(g) = &mut self.ops[step] else {
                        return Err(internal("group input of a non-group step"));
                    };
                    let Step::GroupByKey(gs) = &self.job.plan.steps()[step] else {
                        return Err(internal("group op of a non-group step"));
                    };
                    // Elements arrive at the processing time of the last
                    // advance: bring the grouping's clock to now first.
                    if g.clock < pt {
                        g.clock = pt;
                        let early = &mut g.early;
                        g.firing |= g.grouping.advance(
                            to_timestamp(g.advanced_to),
                            Timestamp::from_millis(pt),
                            &mut |e| {
                                early.push(e.to_vec());
                                Ok(())
                            },
                        )?;
                    }
                    feed(g, gs, &chunk.bytes)?;
                    g.dirty = true;
                    let metrics = g.grouping.maintain()?;
                    if metrics != Metrics::default() {
                        self.job.add_metrics(&metrics)?;
                    }
                }
                Reader::RedisSink { step } => self.redis.buffer(step, &chunk.bytes)?,
                Reader::Flatten { step } => {
                    for k in 0..self.outputs[step].len() {
                        let out = self.outputs[step][k];
                        self.route(out, chunk.clone())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets the output watermark of `step` (and its slots), never moving
    /// it back.
    fn set_output_wm(&mut self, step: usize, wm: Watermark) {
        let wm = wm.max(self.out_wm[step]);
        if wm == END_OF_TIME && self.finished_at[step].is_none() {
            self.finished_at[step] = Some(self.started.elapsed());
        }
        self.out_wm[step] = wm;
        for k in 0..self.outputs[step].len() {
            let s = self.outputs[step][k];
            self.slot_wm[s] = self.slot_wm[s].max(wm);
        }
    }

    /// One pass over the steps in plan order: emit, group, dispatch
    /// bundles, and move watermarks.
    fn pass(&mut self, tasks: &Sender<Task>) -> Result<(), Error> {
        let pt = self.processing_time();
        for i in 0..self.ops.len() {
            let in_wm = self.input_wm(i);
            match &mut self.ops[i] {
                Op::Impulse { emitted } => {
                    if !*emitted {
                        *emitted = true;
                        let Step::Impulse(imp) = &self.job.plan.steps()[i] else {
                            return Err(internal("impulse op of a non-impulse step"));
                        };
                        let elem = impulse_element(self.job.plan, imp)?;
                        let mut w = self.job.writer(&imp.output)?;
                        w.emit(&elem)?;
                        w.commit()?;
                        self.collect(i)?;
                    }
                    self.set_output_wm(i, END_OF_TIME);
                }
                Op::Flatten => self.set_output_wm(i, in_wm),
                Op::Stage(_) => {
                    // Bundles are cut after the pass (`dispatch_by_age`):
                    // moving chunks from the queue to a bundle in flight
                    // leaves the hold below unchanged.
                    let Op::Stage(s) = &mut self.ops[i] else {
                        continue;
                    };
                    let now = Instant::now();
                    let mut k = 0;
                    while k < s.deferred.len() {
                        if s.deferred[k].due <= now {
                            let r = s.deferred.swap_remove(k);
                            s.queued_bytes += r.chunk.bytes.len();
                            // A residual's elements were ready when its
                            // bundle ran, and readiness only grows.
                            s.queue.push_back(Queued {
                                input: r.input,
                                chunk: r.chunk,
                                hold: r.hold,
                                since: now,
                                window_end: BEFORE_TIME,
                            });
                        } else {
                            k += 1;
                        }
                    }
                    let mut hold = s
                        .queue
                        .iter()
                        .map(|q| q.hold)
                        .chain(s.in_flight.iter().map(|(_, h)| *h))
                        .chain(s.deferred.iter().map(|r| r.hold))
                        .min()
                        .unwrap_or(END_OF_TIME);
                    for part in s.keyed.iter().flatten() {
                        let h = part
                            .queue
                            .iter()
                            .map(|q| q.hold)
                            .chain(part.busy)
                            .chain(part.timer_hold)
                            .min();
                        hold = hold.min(h.unwrap_or(END_OF_TIME));
                    }
                    self.set_output_wm(i, in_wm.min(hold));
                }
                Op::Group(g) => {
                    // New elements are stamped with the processing time of
                    // an advance: advance whenever they came, the watermark
                    // moved, or a processing-time trigger is due.
                    let timer_due = g.next_processing_time.is_some_and(|t| t <= pt);
                    if g.dirty || g.advanced_to != in_wm || timer_due || g.firing {
                        g.dirty = false;
                        g.advanced_to = in_wm;
                        g.clock = g.clock.max(pt);
                        let Step::GroupByKey(gs) = &self.job.plan.steps()[i] else {
                            return Err(internal("group op of a non-group step"));
                        };
                        let mut w = self.job.writer(&gs.output)?;
                        for e in g.early.drain(..) {
                            w.emit(&e)?;
                        }
                        g.firing = g.grouping.advance(
                            to_timestamp(in_wm),
                            Timestamp::from_millis(pt),
                            &mut |e| w.emit(e),
                        )?;
                        w.commit()?;
                        g.hold = g.grouping.watermark_hold();
                        g.next_processing_time =
                            g.grouping.next_processing_time().map(Timestamp::millis);
                        self.collect(i)?;
                    }
                    let Op::Group(g) = &self.ops[i] else {
                        continue;
                    };
                    let hold = g.hold.map_or(END_OF_TIME, Timestamp::millis);
                    self.set_output_wm(i, in_wm.min(hold));
                }
                Op::TestStream(t) => {
                    let wms: Vec<(String, Watermark)> = t.watermarks();
                    let Step::TestStream(ts) = &self.job.plan.steps()[i] else {
                        return Err(internal("test stream op of another step"));
                    };
                    let mut min = END_OF_TIME;
                    for (tag, wm) in wms {
                        min = min.min(wm);
                        if let Some(&s) = ts
                            .outputs
                            .get(&tag)
                            .and_then(|p| self.job.slot_index.get(p.as_str()))
                        {
                            self.slot_wm[s] = self.slot_wm[s].max(wm);
                        }
                    }
                    self.out_wm[i] = self.out_wm[i].max(min);
                    if min == END_OF_TIME && self.finished_at[i].is_none() {
                        self.finished_at[i] = Some(self.started.elapsed());
                    }
                }
                Op::Generate(g) => {
                    let wm = g.watermark();
                    self.set_output_wm(i, wm);
                }
                Op::Watch(w) => {
                    let wm = w.watermark();
                    self.set_output_wm(i, wm);
                }
                Op::Redis => self.redis_watermark(i, in_wm),
            }
        }
        self.dispatch_by_age(tasks)
    }

    /// Cuts bundles of every stage, the stage whose oldest queued chunk
    /// waited longest first. In plan order, a source-fed stage with new
    /// chunks every poll would take each idle worker before the stages
    /// after it, whose chunks (e.g. fired panes) then waited for
    /// [`MAX_BUNDLE_DELAY`].
    fn dispatch_by_age(&mut self, tasks: &Sender<Task>) -> Result<(), Error> {
        let mut order = std::mem::take(&mut self.dispatch_order);
        order.clear();
        for (i, op) in self.ops.iter().enumerate() {
            if let Op::Stage(s) = op {
                let oldest = s
                    .queue
                    .front()
                    .map(|q| q.since)
                    .into_iter()
                    .chain(
                        s.keyed
                            .iter()
                            .flatten()
                            .filter_map(|p| p.queue.front().map(|q| q.since)),
                    )
                    .min();
                order.push((oldest, i));
            }
        }
        // Oldest first; stages with nothing queued (due timers only) last.
        order.sort_unstable_by_key(|&(since, i)| (since.is_none(), since, i));
        let result = order.iter().try_for_each(|&(_, i)| self.dispatch(i, tasks));
        self.dispatch_order = order;
        result
    }

    /// The watermarks of stage `step`'s side inputs.
    fn side_watermarks(&self, step: usize) -> Vec<Watermark> {
        self.side_reads[step]
            .iter()
            .map(|reads| {
                reads
                    .iter()
                    .map(|&s| self.slot_wm[s])
                    .min()
                    .unwrap_or(END_OF_TIME)
            })
            .collect()
    }

    /// Whether queued chunk `q` of stage `step` may be processed: the
    /// stage's side inputs are ready for its windows (see [`SideRt`]). A
    /// stateful stage waits until they are complete, as its timers may fire
    /// in any window.
    fn side_ready(&self, step: usize, q: &Queued) -> bool {
        let Op::Stage(StageRt {
            side: Some(side),
            keyed,
            ..
        }) = &self.ops[step]
        else {
            return true;
        };
        let watermarks = self.side_watermarks(step);
        if keyed.is_some() {
            SideRt::complete(&watermarks)
        } else {
            side.ready(&watermarks, q.window_end)
        }
    }

    /// The latest window end of the elements of `chunk` (of slot `slot`),
    /// as main input of stage `step`: only needed while the stage has side
    /// inputs that are not complete.
    fn window_end(&self, step: usize, slot: usize, chunk: &Chunk) -> Watermark {
        let Op::Stage(StageRt { side: Some(_), .. }) = &self.ops[step] else {
            return BEFORE_TIME;
        };
        if SideRt::complete(&self.side_watermarks(step)) {
            return BEFORE_TIME;
        }
        match self.job.plan.pcollection(&self.job.slots[slot].id) {
            Some(pc) => latest_window_end(&chunk.bytes, &pc.coder, pc.windowing.window_coder),
            None => END_OF_TIME,
        }
    }

    /// Cuts stage `step`'s queue into bundles (see the module docs).
    fn dispatch(&mut self, step: usize, tasks: &Sender<Task>) -> Result<(), Error> {
        let target = self.job.options.bundle_bytes.max(1);
        let parallelism = self.job.options.parallelism.max(1);
        let synthetic = matches!(self.clock, Clock::Synthetic(_));
        let pt = self.processing_time();
        let in_wm = self.input_wm(step);
        let side_wms = self.side_watermarks(step);
        let Op::Stage(s) = &mut self.ops[step] else {
            return Ok(());
        };
        let side_ready = |q: &Queued, side: &Option<SideRt>| {
            side.as_ref()
                .is_none_or(|side| side.ready(&side_wms, q.window_end))
        };
        if let Some(side) = &mut s.side {
            // A stateful stage waits until its side inputs are complete.
            if s.keyed.is_some() && !SideRt::complete(&side_wms) {
                return Ok(());
            }
            // Bundles cut below see everything received so far.
            let Step::Stage(stage) = &self.job.plan.steps()[step] else {
                return Err(internal("stage op of a non-stage step"));
            };
            if side.changed
                && (s.keyed.is_some()
                    || s.queue
                        .front()
                        .is_some_and(|q| side.ready(&side_wms, q.window_end)))
            {
                side.changed = false;
                // Complete side inputs get no more elements: hand them over
                // instead of copying them.
                let data: Vec<Vec<u8>> = if SideRt::complete(&side_wms) {
                    let n = side.data.len();
                    std::mem::replace(&mut side.data, vec![Vec::new(); n])
                } else {
                    side.data.clone()
                };
                let data = stage
                    .side_inputs
                    .iter()
                    .zip(data)
                    .map(|(si, bytes)| ((si.transform.clone(), si.local_name.clone()), bytes))
                    .collect();
                self.job
                    .side_inputs
                    .lock()
                    .map_err(|_| internal("poisoned side inputs"))?
                    .insert(step, Arc::new(StageSideInputs { data }));
            }
        }
        if let Some(parts) = &mut s.keyed {
            for (p, part) in parts.iter_mut().enumerate() {
                if self.in_flight >= self.max_in_flight {
                    break;
                }
                if part.busy.is_some() {
                    continue;
                }
                let timers = part.timers_due(in_wm, pt);
                let ready = part.queue.front().is_some_and(|front| {
                    synthetic
                        || self.in_flight < parallelism
                        || part.queued_bytes >= target
                        || front.since.elapsed() >= MAX_BUNDLE_DELAY
                });
                if !ready && !timers {
                    continue;
                }
                let (inputs, bytes, hold) = take_bundle(&mut part.queue, target, |_| true);
                part.queued_bytes -= bytes;
                s.queued_bytes -= bytes;
                let hold = part.timer_hold.map_or(hold, |t| hold.min(t));
                part.busy = Some(hold);
                part.fired_at = in_wm;
                self.in_flight += 1;
                self.tasks[step] += 1;
                tasks
                    .send(Task::Bundle {
                        step,
                        inputs,
                        tag: p,
                        keyed: Some(KeyedRun {
                            state: part.state.clone(),
                            input_watermark: in_wm,
                            processing_time: pt,
                        }),
                        defer_residuals: false,
                    })
                    .map_err(|_| internal("worker pool is gone"))?;
            }
            return Ok(());
        }
        while self.in_flight < self.max_in_flight {
            let Some(front) = s.queue.front().filter(|q| side_ready(q, &s.side)) else {
                break;
            };
            let ready = synthetic
                || self.in_flight < parallelism
                || s.queued_bytes >= target
                || front.since.elapsed() >= MAX_BUNDLE_DELAY;
            if !ready {
                break;
            }
            let side = &s.side;
            let (inputs, bytes, hold) = take_bundle(&mut s.queue, target, |q| side_ready(q, side));
            s.queued_bytes -= bytes;
            let tag = s.next_tag;
            s.next_tag = s.next_tag.wrapping_add(1);
            s.in_flight.push((tag, hold));
            self.in_flight += 1;
            self.tasks[step] += 1;
            tasks
                .send(Task::Bundle {
                    step,
                    inputs,
                    tag,
                    keyed: None,
                    defer_residuals: true,
                })
                .map_err(|_| internal("worker pool is gone"))?;
        }
        Ok(())
    }

    /// Lets every generator emit what is due, unless stages are backed up.
    fn poll_generators(&mut self) -> Result<(), Error> {
        let queued: usize = self
            .ops
            .iter()
            .map(|o| match o {
                Op::Stage(s) => s.queued_bytes,
                _ => 0,
            })
            .sum();
        self.throttled = queued > MAX_QUEUED_BYTES;
        if self.throttled {
            return Ok(());
        }
        let now_ms = self.processing_time();
        for i in 0..self.ops.len() {
            let output = match &self.job.plan.steps()[i] {
                Step::Generate(gs) => &gs.output,
                Step::WatchFiles(ws) => &ws.output,
                _ => continue,
            };
            let mut w = self.job.writer(output)?;
            let emitted = match &mut self.ops[i] {
                Op::Generate(g) => g.emit_due(&mut |e| w.emit(e))?,
                Op::Watch(f) => f.poll(now_ms, &mut |e| w.emit(e))?,
                _ => return Err(internal("a source step with another op")),
            };
            w.commit()?;
            if emitted > 0 {
                self.collect(i)?;
            }
        }
        Ok(())
    }

    /// With the pipeline quiescent, applies the next event of each
    /// TestStream. Returns whether any was applied.
    fn next_test_stream_event(&mut self) -> Result<bool, Error> {
        let mut applied = false;
        for i in 0..self.ops.len() {
            let Op::TestStream(t) = &mut self.ops[i] else {
                continue;
            };
            let Step::TestStream(ts) = &self.job.plan.steps()[i] else {
                return Err(internal("test stream op of another step"));
            };
            let mut writers = HashMap::new();
            for (tag, p) in &ts.outputs {
                writers.insert(tag.clone(), self.job.writer(p)?);
            }
            let Some(advance) = t.apply_next(&mut |tag, e| match writers.get_mut(tag) {
                Some(w) => w.emit(e),
                None => Err(internal(format!("TestStream has no output {tag}"))),
            })?
            else {
                continue;
            };
            for (_, w) in writers {
                w.commit()?;
            }
            applied = true;
            if let Clock::Synthetic(now) = &mut self.clock {
                *now = now.saturating_add(advance);
            }
            self.collect(i)?;
        }
        Ok(applied)
    }

    fn reports(&self) -> Vec<StepReport> {
        let steps = self.job.plan.steps();
        let mut order: Vec<usize> = (0..steps.len()).collect();
        order.sort_by_key(|&i| self.finished_at[i].unwrap_or(Duration::MAX));
        order
            .into_iter()
            .map(|i| StepReport {
                step: steps[i].name(),
                elapsed: self.finished_at[i].unwrap_or_else(|| self.started.elapsed()),
                tasks: self.tasks[i],
                splits: 0,
            })
            .collect()
    }

    /// The groupings' system counters, per GroupByKey transform id:
    /// `dropped_late_elements` (late elements dropped) and
    /// `compacted_accumulators` (buffered accumulators merged away before
    /// their pane fired), where non-zero.
    fn grouping_counters(&self) -> Vec<(String, &'static str, u64)> {
        let mut counters = Vec::new();
        for (o, s) in self.ops.iter().zip(self.job.plan.steps()) {
            if let (Op::Group(g), Step::GroupByKey(gs)) = (o, s) {
                for (name, n) in [
                    ("dropped_late_elements", g.grouping.dropped_late()),
                    ("compacted_accumulators", g.grouping.compacted()),
                ] {
                    if n > 0 {
                        counters.push((gs.transform.clone(), name, n));
                    }
                }
            }
        }
        counters
    }
}

/// Takes queued chunks up to `target` bytes (at least one) and up to the
/// first that is not `ready`: the bundle's inputs, their bytes, and their
/// minimum hold.
fn take_bundle(
    queue: &mut VecDeque<Queued>,
    target: usize,
    ready: impl Fn(&Queued) -> bool,
) -> (BundleInputs, usize, Watermark) {
    let mut inputs: BundleInputs = Vec::new();
    let mut bytes = 0;
    let mut hold = END_OF_TIME;
    while let Some(q) = queue.front() {
        if !ready(q) || (!inputs.is_empty() && bytes + q.chunk.bytes.len() > target) {
            break;
        }
        let Some(q) = queue.pop_front() else { break };
        bytes += q.chunk.bytes.len();
        hold = hold.min(q.hold);
        inputs.push((q.input, q.chunk));
    }
    (inputs, bytes, hold)
}

/// Runs a bundle of a stateful stage on one key partition (on a worker):
/// its elements, then its timers due at the run's input watermark and
/// processing time (strictly before them, as Beam fires timers; all of them
/// once the watermark is +∞), then drops the state and timers of windows
/// that expired.
///
/// # Errors
/// As `stateful::run_keyed`; a poisoned partition.
pub(crate) fn run_keyed_bundle(
    state: &StageState,
    processor: &mut dyn oxbeam_fn_api::BundleProcessor,
    inputs: Vec<(&str, &[u8])>,
    sink: &mut dyn oxbeam_fn_api::OutputSink,
    side_inputs: &dyn oxbeam_fn_api::SideInputs,
    metrics: &mut oxbeam_fn_api::Metrics,
    run: &KeyedRun,
) -> oxbeam_fn_api::Result<()> {
    let mut guard = run
        .state
        .lock()
        .map_err(|_| oxbeam_fn_api::Error::Internal("poisoned key partition".into()))?;
    let st = &mut *guard;
    // Event-time timers fire once the input watermark is past them;
    // processing-time timers once the clock reaches them (Beam Python's
    // runners fire a TestStream's timer when processing time is advanced
    // exactly to it).
    let (wm, pt) = if run.input_watermark == END_OF_TIME {
        (i64::MAX, i64::MAX)
    } else {
        (run.input_watermark.saturating_sub(1), run.processing_time)
    };
    let mut keyed = crate::stateful::Keyed {
        store: &mut st.store,
        queue: &mut st.timers,
        input_watermark: wm,
        processing_time: pt,
    };
    crate::stateful::run_keyed(
        state,
        processor,
        inputs,
        sink,
        side_inputs,
        metrics,
        &mut keyed,
    )?;
    st.store.expire(
        run.input_watermark,
        state.allowed_lateness_ms,
        &state.window_coder,
    );
    st.timers.expire(
        run.input_watermark,
        state.allowed_lateness_ms,
        &state.window_coder,
    );
    Ok(())
}

fn group_rt(
    plan: &ExecutionPlan,
    g: &GroupByKeyStep,
    parts: GroupingParts,
) -> Result<GroupRt, Error> {
    let input = g
        .inputs
        .first()
        .and_then(|p| plan.pcollection(p))
        .ok_or_else(|| internal(format!("GroupByKey '{}' has no input", g.unique_name)))?;
    let window_coder = match g.windowing.window_coder {
        WindowCoderKind::Global => Coder::GlobalWindow,
        _ => Coder::IntervalWindow,
    };
    let mut grouping = Gabw::new(&g.windowing, parts.merger)?;
    if let (Some(processor), Some(spec)) = (parts.compactor, &g.compaction) {
        grouping = grouping.with_compactor(Compactor::new(
            &g.unique_name,
            spec.clone(),
            processor,
            input.coder.clone(),
            window_coder.clone(),
        ));
    }
    Ok(GroupRt {
        grouping: Box::new(grouping),
        key_value: input.coder.clone(),
        window_coder,
        dirty: false,
        advanced_to: BEFORE_TIME,
        clock: i64::MIN,
        early: Vec::new(),
        hold: None,
        next_processing_time: None,
        firing: false,
    })
}

/// Feeds every element of `bytes` (nested windowed `KV`s) to a grouping,
/// once per window.
fn feed(g: &mut GroupRt, step: &GroupByKeyStep, bytes: &[u8]) -> Result<(), Error> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::Execution(oxbeam_fn_api::Error::invalid(
            format!("input element of GroupByKey '{}'", step.unique_name),
            e,
        ))
    };
    let mut input = bytes;
    while !input.is_empty() {
        let h = WindowedHeader::parse(&input, &g.window_coder).map_err(|e| bad(&e))?;
        let mut rest = h.value;
        let (key, value) = g
            .key_value
            .split_kv(&mut rest, Context::Nested)
            .map_err(|e| bad(&e))?;
        let ts = Timestamp::from_millis(h.timestamp);
        let mut windows = h.windows;
        for _ in 0..h.window_count {
            let window = match g.window_coder {
                Coder::GlobalWindow => BoundedWindow::Global,
                _ => {
                    let (start, end) = read_interval_window(&mut windows).map_err(|e| bad(&e))?;
                    BoundedWindow::Interval {
                        start: Timestamp::from_millis(start),
                        end: Timestamp::from_millis(end),
                    }
                }
            };
            g.grouping.process(key, window, ts, value)?;
        }
        input = rest;
    }
    Ok(())
}

/// A watermark as a timestamp: +∞ is Beam's max timestamp.
fn to_timestamp(wm: Watermark) -> Timestamp {
    if wm >= Timestamp::MAX.millis() {
        Timestamp::MAX
    } else {
        Timestamp::from_millis(wm.max(Timestamp::MIN.millis()))
    }
}

/// A timestamp as a watermark: Beam's max timestamp and above is +∞.
pub(crate) fn to_watermark(ms: i64) -> Watermark {
    if ms >= Timestamp::MAX.millis() {
        END_OF_TIME
    } else {
        ms
    }
}

pub(crate) fn wall_clock_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
