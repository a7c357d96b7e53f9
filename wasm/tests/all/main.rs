//! Integration tests of the Wasm executor: Rust guests built for
//! wasm32-unknown-unknown (and wasm32-wasip1) during the run, WAT guests
//! compiled in-process, WASI imports deny by default,
//! every fault the sandbox must contain, and the Rust SDK end to end.

mod common;
mod faults;
mod rust_guest;
mod sdk;
mod wasi;
mod wat_guest;
