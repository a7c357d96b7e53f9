//! Integration tests of `oxbeam-job-server`: bad input gets clear errors,
//! never a panic, and the server keeps serving the next job.

mod artifacts;
mod bad_input;
mod drain;
mod fuzz;
mod testing;
