//! The `oxbeam` binary, run as a user or a runner would.

mod worker;
