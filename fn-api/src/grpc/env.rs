//! SDK harnesses for a job's environments: `beam:env:process:v1` (a child
//! process) and `beam:env:external:v1` (a worker pool asked to start one).
//!
//! [`Harnesses`] owns one [`FnServer`] for the job and one [`GrpcExecutor`]
//! per environment. A harness starts when its executor first builds a
//! processor, serves every stage and bundle of its environment, and is
//! stopped (killed, or StopWorker) when the `Harnesses` is dropped. When a
//! harness dies, [`Harnesses::restart`] gives its environment fresh ones
//! (new worker ids) for the runner to retry the bundle on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxbeam_model::fn_execution::{
    ProcessBundleDescriptor, StartWorkerRequest, StopWorkerRequest,
    beam_fn_external_worker_pool_client::BeamFnExternalWorkerPoolClient,
};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_environments::environments as env_urns;
use prost::Message;

use super::runner::{DEFAULT_CONNECT_TIMEOUT, Launcher};
use super::{FnServer, GrpcExecutor, api_descriptor};
use crate::{Error, Executor, Result};

/// Lines of a harness process's output kept for error messages.
const KEPT_OUTPUT_LINES: usize = 30;
/// How long a background teardown keeps the Fn API server up after the
/// harnesses were told to stop.
const BACKGROUND_LINGER: Duration = Duration::from_secs(1);

/// How harnesses are started.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// Pipeline options for the harnesses, a JSON object (Beam's
    /// `PIPELINE_OPTIONS`; also served by ProvisionService).
    pub pipeline_options_json: String,
    /// How long a harness may take to start and connect.
    pub connect_timeout: Duration,
    /// Beam's semi-persistent directory for process harnesses; a fresh
    /// temporary directory per job when `None`.
    pub semi_persistent_dir: Option<PathBuf>,
    /// Echo process harnesses' stdout and stderr lines to this process's
    /// stderr, prefixed with the worker id (they always go to `tracing`, at
    /// debug level, and their last lines into error messages).
    pub echo_output: bool,
    /// Harnesses per environment (Beam's `sdk_worker_parallelism`). The
    /// processors of a stage are dealt out over them in turn, so bundles of
    /// one stage run on several harnesses (several cores for Beam Python,
    /// whose harness runs user code under one interpreter lock). Each
    /// harness starts when it gets its first processor. 0 counts as 1.
    pub workers_per_environment: usize,
    /// Stop the harnesses on a background thread when the [`Harnesses`] is
    /// dropped, so a job's result is not held up by their shutdown. For
    /// long-lived processes (a job server); a process that exits right
    /// after its job should stop them in the foreground (the default), or
    /// its harness processes outlive it.
    pub stop_in_background: bool,
    /// How many times a runner tries a bundle whose harness died or
    /// disconnected ([`Error::Harness`]) before failing the job; each retry
    /// runs on a fresh harness (see [`Harnesses::restart`]). User-code
    /// errors are never retried. 0 counts as 1; the default is 3.
    pub max_bundle_attempts: usize,
}

/// Default of [`HarnessOptions::max_bundle_attempts`].
pub(crate) const DEFAULT_MAX_BUNDLE_ATTEMPTS: usize = 3;

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            pipeline_options_json: "{}".to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            semi_persistent_dir: None,
            echo_output: false,
            workers_per_environment: 1,
            stop_in_background: false,
            max_bundle_attempts: DEFAULT_MAX_BUNDLE_ATTEMPTS,
        }
    }
}

/// The SDK harnesses of one job (one per environment, or
/// [`HarnessOptions::workers_per_environment`]), over one [`FnServer`].
///
/// ```no_run
/// use oxbeam_fn_api::{HarnessOptions, Harnesses};
/// # fn env() -> oxbeam_model::pipeline::Environment { Default::default() }
/// let harnesses = Harnesses::start(HarnessOptions::default())?;
/// let executor = harnesses.executor_for("py-env", &env())?; // a process or external environment
/// // ... run stages of "py-env" on `executor`; dropping `harnesses` stops the harness.
/// # Ok::<(), oxbeam_fn_api::Error>(())
/// ```
pub struct Harnesses {
    options: HarnessOptions,
    /// Per environment id: how its harnesses start, and its current
    /// executor (one harness, or a `HarnessPool`).
    executors: Mutex<HashMap<String, EnvironmentHarnesses>>,
    /// Set by [`Harnesses::cancel`]: no harness restarts after it.
    cancelled: std::sync::atomic::AtomicBool,
    /// Whether process harnesses' output is echoed to stderr
    /// ([`HarnessOptions::echo_output`]); off once the job is over, so a
    /// harness still starting then does not print its failure to connect.
    echo: Arc<std::sync::atomic::AtomicBool>,
    /// Default semi-persistent directories, removed when the job ends.
    scratch: Mutex<Vec<ScratchDir>>,
    /// Shared with the teardown, which drops it last.
    server: Arc<FnServer>,
}

impl Drop for Harnesses {
    fn drop(&mut self) {
        let executors =
            std::mem::take(&mut *self.executors.lock().unwrap_or_else(|p| p.into_inner()));
        let scratch = std::mem::take(&mut *self.scratch.lock().unwrap_or_else(|p| p.into_inner()));
        let server = self.server.clone();
        let background = self.options.stop_in_background;
        self.echo.store(false, Ordering::Relaxed);
        // Let harnesses finish cleanly (their control streams end, they
        // close their side), then stop them (kill, or StopWorker), remove
        // their directories, and stop the server, in this order.
        let teardown = move || {
            server.shared.close_workers(Duration::from_secs(2));
            drop(executors);
            drop(scratch);
            // The job's harnesses are gone: warm the next job's.
            super::warm::refill_all();
            if background {
                // A Beam harness closes its data and state streams only
                // after its control stream: keep serving them a moment so
                // a harness in a busy client (LOOPBACK) is not reset. Off
                // the job's path, this costs no latency.
                std::thread::sleep(BACKGROUND_LINGER);
            }
            drop(server);
        };
        if background {
            let spawned = std::thread::Builder::new()
                .name("oxbeam-harness-teardown".into())
                .spawn(teardown);
            if let Err(e) = spawned {
                tracing::warn!("cannot stop the harnesses in the background: {e}");
            }
        } else {
            teardown();
        }
    }
}

impl std::fmt::Debug for Harnesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harnesses")
            .field("server", &self.server)
            .finish()
    }
}

impl Harnesses {
    /// Starts the job's Fn API server.
    ///
    /// # Errors
    /// If the server cannot start, or the pipeline options are not a JSON
    /// object.
    pub fn start(options: HarnessOptions) -> Result<Harnesses> {
        let server = Arc::new(FnServer::start()?);
        server.set_pipeline_options(&options.pipeline_options_json)?;
        Ok(Harnesses {
            server,
            echo: Arc::new(std::sync::atomic::AtomicBool::new(options.echo_output)),
            options,
            executors: Mutex::new(HashMap::new()),
            cancelled: std::sync::atomic::AtomicBool::new(false),
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Whether environments with this URN get their harness from here.
    pub fn handles(environment_urn: &str) -> bool {
        environment_urn == env_urns::PROCESS || environment_urn == env_urns::EXTERNAL
    }

    /// Stops every harness of the job now: their running bundles fail with
    /// `reason`, and their control streams close (so Beam harnesses exit).
    /// For cancelling a job; the harnesses are not restarted.
    pub fn cancel(&self, reason: &str) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.server.shared.cancel_all(reason);
    }

    /// How many times a bundle is tried on this job's harnesses
    /// ([`HarnessOptions::max_bundle_attempts`], at least 1).
    pub fn max_bundle_attempts(&self) -> usize {
        self.options.max_bundle_attempts.max(1)
    }

    /// The current executor of environment `environment_id`, if
    /// [`Harnesses::executor_for`] created one.
    pub fn current(&self, environment_id: &str) -> Option<Arc<dyn Executor>> {
        self.executors
            .lock()
            .ok()?
            .get(environment_id)
            .map(|(_, e)| e.clone())
    }

    /// Replaces the harnesses of `environment_id` after `failed` (an
    /// executor this returned earlier) lost one: fresh harnesses with new
    /// worker ids, started on first use. Returns the environment's current
    /// executor: the fresh one, or one that already replaced `failed` (so
    /// runner threads that see the same death restart it once). The old
    /// harnesses are stopped when the last processor using them is dropped;
    /// bundles still running on them finish.
    ///
    /// # Errors
    /// [`Error::Harness`] after [`Harnesses::cancel`]; [`Error::Internal`]
    /// for an environment this never created an executor for.
    pub fn restart(
        &self,
        environment_id: &str,
        failed: &Arc<dyn Executor>,
    ) -> Result<Arc<dyn Executor>> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(Error::Harness {
                worker: environment_id.to_string(),
                message: "the job was cancelled; harnesses are not restarted".into(),
            });
        }
        let mut executors = self
            .executors
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?;
        let Some((kind, current)) = executors.get(environment_id).cloned() else {
            return Err(Error::Internal(format!(
                "no harness was started for environment {environment_id}"
            )));
        };
        if !Arc::ptr_eq(&current, failed) {
            return Ok(current);
        }
        let fresh = self.new_executor(environment_id, &kind)?;
        tracing::info!(
            environment = environment_id,
            "restarting the SDK harnesses of the environment: {}",
            fresh.name()
        );
        executors.insert(environment_id.to_string(), (kind, fresh.clone()));
        Ok(fresh)
    }

    /// The job's Fn API server.
    pub fn server(&self) -> &FnServer {
        &self.server
    }

    /// The executor of environment `environment_id` (created on first call;
    /// its harness starts when it first builds a processor).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for environment URNs other than process and
    /// external; [`Error::Invalid`] for malformed payloads.
    pub fn executor_for(
        &self,
        environment_id: &str,
        environment: &pb::Environment,
    ) -> Result<Arc<dyn Executor>> {
        let mut executors = self
            .executors
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?;
        if let Some((_, e)) = executors.get(environment_id) {
            return Ok(e.clone());
        }
        let what = || format!("payload of environment {environment_id}");
        let kind = match environment.urn.as_str() {
            env_urns::PROCESS => {
                let p = pb::ProcessPayload::decode(environment.payload.as_ref())
                    .map_err(|e| Error::invalid(what(), e))?;
                if p.command.trim().is_empty() {
                    return Err(Error::invalid(what(), "the process command is empty"));
                }
                HarnessKind::Process(p)
            }
            env_urns::EXTERNAL => {
                let p = pb::ExternalPayload::decode(environment.payload.as_ref())
                    .map_err(|e| Error::invalid(what(), e))?;
                let pool = p
                    .endpoint
                    .as_ref()
                    .map(|e| e.url.clone())
                    .unwrap_or_default();
                if pool.is_empty() {
                    return Err(Error::invalid(what(), "the worker pool endpoint is empty"));
                }
                HarnessKind::External {
                    pool,
                    params: p.params,
                }
            }
            other => {
                return Err(Error::Unsupported {
                    transform: String::new(),
                    message: format!(
                        "environment {environment_id} has URN {other}; harnesses can be started for {} and {}",
                        env_urns::PROCESS,
                        env_urns::EXTERNAL
                    ),
                });
            }
        };
        let kind = Arc::new(HarnessSpec {
            kind,
            embed_requests: environment
                .capabilities
                .iter()
                .any(|c| c == super::CONTROL_REQUEST_ELEMENTS_EMBEDDING),
            state_backed_iterables: environment
                .capabilities
                .iter()
                .any(|c| c == oxbeam_model::urns::standard_coders::STATE_BACKED_ITERABLE),
        });
        let executor = self.new_executor(environment_id, &kind)?;
        executors.insert(environment_id.to_string(), (kind, executor.clone()));
        Ok(executor)
    }

    /// Whether environment `environment_id`'s harnesses are several
    /// processes started here (a process environment with
    /// `workers_per_environment` > 1): work split off a bundle then runs in
    /// parallel with it, not contending for one interpreter (Beam Python's
    /// harness runs a process's bundles under one GIL). The workers of an
    /// external pool may be threads of one process (Beam Python's
    /// LOOPBACK pool is), so they do not count.
    pub fn runs_separate_processes(&self, environment_id: &str) -> bool {
        self.options.workers_per_environment > 1
            && self.executors.lock().is_ok_and(|e| {
                e.get(environment_id)
                    .is_some_and(|(spec, _)| matches!(spec.kind, HarnessKind::Process(_)))
            })
    }

    /// A new executor for the harnesses of environment `environment_id`
    /// (none started yet).
    fn new_executor(&self, environment_id: &str, spec: &HarnessSpec) -> Result<Arc<dyn Executor>> {
        let workers = self.options.workers_per_environment.max(1);
        let mut members = Vec::with_capacity(workers);
        for _ in 0..workers {
            let worker_id = format!(
                "{}-{}",
                sanitize(environment_id),
                self.server.shared.next_id()
            );
            let (name, launcher) = self.launcher(&spec.kind, &worker_id)?;
            members.push(Arc::new(
                self.server
                    .executor(&worker_id)
                    .with_connect_timeout(self.options.connect_timeout)
                    .with_request_embedding(spec.embed_requests)
                    .with_state_backed_iterables(spec.state_backed_iterables)
                    .with_launcher(name, launcher),
            ));
        }
        let executor: Arc<dyn Executor> = if members.len() == 1 {
            members.remove(0)
        } else {
            Arc::new(HarnessPool {
                name: format!(
                    "{} harnesses of environment {environment_id}",
                    members.len()
                ),
                members,
                dealt: Mutex::new(HashMap::new()),
                warmed: std::sync::atomic::AtomicBool::new(false),
            })
        };
        Ok(executor)
    }

    /// A launcher for one harness of an environment, and its name for
    /// error messages.
    fn launcher(&self, kind: &HarnessKind, worker_id: &str) -> Result<(String, Arc<dyn Launcher>)> {
        Ok(match kind {
            HarnessKind::Process(p) => {
                let dir = match &self.options.semi_persistent_dir {
                    Some(d) => d.clone(),
                    None => {
                        let dir = ScratchDir::new(worker_id)?;
                        let path = dir.0.clone();
                        if let Ok(mut s) = self.scratch.lock() {
                            s.push(dir);
                        }
                        path
                    }
                };
                (
                    format!("process harness `{}`", p.command),
                    Arc::new(ProcessLauncher {
                        command: p.command.clone(),
                        env: p.env.clone(),
                        pipeline_options: self.options.pipeline_options_json.clone(),
                        semi_persistent_dir: dir,
                        child: Mutex::new(None),
                        output: Arc::new(Mutex::new(VecDeque::new())),
                        pipes_done: Arc::new(AtomicUsize::new(0)),
                        echo: self.echo.clone(),
                    }),
                )
            }
            HarnessKind::External { pool, params } => (
                format!("external harness from pool {pool}"),
                Arc::new(ExternalLauncher {
                    pool: pool.clone(),
                    params: params.clone(),
                    runtime: self.server.runtime.clone(),
                    started: Mutex::new(None),
                }),
            ),
        })
    }

    /// The executor for a stage's environment, read from its descriptor.
    ///
    /// # Errors
    /// As [`Harnesses::executor_for`]; [`Error::Invalid`] if the descriptor
    /// does not hold the environment.
    pub fn executor_for_descriptor(
        &self,
        descriptor: &ProcessBundleDescriptor,
        environment_id: &str,
    ) -> Result<Arc<dyn Executor>> {
        let env = descriptor.environments.get(environment_id).ok_or_else(|| {
            Error::invalid(
                format!("descriptor {}", descriptor.id),
                format!("does not hold environment {environment_id:?}"),
            )
        })?;
        self.executor_for(environment_id, env)
    }
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// How the harnesses of an environment start, and its current executor.
type EnvironmentHarnesses = (Arc<HarnessSpec>, Arc<dyn Executor>);

/// How an environment's harnesses start, and what they support.
struct HarnessSpec {
    kind: HarnessKind,
    /// The environment declares control-request embedding: small bundles'
    /// inputs travel in their ProcessBundleRequests.
    embed_requests: bool,
    /// The environment's harnesses read state-backed iterables.
    state_backed_iterables: bool,
}

/// How the harnesses of one environment are started.
enum HarnessKind {
    Process(pb::ProcessPayload),
    External {
        pool: String,
        params: BTreeMap<String, String>,
    },
}

/// Several harnesses of one environment. Each new processor of a stage
/// goes to the next harness in turn, so the runner threads running that
/// stage's bundles each talk to their own harness. When the first one is
/// dealt, the other harnesses start in the background: a harness takes a
/// while to start (a Python process imports Beam), which then overlaps the
/// first stages instead of delaying the first stage that needs it.
struct HarnessPool {
    name: String,
    members: Vec<Arc<GrpcExecutor>>,
    /// Per descriptor id: how many processors were dealt out.
    dealt: Mutex<HashMap<String, usize>>,
    warmed: std::sync::atomic::AtomicBool,
}

impl HarnessPool {
    /// Starts every harness but `first` on threads of their own (a start
    /// that fails is reported when that harness is next used).
    fn warm_up(&self, first: usize, descriptor: &Arc<ProcessBundleDescriptor>) {
        for (i, member) in self.members.iter().enumerate() {
            if i == first {
                continue;
            }
            let member = member.clone();
            let descriptor = descriptor.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("oxbeam-harness-start-{}", member.worker_id()))
                .spawn(move || {
                    if let Err(e) = member.create_processor(descriptor) {
                        tracing::debug!(worker = member.worker_id(), "harness start failed: {e}");
                    }
                });
            if let Err(e) = spawned {
                tracing::debug!("cannot start a harness in the background: {e}");
            }
        }
    }
}

impl Executor for HarnessPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn crate::BundleProcessor>> {
        let turn = {
            let mut dealt = self
                .dealt
                .lock()
                .map_err(|_| Error::Internal("poisoned".into()))?;
            let n = dealt.entry(descriptor.id.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let member = turn % self.members.len();
        if !self.warmed.swap(true, Ordering::AcqRel) {
            self.warm_up(member, &descriptor);
        }
        self.members[member].create_processor(descriptor)
    }
}

/// A temporary directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(worker: &str) -> Result<ScratchDir> {
        let dir =
            std::env::temp_dir().join(format!("oxbeam-harness-{}-{worker}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a `beam:env:process:v1` command with Beam's boot flags and the
/// environment Beam Python's `sdk_worker_main` reads.
struct ProcessLauncher {
    command: String,
    env: BTreeMap<String, String>,
    pipeline_options: String,
    semi_persistent_dir: PathBuf,
    child: Mutex<Option<super::warm::Harness>>,
    output: Arc<Mutex<VecDeque<String>>>,
    /// Output pipes read to their end.
    pipes_done: Arc<AtomicUsize>,
    /// Shared with [`Harnesses`]: echo output lines to stderr.
    echo: Arc<std::sync::atomic::AtomicBool>,
}

impl ProcessLauncher {
    fn last_output(&self) -> String {
        // The process has exited: give its pipes a moment to drain (a
        // grandchild holding them open must not block the error).
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.pipes_done.load(Ordering::Acquire) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lines = self
            .output
            .lock()
            .map(|o| o.iter().cloned().collect::<Vec<_>>());
        match lines {
            Ok(l) if !l.is_empty() => format!("last output:\n  {}", l.join("\n  ")),
            _ => "no output".to_string(),
        }
    }

    fn status(&self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            let status = self
                .child
                .lock()
                .ok()?
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if status.is_some() || Instant::now() >= deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Launcher for ProcessLauncher {
    fn start(&self, server_url: &str, worker_id: &str) -> Result<()> {
        let flags = [
            format!("--id={worker_id}"),
            format!("--control_endpoint={server_url}"),
            format!("--logging_endpoint={server_url}"),
            format!("--artifact_endpoint={server_url}"),
            format!("--provision_endpoint={server_url}"),
            format!("--semi_persist_dir={}", self.semi_persistent_dir.display()),
        ];
        let descriptor = |url: &str| format!("url: \"{url}\"");
        let mut env = self.env.clone();
        env.insert(
            "CONTROL_API_SERVICE_DESCRIPTOR".into(),
            descriptor(server_url),
        );
        env.insert(
            "LOGGING_API_SERVICE_DESCRIPTOR".into(),
            descriptor(server_url),
        );
        env.insert("PIPELINE_OPTIONS".into(), self.pipeline_options.clone());
        env.insert(
            "SEMI_PERSISTENT_DIRECTORY".into(),
            self.semi_persistent_dir.display().to_string(),
        );
        env.insert("WORKER_ID".into(), worker_id.to_string());
        // A Python harness may be waiting, imports done (warm.rs),
        // unless the environment sets variables read at interpreter start.
        let warm = if self.env.keys().all(|k| k == "PYTHONPATH") {
            super::warm::take(&self.command, &env, &flags)
        } else {
            None
        };
        let mut child = match warm {
            Some(child) => child,
            None => {
                // A command with spaces (`python -m ...`) runs through the
                // shell; `exec` keeps the harness as the child the runner
                // kills.
                let mut cmd = if self.command.trim().contains(char::is_whitespace) {
                    let mut c = Command::new("/bin/sh");
                    c.arg("-c")
                        .arg(format!("exec {} \"$@\"", self.command.trim()))
                        .arg("sh");
                    c
                } else {
                    Command::new(self.command.trim())
                };
                cmd.args(&flags)
                    .envs(&env)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                super::warm::Harness::Spawned(cmd.spawn().map_err(|e| Error::Harness {
                    worker: worker_id.to_string(),
                    message: format!("cannot start `{}`: {e}", self.command),
                })?)
            }
        };
        for pipe in child.take_output().into_iter().flatten() {
            let output = self.output.clone();
            let done = self.pipes_done.clone();
            let worker = worker_id.to_string();
            let echo = self.echo.clone();
            std::thread::Builder::new()
                .name(format!("harness-output-{worker}"))
                .spawn(move || {
                    for line in BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        tracing::debug!(target: "oxbeam::harness", worker = %worker, "{line}");
                        if echo.load(Ordering::Relaxed) {
                            eprintln!("[{worker}] {line}");
                        }
                        if let Ok(mut o) = output.lock() {
                            if o.len() == KEPT_OUTPUT_LINES {
                                o.pop_front();
                            }
                            o.push_back(line);
                        }
                    }
                    done.fetch_add(1, Ordering::Release);
                })
                .map_err(|e| Error::Internal(format!("cannot start an output thread: {e}")))?;
        }
        *self
            .child
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))? = Some(child);
        Ok(())
    }

    fn exited(&self) -> Option<String> {
        self.status(Duration::ZERO)
            .map(|s| format!("{s}; {}", self.last_output()))
    }

    fn diagnostics(&self) -> String {
        // A harness killed mid-bundle drops its streams a moment before it
        // can be reaped: wait briefly to report how it ended.
        match self.status(Duration::from_millis(500)) {
            Some(s) => format!("process `{}` {s}; {}", self.command, self.last_output()),
            None => format!("process `{}` is still running", self.command),
        }
    }
}

impl Drop for ProcessLauncher {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            if let Some(mut child) = c.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Asks a `BeamFnExternalWorkerPool` to start a harness, and to stop it
/// when the job ends.
struct ExternalLauncher {
    pool: String,
    params: BTreeMap<String, String>,
    runtime: Arc<tokio::runtime::Runtime>,
    /// The worker id once started.
    started: Mutex<Option<String>>,
}

/// Runs `f` to completion on `runtime` from a fresh thread, so it works
/// whether or not the caller is inside an async context.
fn block_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let handle = runtime.handle().clone();
    std::thread::spawn(move || handle.block_on(f)).join().ok()
}

impl Launcher for ExternalLauncher {
    fn start(&self, server_url: &str, worker_id: &str) -> Result<()> {
        let pool = self.pool.clone();
        let request = StartWorkerRequest {
            worker_id: worker_id.to_string(),
            control_endpoint: Some(api_descriptor(server_url)),
            logging_endpoint: Some(api_descriptor(server_url)),
            artifact_endpoint: Some(api_descriptor(server_url)),
            provision_endpoint: Some(api_descriptor(server_url)),
            params: self.params.clone(),
        };
        let fail = |message: String| Error::Harness {
            worker: worker_id.to_string(),
            message,
        };
        let answer = block_on(&self.runtime, async move {
            let channel = super::connect(&pool).await?;
            BeamFnExternalWorkerPoolClient::new(channel)
                .start_worker(request)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| Error::Internal(s.message().to_string()))
        })
        .ok_or_else(|| fail("the StartWorker call panicked".into()))?
        .map_err(|e| fail(format!("worker pool {} could not start it: {e}", self.pool)))?;
        if !answer.error.is_empty() {
            return Err(fail(format!(
                "worker pool {} could not start it: {}",
                self.pool, answer.error
            )));
        }
        if let Ok(mut s) = self.started.lock() {
            *s = Some(worker_id.to_string());
        }
        Ok(())
    }

    fn exited(&self) -> Option<String> {
        None
    }

    fn diagnostics(&self) -> String {
        format!("started by worker pool {}", self.pool)
    }
}

impl Drop for ExternalLauncher {
    fn drop(&mut self) {
        let Some(worker_id) = self.started.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        let pool = self.pool.clone();
        let stop = async move {
            let channel = super::connect(&pool).await.ok()?;
            tokio::time::timeout(
                Duration::from_secs(5),
                BeamFnExternalWorkerPoolClient::new(channel)
                    .stop_worker(StopWorkerRequest { worker_id }),
            )
            .await
            .ok()
            .map(|_| ())
        };
        let _ = block_on(&self.runtime, stop);
    }
}
