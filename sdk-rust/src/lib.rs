//! # oxbeam: the Rust SDK of Oxbeam
//!
//! Write a pipeline of typed [`PCollection`]s and transforms; the SDK emits a
//! Beam pipeline proto, and a [`Runner`] (by default the in-process
//! [`LocalRunner`]) executes it, running your Rust code in the native
//! executor.
//!
//! ```
//! use oxbeam::Pipeline;
//! let p = Pipeline::default();
//! let lines = p.create("Lines", vec!["a b".to_string(), "b c".to_string()]);
//! let counts = lines
//!     .flat_map("Split", |l: &String| l.split(' ').map(str::to_string).collect::<Vec<_>>())
//!     .count_per_element("Count");
//! let proto = p.to_proto();
//! assert!(proto.components.unwrap().transforms.len() > 5);
//! // p.run()?  executes it with the runner chosen by `--runner` (default local).
//! # let _ = counts;
//! ```
//!
//! ## How it fits together
//!
//! - [`Pipeline`], [`PCollection<T>`]: building. Elements are typed; each type
//!   has a [`Coder`] through [`Element`] (Beam standard coders for standard
//!   types, serde via [`serde_element!`] for yours).
//! - Transforms are methods: `map`, `flat_map`, `filter`, `with_keys`,
//!   `keys`, `values`, `kv_swap`, `group_by_key`, `co_group_by_key`,
//!   `combine_per_key`, `combine_globally`, `count_per_element`, `distinct`,
//!   `partition`, `flatten_with`, `reshuffle`, `with_timestamps`,
//!   `window_into`, `par_do` ([`ParDo`] of a [`DoFn`] with tagged outputs
//!   and [`SideInput`]s), `stateful_par_do` (a [`StatefulDoFn`] with
//!   per-key [`state`] and timers); sources on [`Pipeline`] (`create`,
//!   `generate_sequence`, `impulse`); streaming sources: [`TestStream`]
//!   (scripted events for tests) and [`io::Generate`] (synthetic, unbounded);
//!   composites with [`PTransform`] and
//!   `apply`; built-in combiners in [`combiners`]; file IO in [`io`].
//! - The proto references your functions by name: every DoFn, closure and
//!   CombineFn is registered in a [`Registry`] under its transform's unique
//!   name. **The same binary rebuilding the same pipeline registers the same
//!   names**, which is how a worker process finds them (see [`registry`]).
//! - [`NativeExecutor`] runs fused stages of that code for any runner
//!   (`oxbeam_fn_api::Executor`): typed values flow between fused transforms
//!   with no per-element allocation or boxing; bytes exist only at stage
//!   boundaries. A panic fails the job with an error naming the transform,
//!   the panic message and the element.
//! - [`PipelineOptions`] parse `--runner`, `--parallelism`, `--no-fusion`,
//!   `--memory-budget`, `--dump-plan` with clap; flatten them into your own
//!   parser. `--environment-type PROCESS` runs the native stages in SDK
//!   harness processes: this same binary in [`worker`] mode. [`metrics`] are counters, distributions and gauges usable in
//!   user code, reported in [`PipelineResult`].
//!
//! ## Costs
//!
//! Building a pipeline is cheap and single-threaded. At run time each worker
//! thread gets its own clone of every DoFn (`setup` once per clone). Elements
//! move by value through a fused stage; a PCollection read by several
//! transforms is cloned for all but one of them.

#![forbid(unsafe_code)]

pub mod coder;
mod combine;
pub mod combiners;
mod dofn;
mod error;
pub(crate) mod exec;
mod handle;
pub mod io;
pub mod metrics;
mod options;
mod pipeline;
pub mod registry;
mod runner;
pub mod sdf;
pub mod state;
pub mod test_stream;
pub mod testing;
mod transforms;
mod view;
pub mod wasm;
pub mod window;
pub mod worker;

pub use coder::{Coder, CoderSpec, Element};
pub use combine::{CombineFn, CombineGlobally, CombinePerKey};
pub use dofn::{DoFn, FinishBundleContext, ProcessContext, TupleTag};
pub use error::{Error, Result};
pub use exec::NativeExecutor;
pub use handle::PipelineHandle;
pub use options::{EnvironmentType, PipelineOptions, WorkerOptions, parse_bytes};
pub use pipeline::{NATIVE_ENVIRONMENT_ID, PBegin, PCollection, PTransform, PValue, Pipeline};
pub use registry::{Registry, global_registry};
pub use runner::{LocalRunner, PipelineResult, Runner};
pub use state::StatefulDoFn;
pub use test_stream::{TestStream, TimestampedValue};
pub use transforms::core::CoGrouped;
pub use transforms::fns::{ByRef, ByValue, FlatMapFn, MapFn};
pub use transforms::pardo::{ParDo, TaggedOutputs};
pub use view::SideInput;
pub use window::WindowFn;

/// Event-time types shared with the runner: timestamps, windows, panes.
pub use oxbeam_model::window::{BoundedWindow, PaneInfo, PaneTiming, Timestamp};
