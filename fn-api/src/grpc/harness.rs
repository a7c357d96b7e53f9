//! The harness's end of the Fn API: [`serve_harness`] connects to a
//! runner's control endpoint and runs the bundles it is sent on an
//! in-process [`Executor`], so any executor (native Rust, Python, Wasm) can
//! serve as an SDK harness in its own process.
//!
//! Per bundle: the descriptor (registered, or fetched with
//! GetProcessBundleDescriptor), the inputs collected from the data stream
//! until every data source is closed, then the executor's processor runs on
//! a blocking thread; outputs stream back in ~1 MB batches and each data
//! sink is closed with `is_last` before the response. Side inputs are read
//! over the State API, lazily, whole (see `state::ALL_ELEMENTS_KEY`); user
//! state is read, appended and cleared over the State API as the executor
//! asks. Timers come in on the data stream (every timer family of the
//! descriptor is an input closed with `is_last`) and go out on it, each
//! family closed with `is_last` before the response.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use oxbeam_model::fn_execution::{
    self as fe, Elements, InstructionRequest, InstructionResponse, ProcessBundleDescriptor,
    RemoteGrpcPort, StateKey, StateRequest, StateResponse, elements, instruction_request,
    instruction_response,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};

use super::split::SplitRequests;
use super::state::all_elements_key;
use super::transport::{GrpcTransport, Transport};
use super::{CONTROL_RESPONSE_ELEMENTS_EMBEDDING, DATA_BATCH_BYTES, EMBED_BYTES, Ports};
use crate::{
    Bundle, BundleProcessor, Error, Executor, Metrics, OutputSink, Residual, Result, SideInputs,
    UserState, UserStateKey, UserStateKind,
};

/// Where a harness connects and who it says it is.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// The runner's BeamFnControl endpoint, `host:port` or `http://host:port`.
    pub control_endpoint: String,
    /// Worker id, sent as the `worker_id` header on every stream.
    pub id: String,
}

/// Serves as an SDK harness until the runner closes the control stream:
/// connects to `config.control_endpoint` and runs every bundle it is sent
/// on `executor`. Bundles run concurrently, each on a blocking thread;
/// processors are reused across bundles of a descriptor.
///
/// Unknown or malformed instructions get an error response, never a panic;
/// a failing (or panicking) bundle gets an error response carrying the
/// executor's error text.
///
/// # Errors
/// [`Error::Harness`] if the runner cannot be reached or the control stream
/// fails; a runner closing the stream is a normal end (`Ok`).
pub fn serve_harness(config: HarnessConfig, executor: Arc<dyn Executor>) -> Result<()> {
    let transport = Arc::new(GrpcTransport::new(config.control_endpoint));
    serve_harness_with(transport, &config.id, executor)
}

/// As [`serve_harness`], over any [`Transport`]: e.g. the in-memory one of
/// an [`super::FnServer`] in this process
/// ([`super::FnServer::in_memory_transport`]), for the full protocol
/// without serialization.
///
/// # Errors
/// As [`serve_harness`].
pub fn serve_harness_with(
    transport: Arc<dyn Transport>,
    worker_id: &str,
    executor: Arc<dyn Executor>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("oxbeam-harness")
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the harness runtime: {e}")))?;
    let result = runtime.block_on(run(transport, worker_id, executor));
    runtime.shutdown_background();
    result
}

async fn run(
    transport: Arc<dyn Transport>,
    worker_id: &str,
    executor: Arc<dyn Executor>,
) -> Result<()> {
    let fail = |message: String| Error::Harness {
        worker: worker_id.to_string(),
        message,
    };
    let (responses, rx) = mpsc::unbounded_channel();
    let mut inbound = transport
        .control(worker_id, Box::pin(UnboundedReceiverStream::new(rx)))
        .await
        .map_err(|s| {
            fail(format!(
                "cannot open the control stream ({}): {}",
                transport.describe(),
                s.message()
            ))
        })?;
    let embed_responses = runner_embeds_responses(transport.as_ref()).await;
    let harness = Arc::new(Harness {
        embed_responses,
        id: worker_id.to_string(),
        executor,
        transport,
        descriptors: Mutex::new(HashMap::new()),
        processors: Mutex::new(HashMap::new()),
        data: tokio::sync::Mutex::new(HashMap::new()),
        state: tokio::sync::Mutex::new(HashMap::new()),
        responses,
        splits: Mutex::new(HashMap::new()),
    });
    loop {
        match inbound.next().await {
            Some(Ok(request)) => harness.clone().handle(request),
            None => break,
            Some(Err(s)) => {
                harness.teardown();
                return Err(fail(format!("control stream failed: {}", s.message())));
            }
        }
    }
    harness.teardown();
    Ok(())
}

/// Whether the runner declares control-response embedding in its
/// ProvisionInfo. A runner that does not answer soon (or at all) is taken
/// not to: outputs then go on the data stream, as always allowed.
async fn runner_embeds_responses(transport: &dyn Transport) -> bool {
    let info = tokio::time::timeout(PROVISION_WITHIN, transport.provision()).await;
    match info {
        Ok(Ok(info)) => info
            .runner_capabilities
            .iter()
            .any(|c| c == CONTROL_RESPONSE_ELEMENTS_EMBEDDING),
        _ => false,
    }
}

/// How long a harness waits for the runner's ProvisionInfo.
const PROVISION_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A descriptor with what the harness derived from it.
struct Prepared {
    descriptor: Arc<ProcessBundleDescriptor>,
    ports: Ports,
    data_url: Option<String>,
    side_inputs: Vec<(String, String)>,
    /// Whether a ParDo declares user state.
    user_state: bool,
    /// `(transform, timer family)` of every timer family.
    timer_families: Vec<(String, String)>,
}

type Pool = HashMap<String, Vec<Box<dyn BundleProcessor>>>;

/// How long a split request may wait for the running bundle's executor to
/// take it before it is declined.
const SPLIT_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(40);

struct Harness {
    id: String,
    executor: Arc<dyn Executor>,
    transport: Arc<dyn Transport>,
    descriptors: Mutex<HashMap<String, Arc<Prepared>>>,
    /// Idle processors per descriptor id.
    processors: Mutex<Pool>,
    data: tokio::sync::Mutex<HashMap<String, Arc<DataClient>>>,
    state: tokio::sync::Mutex<HashMap<String, Arc<StateClient>>>,
    responses: mpsc::UnboundedSender<InstructionResponse>,
    /// Split requests of the bundles running now, by instruction id.
    splits: Mutex<HashMap<String, Arc<SplitRequests>>>,
    /// The runner takes outputs embedded in ProcessBundleResponses
    /// (`beam:protocol:control_response_elements_embedding:v1` among its
    /// ProvisionInfo runner capabilities).
    embed_responses: bool,
}

impl Harness {
    fn respond(
        &self,
        instruction_id: String,
        result: std::result::Result<instruction_response::Response, String>,
    ) {
        let response = match result {
            Ok(r) => InstructionResponse {
                instruction_id,
                error: String::new(),
                response: Some(r),
            },
            Err(error) => InstructionResponse {
                instruction_id,
                error,
                response: None,
            },
        };
        let _ = self.responses.send(response);
    }

    fn handle(self: Arc<Self>, request: InstructionRequest) {
        use instruction_request::Request as Q;
        use instruction_response::Response as A;
        let id = request.instruction_id;
        match request.request {
            Some(Q::Register(r)) => {
                let mut result = Ok(A::Register(fe::RegisterResponse {}));
                for d in r.process_bundle_descriptor {
                    let descriptor_id = d.id.clone();
                    match prepare(d) {
                        Ok(p) => {
                            if let Ok(mut m) = self.descriptors.lock() {
                                m.insert(descriptor_id, Arc::new(p));
                            }
                        }
                        Err(e) => {
                            result = Err(format!("descriptor {descriptor_id}: {e}"));
                        }
                    }
                }
                self.respond(id, result);
            }
            Some(Q::ProcessBundle(p)) => {
                tokio::spawn(async move {
                    // The bundle's thread responds itself once it ran.
                    if let Err(e) = self.clone().process_bundle(&id, p).await {
                        self.respond(id, Err(e));
                    }
                });
            }
            Some(Q::FinalizeBundle(_)) => {
                self.respond(id, Ok(A::FinalizeBundle(fe::FinalizeBundleResponse {})));
            }
            Some(Q::MonitoringInfos(_)) => {
                self.respond(id, Ok(A::MonitoringInfos(Default::default())));
            }
            Some(Q::HarnessMonitoringInfos(_)) => {
                self.respond(id, Ok(A::HarnessMonitoringInfos(Default::default())));
            }
            Some(Q::ProcessBundleProgress(_)) => {
                self.respond(id, Ok(A::ProcessBundleProgress(Default::default())));
            }
            // A running bundle's executor is asked to split; declining
            // (an empty answer) is always valid.
            Some(Q::ProcessBundleSplit(r)) => {
                let running = self
                    .splits
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&r.instruction_id).cloned());
                match running {
                    Some(splits) => {
                        splits.request(id.clone(), &r);
                        // Answered within SPLIT_ANSWER_WITHIN either way.
                        tokio::spawn(async move {
                            tokio::time::sleep(SPLIT_ANSWER_WITHIN).await;
                            splits.decline_if_untaken(&id);
                        });
                    }
                    None => self.respond(id, Ok(A::ProcessBundleSplit(Default::default()))),
                }
            }
            Some(Q::SampleData(_)) => {
                self.respond(id, Ok(A::SampleData(Default::default())));
            }
            None => self.respond(
                id,
                Err(format!(
                    "harness {} does not understand this instruction (empty or of an unknown kind)",
                    self.id
                )),
            ),
        }
    }

    async fn prepared(&self, descriptor_id: &str) -> std::result::Result<Arc<Prepared>, String> {
        if let Some(p) = self
            .descriptors
            .lock()
            .ok()
            .and_then(|m| m.get(descriptor_id).cloned())
        {
            return Ok(p);
        }
        let d = self
            .transport
            .descriptor(&self.id, descriptor_id)
            .await
            .map_err(|s| format!("unknown descriptor {descriptor_id:?}: {}", s.message()))?;
        let p = Arc::new(prepare(d).map_err(|e| e.to_string())?);
        if let Ok(mut m) = self.descriptors.lock() {
            m.insert(descriptor_id.to_string(), p.clone());
        }
        Ok(p)
    }

    async fn data_client(&self, url: &str) -> std::result::Result<Arc<DataClient>, String> {
        let mut clients = self.data.lock().await;
        if let Some(c) = clients.get(url).filter(|c| !c.closed()) {
            return Ok(c.clone());
        }
        let c = DataClient::connect(self.transport.as_ref(), url, &self.id).await?;
        clients.insert(url.to_string(), c.clone());
        Ok(c)
    }

    async fn state_client(&self, url: &str) -> std::result::Result<Arc<StateClient>, String> {
        let mut clients = self.state.lock().await;
        if let Some(c) = clients.get(url).filter(|c| !c.closed()) {
            return Ok(c.clone());
        }
        let c = StateClient::connect(self.transport.as_ref(), url, &self.id).await?;
        clients.insert(url.to_string(), c.clone());
        Ok(c)
    }

    /// Collects a bundle's inputs and runs it on a blocking thread, which
    /// sends the response as soon as the bundle is done (one thread hand-off
    /// less per bundle). An error before the bundle runs is returned for
    /// the caller to send.
    async fn process_bundle(
        self: Arc<Self>,
        instruction: &str,
        request: fe::ProcessBundleRequest,
    ) -> std::result::Result<(), String> {
        let prepared = self.prepared(&request.process_bundle_descriptor_id).await?;
        let data = match &prepared.data_url {
            Some(url) => Some(self.data_client(url).await?),
            None => None,
        };
        // Inputs: whole elements per data source, until each is closed;
        // timers per timer family, until each is closed. Embedded in the
        // request (control-request embedding), then from the data stream.
        let mut collected = Inputs::new(&prepared);
        if let Some(embedded) = request.elements {
            for d in embedded.data {
                collected.accept(&prepared, Incoming::Data(d))?;
            }
            for t in embedded.timers {
                collected.accept(&prepared, Incoming::Timers(t))?;
            }
        }
        if let (Some(data), false) = (&data, collected.complete()) {
            let mut inbox = data.subscribe(instruction);
            while !collected.complete() {
                let Some(incoming) = inbox.recv().await else {
                    data.unsubscribe(instruction);
                    return Err(
                        "the data stream closed before the bundle's inputs were complete".into(),
                    );
                };
                if let Err(e) = collected.accept(&prepared, incoming) {
                    data.unsubscribe(instruction);
                    return Err(e);
                }
            }
            data.unsubscribe(instruction);
        }
        if !collected.complete() {
            return Err(
                "the bundle's inputs were not closed, and no data stream brings them".into(),
            );
        }
        let Inputs { inputs, timers, .. } = collected;
        let state = if prepared.side_inputs.is_empty() && !prepared.user_state {
            None
        } else {
            let url = prepared
                .descriptor
                .state_api_service_descriptor
                .as_ref()
                .map(|a| a.url.clone())
                .filter(|u| !u.is_empty())
                .ok_or(
                    "the descriptor reads side inputs or user state but names no state endpoint",
                )?;
            Some(self.state_client(&url).await?)
        };
        let user_state = match (&state, prepared.user_state) {
            (Some(client), true) => Some(HarnessUserState {
                client: client.clone(),
                instruction: instruction.to_string(),
                handle: tokio::runtime::Handle::current(),
            }),
            _ => None,
        };
        let side_inputs = HarnessSideInputs {
            slots: prepared
                .side_inputs
                .iter()
                .map(|k| (k.clone(), OnceLock::new()))
                .collect(),
            client: state,
            instruction: instruction.to_string(),
            handle: tokio::runtime::Handle::current(),
        };
        let pooled = self
            .processors
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&prepared.descriptor.id).and_then(Vec::pop));
        let executor = self.executor.clone();
        let out = data.as_ref().map(|d| d.tx.clone());
        let embed = self.embed_responses;
        let instruction_id = instruction.to_string();
        let prep = prepared.clone();
        // Stateless bundles may be split while they run.
        let splits = (!prepared.user_state && prepared.timer_families.is_empty()).then(|| {
            Arc::new(SplitRequests::new(
                prepared.ports.sources.clone(),
                self.responses.clone(),
            ))
        });
        if let (Some(s), Ok(mut m)) = (&splits, self.splits.lock()) {
            m.insert(instruction.to_string(), s.clone());
        }
        let running = splits.clone();
        let harness = self.clone();
        let id = instruction.to_string();
        tokio::task::spawn_blocking(move || {
            let ran = run_bundle(
                executor,
                pooled,
                &prep,
                &instruction_id,
                (inputs, timers),
                (out, embed),
                &side_inputs,
                (user_state, running.as_deref()),
            );
            if let Some(s) = &running {
                s.finish();
            }
            let response = ran.and_then(|ran| harness.finished(&prep, ran));
            harness.respond(
                id,
                response.map(instruction_response::Response::ProcessBundle),
            );
        })
        .await
        .map_err(|e| format!("the bundle's thread failed: {e}"))?;
        if let Some(s) = splits {
            if let Ok(mut m) = self.splits.lock() {
                m.remove(instruction);
            }
            s.finish();
        }
        Ok(())
    }

    /// A bundle that ran: its processor back to the pool, its response.
    fn finished(
        &self,
        prepared: &Prepared,
        ran: Ran,
    ) -> std::result::Result<fe::ProcessBundleResponse, String> {
        let Ran {
            processor,
            metrics,
            residuals,
            embedded,
        } = ran;
        let residual_roots = residual_roots(&prepared.descriptor, residuals)?;
        if let Ok(mut p) = self.processors.lock() {
            p.entry(prepared.descriptor.id.clone())
                .or_default()
                .push(processor);
        }
        // The bundle's user metrics, as Beam SDK harnesses report them.
        Ok(fe::ProcessBundleResponse {
            monitoring_infos: metrics.to_monitoring_infos(),
            residual_roots,
            elements: embedded,
            ..Default::default()
        })
    }

    fn teardown(&self) {
        let pool = self.processors.lock().map(|mut p| std::mem::take(&mut *p));
        for (_, processors) in pool.into_iter().flatten() {
            for mut p in processors {
                let _ = catch_unwind(AssertUnwindSafe(|| p.teardown()));
            }
        }
    }
}

fn prepare(d: ProcessBundleDescriptor) -> Result<Prepared> {
    use oxbeam_model::urns::fn_api_transforms::runner as r;
    let ports = Ports::of(&d)?;
    let mut data_url = None;
    for (id, t) in &d.transforms {
        let Some(spec) = &t.spec else { continue };
        if spec.urn != r::DATA_SOURCE && spec.urn != r::DATA_SINK {
            continue;
        }
        let port = RemoteGrpcPort::decode(spec.payload.as_ref())
            .map_err(|e| Error::invalid(format!("RemoteGrpcPort of transform {id}"), e))?;
        let url = port
            .api_service_descriptor
            .map(|a| a.url)
            .unwrap_or_default();
        if url.is_empty() {
            return Err(Error::invalid(
                format!("data port {id}"),
                "names no data endpoint",
            ));
        }
        match &data_url {
            None => data_url = Some(url),
            Some(u) if *u == url => {}
            Some(u) => {
                return Err(Error::invalid(
                    format!("data port {id}"),
                    format!(
                        "uses data endpoint {url}, but another port uses {u}; one data endpoint per descriptor is supported"
                    ),
                ));
            }
        }
    }
    let mut side_inputs: Vec<(String, String)> =
        super::state::side_input_specs(&d)?.into_keys().collect();
    side_inputs.sort();
    let user_state = !super::state::user_state_specs(&d)?.is_empty()
        || d.transforms.values().any(|t| {
            t.spec.as_ref().is_some_and(|s| {
                s.urn == oxbeam_model::urns::standard_p_transforms::primitives::PAR_DO
                    && oxbeam_model::pipeline::ParDoPayload::decode(s.payload.as_ref())
                        .is_ok_and(|p| !p.state_specs.is_empty())
            })
        });
    let timer_families = super::runner::timer_families(&d)?;
    Ok(Prepared {
        descriptor: Arc::new(d),
        ports,
        data_url,
        side_inputs,
        user_state,
        timer_families,
    })
}

/// A bundle's inputs as they arrive: data per source and timers per timer
/// family, until every one is closed (`is_last`).
struct Inputs<'p> {
    open: HashSet<&'p str>,
    open_timers: HashSet<(&'p str, &'p str)>,
    inputs: Vec<(String, Bytes)>,
    timers: Vec<(String, String, Bytes)>,
}

impl<'p> Inputs<'p> {
    fn new(prepared: &'p Prepared) -> Self {
        Inputs {
            open: prepared
                .ports
                .sources
                .iter()
                .map(|(s, _)| s.as_str())
                .collect(),
            open_timers: prepared
                .timer_families
                .iter()
                .map(|(t, f)| (t.as_str(), f.as_str()))
                .collect(),
            inputs: Vec::new(),
            timers: Vec::new(),
        }
    }

    fn complete(&self) -> bool {
        self.open.is_empty() && self.open_timers.is_empty()
    }

    fn accept(
        &mut self,
        prepared: &'p Prepared,
        incoming: Incoming,
    ) -> std::result::Result<(), String> {
        match incoming {
            Incoming::Timers(t) => {
                let family = prepared
                    .timer_families
                    .iter()
                    .find(|(tr, f)| *tr == t.transform_id && *f == t.timer_family_id)
                    .map(|(tr, f)| (tr.as_str(), f.as_str()))
                    .filter(|family| self.open_timers.contains(family));
                let Some(family) = family else {
                    return Err(format!(
                        "timers of family {:?} of {:?}, which is not an open timer family of descriptor {}",
                        t.timer_family_id, t.transform_id, prepared.descriptor.id
                    ));
                };
                if t.is_last {
                    self.open_timers.remove(&family);
                }
                if !t.timers.is_empty() {
                    self.timers
                        .push((t.transform_id, t.timer_family_id, t.timers));
                }
            }
            Incoming::Data(d) => {
                let Some(source) = self.open.get(d.transform_id.as_str()).copied() else {
                    return Err(format!(
                        "data for {:?}, which is not an open data source of descriptor {}",
                        d.transform_id, prepared.descriptor.id
                    ));
                };
                if d.is_last {
                    self.open.remove(source);
                }
                if !d.data.is_empty() {
                    self.inputs.push((d.transform_id, d.data));
                }
            }
        }
        Ok(())
    }
}

/// Runs one bundle on a blocking thread; gives the processor back for reuse,
/// and the bundle's metrics, if it succeeded.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn run_bundle(
    executor: Arc<dyn Executor>,
    pooled: Option<Box<dyn BundleProcessor>>,
    prepared: &Prepared,
    instruction: &str,
    (inputs, timers): (Vec<(String, Bytes)>, Vec<(String, String, Bytes)>),
    (out, embed): (Option<mpsc::Sender<Elements>>, bool),
    side_inputs: &HarnessSideInputs,
    (user_state, splits): (Option<HarnessUserState>, Option<&SplitRequests>),
) -> std::result::Result<Ran, String> {
    let mut processor = match pooled {
        Some(p) => p,
        None => catch_unwind(AssertUnwindSafe(|| {
            executor.create_processor(prepared.descriptor.clone())
        }))
        .map_err(|p| {
            format!(
                "the executor panicked creating a processor: {}",
                panic_text(&p)
            )
        })?
        .map_err(|e| e.to_string())?,
    };
    let mut sink = HarnessSink {
        out,
        embed,
        sent: false,
        instruction: instruction.to_string(),
        pending: Vec::new(),
        pending_timers: Vec::new(),
        size: 0,
    };
    let mut metrics = Metrics::default();
    let mut user_state = user_state;
    let mut residuals = Vec::new();
    let result = {
        let mut bundle = Bundle::new(
            inputs
                .iter()
                .map(|(s, b)| (s.as_str(), b.as_ref()))
                .collect(),
            &mut sink,
            side_inputs,
            &mut metrics,
        )
        .with_timers(
            timers
                .iter()
                .map(|(t, f, b)| (t.as_str(), f.as_str(), b.as_ref()))
                .collect(),
        );
        if let Some(u) = user_state.as_mut() {
            bundle = bundle.with_state(u);
        }
        if let Some(s) = splits {
            bundle = bundle.with_rebalancer(s);
        }
        bundle = bundle.with_residuals(&mut residuals);
        catch_unwind(AssertUnwindSafe(|| processor.process_bundle(&mut bundle)))
    };
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(error_text(&e)),
        Err(p) => Some(format!("the executor panicked: {}", panic_text(&p))),
    };
    if let Some(f) = failure {
        let _ = catch_unwind(AssertUnwindSafe(|| processor.teardown()));
        return Err(f);
    }
    let embedded = sink
        .close(&prepared.ports.sinks, &prepared.timer_families)
        .map_err(|e| e.to_string())?;
    Ok(Ran {
        processor,
        metrics,
        residuals,
        embedded,
    })
}

/// What a bundle that ran gives back.
struct Ran {
    processor: Box<dyn BundleProcessor>,
    metrics: Metrics,
    residuals: Vec<Residual>,
    /// Its outputs, for the response (control-response embedding).
    embedded: Option<Elements>,
}

/// Work a splittable DoFn deferred, as Beam's residual roots: the
/// application of the transform the residual's data source feeds.
fn residual_roots(
    d: &ProcessBundleDescriptor,
    residuals: Vec<Residual>,
) -> std::result::Result<Vec<fe::DelayedBundleApplication>, String> {
    residuals
        .into_iter()
        .map(|r| {
            let pcoll = d
                .transforms
                .get(&r.source)
                .and_then(|t| t.outputs.values().next())
                .ok_or_else(|| format!("a residual names unknown data source {:?}", r.source))?;
            let (transform_id, input_id) = d
                .transforms
                .iter()
                .find_map(|(id, t)| {
                    t.inputs
                        .iter()
                        .find(|(_, p)| *p == pcoll)
                        .map(|(local, _)| (id.clone(), local.clone()))
                })
                .ok_or_else(|| format!("no transform reads the residual's {pcoll}"))?;
            let output_watermarks = r
                .watermark_millis
                .map(|ms| {
                    let t = prost_types::Timestamp {
                        seconds: ms.div_euclid(1000),
                        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
                    };
                    d.transforms[&transform_id]
                        .outputs
                        .keys()
                        .map(|o| (o.clone(), t))
                        .collect()
                })
                .unwrap_or_default();
            Ok(fe::DelayedBundleApplication {
                application: Some(fe::BundleApplication {
                    transform_id,
                    input_id,
                    element: r.element.into(),
                    output_watermarks,
                    is_bounded: 0,
                }),
                requested_time_delay: Some(prost_types::Duration {
                    seconds: r.delay.as_secs() as i64,
                    nanos: r.delay.subsec_nanos() as i32,
                }),
            })
        })
        .collect()
}

/// A bundle's error as the response's `error`: a user-code error in
/// Beam's convention (`message [while running 'transform']`, as Beam
/// Python's harness reports it), which the runner turns back into a
/// user-code error of that transform without repeating its prefix.
fn error_text(e: &Error) -> String {
    match e {
        Error::UserCode(u) => {
            let element = u
                .element
                .as_ref()
                .map(|e| format!(" (element: {e})"))
                .unwrap_or_default();
            format!("{}{element} [while running '{}']", u.message, u.transform)
        }
        other => other.to_string(),
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Batches a bundle's outputs into ~1 MB `Elements` messages. With
/// `embed` (the runner declared control-response embedding), a bundle
/// whose outputs total at most [`EMBED_BYTES`] returns them for its
/// response instead of sending them on the data stream.
struct HarnessSink {
    out: Option<mpsc::Sender<Elements>>,
    embed: bool,
    /// Whether a message went out on the data stream.
    sent: bool,
    instruction: String,
    pending: Vec<(String, Vec<u8>)>,
    /// `(transform, timer family, timers)`.
    pending_timers: Vec<(String, String, Vec<u8>)>,
    size: usize,
}

impl HarnessSink {
    fn flush(&mut self, last: &[(String, oxbeam_model::coders::Coder)]) -> Result<()> {
        self.flush_with_timers(last, &[])
    }

    fn flush_with_timers(
        &mut self,
        last: &[(String, oxbeam_model::coders::Coder)],
        last_timers: &[(String, String)],
    ) -> Result<()> {
        let elements = self.take(last, last_timers);
        if elements.data.is_empty() && elements.timers.is_empty() {
            return Ok(());
        }
        let out = self
            .out
            .as_ref()
            .ok_or_else(|| Error::Internal("output without a data stream".into()))?;
        self.sent = true;
        out.blocking_send(elements)
            .map_err(|_| Error::Internal("the data stream to the runner closed".into()))
    }

    /// What is pending, as one message, closing `last` and `last_timers`.
    fn take(
        &mut self,
        last: &[(String, oxbeam_model::coders::Coder)],
        last_timers: &[(String, String)],
    ) -> Elements {
        let mut timers: Vec<elements::Timers> = self
            .pending_timers
            .drain(..)
            .map(|(transform_id, timer_family_id, bytes)| elements::Timers {
                instruction_id: self.instruction.clone(),
                transform_id,
                timer_family_id,
                timers: bytes.into(),
                is_last: false,
            })
            .collect();
        timers.extend(last_timers.iter().map(|(t, f)| elements::Timers {
            instruction_id: self.instruction.clone(),
            transform_id: t.clone(),
            timer_family_id: f.clone(),
            timers: Bytes::new(),
            is_last: true,
        }));
        let mut data: Vec<elements::Data> = self
            .pending
            .drain(..)
            .map(|(transform_id, bytes)| elements::Data {
                instruction_id: self.instruction.clone(),
                transform_id,
                data: bytes.into(),
                is_last: false,
            })
            .collect();
        data.extend(last.iter().map(|(id, _)| elements::Data {
            instruction_id: self.instruction.clone(),
            transform_id: id.clone(),
            data: Bytes::new(),
            is_last: true,
        }));
        self.size = 0;
        Elements { data, timers }
    }

    /// Closes every output: returns the last message for the response if
    /// it may be embedded there, else sends it.
    fn close(
        &mut self,
        sinks: &[(String, oxbeam_model::coders::Coder)],
        timer_families: &[(String, String)],
    ) -> Result<Option<Elements>> {
        if self.embed && !self.sent && self.size <= EMBED_BYTES {
            return Ok(Some(self.take(sinks, timer_families)));
        }
        self.flush_with_timers(sinks, timer_families)?;
        Ok(None)
    }
}

impl OutputSink for HarnessSink {
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> Result<()> {
        match self.pending.last_mut() {
            Some((id, buf)) if id == sink_transform => buf.extend_from_slice(element),
            _ => {
                // Sized for a whole message: growing it by doubling would
                // copy it a dozen times (and fault in fresh pages each time).
                let mut buf = Vec::with_capacity(
                    DATA_BATCH_BYTES
                        .saturating_sub(self.size)
                        .max(element.len())
                        + element.len(),
                );
                buf.extend_from_slice(element);
                self.pending.push((sink_transform.to_string(), buf));
            }
        }
        self.size += element.len();
        if self.size >= DATA_BATCH_BYTES {
            self.flush(&[])?;
        }
        Ok(())
    }

    fn emit_timer(&mut self, transform: &str, family: &str, timer: &[u8]) -> Result<()> {
        match self.pending_timers.last_mut() {
            Some((t, f, buf)) if t == transform && f == family => buf.extend_from_slice(timer),
            _ => self.pending_timers.push((
                transform.to_string(),
                family.to_string(),
                timer.to_vec(),
            )),
        }
        self.size += timer.len();
        if self.size >= DATA_BATCH_BYTES {
            self.flush(&[])?;
        }
        Ok(())
    }
}

/// User state read and written over the runner's State API.
struct HarnessUserState {
    client: Arc<StateClient>,
    instruction: String,
    handle: tokio::runtime::Handle,
}

/// The Fn API `StateKey` of a user state key.
fn state_key(key: &UserStateKey<'_>) -> StateKey {
    use fe::state_key::{self as k, Type};
    let (transform_id, user_state_id) = (key.transform.to_string(), key.state_id.to_string());
    let (window, user_key) = (key.window.to_vec().into(), key.key.to_vec().into());
    let t = match key.kind {
        UserStateKind::Bag => Type::BagUserState(k::BagUserState {
            transform_id,
            user_state_id,
            window,
            key: user_key,
        }),
        UserStateKind::MultimapKeys => Type::MultimapKeysUserState(k::MultimapKeysUserState {
            transform_id,
            user_state_id,
            window,
            key: user_key,
        }),
        UserStateKind::Multimap { map_key } => Type::MultimapUserState(k::MultimapUserState {
            transform_id,
            user_state_id,
            window,
            key: user_key,
            map_key: map_key.to_vec().into(),
        }),
        UserStateKind::OrderedList { start, end } => {
            Type::OrderedListUserState(k::OrderedListUserState {
                transform_id,
                user_state_id,
                window,
                key: user_key,
                range: Some(fe::OrderedListRange { start, end }),
            })
        }
    };
    StateKey { r#type: Some(t) }
}

impl HarnessUserState {
    fn fail(key: &UserStateKey<'_>, e: String) -> Error {
        Error::Internal(format!(
            "state {:?} of transform {} on the runner: {e}",
            key.state_id, key.transform
        ))
    }
}

impl UserState for HarnessUserState {
    fn get(&mut self, key: &UserStateKey<'_>, out: &mut Vec<u8>) -> Result<()> {
        let data = self
            .handle
            .block_on(self.client.get_all(&self.instruction, state_key(key)))
            .map_err(|e| Self::fail(key, e))?;
        out.extend_from_slice(&data);
        Ok(())
    }

    fn append(&mut self, key: &UserStateKey<'_>, data: &[u8]) -> Result<()> {
        let request = fe::state_request::Request::Append(fe::StateAppendRequest {
            data: data.to_vec().into(),
        });
        self.handle
            .block_on(self.client.call(&self.instruction, state_key(key), request))
            .map(|_| ())
            .map_err(|e| Self::fail(key, e))
    }

    fn clear(&mut self, key: &UserStateKey<'_>) -> Result<()> {
        let request = fe::state_request::Request::Clear(fe::StateClearRequest {});
        self.handle
            .block_on(self.client.call(&self.instruction, state_key(key), request))
            .map(|_| ())
            .map_err(|e| Self::fail(key, e))
    }
}

/// A side input's elements once fetched, or why they could not be.
type Fetched = OnceLock<std::result::Result<Vec<u8>, String>>;

/// Side inputs fetched whole over the State API on first use.
struct HarnessSideInputs {
    slots: HashMap<(String, String), Fetched>,
    client: Option<Arc<StateClient>>,
    instruction: String,
    handle: tokio::runtime::Handle,
}

impl SideInputs for HarnessSideInputs {
    fn side_input(&self, transform: &str, side_input: &str) -> Result<&[u8]> {
        let slot = self
            .slots
            .get(&(transform.to_string(), side_input.to_string()))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "transform {transform} has no side input {side_input}"
                ))
            })?;
        let fetched = slot.get_or_init(|| {
            let client = self.client.as_ref().ok_or("no state client")?;
            let key = StateKey {
                r#type: Some(fe::state_key::Type::Runner(fe::state_key::Runner {
                    key: all_elements_key(transform, side_input).into(),
                })),
            };
            self.handle.block_on(client.get_all(&self.instruction, key))
        });
        fetched.as_deref().map_err(|e| {
            Error::Internal(format!(
                "reading side input {side_input} of {transform} from the runner: {e}"
            ))
        })
    }
}

/// One data stream to a runner, shared by all bundles using its endpoint.
struct DataClient {
    tx: mpsc::Sender<Elements>,
    inboxes: Arc<Mutex<Inboxes>>,
}

#[derive(Default)]
struct Inboxes {
    by_instruction: HashMap<String, Inbox>,
    closed: bool,
}

/// What the data stream brings a bundle.
enum Incoming {
    Data(elements::Data),
    Timers(elements::Timers),
}

struct Inbox {
    tx: mpsc::UnboundedSender<Incoming>,
    rx: Option<mpsc::UnboundedReceiver<Incoming>>,
}

impl Inboxes {
    fn inbox(&mut self, instruction: &str) -> &mut Inbox {
        self.by_instruction
            .entry(instruction.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                Inbox { tx, rx: Some(rx) }
            })
    }
}

impl DataClient {
    async fn connect(
        transport: &dyn Transport,
        url: &str,
        worker: &str,
    ) -> std::result::Result<Arc<DataClient>, String> {
        let (tx, rx) = mpsc::channel(8);
        let mut inbound = transport
            .data(url, worker, Box::pin(ReceiverStream::new(rx)))
            .await
            .map_err(|s| format!("cannot open the data stream to {url}: {}", s.message()))?;
        let inboxes = Arc::new(Mutex::new(Inboxes::default()));
        let routes = inboxes.clone();
        tokio::spawn(async move {
            while let Some(Ok(elements)) = inbound.next().await {
                let Ok(mut inboxes) = routes.lock() else {
                    break;
                };
                for d in elements.data {
                    let _ = inboxes.inbox(&d.instruction_id).tx.send(Incoming::Data(d));
                }
                for t in elements.timers {
                    let _ = inboxes
                        .inbox(&t.instruction_id)
                        .tx
                        .send(Incoming::Timers(t));
                }
            }
            if let Ok(mut inboxes) = routes.lock() {
                inboxes.closed = true;
                inboxes.by_instruction.clear();
            }
        });
        Ok(Arc::new(DataClient { tx, inboxes }))
    }

    fn closed(&self) -> bool {
        self.inboxes.lock().map_or(true, |i| i.closed)
    }

    fn subscribe(&self, instruction: &str) -> mpsc::UnboundedReceiver<Incoming> {
        match self.inboxes.lock() {
            Ok(mut i) if !i.closed => match i.inbox(instruction).rx.take() {
                Some(rx) => rx,
                None => mpsc::unbounded_channel().1,
            },
            _ => mpsc::unbounded_channel().1,
        }
    }

    fn unsubscribe(&self, instruction: &str) {
        if let Ok(mut i) = self.inboxes.lock() {
            i.by_instruction.remove(instruction);
        }
    }
}

/// One state stream to a runner.
struct StateClient {
    tx: mpsc::UnboundedSender<StateRequest>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<StateResponse>>>>,
    next: AtomicU64,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl StateClient {
    async fn connect(
        transport: &dyn Transport,
        url: &str,
        worker: &str,
    ) -> std::result::Result<Arc<StateClient>, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inbound = transport
            .state(url, worker, Box::pin(UnboundedReceiverStream::new(rx)))
            .await
            .map_err(|s| format!("cannot open the state stream to {url}: {}", s.message()))?;
        let pending: Arc<Mutex<HashMap<String, oneshot::Sender<StateResponse>>>> = Arc::default();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, c) = (pending.clone(), closed.clone());
        tokio::spawn(async move {
            while let Some(Ok(response)) = inbound.next().await {
                if let Some(w) = p.lock().ok().and_then(|mut p| p.remove(&response.id)) {
                    let _ = w.send(response);
                }
            }
            c.store(true, Ordering::Relaxed);
            if let Ok(mut p) = p.lock() {
                p.clear();
            }
        });
        Ok(Arc::new(StateClient {
            tx,
            pending,
            next: AtomicU64::new(1),
            closed,
        }))
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// One request for `key`; its response (an error text if it failed).
    async fn call(
        &self,
        instruction: &str,
        key: StateKey,
        request: fe::state_request::Request,
    ) -> std::result::Result<StateResponse, String> {
        let id = format!("s{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| "poisoned")?
            .insert(id.clone(), tx);
        self.tx
            .send(StateRequest {
                id,
                instruction_id: instruction.to_string(),
                state_key: Some(key),
                request: Some(request),
            })
            .map_err(|_| "the state stream is closed")?;
        let response = rx.await.map_err(|_| "the state stream closed")?;
        if !response.error.is_empty() {
            return Err(response.error);
        }
        Ok(response)
    }

    /// Every page of a state key, concatenated.
    async fn get_all(
        &self,
        instruction: &str,
        key: StateKey,
    ) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut token = Bytes::new();
        loop {
            let id = format!("s{}", self.next.fetch_add(1, Ordering::Relaxed));
            let (tx, rx) = oneshot::channel();
            self.pending
                .lock()
                .map_err(|_| "poisoned")?
                .insert(id.clone(), tx);
            self.tx
                .send(StateRequest {
                    id,
                    instruction_id: instruction.to_string(),
                    state_key: Some(key.clone()),
                    request: Some(fe::state_request::Request::Get(fe::StateGetRequest {
                        continuation_token: token,
                    })),
                })
                .map_err(|_| "the state stream is closed")?;
            let response = rx.await.map_err(|_| "the state stream closed")?;
            if !response.error.is_empty() {
                return Err(response.error);
            }
            let Some(fe::state_response::Response::Get(get)) = response.response else {
                return Err("the runner answered a state get with something else".into());
            };
            out.extend_from_slice(&get.data);
            if get.continuation_token.is_empty() {
                return Ok(out);
            }
            token = get.continuation_token;
        }
    }
}
