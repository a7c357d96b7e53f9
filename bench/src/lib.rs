//! Oxbeam benchmark workloads (see `bench/README.md` and `bench/run`).
