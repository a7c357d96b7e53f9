//! Helpers shared by the test modules.

use oxbeam::{Pipeline, PipelineOptions};

/// A pipeline on the local runner with 2 threads and no progress bar.
pub fn pipeline() -> Pipeline {
    Pipeline::new(PipelineOptions {
        parallelism: Some(2),
        no_progress: true,
        ..Default::default()
    })
}

/// Same, with fusion disabled.
#[allow(dead_code)]
pub fn unfused_pipeline() -> Pipeline {
    Pipeline::new(PipelineOptions {
        parallelism: Some(2),
        no_progress: true,
        no_fusion: true,
        ..Default::default()
    })
}

/// Strings from string literals.
#[allow(dead_code)]
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
