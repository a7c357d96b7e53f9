//! `oxbeam-conformance-worker`: the SDK harness of the out-of-process
//! conformance configurations (`oxbeam_conformance::out_of_process_configs`).
//!
//! Started by the runner as `oxbeam-conformance-worker --case NAME --output
//! PREFIX --worker` plus Beam's boot flags: builds the bundled case `NAME`
//! exactly as the suite does (so its native functions are registered under
//! the same names) and serves its native and Wasm stages until the runner
//! is done.

use clap::Parser;
use oxbeam::{Pipeline, PipelineOptions};

/// Serves the native stages of one conformance case as an SDK harness.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pipeline: PipelineOptions,
    /// Name of the bundled case to build.
    #[arg(long)]
    case: String,
    /// The case's output prefix, as the suite gave it.
    #[arg(long)]
    output: String,
    /// The Wasm guest module the suite built the case with (Wasm
    /// configurations): the case is built with its Wasm twins, as there.
    #[arg(long)]
    wasm_guest: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.pipeline.worker.worker,
        "oxbeam-conformance-worker only serves as an SDK harness (--worker)"
    );
    let case = oxbeam_conformance::load_cases(oxbeam_conformance::cases_dir())?
        .into_iter()
        .find(|c| c.name == args.case)
        .ok_or_else(|| anyhow::anyhow!("no conformance case named {:?}", args.case))?;
    let guest = match &args.wasm_guest {
        Some(path) => Some(std::sync::Arc::new(std::fs::read(path).map_err(|e| {
            anyhow::anyhow!("cannot read the Wasm guest {}: {e}", path.display())
        })?)),
        None => None,
    };
    let p = Pipeline::new(args.pipeline);
    if guest.is_some() {
        oxbeam_conformance::register_wasm(&p);
    }
    oxbeam_conformance::build_with(&case, &p, &args.output, guest.as_ref());
    // With --worker, run() serves the runner's bundles and exits.
    p.run()?;
    Ok(())
}
