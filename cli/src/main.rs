//! `oxbeam`: the command-line entry point to Oxbeam.

use clap::{Parser, Subcommand};

/// Oxbeam: a portable data-processing system, wire-compatible with Apache Beam.
#[derive(Debug, Parser)]
#[command(name = "oxbeam", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the Beam URNs and constants this build knows (from the protos'
    /// beam_urn / beam_constant options), as `path<TAB>value`.
    Urns {
        /// Only entries whose path or value contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Print the optimized execution plan of a serialized Pipeline proto
    /// (the same text as `--dump-plan`).
    Inspect {
        /// File holding a binary-encoded `Pipeline` message.
        pipeline: std::path::PathBuf,
        /// Plan without fusion: one stage per executable transform.
        #[arg(long)]
        no_fusion: bool,
        /// Plan without combiner lifting.
        #[arg(long)]
        no_combiner_lifting: bool,
    },
    /// Run a serialized Pipeline proto on the local runner. Stages in
    /// `beam:env:process:v1` / `beam:env:external:v1` environments run on SDK
    /// harnesses over the gRPC Fn API (e.g. Beam Python's
    /// `python -m apache_beam.runners.worker.sdk_worker_main`).
    Run {
        /// File holding a binary-encoded `Pipeline` message.
        pipeline: std::path::PathBuf,
        /// Worker threads (default: the number of cores).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Pipeline options handed to SDK harnesses, as a JSON object.
        #[arg(long, default_value = "{}")]
        pipeline_options: String,
        /// Print the fused plan to stderr before running.
        #[arg(long)]
        dump_plan: bool,
    },
}

fn run(
    path: &std::path::Path,
    parallelism: Option<usize>,
    pipeline_options: String,
    dump_plan: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let pipeline = oxbeam_runner_core::decode_pipeline(&bytes)
        .with_context(|| format!("{} is not a serialized Pipeline proto", path.display()))?;
    let defaults = oxbeam_runner_local::LocalOptions::default();
    let options = oxbeam_runner_local::LocalOptions {
        parallelism: parallelism.unwrap_or(defaults.parallelism).max(1),
        dump_plan,
        harness: oxbeam_fn_api::HarnessOptions {
            pipeline_options_json: pipeline_options,
            echo_output: true,
            ..Default::default()
        },
        ..defaults
    };
    let result = oxbeam_runner_local::LocalRunner::new(options)
        .run(&pipeline, &oxbeam_fn_api::Executors::new())
        .with_context(|| format!("the pipeline in {} failed", path.display()))?;
    for s in &result.steps {
        eprintln!("{:>10.3?}  {} ({} tasks)", s.elapsed, s.step, s.tasks);
    }
    Ok(())
}

fn inspect(path: &std::path::Path, fusion: bool, combiner_lifting: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let pipeline = oxbeam_runner_core::decode_pipeline(&bytes)
        .with_context(|| format!("{} is not a serialized Pipeline proto", path.display()))?;
    let options = oxbeam_runner_core::PlanOptions {
        fusion,
        combiner_lifting,
        ..Default::default()
    };
    let plan = oxbeam_runner_core::plan(&pipeline, &options)
        .with_context(|| format!("cannot plan the pipeline in {}", path.display()))?;
    print!("{plan}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect {
            pipeline,
            no_fusion,
            no_combiner_lifting,
        } => {
            inspect(&pipeline, !no_fusion, !no_combiner_lifting)?;
        }
        Command::Run {
            pipeline,
            parallelism,
            pipeline_options,
            dump_plan,
        } => run(&pipeline, parallelism, pipeline_options, dump_plan)?,
        Command::Urns { filter } => {
            for (path, value) in oxbeam_model::urns::ALL {
                if filter
                    .as_deref()
                    .is_none_or(|f| path.contains(f) || value.contains(f))
                {
                    println!("{path}\t{value}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn inspect_plans_a_pipeline_file_and_rejects_garbage() {
        let dir = std::env::temp_dir().join(format!("oxbeam-inspect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("empty.pb");
        std::fs::write(
            &good,
            oxbeam_model::pipeline::Pipeline::default().encode_to_vec(),
        )
        .unwrap();
        super::inspect(&good, true, true).unwrap();
        let bad = dir.join("bad.pb");
        std::fs::write(&bad, b"\xff\xff\xff").unwrap();
        let err = super::inspect(&bad, true, true).unwrap_err();
        assert!(
            format!("{err:#}").contains("is not a serialized Pipeline proto"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
