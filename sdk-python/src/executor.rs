//! [`PythonExecutor`]: runs fused stages of Python user code in this process.
//!
//! A stage's descriptor becomes a Python `StageRunner` (`oxbeam._runtime`)
//! built from a plain description (transform ids, labels, URNs, pickled
//! functions, PCollection wiring). A bundle then costs one Python call per
//! batch of input elements: Rust decodes up to [`BATCH`] windowed values into
//! two lists (values and metas), the runner pushes them through every fused
//! transform as Python-level loops, and data sinks encode outputs in Rust
//! into buffers ([`SinkBuffer`]) that Rust hands to the runner with the GIL
//! released.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use oxbeam_fn_api::MetricKey;
use oxbeam_fn_api::{
    Bundle, BundleProcessor, ElementSplits, Error, Executor, Metrics, Result, UserCodeError,
};
use oxbeam_model::coders::{Coder, WindowCoder};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::urns::standard_p_transforms::{combine_components as cc, primitives as prim};
use prost::Message;
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::codec::{BatchDecoder, Codec, HeaderEncoder, PyHelpers};
use crate::state::{Cell, PendingTimers, StateClient, StatefulTransform};

/// Input elements per Python call.
pub const BATCH: usize = 2048;

/// How long a run of elements between split checks aims to take.
const SPLIT_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

/// Python exceptions raised by user code during a run, kept so that the
/// SDK can re-raise the original exception from `Pipeline.run()`.
pub type ErrorSlot = Arc<Mutex<Vec<PyErr>>>;

/// Stops a job's Python stages when the job is cancelled (Ctrl-C).
///
/// The runner starts no new bundles once cancelled, but a Python call
/// already running on a worker thread (a batch of up to [`BATCH`] elements
/// through user code) would run to its end. So every call into a stage is
/// made through [`Interrupt::call`], which records the calling thread, and
/// [`Interrupt::cancel`] raises `KeyboardInterrupt` asynchronously in every
/// recorded thread (`PyThreadState_SetAsyncExc`): it fires at the next
/// bytecode the thread runs (not inside a blocking C call such as a long
/// `time.sleep`, which ends first). Calls made after the cancel fail at once.
/// Both sides hold the GIL, so no exception can reach a thread after its
/// call returned (a pending one is cleared there).
#[derive(Debug, Default)]
pub struct Interrupt {
    cancelled: AtomicBool,
    /// `threading.get_ident()` of each thread inside a stage call.
    threads: Mutex<Vec<u64>>,
}

/// `PyThreadState_SetAsyncExc(thread, exc)`: `exc` null clears a pending one.
fn set_async_exc(thread: u64, exc: *mut pyo3::ffi::PyObject) {
    // The thread id is CPython's `unsigned long`, passed through its C type
    // (`c_long` in pyo3-ffi's signature) bit for bit.
    #[allow(clippy::cast_possible_wrap)]
    let id = thread as std::os::raw::c_long;
    // SAFETY: called with the GIL held (callers hold a `Python` token);
    // `exc` is null or an exception type object that lives for the whole
    // interpreter (a built-in exception class).
    unsafe {
        pyo3::ffi::PyThreadState_SetAsyncExc(id, exc);
    }
}

impl Interrupt {
    /// Whether [`Interrupt::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Cancels: calls in progress raise `KeyboardInterrupt`, new ones fail.
    pub fn cancel(&self, _py: Python<'_>) {
        self.cancelled.store(true, Ordering::SeqCst);
        let threads = self.threads.lock().map(|t| t.clone()).unwrap_or_default();
        for t in threads {
            // SAFETY of the pointer read: a static set once at interpreter start.
            set_async_exc(t, unsafe { pyo3::ffi::PyExc_KeyboardInterrupt });
        }
    }

    /// Runs `f` (a call into Python user code), interruptible by
    /// [`Interrupt::cancel`].
    fn call<'py, T>(&self, py: Python<'py>, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
        if self.is_cancelled() {
            return Err(PyKeyboardInterrupt::new_err("the job was cancelled"));
        }
        let id: u64 = py
            .import("_thread")
            .and_then(|m| m.getattr("get_ident")?.call0()?.extract())?;
        if let Ok(mut t) = self.threads.lock() {
            t.push(id);
        }
        // Looking the id up ran Python code, which may have let a cancel in
        // before this thread was listed: it set the flag before reading the
        // list, so the flag shows it now (else the call would run its whole
        // batch, seconds of user code, after Ctrl-C).
        if self.is_cancelled() {
            self.forget(id);
            return Err(PyKeyboardInterrupt::new_err("the job was cancelled"));
        }
        let r = f();
        self.forget(id);
        r
    }

    /// Takes thread `id` off the list of threads in a stage call, and drops
    /// a cancel that came after the call's last bytecode.
    fn forget(&self, id: u64) {
        if let Ok(mut t) = self.threads.lock() {
            if let Some(i) = t.iter().position(|&x| x == id) {
                t.swap_remove(i);
            }
        }
        set_async_exc(id, std::ptr::null_mut());
    }
}

/// Runs stages in environment `oxbeam:env:python:v1` in this process.
pub struct PythonExecutor {
    errors: ErrorSlot,
    interrupt: Arc<Interrupt>,
    /// Running bundles may be split for idle workers (in a harness
    /// process: in the user's process, every thread shares one
    /// interpreter lock, so a split-off part could not run in parallel).
    splits: bool,
}

impl PythonExecutor {
    /// An executor that records user exceptions in `errors`; `interrupt`
    /// stops its stages' Python code when the job is cancelled.
    pub fn new(errors: ErrorSlot, interrupt: Arc<Interrupt>) -> Self {
        PythonExecutor {
            errors,
            interrupt,
            splits: false,
        }
    }

    /// Lets the runner split running bundles (dynamic work rebalancing):
    /// for an executor serving a harness process.
    pub fn with_splits(mut self) -> Self {
        self.splits = true;
        self
    }
}

/// Encodes a data sink's output elements (called from Python), buffered until
/// Rust passes them to the runner.
#[pyclass(module = "oxbeam._oxbeam")]
pub struct SinkBuffer {
    codec: Codec,
    helpers: PyHelpers,
    headers: HeaderEncoder,
    buf: Vec<u8>,
    ends: Vec<usize>,
}

#[pymethods]
impl SinkBuffer {
    /// Encodes `values[i]` with header `metas[i]` for every i.
    fn emit_batch(
        &mut self,
        values: &Bound<'_, PyList>,
        metas: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        for (v, m) in values.iter().zip(metas.iter()) {
            self.headers.encode(&self.helpers, &m, &mut self.buf)?;
            self.codec.encode(&self.helpers, &v, &mut self.buf, true)?;
            self.ends.push(self.buf.len());
        }
        Ok(())
    }
}

struct Sink {
    id: String,
    buffer: Py<SinkBuffer>,
}

struct Source {
    id: String,
    decoder: BatchDecoder,
    /// The port's windowed value coder: where elements end (for splits).
    coder: Coder,
}

struct SideSpec {
    transform: String,
    local_name: String,
    decoder: BatchDecoder,
    /// (address, length) of the bytes the cached lists were decoded from.
    cache: Option<(usize, usize, Py<PyAny>)>,
}

struct Processor {
    stage: String,
    runner: Py<PyAny>,
    helpers: PyHelpers,
    sources: Vec<Source>,
    sinks: Vec<Sink>,
    sides: Vec<SideSpec>,
    /// User state and timers, for stages with stateful DoFns.
    client: Option<Py<StateClient>>,
    errors: ErrorSlot,
    interrupt: Arc<Interrupt>,
    /// See [`PythonExecutor::with_splits`].
    splits: bool,
}

fn invalid(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::invalid(what, e)
}

fn window_coder_of(
    components: &pb::Components,
    coder_id: &str,
    what: &str,
) -> Result<(Codec, WindowCoder)> {
    let c = Coder::from_proto(coder_id, components).map_err(|e| invalid(what, e))?;
    let Coder::WindowedValue { value, window } = &c else {
        return Err(invalid(
            what,
            format!("coder {coder_id} is not a windowed value coder"),
        ));
    };
    let wc = WindowCoder::from_coder(window).ok_or_else(|| Error::Unsupported {
        transform: what.to_string(),
        message: format!(
            "window coder {} is not a standard window coder",
            window.urn()
        ),
    })?;
    let codec = Codec::from_coder(value).map_err(|m| Error::Unsupported {
        transform: what.to_string(),
        message: m,
    })?;
    Ok((codec, wc))
}

fn put<'py, V: IntoPyObject<'py>>(d: &Bound<'py, PyDict>, k: &str, v: V) -> Result<()> {
    d.set_item(k, v)
        .map_err(|e| Error::Internal(format!("Python SDK runtime: {}", Into::<PyErr>::into(e))))
}

fn internal(e: PyErr) -> Error {
    Error::Internal(format!("Python SDK runtime: {e}"))
}

fn window_fn_tuple<'py>(
    py: Python<'py>,
    spec: &pb::FunctionSpec,
    id: &str,
) -> Result<Bound<'py, PyTuple>> {
    let ms = |d: Option<prost_types::Duration>| {
        d.map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
    };
    let bad = |e: prost::DecodeError| invalid(format!("window fn of {id}"), e);
    let t = match spec.urn.as_str() {
        urns::global_windows_payload::PROPERTIES | "" => ("global",).into_pyobject(py),
        urns::fixed_windows_payload::PROPERTIES => {
            let p = pb::FixedWindowsPayload::decode(&spec.payload[..]).map_err(bad)?;
            let offset = p
                .offset
                .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
            ("fixed", ms(p.size), offset).into_pyobject(py)
        }
        urns::sliding_windows_payload::PROPERTIES => {
            let p = pb::SlidingWindowsPayload::decode(&spec.payload[..]).map_err(bad)?;
            let offset = p
                .offset
                .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
            ("sliding", ms(p.size), ms(p.period), offset).into_pyobject(py)
        }
        urns::session_windows_payload::PROPERTIES => {
            let p = pb::SessionWindowsPayload::decode(&spec.payload[..]).map_err(bad)?;
            ("sessions", ms(p.gap_size)).into_pyobject(py)
        }
        other => {
            return Err(Error::Unsupported {
                transform: id.to_string(),
                message: format!("window fn {other} is not supported by the Python executor"),
            });
        }
    };
    t.map_err(internal)
}

/// What the state client needs of stateful ParDo `id` with main input
/// `main` and payload `p`: key and window coders, cells, timer families.
fn stateful_transform(
    d: &ProcessBundleDescriptor,
    components: &pb::Components,
    id: &str,
    main: &str,
    p: &pb::ParDoPayload,
) -> Result<StatefulTransform> {
    let what = format!("stateful transform {id}");
    let pc = d
        .pcollections
        .get(main)
        .ok_or_else(|| invalid(&what, format!("unknown PCollection {main}")))?;
    let coder = Coder::from_proto(&pc.coder_id, components).map_err(|e| invalid(&what, e))?;
    let Coder::Kv { key, .. } = &coder else {
        return Err(invalid(&what, "its input is not keyed (KV coder)"));
    };
    let unsupported = |m: String| Error::Unsupported {
        transform: id.to_string(),
        message: m,
    };
    let key = Codec::from_coder(key).map_err(unsupported)?;
    let ws = d
        .windowing_strategies
        .get(&pc.windowing_strategy_id)
        .ok_or_else(|| invalid(&what, "unknown windowing strategy"))?;
    let wc = Coder::from_proto(&ws.window_coder_id, components).map_err(|e| invalid(&what, e))?;
    let window = WindowCoder::from_coder(&wc)
        .ok_or_else(|| unsupported(format!("state in windows of coder {}", wc.urn())))?;
    use pb::state_spec::Spec;
    let mut ids: Vec<&String> = p.state_specs.keys().collect();
    ids.sort();
    let mut cells = Vec::new();
    for sid in ids {
        let (coder_id, key_coder_id) = match &p.state_specs[sid].spec {
            Some(Spec::ReadModifyWriteSpec(s)) => (&s.coder_id, None),
            Some(Spec::BagSpec(s)) => (&s.element_coder_id, None),
            Some(Spec::SetSpec(s)) => (&s.element_coder_id, None),
            Some(Spec::CombiningSpec(s)) => (&s.accumulator_coder_id, None),
            Some(Spec::OrderedListSpec(s)) => (&s.element_coder_id, None),
            Some(Spec::MapSpec(s)) => (&s.value_coder_id, Some(&s.key_coder_id)),
            _ => {
                return Err(unsupported(format!(
                    "state {sid}: only value, bag, set, combining, ordered list and map state"
                )));
            }
        };
        let codec_of = |id: &str| {
            let c = Coder::from_proto(id, components).map_err(|e| invalid(&what, e))?;
            Codec::from_coder(&c).map_err(unsupported)
        };
        cells.push(Cell {
            id: sid.clone(),
            codec: codec_of(coder_id)?,
            key_codec: key_coder_id.map(|k| codec_of(k)).transpose()?,
        });
    }
    let mut families: Vec<String> = p.timer_family_specs.keys().cloned().collect();
    families.sort();
    Ok(StatefulTransform {
        transform: id.to_string(),
        key,
        window,
        cells,
        families,
    })
}

impl Executor for PythonExecutor {
    fn name(&self) -> &str {
        "python"
    }

    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        let d = &*descriptor;
        let components = pb::Components {
            coders: d.coders.clone(),
            ..Default::default()
        };
        Python::attach(|py| {
            let helpers = PyHelpers::new(py).map_err(internal)?;
            let transforms = PyList::empty(py);
            let source_map = PyDict::new(py);
            let sink_map = PyDict::new(py);
            let mut sources = Vec::new();
            let mut sinks = Vec::new();
            let mut sides = Vec::new();
            let mut stateful: Vec<StatefulTransform> = Vec::new();
            let mut ids: Vec<&String> = d.transforms.keys().collect();
            ids.sort();
            for id in ids {
                let t = &d.transforms[id];
                let spec = t.spec.clone().unwrap_or_default();
                let payload = &spec.payload[..];
                let label = if t.unique_name.is_empty() {
                    id.as_str()
                } else {
                    t.unique_name.as_str()
                };
                let single = |m: &BTreeMap<String, String>, what: &str| -> Result<String> {
                    let mut it = m.values();
                    match (it.next(), it.next()) {
                        (Some(v), None) => Ok(v.clone()),
                        _ => Err(invalid(
                            format!("transform {id}"),
                            format!("expected one {what}, found {}", m.len()),
                        )),
                    }
                };
                let entry = PyDict::new(py);
                put(&entry, "id", id)?;
                put(&entry, "label", label)?;
                put(&entry, "urn", spec.urn.as_str())?;
                let outputs: BTreeMap<&String, &String> = t.outputs.iter().collect();
                put(&entry, "outputs", outputs)?;
                match spec.urn.as_str() {
                    urns::fn_api_transforms::runner::DATA_SOURCE => {
                        let port = RemoteGrpcPort::decode(payload)
                            .map_err(|e| invalid(format!("data port {id}"), e))?;
                        let (codec, wc) = window_coder_of(&components, &port.coder_id, id)?;
                        source_map
                            .set_item(id, single(&t.outputs, "output")?)
                            .map_err(internal)?;
                        sources.push(Source {
                            id: id.clone(),
                            decoder: BatchDecoder::new(codec, wc),
                            coder: Coder::from_proto(&port.coder_id, &components)
                                .map_err(|e| invalid(format!("data port {id}"), e))?,
                        });
                        continue;
                    }
                    urns::fn_api_transforms::runner::DATA_SINK => {
                        let port = RemoteGrpcPort::decode(payload)
                            .map_err(|e| invalid(format!("data port {id}"), e))?;
                        let (codec, _) = window_coder_of(&components, &port.coder_id, id)?;
                        let buffer = Py::new(
                            py,
                            SinkBuffer {
                                codec,
                                helpers: helpers.clone_ref(py),
                                headers: HeaderEncoder::default(),
                                buf: Vec::new(),
                                ends: Vec::new(),
                            },
                        )
                        .map_err(internal)?;
                        sink_map
                            .set_item(id, (single(&t.inputs, "input")?, buffer.clone_ref(py)))
                            .map_err(internal)?;
                        sinks.push(Sink {
                            id: id.clone(),
                            buffer,
                        });
                        continue;
                    }
                    prim::PAR_DO => {
                        let p = pb::ParDoPayload::decode(payload)
                            .map_err(|e| invalid(format!("ParDo payload of {id}"), e))?;
                        let f = p.do_fn.clone().unwrap_or_default();
                        if f.urn != urns::oxbeam_python::DO_FN {
                            return Err(Error::Unsupported {
                                transform: label.to_string(),
                                message: format!(
                                    "DoFn {} is not a Python DoFn ({})",
                                    f.urn,
                                    urns::oxbeam_python::DO_FN
                                ),
                            });
                        }
                        put(&entry, "fn", PyBytes::new(py, &f.payload).into_any())?;
                        let mut side_names: Vec<&String> = p.side_inputs.keys().collect();
                        side_names.sort();
                        let mut main = None;
                        for (local, pcoll) in &t.inputs {
                            if !p.side_inputs.contains_key(local) {
                                main = Some(pcoll.clone());
                            }
                        }
                        let main = main
                            .ok_or_else(|| invalid(format!("transform {id}"), "no main input"))?;
                        if !p.state_specs.is_empty() || !p.timer_family_specs.is_empty() {
                            let st = stateful_transform(d, &components, id, &main, &p)?;
                            let cells = PyDict::new(py);
                            for (i, c) in st.cells.iter().enumerate() {
                                cells.set_item(&c.id, i).map_err(internal)?;
                            }
                            let families = PyDict::new(py);
                            for (i, f) in st.families.iter().enumerate() {
                                families.set_item(f, i).map_err(internal)?;
                            }
                            put(&entry, "stateful", stateful.len())?;
                            put(&entry, "state_cells", cells)?;
                            put(&entry, "timer_families", families)?;
                            stateful.push(st);
                        }
                        put(&entry, "input", main)?;
                        for local in &side_names {
                            let pcoll_id = t.inputs.get(*local).ok_or_else(|| {
                                invalid(
                                    format!("transform {id}"),
                                    format!("side input {local} has no PCollection"),
                                )
                            })?;
                            let pcoll = d.pcollections.get(pcoll_id).ok_or_else(|| {
                                invalid(
                                    format!("transform {id}"),
                                    format!("unknown PCollection {pcoll_id}"),
                                )
                            })?;
                            let ws = d
                                .windowing_strategies
                                .get(&pcoll.windowing_strategy_id)
                                .ok_or_else(|| {
                                    invalid(
                                        format!("PCollection {pcoll_id}"),
                                        "unknown windowing strategy",
                                    )
                                })?;
                            let wv = format!("{}\u{0}side", pcoll.coder_id);
                            let mut comps = components.clone();
                            comps.coders.insert(
                                wv.clone(),
                                pb::Coder {
                                    spec: Some(pb::FunctionSpec {
                                        urn: urns::standard_coders::WINDOWED_VALUE.to_string(),
                                        payload: Default::default(),
                                    }),
                                    component_coder_ids: vec![
                                        pcoll.coder_id.clone(),
                                        ws.window_coder_id.clone(),
                                    ],
                                },
                            );
                            let (codec, wc) = window_coder_of(&comps, &wv, id)?;
                            sides.push(SideSpec {
                                transform: id.clone(),
                                local_name: (*local).clone(),
                                decoder: BatchDecoder::new(codec, wc),
                                cache: None,
                            });
                        }
                        put(&entry, "side_inputs", side_names)?;
                    }
                    cc::COMBINE_PER_KEY_PRECOMBINE
                    | cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS
                    | cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS
                    | cc::COMBINE_GROUPED_VALUES
                    | cc::COMBINE_PER_KEY_CONVERT_TO_ACCUMULATORS => {
                        let p = pb::CombinePayload::decode(payload)
                            .map_err(|e| invalid(format!("Combine payload of {id}"), e))?;
                        let f = p.combine_fn.unwrap_or_default();
                        if f.urn != urns::oxbeam_python::COMBINE_FN {
                            return Err(Error::Unsupported {
                                transform: label.to_string(),
                                message: format!(
                                    "CombineFn {} is not a Python CombineFn ({})",
                                    f.urn,
                                    urns::oxbeam_python::COMBINE_FN
                                ),
                            });
                        }
                        put(&entry, "fn", PyBytes::new(py, &f.payload).into_any())?;
                        put(&entry, "input", single(&t.inputs, "input")?)?;
                    }
                    prim::ASSIGN_WINDOWS => {
                        let p = pb::WindowIntoPayload::decode(payload)
                            .map_err(|e| invalid(format!("WindowInto payload of {id}"), e))?;
                        put(
                            &entry,
                            "window_fn",
                            window_fn_tuple(py, &p.window_fn.unwrap_or_default(), id)?.into_any(),
                        )?;
                        put(&entry, "input", single(&t.inputs, "input")?)?;
                    }
                    other => {
                        return Err(Error::Unsupported {
                            transform: label.to_string(),
                            message: format!(
                                "the Python executor does not run transforms with URN {other:?}"
                            ),
                        });
                    }
                }
                transforms.append(entry).map_err(internal)?;
            }
            let spec = PyDict::new(py);
            let client = if stateful.is_empty() {
                None
            } else {
                let c = Py::new(py, StateClient::new(helpers.clone_ref(py), stateful))
                    .map_err(internal)?;
                spec.set_item("state", c.clone_ref(py)).map_err(internal)?;
                Some(c)
            };
            spec.set_item("id", &d.id).map_err(internal)?;
            spec.set_item("transforms", transforms).map_err(internal)?;
            spec.set_item("sources", source_map).map_err(internal)?;
            spec.set_item("sinks", sink_map).map_err(internal)?;
            let runtime = py.import("oxbeam._runtime").map_err(internal)?;
            let runner = runtime
                .getattr("StageRunner")
                .and_then(|c| self.interrupt.call(py, || c.call1((spec,))))
                .map_err(|e| user_error(py, &self.errors, &d.id, e))?;
            Ok(Box::new(Processor {
                stage: d.id.clone(),
                runner: runner.unbind(),
                helpers,
                sources,
                sinks,
                sides,
                client,
                errors: self.errors.clone(),
                interrupt: self.interrupt.clone(),
                splits: self.splits,
            }) as Box<dyn BundleProcessor>)
        })
    }
}

/// Turns an exception from the Python runtime into [`Error::UserCode`],
/// reading the transform and element the runtime attached to it, and keeps
/// the exception for `Pipeline.run()`.
pub(crate) fn user_error(py: Python<'_>, slot: &ErrorSlot, stage: &str, e: PyErr) -> Error {
    let value = e.value(py);
    let ctx = value.getattr("_oxbeam_context").ok();
    let (transform, element) = match ctx
        .as_ref()
        .and_then(|c| c.extract::<(String, Option<String>)>().ok())
    {
        Some((t, el)) => (t, el),
        None => (stage.to_string(), None),
    };
    let message = py
        .import("oxbeam._runtime")
        .and_then(|m| m.getattr("format_exception")?.call1((value,)))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| e.to_string());
    if let Ok(mut v) = slot.lock() {
        v.push(e.clone_ref(py));
    }
    Error::UserCode(UserCodeError {
        transform,
        message,
        element,
    })
}

/// Outputs of Python calls, taken under the GIL and handed to the runner
/// without it: per sink (index, encoded elements, element ends), and timers
/// (transform id, family id, encoded timer) in the order user code set them.
#[derive(Default)]
struct Drained {
    data: Vec<(usize, Vec<u8>, Vec<usize>)>,
    timers: Vec<(String, String, Vec<u8>)>,
}

impl Processor {
    fn drain(&self, py: Python<'_>) -> Drained {
        let mut out = Drained::default();
        for (i, s) in self.sinks.iter().enumerate() {
            let mut b = s.buffer.bind(py).borrow_mut();
            if !b.ends.is_empty() {
                out.data
                    .push((i, std::mem::take(&mut b.buf), std::mem::take(&mut b.ends)));
            }
        }
        if let Some(c) = &self.client {
            let mut c = c.bind(py).borrow_mut();
            let timers: PendingTimers = c.take_timers();
            for (t, f, bytes) in timers {
                let (transform, family) = c.timer_target(t, f);
                out.timers
                    .push((transform.to_string(), family.to_string(), bytes));
            }
        }
        out
    }

    fn emit(&self, bundle: &mut Bundle<'_>, drained: Drained) -> Result<()> {
        for (i, buf, ends) in drained.data {
            let id = &self.sinks[i].id;
            let mut start = 0;
            for end in ends {
                bundle.sink.emit(id, &buf[start..end])?;
                start = end;
            }
        }
        for (transform, family, timer) in drained.timers {
            bundle.sink.emit_timer(&transform, &family, &timer)?;
        }
        Ok(())
    }

    /// Fires the bundle's timers: one Python call per timer input.
    fn fire_timers(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        let timers: Vec<(&str, &str, &[u8])> = bundle.timers.clone();
        for (transform, family, bytes) in timers {
            let drained = Python::attach(|py| -> Result<_> {
                let client = self.client.as_ref().ok_or_else(|| {
                    invalid(
                        format!("timers of stage {}", self.stage),
                        format!("transform {transform} has no state or timers here"),
                    )
                })?;
                let (t, fired) = {
                    let c = client.bind(py).borrow();
                    let t = c.index_of(transform).ok_or_else(|| {
                        invalid(
                            format!("timers of stage {}", self.stage),
                            format!("transform {transform} declares no timers here"),
                        )
                    })?;
                    let fired = c
                        .decode_timers(py, t, bytes)
                        .map_err(|e| invalid(format!("timers of transform {transform}"), e))?;
                    (t, fired)
                };
                let runner = self.runner.bind(py);
                self.interrupt
                    .call(py, || {
                        runner.call_method1("fire_timers", (t, family, fired))
                    })
                    .map_err(|e| user_error(py, &self.errors, &self.stage, e))?;
                Ok(self.drain(py))
            })?;
            self.emit(bundle, drained)?;
        }
        Ok(())
    }

    fn side_inputs<'py>(
        &mut self,
        py: Python<'py>,
        bundle: &Bundle<'_>,
    ) -> Result<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for s in &mut self.sides {
            let bytes = bundle.side_inputs.side_input(&s.transform, &s.local_name)?;
            let key = (bytes.as_ptr() as usize, bytes.len());
            let lists = match &s.cache {
                Some((p, l, v)) if (*p, *l) == key => v.bind(py).clone(),
                _ => {
                    let values = PyList::empty(py);
                    let metas = PyList::empty(py);
                    let mut input = bytes;
                    s.decoder
                        .decode_into(py, &self.helpers, &mut input, usize::MAX, &values, &metas)
                        .map_err(|e| {
                            invalid(format!("side input {} of {}", s.local_name, s.transform), e)
                        })?;
                    let t = PyTuple::new(py, [values.into_any(), metas.into_any()])
                        .map_err(internal)?
                        .into_any();
                    s.cache = Some((key.0, key.1, t.clone().unbind()));
                    t
                }
            };
            dict.set_item((s.transform.as_str(), s.local_name.as_str()), lists)
                .map_err(internal)?;
        }
        Ok(dict)
    }

    fn run(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        let drained = Python::attach(|py| -> Result<_> {
            let sides = self.side_inputs(py, bundle)?;
            let runner = self.runner.bind(py);
            self.interrupt
                .call(py, || runner.call_method1("start_bundle", (sides,)))
                .map_err(|e| user_error(py, &self.errors, &self.stage, e))?;
            Ok(self.drain(py))
        })?;
        self.emit(bundle, drained)?;
        // Dynamic work rebalancing (in a harness process): between
        // batches, the runner may take the last part of the elements left
        // for another harness process.
        let mut splits = bundle
            .rebalancer
            .filter(|_| self.splits)
            .map(ElementSplits::new);
        // Elements per Python call: all of a batch, or, where the runner
        // may split, runs sized to take a few milliseconds, growing from
        // one element (an element may be a whole file range to read).
        let mut run = if splits.is_some() { 1 } else { BATCH };
        let mut pending: VecDeque<(&str, &[u8])> = bundle.inputs.iter().copied().collect();
        // Until no work is left, an offer no split request claimed included.
        loop {
            while let Some((source_id, bytes)) = pending.pop_front() {
                let si = self
                    .sources
                    .iter()
                    .position(|s| s.id == source_id)
                    .ok_or_else(|| {
                        invalid(
                            format!("bundle input of stage {}", self.stage),
                            format!("no data source {source_id}"),
                        )
                    })?;
                let (mut at, mut end) = (0, bytes.len());
                while at < end {
                    let mut input = &bytes[at..end];
                    let started = std::time::Instant::now();
                    let drained = Python::attach(|py| -> Result<_> {
                        let values = PyList::empty(py);
                        let metas = PyList::empty(py);
                        self.sources[si]
                            .decoder
                            .decode_into(py, &self.helpers, &mut input, run, &values, &metas)
                            .map_err(|e| invalid(format!("input of data source {source_id}"), e))?;
                        let runner = self.runner.bind(py);
                        self.interrupt
                            .call(py, || {
                                runner.call_method1("process", (source_id, values, metas))
                            })
                            .map_err(|e| user_error(py, &self.errors, &self.stage, e))?;
                        Ok(self.drain(py))
                    })?;
                    at = end - input.len();
                    self.emit(bundle, drained)?;
                    if splits.is_some() {
                        let took = started.elapsed();
                        if took < SPLIT_CHECK_EVERY / 2 {
                            run = (run * 2).min(BATCH);
                        } else if took > SPLIT_CHECK_EVERY * 2 {
                            run = (run / 2).max(1);
                        }
                    }
                    if let Some(sp) = splits.as_mut()
                        && (at < end || !pending.is_empty())
                    {
                        let sources = &self.sources;
                        sp.check((source_id, bytes, at), &mut end, &mut pending, |sid, b| {
                            element_ends(sources, sid, b)
                        })?;
                    }
                }
                if let Some(sp) = splits.as_mut() {
                    sp.finished(source_id, &bytes[..at]);
                }
            }
            if !splits.as_mut().is_some_and(|sp| sp.reclaim(&mut pending)) {
                break;
            }
        }
        if !bundle.timers.is_empty() {
            self.fire_timers(bundle)?;
        }
        let (drained, metrics) = Python::attach(|py| -> Result<_> {
            let runner = self.runner.bind(py);
            let m = self
                .interrupt
                .call(py, || runner.call_method0("finish_bundle"))
                .map_err(|e| user_error(py, &self.errors, &self.stage, e))?;
            let metrics = extract_metrics(&m).map_err(internal)?;
            Ok((self.drain(py), metrics))
        })?;
        bundle.metrics.merge(&metrics);
        self.emit(bundle, drained)
    }
}

/// The end offset of each element of data source `id` in `bytes`.
fn element_ends(sources: &[Source], id: &str, bytes: &[u8]) -> Result<Vec<usize>> {
    let source = sources
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::Internal(format!("no data source {id}")))?;
    let mut input = bytes;
    let mut ends = Vec::new();
    while !input.is_empty() {
        source
            .coder
            .skip(&mut input, oxbeam_model::coders::Context::Nested)
            .map_err(|e| invalid(format!("input of data source {id}"), e))?;
        ends.push(bytes.len() - input.len());
    }
    Ok(ends)
}

type CounterRow = (String, String, String, i64);
type DistRow = (String, String, String, i64, i64, i64, i64);
type GaugeRow = (String, String, String, i64, i64);
type StringSetRow = (String, String, String, Vec<String>);

fn extract_metrics(m: &Bound<'_, PyAny>) -> PyResult<Metrics> {
    let (counters, dists, gauges, string_sets): (
        Vec<CounterRow>,
        Vec<DistRow>,
        Vec<GaugeRow>,
        Vec<StringSetRow>,
    ) = m.extract()?;
    let mut metrics = Metrics::default();
    for (transform, namespace, name, value, millis) in gauges {
        let key = MetricKey {
            transform,
            namespace,
            name,
        };
        metrics.set_gauge(key, value, millis);
    }
    for (transform, namespace, name, values) in string_sets {
        let key = MetricKey {
            transform,
            namespace,
            name,
        };
        metrics.string_sets.entry(key).or_default().extend(values);
    }
    for (transform, namespace, name, v) in counters {
        metrics.inc_counter(
            MetricKey {
                transform,
                namespace,
                name,
            },
            v,
        );
    }
    for (transform, namespace, name, count, sum, min, max) in dists {
        metrics.distributions.insert(
            MetricKey {
                transform,
                namespace,
                name,
            },
            oxbeam_fn_api::DistributionData {
                count,
                sum,
                min,
                max,
            },
        );
    }
    Ok(metrics)
}

impl BundleProcessor for Processor {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        if let Some(c) = &self.client {
            Python::attach(|py| c.bind(py).borrow_mut().attach(bundle));
        }
        let r = self.run(bundle);
        if let Some(c) = &self.client {
            Python::attach(|py| c.bind(py).borrow_mut().detach());
        }
        if r.is_err() {
            // Forget partial outputs of the failed bundle.
            Python::attach(|py| {
                let _ = self.drain(py);
            });
        }
        r
    }

    fn teardown(&mut self) {
        Python::attach(|py| {
            if let Err(e) = self.runner.bind(py).call_method0("teardown") {
                e.print(py);
            }
        });
    }
}
