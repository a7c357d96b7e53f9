//! Integration tests of the Rust SDK through the real local runner.

mod combiners;
mod common;
mod core;
mod errors;
mod grouping;
mod interrupt;
mod io;
mod metrics;
mod outputs;
mod proto;
mod rebalancing;
mod redis;
mod sdf;
mod side_inputs;
mod smoke;
mod state;
mod streaming;
mod triggers;
mod watch_files;
mod windowing;
