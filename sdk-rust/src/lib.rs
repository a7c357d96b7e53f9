//! Oxbeam's Rust SDK: typed pipelines, DoFns, combiners, windowing and IO.
