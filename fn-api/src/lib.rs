//! # oxbeam-fn-api: where runners meet user code
//!
//! Runners never call user functions directly. They describe a fused stage as
//! a Beam `ProcessBundleDescriptor` (the same message Beam sends to SDK
//! harnesses) and hand it to an [`Executor`] chosen by the stage's
//! environment. The executor builds a [`BundleProcessor`], which then runs
//! bundles: encoded elements in, encoded elements out.
//!
//! ```text
//!  runner ──ProcessBundleDescriptor──▶ Executor::create_processor
//!         ──Bundle{inputs, sink, side inputs}──▶ BundleProcessor::process_bundle
//!         ◀──OutputSink::emit(output, element bytes)──
//! ```
//!
//! ## Data conventions (shared by every executor and runner)
//!
//! - Every element crossing this boundary is a full windowed value
//!   (`beam:coder:windowed_value:v1`: timestamp, windows, pane, value), all in
//!   the **nested** context, so a buffer is a plain concatenation of elements.
//! - A descriptor's inputs are `beam:runner:source:v1` transforms and its
//!   outputs `beam:runner:sink:v1` transforms (payload: `RemoteGrpcPort` whose
//!   `coder_id` names the windowed-value coder of the data). A data source has
//!   one output PCollection; a data sink has one input PCollection.
//! - Side inputs are read through [`SideInputs`], keyed by the consuming
//!   transform id and the side input's local name, as all materialized
//!   elements of the side PCollection (same encoding as above).
//!
//! In-process executors (native Rust, Python via pyo3, Wasm) implement these
//! traits directly; the gRPC Fn API adapts the same traits across processes.

mod error;
mod executor;
mod metrics;

pub use error::{Error, Result};
pub use error::UserCodeError;
pub use executor::{
    Bundle, BundleProcessor, Executor, Executors, NoSideInputs, OutputSink, SideInputs,
};
pub use metrics::{DistributionData, MetricKey, Metrics};
