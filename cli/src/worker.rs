//! `oxbeam worker`: an SDK harness for stages that need no user binary.
//!
//! A runner starts it for a `beam:env:process:v1` environment whose
//! command is `oxbeam worker`, adding Beam's boot flags; it connects to the
//! control endpoint and serves bundles until the runner closes the control
//! stream. Stages whose functions are WebAssembly (`oxbeam:fn:wasm_do_fn:v1`,
//! `oxbeam:fn:wasm_combine_fn:v1`, modules carried in the payloads) run on
//! the Wasm executor; every other stage runs on the Rust SDK's native
//! executor with no registered functions, which runs Beam's built-in
//! transforms (window assignment with standard window fns, flattens,
//! data ports) and rejects native user functions with an error naming them.

use std::sync::Arc;

use oxbeam_fn_api::{BundleProcessor, Executor, HarnessConfig, Result};
use oxbeam_model::fn_execution::ProcessBundleDescriptor;

/// Beam's boot flags, as a runner passes them to a process harness.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    /// Worker id the runner gave this harness (sent on every stream).
    #[arg(long, default_value = "oxbeam-worker")]
    id: String,
    /// The runner's Fn API control endpoint (`host:port`). Default: the
    /// `url` of `$CONTROL_API_SERVICE_DESCRIPTOR`, as Beam runners set it.
    #[arg(long = "control_endpoint", alias = "control-endpoint")]
    control_endpoint: Option<String>,
    /// The runner's logging endpoint (accepted; logs go to stderr).
    #[arg(long = "logging_endpoint", alias = "logging-endpoint")]
    logging_endpoint: Option<String>,
    /// The runner's artifact endpoint (accepted; Wasm modules travel in the
    /// stage payloads).
    #[arg(long = "artifact_endpoint", alias = "artifact-endpoint")]
    artifact_endpoint: Option<String>,
    /// The runner's provision endpoint (accepted, unused).
    #[arg(long = "provision_endpoint", alias = "provision-endpoint")]
    provision_endpoint: Option<String>,
    /// Beam's semi-persistent directory (accepted, unused).
    #[arg(long = "semi_persist_dir", alias = "semi-persist-dir")]
    semi_persist_dir: Option<std::path::PathBuf>,
}

/// Serves as a harness until the runner closes the control stream.
pub(crate) fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let control_endpoint = match args.control_endpoint {
        Some(c) => c,
        None => std::env::var("CONTROL_API_SERVICE_DESCRIPTOR")
            .ok()
            .and_then(|d| descriptor_url(&d))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--control_endpoint is required (or CONTROL_API_SERVICE_DESCRIPTOR)"
                )
            })?,
    };
    let config = HarnessConfig {
        control_endpoint,
        id: args.id,
    };
    // Ctrl-C in a terminal reaches the whole process group; the runner
    // decides what it means, and this harness ends with its control stream.
    let ignored = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGINT, ignored) {
        eprintln!("oxbeam worker: cannot ignore SIGINT: {e}");
    }
    oxbeam_fn_api::serve_harness(config, Arc::new(WorkerExecutor::new()))
        .map_err(|e| anyhow::anyhow!("oxbeam worker: {e}"))
}

/// The `url` of a text-format `ApiServiceDescriptor` (`url: "host:port"`).
fn descriptor_url(text: &str) -> Option<String> {
    let rest = text.trim().strip_prefix("url")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim();
    let url = rest.trim_matches('"').trim();
    (!url.is_empty()).then(|| url.to_string())
}

/// Runs each stage on the executor its functions need.
struct WorkerExecutor {
    wasm: oxbeam_wasm::WasmExecutor,
    native: oxbeam::NativeExecutor,
}

impl WorkerExecutor {
    fn new() -> Self {
        WorkerExecutor {
            wasm: oxbeam_wasm::WasmExecutor::default(),
            native: oxbeam::NativeExecutor::new(Arc::new(oxbeam::Registry::default())),
        }
    }
}

impl Executor for WorkerExecutor {
    fn name(&self) -> &str {
        "oxbeam worker (Wasm and built-in transforms)"
    }

    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        if oxbeam_wasm::runs_wasm(&descriptor) {
            self.wasm.create_processor(descriptor)
        } else {
            self.native.create_processor(descriptor)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_beams_descriptor_text() {
        assert_eq!(
            super::descriptor_url("url: \"127.0.0.1:4000\"").as_deref(),
            Some("127.0.0.1:4000")
        );
        assert_eq!(super::descriptor_url("nonsense"), None);
    }
}
