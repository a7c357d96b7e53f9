//! # oxbeam-job-server: Apache Beam SDKs submit pipelines to Oxbeam
//!
//! A long-lived server speaking Beam's Job API, so that any Beam SDK
//! (`--runner=PortableRunner --job_endpoint=host:port`) runs its pipelines
//! on Oxbeam's local runner:
//!
//! ```text
//!  Beam SDK client ──Prepare──▶ JobService ── plan check, job STOPPED
//!                  ◀═reverse staging═▶ ArtifactStagingService (per-job dir)
//!                  ──Run──▶ job thread: LocalRunner ─▶ SDK harnesses (process,
//!                  ◀─state/message streams─           external worker pool / LOOPBACK)
//!                  ──GetJobMetrics──▶ user metrics from the harnesses
//! ```
//!
//! - **Jobs** ([`jobs`](self)): the preparation id is the job id. Each
//!   job runs on its own thread, so jobs run one after another and
//!   concurrently. States follow Beam: STOPPED → STARTING → RUNNING →
//!   DONE | FAILED | CANCELLED (CANCELLING in between). A failure is
//!   reported as a JOB_MESSAGE_ERROR with the runner's error (the user
//!   code's message and traceback), then FAILED. State and message streams
//!   may be opened before Run; they start with the current state and end
//!   after a terminal one.
//! - **Validation** at Prepare: the pipeline is planned, and unsupported
//!   `requirements` are refused with a sorted list (again at Run); the
//!   options Oxbeam reads are checked. Bad input is INVALID_ARGUMENT, even
//!   a request that does not decode; an unknown job id is NOT_FOUND.
//! - **Options**: `oxbeam_parallelism` (worker threads of the job) and
//!   Beam's `sdk_worker_parallelism` (SDK harnesses per environment, for
//!   PROCESS and EXTERNAL/LOOPBACK environments; 0: one per worker thread).
//! - **Environments**: PROCESS, EXTERNAL and LOOPBACK (an external worker
//!   pool in the client); Beam Python's own subprocess and embedded
//!   environments run as process environments (`environments`; embedded
//!   ones on [`JobServerOptions::python`]).
//! - **Warm harnesses**: [`JobServerOptions::prestart_harnesses`] Beam
//!   Python harnesses on [`JobServerOptions::python`] are kept started
//!   ahead, Beam imported (~0.7 s each), for PROCESS and embedded
//!   environments running that command (`oxbeam_fn_api::warm`); they
//!   refill after each job.
//! - **Harness shutdown** happens after the job's terminal state is
//!   published, on a background thread, so clients see DONE without
//!   waiting for harnesses to exit.
//! - **Artifacts**: staged over Beam's reverse-retrieval protocol into a
//!   directory per job (names with `..` or absolute paths are refused);
//!   served back over ArtifactRetrievalService.
//!
//! ```no_run
//! use oxbeam_job_server::{JobServer, JobServerOptions};
//! let server = JobServer::start(JobServerOptions { job_port: 0, ..Default::default() })?;
//! println!("listening on {}", server.job_endpoint());
//! server.wait(); // until idle shutdown, if configured
//! # Ok::<(), oxbeam_job_server::Error>(())
//! ```

#![forbid(unsafe_code)]

mod artifacts;
mod environments;
mod jobs;
mod service;
mod status;
mod test_stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxbeam_model::job_management::{
    artifact_retrieval_service_server::ArtifactRetrievalServiceServer,
    artifact_staging_service_server::ArtifactStagingServiceServer,
    job_service_server::JobServiceServer,
};
use oxbeam_model::pipeline as pb;
use tokio::sync::oneshot;

/// Largest message the server accepts (pipelines with big embedded data).
const MAX_MESSAGE_BYTES: usize = 512 << 20;

/// Errors of the job server, sorted by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No job with this id.
    #[error("no job with id {0:?}")]
    NotFound(String),
    /// The submitted pipeline is malformed or cannot be planned.
    #[error("{0}")]
    InvalidPipeline(String),
    /// The pipeline needs something Oxbeam does not support.
    #[error("{0}")]
    Unsupported(String),
    /// The request does not fit the job's state.
    #[error("{0}")]
    Precondition(String),
    /// The server itself failed (e.g. it cannot bind its port).
    #[error("{0}")]
    Internal(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use test_stream::inline_service_events;

/// Refuses pipelines whose `requirements` Oxbeam does not meet.
///
/// # Errors
/// [`Error::Unsupported`] listing the unmet requirements, sorted.
pub fn check_requirements(pipeline: &pb::Pipeline) -> Result<()> {
    let mut unmet: Vec<&str> = pipeline
        .requirements
        .iter()
        .map(String::as_str)
        .filter(|r| !oxbeam_runner_core::SUPPORTED_REQUIREMENTS.contains(r))
        .collect();
    if unmet.is_empty() {
        return Ok(());
    }
    unmet.sort_unstable();
    unmet.dedup();
    Err(Error::Unsupported(format!(
        "the pipeline has requirements Oxbeam does not support: {} (supported: {})",
        unmet.join(", "),
        oxbeam_runner_core::SUPPORTED_REQUIREMENTS.join(", ")
    )))
}

/// How a [`JobServer`] listens and runs jobs.
#[derive(Debug, Clone)]
pub struct JobServerOptions {
    /// Interface to bind (`127.0.0.1` unless told otherwise).
    pub host: String,
    /// Port of the JobService; 0 picks a free one.
    pub job_port: u16,
    /// Port of the artifact services; `None` serves them on the job port.
    pub artifact_port: Option<u16>,
    /// Where staged artifacts go (a directory per job); a fresh temporary
    /// directory when `None`.
    pub staging_dir: Option<PathBuf>,
    /// Worker threads per job (a job may ask for others with the
    /// `oxbeam_parallelism` pipeline option).
    pub parallelism: usize,
    /// Echo process harnesses' output to stderr.
    pub echo_harness_output: bool,
    /// Stop after this long with no job running and no request.
    pub idle_shutdown: Option<Duration>,
    /// The Python interpreter of Beam Python's embedded environments
    /// (`beam:env:embedded_python:v1`), run as harness processes:
    /// `$OXBEAM_PYTHON`, else `python3`.
    pub python: String,
    /// Beam Python harnesses (`PYTHON -m apache_beam.runners.worker.sdk_worker_main`
    /// on [`JobServerOptions::python`]) kept started ahead, imports done,
    /// for process environments running that command (0: none; see
    /// `oxbeam_fn_api::warm`).
    pub prestart_harnesses: usize,
}

impl Default for JobServerOptions {
    fn default() -> Self {
        JobServerOptions {
            host: "127.0.0.1".to_string(),
            job_port: 8099,
            artifact_port: None,
            staging_dir: None,
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            echo_harness_output: false,
            idle_shutdown: None,
            python: environments::default_python(),
            prestart_harnesses: 0,
        }
    }
}

/// A running job server. Dropping it stops the services (running jobs
/// finish on their threads).
pub struct JobServer {
    runtime: tokio::runtime::Runtime,
    job_addr: SocketAddr,
    artifact_addr: SocketAddr,
    shutdown: Vec<oneshot::Sender<()>>,
    jobs: Arc<jobs::Jobs>,
    last_activity: Arc<Mutex<Instant>>,
    idle_shutdown: Option<Duration>,
    /// Removed on drop when the server created it.
    scratch: Option<PathBuf>,
}

impl std::fmt::Debug for JobServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobServer")
            .field("job_endpoint", &self.job_addr)
            .field("artifact_endpoint", &self.artifact_addr)
            .finish()
    }
}

async fn bind(host: &str, port: u16) -> Result<tonic::transport::server::TcpIncoming> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {host}:{port}: {e}")))?;
    Ok(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)))
}

impl JobServer {
    /// Binds the ports and starts serving on a runtime of its own.
    ///
    /// # Errors
    /// [`Error::Internal`] if a port cannot be bound or the staging
    /// directory cannot be created.
    pub fn start(options: JobServerOptions) -> Result<JobServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("oxbeam-job-server")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the server runtime: {e}")))?;
        let (staging_root, scratch) = match &options.staging_dir {
            Some(d) => (d.clone(), None),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "oxbeam-job-server-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default()
                ));
                (d.clone(), Some(d))
            }
        };
        std::fs::create_dir_all(&staging_root).map_err(|e| {
            Error::Internal(format!("cannot create {}: {e}", staging_root.display()))
        })?;
        if options.prestart_harnesses > 0 {
            let command = environments::beam_python_harness(&options.python);
            let count = options.prestart_harnesses;
            // Off the start's path: the first harness takes ~0.7 s to import.
            let _ = std::thread::Builder::new()
                .name("oxbeam-harness-prestart".into())
                .spawn(move || oxbeam_fn_api::warm::prestart(&command, count));
        }
        let jobs = Arc::new(jobs::Jobs::new(jobs::JobSettings {
            parallelism: options.parallelism.max(1),
            echo_harness_output: options.echo_harness_output,
            staging_root,
            python: options.python.clone(),
        }));
        let host = options.host.clone();
        let job_incoming = runtime.block_on(bind(&host, options.job_port))?;
        let job_addr = job_incoming
            .local_addr()
            .map_err(|e| Error::Internal(format!("job server address: {e}")))?;
        let artifact_incoming = match options.artifact_port {
            Some(p) if p != options.job_port || p == 0 => Some(runtime.block_on(bind(&host, p))?),
            _ => None,
        };
        let artifact_addr = match &artifact_incoming {
            Some(i) => i
                .local_addr()
                .map_err(|e| Error::Internal(format!("artifact server address: {e}")))?,
            None => job_addr,
        };
        let last_activity = Arc::new(Mutex::new(Instant::now()));
        let artifacts = artifacts::ArtifactServices { jobs: jobs.clone() };
        let job_service = service::JobServiceImpl {
            jobs: jobs.clone(),
            artifact_url: artifact_addr.to_string(),
            last_activity: last_activity.clone(),
        };
        let staging = || {
            status::DecodeErrorsAreInvalid(
                ArtifactStagingServiceServer::new(artifacts.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
        };
        let retrieval = || {
            status::DecodeErrorsAreInvalid(
                ArtifactRetrievalServiceServer::new(artifacts.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
        };
        let mut shutdown = Vec::new();
        let mut router =
            tonic::transport::Server::builder().add_service(status::DecodeErrorsAreInvalid(
                JobServiceServer::new(job_service)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ));
        if artifact_incoming.is_none() {
            router = router.add_service(staging()).add_service(retrieval());
        }
        let (tx, rx) = oneshot::channel::<()>();
        shutdown.push(tx);
        runtime.spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            if let Err(e) = router
                .serve_with_incoming_shutdown(job_incoming, stop)
                .await
            {
                tracing::error!("job service failed: {e}");
            }
        });
        if let Some(incoming) = artifact_incoming {
            let router = tonic::transport::Server::builder()
                .add_service(staging())
                .add_service(retrieval());
            let (tx, rx) = oneshot::channel::<()>();
            shutdown.push(tx);
            runtime.spawn(async move {
                let stop = async {
                    let _ = rx.await;
                };
                if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
                    tracing::error!("artifact service failed: {e}");
                }
            });
        }
        Ok(JobServer {
            runtime,
            job_addr,
            artifact_addr,
            shutdown,
            jobs,
            last_activity,
            idle_shutdown: options.idle_shutdown,
            scratch,
        })
    }

    /// Address of the JobService (what clients pass as `--job_endpoint`).
    pub fn job_endpoint(&self) -> SocketAddr {
        self.job_addr
    }

    /// Address of the artifact staging and retrieval services.
    pub fn artifact_endpoint(&self) -> SocketAddr {
        self.artifact_addr
    }

    /// Jobs running now.
    pub fn running_jobs(&self) -> usize {
        self.jobs.running.load(Ordering::SeqCst)
    }

    /// Blocks until the idle-shutdown timeout passes with no job running
    /// and no request (forever without one).
    pub fn wait(self) {
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let Some(limit) = self.idle_shutdown else {
                continue;
            };
            if self.running_jobs() > 0 {
                if let Ok(mut t) = self.last_activity.lock() {
                    *t = Instant::now();
                }
                continue;
            }
            let idle = self
                .last_activity
                .lock()
                .map(|t| t.elapsed())
                .unwrap_or_default();
            if idle >= limit {
                tracing::info!("no job for {idle:?}: shutting down");
                return;
            }
        }
    }
}

impl Drop for JobServer {
    fn drop(&mut self) {
        for s in self.shutdown.drain(..) {
            let _ = s.send(());
        }
        if let Some(d) = &self.scratch {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = &self.runtime;
    }
}
