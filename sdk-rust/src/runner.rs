//! Runners: what executes a pipeline proto. [`LocalRunner`] (the default)
//! runs it in this process with `oxbeam-runner-local`.

use oxbeam_fn_api::{DistributionData, Executors, Metrics};
use oxbeam_model::pipeline as pb;
use oxbeam_runner_local::LocalOptions;

use crate::options::PipelineOptions;
use crate::{Error, Result};

/// Executes pipeline protos. Runners see only the proto and the executors
/// of its environments, never the SDK's objects.
pub trait Runner {
    /// Short name (`local`, ...).
    fn name(&self) -> &str;

    /// Runs `pipeline` to completion.
    ///
    /// # Errors
    /// [`Error::Plan`] for pipelines the runner rejects; [`Error::Execution`]
    /// when a bundle fails.
    fn run(&self, pipeline: &pb::Pipeline, executors: &Executors) -> Result<PipelineResult>;
}

/// What a finished pipeline reports.
#[derive(Debug, Clone, Default)]
pub struct PipelineResult {
    /// User metrics and element counts, merged over bundles.
    pub metrics: Metrics,
    /// Running bundles the runner split to give work to idle workers
    /// (dynamic work rebalancing).
    pub dynamic_splits: u64,
}

impl From<oxbeam_runner_local::PipelineResult> for PipelineResult {
    fn from(r: oxbeam_runner_local::PipelineResult) -> Self {
        PipelineResult {
            metrics: r.metrics,
            dynamic_splits: r.dynamic_splits,
        }
    }
}

impl PipelineResult {
    /// The counter `namespace`/`name`, summed over transforms (0 if never set).
    pub fn counter(&self, namespace: &str, name: &str) -> i64 {
        self.metrics
            .counters
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.name == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// The distribution `namespace`/`name`, merged over transforms.
    pub fn distribution(&self, namespace: &str, name: &str) -> Option<DistributionData> {
        let mut out: Option<DistributionData> = None;
        for (k, d) in &self.metrics.distributions {
            if k.namespace == namespace && k.name == name {
                match &mut out {
                    Some(o) => o.merge(d),
                    None => out = Some(*d),
                }
            }
        }
        out
    }

    /// The latest value of gauge `namespace`/`name` over transforms.
    pub fn gauge(&self, namespace: &str, name: &str) -> Option<i64> {
        self.metrics
            .gauges
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.name == name)
            .max_by_key(|(_, (_, t))| *t)
            .map(|(_, (v, _))| *v)
    }
}

/// Runs pipelines in this process, on all cores (`--runner local`).
#[derive(Debug, Clone, Default)]
pub struct LocalRunner {
    options: LocalOptions,
}

impl LocalRunner {
    /// A local runner with explicit options.
    pub fn new(options: LocalOptions) -> Self {
        LocalRunner { options }
    }

    /// A local runner configured from pipeline options.
    pub fn from_options(o: &PipelineOptions) -> Self {
        LocalRunner {
            options: local_options(o),
        }
    }
}

/// The local runner's options for pipeline options `o`.
pub(crate) fn local_options(o: &PipelineOptions) -> LocalOptions {
    let mut options = LocalOptions::default();
    if let Some(p) = o.parallelism {
        options.parallelism = p.max(1);
    }
    options.fusion = !o.no_fusion;
    options.combiner_lifting = !o.no_combiner_lifting;
    if o.no_dynamic_splitting {
        options.split_stragglers_after = None;
    }
    if let Some(m) = o.memory_budget {
        options.memory_budget_bytes = m;
    }
    options.dump_plan = o.dump_plan;
    if o.no_progress {
        options.progress = false;
    }
    options.streaming = o.streaming;
    if let Some(n) = o.sdk_worker_parallelism {
        options.harness.workers_per_environment = n.max(1);
    }
    if let Some(n) = o.max_bundle_attempts {
        options.harness.max_bundle_attempts = n.max(1);
    }
    // Output of harness processes running the user's own code (its prints,
    // its panics) shows on stderr, as it would in process.
    options.harness.echo_output = o.environment_type == crate::options::EnvironmentType::Process;
    options
}

impl Runner for LocalRunner {
    fn name(&self) -> &str {
        "local"
    }

    fn run(&self, pipeline: &pb::Pipeline, executors: &Executors) -> Result<PipelineResult> {
        oxbeam_runner_local::LocalRunner::new(self.options.clone())
            .run(pipeline, executors)
            .map(PipelineResult::from)
            .map_err(local_error)
    }
}

/// The SDK error for an error of the local runner.
pub(crate) fn local_error(e: oxbeam_runner_local::Error) -> Error {
    match e {
        oxbeam_runner_local::Error::Plan(m) => Error::Plan(m),
        oxbeam_runner_local::Error::Execution(e) => Error::Execution(e),
        oxbeam_runner_local::Error::Cancelled => Error::Cancelled,
        other => Error::Runner(other.to_string()),
    }
}

/// The runner named by `options.runner`.
pub(crate) fn runner_for(options: &PipelineOptions) -> Result<Box<dyn Runner>> {
    match options.runner.as_str() {
        "local" | "Local" | "LocalRunner" | "direct" | "DirectRunner" => {
            Ok(Box::new(LocalRunner::from_options(options)))
        }
        other => Err(Error::UnknownRunner(other.to_string())),
    }
}
