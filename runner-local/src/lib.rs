//! # oxbeam-runner-local: runs a pipeline in this process, on all cores
//!
//! [`LocalRunner::run`] plans the pipeline with `oxbeam-runner-core`, then
//! executes the [`ExecutionPlan`]:
//!
//! - **Engines.** Watermark-driven: each step's input watermark is the
//!   minimum of its producers' output watermarks. The batch engine runs a
//!   step once its input watermark reaches +∞ (everything upstream is
//!   done). The streaming engine (`streaming`), chosen for plans with a
//!   TestStream, a generator source or an unbounded PCollection, or with
//!   [`LocalOptions::streaming`], runs every step continuously and
//!   advances watermarks gradually; GroupByKeys fire panes as they pass.
//!   [`LocalRunner::start`] runs a job in the background with a
//!   [`JobHandle`] to cancel or drain it.
//! - **Stages** run as bundles on a pool of `parallelism` threads. Each
//!   thread builds one `BundleProcessor` per stage, through the executor of
//!   the stage's environment, and reuses it for every bundle; `teardown`
//!   runs when the job ends. A bundle is ~1 MiB of encoded input.
//! - **Data** moves as chunks of whole encoded elements. A PCollection read
//!   by stages, Flattens or side inputs keeps its chunks; one read by a
//!   GroupByKey feeds the shuffle directly as bundles emit.
//! - **GroupByKey** is a hash-partitioned in-memory shuffle keyed by
//!   (encoded key, window), merging session windows per key; over
//!   `memory_budget_bytes` it spills sorted runs to temp files. **Flatten** is
//!   a union of chunk lists (no copy). **Side inputs** are materialized whole.
//! - **Executors** are picked per stage by environment id, then URN (see
//!   `Executors`). Stages in `beam:env:process:v1` / `beam:env:external:v1`
//!   environments with no registered executor run on SDK harnesses over the
//!   gRPC Fn API (`oxbeam_fn_api::Harnesses`): one harness per environment,
//!   started when first needed, stopped when the job ends.
//! - **Errors**: a failing bundle fails the job with the executor's error
//!   (transform, message, element); its outputs are discarded.
//!
//! ```no_run
//! use oxbeam_fn_api::Executors;
//! use oxbeam_model::pipeline::Pipeline;
//! use oxbeam_runner_local::{LocalOptions, LocalRunner};
//! # fn pipeline() -> Pipeline { Pipeline::default() }
//! let runner = LocalRunner::new(LocalOptions { parallelism: 2, ..LocalOptions::default() });
//! let result = runner.run(&pipeline(), &Executors::new())?;
//! println!("{:?}", result.metrics.element_counts);
//! # Ok::<(), oxbeam_runner_local::Error>(())
//! ```

#![forbid(unsafe_code)]

mod data;
mod job;
mod merge;
mod progress;
mod shuffle;
mod stateful;
mod streaming;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use oxbeam_fn_api::{Executors, HarnessOptions, Metrics};
use oxbeam_model::pipeline::Pipeline;
use oxbeam_runner_core::{ExecutionPlan, PlanOptions};

/// Options of the local runner.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Worker threads; defaults to the number of cores.
    pub parallelism: usize,
    /// Fuse transforms into stages (disable to check fusion does not change results).
    pub fusion: bool,
    /// Pre-combine before shuffles (disable to check lifting does not change results).
    pub combiner_lifting: bool,
    /// Bytes of grouped data kept in memory before spilling sorted runs to disk.
    pub memory_budget_bytes: u64,
    /// Print the fused plan (to stderr) before running.
    pub dump_plan: bool,
    /// Show a progress bar on jobs running over a second in a terminal.
    pub progress: bool,
    /// Target size of a bundle's input, in bytes of encoded elements.
    pub bundle_bytes: usize,
    /// How SDK harnesses are started for `beam:env:process:v1` and
    /// `beam:env:external:v1` environments that have no executor in the
    /// `Executors` given to [`LocalRunner::run`].
    pub harness: HarnessOptions,
    /// Run on the streaming engine even when every PCollection is bounded.
    pub streaming: bool,
    /// Dynamic work rebalancing (batch): a bundle on an SDK harness that
    /// has run this long while workers idle is split, and the work it
    /// gives away runs as a new bundle. `None` disables it.
    pub split_stragglers_after: Option<Duration>,
    /// Streaming: a lifted combine's GroupByKey merges the accumulators
    /// it buffers while windows are open, so that firing a pane merges
    /// few (disable to compare; results are the same).
    pub compaction: bool,
    /// Run Beam's Reshuffle in the runner (see
    /// `PlanOptions::reshuffle_in_runner`); off for pipelines that ask for
    /// Beam Python's behaviour before 2.65.
    pub reshuffle_in_runner: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            fusion: true,
            combiner_lifting: true,
            memory_budget_bytes: 1 << 30,
            dump_plan: false,
            progress: true,
            bundle_bytes: 1 << 20,
            harness: HarnessOptions::default(),
            streaming: false,
            split_stragglers_after: Some(Duration::from_millis(100)),
            compaction: true,
            reshuffle_in_runner: true,
        }
    }
}

impl LocalOptions {
    /// The planner options these runner options imply.
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            fusion: self.fusion,
            combiner_lifting: self.combiner_lifting,
            reshuffle_in_runner: self.reshuffle_in_runner,
            ..PlanOptions::default()
        }
    }
}

/// Wall time and work of one plan step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step, as the plan names it (e.g. `stage stage-3`).
    pub step: String,
    /// From the step becoming ready to its completion.
    pub elapsed: Duration,
    /// Bundles (stages) or partitions (GroupByKey) processed.
    pub tasks: usize,
    /// Running bundles of the step split to rebalance work (each split
    /// adds a bundle to `tasks`).
    pub splits: usize,
}

impl std::fmt::Display for StepReport {
    /// `   1.204s  stage stage-2 (4 tasks, 3 split)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>10.3?}  {} ({} tasks",
            self.elapsed, self.step, self.tasks
        )?;
        if self.splits > 0 {
            write!(f, ", {} split", self.splits)?;
        }
        write!(f, ")")
    }
}

/// What a finished pipeline reports.
#[derive(Debug, Clone, Default)]
pub struct PipelineResult {
    /// User metrics and element counts, merged over all bundles.
    pub metrics: Metrics,
    /// Per-step timings, in completion order.
    pub steps: Vec<StepReport>,
    /// Sorted runs spilled to disk by shuffles over the memory budget.
    pub spilled_runs: u64,
    /// Running bundles split to rebalance work, over all steps.
    pub dynamic_splits: u64,
}

/// Errors of the local runner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline could not be planned (invalid or unsupported).
    #[error("{0}")]
    Plan(String),
    /// Execution failed (user code, bad elements).
    #[error(transparent)]
    Execution(#[from] oxbeam_fn_api::Error),
    /// A stage's environment has no executor.
    #[error(
        "no executor for environment {environment_urn} (needed by {stage}); executors are registered for: {available}"
    )]
    MissingExecutor {
        /// The stage that needs it.
        stage: String,
        /// Its environment URN.
        environment_urn: String,
        /// The registered environment URNs.
        available: String,
    },
    /// Spilling shuffle data to disk failed.
    #[error("spilling shuffle data to disk: {0}")]
    Spill(std::io::Error),
    /// An external system a transform reads or writes (a Redis server)
    /// failed, or sent data the transform cannot read.
    #[error("{transform} at {address}: {message}")]
    External {
        /// The transform, e.g. `Redis stream source 'Read'`.
        transform: String,
        /// The system's address, e.g. `redis://127.0.0.1:6379/`.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// The job was cancelled (see [`LocalRunner::run_cancellable`]).
    #[error("the job was cancelled")]
    Cancelled,
    /// A bug in the runner.
    #[error("internal runner error: {0}")]
    Internal(String),
}

impl From<oxbeam_runner_core::Error> for Error {
    fn from(e: oxbeam_runner_core::Error) -> Self {
        Error::Plan(e.to_string())
    }
}

/// Runs pipelines in this process.
#[derive(Debug, Clone, Default)]
pub struct LocalRunner {
    options: LocalOptions,
}

impl LocalRunner {
    /// A runner with these options.
    pub fn new(options: LocalOptions) -> Self {
        LocalRunner { options }
    }

    /// Plans `pipeline` with this runner's options (what `--dump-plan` prints).
    ///
    /// # Errors
    /// [`Error::Plan`] for invalid or unsupported pipelines.
    pub fn plan(&self, pipeline: &Pipeline) -> Result<ExecutionPlan, Error> {
        Ok(oxbeam_runner_core::plan(
            pipeline,
            &self.options.plan_options(),
        )?)
    }

    /// Plans and runs `pipeline` to completion, running each stage on the
    /// executor of its environment.
    ///
    /// # Errors
    /// [`Error::Plan`] for invalid pipelines, [`Error::MissingExecutor`] when
    /// an environment has no executor, [`Error::Execution`] when a bundle
    /// fails (with the executor's error), [`Error::Spill`] on disk errors.
    pub fn run(&self, pipeline: &Pipeline, executors: &Executors) -> Result<PipelineResult, Error> {
        let plan = self.plan(pipeline)?;
        if self.options.dump_plan {
            eprintln!("{plan}");
        }
        self.run_plan(&plan, executors)
    }

    /// As [`LocalRunner::run`], but stops early, with [`Error::Cancelled`],
    /// once `cancel` becomes true: no new bundles start, and bundles running
    /// on SDK harnesses are abandoned (their harnesses are stopped).
    ///
    /// # Errors
    /// As [`LocalRunner::run`], and [`Error::Cancelled`].
    pub fn run_cancellable(
        &self,
        pipeline: &Pipeline,
        executors: &Executors,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<PipelineResult, Error> {
        let plan = self.plan(pipeline)?;
        if self.options.dump_plan {
            eprintln!("{plan}");
        }
        self.execute(&plan, executors, Some(cancel), None)
    }

    /// As [`LocalRunner::run_cancellable`], and drains the job once `drain`
    /// becomes true (see [`JobHandle::drain`]): it then ends with `Ok`.
    ///
    /// # Errors
    /// As [`LocalRunner::run_cancellable`].
    pub fn run_controlled(
        &self,
        pipeline: &Pipeline,
        executors: &Executors,
        cancel: &AtomicBool,
        drain: &AtomicBool,
    ) -> Result<PipelineResult, Error> {
        let plan = self.plan(pipeline)?;
        if self.options.dump_plan {
            eprintln!("{plan}");
        }
        self.execute(&plan, executors, Some(cancel), Some(drain))
    }

    /// Plans `pipeline` and starts it on a thread of its own, returning a
    /// handle to wait for it, [cancel](JobHandle::cancel) it or
    /// [drain](JobHandle::drain) it (what unbounded pipelines need to end).
    ///
    /// # Errors
    /// [`Error::Plan`] for invalid pipelines; execution errors come from
    /// [`JobHandle::wait`].
    pub fn start(&self, pipeline: &Pipeline, executors: &Executors) -> Result<JobHandle, Error> {
        let plan = self.plan(pipeline)?;
        if self.options.dump_plan {
            eprintln!("{plan}");
        }
        let runner = self.clone();
        let executors = executors.clone();
        let control = Arc::new(JobControl::default());
        let c = control.clone();
        let thread = std::thread::Builder::new()
            .name("oxbeam-job".into())
            .spawn(move || {
                // Set however the job thread ends, a panic included.
                let _ended = EndSignal(&c);
                runner.execute(&plan, &executors, Some(&c.cancel), Some(&c.drain))
            })
            .map_err(|e| Error::Internal(format!("cannot start the job thread: {e}")))?;
        Ok(JobHandle {
            control,
            thread: Some(thread),
        })
    }

    /// Runs `plan` on the engine it needs.
    fn execute(
        &self,
        plan: &ExecutionPlan,
        executors: &Executors,
        cancel: Option<&AtomicBool>,
        drain: Option<&AtomicBool>,
    ) -> Result<PipelineResult, Error> {
        if self.options.streaming || plan.is_streaming() {
            streaming::run(
                plan,
                executors,
                &self.options,
                streaming::Control { cancel, drain },
            )
        } else {
            job::run(plan, executors, &self.options, cancel)
        }
    }

    /// Runs an already planned pipeline (on the streaming engine if it
    /// needs it; see [`ExecutionPlan::is_streaming`]). An unbounded
    /// pipeline runs until it fails: use [`LocalRunner::start`] to drain or
    /// cancel it.
    ///
    /// # Errors
    /// As [`LocalRunner::run`].
    pub fn run_plan(
        &self,
        plan: &ExecutionPlan,
        executors: &Executors,
    ) -> Result<PipelineResult, Error> {
        self.execute(plan, executors, None, None)
    }
}

#[derive(Debug, Default)]
struct JobControl {
    cancel: AtomicBool,
    drain: AtomicBool,
    /// Whether the job thread has ended, and its waiters.
    ended: std::sync::Mutex<bool>,
    ended_cv: std::sync::Condvar,
}

/// Marks the job ended when the job thread drops it.
struct EndSignal<'a>(&'a JobControl);

impl Drop for EndSignal<'_> {
    fn drop(&mut self) {
        let mut ended = self.0.ended.lock().unwrap_or_else(|e| e.into_inner());
        *ended = true;
        self.0.ended_cv.notify_all();
    }
}

/// A job started with [`LocalRunner::start`]. Dropping the handle cancels
/// the job and waits for it to stop.
#[derive(Debug)]
pub struct JobHandle {
    control: Arc<JobControl>,
    thread: Option<JoinHandle<Result<PipelineResult, Error>>>,
}

impl JobHandle {
    /// Stops the job at once: no new bundles start, bundles on SDK
    /// harnesses are abandoned, and [`JobHandle::wait`] returns
    /// [`Error::Cancelled`] (the job ends CANCELLED).
    pub fn cancel(&self) {
        self.control.cancel.store(true, Ordering::Relaxed);
    }

    /// Drains the job: its sources stop reading, event time advances to
    /// +∞ so every window fires, and the job ends DONE once everything in
    /// flight is processed. A batch job finishes as it would anyway.
    pub fn drain(&self) {
        self.control.drain.store(true, Ordering::Relaxed);
    }

    /// Whether the job has ended (done, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        // Set by the job thread however it ends (see `EndSignal`).
        *self.control.ended.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `timeout` for the job to end (done, failed or
    /// cancelled); whether it has. Returns as soon as it ends.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        let ended = self.control.ended.lock().unwrap_or_else(|e| e.into_inner());
        let (ended, _) = self
            .control
            .ended_cv
            .wait_timeout_while(ended, timeout, |ended| !*ended)
            .unwrap_or_else(|e| e.into_inner());
        *ended
    }

    /// Waits for the job to end.
    ///
    /// # Errors
    /// As [`LocalRunner::run`]; [`Error::Cancelled`] after [`JobHandle::cancel`].
    pub fn wait(mut self) -> Result<PipelineResult, Error> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Internal("the job thread panicked".into()))?,
            None => Err(Error::Internal("the job was already waited for".into())),
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.cancel();
            let _ = t.join();
        }
    }
}
