//! Executes one plan: the watermark-driven scheduler (on the calling thread)
//! and the worker pool that runs bundles and shuffle emissions.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxbeam_fn_api::{
    Bundle, BundleProcessor, Executor, Executors, Harnesses, Metrics, NoSideInputs, OutputSink,
    Rebalancer, Residual, SideInputs,
};
use oxbeam_model::urns::beam_constants::constants;
use oxbeam_runner_core::coder::write_timestamp;
use oxbeam_runner_core::{Coder, ExecutionPlan, Stage, Step};

use crate::data::{Chunk, Slot, SlotWriter};
use crate::merge::SdkWindowMerger;
use crate::progress::Progress;
use crate::shuffle::{Shuffle, WindowMerger};
use crate::{Error, LocalOptions, PipelineResult, StepReport};

/// Event time as milliseconds; the end of input is `i64::MAX`.
pub(crate) type Watermark = i64;
pub(crate) const END_OF_TIME: Watermark = i64::MAX;
pub(crate) const BEFORE_TIME: Watermark = i64::MIN;

/// A bundle's input: `(stage input index, chunk)` pairs.
pub(crate) type BundleInputs = Vec<(usize, Arc<Chunk>)>;

/// Work for a worker thread.
pub(crate) enum Task {
    /// One bundle of a stage: `(stage input index, chunk)` pairs.
    Bundle {
        step: usize,
        inputs: Vec<(usize, Arc<Chunk>)>,
        /// Returned in [`Done::tag`] (the streaming engine's bundle or key
        /// partition; 0 in batch).
        tag: usize,
        /// Streaming: the key partition of a stateful stage to run on.
        keyed: Option<KeyedRun>,
        /// Streaming: hand work a splittable DoFn defers back in
        /// [`Done::residuals`] instead of resuming it within the bundle.
        defer_residuals: bool,
    },
    /// Emit one partition of a GroupByKey.
    Emit {
        step: usize,
        shuffle: usize,
        partition: usize,
    },
}

impl Task {
    fn step(&self) -> usize {
        match self {
            Task::Bundle { step, .. } | Task::Emit { step, .. } => *step,
        }
    }

    fn tag(&self) -> usize {
        match self {
            Task::Bundle { tag, .. } => *tag,
            Task::Emit { .. } => 0,
        }
    }
}

/// A streaming run of a stateful stage's bundle on one key partition: its
/// state and timers, and the time to fire timers at.
pub(crate) struct KeyedRun {
    pub state: Arc<Mutex<KeyedState>>,
    /// Event-time timers at or before this fire.
    pub input_watermark: i64,
    /// Processing-time timers at or before this fire.
    pub processing_time: i64,
}

/// User state and timers of one key partition of a stateful stage.
pub(crate) struct KeyedState {
    pub store: oxbeam_runner_core::state::StateStore,
    pub timers: oxbeam_runner_core::state::TimerQueue,
}

pub(crate) struct Done {
    pub step: usize,
    /// The task's tag.
    pub tag: usize,
    pub result: Result<(), Error>,
    /// Work the bundle's splittable DoFns deferred (see
    /// [`Task::Bundle::defer_residuals`]).
    pub residuals: Vec<Residual>,
}

/// Materialized side inputs of one stage: `(transform, local name)` →
/// concatenated elements.
pub(crate) struct StageSideInputs {
    pub data: HashMap<(String, String), Vec<u8>>,
}

impl SideInputs for StageSideInputs {
    fn side_input(&self, transform: &str, side_input: &str) -> oxbeam_fn_api::Result<&[u8]> {
        self.data
            .get(&(transform.to_string(), side_input.to_string()))
            .map(Vec::as_slice)
            .ok_or_else(|| {
                oxbeam_fn_api::Error::Internal(format!(
                    "transform {transform} has no side input {side_input}"
                ))
            })
    }
}

/// Everything workers share (both engines).
pub(crate) struct Job<'p> {
    pub plan: &'p ExecutionPlan,
    pub options: &'p LocalOptions,
    pub slots: Vec<Slot>,
    pub slot_index: HashMap<&'p str, usize>,
    shuffles: Vec<Shuffle>,
    /// Per step: its executor (stages only).
    executors: Vec<Option<StageExecutor>>,
    pub side_inputs: Mutex<HashMap<usize, Arc<StageSideInputs>>>,
    metrics: Mutex<Metrics>,
    /// Workers skip the tasks they receive once this is set.
    pub cancelled: AtomicBool,
    /// Set from outside (e.g. a job server's Cancel) to stop the job.
    pub cancel_request: Option<&'p AtomicBool>,
    /// SDK harnesses started for this job; dropping them stops them.
    pub harnesses: Option<Harnesses>,
    /// Dynamic work rebalancing (batch): worker threads waiting for a
    /// task, tasks queued and not yet taken, splits per step, and where
    /// split-off work goes (to the scheduler, which queues it).
    idle_workers: AtomicUsize,
    queued_tasks: AtomicUsize,
    splits: Vec<AtomicUsize>,
    split_tx: Mutex<Option<Sender<(usize, BundleInputs)>>>,
    /// Streaming: what GroupByKey steps need from executors, by step.
    grouping_parts: Mutex<HashMap<usize, GroupingParts>>,
}

/// What a streaming GroupByKey needs from executors.
#[derive(Default)]
pub(crate) struct GroupingParts {
    /// For a lifted combine: the processor merging its buffered
    /// accumulators (in-process executors only).
    pub compactor: Option<Box<dyn BundleProcessor>>,
    /// For a merging window fn of an SDK: the harness merging windows.
    pub merger: Option<Arc<dyn WindowMerger>>,
}

pub(crate) fn run(
    plan: &ExecutionPlan,
    executors: &Executors,
    options: &LocalOptions,
    cancel: Option<&AtomicBool>,
) -> Result<PipelineResult, Error> {
    let mut job = Job::new(plan, executors, options, Mode::Batch)?;
    job.cancel_request = cancel;
    let steps = job.schedule()?;
    job.finish(steps)
}

/// The encoded Impulse element: empty bytes at the min timestamp, in the
/// global window, pane `NO_FIRING`.
pub(crate) fn impulse_element(
    plan: &ExecutionPlan,
    imp: &oxbeam_runner_core::ImpulseStep,
) -> Result<Vec<u8>, Error> {
    let coder = plan.pcollection(&imp.output).map(|p| &p.coder);
    let empty_value: &[u8] = match coder {
        Some(Coder::Bytes | Coder::StringUtf8 | Coder::LengthPrefix(_)) => &[0],
        other => {
            return Err(Error::Plan(format!(
                "impulse '{}' outputs coder {other:?}; it must be a bytes coder",
                imp.unique_name
            )));
        }
    };
    let mut elem = Vec::with_capacity(16);
    let min: i64 = constants::MIN_TIMESTAMP_MILLIS
        .parse()
        .unwrap_or(i64::MIN / 1000);
    write_timestamp(&mut elem, min);
    elem.extend_from_slice(&1i32.to_be_bytes());
    elem.push(0x0F);
    elem.extend_from_slice(empty_value);
    Ok(elem)
}

/// Which engine a [`Job`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Stage at a time: GroupByKeys are shuffles fed as bundles commit.
    Batch,
    /// Continuous (`crate::streaming`): every PCollection keeps its chunks
    /// for the engine to route; GroupByKeys are run by the engine.
    Streaming,
}

impl<'p> Job<'p> {
    pub(crate) fn new(
        plan: &'p ExecutionPlan,
        executors: &Executors,
        options: &'p LocalOptions,
        mode: Mode,
    ) -> Result<Self, Error> {
        let mut slots = Vec::new();
        let mut slot_index: HashMap<&str, usize> = HashMap::new();
        for step in plan.steps() {
            for o in step.outputs() {
                slot_index.entry(o).or_insert_with(|| {
                    slots.push(Slot::new(o));
                    slots.len() - 1
                });
            }
        }
        let mut shuffles = Vec::new();
        let mut step_executors = Vec::new();
        let partitions = options.parallelism.max(1) * 4;
        let mut harnesses: Option<Harnesses> = None;
        let mut grouping_parts = HashMap::new();
        for step in plan.steps() {
            let mut executor = None;
            match step {
                Step::GroupByKey(g) if mode == Mode::Streaming => {
                    let mut parts = GroupingParts::default();
                    // Compaction runs on the engine's thread, between
                    // bundles: only with executors in this process.
                    if let Some(spec) = g.compaction.as_ref().filter(|_| options.compaction)
                        && let Some(e) =
                            executors.for_environment(&spec.environment_id, &spec.environment_urn)
                    {
                        match e.create_processor(spec.descriptor.clone()) {
                            Ok(p) => parts.compactor = Some(p),
                            Err(e) => tracing::debug!(
                                "GroupByKey '{}' will not compact accumulators: {e}",
                                g.unique_name
                            ),
                        }
                    }
                    parts.merger = window_merger(g, executors, &mut harnesses, options)?;
                    grouping_parts.insert(step_executors.len(), parts);
                }
                // Non-default triggers and accumulation modes go through
                // GroupAlsoByWindow inside the shuffle (shuffle.rs).
                Step::GroupByKey(g) => {
                    for r in &g.inputs {
                        if let Some(&i) = slot_index.get(r.as_str()) {
                            slots[i].shuffles.push(shuffles.len());
                        }
                    }
                    let mut shuffle = Shuffle::new(g, partitions, options.memory_budget_bytes);
                    if let Some(merger) = window_merger(g, executors, &mut harnesses, options)? {
                        shuffle = shuffle.with_merger(merger);
                    }
                    shuffles.push(shuffle);
                }
                Step::Flatten(_) | Step::Stage(_) => {
                    for r in step.reads() {
                        if let Some(&i) = slot_index.get(r) {
                            slots[i].buffered = true;
                        }
                    }
                    if let Step::Stage(s) = step {
                        let e = executor_of(
                            &s.environment_id,
                            &s.environment_urn,
                            &s.descriptor,
                            || format!("{} ({})", s.id, s.transform_names.join(", ")),
                            executors,
                            &mut harnesses,
                            options,
                        )?;
                        let on_harness = executors
                            .for_environment(&s.environment_id, &s.environment_urn)
                            .is_none();
                        // In process, bundles run on parallel threads; on
                        // harnesses, only if they are separate processes.
                        let splittable = !on_harness
                            || harnesses
                                .as_ref()
                                .is_some_and(|h| h.runs_separate_processes(&s.environment_id));
                        executor = Some(StageExecutor {
                            first: e,
                            harness_environment: on_harness.then(|| s.environment_id.clone()),
                            splittable,
                        });
                    }
                }
                Step::Impulse(_)
                | Step::TestStream(_)
                | Step::Generate(_)
                | Step::RedisRead(_)
                | Step::RedisWrite(_)
                | Step::WatchFiles(_) => {}
            }
            step_executors.push(executor);
        }
        if mode == Mode::Streaming {
            for s in &mut slots {
                s.buffered = true;
            }
        }
        Ok(Job {
            plan,
            options,
            slots,
            slot_index,
            shuffles,
            executors: step_executors,
            side_inputs: Mutex::new(HashMap::new()),
            metrics: Mutex::new(Metrics::default()),
            cancelled: AtomicBool::new(false),
            cancel_request: None,
            harnesses,
            idle_workers: AtomicUsize::new(0),
            queued_tasks: AtomicUsize::new(0),
            splits: plan.steps().iter().map(|_| AtomicUsize::new(0)).collect(),
            split_tx: Mutex::new(None),
            grouping_parts: Mutex::new(grouping_parts),
        })
    }

    /// What streaming GroupByKey step `step` needs from executors: its
    /// accumulator compactor (see [`oxbeam_runner_core::compaction`]) and
    /// window merger. Taken once.
    pub(crate) fn take_grouping_parts(&self, step: usize) -> GroupingParts {
        self.grouping_parts
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&step))
            .unwrap_or_default()
    }

    /// Adds runner-side metrics (merged like a bundle's).
    pub(crate) fn add_metrics(&self, m: &Metrics) -> Result<(), Error> {
        self.metrics
            .lock()
            .map_err(|_| Error::Internal("poisoned metrics".into()))?
            .merge(m);
        Ok(())
    }

    /// The job's result: merged metrics with element counts per PCollection.
    pub(crate) fn finish(self, steps: Vec<StepReport>) -> Result<PipelineResult, Error> {
        let mut metrics = self
            .metrics
            .into_inner()
            .map_err(|_| Error::Internal("poisoned metrics".into()))?;
        for slot in &self.slots {
            metrics
                .element_counts
                .insert(slot.id.clone(), slot.elements.load(Ordering::Relaxed));
        }
        let spilled_runs = self
            .shuffles
            .iter()
            .map(|s| s.spilled_runs.load(Ordering::Relaxed))
            .sum();
        let dynamic_splits = steps.iter().map(|s| s.splits as u64).sum();
        Ok(PipelineResult {
            metrics,
            steps,
            spilled_runs,
            dynamic_splits,
        })
    }

    pub(crate) fn slot(&self, pcoll: &str) -> Result<&Slot, Error> {
        self.slot_index
            .get(pcoll)
            .map(|&i| &self.slots[i])
            .ok_or_else(|| {
                Error::Internal(format!(
                    "PCollection {pcoll} is read but no step produces it"
                ))
            })
    }

    pub(crate) fn writer(&self, pcoll: &str) -> Result<SlotWriter<'_>, Error> {
        Ok(SlotWriter::new(
            self.slot(pcoll)?,
            &self.shuffles,
            self.options.bundle_bytes,
        ))
    }

    /// Runs every step; returns per-step reports.
    fn schedule(&self) -> Result<Vec<StepReport>, Error> {
        let steps = self.plan.steps();
        let n = steps.len();
        let producers_of = self.plan.producers();
        // Upstream steps of each step, and the reverse.
        let mut upstream: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, s) in steps.iter().enumerate() {
            for r in s.reads() {
                if let Some(&p) = producers_of.get(r) {
                    if !upstream[i].contains(&p) {
                        upstream[i].push(p);
                        downstream[p].push(i);
                    }
                }
            }
        }
        // A materialized PCollection is dropped once every step reading it
        // is done (Flattens and side inputs hold their chunks themselves):
        // a long pipeline holds its live PCollections, not all of them.
        let slots_read = |i: usize| {
            let mut read: Vec<usize> = steps[i]
                .reads()
                .into_iter()
                .filter_map(|r| self.slot_index.get(r).copied())
                .collect();
            read.sort_unstable();
            read.dedup();
            read
        };
        let readers_left: Vec<AtomicUsize> =
            self.slots.iter().map(|_| AtomicUsize::new(0)).collect();
        for i in 0..n {
            for k in slots_read(i) {
                readers_left[k].fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut output_watermark: Vec<Watermark> = vec![BEFORE_TIME; n];
        let input_watermark = |wm: &[Watermark], i: usize| {
            upstream[i]
                .iter()
                .map(|&u| wm[u])
                .min()
                .unwrap_or(END_OF_TIME)
        };
        let mut ready: VecDeque<usize> = (0..n).filter(|&i| upstream[i].is_empty()).collect();
        let mut outstanding = vec![0usize; n];
        let mut tasks_of = vec![0usize; n];
        let mut started_at: Vec<Option<Instant>> = vec![None; n];
        let mut reports = Vec::new();
        let mut completed = 0;
        let mut in_flight = 0usize;
        let mut failure: Option<Error> = None;
        let mut progress = Progress::new(self.options.progress, n);

        let (task_tx, task_rx) = mpsc::channel::<Task>();
        let task_rx = Mutex::new(task_rx);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let (split_tx, split_rx) = mpsc::channel::<(usize, BundleInputs)>();
        if self.options.split_stragglers_after.is_some() {
            *self
                .split_tx
                .lock()
                .map_err(|_| Error::Internal("poisoned".into()))? = Some(split_tx);
        }
        // Queues work split off running bundles (counted as queued by the
        // splitter) as further tasks of their steps.
        let take_splits = |task_tx: &Sender<Task>,
                           outstanding: &mut [usize],
                           tasks_of: &mut [usize],
                           in_flight: &mut usize| {
            while let Ok((step, inputs)) = split_rx.try_recv() {
                let task = Task::Bundle {
                    step,
                    inputs,
                    tag: 0,
                    keyed: None,
                    defer_residuals: false,
                };
                if task_tx.send(task).is_ok() {
                    outstanding[step] += 1;
                    tasks_of[step] += 1;
                    *in_flight += 1;
                }
            }
        };

        std::thread::scope(|scope| {
            for _ in 0..self.options.parallelism.max(1) {
                let done_tx = done_tx.clone();
                let task_rx = &task_rx;
                scope.spawn(move || self.worker(task_rx, done_tx));
            }
            drop(done_tx);
            let complete = |i: usize,
                            wm: &mut Vec<Watermark>,
                            ready: &mut VecDeque<usize>,
                            reports: &mut Vec<StepReport>,
                            tasks: usize,
                            started: Option<Instant>| {
                wm[i] = END_OF_TIME;
                for k in slots_read(i) {
                    if readers_left[k].fetch_sub(1, Ordering::Relaxed) == 1 {
                        self.slots[k].release();
                    }
                }
                let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
                tracing::debug!(
                    step = %steps[i].name(),
                    ms = elapsed.as_secs_f64() * 1e3,
                    bundles = tasks,
                    splits = self.splits[i].load(Ordering::Relaxed),
                    "step finished"
                );
                reports.push(StepReport {
                    step: steps[i].name(),
                    elapsed,
                    tasks,
                    splits: self.splits[i].load(Ordering::Relaxed),
                });
                for &d in &downstream[i] {
                    if wm[d] == BEFORE_TIME
                        && input_watermark(wm, d) == END_OF_TIME
                        && !ready.contains(&d)
                    {
                        ready.push_back(d);
                    }
                }
            };
            loop {
                if failure.is_none()
                    && self
                        .cancel_request
                        .is_some_and(|c| c.load(Ordering::Relaxed))
                {
                    failure = Some(Error::Cancelled);
                    self.cancelled.store(true, Ordering::Relaxed);
                    // Bundles running on SDK harnesses end now, not when
                    // their user code returns.
                    if let Some(h) = &self.harnesses {
                        h.cancel("the job was cancelled");
                    }
                }
                while failure.is_none() {
                    let Some(i) = ready.pop_front() else { break };
                    started_at[i] = Some(Instant::now());
                    match self.start(i, &task_tx) {
                        Ok(0) => {
                            completed += 1;
                            complete(
                                i,
                                &mut output_watermark,
                                &mut ready,
                                &mut reports,
                                0,
                                started_at[i],
                            );
                        }
                        Ok(k) => {
                            outstanding[i] = k;
                            tasks_of[i] = k;
                            in_flight += k;
                        }
                        Err(e) => {
                            failure = Some(e);
                            self.cancelled.store(true, Ordering::Relaxed);
                        }
                    }
                }
                if completed == n
                    || (failure.is_some() && in_flight == 0)
                    || (in_flight == 0 && ready.is_empty())
                {
                    break;
                }
                take_splits(&task_tx, &mut outstanding, &mut tasks_of, &mut in_flight);
                let wait = match self.options.split_stragglers_after {
                    Some(_) => Duration::from_millis(10),
                    None => Duration::from_millis(100),
                };
                match done_rx.recv_timeout(wait) {
                    Ok(Done { step, result, .. }) => {
                        // Work the bundle split off before it ended is
                        // outstanding before the bundle is done.
                        take_splits(&task_tx, &mut outstanding, &mut tasks_of, &mut in_flight);
                        in_flight -= 1;
                        outstanding[step] -= 1;
                        if let Err(e) = result {
                            if failure.is_none() {
                                failure = Some(e);
                            }
                            self.cancelled.store(true, Ordering::Relaxed);
                        } else if outstanding[step] == 0 && failure.is_none() {
                            completed += 1;
                            complete(
                                step,
                                &mut output_watermark,
                                &mut ready,
                                &mut reports,
                                tasks_of[step],
                                started_at[step],
                            );
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        failure.get_or_insert(Error::Internal("all workers exited".into()));
                        break;
                    }
                }
                if progress.enabled() {
                    let elements: u64 = self
                        .slots
                        .iter()
                        .map(|s| s.elements.load(Ordering::Relaxed))
                        .sum();
                    let running: Vec<String> = (0..n)
                        .filter(|&i| outstanding[i] > 0)
                        .map(|i| steps[i].name())
                        .collect();
                    progress.update(completed, elements, &running.join(", "));
                }
            }
            if let Ok(mut tx) = self.split_tx.lock() {
                tx.take();
            }
            drop(task_tx);
        });
        progress.finish();
        if let Some(e) = failure {
            return Err(e);
        }
        if completed != n {
            return Err(Error::Internal(format!(
                "{} of {n} steps never became ready",
                n - completed
            )));
        }
        Ok(reports)
    }

    /// Starts step `i`: runs it inline (Impulse, Flatten) or queues its
    /// tasks. Returns the number of tasks queued.
    fn start(&self, i: usize, tasks: &Sender<Task>) -> Result<usize, Error> {
        let send = |t: Task| {
            self.queued_tasks.fetch_add(1, Ordering::Relaxed);
            tasks
                .send(t)
                .map_err(|_| Error::Internal("worker pool is gone".into()))
        };
        match &self.plan.steps()[i] {
            Step::Impulse(imp) => {
                let elem = impulse_element(self.plan, imp)?;
                let mut w = self.writer(&imp.output)?;
                w.emit(&elem)?;
                w.commit()?;
                Ok(0)
            }
            Step::Flatten(f) => {
                let out = self.slot(&f.output)?;
                let mut union = Vec::new();
                let mut count = 0;
                for r in &f.inputs {
                    let s = self.slot(r)?;
                    union.extend(s.chunks());
                    count += s.elements.load(Ordering::Relaxed);
                }
                out.chunks
                    .lock()
                    .map_err(|_| Error::Internal("poisoned".into()))?
                    .extend(union);
                out.elements.fetch_add(count, Ordering::Relaxed);
                Ok(0)
            }
            Step::GroupByKey(_) => {
                let shuffle = self.shuffle_index(i);
                let parts = self.shuffles[shuffle].partitions();
                for p in 0..parts {
                    send(Task::Emit {
                        step: i,
                        shuffle,
                        partition: p,
                    })?;
                }
                Ok(parts)
            }
            Step::TestStream(_)
            | Step::Generate(_)
            | Step::RedisRead(_)
            | Step::RedisWrite(_)
            | Step::WatchFiles(_) => Err(Error::Internal(format!(
                "{} needs the streaming engine",
                self.plan.steps()[i].name()
            ))),
            Step::Stage(stage) => {
                if !stage.side_inputs.is_empty() {
                    let mut data = HashMap::new();
                    for si in &stage.side_inputs {
                        let mut bytes = Vec::new();
                        for r in &si.reads {
                            for c in self.slot(r)?.chunks() {
                                bytes.extend_from_slice(&c.bytes);
                            }
                        }
                        data.insert((si.transform.clone(), si.local_name.clone()), bytes);
                    }
                    self.side_inputs
                        .lock()
                        .map_err(|_| Error::Internal("poisoned".into()))?
                        .insert(i, Arc::new(StageSideInputs { data }));
                }
                let mut queued = 0;
                let parallel = self.executors[i].as_ref().is_none_or(|e| e.splittable);
                for bundle in self.bundles(stage, parallel)? {
                    send(Task::Bundle {
                        step: i,
                        inputs: bundle,
                        tag: 0,
                        keyed: None,
                        defer_residuals: false,
                    })?;
                    queued += 1;
                }
                Ok(queued)
            }
        }
    }

    fn shuffle_index(&self, step: usize) -> usize {
        self.plan.steps()[..step]
            .iter()
            .filter(|s| matches!(s, Step::GroupByKey(_)))
            .count()
    }

    /// Packs a stage's input chunks into bundles of about `bundle_bytes`,
    /// smaller when that leaves threads idle — if the stage's bundles run
    /// in parallel (`parallel`: in process, or on several harness
    /// processes); on one harness process (a Beam Python harness runs its
    /// bundles under one interpreter lock) more bundles only add per-bundle
    /// work. Sized restrictions of a splittable DoFn are dealt out by count
    /// (see [`restriction_bundles`]) when several SDK harnesses can take them
    /// (splittable DoFns come from Beam SDKs, so their stages run on
    /// harnesses): with one, more bundles only add per-bundle work (more
    /// precombined output, for one).
    fn bundles(&self, stage: &Stage, parallel: bool) -> Result<Vec<BundleInputs>, Error> {
        let mut all = Vec::new();
        let mut restrictions = Vec::new();
        let mut redistributed = false;
        let workers = self
            .options
            .parallelism
            .min(self.options.harness.workers_per_environment);
        for (idx, input) in stage.inputs.iter().enumerate() {
            redistributed |= input.redistributed;
            let sized = workers > 1 && reads_sized_restrictions(stage, &input.pcollection);
            for r in &input.reads {
                let chunks = self.slot(r)?.chunks().into_iter().map(|c| (idx, c));
                if sized {
                    restrictions.extend(chunks.map(|c| (r.as_str(), c)));
                } else {
                    all.extend(chunks.map(|c| (r.as_str(), c)));
                }
            }
        }
        if !restrictions.is_empty() && stage.state.is_none() {
            let mut bundles = restriction_bundles(self.plan, restrictions, workers)?;
            if !all.is_empty() {
                bundles.push(all.into_iter().map(|(_, c)| c).collect());
            }
            return Ok(bundles);
        }
        all.extend(restrictions);
        let ways = if parallel {
            self.options.parallelism.max(1)
        } else {
            1
        };
        // A Reshuffle's output in fewer chunks than ways (say a Create's few
        // elements whose processing is the work): cut at element boundaries
        // so that every worker gets a share, as Beam's Reshuffle spreads
        // elements over random keys.
        if redistributed && ways > 1 && stage.state.is_none() && all.len() < ways {
            if let Some(split) = split_into_elements(&all, ways, |p| readable_coders(self.plan, p))?
            {
                return Ok(split);
            }
        }
        let all: Vec<(usize, Arc<Chunk>)> = all.into_iter().map(|(_, c)| c).collect();
        if let Some(state) = &stage.state {
            // One task per key partition: a key is never in two bundles at once.
            let parts = self.options.parallelism.max(1) * 4;
            return crate::stateful::partition(state, all, parts);
        }
        let total: usize = all.iter().map(|(_, c)| c.bytes.len()).sum();
        let target = self.options.bundle_bytes.min(total / ways).max(1);
        let mut bundles = Vec::new();
        let mut current: BundleInputs = Vec::new();
        let mut bytes = 0;
        for (idx, c) in all {
            if c.bytes.is_empty() {
                continue;
            }
            bytes += c.bytes.len();
            current.push((idx, c));
            if bytes >= target {
                bundles.push(std::mem::take(&mut current));
                bytes = 0;
            }
        }
        if !current.is_empty() {
            bundles.push(current);
        }
        Ok(bundles)
    }

    /// A worker thread's loop: runs tasks until the channel closes, with
    /// one `BundleProcessor` per stage reused across bundles.
    pub(crate) fn worker(&self, tasks: &Mutex<Receiver<Task>>, done: Sender<Done>) {
        let mut processors: Processors = BTreeMap::new();
        loop {
            self.idle_workers.fetch_add(1, Ordering::Relaxed);
            let task = match tasks.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => break,
            };
            self.idle_workers.fetch_sub(1, Ordering::Relaxed);
            let _ = self
                .queued_tasks
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| q.checked_sub(1));
            let Ok(task) = task else { break };
            let (step, tag) = (task.step(), task.tag());
            let mut residuals = Vec::new();
            let result = if self.cancelled.load(Ordering::Relaxed) {
                Ok(())
            } else {
                catch_unwind(AssertUnwindSafe(|| {
                    self.run_task(task, &mut processors, &mut residuals)
                }))
                .unwrap_or_else(|panic| {
                    Err(Error::Internal(format!(
                        "panic in runner worker: {}",
                        panic_message(&panic)
                    )))
                })
            };
            let done_msg = Done {
                step,
                tag,
                result,
                residuals,
            };
            if done.send(done_msg).is_err() {
                break;
            }
        }
        for (_, (_, mut p)) in processors {
            let _ = catch_unwind(AssertUnwindSafe(|| p.teardown()));
        }
    }

    fn run_task(
        &self,
        task: Task,
        processors: &mut Processors,
        residuals: &mut Vec<Residual>,
    ) -> Result<(), Error> {
        match task {
            Task::Emit {
                step,
                shuffle,
                partition,
            } => {
                let Step::GroupByKey(g) = &self.plan.steps()[step] else {
                    return Err(Error::Internal(
                        "emit task for a non-GroupByKey step".into(),
                    ));
                };
                let mut out = self.writer(&g.output)?;
                self.shuffles[shuffle].emit_partition(partition, &mut out)?;
                out.commit()
            }
            Task::Bundle {
                step,
                inputs,
                keyed,
                defer_residuals,
                ..
            } => {
                let Step::Stage(stage) = &self.plan.steps()[step] else {
                    return Err(Error::Internal("bundle task for a non-stage step".into()));
                };
                let residuals = defer_residuals.then_some(residuals);
                self.run_bundle_with_retries(
                    step,
                    stage,
                    &inputs,
                    keyed.as_ref(),
                    processors,
                    residuals,
                )
            }
        }
    }

    /// The executor stage `step` runs on now: its registered one, or the
    /// current harnesses of its environment (replaced when one dies).
    fn current_executor(&self, step: usize, stage: &Stage) -> Result<Arc<dyn Executor>, Error> {
        let e = self.executors[step]
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("stage {} has no executor", stage.id)))?;
        Ok(e.harness_environment
            .as_deref()
            .zip(self.harnesses.as_ref())
            .and_then(|(env, h)| h.current(env))
            .unwrap_or_else(|| e.first.clone()))
    }

    /// Runs one bundle; if its SDK harness dies or disconnects
    /// ([`oxbeam_fn_api::Error::Harness`]), retries it on fresh harnesses up
    /// to `HarnessOptions::max_bundle_attempts` times in all. Each attempt
    /// writes to its own uncommitted writers, so a failed attempt's output
    /// is dropped: nothing is lost or duplicated. User-code errors, and
    /// bundles of streaming key partitions (whose state the attempt has
    /// already changed), are not retried.
    fn run_bundle_with_retries(
        &self,
        step: usize,
        stage: &Stage,
        inputs: &BundleInputs,
        keyed: Option<&KeyedRun>,
        processors: &mut Processors,
        mut residuals: Option<&mut Vec<Residual>>,
    ) -> Result<(), Error> {
        let restartable = self.executors[step]
            .as_ref()
            .and_then(|e| e.harness_environment.as_deref())
            .zip(self.harnesses.as_ref())
            .filter(|_| keyed.is_none());
        let attempts = restartable.map_or(1, |(_, h)| h.max_bundle_attempts());
        let splittable = self.executors[step].as_ref().is_some_and(|e| e.splittable);
        let rebalancer = self
            .options
            .split_stragglers_after
            .filter(|_| splittable && keyed.is_none() && residuals.is_none())
            .filter(|_| stage.state.is_none())
            .map(|after| StageRebalancer {
                job: self,
                step,
                stage,
                after,
                kept: Mutex::new(None),
                failed: Mutex::new(None),
            });
        // What the bundle still covers: less than `inputs` once it split.
        let mut inputs = std::borrow::Cow::Borrowed(inputs);
        let mut attempt = 1;
        loop {
            let executor = self.current_executor(step, stage)?;
            // A processor of replaced harnesses would only fail again.
            if processors
                .get(&step)
                .is_some_and(|(made_by, _)| !Arc::ptr_eq(made_by, &executor))
            {
                processors.remove(&step);
            }
            if let Some(r) = residuals.as_deref_mut() {
                r.clear(); // a failed attempt's residuals go with its output
            }
            let hooks = BundleHooks {
                residuals: residuals.as_deref_mut(),
                rebalancer: rebalancer.as_ref().map(|r| r as &dyn Rebalancer),
            };
            let result = self.run_bundle(step, &inputs, keyed, processors, &executor, hooks);
            if let Some(e) = rebalancer.as_ref().and_then(StageRebalancer::failure) {
                return Err(e);
            }
            let Err(Error::Execution(oxbeam_fn_api::Error::Harness { worker, message })) = result
            else {
                return result;
            };
            let Some((environment, harnesses)) = restartable
                .filter(|_| attempt < attempts && !self.cancelled.load(Ordering::Relaxed))
            else {
                let message = if attempt > 1 {
                    format!("{message} (the bundle failed on harnesses {attempt} times)")
                } else {
                    message
                };
                return Err(Error::Execution(oxbeam_fn_api::Error::Harness {
                    worker,
                    message,
                }));
            };
            processors.remove(&step);
            harnesses.restart(environment, &executor)?;
            if let Some(kept) = rebalancer.as_ref().and_then(StageRebalancer::take_kept) {
                inputs = std::borrow::Cow::Owned(kept);
            }
            attempt += 1;
        }
    }

    /// One attempt at a bundle on `executor`: outputs are committed only
    /// if it succeeds.
    fn run_bundle(
        &self,
        step: usize,
        inputs: &BundleInputs,
        keyed: Option<&KeyedRun>,
        processors: &mut Processors,
        executor: &Arc<dyn Executor>,
        hooks: BundleHooks<'_>,
    ) -> Result<(), Error> {
        let Step::Stage(stage) = &self.plan.steps()[step] else {
            return Err(Error::Internal("bundle of a non-stage step".into()));
        };
        let (_, processor) = match processors.entry(step) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert((
                executor.clone(),
                executor.create_processor(stage.descriptor.clone())?,
            )),
        };
        let side: Option<Arc<StageSideInputs>> = self
            .side_inputs
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?
            .get(&step)
            .cloned();
        let mut sink = BundleSink {
            writers: Vec::with_capacity(stage.outputs.len()),
            last: 0,
            error: None,
        };
        for o in &stage.outputs {
            sink.writers
                .push((o.sink_transform.as_str(), self.writer(&o.pcollection)?));
        }
        let bundle_inputs: Vec<(&str, &[u8])> = inputs
            .iter()
            .map(|(idx, c)| {
                (
                    stage.inputs[*idx].source_transform.as_str(),
                    c.bytes.as_slice(),
                )
            })
            .collect();
        let mut metrics = Metrics::default();
        let started = Instant::now();
        let result = {
            let side: &dyn SideInputs = match &side {
                Some(s) => s.as_ref(),
                None => &NoSideInputs,
            };
            catch_unwind(AssertUnwindSafe(|| match (&stage.state, keyed) {
                (Some(state), Some(run)) => crate::streaming::run_keyed_bundle(
                    state,
                    &mut **processor,
                    bundle_inputs,
                    &mut sink,
                    side,
                    &mut metrics,
                    run,
                ),
                (Some(state), None) => crate::stateful::run_partition(
                    state,
                    &mut **processor,
                    bundle_inputs,
                    &mut sink,
                    side,
                    &mut metrics,
                ),
                (None, _) => {
                    let mut bundle = Bundle::new(bundle_inputs, &mut sink, side, &mut metrics);
                    bundle.residuals = hooks.residuals;
                    bundle.rebalancer = hooks.rebalancer;
                    processor.process_bundle(&mut bundle)
                }
            }))
            .unwrap_or_else(|p| {
                Err(oxbeam_fn_api::Error::Internal(format!(
                    "executor panicked in stage {}: {}",
                    stage.id,
                    panic_message(&p)
                )))
            })
        };
        if let Some(e) = sink.error {
            return Err(e);
        }
        result?;
        for (_, w) in sink.writers {
            w.commit()?;
        }
        tracing::debug!(
            stage = %stage.id,
            ms = started.elapsed().as_secs_f64() * 1e3,
            input_bytes = inputs.iter().map(|(_, c)| c.bytes.len()).sum::<usize>(),
            "bundle finished"
        );
        self.metrics
            .lock()
            .map_err(|_| Error::Internal("poisoned metrics".into()))?
            .merge(&metrics);
        Ok(())
    }
}

/// Where a bundle's deferred residuals go (streaming) and who may split it
/// (batch); see [`Bundle::residuals`] and [`Bundle::rebalancer`].
struct BundleHooks<'a> {
    residuals: Option<&'a mut Vec<Residual>>,
    rebalancer: Option<&'a dyn Rebalancer>,
}

/// Dynamic work rebalancing of one bundle: splits it when it has run for
/// `after` while a worker thread idles with nothing queued, and queues what
/// it gives away as a new bundle of the stage.
struct StageRebalancer<'j, 'p> {
    job: &'j Job<'p>,
    step: usize,
    stage: &'j Stage,
    after: Duration,
    /// What the bundle still covers after its latest split.
    kept: Mutex<Option<BundleInputs>>,
    /// Work split off that could not be queued: the bundle fails with it.
    failed: Mutex<Option<String>>,
}

impl StageRebalancer<'_, '_> {
    /// Encoded elements per data source as a bundle's inputs.
    fn bundle_inputs(&self, work: Vec<(String, Vec<u8>)>) -> Option<BundleInputs> {
        work.into_iter()
            .map(|(source, bytes)| {
                let idx = self
                    .stage
                    .inputs
                    .iter()
                    .position(|i| i.source_transform == source)?;
                Some((idx, Arc::new(Chunk { bytes })))
            })
            .collect()
    }

    fn take_kept(&self) -> Option<BundleInputs> {
        self.kept.lock().ok()?.take()
    }

    fn fail(&self, message: &str) {
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert_with(|| format!("stage {}: {message}", self.stage.id));
        }
    }

    /// The error the bundle fails with if split-off work was lost.
    fn failure(&self) -> Option<Error> {
        self.failed.lock().ok()?.take().map(Error::Internal)
    }
}

impl Rebalancer for StageRebalancer<'_, '_> {
    fn split_fraction(&self, elapsed: Duration) -> Option<f64> {
        let idle = self.job.idle_workers.load(Ordering::Relaxed);
        let queued = self.job.queued_tasks.load(Ordering::Relaxed);
        // Half the remainder: the idle worker and this one then finish
        // together, and either splits again if others idle.
        (elapsed >= self.after && idle > queued && !self.job.cancelled.load(Ordering::Relaxed))
            .then_some(0.5)
    }

    fn hand_off(&self, work: Vec<(String, Vec<u8>)>, kept: Vec<(String, Vec<u8>)>) {
        let (Some(work), Some(kept)) = (self.bundle_inputs(work), self.bundle_inputs(kept)) else {
            // Executors split only their stage's sources.
            self.fail("split off work for a data source the stage does not have");
            return;
        };
        if let Ok(mut k) = self.kept.lock() {
            *k = Some(kept);
        }
        let tx = self.job.split_tx.lock().ok().and_then(|t| t.clone());
        self.job.queued_tasks.fetch_add(1, Ordering::Relaxed);
        self.job.splits[self.step].fetch_add(1, Ordering::Relaxed);
        if tx.is_none_or(|tx| tx.send((self.step, work)).is_err()) {
            self.fail("split off work after the job's scheduler stopped");
        }
    }
}

/// A worker thread's processors per stage, with the executor that made each.
type Processors = BTreeMap<usize, (Arc<dyn Executor>, Box<dyn BundleProcessor>)>;

/// The executor of a stage.
struct StageExecutor {
    /// The executor found when the job started.
    first: Arc<dyn Executor>,
    /// The stage's environment when the job's [`Harnesses`] run it: its
    /// harnesses can be restarted, so the current executor is looked up
    /// there.
    harness_environment: Option<String>,
    /// Whether its straggling bundles are split for idle workers (dynamic
    /// work rebalancing): where work split off runs in parallel.
    splittable: bool,
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Routes a bundle's outputs to the writers of its sink transforms.
struct BundleSink<'a> {
    writers: Vec<(&'a str, SlotWriter<'a>)>,
    last: usize,
    /// The first runner-side failure (e.g. an element a shuffle cannot read).
    error: Option<Error>,
}

impl OutputSink for BundleSink<'_> {
    #[inline]
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> oxbeam_fn_api::Result<()> {
        let i = if self
            .writers
            .get(self.last)
            .is_some_and(|(id, _)| *id == sink_transform)
        {
            self.last
        } else {
            match self
                .writers
                .iter()
                .position(|(id, _)| *id == sink_transform)
            {
                Some(i) => {
                    self.last = i;
                    i
                }
                None => {
                    return Err(oxbeam_fn_api::Error::Internal(format!(
                        "emit to unknown data sink {sink_transform}"
                    )));
                }
            }
        };
        match self.writers[i].1.emit(element) {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = e.to_string();
                self.error.get_or_insert(e);
                Err(oxbeam_fn_api::Error::Internal(message))
            }
        }
    }
}

/// Most bundles a splittable DoFn's restrictions are spread over; past it,
/// consecutive restrictions share a bundle.
const MAX_RESTRICTION_BUNDLES: usize = 1024;

/// `chunks` (`(materialized PCollection, (stage input index, chunk))`)
/// cut at element boundaries into up to `ways` bundles of consecutive
/// elements, about equal in bytes and in order; `None` when there are fewer
/// than two elements or `coders_of` does not give a PCollection's element
/// and window coders.
///
/// # Errors
/// If a chunk does not hold whole windowed values of its PCollection's coder.
fn split_into_elements(
    chunks: &[(&str, (usize, Arc<Chunk>))],
    ways: usize,
    coders_of: impl Fn(&str) -> Option<(Coder, Coder)>,
) -> Result<Option<Vec<BundleInputs>>, Error> {
    // Per element: stage input index, chunk, its bytes in the chunk.
    let mut elements: Vec<(usize, &Arc<Chunk>, std::ops::Range<usize>)> = Vec::new();
    for (pcollection, (idx, chunk)) in chunks {
        let Some((coder, window_coder)) = coders_of(pcollection) else {
            return Ok(None);
        };
        let what = format!("element of PCollection {pcollection}");
        for (range, _) in element_ranges(&chunk.bytes, &coder, &window_coder, &what)? {
            elements.push((*idx, chunk, range));
        }
    }
    if elements.len() < 2 {
        return Ok(None);
    }
    let total: usize = elements.iter().map(|(_, _, r)| r.len()).sum();
    let mut bundles: Vec<BundleInputs> = Vec::new();
    let mut current: BundleInputs = Vec::new();
    // The open piece: (stage input index, chunk, byte range) of adjacent
    // elements of one chunk, copied out when it ends.
    let mut piece: Option<(usize, &Arc<Chunk>, std::ops::Range<usize>)> = None;
    // Bytes of the elements before the current one.
    let mut seen = 0;
    let close = |piece: (usize, &Arc<Chunk>, std::ops::Range<usize>)| {
        let (idx, chunk, range) = piece;
        let c = if range.len() == chunk.bytes.len() {
            chunk.clone()
        } else {
            Arc::new(Chunk {
                bytes: chunk.bytes[range].to_vec(),
            })
        };
        (idx, c)
    };
    for (idx, chunk, range) in elements {
        // Bundle k ends at the element boundary nearest to k/ways of the
        // bytes: equal elements whose encodings differ by a byte or two
        // still split evenly.
        let boundary = total * (bundles.len() + 1) / ways;
        if piece.is_some() && bundles.len() + 1 < ways && seen + range.len() / 2 >= boundary {
            current.extend(piece.take().map(close));
            bundles.push(std::mem::take(&mut current));
        }
        seen += range.len();
        piece = match piece {
            Some((i, c, r)) if i == idx && Arc::ptr_eq(c, chunk) && r.end == range.start => {
                Some((i, c, r.start..range.end))
            }
            Some(open) => {
                current.push(close(open));
                Some((idx, chunk, range))
            }
            None => Some((idx, chunk, range)),
        };
    }
    current.extend(piece.map(close));
    if !current.is_empty() {
        bundles.push(current);
    }
    Ok(Some(bundles))
}

/// Whether `pcollection`, an input of `stage`, holds a splittable DoFn's
/// sized restrictions: the stage's
/// `beam:transform:sdf_process_sized_element_and_restrictions:v1` reads it.
fn reads_sized_restrictions(stage: &Stage, pcollection: &str) -> bool {
    use oxbeam_model::urns::standard_p_transforms::splittable_par_do_components as sdf;
    stage.descriptor.transforms.values().any(|t| {
        t.spec
            .as_ref()
            .is_some_and(|s| s.urn == sdf::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS)
            && t.inputs.values().any(|p| p == pcollection)
    })
}

/// Bundles of sized restrictions (`(materialized PCollection, (stage input
/// index, chunk))`) for `workers` workers: a splittable DoFn's work is in
/// its restrictions, however few bytes they take, so restrictions, not
/// bytes, are what bundles share out.
///
/// - With at least two restrictions per worker, each worker gets one
///   bundle of as many restrictions, dealt largest first so that the
///   bundles' sizes come out even, and the restrictions left over go one
///   per bundle after them (the last to start, and the ones dynamic
///   splitting shares with a worker that ran out of work). Few big bundles
///   rather than one per restriction: every bundle costs an SDK harness
///   fixed work (Beam Python's flushes its precombine tables and waits for
///   its state sampler's thread, up to 200 ms, at the end of each), which
///   cost Beam's wordcount on two harnesses a quarter of its time.
/// - Otherwise one restriction per bundle, up to
///   [`MAX_RESTRICTION_BUNDLES`] bundles (past it, consecutive restrictions
///   share one).
///
/// Chunks whose windows the runner cannot read stay whole.
///
/// # Errors
/// If a chunk does not hold whole windowed values of its PCollection's coder.
fn restriction_bundles(
    plan: &ExecutionPlan,
    chunks: Vec<(&str, (usize, Arc<Chunk>))>,
    workers: usize,
) -> Result<Vec<BundleInputs>, Error> {
    split_restrictions(chunks, workers, |pcollection| {
        readable_coders(plan, pcollection)
    })
}

/// A materialized PCollection's value and window coders, when the runner
/// can read its windows.
fn readable_coders(plan: &ExecutionPlan, pcollection: &str) -> Option<(Coder, Coder)> {
    use oxbeam_runner_core::WindowCoderKind;
    let p = plan.pcollection(pcollection)?;
    let window_coder = match p.windowing.window_coder {
        WindowCoderKind::Global => Coder::GlobalWindow,
        WindowCoderKind::Interval => Coder::IntervalWindow,
        WindowCoderKind::Other => return None,
    };
    Some((p.coder.clone(), window_coder))
}

/// The windowed values of `bytes` (a chunk of `coder` values in windows of
/// `window_coder`): each one's byte range, and where its value starts.
///
/// # Errors
/// If the bytes are not whole windowed values; `what` names them.
fn element_ranges(
    bytes: &[u8],
    coder: &Coder,
    window_coder: &Coder,
    what: &str,
) -> Result<Vec<(std::ops::Range<usize>, usize)>, Error> {
    use oxbeam_runner_core::WindowedHeader;
    use oxbeam_runner_core::coder::Context;
    let bad = |e: String| Error::Execution(oxbeam_fn_api::Error::invalid(what, e));
    let mut out = Vec::new();
    let mut rest: &[u8] = bytes;
    while !rest.is_empty() {
        let start = bytes.len() - rest.len();
        let mut value = WindowedHeader::parse(&rest, window_coder)
            .map_err(|e| bad(e.0))?
            .value;
        let value_start = bytes.len() - value.len();
        coder
            .skip(&mut value, Context::Nested)
            .map_err(|e| bad(e.to_string()))?;
        rest = value;
        out.push((start..bytes.len() - rest.len(), value_start));
    }
    Ok(out)
}

/// [`restriction_bundles`] with `coders(pcollection)` giving a
/// PCollection's value and window coders (`None`: not readable here).
fn split_restrictions(
    chunks: Vec<(&str, (usize, Arc<Chunk>))>,
    workers: usize,
    coders: impl Fn(&str) -> Option<(Coder, Coder)>,
) -> Result<Vec<BundleInputs>, Error> {
    // Per restriction: stage input index, chunk, its bytes in the chunk,
    // its size.
    let mut elements: Vec<(usize, Arc<Chunk>, std::ops::Range<usize>, f64)> = Vec::new();
    let mut whole: Vec<BundleInputs> = Vec::new();
    for (pcollection, (idx, chunk)) in chunks {
        let Some((coder, window_coder)) = coders(pcollection) else {
            whole.push(vec![(idx, chunk)]);
            continue;
        };
        let what = format!("sized restriction of PCollection {pcollection}");
        for (range, value_start) in element_ranges(&chunk.bytes, &coder, &window_coder, &what)? {
            let size = restriction_size(&coder, &chunk.bytes[value_start..range.end]);
            elements.push((idx, chunk.clone(), range, size));
        }
    }
    // Largest first (a stable sort: equal sizes keep their order): the
    // last restrictions to start are then the small ones, or, when all are
    // alike, a long one that dynamic splitting can share with a worker that
    // ran out of work, not a short tail that leaves the others idle.
    elements.sort_by(|a, b| b.3.total_cmp(&a.3));
    // A chunk that is one restriction is shared, not copied.
    let restriction =
        |(idx, chunk, range, _): &(usize, Arc<Chunk>, std::ops::Range<usize>, f64)| {
            let c = if range.len() == chunk.bytes.len() {
                chunk.clone()
            } else {
                Arc::new(Chunk {
                    bytes: chunk.bytes[range.clone()].to_vec(),
                })
            };
            (*idx, c)
        };
    let mut bundles = whole;
    let workers = workers.max(1);
    let per_worker = elements.len() / workers;
    if per_worker >= 2 {
        // Dealt in snake order (0, 1, .., w-1, w-1, .., 0, 0, ..): with the
        // largest first, every bundle's total comes out about the same.
        let dealt = workers * per_worker;
        let mut shares: Vec<BundleInputs> = vec![Vec::with_capacity(per_worker); workers];
        for (i, e) in elements[..dealt].iter().enumerate() {
            let (round, pos) = (i / workers, i % workers);
            let w = if round % 2 == 0 {
                pos
            } else {
                workers - 1 - pos
            };
            shares[w].push(restriction(e));
        }
        bundles.extend(shares);
        bundles.extend(elements[dealt..].iter().map(|e| vec![restriction(e)]));
        return Ok(bundles);
    }
    let per_bundle = elements.len().div_ceil(MAX_RESTRICTION_BUNDLES).max(1);
    for group in elements.chunks(per_bundle) {
        bundles.push(group.iter().map(restriction).collect());
    }
    Ok(bundles)
}

/// The size a sized restriction (`KV<KV<element, restriction>, size>`,
/// the size a big-endian double, `value` its nested encoding) declares; 0
/// for a coder of another shape or bytes that do not decode.
fn restriction_size(coder: &Coder, value: &[u8]) -> f64 {
    use oxbeam_runner_core::coder::Context;
    let Coder::Kv { key, value: size } = coder else {
        return 0.0;
    };
    if !matches!(**size, Coder::Double) {
        return 0.0;
    }
    let mut rest = value;
    if key.skip(&mut rest, Context::Nested).is_err() {
        return 0.0;
    }
    match <[u8; 8]>::try_from(rest) {
        Ok(b) => f64::from_be_bytes(b).max(0.0),
        Err(_) => 0.0,
    }
}

/// The executor of environment `env_id` (URN `env_urn`): a registered
/// one, else an SDK harness over the gRPC Fn API (started on first use);
/// `what` names the work needing it, for the error when there is none.
/// The SDK harness merging the windows of GroupByKey `g`, if its merging
/// window fn is one the runner does not know.
fn window_merger(
    g: &oxbeam_runner_core::GroupByKeyStep,
    executors: &Executors,
    harnesses: &mut Option<Harnesses>,
    options: &LocalOptions,
) -> Result<Option<Arc<dyn WindowMerger>>, Error> {
    let Some(spec) = &g.merge_windows else {
        return Ok(None);
    };
    let e = executor_of(
        &spec.environment_id,
        &spec.environment_urn,
        &spec.descriptor,
        || format!("window merging of GroupByKey '{}'", g.unique_name),
        executors,
        harnesses,
        options,
    )?;
    Ok(Some(Arc::new(SdkWindowMerger::new(
        &g.unique_name,
        spec,
        &e,
    )?)))
}

fn executor_of(
    env_id: &str,
    env_urn: &str,
    descriptor: &oxbeam_model::fn_execution::ProcessBundleDescriptor,
    what: impl FnOnce() -> String,
    executors: &Executors,
    harnesses: &mut Option<Harnesses>,
    options: &LocalOptions,
) -> Result<Arc<dyn Executor>, Error> {
    if let Some(e) = executors.for_environment(env_id, env_urn) {
        return Ok(e.clone());
    }
    if !Harnesses::handles(env_urn) {
        let available: Vec<&str> = executors.env_urns().collect();
        return Err(Error::MissingExecutor {
            stage: what(),
            environment_urn: env_urn.to_string(),
            available: if available.is_empty() {
                "(none)".to_string()
            } else {
                available.join(", ")
            },
        });
    }
    let h = match harnesses {
        Some(h) => h,
        None => harnesses.insert(Harnesses::start(options.harness.clone())?),
    };
    Ok(h.executor_for_descriptor(descriptor, env_id)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A windowed value in the global window holding `value` (bytes coder).
    fn element(value: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        write_timestamp(&mut e, 0);
        e.extend_from_slice(&1i32.to_be_bytes());
        e.push(0x0F);
        e.push(value.len() as u8);
        e.extend_from_slice(value);
        e
    }

    fn chunk(values: &[&[u8]]) -> Arc<Chunk> {
        Arc::new(Chunk {
            bytes: values.iter().flat_map(|v| element(v)).collect(),
        })
    }

    fn coders(p: &str) -> Option<(Coder, Coder)> {
        (p == "sized").then_some((Coder::Bytes, Coder::GlobalWindow))
    }

    /// Restrictions are split one per bundle, whatever chunks they came in;
    /// a chunk holding one restriction is shared, not copied.
    #[test]
    fn one_restriction_per_bundle() {
        let single = chunk(&[b"c"]);
        let chunks = vec![
            ("sized", (0, chunk(&[b"a", b"bb"]))),
            ("sized", (0, single.clone())),
            ("opaque", (1, chunk(&[b"x", b"y"]))),
        ];
        let bundles = split_restrictions(chunks, 2, coders).unwrap();
        let got: Vec<Vec<(usize, Vec<u8>)>> = bundles
            .iter()
            .map(|b| b.iter().map(|(i, c)| (*i, c.bytes.clone())).collect())
            .collect();
        let both = [element(b"x"), element(b"y")].concat();
        assert_eq!(
            got,
            [
                vec![(1, both)],
                vec![(0, element(b"a"))],
                vec![(0, element(b"bb"))],
                vec![(0, element(b"c"))],
            ]
        );
        assert!(Arc::ptr_eq(&bundles[3][0].1, &single));
    }

    /// Sized restrictions (`KV<bytes, double>`) go largest first; equal
    /// sizes keep their order.
    #[test]
    fn largest_restrictions_first() {
        let sized = |name: &[u8], size: f64| {
            let mut v = vec![name.len() as u8];
            v.extend_from_slice(name);
            v.extend_from_slice(&size.to_be_bytes());
            v
        };
        let values = [
            sized(b"a", 6.5),
            sized(b"tail", 2.0),
            sized(b"b", 6.5),
            sized(b"c", 9.0),
        ];
        let mut bytes = Vec::new();
        for v in &values {
            write_timestamp(&mut bytes, 0);
            bytes.extend_from_slice(&1i32.to_be_bytes());
            bytes.push(0x0F);
            bytes.extend_from_slice(v);
        }
        let kv = Coder::Kv {
            key: Arc::new(Coder::Bytes),
            value: Arc::new(Coder::Double),
        };
        let bundles =
            split_restrictions(vec![("sized", (0, Arc::new(Chunk { bytes })))], 4, |_| {
                Some((kv.clone(), Coder::GlobalWindow))
            })
            .unwrap();
        let order: Vec<f64> = bundles
            .iter()
            .map(|b| restriction_size(&kv, &b[0].1.bytes[13..]))
            .collect();
        assert_eq!(order, [9.0, 6.5, 6.5, 2.0]);
        let names: Vec<u8> = bundles.iter().map(|b| b[0].1.bytes[14]).collect();
        assert_eq!(names, b"cabt");
    }

    /// With two or more restrictions a worker, each worker gets one bundle,
    /// dealt largest first in snake order so the totals come out even; the
    /// rest go one per bundle after them.
    #[test]
    fn restrictions_are_dealt_into_one_bundle_a_worker() {
        let kv = Coder::Kv {
            key: Arc::new(Coder::Bytes),
            value: Arc::new(Coder::Double),
        };
        let mut bytes = Vec::new();
        for size in [4.0f64, 9.0, 1.0, 6.0, 8.0, 5.0, 7.0] {
            write_timestamp(&mut bytes, 0);
            bytes.extend_from_slice(&1i32.to_be_bytes());
            bytes.push(0x0F);
            bytes.extend_from_slice(&[1, b'r']);
            bytes.extend_from_slice(&size.to_be_bytes());
        }
        let sized = vec![("sized", (0, Arc::new(Chunk { bytes })))];
        let bundles =
            split_restrictions(sized, 2, |_| Some((kv.clone(), Coder::GlobalWindow))).unwrap();
        let sizes: Vec<Vec<f64>> = bundles
            .iter()
            .map(|b| {
                b.iter()
                    .map(|(_, c)| restriction_size(&kv, &c.bytes[13..]))
                    .collect()
            })
            .collect();
        assert_eq!(sizes, [vec![9.0, 6.0, 5.0], vec![8.0, 7.0, 4.0], vec![1.0]]);
    }

    /// Past the cap, consecutive restrictions share bundles; bad bytes are
    /// an error, not a panic.
    #[test]
    fn many_restrictions_share_bundles_and_bad_bytes_fail() {
        let values: Vec<Vec<u8>> = (0..3000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let bundles = split_restrictions(vec![("sized", (0, chunk(&refs)))], 3000, coders).unwrap();
        assert!(bundles.len() <= MAX_RESTRICTION_BUNDLES);
        assert_eq!(bundles.iter().map(Vec::len).sum::<usize>(), 3000);
        let mut truncated = element(b"abc");
        truncated.pop();
        let bad = Arc::new(Chunk { bytes: truncated });
        assert!(split_restrictions(vec![("sized", (0, bad))], 2, coders).is_err());
    }

    /// A Reshuffle's few elements are cut into one share per worker at the
    /// element boundaries nearest equal bytes: ten elements of nearly equal
    /// size go five and five, even when the first ones encode shorter.
    #[test]
    fn reshuffled_elements_are_cut_evenly() {
        let values: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![b'r'; if i == 0 { 3 } else { 4 }])
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let shares = |ways| {
            let chunks = [("sized", (0, chunk(&refs)))];
            split_into_elements(&chunks, ways, coders)
                .unwrap()
                .unwrap()
                .iter()
                .map(|b| {
                    b.iter()
                        .map(|(_, c)| {
                            element_ranges(&c.bytes, &Coder::Bytes, &Coder::GlobalWindow, "r")
                                .unwrap()
                                .len()
                        })
                        .sum::<usize>()
                })
                .collect::<Vec<usize>>()
        };
        assert_eq!(shares(2), [5, 5]);
        assert_eq!(shares(3), [3, 4, 3]);
        assert_eq!(shares(4), [2, 3, 2, 3]);
        let one = [("sized", (0, chunk(&[b"a"])))];
        assert!(split_into_elements(&one, 2, coders).unwrap().is_none());
        assert!(
            split_into_elements(&[("opaque", (0, chunk(&refs)))], 2, coders)
                .unwrap()
                .is_none()
        );
    }
}
