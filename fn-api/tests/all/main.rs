//! Integration tests of the gRPC Fn API: harnesses in child processes
//! (this test binary re-executed, and Beam's own Python SDK harness).

mod beam_python;
mod embedding;
mod harness;
mod malformed;
mod testing;
mod throughput;
mod user_state;
