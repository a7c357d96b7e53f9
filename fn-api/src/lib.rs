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
//! - User state of stateful transforms is read and written through the
//!   bundle's [`UserState`] (Beam's user-state `StateKey`s: bag, multimap
//!   keys, multimap, ordered list, by transform, state id, encoded window
//!   and encoded key). Timers come in as [`Bundle::timers`] and go out
//!   through [`OutputSink::emit_timer`], as `beam:coder:timer:v1` bytes per
//!   (transform, timer family). The runner keeps one key in one bundle at a
//!   time, so reads see all earlier writes.
//!
//! In-process executors (native Rust, Python via pyo3, Wasm) implement these
//! traits directly; the gRPC Fn API adapts the same traits across processes.
//!
//! ## Across processes: the Fn API over gRPC
//!
//! ```text
//!  runner ── GrpcExecutor ──▶ FnServer (127.0.0.1:port) ◀══ gRPC ══▶ SDK harness process
//!            (an Executor)    Control, Data, State,          Beam's own (Python, Java, Go),
//!                             Logging, Provision             or serve_harness(any Executor)
//! ```
//!
//! - [`FnServer`] serves Beam's Fn API services; [`GrpcExecutor`] is an
//!   [`Executor`] whose processors drive one connected harness: descriptors
//!   are registered, inputs stream in ~1 MB `Elements` batches, outputs go
//!   to the bundle's [`OutputSink`], side inputs and user state are
//!   answered over the State API from [`SideInputs`] and [`UserState`]
//!   (paged with continuation tokens), timers travel on the data channel
//!   (`Elements.timers`, one stream per timer family), harness errors become [`Error::UserCode`],
//!   and the user metrics a harness reports (`ProcessBundleResponse`
//!   MonitoringInfos) are merged into the bundle's [`Metrics`].
//! - [`serve_harness`] is the other end: it runs bundles sent by a runner
//!   on any in-process [`Executor`], so that executor can be a harness in
//!   its own process.
//! - [`Harnesses`] starts one harness per `beam:env:process:v1` or
//!   `beam:env:external:v1` environment of a job and stops them at its end
//!   (closing their control streams first, so they exit cleanly), or at once
//!   when the job is cancelled ([`Harnesses::cancel`]).
//!
//! - Harnesses reach the runner through a [`Transport`]: [`GrpcTransport`]
//!   (tonic, across processes) or [`InMemoryTransport`]
//!   ([`FnServer::in_memory_transport`]): the same channels wired straight
//!   to the server's services, messages moved as values, never serialized.
//!   [`serve_harness_with`] serves over either; [`InMemoryHarness`] wraps
//!   any executor so its bundles go through the whole protocol in this
//!   process.
//!
//! Cost: a harness process is started once per job; each bundle costs one
//! control round trip plus its data, streamed over HTTP/2 with large flow
//! control windows. Descriptors are registered once per harness. Small
//! bundles (up to [`EMBED_BYTES`] of data) skip the data channel: their
//! inputs ride in the ProcessBundleRequest when the environment declares
//! [`CONTROL_REQUEST_ELEMENTS_EMBEDDING`] (Oxbeam's harnesses do), and
//! Oxbeam's harness returns their outputs in the response, since
//! [`FnServer`] declares control-response embedding among its runner
//! capabilities (ProvisionInfo).

mod bounded_trie;
mod error;
mod executor;
mod grpc;
mod metrics;

pub use bounded_trie::BoundedTrie;
pub use error::UserCodeError;
pub use error::{Error, Result};
pub use executor::{
    Bundle, BundleProcessor, ElementSplits, Executor, Executors, NoSideInputs, NoUserState,
    OutputSink, Rebalancer, Residual, SideInputs, UserState, UserStateKey, UserStateKind,
};
pub use grpc::{
    CONTROL_REQUEST_ELEMENTS_EMBEDDING, EMBED_BYTES, FnServer, GrpcExecutor, GrpcTransport,
    HarnessConfig, HarnessOptions, Harnesses, InMemoryHarness, InMemoryTransport, MessageStream,
    OutboundStream, Transport, serve_harness, serve_harness_with, warm,
};
pub use metrics::{DistributionData, MetricKey, Metrics};
