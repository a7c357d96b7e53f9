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
    /// Run the steps' user functions as Wasm stages where they have a Wasm
    /// twin (see [`crate::build_with`]).
    pub wasm: bool,
    /// Run the native stages out of process: in SDK harness processes of
    /// this conformance worker binary (`oxbeam-conformance-worker`), which
    /// rebuilds the case's pipeline and serves it over the gRPC Fn API
    /// (`--environment-type PROCESS` of the Rust SDK).
    pub harness: Option<std::path::PathBuf>,
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
    "splittable_dofn",
];

/// Runner-local with `args`, in process (no harness).
fn config(name: &'static str, args: &[&str], wasm: bool) -> RunnerConfig {
    RunnerConfig {
        name,
        options: local(args),
        capabilities: LOCAL_CAPABILITIES,
        wasm,
        harness: None,
    }
}

fn local(args: &[&str]) -> PipelineOptions {
    let mut argv = vec!["conformance", "--no-progress"];
    argv.extend_from_slice(args);
    PipelineOptions::try_parse_from(argv).expect("valid conformance runner options")
}

/// Every runner configuration of the workspace: runner-local fused (with one
/// and two threads), unfused, and without combiner lifting; and runner-local
/// with the user functions as Wasm stages, lifted and fused, and unlifted and
/// unfused.
pub fn runner_configs() -> Vec<RunnerConfig> {
    vec![
        config("local", &["--parallelism", "2"], false),
        config(
            "local-unfused",
            &["--parallelism", "2", "--no-fusion"],
            false,
        ),
        config(
            "local-unlifted",
            &["--parallelism", "1", "--no-combiner-lifting"],
            false,
        ),
        config("local-wasm", &["--parallelism", "2"], true),
        config(
            "wasm-unlifted",
            &["--parallelism", "1", "--no-fusion", "--no-combiner-lifting"],
            true,
        ),
    ]
}

/// Runner-local with every stage (native and Wasm) behind the whole Fn API
/// protocol, but in this process: each executor serves as an SDK harness
/// on a thread, over the in-memory transport (`--environment-type
/// in-memory`). Fused and unfused.
pub fn in_memory_configs() -> Vec<RunnerConfig> {
    vec![
        config(
            "in-memory",
            &["--parallelism", "2", "--environment-type", "in-memory"],
            false,
        ),
        config(
            "in-memory-wasm-unfused",
            &[
                "--parallelism",
                "2",
                "--no-fusion",
                "--environment-type",
                "in-memory",
            ],
            true,
        ),
    ]
}

/// Runner-local with every native stage in SDK harness processes started
/// from `worker` (the `oxbeam-conformance-worker` binary), fused and
/// unfused, and with the Wasm twins' stages there too: the same cases must
/// give the same outputs and failures as in process.
pub fn out_of_process_configs(worker: &std::path::Path) -> Vec<RunnerConfig> {
    let config = |name, args: &[&str], wasm| RunnerConfig {
        harness: Some(worker.to_path_buf()),
        ..config(name, args, wasm)
    };
    vec![
        config("process", &["--parallelism", "2"], false),
        // The Wasm stages, too, in harness processes (their own environment).
        config("process-wasm", &["--parallelism", "2"], true),
        config(
            "process-unfused",
            &[
                "--parallelism",
                "2",
                "--no-fusion",
                "--sdk-worker-parallelism",
                "2",
            ],
            false,
        ),
    ]
}
