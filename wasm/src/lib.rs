//! # oxbeam-wasm: sandboxed WebAssembly user functions for any runner
//!
//! [`WasmExecutor`] is an `oxbeam_fn_api::Executor` for the environment
//! `oxbeam:env:wasm:v1` (`urns::wasm_functions::ENVIRONMENT`). Register it
//! with a runner's `Executors` and every stage whose transforms are Wasm
//! functions runs in wasmtime, fused with its Wasm neighbours and split from
//! native stages like any other environment.
//!
//! ```text
//!  ParDo{do_fn: FunctionSpec{oxbeam:fn:wasm_do_fn:v1, WasmFunctionPayload}}
//!  Combine*{combine_fn: FunctionSpec{oxbeam:fn:wasm_combine_fn:v1, ...}}
//!        │ descriptor
//!        ▼
//!  WasmExecutor ── compile once per module (cache keyed by content)
//!        │ create_processor: one instance per transform (InstancePre)
//!        ▼
//!  process_bundle: elements → 4k-element batches in the guest's arena
//!                  → one call per batch → outputs read from the guest's arena
//! ```
//!
//! The calling convention is ABI v1, written down in `wasm/ABI.md`: core
//! Wasm modules, no imports but WASI preview 1, a handful of exports; Rust guests get it from
//! the `oxbeam-wasm-guest` crate's macros, other languages implement it by
//! hand (the tests include a guest written in WAT).
//!
//! ## Sandbox and costs
//!
//! - **No imports but WASI preview 1**, deny by default ([`Grants`]): no
//!   files or network, an empty environment, no clocks or random bytes
//!   unless the function's payload grants them; standard output and error
//!   are forwarded and quoted in failures. Other imports are rejected.
//! - **Memory** is capped per instance ([`Limits::max_memory_bytes`],
//!   default 64 MiB); growing past it traps.
//! - **Time**: a background thread bumps the engine epoch every 5 ms; each
//!   bundle gets a wall-clock deadline ([`Limits::bundle_deadline`]), and
//!   optionally fuel. A guest that loops forever fails the bundle.
//! - Every guest failure (trap, deadline, memory cap, malformed output,
//!   returned error, panic) fails the bundle with
//!   `Error::UserCode{transform, message, element}`; the host never panics
//!   on guest behaviour, and a failed instance is replaced before the next
//!   bundle.
//! - Compiling a module costs milliseconds to seconds and happens once per
//!   executor; instantiating costs microseconds (copy-on-write memory
//!   images) and happens once per processor; a batch call costs well under
//!   a microsecond plus the copy of its bytes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use oxbeam_fn_api::Executors;
//! use oxbeam_model::urns;
//! use oxbeam_wasm::WasmExecutor;
//! let executors = Executors::new()
//!     .with(urns::wasm_functions::ENVIRONMENT, Arc::new(WasmExecutor::default()));
//! # let _ = executors;
//! ```

#![forbid(unsafe_code)]

mod abi;
mod codec;
pub mod dev;
mod executor;
mod guest;
mod runtime;
mod wasi;

pub use executor::{LoadedModule, WasmExecutor, WasmOptions, runs_wasm};
pub use guest::Limits;
pub use runtime::PERF_MAP_ENV;
pub use wasi::Grants;
