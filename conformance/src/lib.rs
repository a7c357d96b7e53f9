//! # oxbeam-conformance: one suite every runner must pass
//!
//! Conformance cases are data (`conformance/cases/*.yaml`): an input of
//! timestamped `(key, value)` pairs, a list of steps from a small vocabulary
//! ([`Step`]), and the exact expected output lines (or the expected failure).
//! One interpreter ([`build`]) turns a case into a Rust SDK pipeline; the
//! suite runs it on every [`RunnerConfig`] the workspace has and compares
//! outputs as sorted multisets of lines.
//!
//! A runner configuration with [`RunnerConfig::wasm`] set runs the same
//! cases with every user function that has a Wasm twin (maps, filters, the
//! timestamping DoFn, the per-key combiners, the panicking DoFn) as a Wasm
//! stage (the `oxbeam-wasm-guest` example guests, built for
//! wasm32-unknown-unknown on first use): same expected outputs, same
//! failures.
//!
//! A runner configuration with [`RunnerConfig::harness`] set runs every
//! native stage out of process, in SDK harness processes of the
//! `oxbeam-conformance-worker` binary over the gRPC Fn API (see
//! [`out_of_process_configs`]): same expected outputs, same failures.
//! [`in_memory_configs`] run every stage through the same protocol in this
//! process, over the in-memory transport.
//!
//! Each case names the capabilities it needs; a runner that lacks one counts
//! the case as *Unimplemented* in the [`Ledger`] instead of running it, so the
//! ledger says honestly what each runner supports.
//!
//! ```no_run
//! let cases = oxbeam_conformance::load_cases(oxbeam_conformance::cases_dir()).unwrap();
//! for runner in oxbeam_conformance::runner_configs() {
//!     for case in &cases {
//!         let outcome = oxbeam_conformance::run_case(case, &runner);
//!         println!("{} on {}: {:?}", case.name, runner.name, outcome);
//!     }
//! }
//! ```

mod case;
mod interpret;
mod ledger;
mod runners;
mod wasm;

pub use case::{Case, Expected, Input, Step, WindowSpec, load_cases};
pub use interpret::{build, build_with};
pub use ledger::{Ledger, Outcome, run_case};
pub use runners::{RunnerConfig, in_memory_configs, out_of_process_configs, runner_configs};

/// Adds this process's Wasm executor to `p` (what a harness serving a
/// case's Wasm stages needs; the modules travel in the stages' payloads).
pub fn register_wasm(p: &oxbeam::Pipeline) {
    wasm::register(p);
}

/// The directory holding the bundled cases.
pub fn cases_dir() -> std::path::PathBuf {
    std::path::Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("cases")
}
