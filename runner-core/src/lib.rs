//! # oxbeam-runner-core: from a pipeline proto to an optimized ExecutionPlan
//!
//! Runners (local, distributed) never read protobufs: they call [`plan`] and
//! execute the [`ExecutionPlan`] it returns. Planning goes in stages, one
//! module each:
//!
//! ```text
//!  Pipeline proto ──translate──▶ graph of leaf transforms (closed enum of primitives
//!        │                        + Extension{urn, payload}; combine composites kept)
//!        ├─validate──▶ clear errors naming the transform (Error::Plan / NotImplemented)
//!        ├─optimizer::combiner_lifting  precombine → shuffle → merge → extract
//!        ├─optimizer::fusion            executable transforms → stages
//!        ├─optimizer::flatten_unzip     readers of a Flatten read its inputs
//!        ├─optimizer::side_inputs       side inputs become materialization points
//!        ▼
//!  ExecutionPlan: ordered steps — Impulse, GroupByKey, Flatten, Stage{descriptor},
//!                 TestStream, Generate (streaming sources)
//! ```
//!
//! Each [`Stage`] carries the Beam `ProcessBundleDescriptor` an executor
//! runs (`oxbeam_fn_api::Executor::create_processor`): its transforms, one
//! `beam:runner:source:v1` per input and one `beam:runner:sink:v1` per output
//! with windowed-value coders, and only the components it needs.
//!
//! ```
//! use oxbeam_model::pipeline::Pipeline;
//! use oxbeam_runner_core::{plan, PlanOptions};
//! // An empty pipeline plans to an empty plan.
//! let p = plan(&Pipeline::default(), &PlanOptions::default()).unwrap();
//! assert!(p.steps().is_empty());
//! println!("{p}"); // the same text as `oxbeam inspect`
//! ```
//!
//! Coders are `oxbeam_model::coders::Coder` (re-exported as [`Coder`]); the
//! [`coder`] module adds what runners need on top: building them from the
//! graph's coder table, and a zero-copy [`WindowedHeader`] that keeps windows
//! as encoded bytes for shuffles.

#![forbid(unsafe_code)]

pub mod coder;
pub mod compaction;
mod error;
mod fast_primitives;
pub mod gabw;
mod graph;
pub mod merge_windows;
mod optimizer;
mod plan;
mod redis;
pub mod snapshot;
pub mod state;
mod translate;
pub mod trigger;
pub(crate) mod validate;
mod watch;
mod windowing;

pub use coder::{Coder, DecodeError, WindowedHeader};
pub use error::{Error, Result};
pub use plan::{
    ExecutionPlan, FlattenStep, GenerateSpec, GenerateStep, GroupByKeyStep, ImpulseStep,
    PCollectionInfo, Stage, StageInput, StageOutput, StageSideInput, Step, TestStreamEvent,
    TestStreamStep, TimestampedElement,
};
pub use redis::{
    RedisReadSpec, RedisReadStep, RedisStart, RedisWriteSpec, RedisWriteStep, is_stream_id,
};
pub use translate::decode_pipeline;
pub use validate::SUPPORTED_REQUIREMENTS;
pub use watch::{DEFAULT_POLL_INTERVAL_MS, WatchFilesSpec, WatchFilesStep};
pub use windowing::{
    AccumulationMode, ClosingBehavior, OnTimeBehavior, OutputTime, PaneRules, WindowCoderKind,
    WindowFn, WindowingStrategy,
};

use oxbeam_model::pipeline::Pipeline;

/// Which optimizations [`plan`] applies. All on by default; turning one off
/// must never change a pipeline's results (tests compare both ways).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Fuse executable transforms into stages; off: one stage per transform.
    pub fusion: bool,
    /// Lift combiners: pre-combine before the shuffle.
    pub combiner_lifting: bool,
    /// Let stages read the inputs of a Flatten directly; off: a Flatten step
    /// materializes the union (shuffles and side inputs unzip regardless).
    pub flatten_unzip: bool,
    /// Run Beam's Reshuffle (`beam:transform:reshuffle:v1`) in the runner,
    /// as an identity that ends fusion and keeps each element's metadata;
    /// off: its expansion runs (Beam Python before 2.65 lost the pane
    /// there, which `--update_compatibility_version` asks to keep).
    pub reshuffle_in_runner: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            fusion: true,
            combiner_lifting: true,
            flatten_unzip: true,
            reshuffle_in_runner: true,
        }
    }
}

/// Plans `pipeline`: translate, validate, optimize, lay out stages.
///
/// # Errors
/// [`Error::Plan`] for invalid pipelines (naming the transform at fault),
/// [`Error::NotImplemented`] for valid ones using unsupported features,
/// [`Error::Internal`] for planner bugs.
pub fn plan(pipeline: &Pipeline, options: &PlanOptions) -> Result<ExecutionPlan> {
    let mut g = translate::to_graph(pipeline, options.reshuffle_in_runner)?;
    state::align_timer_coders(&mut g);
    validate::validate(&g)?;
    optimizer::combiner_lifting::apply(&mut g, options.combiner_lifting)?;
    let topo = g
        .topological_order()
        .map_err(|id| Error::Internal(format!("cycle through {id} after combiner lifting")))?;
    let stages = optimizer::fusion::fuse(&g, &topo, options.fusion);
    plan::assemble(&g, &topo, stages, options)
}
