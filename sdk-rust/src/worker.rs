//! Worker mode: a pipeline binary serving as its own SDK harness, as in
//! Beam's Go SDK.
//!
//! With `--environment-type PROCESS`, [`Pipeline::run`] puts the
//! pipeline's native Rust stages in a `beam:env:process:v1` environment
//! whose command is this binary with the arguments it was started with,
//! plus `--worker`. The local runner starts that command once per harness
//! (see `--sdk-worker-parallelism`), adding Beam's boot flags (`--id`,
//! `--control_endpoint`, ...), and sends it the bundles of those stages
//! over the gRPC Fn API on 127.0.0.1.
//!
//! The harness process rebuilds the same pipeline (which registers the same
//! native functions under the same names, see [`crate::registry`]), and its
//! [`Pipeline::run`] sees `--worker`: instead of running the pipeline it
//! serves bundles until the runner closes the control stream, then exits
//! the process (status 0; 1 with the error on stderr if serving failed).
//! So a program should build its pipeline the same way whatever its
//! arguments and do nothing before `run` that must not happen once per
//! harness; code after `run` never runs in a harness.
//!
//! ```no_run
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     pipeline: oxbeam::PipelineOptions, // holds --environment-type and the boot flags
//! }
//! let p = oxbeam::Pipeline::new(Args::parse().pipeline);
//! p.create("Xs", vec![1i64, 2, 3]).map("Square", |x: &i64| x * x);
//! p.run()?; // `prog --environment-type PROCESS`: squares in harness processes
//! # Ok::<(), oxbeam::Error>(())
//! ```
//!
//! A program that does not parse its arguments with [`PipelineOptions`]
//! still serves as a worker: [`WorkerOptions::from_process_args`] reads the
//! boot flags from the command line. [`serve`] serves explicitly.
//!
//! [`Pipeline::run`]: crate::Pipeline::run
//! [`PipelineOptions`]: crate::PipelineOptions

use std::sync::Arc;

use oxbeam_fn_api::{BundleProcessor, Executor, HarnessConfig, serve_harness};
use oxbeam_model::fn_execution::ProcessBundleDescriptor;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_environments::environments;
use prost::Message;

use crate::exec::NativeExecutor;
pub use crate::options::WorkerOptions;
use crate::{Error, Pipeline, Result};

/// The flag that puts a pipeline binary in worker mode.
const WORKER_FLAG: &str = "--worker";

impl WorkerOptions {
    /// The boot flags on this process's command line, if it was started
    /// with `--worker` (for programs that do not parse their arguments
    /// with [`crate::PipelineOptions`]).
    pub fn from_process_args() -> Option<WorkerOptions> {
        Self::from_args(std::env::args().skip(1))
    }

    fn from_args(args: impl IntoIterator<Item = String>) -> Option<WorkerOptions> {
        let mut o = WorkerOptions::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == WORKER_FLAG {
                o.worker = true;
                continue;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            let slot = match name.replace('-', "_").as_str() {
                "id" => &mut o.id,
                "control_endpoint" => &mut o.control_endpoint,
                "logging_endpoint" => &mut o.logging_endpoint,
                "artifact_endpoint" => &mut o.artifact_endpoint,
                "provision_endpoint" => &mut o.provision_endpoint,
                "semi_persist_dir" => &mut o.semi_persist_dir,
                _ => continue,
            };
            *slot = value.or_else(|| args.next());
        }
        o.worker.then_some(o)
    }

    /// The harness's connection settings.
    ///
    /// # Errors
    /// [`Error::Runner`] without `--control_endpoint`.
    fn harness_config(&self) -> Result<HarnessConfig> {
        let control_endpoint = self.control_endpoint.clone().ok_or_else(|| {
            Error::Runner(
                "--worker needs --control_endpoint (the runner's Fn API control endpoint)".into(),
            )
        })?;
        Ok(HarnessConfig {
            control_endpoint,
            id: self.id.clone().unwrap_or_else(|| "oxbeam-worker".into()),
        })
    }
}

/// Serves as an SDK harness for `pipeline`'s native stages: connects to
/// `options.control_endpoint` and runs the bundles the runner sends on the
/// pipeline's native executor, until the runner closes the control stream.
///
/// # Errors
/// [`Error::Runner`] without a control endpoint; [`Error::Execution`]
/// (an `oxbeam_fn_api::Error::Harness`) if the runner cannot be reached or
/// the control stream fails.
pub fn serve(pipeline: &Pipeline, options: &WorkerOptions) -> Result<()> {
    let config = options.harness_config()?;
    let native: Arc<dyn Executor> = Arc::new(NativeExecutor::new(pipeline.registry()));
    let added = pipeline.added_executors();
    let executor = if added.is_empty() {
        native
    } else {
        Arc::new(FirstSupporting {
            executors: std::iter::once(native).chain(added).collect(),
        })
    };
    serve_harness(config, executor).map_err(Error::Execution)
}

/// The native executor and those added with
/// [`Pipeline::with_executor`](crate::Pipeline::with_executor) (Wasm), in
/// one harness: a stage runs on the first that supports all of it (the
/// runner fuses stages of one environment only).
struct FirstSupporting {
    executors: Vec<Arc<dyn Executor>>,
}

impl Executor for FirstSupporting {
    fn name(&self) -> &str {
        "native and added executors"
    }

    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> oxbeam_fn_api::Result<Box<dyn BundleProcessor>> {
        let mut unsupported = None;
        for e in &self.executors {
            match e.create_processor(descriptor.clone()) {
                Err(err @ oxbeam_fn_api::Error::Unsupported { .. }) => {
                    unsupported.get_or_insert(err);
                }
                other => return other,
            }
        }
        Err(unsupported.unwrap_or_else(|| {
            oxbeam_fn_api::Error::Internal("a harness without executors".into())
        }))
    }
}

/// The worker options of `pipeline` if this process is a worker: its
/// parsed options, else its command line.
pub(crate) fn worker_options(pipeline: &Pipeline) -> Option<WorkerOptions> {
    let parsed = &pipeline.options().worker;
    if parsed.worker {
        return Some(parsed.clone());
    }
    WorkerOptions::from_process_args()
}

/// Serves as a worker (see [`serve`]) and exits the process.
///
/// Ctrl-C in a terminal reaches the whole process group: the runner
/// decides what it means (drain, cancel), so the worker ignores SIGINT and
/// ends with its control stream.
pub(crate) fn serve_and_exit(pipeline: &Pipeline, options: &WorkerOptions) -> ! {
    let ignored = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGINT, ignored) {
        eprintln!("oxbeam worker: cannot ignore SIGINT: {e}");
    }
    match serve(pipeline, options) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("oxbeam worker: {e}");
            std::process::exit(1)
        }
    }
}

/// The `beam:env:process:v1` environment running `config` (see
/// `--environment-config`), by default this binary with the arguments it
/// was started with, as a worker.
///
/// # Errors
/// [`Error::Runner`] if the path of this executable is unknown, or
/// `config` is JSON without a `command` string.
pub(crate) fn process_environment(config: Option<&str>) -> Result<pb::Environment> {
    let command = match config.map(str::trim) {
        Some(c) if c.starts_with('{') => serde_json::from_str::<serde_json::Value>(c)
            .ok()
            .and_then(|v| v.get("command")?.as_str().map(str::to_string))
            .ok_or_else(|| {
                Error::Runner(format!(
                    "--environment-config {c:?}: expected a command or {{\"command\": \"...\"}}"
                ))
            })?,
        Some(c) => c.to_string(),
        None => {
            let exe = std::env::current_exe().map_err(|e| {
                Error::Runner(format!("cannot find this program's executable: {e}"))
            })?;
            let mut words = vec![shell_quote(&exe.to_string_lossy())];
            words.extend(std::env::args().skip(1).map(|a| shell_quote(&a)));
            words.push(WORKER_FLAG.to_string());
            words.join(" ")
        }
    };
    Ok(pb::Environment {
        urn: environments::PROCESS.to_string(),
        payload: pb::ProcessPayload {
            command,
            ..Default::default()
        }
        .encode_to_vec()
        .into(),
        // `serve_harness` reads inputs embedded in ProcessBundleRequests.
        capabilities: vec![oxbeam_fn_api::CONTROL_REQUEST_ELEMENTS_EMBEDDING.to_string()],
        ..Default::default()
    })
}

/// `s` as one word of a POSIX shell command.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_flags_are_read_from_any_command_line() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(WorkerOptions::from_args(args(&["--output", "x"])), None);
        let o = WorkerOptions::from_args(args(&[
            "--output",
            "x",
            "--worker",
            "--id=w-1",
            "--control_endpoint",
            "127.0.0.1:5",
            "--semi-persist-dir=/tmp/d",
        ]))
        .unwrap();
        assert_eq!(o.id.as_deref(), Some("w-1"));
        assert_eq!(o.control_endpoint.as_deref(), Some("127.0.0.1:5"));
        assert_eq!(o.semi_persist_dir.as_deref(), Some("/tmp/d"));
        assert_eq!(o.harness_config().unwrap().control_endpoint, "127.0.0.1:5");
        let bare = WorkerOptions::from_args(args(&["--worker"])).unwrap();
        assert!(bare.harness_config().is_err());
    }

    #[test]
    fn environment_config_names_the_harness_command() {
        let command = |config| {
            let env = process_environment(config).unwrap();
            pb::ProcessPayload::decode(env.payload.as_ref())
                .unwrap()
                .command
        };
        assert_eq!(command(Some("/bin/w --a --worker")), "/bin/w --a --worker");
        assert_eq!(command(Some(r#"{"command": "/bin/w"}"#)), "/bin/w");
        assert!(command(None).ends_with(" --worker"));
        assert!(process_environment(Some(r#"{"cmd": 1}"#)).is_err());
    }

    #[test]
    fn shell_words_survive_the_shell() {
        assert_eq!(shell_quote("--out=/a/b"), "--out=/a/b");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
