//! [`WasmExecutor`]: runs fused stages of Wasm UDFs for any runner.
//!
//! A stage's transforms run in topological order over the bundle: each reads
//! its input PCollection's encoded elements (the bundle's input buffers for
//! a data source, a buffer of the previous transform otherwise), batches
//! them into its guest, and writes its outputs to the data sinks and/or a
//! buffer for the next transform.
//!
//! Per element the host does only framing: bytes-like values are located
//! by their length prefix (no decode, no UTF-8 pass on input), the batch
//! remembers 24 bytes per record (no allocation), and outputs whose
//! timestamp, windows and pane are the input's (map, flat map,
//! extract_outputs) copy the input's encoded header instead of re-encoding
//! it. Guest output is still checked to be one well-formed value of the
//! output coder (ASCII fast path for strings).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use oxbeam_fn_api::{
    Bundle, BundleProcessor, ElementSplits, Error, Executor, OutputSink, Result, UserCodeError,
};
use oxbeam_model::coders::{
    Coder, Context, WindowCoder, WindowedValueHeader, Windows, decode_windowed_with, wire,
};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::oxbeam::{WasmFunctionKind, WasmFunctionPayload, wasm_function_payload};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};
use prost::Message;

use crate::abi::{self, BatchWriter, Reader};
use crate::codec::ValueCodec;
use crate::guest::{Failure, Guest, Limits};
use crate::runtime::Runtime;

/// Options of a [`WasmExecutor`].
#[derive(Clone, Debug)]
pub struct WasmOptions {
    /// Limits of functions whose payload leaves them unset.
    pub limits: Limits,
    /// Elements per host→guest call.
    pub batch_elements: usize,
    /// Bytes of records per host→guest call (a batch ends at whichever
    /// bound comes first).
    pub batch_bytes: usize,
}

impl Default for WasmOptions {
    fn default() -> Self {
        WasmOptions {
            limits: Limits::default(),
            batch_elements: 4096,
            batch_bytes: 4 << 20,
        }
    }
}

/// Runs Wasm user functions (`oxbeam:fn:wasm_do_fn:v1`,
/// `oxbeam:fn:wasm_combine_fn:v1`) for stages in `oxbeam:env:wasm:v1`
/// environments.
///
/// Cheap to share (`Arc`) across runner threads. Each module is compiled
/// once per executor; each processor holds its own instances.
pub struct WasmExecutor {
    options: WasmOptions,
    plain: OnceLock<std::result::Result<Arc<Runtime>, String>>,
    fueled: OnceLock<std::result::Result<Arc<Runtime>, String>>,
}

impl std::fmt::Debug for WasmExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmExecutor")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Default for WasmExecutor {
    fn default() -> Self {
        WasmExecutor::new(WasmOptions::default())
    }
}

impl WasmExecutor {
    /// An executor with `options`. The wasmtime engine is created on first
    /// use.
    pub fn new(options: WasmOptions) -> Self {
        WasmExecutor {
            options,
            plain: OnceLock::new(),
            fueled: OnceLock::new(),
        }
    }

    /// The executor's options.
    pub fn options(&self) -> &WasmOptions {
        &self.options
    }

    fn runtime(&self, fuel: bool) -> Result<Arc<Runtime>> {
        let cell = if fuel { &self.fueled } else { &self.plain };
        cell.get_or_init(|| Runtime::new(fuel))
            .clone()
            .map_err(Error::Internal)
    }

    /// Compiles `module` into the cache ahead of the first stage using it.
    ///
    /// # Errors
    /// [`Error::Invalid`] if it is not a valid module or imports anything.
    pub fn precompile(&self, module: &[u8]) -> Result<()> {
        self.runtime(false)?
            .prepare(module)
            .map(drop)
            .map_err(|m| Error::invalid("wasm module", m))
    }

    /// Modules compiled so far (without fuel metering).
    pub fn cached_modules(&self) -> usize {
        self.plain
            .get()
            .and_then(|r| r.as_ref().ok())
            .map_or(0, |r| r.cached_modules())
    }

    /// Compiles (or finds in the cache) `module`, for checks and
    /// cold-start measurements.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an invalid module or one with imports.
    pub fn load(&self, module: &[u8]) -> Result<LoadedModule> {
        let runtime = self.runtime(false)?;
        let prepared = runtime
            .prepare(module)
            .map_err(|m| Error::invalid("wasm module", m))?;
        Ok(LoadedModule {
            runtime,
            prepared,
            limits: self.options.limits,
        })
    }
}

/// A compiled module of a [`WasmExecutor`], linked and ready to instantiate.
pub struct LoadedModule {
    runtime: Arc<Runtime>,
    prepared: crate::runtime::Prepared,
    limits: Limits,
}

impl LoadedModule {
    /// Instantiates the module and checks its ABI exports and the
    /// signature of `export` (a combine fn if `combine`).
    ///
    /// # Errors
    /// [`Error::Invalid`] if an export is missing or instantiation fails.
    pub fn instantiate(&self, export: &str, combine: bool) -> Result<()> {
        Guest::new(
            self.runtime.clone(),
            self.prepared.clone(),
            export,
            combine,
            Bytes::new(),
            self.limits,
            Default::default(),
        )
        .map(drop)
        .map_err(|m| Error::invalid("wasm module", m))
    }
}

impl Executor for WasmExecutor {
    fn name(&self) -> &str {
        "wasm"
    }

    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        Ok(Box::new(StageBuilder::build(self, &descriptor)?))
    }
}

// ------------------------------------------------------------- building

/// What the stage knows of one PCollection.
struct PColl {
    coder: Coder,
    codec: ValueCodec,
    window_coder: WindowCoder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Map,
    FlatMap,
    Filter,
    DoFn,
    Precombine,
    MergeAccumulators,
    ExtractOutputs,
    CombineGroupedValues,
}

struct Step {
    name: String,
    op: Op,
    guest: Guest,
    input: String,
    output: String,
}

struct StageBuilder;

fn single<'m>(
    m: &'m std::collections::BTreeMap<String, String>,
    id: &str,
    what: &str,
) -> Result<&'m String> {
    let mut it = m.values();
    match (it.next(), it.next()) {
        (Some(v), None) => Ok(v),
        _ => Err(Error::invalid(
            format!("transform {id}"),
            format!("expected exactly one {what}, found {}", m.len()),
        )),
    }
}

impl StageBuilder {
    fn build(exec: &WasmExecutor, d: &ProcessBundleDescriptor) -> Result<WasmProcessor> {
        let components = pb::Components {
            coders: d.coders.clone(),
            ..Default::default()
        };
        let mut pcolls = HashMap::new();
        for (id, p) in &d.pcollections {
            let coder = Coder::from_proto(&p.coder_id, &components)
                .map_err(|e| Error::invalid(format!("coder of PCollection {id}"), e))?;
            let ws = d
                .windowing_strategies
                .get(&p.windowing_strategy_id)
                .ok_or_else(|| {
                    Error::invalid(
                        format!("PCollection {id}"),
                        format!("no windowing strategy {}", p.windowing_strategy_id),
                    )
                })?;
            let wc = Coder::from_proto(&ws.window_coder_id, &components)
                .map_err(|e| Error::invalid(format!("window coder of PCollection {id}"), e))?;
            let window_coder = WindowCoder::from_coder(&wc).ok_or_else(|| Error::Unsupported {
                transform: id.clone(),
                message: format!("window coder {} is not a standard window coder", wc.urn()),
            })?;
            pcolls.insert(
                id.clone(),
                PColl {
                    codec: ValueCodec::new(&coder),
                    coder,
                    window_coder,
                },
            );
        }

        let mut sources = Vec::new();
        let mut sinks: HashMap<String, Vec<String>> = HashMap::new();
        let mut steps = Vec::new();
        for (id, t) in &d.transforms {
            let spec = t.spec.as_ref().ok_or_else(|| {
                Error::invalid(format!("transform {id}"), "transform has no spec")
            })?;
            let name = if t.unique_name.is_empty() {
                id.clone()
            } else {
                t.unique_name.clone()
            };
            let urn = spec.urn.as_str();
            use urns::standard_p_transforms::combine_components as cc;
            if urn == urns::fn_api_transforms::runner::DATA_SOURCE {
                let port = RemoteGrpcPort::decode(spec.payload.as_ref())
                    .map_err(|e| Error::invalid(format!("payload of {id}"), e))?;
                let _ = port;
                sources.push((id.clone(), single(&t.outputs, id, "output")?.clone()));
            } else if urn == urns::fn_api_transforms::runner::DATA_SINK {
                sinks
                    .entry(single(&t.inputs, id, "input")?.clone())
                    .or_default()
                    .push(id.clone());
            } else if urn == urns::standard_p_transforms::primitives::PAR_DO {
                let payload = pb::ParDoPayload::decode(spec.payload.as_ref())
                    .map_err(|e| Error::invalid(format!("ParDo payload of {id}"), e))?;
                if !payload.side_inputs.is_empty()
                    || !payload.state_specs.is_empty()
                    || !payload.timer_family_specs.is_empty()
                {
                    return Err(Error::Unsupported {
                        transform: name,
                        message: "Wasm DoFns do not support side inputs, state or timers yet"
                            .into(),
                    });
                }
                let wasm = wasm_payload(
                    payload.do_fn.unwrap_or_default(),
                    urns::wasm_functions::DO_FN,
                    "DoFn",
                    id,
                    &name,
                )?;
                let op = match wasm.kind() {
                    WasmFunctionKind::Map => Op::Map,
                    WasmFunctionKind::FlatMap => Op::FlatMap,
                    WasmFunctionKind::Filter => Op::Filter,
                    WasmFunctionKind::DoFn => Op::DoFn,
                    other => {
                        return Err(Error::invalid(
                            format!("WasmFunctionPayload of {name}"),
                            format!("kind {other:?} cannot be a ParDo"),
                        ));
                    }
                };
                let guest = exec.guest(&name, &wasm, false)?;
                steps.push(Step {
                    op,
                    guest,
                    input: single(&t.inputs, id, "main input")?.clone(),
                    output: single(&t.outputs, id, "output")?.clone(),
                    name,
                });
            } else if [
                cc::COMBINE_PER_KEY_PRECOMBINE,
                cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS,
                cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS,
                cc::COMBINE_GROUPED_VALUES,
            ]
            .contains(&urn)
            {
                let payload = pb::CombinePayload::decode(spec.payload.as_ref())
                    .map_err(|e| Error::invalid(format!("Combine payload of {id}"), e))?;
                let wasm = wasm_payload(
                    payload.combine_fn.unwrap_or_default(),
                    urns::wasm_functions::COMBINE_FN,
                    "CombineFn",
                    id,
                    &name,
                )?;
                let op = match urn {
                    u if u == cc::COMBINE_PER_KEY_PRECOMBINE => Op::Precombine,
                    u if u == cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS => Op::MergeAccumulators,
                    u if u == cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS => Op::ExtractOutputs,
                    _ => Op::CombineGroupedValues,
                };
                let guest = exec.guest(&name, &wasm, true)?;
                steps.push(Step {
                    op,
                    guest,
                    input: single(&t.inputs, id, "input")?.clone(),
                    output: single(&t.outputs, id, "output")?.clone(),
                    name,
                });
            } else {
                return Err(Error::Unsupported {
                    transform: name,
                    message: format!("the Wasm executor does not run {urn}"),
                });
            }
        }
        for s in &steps {
            for p in [&s.input, &s.output] {
                if !pcolls.contains_key(p) {
                    return Err(Error::invalid(
                        format!("transform {}", s.name),
                        format!("unknown PCollection {p}"),
                    ));
                }
            }
            check_coders(s, &pcolls)?;
        }

        // Topological order: a step runs once its input is produced.
        let mut ready: HashSet<String> = sources.iter().map(|(_, p)| p.clone()).collect();
        let mut ordered = Vec::with_capacity(steps.len());
        while !steps.is_empty() {
            let Some(i) = steps.iter().position(|s| ready.contains(&s.input)) else {
                return Err(Error::invalid(
                    format!("descriptor {}", d.id),
                    "transforms read PCollections no source or transform produces",
                ));
            };
            let s = steps.swap_remove(i);
            ready.insert(s.output.clone());
            ordered.push(s);
        }
        let mut consumed = HashSet::new();
        for s in &ordered {
            consumed.insert(s.input.clone());
        }
        Ok(WasmProcessor {
            steps: ordered,
            sources,
            sinks,
            consumed,
            pcolls,
            batch_elements: exec.options.batch_elements.max(1),
            batch_bytes: exec.options.batch_bytes.max(1024),
            scratch: Scratch::default(),
        })
    }
}

/// Rejects coder shapes an op cannot work with, at build time.
fn check_coders(s: &Step, pcolls: &HashMap<String, PColl>) -> Result<()> {
    let input = &pcolls[&s.input].coder;
    let output = &pcolls[&s.output].coder;
    let need_kv = |c: &Coder, what: &str| match c {
        Coder::Kv { .. } => Ok(()),
        other => Err(Error::invalid(
            format!("transform {}", s.name),
            format!("{what} coder must be a kv, found {}", other.urn()),
        )),
    };
    match s.op {
        Op::Map | Op::FlatMap | Op::Filter | Op::DoFn => Ok(()),
        Op::Precombine | Op::ExtractOutputs => {
            need_kv(input, "input")?;
            need_kv(output, "output")
        }
        Op::MergeAccumulators | Op::CombineGroupedValues => {
            need_kv(output, "output")?;
            match input {
                Coder::Kv { value, .. } if matches!(**value, Coder::Iterable(_)) => Ok(()),
                other => Err(Error::invalid(
                    format!("transform {}", s.name),
                    format!(
                        "input coder must be kv<_, iterable<_>>, found {}",
                        other.urn()
                    ),
                )),
            }
        }
    }
}

impl WasmExecutor {
    fn guest(&self, name: &str, wasm: &WasmFunctionPayload, combine: bool) -> Result<Guest> {
        if wasm.abi_version > 1 {
            return Err(Error::Unsupported {
                transform: name.into(),
                message: format!("Wasm ABI version {} (this host speaks 1)", wasm.abi_version),
            });
        }
        let is_combine = wasm.kind() == WasmFunctionKind::Combine;
        if is_combine != combine {
            return Err(Error::invalid(
                format!("WasmFunctionPayload of {name}"),
                format!("kind {:?} does not fit this transform", wasm.kind()),
            ));
        }
        let module: Cow<'_, [u8]> = match &wasm.module {
            Some(wasm_function_payload::Module::ModuleBytes(b)) => Cow::Borrowed(b.as_ref()),
            Some(wasm_function_payload::Module::ModuleArtifact(path)) => {
                Cow::Owned(std::fs::read(path).map_err(|e| {
                    Error::invalid(
                        format!("Wasm module of {name}"),
                        format!("cannot read artifact {path}: {e}"),
                    )
                })?)
            }
            None => {
                return Err(Error::invalid(
                    format!("WasmFunctionPayload of {name}"),
                    "no module",
                ));
            }
        };
        let mut limits = self.options.limits;
        if let Some(l) = &wasm.limits {
            if l.max_memory_bytes > 0 {
                limits.max_memory_bytes = usize::try_from(l.max_memory_bytes).unwrap_or(usize::MAX);
            }
            if l.bundle_deadline_millis > 0 {
                limits.bundle_deadline = Duration::from_millis(l.bundle_deadline_millis);
            }
            if l.fuel_per_bundle > 0 {
                limits.fuel_per_bundle = Some(l.fuel_per_bundle);
            }
        }
        let runtime = self.runtime(limits.fuel_per_bundle.is_some())?;
        let prepared = runtime
            .prepare(&module)
            .map_err(|m| Error::invalid(format!("Wasm module of {name}"), m))?;
        Guest::new(
            runtime,
            prepared,
            &wasm.export_name,
            combine,
            wasm.config.clone(),
            limits,
            Arc::new(crate::wasi::Grants::from_proto(wasm.grants.as_ref())),
        )
        .map_err(|m| Error::invalid(format!("Wasm module of {name}"), m))
    }
}

// ------------------------------------------------------------- running

/// Buffers reused across batches and bundles.
#[derive(Default)]
struct Scratch {
    batch: BatchWriter,
    element: Vec<u8>,
}

/// Processes bundles of one stage.
pub(crate) struct WasmProcessor {
    steps: Vec<Step>,
    sources: Vec<(String, String)>,
    sinks: HashMap<String, Vec<String>>,
    /// PCollections some step reads (buffered during the bundle).
    consumed: HashSet<String>,
    pcolls: HashMap<String, PColl>,
    batch_elements: usize,
    batch_bytes: usize,
    scratch: Scratch,
}

/// Where one step's outputs go.
struct Out<'a> {
    sinks: &'a [String],
    sink: &'a mut dyn OutputSink,
    buffer: Option<&'a mut Vec<u8>>,
}

impl Out<'_> {
    fn emit(&mut self, element: &[u8]) -> Result<()> {
        for s in self.sinks {
            self.sink.emit(s, element)?;
        }
        if let Some(b) = self.buffer.as_deref_mut() {
            b.extend_from_slice(element);
        }
        Ok(())
    }
}

/// One decoded input element.
struct Elem<'a> {
    header: WindowedValueHeader,
    /// The whole encoded element.
    raw: &'a [u8],
    /// The value, nested.
    value: &'a [u8],
    /// The value, outer, when the stage found it on the way (bytes-like
    /// coders: the bytes after the length prefix).
    outer: Option<&'a [u8]>,
}

fn for_each_element<'a>(
    segments: &[&'a [u8]],
    pcoll: &PColl,
    mut f: impl FnMut(Elem<'a>) -> Result<()>,
) -> Result<()> {
    // Bytes-like values (strings, bytes) are only framed here, not checked:
    // the guest sees them as they are, and outputs are checked.
    let prefixed = matches!(pcoll.codec, ValueCodec::Prefixed { .. });
    for seg in segments {
        let mut input: &'a [u8] = seg;
        while !input.is_empty() {
            let before = input;
            let (header, value, outer) = if prefixed {
                let header = match global_header(pcoll.window_coder, input) {
                    Some(h) => {
                        input = &input[GLOBAL_HEADER_LEN..];
                        h
                    }
                    None => WindowedValueHeader::decode(&mut input, pcoll.window_coder)
                        .map_err(|e| Error::invalid("input element", e))?,
                };
                let start = input;
                let outer = wire::read_length_prefixed(&mut input)
                    .map_err(|e| Error::invalid("input element", e))?;
                (header, &start[..start.len() - input.len()], Some(outer))
            } else {
                let r = decode_windowed_with(
                    &mut input,
                    pcoll.window_coder,
                    &pcoll.coder,
                    Context::Nested,
                )
                .map_err(|e| Error::invalid("input element", e))?;
                (r.header, r.value, None)
            };
            f(Elem {
                header,
                raw: &before[..before.len() - input.len()],
                value,
                outer,
            })?;
        }
    }
    Ok(())
}

/// Bytes of the usual header in the global window: timestamp, one window,
/// a one-byte pane.
const GLOBAL_HEADER_LEN: usize = 13;

/// The header at the start of `input` when it has the usual global-window
/// form, read inline (the general decoder returns its result through
/// memory, which stalls the next loads: ~9% of a Map stage's time).
#[inline(always)]
fn global_header(window_coder: WindowCoder, input: &[u8]) -> Option<WindowedValueHeader> {
    if window_coder != WindowCoder::Global {
        return None;
    }
    let head: &[u8; GLOBAL_HEADER_LEN] = input.get(..GLOBAL_HEADER_LEN)?.try_into().ok()?;
    let (timestamp, rest) = head.split_first_chunk::<8>()?;
    match rest {
        [0, 0, 0, 1, pane] if pane >> 4 == 0 => Some(WindowedValueHeader {
            timestamp: Timestamp::from_ordered_bytes(*timestamp),
            windows: Windows::GLOBAL,
            pane: wire::read_pane(&mut &[*pane][..]).ok()?,
        }),
        _ => None,
    }
}

fn render(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(64)];
    let mut s = shown.escape_ascii().to_string();
    if bytes.len() > shown.len() {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

fn user_error(step: &str, message: String, element: Option<&[u8]>) -> Error {
    Error::UserCode(UserCodeError {
        transform: step.to_string(),
        message,
        element: element.map(render),
    })
}

fn to_outer<'a>(codec: &ValueCodec, nested: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    codec
        .nested_to_outer(nested)
        .map_err(|m| Error::invalid("input element", m))
}

impl BundleProcessor for WasmProcessor {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        for s in &mut self.steps {
            s.guest
                .begin_bundle()
                .map_err(|f| user_error(&s.name, f.message, None))?;
        }
        let Some(rebalancer) = bundle.rebalancer else {
            let inputs = bundle.inputs.clone();
            return self.run(&inputs, &mut *bundle.sink);
        };
        // Dynamic work rebalancing: the bundle runs in runs of elements
        // sized to take a few milliseconds; between runs the runner may
        // take the last part of the elements left for an idle worker.
        let mut splits = ElementSplits::new(rebalancer);
        let mut pending: VecDeque<(&str, &[u8])> = bundle.inputs.iter().copied().collect();
        let mut run = 64usize;
        // Until no work is left, an offer no split request claimed included.
        loop {
            while let Some((id, bytes)) = pending.pop_front() {
                let (mut at, mut end) = (0, bytes.len());
                // Where the buffer's elements end (a split only cuts there).
                let ends = self.element_ends(id, bytes)?;
                let mut done = 0;
                while at < end {
                    done = (done + run).min(ends.len());
                    let to = ends.get(done.wrapping_sub(1)).map_or(end, |&e| e.min(end));
                    if to <= at {
                        break;
                    }
                    let started = std::time::Instant::now();
                    self.run(&[(id, &bytes[at..to])], &mut *bundle.sink)?;
                    at = to;
                    let took = started.elapsed();
                    if took < SPLIT_CHECK_EVERY / 2 {
                        run = (run * 2).min(MAX_RUN);
                    } else if took > SPLIT_CHECK_EVERY * 2 {
                        run = (run / 2).max(1);
                    }
                    if at < end || !pending.is_empty() {
                        splits.check((id, bytes, at), &mut end, &mut pending, |sid, b| {
                            self.element_ends(sid, b)
                        })?;
                    }
                }
                splits.finished(id, &bytes[..at]);
            }
            if !splits.reclaim(&mut pending) {
                break;
            }
        }
        Ok(())
    }
}

/// How long a run of elements between split checks aims to take.
const SPLIT_CHECK_EVERY: Duration = Duration::from_millis(5);
/// The longest run of elements between split checks.
const MAX_RUN: usize = 1 << 16;

impl WasmProcessor {
    /// The end offset of each element of data source `source` in `bytes`.
    fn element_ends(&self, source: &str, bytes: &[u8]) -> Result<Vec<usize>> {
        let pcoll = self
            .sources
            .iter()
            .find(|(id, _)| id == source)
            .map(|(_, p)| &self.pcolls[p])
            .ok_or_else(|| Error::Internal(format!("no data source {source}")))?;
        let base = bytes.as_ptr() as usize;
        let mut ends = Vec::new();
        for_each_element(&[bytes], pcoll, |e| {
            ends.push(e.raw.as_ptr() as usize - base + e.raw.len());
            Ok(())
        })?;
        Ok(ends)
    }

    /// Runs every step of the stage over `inputs`, outputs to `sink`.
    fn run(&mut self, inputs: &[(&str, &[u8])], sink: &mut dyn OutputSink) -> Result<()> {
        let mut source_segments: HashMap<&str, Vec<&[u8]>> = HashMap::new();
        for (source, data) in inputs {
            if let Some((_, pcoll)) = self.sources.iter().find(|(id, _)| id == source) {
                source_segments
                    .entry(pcoll.as_str())
                    .or_default()
                    .push(data);
            }
        }
        // Sources read straight by sinks.
        for (pcoll, segments) in &source_segments {
            if let Some(sinks) = self.sinks.get(*pcoll) {
                for_each_element(segments, &self.pcolls[*pcoll], |e| {
                    for s in sinks {
                        sink.emit(s, e.raw)?;
                    }
                    Ok(())
                })?;
            }
        }
        let mut buffers: HashMap<String, Vec<u8>> = HashMap::new();
        let no_sinks = Vec::new();
        for i in 0..self.steps.len() {
            let (input, output) = (self.steps[i].input.clone(), self.steps[i].output.clone());
            let mut buffer = self.consumed.contains(&output).then(Vec::new);
            {
                let segments: Vec<&[u8]> = match source_segments.get(input.as_str()) {
                    Some(s) => s.clone(),
                    None => buffers
                        .get(&input)
                        .map(|b| vec![&b[..]])
                        .unwrap_or_default(),
                };
                let mut out = Out {
                    sinks: self.sinks.get(&output).unwrap_or(&no_sinks),
                    sink: &mut *sink,
                    buffer: buffer.as_mut(),
                };
                let ctx = StepCx {
                    input: &self.pcolls[&input],
                    output: &self.pcolls[&output],
                    batch_elements: self.batch_elements,
                    batch_bytes: self.batch_bytes,
                };
                let step = &mut self.steps[i];
                match step.op {
                    Op::Precombine => {
                        ctx.precombine(step, &segments, &mut self.scratch, &mut out)?
                    }
                    Op::MergeAccumulators | Op::CombineGroupedValues => {
                        ctx.combine_iterables(step, &segments, &mut self.scratch, &mut out)?
                    }
                    _ => ctx.elementwise(step, &segments, &mut self.scratch, &mut out)?,
                }
            }
            if let Some(b) = buffer {
                buffers.insert(output, b);
            }
        }
        Ok(())
    }
}

/// Per-step view of the stage.
struct StepCx<'p> {
    input: &'p PColl,
    output: &'p PColl,
    batch_elements: usize,
    batch_bytes: usize,
}

/// What the host remembers of each record of a pending batch: 24 bytes,
/// allocation-free, so a 4k-record batch stays in cache. Outputs that keep
/// their input's metadata copy the input's encoded header (`raw[..head]`)
/// instead of re-encoding it; the value the guest saw is recomputed only
/// for error messages.
#[derive(Clone, Copy)]
struct Pending<'a> {
    /// The whole encoded input element.
    raw: &'a [u8],
    /// Length of the element's encoded header (timestamp, windows, pane).
    head: u32,
}

impl<'a> Pending<'a> {
    fn new(e: &Elem<'a>) -> Self {
        Pending {
            raw: e.raw,
            // A header is a few dozen bytes (13 for the global window).
            head: (e.raw.len() - e.value.len()) as u32,
        }
    }

    /// The input's encoded header: the output header of a record whose
    /// timestamp, windows and pane are unchanged.
    fn header(&self) -> &'a [u8] {
        &self.raw[..self.head as usize]
    }

    /// The input's value, nested.
    fn value(&self) -> &'a [u8] {
        &self.raw[self.head as usize..]
    }
}

/// The records of one batch, and what some ops need besides.
#[derive(Default)]
struct PendingBatch<'a> {
    records: Vec<Pending<'a>>,
    /// DO_FN: each record's window and its input's pane.
    windows: Vec<(BoundedWindow, PaneInfo)>,
    /// extract_outputs: each record's key, nested.
    keys: Vec<&'a [u8]>,
}

impl PendingBatch<'_> {
    fn clear(&mut self) {
        self.records.clear();
        self.windows.clear();
        self.keys.clear();
    }
}

impl StepCx<'_> {
    fn full(&self, batch: &BatchWriter) -> bool {
        batch.count() as usize >= self.batch_elements || batch.len() >= self.batch_bytes
    }

    /// Map, flat map, filter, DoFn and extract_outputs: records follow
    /// elements.
    fn elementwise(
        &self,
        step: &mut Step,
        segments: &[&[u8]],
        scratch: &mut Scratch,
        out: &mut Out<'_>,
    ) -> Result<()> {
        let mut pending = PendingBatch {
            records: Vec::with_capacity(self.batch_elements),
            ..PendingBatch::default()
        };
        scratch.batch.clear();
        let key_coder = match (&self.input.coder, step.op) {
            (Coder::Kv { key, .. }, Op::ExtractOutputs) => Some(key.clone()),
            _ => None,
        };
        let value_codec = match step.op {
            Op::ExtractOutputs => self.input.codec.kv_value().unwrap_or(&self.input.codec),
            _ => &self.input.codec,
        };
        for_each_element(segments, self.input, |e| {
            match step.op {
                Op::DoFn => {
                    let kv = self
                        .input
                        .codec
                        .split_kv_outer(e.value)
                        .map_err(|m| Error::invalid("input element", m))?;
                    let (key, value) = match kv {
                        Some((k, v)) => (Some(k), v),
                        None => (None, to_outer(&self.input.codec, e.value)?),
                    };
                    let key = key.as_deref();
                    for w in e.header.windows.iter() {
                        let (kind, start, end) = match *w {
                            BoundedWindow::Global => (
                                0,
                                Timestamp::MIN.millis(),
                                Timestamp::GLOBAL_WINDOW_MAX.millis(),
                            ),
                            BoundedWindow::Interval { start, end } => {
                                (1, start.millis(), end.millis())
                            }
                        };
                        scratch
                            .batch
                            .record()
                            .i64(e.header.timestamp.millis())
                            .u8(kind)
                            .i64(start)
                            .i64(end)
                            .opt_bytes(key)
                            .bytes(&value);
                        pending.records.push(Pending::new(&e));
                        pending.windows.push((*w, e.header.pane));
                    }
                }
                Op::ExtractOutputs => {
                    let mut rest = e.value;
                    let key = key_coder
                        .as_ref()
                        .expect("checked kv")
                        .read_encoded(&mut rest, Context::Nested)
                        .map_err(|m| Error::invalid("input element", m))?;
                    let acc = to_outer(value_codec, rest)?;
                    scratch.batch.record().bytes(&acc);
                    pending.records.push(Pending::new(&e));
                    pending.keys.push(key);
                }
                _ => {
                    let value = match e.outer {
                        Some(v) => Cow::Borrowed(v),
                        None => to_outer(&self.input.codec, e.value)?,
                    };
                    scratch.batch.record().bytes(&value);
                    pending.records.push(Pending::new(&e));
                }
            }
            if self.full(&scratch.batch) {
                self.flush(step, &mut pending, scratch, out)?;
            }
            Ok(())
        })?;
        if !pending.records.is_empty() {
            self.flush(step, &mut pending, scratch, out)?;
        }
        Ok(())
    }

    /// The value record `p` handed the guest (outer context), for error
    /// messages; the nested bytes if they do not convert.
    fn shown<'a>(&self, op: Op, p: &Pending<'a>) -> Cow<'a, [u8]> {
        let value = p.value();
        let codec = &self.input.codec;
        let outer = match op {
            Op::DoFn => match codec.split_kv_outer(value) {
                Ok(Some((_, v))) => Ok(v),
                Ok(None) => codec.nested_to_outer(value),
                Err(m) => Err(m),
            },
            Op::ExtractOutputs => match &self.input.coder {
                Coder::Kv { key, .. } => {
                    let mut rest = value;
                    match key.skip(&mut rest, Context::Nested) {
                        Ok(()) => codec.kv_value().unwrap_or(codec).nested_to_outer(rest),
                        Err(e) => Err(e.to_string()),
                    }
                }
                _ => Err(String::new()),
            },
            _ => codec.nested_to_outer(value),
        };
        outer.unwrap_or(Cow::Borrowed(value))
    }

    fn flush(
        &self,
        step: &mut Step,
        batch: &mut PendingBatch<'_>,
        scratch: &mut Scratch,
        out: &mut Out<'_>,
    ) -> Result<()> {
        let name = step.name.as_str();
        let pending = &batch.records;
        let shown = |i: usize| pending.get(i).map(|p| self.shown(step.op, p));
        let failed = |f: Failure| {
            let shown = f.element.and_then(|i| shown(i as usize));
            user_error(name, f.message, shown.as_deref())
        };
        let op = if step.op == Op::ExtractOutputs {
            abi::OP_EXTRACT_OUTPUT
        } else {
            0
        };
        let output = step
            .guest
            .call(op, scratch.batch.finish())
            .map_err(failed)?;
        let malformed = |m: String, i: Option<usize>| {
            user_error(
                name,
                format!("malformed output: {m}"),
                i.and_then(shown).as_deref(),
            )
        };
        let codec = &self.output.codec;
        let element = &mut scratch.element;
        let mut r = Reader::new(output);
        match step.op {
            Op::Map | Op::ExtractOutputs => {
                let prefixed = match codec {
                    ValueCodec::Prefixed { utf8 } if step.op == Op::Map => Some(*utf8),
                    _ => None,
                };
                for (i, p) in pending.iter().enumerate() {
                    let (value, window) = r
                        .bytes_windowed("a map output")
                        .map_err(|m| malformed(m, Some(i)))?;
                    element.clear();
                    element.extend_from_slice(p.header());
                    match (prefixed, window) {
                        (Some(utf8), Some(window)) if value.len() < 16 => {
                            crate::codec::write_short_prefixed(utf8, value, window, element)
                        }
                        _ if step.op == Op::ExtractOutputs => {
                            element
                                .extend_from_slice(batch.keys.get(i).copied().unwrap_or_default());
                            codec
                                .kv_value()
                                .unwrap_or(codec)
                                .write_nested(value, element)
                        }
                        _ => codec.write_nested(value, element),
                    }
                    .map_err(|m| malformed(m, Some(i)))?;
                    out.emit(element)?;
                }
                if !r.is_empty() {
                    return Err(malformed(
                        format!("bytes after the {} expected outputs", pending.len()),
                        None,
                    ));
                }
            }
            Op::FlatMap => {
                // Outputs of one input come together: its header stays in
                // `element` while they do.
                let mut current = None;
                let prefixed = match codec {
                    ValueCodec::Prefixed { utf8 } => Some(*utf8),
                    _ => None,
                };
                while !r.is_empty() {
                    let i = r.u32("an input index").map_err(|m| malformed(m, None))? as usize;
                    let (value, window) = r
                        .bytes_windowed("an output value")
                        .map_err(|m| malformed(m, Some(i)))?;
                    match current {
                        Some((last, head)) if last == i => element.truncate(head),
                        _ => {
                            let p = pending.get(i).ok_or_else(|| {
                                malformed(
                                    format!("input index {i} in a batch of {}", pending.len()),
                                    None,
                                )
                            })?;
                            element.clear();
                            element.extend_from_slice(p.header());
                            current = Some((i, element.len()));
                        }
                    }
                    match (prefixed, window) {
                        (Some(utf8), Some(window)) if value.len() < 16 => {
                            crate::codec::write_short_prefixed(utf8, value, window, element)
                        }
                        _ => codec.write_nested(value, element),
                    }
                    .map_err(|m| malformed(m, Some(i)))?;
                    out.emit(element)?;
                }
            }
            Op::Filter => {
                let keep = r.rest();
                if keep.len() != pending.len() {
                    return Err(malformed(
                        format!("{} keep flags for a batch of {}", keep.len(), pending.len()),
                        None,
                    ));
                }
                for (i, (k, p)) in keep.iter().zip(pending.iter()).enumerate() {
                    match k {
                        0 => {}
                        1 => out.emit(p.raw)?,
                        k => return Err(malformed(format!("keep flag {k}"), Some(i))),
                    }
                }
            }
            Op::DoFn => {
                while !r.is_empty() {
                    let i = r.u32("an input index").map_err(|m| malformed(m, None))? as usize;
                    let (window, pane) = batch.windows.get(i).copied().ok_or_else(|| {
                        malformed(
                            format!("input index {i} in a batch of {}", pending.len()),
                            None,
                        )
                    })?;
                    let ts = r.i64("a timestamp").map_err(|m| malformed(m, Some(i)))?;
                    let key = r.opt_bytes("a key").map_err(|m| malformed(m, Some(i)))?;
                    let value = r
                        .bytes("an output value")
                        .map_err(|m| malformed(m, Some(i)))?;
                    let header = WindowedValueHeader {
                        timestamp: Timestamp::from_millis(ts),
                        windows: Windows::one(window),
                        pane,
                    };
                    element.clear();
                    header.encode(element);
                    match key {
                        Some(k) => codec.write_kv_nested(k, value, element),
                        None => codec.write_nested(value, element),
                    }
                    .map_err(|m| malformed(m, Some(i)))?;
                    out.emit(element)?;
                }
            }
            _ => return Err(Error::Internal(format!("{:?} is not elementwise", step.op))),
        }
        batch.clear();
        scratch.batch.clear();
        Ok(())
    }

    /// combine_per_key_precombine: groups the bundle by (key, window), folds
    /// each group into an accumulator.
    fn precombine(
        &self,
        step: &mut Step,
        segments: &[&[u8]],
        scratch: &mut Scratch,
        out: &mut Out<'_>,
    ) -> Result<()> {
        let Coder::Kv { key: key_coder, .. } = &self.input.coder else {
            return Err(Error::Internal("precombine input is not a kv".into()));
        };
        let value_codec = self.input.codec.kv_value().unwrap_or(&self.input.codec);
        let mut index: HashMap<(&[u8], BoundedWindow), usize> = HashMap::new();
        let mut groups: Vec<Group<'_>> = Vec::new();
        for_each_element(segments, self.input, |e| {
            let mut rest = e.value;
            let key = key_coder
                .read_encoded(&mut rest, Context::Nested)
                .map_err(|m| Error::invalid("input element", m))?;
            let value = to_outer(value_codec, rest)?;
            for w in e.header.windows.iter() {
                let g = *index.entry((key, *w)).or_insert_with(|| {
                    groups.push(Group {
                        key,
                        header: WindowedValueHeader {
                            timestamp: e.header.timestamp,
                            windows: Windows::one(*w),
                            pane: PaneInfo::NO_FIRING,
                        },
                        items: Vec::new(),
                    });
                    groups.len() - 1
                });
                let group = &mut groups[g];
                group.header.timestamp = group.header.timestamp.min(e.header.timestamp);
                group.items.push(value.clone());
            }
            Ok(())
        })?;
        let accs = self.fold(step, abi::OP_ADD_INPUTS, &groups, scratch)?;
        let acc_codec = self.output.codec.kv_value().unwrap_or(&self.output.codec);
        for (g, acc) in groups.iter().zip(&accs) {
            self.emit_kv(step, g, acc, acc_codec, scratch, out)?;
        }
        Ok(())
    }

    /// merge_accumulators and combine_grouped_values: one group per input
    /// element, the kv's iterable.
    fn combine_iterables(
        &self,
        step: &mut Step,
        segments: &[&[u8]],
        scratch: &mut Scratch,
        out: &mut Out<'_>,
    ) -> Result<()> {
        let Coder::Kv {
            key: key_coder,
            value,
        } = &self.input.coder
        else {
            return Err(Error::Internal("combine input is not a kv".into()));
        };
        let Coder::Iterable(item_coder) = &**value else {
            return Err(Error::Internal(
                "combine input is not a kv of iterable".into(),
            ));
        };
        let item_codec = ValueCodec::new(item_coder);
        let mut groups: Vec<Group<'_>> = Vec::new();
        for_each_element(segments, self.input, |e| {
            let mut rest = e.value;
            let key = key_coder
                .read_encoded(&mut rest, Context::Nested)
                .map_err(|m| Error::invalid("input element", m))?;
            let mut items = Vec::new();
            read_iterable(rest, item_coder, |item| {
                items.push(to_outer(&item_codec, item)?);
                Ok(())
            })?;
            groups.push(Group {
                key,
                header: e.header,
                items,
            });
            Ok(())
        })?;
        let out_codec = self.output.codec.kv_value().unwrap_or(&self.output.codec);
        let (op, extract) = match step.op {
            Op::MergeAccumulators => (abi::OP_MERGE_ACCUMULATORS, false),
            _ => (abi::OP_ADD_INPUTS, true),
        };
        let accs = self.fold(step, op, &groups, scratch)?;
        let results = if extract {
            self.extract(step, &groups, &accs, scratch)?
        } else {
            accs
        };
        for (g, v) in groups.iter().zip(&results) {
            self.emit_kv(step, g, v, out_codec, scratch, out)?;
        }
        Ok(())
    }

    fn emit_kv(
        &self,
        step: &Step,
        g: &Group<'_>,
        value: &[u8],
        codec: &ValueCodec,
        scratch: &mut Scratch,
        out: &mut Out<'_>,
    ) -> Result<()> {
        let element = &mut scratch.element;
        element.clear();
        g.header.encode(element);
        element.extend_from_slice(g.key);
        codec
            .write_nested(value, element)
            .map_err(|m| user_error(&step.name, format!("malformed output: {m}"), Some(g.key)))?;
        out.emit(element)
    }

    /// Folds every group's items into one accumulator, in batches of
    /// records; groups larger than a batch take several rounds, carrying
    /// their accumulator.
    fn fold(
        &self,
        step: &mut Step,
        op: i32,
        groups: &[Group<'_>],
        scratch: &mut Scratch,
    ) -> Result<Vec<Vec<u8>>> {
        let chunk = self.batch_elements;
        let mut accs: Vec<Option<Vec<u8>>> = vec![None; groups.len()];
        let mut offset = vec![0usize; groups.len()];
        let mut in_batch: Vec<usize> = Vec::new();
        loop {
            let mut any = false;
            scratch.batch.clear();
            in_batch.clear();
            for (g, group) in groups.iter().enumerate() {
                let started = accs[g].is_some();
                if started && offset[g] >= group.items.len() {
                    continue;
                }
                any = true;
                let end = (offset[g] + chunk).min(group.items.len());
                let items = &group.items[offset[g]..end];
                let b = scratch.batch.record();
                if op == abi::OP_ADD_INPUTS {
                    b.opt_bytes(accs[g].as_deref());
                    b.u32(items.len() as u32);
                } else {
                    b.u32((items.len() + usize::from(started)) as u32);
                    if let Some(a) = &accs[g] {
                        b.bytes(a);
                    }
                }
                for it in items {
                    b.bytes(it);
                }
                offset[g] = end;
                in_batch.push(g);
                if self.full(&scratch.batch) {
                    self.fold_call(step, op, groups, &in_batch, &mut accs, scratch)?;
                    scratch.batch.clear();
                    in_batch.clear();
                }
            }
            if !in_batch.is_empty() {
                self.fold_call(step, op, groups, &in_batch, &mut accs, scratch)?;
            }
            if !any {
                break;
            }
        }
        Ok(accs.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn fold_call(
        &self,
        step: &mut Step,
        op: i32,
        groups: &[Group<'_>],
        in_batch: &[usize],
        accs: &mut [Option<Vec<u8>>],
        scratch: &mut Scratch,
    ) -> Result<()> {
        let name = &step.name;
        let key_of = |i: Option<u32>| {
            i.and_then(|i| in_batch.get(i as usize))
                .map(|&g| groups[g].key)
        };
        let output = step
            .guest
            .call(op, scratch.batch.finish())
            .map_err(|f| user_error(name, f.message, key_of(f.element).map(|k| k as &[u8])))?;
        let mut r = Reader::new(output);
        for (i, &g) in in_batch.iter().enumerate() {
            let acc = r.bytes("an accumulator").map_err(|m| {
                user_error(
                    name,
                    format!("malformed output: {m}"),
                    key_of(Some(i as u32)),
                )
            })?;
            let slot = accs[g].get_or_insert_with(Vec::new);
            slot.clear();
            slot.extend_from_slice(acc);
        }
        if !r.is_empty() {
            return Err(user_error(
                name,
                format!(
                    "malformed output: bytes after the {} expected accumulators",
                    in_batch.len()
                ),
                None,
            ));
        }
        Ok(())
    }

    fn extract(
        &self,
        step: &mut Step,
        groups: &[Group<'_>],
        accs: &[Vec<u8>],
        scratch: &mut Scratch,
    ) -> Result<Vec<Vec<u8>>> {
        let mut results = vec![None; groups.len()];
        let mut in_batch = Vec::new();
        scratch.batch.clear();
        for (g, acc) in accs.iter().enumerate() {
            scratch.batch.record().bytes(acc);
            in_batch.push(g);
            if self.full(&scratch.batch) || g + 1 == accs.len() {
                self.fold_call(
                    step,
                    abi::OP_EXTRACT_OUTPUT,
                    groups,
                    &in_batch,
                    &mut results,
                    scratch,
                )?;
                scratch.batch.clear();
                in_batch.clear();
            }
        }
        Ok(results.into_iter().map(Option::unwrap_or_default).collect())
    }
}

/// A key's (or one element's) values to fold.
struct Group<'a> {
    /// The key's nested encoding.
    key: &'a [u8],
    header: WindowedValueHeader,
    /// Values or accumulators, outer context.
    items: Vec<Cow<'a, [u8]>>,
}

/// Calls `f` with each element's nested encoding of an iterable.
fn read_iterable<'a>(
    mut input: &'a [u8],
    item: &Coder,
    mut f: impl FnMut(&'a [u8]) -> Result<()>,
) -> Result<()> {
    let bad = |m: String| Error::invalid("iterable", m);
    let count = wire::read_i32_be(&mut input).map_err(|e| bad(e.to_string()))?;
    let mut item_of = |input: &mut &'a [u8]| -> Result<()> {
        let it = item
            .read_encoded(input, Context::Nested)
            .map_err(|e| bad(e.to_string()))?;
        f(it)
    };
    if count >= 0 {
        for _ in 0..count {
            item_of(&mut input)?;
        }
    } else if count == -1 {
        loop {
            let n = wire::read_varint_u64(&mut input).map_err(|e| bad(e.to_string()))?;
            if n == 0 {
                break;
            }
            for _ in 0..n {
                item_of(&mut input)?;
            }
        }
    } else {
        return Err(bad(format!("count {count}")));
    }
    Ok(())
}

/// The Wasm function a ParDo or Combine carries: `spec` must have the Wasm
/// URN `expected` (else the transform is unsupported here) and a decodable
/// `WasmFunctionPayload`.
fn wasm_payload(
    spec: pb::FunctionSpec,
    expected: &str,
    what: &str,
    id: &str,
    name: &str,
) -> Result<WasmFunctionPayload> {
    if spec.urn != expected {
        return Err(Error::Unsupported {
            transform: name.to_string(),
            message: format!("the Wasm executor cannot run {what} {}", spec.urn),
        });
    }
    WasmFunctionPayload::decode(spec.payload.as_ref())
        .map_err(|e| Error::invalid(format!("WasmFunctionPayload of {id}"), e))
}

/// Whether a transform of descriptor `d` is a Wasm function (a ParDo with
/// `oxbeam:fn:wasm_do_fn:v1` or a combine step with
/// `oxbeam:fn:wasm_combine_fn:v1`): a harness serving several kinds of
/// stages hands such descriptors to a [`WasmExecutor`].
pub fn runs_wasm(d: &ProcessBundleDescriptor) -> bool {
    use urns::standard_p_transforms::combine_components as cc;
    let combines = [
        cc::COMBINE_PER_KEY_PRECOMBINE,
        cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS,
        cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS,
        cc::COMBINE_GROUPED_VALUES,
    ];
    d.transforms
        .values()
        .filter_map(|t| t.spec.as_ref())
        .any(|spec| {
            let urn = spec.urn.as_str();
            if urn == urns::standard_p_transforms::primitives::PAR_DO {
                pb::ParDoPayload::decode(spec.payload.as_ref()).is_ok_and(|p| {
                    p.do_fn
                        .is_some_and(|f| f.urn == urns::wasm_functions::DO_FN)
                })
            } else if combines.contains(&urn) {
                pb::CombinePayload::decode(spec.payload.as_ref()).is_ok_and(|p| {
                    p.combine_fn
                        .is_some_and(|f| f.urn == urns::wasm_functions::COMBINE_FN)
                })
            } else {
                false
            }
        })
}
