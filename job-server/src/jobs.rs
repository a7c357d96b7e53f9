//! The job registry: each job's state machine, its log of messages and
//! state changes (what the state and message streams replay), and the
//! thread that runs it on the local runner.
//!
//! States follow Beam: STOPPED (prepared) → STARTING (Run accepted) →
//! RUNNING → DONE | FAILED | CANCELLED, with CANCELLING in between when a
//! running job is cancelled. A failure is logged as a JOB_MESSAGE_ERROR
//! carrying the runner's error (the user code's message and traceback)
//! before the FAILED state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use oxbeam_fn_api::{HarnessOptions, Metrics};
use oxbeam_model::job_management::{
    JobMessage, JobMessagesResponse, JobStateEvent, job_message::MessageImportance,
    job_messages_response, job_state,
};
use oxbeam_model::pipeline as pb;
use oxbeam_runner_local::{LocalOptions, LocalRunner};
use tokio::sync::watch;

use crate::{Error, Result};

pub(crate) use job_state::Enum as JobState;

/// Whether no further state follows `s`.
pub(crate) fn is_terminal(s: JobState) -> bool {
    matches!(
        s,
        JobState::Done
            | JobState::Failed
            | JobState::Cancelled
            | JobState::Updated
            | JobState::Drained
    )
}

/// Where a job's artifact staging stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Staging {
    /// No client has opened a staging stream (nothing to stage is fine).
    NotStarted,
    InProgress,
    Done,
    Failed(String),
}

pub(crate) struct JobInner {
    pub state: JobState,
    /// Every message and state change, in order.
    pub log: Vec<JobMessagesResponse>,
    pub metrics: Metrics,
    pub staging: Staging,
    pub pipeline: pb::Pipeline,
}

/// One job (prepared, running or finished).
pub(crate) struct Job {
    pub id: String,
    pub name: String,
    pub options: prost_types::Struct,
    /// What the options ask of the runner (checked at Prepare).
    pub config: JobConfig,
    pub staging_dir: PathBuf,
    inner: Mutex<JobInner>,
    /// Bumped after every change to the log.
    changed: watch::Sender<u64>,
    pub cancel: AtomicBool,
    /// Set by Drain: sources stop, every window fires, the job ends DRAINED.
    pub drain: AtomicBool,
}

fn now() -> (prost_types::Timestamp, String) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ts = prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    };
    (ts, format!("{}.{:03}", d.as_secs(), d.subsec_millis()))
}

impl Job {
    pub(crate) fn lock(&self) -> MutexGuard<'_, JobInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of change notifications (subscribe before reading the log).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn state(&self) -> JobState {
        self.lock().state
    }

    /// The event for the current state.
    pub(crate) fn state_event(&self) -> JobStateEvent {
        let inner = self.lock();
        inner
            .log
            .iter()
            .rev()
            .find_map(|e| match &e.response {
                Some(job_messages_response::Response::StateResponse(s)) => Some(*s),
                _ => None,
            })
            .unwrap_or(JobStateEvent {
                state: inner.state as i32,
                timestamp: Some(now().0),
            })
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Moves to `state` (ignored once terminal) and logs the change.
    pub(crate) fn set_state(&self, state: JobState) {
        {
            let mut inner = self.lock();
            if is_terminal(inner.state) || inner.state == state {
                return;
            }
            inner.state = state;
            inner.log.push(JobMessagesResponse {
                response: Some(job_messages_response::Response::StateResponse(
                    JobStateEvent {
                        state: state as i32,
                        timestamp: Some(now().0),
                    },
                )),
            });
        }
        tracing::info!(job = %self.id, state = state.as_str_name(), "job state changed");
        self.notify();
    }

    /// Logs a message for the job's clients.
    pub(crate) fn message(&self, importance: MessageImportance, text: String) {
        {
            let mut inner = self.lock();
            let id = inner.log.len();
            inner.log.push(JobMessagesResponse {
                response: Some(job_messages_response::Response::MessageResponse(
                    JobMessage {
                        message_id: format!("{}-{id}", self.id),
                        time: now().1,
                        importance: importance as i32,
                        message_text: text,
                    },
                )),
            });
        }
        self.notify();
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Settings every job of a server shares.
#[derive(Debug, Clone)]
pub(crate) struct JobSettings {
    pub parallelism: usize,
    pub echo_harness_output: bool,
    pub staging_root: PathBuf,
    /// Interpreter of embedded Python environments.
    pub python: String,
}

/// All jobs of one server.
pub(crate) struct Jobs {
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
    next: AtomicU64,
    pub running: Arc<AtomicUsize>,
    pub settings: JobSettings,
}

/// Name of the pipeline option (without Beam's `beam:option:…:v1`
/// wrapping) that sets a job's worker threads.
pub(crate) const PARALLELISM_OPTION: &str = "oxbeam_parallelism";

/// Beam's portable option for the number of SDK harnesses per environment
/// (`--sdk_worker_parallelism`; 0: the job's worker threads).
pub(crate) const SDK_WORKER_PARALLELISM_OPTION: &str = "sdk_worker_parallelism";

/// Beam's `--streaming`: run on the streaming engine even when every
/// PCollection is bounded.
pub(crate) const STREAMING_OPTION: &str = "streaming";

/// Most harnesses one environment may ask for (each is a process or a
/// thread of the client).
const MAX_WORKERS_PER_ENVIRONMENT: usize = 64;

impl Jobs {
    pub(crate) fn new(settings: JobSettings) -> Jobs {
        Jobs {
            jobs: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
            running: Arc::new(AtomicUsize::new(0)),
            settings,
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a prepared job (state STOPPED).
    ///
    /// # Errors
    /// [`Error::InvalidPipeline`] if an option Oxbeam reads is malformed.
    pub(crate) fn prepare(
        &self,
        name: &str,
        pipeline: pb::Pipeline,
        options: prost_types::Struct,
    ) -> Result<Arc<Job>> {
        let config = JobConfig::from_options(&options)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect();
        let id = format!("{}_{n}", if clean.is_empty() { "job" } else { &clean });
        let (changed, _) = watch::channel(0);
        let job = Arc::new(Job {
            staging_dir: self.settings.staging_root.join(&id),
            id: id.clone(),
            name: name.to_string(),
            options,
            config,
            inner: Mutex::new(JobInner {
                state: JobState::Stopped,
                log: vec![],
                metrics: Metrics::default(),
                staging: Staging::NotStarted,
                pipeline,
            }),
            changed,
            cancel: AtomicBool::new(false),
            drain: AtomicBool::new(false),
        });
        job.lock().log.push(JobMessagesResponse {
            response: Some(job_messages_response::Response::StateResponse(
                JobStateEvent {
                    state: JobState::Stopped as i32,
                    timestamp: Some(now().0),
                },
            )),
        });
        self.map().insert(id, job.clone());
        Ok(job)
    }

    /// The job with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub(crate) fn get(&self, id: &str) -> Result<Arc<Job>> {
        self.map()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    pub(crate) fn all(&self) -> Vec<Arc<Job>> {
        self.map().values().cloned().collect()
    }

    /// Starts a prepared job on its own thread.
    ///
    /// # Errors
    /// [`Error::Precondition`] if the job already ran or its staging failed.
    pub(crate) fn run(&self, job: &Arc<Job>) -> Result<()> {
        let pipeline = {
            let inner = job.lock();
            if inner.state != JobState::Stopped {
                return Err(Error::Precondition(format!(
                    "job {} is {}, not a prepared job waiting to run",
                    job.id,
                    inner.state.as_str_name()
                )));
            }
            match &inner.staging {
                Staging::Failed(why) => {
                    return Err(Error::Precondition(format!(
                        "staging the artifacts of job {} failed: {why}",
                        job.id
                    )));
                }
                Staging::InProgress => {
                    return Err(Error::Precondition(format!(
                        "the artifacts of job {} are still being staged",
                        job.id
                    )));
                }
                Staging::NotStarted | Staging::Done => {}
            }
            inner.pipeline.clone()
        };
        crate::check_requirements(&pipeline)?;
        job.set_state(JobState::Starting);
        let settings = self.settings.clone();
        let running = self.running.clone();
        running.fetch_add(1, Ordering::SeqCst);
        let thread_job = job.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("job-{}", job.id))
            .spawn(move || {
                let job = thread_job;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_job(&job, &pipeline, &settings)
                }));
                if let Err(p) = outcome {
                    let why = panic_message(p.as_ref());
                    job.message(
                        MessageImportance::JobMessageError,
                        format!("internal error: the job thread panicked: {why}"),
                    );
                    job.set_state(JobState::Failed);
                }
                let _ = std::fs::remove_dir_all(&job.staging_dir);
                running.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::SeqCst);
            job.message(
                MessageImportance::JobMessageError,
                format!("cannot start a thread for the job: {e}"),
            );
            job.set_state(JobState::Failed);
        }
        Ok(())
    }
}

/// The job's pipeline options as the JSON object harnesses read
/// (`PIPELINE_OPTIONS`, ProvisionService), keys as the client sent them.
fn options_json(options: &prost_types::Struct) -> String {
    fn value(v: &prost_types::Value) -> serde_json::Value {
        use prost_types::value::Kind;
        match &v.kind {
            None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
            Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
            Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
            Some(Kind::StructValue(s)) => object(s),
            Some(Kind::ListValue(l)) => {
                serde_json::Value::Array(l.values.iter().map(value).collect())
            }
        }
    }
    fn object(s: &prost_types::Struct) -> serde_json::Value {
        serde_json::Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value(v)))
                .collect(),
        )
    }
    object(options).to_string()
}

/// A pipeline option by its short name (`beam:option:NAME:v1` or `NAME`).
fn option<'a>(options: &'a prost_types::Struct, name: &str) -> Option<&'a prost_types::Value> {
    options
        .fields
        .get(&format!("beam:option:{name}:v1"))
        .or_else(|| options.fields.get(name))
}

/// What a job's pipeline options ask of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobConfig {
    /// Worker threads (`oxbeam_parallelism`); the server's when `None`.
    pub parallelism: Option<usize>,
    /// Beam's `sdk_worker_parallelism`: harnesses per environment, 0 for
    /// one per worker thread; 1 when absent.
    pub sdk_worker_parallelism: usize,
    /// Beam's `--streaming` (`streaming`).
    pub streaming: bool,
    /// Beam's Reshuffle runs in the runner, keeping each element's
    /// metadata (Beam 2.65 and later); false when the job's
    /// `update_compatibility_version` is older, so the SDK's expansion
    /// runs as those versions ran it (panes not kept).
    pub reshuffle_in_runner: bool,
}

/// First Beam version whose Reshuffle keeps each element's pane (Beam
/// Python's `ReshufflePerKey.expand` switches on it).
const RESHUFFLE_KEEPS_METADATA_SINCE: [u64; 3] = [2, 65, 0];

/// Whether the job's `update_compatibility_version` (e.g. `"2.64.0"`) is
/// older than `version`, as Beam's `is_compat_version_prior_to`: false
/// when absent; unreadable parts count as 0.
fn compat_version_prior_to(options: &prost_types::Struct, version: [u64; 3]) -> bool {
    use prost_types::value::Kind;
    let Some(Kind::StringValue(v)) =
        option(options, "update_compatibility_version").and_then(|v| v.kind.as_ref())
    else {
        return false;
    };
    let mut parts = v
        .trim()
        .split('.')
        .map(|p| p.trim().parse::<u64>().unwrap_or(0));
    let given = [0; 3].map(|_| parts.next().unwrap_or(0));
    given < version
}

/// Most worker threads a job may ask for.
const MAX_PARALLELISM: usize = 1024;

/// A whole-number pipeline option in `range`, or `None` when absent or
/// null. Beam Python sends numbers; other SDKs may send strings.
fn whole_option(
    options: &prost_types::Struct,
    name: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Option<usize>> {
    use prost_types::value::Kind;
    let invalid = |got: String| {
        Error::InvalidPipeline(format!(
            "pipeline option {name} must be a whole number from {} to {}, not {got}",
            range.start(),
            range.end()
        ))
    };
    let n = match option(options, name).and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => return Ok(None),
        Some(Kind::NumberValue(n)) => {
            if !(n.is_finite() && n.fract() == 0.0 && *n >= 0.0 && *n <= *range.end() as f64) {
                return Err(invalid(n.to_string()));
            }
            *n as usize
        }
        Some(Kind::StringValue(s)) => s.trim().parse().map_err(|_| invalid(format!("{s:?}")))?,
        Some(other) => return Err(invalid(format!("{other:?}"))),
    };
    if !range.contains(&n) {
        return Err(invalid(n.to_string()));
    }
    Ok(Some(n))
}

impl JobConfig {
    /// Reads and checks the options Oxbeam acts on.
    ///
    /// # Errors
    /// [`Error::InvalidPipeline`] naming the option and its bad value.
    pub(crate) fn from_options(options: &prost_types::Struct) -> Result<JobConfig> {
        Ok(JobConfig {
            parallelism: whole_option(options, PARALLELISM_OPTION, 1..=MAX_PARALLELISM)?,
            sdk_worker_parallelism: whole_option(
                options,
                SDK_WORKER_PARALLELISM_OPTION,
                0..=MAX_WORKERS_PER_ENVIRONMENT,
            )?
            .unwrap_or(1),
            streaming: bool_option(options, STREAMING_OPTION)?,
            reshuffle_in_runner: !compat_version_prior_to(options, RESHUFFLE_KEEPS_METADATA_SINCE),
        })
    }
}

/// A true/false pipeline option, false when absent or null. Beam Python
/// sends booleans; other SDKs may send strings.
fn bool_option(options: &prost_types::Struct, name: &str) -> Result<bool> {
    use prost_types::value::Kind;
    match option(options, name).and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => Ok(false),
        Some(Kind::BoolValue(b)) => Ok(*b),
        Some(Kind::StringValue(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Some(Kind::StringValue(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(Error::InvalidPipeline(format!(
            "pipeline option {name} must be true or false, not {other:?}"
        ))),
    }
}

fn run_job(job: &Job, pipeline: &pb::Pipeline, settings: &JobSettings) {
    let parallelism = job
        .config
        .parallelism
        .unwrap_or(settings.parallelism)
        .max(1);
    // Beam's meaning: 0 lets the runner choose (one harness per worker
    // thread).
    let workers_per_environment = match job.config.sdk_worker_parallelism {
        0 => parallelism.min(MAX_WORKERS_PER_ENVIRONMENT),
        n => n,
    };
    let options = LocalOptions {
        parallelism,
        progress: false,
        harness: HarnessOptions {
            pipeline_options_json: options_json(&job.options),
            echo_output: settings.echo_harness_output,
            workers_per_environment,
            // The server outlives its jobs: report the result without
            // waiting for the harnesses to shut down.
            stop_in_background: true,
            ..HarnessOptions::default()
        },
        streaming: job.config.streaming,
        reshuffle_in_runner: job.config.reshuffle_in_runner,
        ..LocalOptions::default()
    };
    // TestStreams served by a TestStream service: their events, inline.
    let inlined = match crate::test_stream::inline_service_events(pipeline) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(job = %job.id, "job failed: {e}");
            job.message(MessageImportance::JobMessageError, e);
            job.set_state(JobState::Failed);
            return;
        }
    };
    let pipeline = inlined.as_ref().unwrap_or(pipeline);
    // A Cancel or Drain that came while the job was starting stands.
    if !job.cancel.load(Ordering::SeqCst) && !job.drain.load(Ordering::SeqCst) {
        job.set_state(JobState::Running);
    }
    let started = std::time::Instant::now();
    let result = LocalRunner::new(options).run_controlled(
        pipeline,
        &oxbeam_fn_api::Executors::new(),
        &job.cancel,
        &job.drain,
    );
    match result {
        Ok(r) => {
            let mut metrics = r.metrics;
            // Clients get user metrics, as Beam's runners report them.
            metrics.element_counts.clear();
            job.lock().metrics = metrics;
            // Where the time went, for clients that log details.
            let steps: Vec<String> = r.steps.iter().map(ToString::to_string).collect();
            job.message(
                MessageImportance::JobMessageDetailed,
                format!("job {} steps:\n{}", job.id, steps.join("\n")),
            );
            job.message(
                MessageImportance::JobMessageBasic,
                format!("job {} finished in {:.3?}", job.id, started.elapsed()),
            );
            job.set_state(if job.drain.load(Ordering::SeqCst) {
                JobState::Drained
            } else {
                JobState::Done
            });
        }
        Err(_) if job.cancel.load(Ordering::SeqCst) => {
            job.message(
                MessageImportance::JobMessageBasic,
                format!("job {} was cancelled", job.id),
            );
            job.set_state(JobState::Cancelled);
        }
        Err(e) => {
            tracing::warn!(job = %job.id, "job failed: {e}");
            job.message(MessageImportance::JobMessageError, e.to_string());
            job.set_state(JobState::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use prost_types::value::Kind;

    use super::*;

    fn options(name: &str, kind: Kind) -> prost_types::Struct {
        prost_types::Struct {
            fields: [(name.to_string(), prost_types::Value { kind: Some(kind) })]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn worker_options_are_read_in_both_spellings() {
        let c = JobConfig::from_options(&options(
            "beam:option:sdk_worker_parallelism:v1",
            Kind::NumberValue(3.0),
        ))
        .unwrap();
        assert_eq!(
            c,
            JobConfig {
                parallelism: None,
                sdk_worker_parallelism: 3,
                streaming: false,
                reshuffle_in_runner: true,
            }
        );
        let c = JobConfig::from_options(&options(
            "oxbeam_parallelism",
            Kind::StringValue(" 8 ".into()),
        ))
        .unwrap();
        assert_eq!(c.parallelism, Some(8));
        assert_eq!(c.sdk_worker_parallelism, 1);
        let c =
            JobConfig::from_options(&options("oxbeam_parallelism", Kind::NullValue(0))).unwrap();
        assert_eq!(c.parallelism, None);
        let c =
            JobConfig::from_options(&options("beam:option:streaming:v1", Kind::BoolValue(true)))
                .unwrap();
        assert!(c.streaming);
        let c = JobConfig::from_options(&options("streaming", Kind::StringValue("false".into())))
            .unwrap();
        assert!(!c.streaming);
        let err = JobConfig::from_options(&options("streaming", Kind::NumberValue(2.0)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("streaming must be true or false"), "{err}");
    }

    /// Beam Python before 2.65 ran Reshuffle's expansion (panes lost):
    /// an older `update_compatibility_version` keeps that.
    #[test]
    fn an_older_compatibility_version_runs_reshuffle_expansions() {
        for (version, in_runner) in [
            ("2.64.0", false),
            ("2.64", false),
            ("2.9.1", false),
            ("2.65.0", true),
            ("2.65", true),
            ("2.70.1", true),
            ("3.0.0", true),
        ] {
            let c = JobConfig::from_options(&options(
                "beam:option:update_compatibility_version:v1",
                Kind::StringValue(version.into()),
            ))
            .unwrap();
            assert_eq!(c.reshuffle_in_runner, in_runner, "{version}");
        }
        let absent = JobConfig::from_options(&prost_types::Struct::default()).unwrap();
        assert!(absent.reshuffle_in_runner);
        let null =
            JobConfig::from_options(&options("update_compatibility_version", Kind::NullValue(0)))
                .unwrap();
        assert!(null.reshuffle_in_runner);
    }

    #[test]
    fn bad_worker_options_name_the_option_and_the_value() {
        for (name, kind, message) in [
            (
                "oxbeam_parallelism",
                Kind::NumberValue(0.0),
                "pipeline option oxbeam_parallelism must be a whole number from 1 to 1024, not 0",
            ),
            (
                "beam:option:oxbeam_parallelism:v1",
                Kind::NumberValue(1e18),
                "pipeline option oxbeam_parallelism must be a whole number from 1 to 1024, not 1000000000000000000",
            ),
            (
                "beam:option:sdk_worker_parallelism:v1",
                Kind::NumberValue(2.5),
                "pipeline option sdk_worker_parallelism must be a whole number from 0 to 64, not 2.5",
            ),
            (
                "sdk_worker_parallelism",
                Kind::StringValue("many".into()),
                "pipeline option sdk_worker_parallelism must be a whole number from 0 to 64, not \"many\"",
            ),
            (
                "sdk_worker_parallelism",
                Kind::BoolValue(true),
                "pipeline option sdk_worker_parallelism must be a whole number from 0 to 64, not BoolValue(true)",
            ),
        ] {
            let err = JobConfig::from_options(&options(name, kind)).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }
}
