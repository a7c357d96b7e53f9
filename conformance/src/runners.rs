//! The runner configurations every case runs on.

use oxbeam::PipelineOptions;

/// A runner and the options it runs with, plus what it can do.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Name in the ledger.
    pub name: &'static str,
    /// Pipeline options (`--runner`, fusion, lifting, parallelism...).
    pub options: PipelineOptions,
    /// Capabilities this runner implements; cases needing others are
    /// reported as Unimplemented.
    pub capabilities: &'static [&'static str],
}

/// Everything runner-local implements today.
const LOCAL_CAPABILITIES: &[&str] = &[
    "batch",
    "group_by_key",
    "combine",
    "flatten",
    "windowing",
    "merging_windows",
    "side_inputs",
    "tagged_outputs",
    "timestamps",
    "failure",
];

fn local(args: &[&str]) -> PipelineOptions {
    let mut argv = vec!["conformance", "--no-progress"];
    argv.extend_from_slice(args);
    PipelineOptions::try_parse_from(argv).expect("valid conformance runner options")
}

/// Every runner configuration of the workspace: runner-local fused (with one
/// and two threads), unfused, and without combiner lifting.
pub fn runner_configs() -> Vec<RunnerConfig> {
    vec![
        RunnerConfig {
            name: "local",
            options: local(&["--parallelism", "2"]),
            capabilities: LOCAL_CAPABILITIES,
        },
        RunnerConfig {
            name: "local-unfused",
            options: local(&["--parallelism", "2", "--no-fusion"]),
            capabilities: LOCAL_CAPABILITIES,
        },
        RunnerConfig {
            name: "local-unlifted",
            options: local(&["--parallelism", "1", "--no-combiner-lifting"]),
            capabilities: LOCAL_CAPABILITIES,
        },
    ]
}
