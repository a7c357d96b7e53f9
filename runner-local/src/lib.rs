//! # oxbeam-runner-local: runs a pipeline in this process, on all cores
//!
//! (Being written.) Entry point: [`LocalRunner::run`].

use oxbeam_fn_api::{Executors, Metrics};
use oxbeam_model::pipeline::Pipeline;

/// Options of the local runner.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Worker threads; defaults to the number of cores.
    pub parallelism: usize,
    /// Fuse transforms into stages (disable to check fusion does not change results).
    pub fusion: bool,
    /// Bytes of grouped data kept in memory before spilling sorted runs to disk.
    pub memory_budget_bytes: u64,
    /// Print the fused plan before running.
    pub dump_plan: bool,
    /// Show a progress bar on jobs running over a second in a terminal.
    pub progress: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            fusion: true,
            memory_budget_bytes: 1 << 30,
            dump_plan: false,
            progress: true,
        }
    }
}

/// What a finished pipeline reports.
#[derive(Debug, Clone, Default)]
pub struct PipelineResult {
    /// User metrics and element counts, merged over all bundles.
    pub metrics: Metrics,
}

/// Errors of the local runner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline could not be planned (invalid or unsupported).
    #[error("{0}")]
    Plan(String),
    /// Execution failed (user code, IO).
    #[error(transparent)]
    Execution(#[from] oxbeam_fn_api::Error),
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

    /// Plans and runs `pipeline` to completion, running each stage on the
    /// executor of its environment.
    ///
    /// # Errors
    /// [`Error::Plan`] for invalid pipelines, [`Error::Execution`] when a
    /// bundle fails.
    pub fn run(&self, pipeline: &Pipeline, executors: &Executors) -> Result<PipelineResult, Error> {
        let _ = (pipeline, executors, &self.options);
        Err(Error::Plan("runner-local is not written yet".into()))
    }
}
