//! Integration tests of the Wasm executor: Rust guests built for
//! wasm32-unknown-unknown during the run, WAT guests compiled in-process,
//! every fault the sandbox must contain, and the Rust SDK end to end.

mod common;
mod faults;
mod rust_guest;
mod sdk;
mod wat_guest;
