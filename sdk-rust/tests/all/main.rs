//! Integration tests of the Rust SDK through the real local runner.

mod combiners;
mod common;
mod core;
mod errors;
mod grouping;
mod io;
mod metrics;
mod outputs;
mod proto;
mod side_inputs;
mod smoke;
mod windowing;
