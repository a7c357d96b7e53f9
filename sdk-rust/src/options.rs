//! Pipeline options from the command line, in Beam's spirit.
//!
//! Flatten [`PipelineOptions`] into your program's own clap parser to add
//! flags such as `--input` and `--output`:
//!
//! ```
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     pipeline: oxbeam::PipelineOptions,
//!     #[arg(long)]
//!     output: String,
//! }
//! let args = Args::parse_from(["prog", "--parallelism", "2", "--no-fusion", "--streaming", "--output", "out"]);
//! assert_eq!(args.pipeline.parallelism, Some(2));
//! assert!(args.pipeline.no_fusion);
//! assert!(args.pipeline.streaming);
//! ```

use clap::Parser;

/// How and where a pipeline runs.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Runner executing the pipeline (`local`).
    #[arg(long, default_value = "local")]
    pub runner: String,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Run every transform as its own stage (to check fusion changes nothing).
    #[arg(long)]
    pub no_fusion: bool,
    /// Do not pre-combine before shuffles (to check lifting changes nothing).
    #[arg(long)]
    pub no_combiner_lifting: bool,
    /// Do not split straggling bundles for idle workers (dynamic work
    /// rebalancing).
    #[arg(long)]
    pub no_dynamic_splitting: bool,
    /// Memory for grouped data before spilling to disk, e.g. `512MiB`, `2G`.
    #[arg(long, value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
    /// Print the fused execution plan before running.
    #[arg(long)]
    pub dump_plan: bool,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Run on the streaming engine even when every PCollection is bounded
    /// (unbounded sources and TestStreams always do).
    #[arg(long)]
    pub streaming: bool,
    /// Where native Rust stages run (Beam's `--environment_type`):
    /// `EMBEDDED` in this process, `PROCESS`: in SDK harness processes,
    /// each this same binary re-run with the same arguments plus `--worker`
    /// (see `oxbeam::worker`), over the gRPC Fn API on 127.0.0.1, or
    /// `IN_MEMORY`: in this process, but through the whole Fn API protocol
    /// (an SDK harness thread over the in-memory transport).
    #[arg(
        long,
        alias = "environment_type",
        value_enum,
        ignore_case = true,
        default_value = "embedded"
    )]
    pub environment_type: EnvironmentType,
    /// With `--environment-type PROCESS`: the harness command, run by a
    /// shell with Beam's boot flags appended (Beam's
    /// `--environment_config`; a JSON `{"command": ...}` is accepted too).
    /// It must build the same pipeline and serve it (e.g. the program
    /// itself with `--worker`). Default: this binary with the arguments it
    /// was started with, plus `--worker`.
    #[arg(long, alias = "environment_config")]
    pub environment_config: Option<String>,
    /// SDK harness processes per environment with `--environment-type
    /// PROCESS` (Beam's `--sdk_worker_parallelism`; default 1).
    #[arg(long, alias = "sdk_worker_parallelism")]
    pub sdk_worker_parallelism: Option<usize>,
    /// Times a bundle is tried when its SDK harness process dies or
    /// disconnects (each retry on a fresh harness; user-code errors are
    /// never retried). Default 3.
    #[arg(long, alias = "max_bundle_attempts")]
    pub max_bundle_attempts: Option<usize>,
    /// Beam's boot flags, given to this binary when a runner starts it as
    /// an SDK harness (`--worker`).
    #[command(flatten)]
    pub worker: WorkerOptions,
}

/// The `--help` heading of [`WorkerOptions`].
const HARNESS_FLAGS: &str = "SDK harness (set by the runner)";

/// Where the native Rust stages of a pipeline run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EnvironmentType {
    /// In the runner's process (`oxbeam:env:native:v1`).
    #[default]
    Embedded,
    /// In SDK harness processes (`beam:env:process:v1`) running this
    /// binary in worker mode.
    Process,
    /// In this process, through the whole Fn API protocol: each
    /// environment's executor serves as an SDK harness on a thread, over
    /// the in-memory transport (no sockets, no serialization). For testing
    /// the protocol and measuring its cost apart from gRPC.
    #[value(name = "in-memory", alias = "in_memory")]
    InMemory,
}

/// The flags a runner passes when it starts a pipeline binary as an SDK
/// harness, as in Beam's boot protocol (`beam:env:process:v1`).
///
/// With `--worker`, [`Pipeline::run`](crate::Pipeline::run) serves bundles
/// of the pipeline's native stages on the runner's control endpoint until
/// the runner closes it, then exits the process, instead of running the
/// pipeline. Only `--worker`, `--id` and `--control_endpoint` are used; the
/// other endpoints are accepted (Oxbeam serves them all on the control
/// endpoint's server). The flags are global: a program with subcommands
/// accepts them after its subcommand, where the runner appends them.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Serve as an SDK harness for a runner instead of running the pipeline.
    #[arg(long, global = true, help_heading = HARNESS_FLAGS)]
    pub worker: bool,
    /// Worker id the runner gave this harness.
    #[arg(long, requires = "worker", global = true, help_heading = HARNESS_FLAGS)]
    pub id: Option<String>,
    /// The runner's Fn API control endpoint (`host:port`).
    #[arg(
        long = "control_endpoint",
        alias = "control-endpoint",
        requires = "worker",
        global = true, help_heading = HARNESS_FLAGS
    )]
    pub control_endpoint: Option<String>,
    /// The runner's logging endpoint (accepted, unused).
    #[arg(
        long = "logging_endpoint",
        alias = "logging-endpoint",
        requires = "worker",
        global = true, help_heading = HARNESS_FLAGS
    )]
    pub logging_endpoint: Option<String>,
    /// The runner's artifact endpoint (accepted, unused).
    #[arg(
        long = "artifact_endpoint",
        alias = "artifact-endpoint",
        requires = "worker",
        global = true, help_heading = HARNESS_FLAGS
    )]
    pub artifact_endpoint: Option<String>,
    /// The runner's provision endpoint (accepted, unused).
    #[arg(
        long = "provision_endpoint",
        alias = "provision-endpoint",
        requires = "worker",
        global = true, help_heading = HARNESS_FLAGS
    )]
    pub provision_endpoint: Option<String>,
    /// Beam's semi-persistent directory (accepted, unused).
    #[arg(
        long = "semi_persist_dir",
        alias = "semi-persist-dir",
        requires = "worker",
        global = true, help_heading = HARNESS_FLAGS
    )]
    pub semi_persist_dir: Option<String>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            runner: "local".into(),
            parallelism: None,
            no_fusion: false,
            no_combiner_lifting: false,
            no_dynamic_splitting: false,
            memory_budget: None,
            dump_plan: false,
            no_progress: false,
            streaming: false,
            environment_type: EnvironmentType::Embedded,
            environment_config: None,
            sdk_worker_parallelism: None,
            max_bundle_attempts: None,
            worker: WorkerOptions::default(),
        }
    }
}

#[derive(Parser)]
struct OnlyPipelineOptions {
    #[command(flatten)]
    options: PipelineOptions,
}

impl PipelineOptions {
    /// Parses the process's command line (exits with usage on bad flags).
    pub fn from_args() -> Self {
        OnlyPipelineOptions::parse().options
    }

    /// Parses `args` (the first is the program name).
    ///
    /// # Errors
    /// A clap error describing the bad flag.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        OnlyPipelineOptions::try_parse_from(args).map(|o| o.options)
    }
}

/// Parses a byte size: a number with an optional unit (`K`, `M`, `G`, `T`,
/// decimal or with `iB` binary, `B` optional).
///
/// # Errors
/// A message for an unknown unit or a bad number.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte size (e.g. 512MiB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown byte unit {other:?} in {s:?}")),
    };
    Ok((n * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_sizes() {
        let o = PipelineOptions::try_parse_from(["p", "--memory-budget", "2GiB", "--dump-plan"])
            .unwrap();
        assert_eq!(o.memory_budget, Some(2 << 30));
        assert!(o.dump_plan);
        assert_eq!(o.runner, "local");
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("3 parsecs").is_err());
        assert!(PipelineOptions::try_parse_from(["p", "--parallelism", "x"]).is_err());
        assert!(!o.streaming);
        assert!(
            PipelineOptions::try_parse_from(["p", "--streaming"])
                .unwrap()
                .streaming
        );
    }
}
