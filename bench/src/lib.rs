//! Oxbeam benchmark workloads and data generators.
//!
//! `bench/run` runs each workload on Oxbeam and on its peers (apache-beam
//! Python) in the same run and prints a table with the ratios; see
//! `bench/README.md`.

pub mod corpus;
