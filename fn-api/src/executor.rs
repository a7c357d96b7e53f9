use std::sync::Arc;

use oxbeam_model::fn_execution::ProcessBundleDescriptor;

use crate::{Metrics, Result};

/// Runs the user code of one kind of environment (native Rust, Python, Wasm,
/// an external SDK harness).
///
/// One executor serves many stages and many threads; processors it creates
/// are used by one thread at a time.
pub trait Executor: Send + Sync {
    /// Short name for plans and error messages ("native", "python", ...).
    fn name(&self) -> &str;

    /// Builds a processor for a fused stage.
    ///
    /// # Errors
    /// [`crate::Error::Unsupported`] if a transform is unknown to this
    /// executor, [`crate::Error::Invalid`] for malformed payloads.
    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>>;
}

/// Processes bundles for one descriptor. Reused across bundles: set-up work
/// (DoFn `setup`, compiled modules) happens once per processor.
pub trait BundleProcessor: Send {
    /// Runs one bundle to completion: every input element is processed,
    /// `finish_bundle` runs, and every output has been emitted to the sink.
    ///
    /// # Errors
    /// [`crate::Error::UserCode`] naming the transform and element when user
    /// code fails; the bundle's outputs must then be discarded by the runner.
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()>;

    /// Releases resources (DoFn `teardown`). Called once, when the runner is
    /// done with this processor.
    fn teardown(&mut self) {}
}

/// One bundle's inputs and where its outputs go.
pub struct Bundle<'a> {
    /// Per data-source transform id: concatenated nested windowed values.
    /// A source may appear several times (one entry per input buffer).
    pub inputs: Vec<(&'a str, &'a [u8])>,
    /// Receives every output element.
    pub sink: &'a mut dyn OutputSink,
    /// Materialized side inputs.
    pub side_inputs: &'a dyn SideInputs,
    /// User and system metrics of this bundle, merged by the runner.
    pub metrics: &'a mut Metrics,
}

/// Receives the elements a bundle produces.
pub trait OutputSink {
    /// One encoded element (nested windowed value) for the data-sink
    /// transform `sink_transform`. `element` is only borrowed: copy it.
    ///
    /// # Errors
    /// If the runner cannot accept it (e.g. the bundle was cancelled, or the
    /// element does not decode with the sink's coder).
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> Result<()>;
}

/// Access to materialized side inputs.
pub trait SideInputs: Sync {
    /// Every element of side input `side_input` (its local name in the
    /// ParDoPayload) of transform `transform`: concatenated nested windowed
    /// values with the side PCollection's windowed-value coder.
    ///
    /// # Errors
    /// If the runner has no such side input.
    fn side_input(&self, transform: &str, side_input: &str) -> Result<&[u8]>;
}

/// For bundles without side inputs.
pub struct NoSideInputs;

impl SideInputs for NoSideInputs {
    fn side_input(&self, transform: &str, side_input: &str) -> Result<&[u8]> {
        Err(crate::Error::Internal(format!(
            "transform {transform} asked for side input {side_input}, but the bundle has none"
        )))
    }
}

impl<F: FnMut(&str, &[u8]) -> Result<()>> OutputSink for F {
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> Result<()> {
        self(sink_transform, element)
    }
}

/// The executors a runner may use, keyed by environment id (one
/// environment of a pipeline) or environment URN (every environment of a
/// kind, e.g. `oxbeam:env:native:v1`). A stage runs on the executor of its
/// environment id if there is one, else of its environment URN.
#[derive(Clone, Default)]
pub struct Executors {
    by_env_urn: std::collections::BTreeMap<String, Arc<dyn Executor>>,
    by_env_id: std::collections::BTreeMap<String, Arc<dyn Executor>>,
}

impl Executors {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `executor` for environments with URN `env_urn`.
    pub fn with(mut self, env_urn: impl Into<String>, executor: Arc<dyn Executor>) -> Self {
        self.by_env_urn.insert(env_urn.into(), executor);
        self
    }

    /// Registers `executor` for the environment with id `env_id` only
    /// (e.g. one harness per process environment of a pipeline).
    pub fn with_environment(
        mut self,
        env_id: impl Into<String>,
        executor: Arc<dyn Executor>,
    ) -> Self {
        self.by_env_id.insert(env_id.into(), executor);
        self
    }

    /// The executor for environments with URN `env_urn`, if any.
    pub fn get(&self, env_urn: &str) -> Option<&Arc<dyn Executor>> {
        self.by_env_urn.get(env_urn)
    }

    /// The executor for a stage in environment `env_id` with URN `env_urn`:
    /// the one registered for the id, else for the URN.
    pub fn for_environment(&self, env_id: &str, env_urn: &str) -> Option<&Arc<dyn Executor>> {
        self.by_env_id
            .get(env_id)
            .or_else(|| self.by_env_urn.get(env_urn))
    }

    /// Environment URNs that have an executor, sorted.
    pub fn env_urns(&self) -> impl Iterator<Item = &str> {
        self.by_env_urn.keys().map(String::as_str)
    }

    /// Environment ids that have an executor of their own, sorted.
    pub fn env_ids(&self) -> impl Iterator<Item = &str> {
        self.by_env_id.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.by_env_urn.iter().map(|(k, v)| (k, v.name())))
            .entries(self.by_env_id.iter().map(|(k, v)| (k, v.name())))
            .finish()
    }
}
