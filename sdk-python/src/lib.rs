//! # oxbeam-python: Beam's Python API on Oxbeam's Rust engine
//!
//! The Rust half of the Python SDK (`sdk-python/python/oxbeam` is the other
//! half). The Python package builds a Beam `Pipeline` proto — user functions
//! cloudpickled inside `oxbeam:fn:python_do_fn:v1` / `python_combine_fn`
//! specs, environment `oxbeam:env:python:v1` — and hands its bytes to
//! [`run_pipeline`], which plans and runs it with `oxbeam-runner-local`,
//! the GIL released.
//!
//! ```text
//!  oxbeam (Python) ──Pipeline proto bytes──▶ _oxbeam.run_pipeline
//!        ▲                                        │ LocalRunner (Rust threads: shuffle, flatten, impulse)
//!        │                                        ▼
//!  oxbeam._runtime.StageRunner ◀── one call per batch ── PythonExecutor (decode/encode in Rust)
//! ```
//!
//! - [`codec`]: Python values ↔ Beam standard coders (and the Python `any`
//!   coder), windowed-value headers ↔ `(timestamp_micros, window)` metas.
//! - [`PythonExecutor`]: the `oxbeam_fn_api::Executor` for Python stages.
//! - [`errors`]: Rust errors → Python exceptions, in one table.
//! - Wasm UDFs (`oxbeam.wasm`): stages in `oxbeam:env:wasm:v1` run in
//!   `oxbeam_wasm::WasmExecutor`, one per process so each module compiles
//!   once; [`wat_to_wasm`] compiles hand-written guests.
//!
//! The `_oxbeam` extension module (built by maturin with the
//! `extension-module` feature) is [`_oxbeam`]; its Python signatures are in
//! `python/oxbeam/_oxbeam.pyi`.

mod batch;
pub mod codec;
mod combine;
pub mod errors;
mod executor;
mod job_client;
mod state;
mod worker_pool;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use oxbeam_fn_api::Executors;
use oxbeam_model::urns;
use oxbeam_runner_local::{LocalOptions, LocalRunner};
use oxbeam_wasm::WasmExecutor;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

pub use executor::{BATCH, ErrorSlot, Interrupt, PythonExecutor, SinkBuffer};

fn pool() -> PyResult<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(oxbeam_model::descriptor_set()).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| errors::InternalError::new_err(e.clone()))
}

/// Encodes the proto message `message` (full name, e.g.
/// `org.apache.beam.model.pipeline.v1.Pipeline`) from its proto3 JSON form.
///
/// Large bytes fields need not travel as base64 inside the JSON: a bytes
/// field whose value is [`BLOB_MARKER`] followed by a decimal index takes
/// `blobs[index]` instead (the SDK's pickled functions and Create values).
///
/// # Errors
/// `ValueError` for unknown messages, JSON that does not match, or a blob
/// index out of range.
#[pyfunction]
#[pyo3(signature = (message, json, blobs = None))]
fn encode_proto<'py>(
    py: Python<'py>,
    message: &str,
    json: &str,
    blobs: Option<Vec<Bound<'py, PyBytes>>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let desc = pool()?
        .get_message_by_name(message)
        .ok_or_else(|| PyValueError::new_err(format!("unknown proto message {message}")))?;
    let mut de = serde_json::Deserializer::from_str(json);
    let mut msg = DynamicMessage::deserialize(desc, &mut de)
        .map_err(|e| PyValueError::new_err(format!("{message}: {e}")))?;
    if let Some(blobs) = blobs {
        let blobs: Vec<&[u8]> = blobs.iter().map(|b| b.as_bytes()).collect();
        fill_blobs(&mut msg, &blobs)
            .map_err(|e| PyValueError::new_err(format!("{message}: {e}")))?;
    }
    Ok(PyBytes::new(py, &msg.encode_to_vec()))
}

/// The prefix of a bytes field standing for one of [`encode_proto`]'s blobs.
pub const BLOB_MARKER: &[u8] = b"\xffoxbeam-blob:";

/// Replaces every bytes field of `msg` (nested messages, lists and maps
/// included) that names a blob with that blob.
fn fill_blobs(msg: &mut DynamicMessage, blobs: &[&[u8]]) -> Result<(), String> {
    use prost_reflect::Value;
    fn fill(v: &mut Value, blobs: &[&[u8]]) -> Result<(), String> {
        match v {
            Value::Bytes(b) => {
                if let Some(index) = b.strip_prefix(BLOB_MARKER) {
                    let i = std::str::from_utf8(index)
                        .ok()
                        .and_then(|i| i.parse::<usize>().ok())
                        .filter(|i| *i < blobs.len())
                        .ok_or_else(|| {
                            format!(
                                "blob reference {:?} names none of {} blobs",
                                String::from_utf8_lossy(index),
                                blobs.len()
                            )
                        })?;
                    *b = prost::bytes::Bytes::copy_from_slice(blobs[i]);
                }
            }
            Value::Message(m) => fill_blobs(m, blobs)?,
            Value::List(items) => items.iter_mut().try_for_each(|v| fill(v, blobs))?,
            Value::Map(entries) => entries.values_mut().try_for_each(|v| fill(v, blobs))?,
            _ => {}
        }
        Ok(())
    }
    msg.fields_mut().try_for_each(|(_, v)| fill(v, blobs))
}

/// Decodes the proto message `message` to its proto3 JSON form.
///
/// # Errors
/// `ValueError` for unknown messages or bytes that do not decode.
#[pyfunction]
fn decode_proto(message: &str, data: &[u8]) -> PyResult<String> {
    let desc = pool()?
        .get_message_by_name(message)
        .ok_or_else(|| PyValueError::new_err(format!("unknown proto message {message}")))?;
    let msg = DynamicMessage::decode(desc, data)
        .map_err(|e| PyValueError::new_err(format!("{message}: {e}")))?;
    serde_json::to_string(&msg).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The process's Wasm executor: modules compile once per process, however
/// many pipelines use them.
fn wasm_executor() -> Arc<WasmExecutor> {
    static EXEC: OnceLock<Arc<WasmExecutor>> = OnceLock::new();
    EXEC.get_or_init(|| Arc::new(WasmExecutor::default()))
        .clone()
}

/// Compiles WebAssembly text (WAT) to a binary module.
///
/// # Errors
/// `ValueError` with the parser's message (line and column) for invalid text.
#[pyfunction]
fn wat_to_wasm<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = wat::parse_str(text).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &bytes))
}

fn option<T>(options: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<T>>
where
    T: for<'a, 'py> FromPyObject<'a, 'py>,
{
    match options.get_item(key)? {
        Some(v) if !v.is_none() => v
            .extract::<T>()
            .map(Some)
            .map_err(|_| PyTypeError::new_err(format!("option {key} has the wrong type"))),
        _ => Ok(None),
    }
}

/// Plans and runs a serialized Beam `Pipeline` with the local runner; Python
/// stages run in this process. Returns the job's user metrics as
/// `(counters, distributions, gauges, string_sets)`: lists of
/// `(transform, namespace, name, value)`,
/// `(transform, namespace, name, count, sum, min, max)`,
/// `(transform, namespace, name, value, timestamp_millis)` and
/// `(transform, namespace, name, [strings])`.
///
/// Options (all optional): `parallelism` (int), `fusion`, `combiner_lifting`,
/// `dump_plan`, `streaming` (bool; run on the streaming engine even when
/// every PCollection is bounded), `harness_processes` (int: how many
/// harness processes each `beam:env:process:v1` environment gets — the
/// Python SDK's `multi_processing` mode puts its Python stages in one,
/// served by [`serve_worker`]), `echo_harness_output` (bool),
/// `dynamic_splitting` (bool, default true: split straggling bundles).
///
/// Ctrl-C (or any exception a Python signal handler raises) while the job
/// runs, when called from the main thread: the job is cancelled — no new
/// bundles start, Python user code running on worker threads gets
/// `KeyboardInterrupt` at its next bytecode — and once it stopped, the
/// handler's exception (`KeyboardInterrupt`) is raised. For a streaming
/// pipeline (`streaming`, or an unbounded PCollection) the first Ctrl-C
/// drains the job instead (sources stop, every window fires, it returns
/// normally) and a second one cancels it, as in the Rust SDK.
///
/// # Errors
/// As mapped by [`errors`]; a user exception is an `UserCodeError` whose
/// `original` attribute is the exception the user function raised.
/// A job's user metrics as rows (see [`run_pipeline`]).
type MetricRows = (
    Vec<(String, String, String, i64)>,
    Vec<(String, String, String, i64, i64, i64, i64)>,
    Vec<(String, String, String, i64, i64)>,
    Vec<(String, String, String, Vec<String>)>,
);

#[pyfunction]
#[pyo3(signature = (pipeline, options=None))]
fn run_pipeline(
    py: Python<'_>,
    pipeline: &[u8],
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<MetricRows> {
    let proto = oxbeam_model::pipeline::Pipeline::decode(pipeline).map_err(|e| {
        errors::PipelineError::new_err(format!("pipeline proto does not decode: {e}"))
    })?;
    let mut opts = LocalOptions {
        progress: false,
        ..LocalOptions::default()
    };
    if let Some(o) = options {
        if let Some(p) = option::<usize>(o, "parallelism")? {
            opts.parallelism = p.max(1);
        }
        if let Some(f) = option::<bool>(o, "fusion")? {
            opts.fusion = f;
        }
        if let Some(c) = option::<bool>(o, "combiner_lifting")? {
            opts.combiner_lifting = c;
        }
        if let Some(d) = option::<bool>(o, "dump_plan")? {
            opts.dump_plan = d;
        }
        if let Some(s) = option::<bool>(o, "streaming")? {
            opts.streaming = s;
        }
        if let Some(n) = option::<usize>(o, "harness_processes")? {
            opts.harness.workers_per_environment = n.max(1);
        }
        if let Some(e) = option::<bool>(o, "echo_harness_output")? {
            opts.harness.echo_output = e;
        }
        if option::<bool>(o, "dynamic_splitting")? == Some(false) {
            opts.split_stragglers_after = None;
        }
    }
    let slot: ErrorSlot = Arc::new(Mutex::new(Vec::new()));
    let interrupt = Arc::new(Interrupt::default());
    let executors = Executors::new()
        .with(
            urns::oxbeam_python::ENVIRONMENT,
            Arc::new(PythonExecutor::new(slot.clone(), interrupt.clone())),
        )
        .with(urns::wasm_functions::ENVIRONMENT, wasm_executor());
    let drains = opts.streaming || is_unbounded(&proto);
    let runner = LocalRunner::new(opts);
    let result = run_interruptible(py, &runner, &proto, &executors, &interrupt, drains)?;
    match result {
        Ok(r) => Ok(metric_rows(&r.metrics)),
        Err(e) => {
            let user = matches!(
                e,
                oxbeam_runner_local::Error::Execution(oxbeam_fn_api::Error::UserCode(_))
            );
            let err = errors::to_py(py, e);
            if user {
                let original = slot.lock().ok().and_then(|mut v| {
                    if v.is_empty() {
                        None
                    } else {
                        Some(v.swap_remove(0))
                    }
                });
                if let Some(o) = original {
                    let _ = err.value(py).setattr("original", o.value(py));
                }
            }
            Err(err)
        }
    }
}

/// Serves as an SDK harness for Python stages (and Wasm ones): connects to
/// the runner's Fn API `control_endpoint` as worker `worker_id` and runs the
/// bundles it is sent with this process's Python executor, until the runner
/// closes the control stream. The GIL is released while serving; bundles
/// take it for their Python calls. Used by `python -m oxbeam.runners.worker`,
/// the command of the process environment of `multi_processing` pipelines.
///
/// # Errors
/// `ExecutionError` if the runner cannot be reached or the control stream
/// fails.
#[pyfunction]
fn serve_worker(py: Python<'_>, control_endpoint: String, worker_id: String) -> PyResult<()> {
    let worker = worker_executor();
    let config = oxbeam_fn_api::HarnessConfig {
        control_endpoint,
        id: worker_id,
    };
    py.detach(|| oxbeam_fn_api::serve_harness(config, worker))
        .map_err(|e| errors::ExecutionError::new_err(format!("SDK harness: {e}")))
}

/// Starts `count` harness processes for the process-environment command
/// `command` (`PY -m oxbeam.runners.worker`) now, so they import while the
/// pipeline is being built; the next run whose environment has that command
/// takes them instead of starting its own. Other commands are ignored.
#[pyfunction]
fn prestart_workers(py: Python<'_>, command: &str, count: usize) {
    py.detach(|| oxbeam_fn_api::warm::prestart_once(command, count));
}

/// Hands over a harness process for `command` that the SDK forked from
/// this process (`oxbeam.runners.worker.fork_warm`): child `pid` waits for the
/// warm shim's line on the pipe `stdin` and writes to the pipes `stdout`
/// and `stderr`. The next run whose environment has that command takes it;
/// the descriptors are this module's from now on, and the child is reaped
/// here.
///
/// # Errors
/// `ValueError` if `command` is not a harness kept warm or a descriptor is
/// not open (the caller still owns them then).
#[pyfunction]
fn adopt_worker(command: &str, pid: i32, stdin: i32, stdout: i32, stderr: i32) -> PyResult<()> {
    // SAFETY: the contract of this private function (see `_oxbeam.pyi`):
    // `pid` is a child nothing else waits for, and the descriptors are pipe
    // ends the caller gives up.
    unsafe { oxbeam_fn_api::warm::adopt(command, pid, stdin, stdout, stderr) }
        .map_err(pyo3::exceptions::PyValueError::new_err)
}

/// Stops the harness processes [`prestart_workers`] started (or
/// [`adopt_worker`] took) for `command` that no run took.
#[pyfunction]
fn release_workers(py: Python<'_>, command: &str) {
    py.detach(|| oxbeam_fn_api::warm::release(command));
}

/// The executor of a worker (a harness process, or a LOOPBACK worker
/// thread): Python stages, splittable by the runner, and Wasm stages.
fn worker_executor() -> Arc<dyn oxbeam_fn_api::Executor> {
    let slot: ErrorSlot = Arc::new(Mutex::new(Vec::new()));
    Arc::new(WorkerExecutor {
        python: PythonExecutor::new(slot, Arc::new(Interrupt::default())).with_splits(),
        wasm: wasm_executor(),
    })
}

/// A worker process's executor: Wasm stages (a job service runs the Python
/// SDK's `oxbeam:env:wasm:v1` stages in these workers too) on the Wasm
/// executor, every other stage on the Python one.
struct WorkerExecutor {
    python: PythonExecutor,
    wasm: Arc<WasmExecutor>,
}

impl oxbeam_fn_api::Executor for WorkerExecutor {
    fn name(&self) -> &str {
        "oxbeam Python worker (Python and Wasm stages)"
    }

    fn create_processor(
        &self,
        descriptor: Arc<oxbeam_model::fn_execution::ProcessBundleDescriptor>,
    ) -> oxbeam_fn_api::Result<Box<dyn oxbeam_fn_api::BundleProcessor>> {
        if oxbeam_wasm::runs_wasm(&descriptor) {
            self.wasm.create_processor(descriptor)
        } else {
            self.python.create_processor(descriptor)
        }
    }
}

/// Runs `pipeline` (an encoded Beam `Pipeline`) on the Beam job service
/// at `endpoint` (`--runner=PortableRunner --job_endpoint=...`, e.g.
/// `oxbeam job-server`) with `options` (a JSON object of pipeline options).
/// Returns the job's final state, its error messages (empty unless it
/// failed) and, when it is `DONE`, its metrics as [`run_pipeline`] returns
/// them. Ctrl-C cancels the job.
///
/// # Errors
/// `ExecutionError` if the service cannot be reached or refuses the job.
#[pyfunction]
#[pyo3(signature = (endpoint, pipeline, options, job_name))]
fn submit_job(
    py: Python<'_>,
    endpoint: &str,
    pipeline: &[u8],
    options: &str,
    job_name: &str,
) -> PyResult<(String, String, String, MetricRows)> {
    Ok(
        match job_client::run_job(py, endpoint, pipeline, options, job_name)? {
            job_client::Outcome::Done(m) => {
                (String::new(), "DONE".into(), String::new(), metric_rows(&m))
            }
            job_client::Outcome::Failed {
                job_id,
                state,
                error,
            } => (job_id, state, error, Default::default()),
        },
    )
}

/// A job's metrics as the rows [`run_pipeline`] returns.
fn metric_rows(m: &oxbeam_fn_api::Metrics) -> MetricRows {
    let names =
        |k: &oxbeam_fn_api::MetricKey| (k.transform.clone(), k.namespace.clone(), k.name.clone());
    let counters = m
        .counters
        .iter()
        .map(|(k, v)| {
            let (t, ns, n) = names(k);
            (t, ns, n, *v)
        })
        .collect();
    let dists = m
        .distributions
        .iter()
        .map(|(k, d)| {
            let (t, ns, n) = names(k);
            (t, ns, n, d.count, d.sum, d.min, d.max)
        })
        .collect();
    let gauges = m
        .gauges
        .iter()
        .map(|(k, (v, ts))| {
            let (t, ns, n) = names(k);
            (t, ns, n, *v, *ts)
        })
        .collect();
    let string_sets = m
        .string_sets
        .iter()
        .map(|(k, set)| {
            let (t, ns, n) = names(k);
            (t, ns, n, set.iter().cloned().collect())
        })
        .collect();
    (counters, dists, gauges, string_sets)
}

/// Whether `pipeline` has an unbounded PCollection.
fn is_unbounded(pipeline: &oxbeam_model::pipeline::Pipeline) -> bool {
    let unbounded = oxbeam_model::pipeline::is_bounded::Enum::Unbounded as i32;
    pipeline
        .components
        .as_ref()
        .is_some_and(|c| c.pcollections.values().any(|p| p.is_bounded == unbounded))
}

/// Longest wait between two checks for Ctrl-C while a job runs.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Runs the job on its own thread, the GIL released, and checks for
/// signals every [`SIGNAL_POLL`] (see [`run_pipeline`]); returns as soon as
/// the job ends. `Err` is the
/// signal handler's exception, raised once the cancelled job stopped.
fn run_interruptible(
    py: Python<'_>,
    runner: &LocalRunner,
    proto: &oxbeam_model::pipeline::Pipeline,
    executors: &Executors,
    interrupt: &Interrupt,
    drains: bool,
) -> PyResult<Result<oxbeam_runner_local::PipelineResult, oxbeam_runner_local::Error>> {
    let job = match py.detach(|| runner.start(proto, executors)) {
        Ok(job) => job,
        Err(e) => return Ok(Err(e)),
    };
    let mut draining = false;
    let mut signal = None;
    while !py.detach(|| job.wait_timeout(SIGNAL_POLL)) {
        if let Err(e) = py.check_signals() {
            if drains && !draining {
                eprintln!("oxbeam: draining the pipeline (Ctrl-C again to cancel)");
                draining = true;
                job.drain();
                continue;
            }
            job.cancel();
            interrupt.cancel(py);
            signal = Some(e);
            break;
        }
    }
    let result = py.detach(|| job.wait());
    match signal {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

/// The `oxbeam._oxbeam` extension module.
#[pymodule]
pub fn _oxbeam(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_proto, m)?)?;
    m.add_function(wrap_pyfunction!(decode_proto, m)?)?;
    m.add_function(wrap_pyfunction!(run_pipeline, m)?)?;
    m.add_function(wrap_pyfunction!(serve_worker, m)?)?;
    m.add_function(wrap_pyfunction!(prestart_workers, m)?)?;
    m.add_function(wrap_pyfunction!(release_workers, m)?)?;
    m.add_function(wrap_pyfunction!(adopt_worker, m)?)?;
    m.add_function(wrap_pyfunction!(submit_job, m)?)?;
    m.add_function(wrap_pyfunction!(codec::encode_values, m)?)?;
    m.add_function(wrap_pyfunction!(combine::sum_into, m)?)?;
    m.add_function(wrap_pyfunction!(batch::expand_outputs, m)?)?;
    m.add_class::<combine::SumTable>()?;
    m.add_function(wrap_pyfunction!(wat_to_wasm, m)?)?;
    m.add_class::<SinkBuffer>()?;
    m.add_class::<worker_pool::WorkerPool>()?;
    m.add_class::<state::StateClient>()?;
    m.add("BATCH_SIZE", BATCH)?;
    m.add("BLOB_MARKER", PyBytes::new(m.py(), BLOB_MARKER))?;
    let table: std::collections::BTreeMap<&str, &str> = urns::ALL.iter().copied().collect();
    m.add("URNS", table)?;
    errors::register(m)?;
    Ok(())
}
