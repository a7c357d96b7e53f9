//! `oxbeam`: the command-line entry point to Oxbeam.

mod log;
mod worker;

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
    /// Serve Beam's Job API (JobService, artifact staging and retrieval):
    /// Beam SDKs submit with `--runner=PortableRunner
    /// --job_endpoint=HOST:PORT`; each job runs on the local runner.
    #[command(name = "job-server")]
    JobServer(JobServerArgs),
    /// Serve as an SDK harness for a runner (Beam's boot protocol): the
    /// command of a `beam:env:process:v1` environment, started by the
    /// runner with `--id`, `--control_endpoint` and the other boot flags.
    /// Runs stages of WebAssembly functions and of Beam's built-in
    /// transforms until the runner closes the control stream. (Native Rust
    /// functions need their own pipeline binary as the harness: see
    /// `--environment-type PROCESS` of the Rust SDK.)
    Worker(worker::WorkerArgs),
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
        /// Run on the streaming engine even when every PCollection is
        /// bounded. Ctrl-C drains a running pipeline (every window fires,
        /// exit status 0); a second Ctrl-C cancels it.
        #[arg(long)]
        streaming: bool,
        /// Times a bundle is tried when its SDK harness process dies or
        /// disconnects; each retry runs on a fresh harness. User-code errors
        /// are never retried.
        #[arg(long, alias = "max_bundle_attempts", default_value_t = 3)]
        max_bundle_attempts: usize,
        /// Do not split straggling bundles for idle workers (dynamic work
        /// rebalancing; the step summary counts the splits).
        #[arg(long)]
        no_dynamic_splitting: bool,
        /// SDK harness processes per process environment (Beam's
        /// `--sdk_worker_parallelism`). Bundles on harnesses are split for
        /// idle workers only with 2 or more.
        #[arg(long, alias = "sdk_worker_parallelism", default_value_t = 1)]
        sdk_worker_parallelism: usize,
    },
}

/// Flags of `oxbeam job-server`; the Prism-compatible ones (`--log_level`,
/// `--log_kind`, `--serve_http`, `--idle_shutdown_timeout`) are accepted so
/// scripts written for Beam's Prism runner work unchanged.
#[derive(Debug, clap::Args)]
struct JobServerArgs {
    /// Port of the JobService (0: any free port).
    #[arg(long = "job_port", alias = "job-port", default_value_t = 8099)]
    job_port: u16,
    /// Port of the artifact staging and retrieval services (default: the
    /// job port).
    #[arg(long = "artifact_port", alias = "artifact-port")]
    artifact_port: Option<u16>,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Worker threads per job (default: the number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Directory for staged artifacts (default: a temporary directory).
    #[arg(long = "staging_dir", alias = "staging-dir")]
    staging_dir: Option<std::path::PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log_level", alias = "log-level", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long = "log_kind", alias = "log-kind", value_parser = ["text", "json", "dev"], default_value = "text")]
    log_kind: String,
    /// Accepted for Prism compatibility; Oxbeam serves no web UI.
    #[arg(long = "serve_http", alias = "serve-http", action = clap::ArgAction::Set, default_value_t = false)]
    serve_http: bool,
    /// Stop after this long with no job and no request (e.g. `30s`, `5m`,
    /// `1h`; `0` or absent: never).
    #[arg(long = "idle_shutdown_timeout", alias = "idle-shutdown-timeout", value_parser = parse_duration)]
    idle_shutdown_timeout: Option<std::time::Duration>,
    /// Echo SDK harness processes' output to stderr.
    #[arg(long)]
    echo_harness_output: bool,
    /// Python interpreter (with apache-beam) of Beam Python's embedded
    /// environments, which run as harness processes (default:
    /// $OXBEAM_PYTHON, else python3).
    #[arg(long)]
    python: Option<String>,
    /// Beam Python SDK harnesses (`PYTHON -m
    /// apache_beam.runners.worker.sdk_worker_main`) to keep started ahead,
    /// Beam imported, for PROCESS environments that run that command; each
    /// saves a job ~0.7 s of harness start (default: one per core; 0: none).
    #[arg(long = "prestart_harnesses", alias = "prestart-harnesses")]
    prestart_harnesses: Option<usize>,
}

/// Parses `500ms`, `30s`, `5m`, `1h` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn job_server(args: JobServerArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let level: tracing::Level = args.log_level.parse().map_err(|_| {
        anyhow::anyhow!(
            "--log_level {:?}: use error, warn, info, debug or trace",
            args.log_level
        )
    })?;
    let _ = tracing::subscriber::set_global_default(log::StderrLogger::new(
        level,
        args.log_kind == "json",
    ));
    if args.serve_http {
        tracing::warn!("--serve_http: Oxbeam's job server has no web UI; ignored");
    }
    let defaults = oxbeam_job_server::JobServerOptions::default();
    let options = oxbeam_job_server::JobServerOptions {
        host: args.host,
        job_port: args.job_port,
        artifact_port: args.artifact_port,
        staging_dir: args.staging_dir,
        parallelism: args.parallelism.unwrap_or(defaults.parallelism).max(1),
        echo_harness_output: args.echo_harness_output,
        idle_shutdown: args.idle_shutdown_timeout.filter(|d| !d.is_zero()),
        python: args.python.unwrap_or(defaults.python),
        prestart_harnesses: args
            .prestart_harnesses
            .unwrap_or_else(|| args.parallelism.unwrap_or(defaults.parallelism)),
    };
    let server =
        oxbeam_job_server::JobServer::start(options).context("cannot start the job server")?;
    // One line on stdout that scripts and tests parse.
    println!("oxbeam job server listening on {}", server.job_endpoint());
    if server.artifact_endpoint() != server.job_endpoint() {
        println!(
            "artifact service listening on {}",
            server.artifact_endpoint()
        );
    }
    use std::io::Write;
    std::io::stdout().flush().ok();
    server.wait();
    Ok(())
}

/// Flags of `oxbeam run` past the pipeline file.
struct RunFlags {
    parallelism: Option<usize>,
    pipeline_options: String,
    dump_plan: bool,
    streaming: bool,
    max_bundle_attempts: usize,
    no_dynamic_splitting: bool,
    sdk_worker_parallelism: usize,
}

fn run(path: &std::path::Path, flags: RunFlags) -> anyhow::Result<()> {
    let RunFlags {
        parallelism,
        pipeline_options,
        dump_plan,
        streaming,
        max_bundle_attempts,
        no_dynamic_splitting,
        sdk_worker_parallelism,
    } = flags;
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let pipeline = oxbeam_runner_core::decode_pipeline(&bytes)
        .with_context(|| format!("{} is not a serialized Pipeline proto", path.display()))?;
    // TestStreams served by a TestStream service: their events, inline.
    let pipeline = match oxbeam_job_server::inline_service_events(&pipeline) {
        Ok(inlined) => inlined.unwrap_or(pipeline),
        Err(e) => anyhow::bail!("the pipeline in {} failed: {e}", path.display()),
    };
    let defaults = oxbeam_runner_local::LocalOptions::default();
    let options = oxbeam_runner_local::LocalOptions {
        parallelism: parallelism.unwrap_or(defaults.parallelism).max(1),
        dump_plan,
        harness: oxbeam_fn_api::HarnessOptions {
            pipeline_options_json: pipeline_options,
            echo_output: true,
            max_bundle_attempts: max_bundle_attempts.max(1),
            workers_per_environment: sdk_worker_parallelism.max(1),
            ..Default::default()
        },
        streaming,
        split_stragglers_after: defaults
            .split_stragglers_after
            .filter(|_| !no_dynamic_splitting),
        ..defaults
    };
    let job = oxbeam_runner_local::LocalRunner::new(options)
        .start(&pipeline, &oxbeam_fn_api::Executors::new())
        .with_context(|| format!("the pipeline in {} failed", path.display()))?;
    // Ctrl-C: the first drains the job, the second cancels it.
    let interrupts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])
        .context("cannot handle SIGINT")?;
    let counter = interrupts.clone();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut acted = 0;
    while !job.is_finished() {
        let n = interrupts.load(std::sync::atomic::Ordering::SeqCst);
        if n > acted {
            acted = n;
            if n == 1 {
                eprintln!("oxbeam: draining the pipeline (Ctrl-C again to cancel)");
                job.drain();
            } else {
                eprintln!("oxbeam: cancelling the pipeline");
                job.cancel();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let result = job
        .wait()
        .with_context(|| format!("the pipeline in {} failed", path.display()))?;
    for s in &result.steps {
        eprintln!("{s}");
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
            streaming,
            max_bundle_attempts,
            no_dynamic_splitting,
            sdk_worker_parallelism,
        } => run(
            &pipeline,
            RunFlags {
                parallelism,
                pipeline_options,
                dump_plan,
                streaming,
                max_bundle_attempts,
                no_dynamic_splitting,
                sdk_worker_parallelism,
            },
        )?,
        Command::JobServer(args) => job_server(args)?,
        Command::Worker(args) => worker::worker(args)?,
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
