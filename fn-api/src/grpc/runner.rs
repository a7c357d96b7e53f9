//! The runner's end of the Fn API: [`FnServer`] serves the channels SDK
//! harnesses dial into, and [`GrpcExecutor`] runs bundles on one harness.
//!
//! A bundle's traffic (output data, state requests, its control response,
//! or the harness's disconnection) is routed by instruction id to one
//! channel read by the runner thread running the bundle, so the bundle's
//! `OutputSink` and `SideInputs` are only touched by that thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxbeam_model::coders::{Coder, Context};
use oxbeam_model::fn_execution::{
    self as fe, Elements, InstructionRequest, InstructionResponse, ProcessBundleDescriptor,
    RemoteGrpcPort, StateRequest, StateResponse, beam_fn_control_server, beam_fn_data_server,
    beam_fn_logging_server, beam_fn_state_server, elements, instruction_request,
    provision_service_server,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::split::Ledger;
use super::state::{self, SideInputSpecs, StateCache, UserStateAccess, UserStateSpecs};
use super::transport::{InMemoryTransport, MessageStream, Transport};
use super::{DATA_BATCH_BYTES, MAX_MESSAGE_BYTES, Ports, WORKER_ID_HEADER};
use crate::{
    Bundle, BundleProcessor, Error, Executor, Rebalancer, Residual, Result, UserCodeError,
};

/// Most bytes of a bundle's data embedded in a control message: its inputs
/// in the ProcessBundleRequest (with [`GrpcExecutor::with_request_embedding`]),
/// or its outputs in the response (Oxbeam's harness, when the runner
/// declares control-response embedding). More streams on the data channel,
/// so control messages stay small.
pub const EMBED_BYTES: usize = 256 << 10;
/// How long a harness may take to connect its control stream.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a harness may take to open its data stream, or to answer a
/// registration.
const PROTOCOL_TIMEOUT: Duration = Duration::from_secs(120);
/// After a bundle's successful response, how long its remaining outputs may
/// take to be closed (`is_last`) on the data stream.
const OUTPUT_LINGER: Duration = Duration::from_secs(60);

type ResponseTx<T> = mpsc::UnboundedSender<std::result::Result<T, Status>>;

/// Everything that can happen to a running bundle.
pub(crate) enum BundleEvent {
    Data(elements::Data),
    Timers(elements::Timers),
    State(StateRequest, ResponseTx<StateResponse>),
    Response(InstructionResponse),
    Failed(String),
}

struct Route {
    worker: String,
    tx: std_mpsc::Sender<BundleEvent>,
}

/// One SDK harness as the server knows it.
pub(crate) struct Worker {
    id: String,
    control: Mutex<Option<ResponseTx<InstructionRequest>>>,
    pending: Mutex<HashMap<String, oneshot::Sender<InstructionResponse>>>,
    data: Mutex<Option<mpsc::Sender<std::result::Result<Elements, Status>>>>,
    /// Why the harness is gone, once it is.
    gone: Mutex<Option<String>>,
}

impl Worker {
    fn gone(&self) -> Option<String> {
        self.gone.lock().ok().and_then(|g| g.clone())
    }

    fn connected(&self) -> bool {
        self.control.lock().is_ok_and(|c| c.is_some())
    }

    fn send(&self, request: InstructionRequest) -> std::result::Result<(), String> {
        let control = self.control.lock().map_err(|_| "poisoned".to_string())?;
        match control.as_ref() {
            Some(tx) => tx
                .send(Ok(request))
                .map_err(|_| "its control stream is closed".to_string()),
            None => Err(self
                .gone()
                .unwrap_or_else(|| "it is not connected".to_string())),
        }
    }
}

/// State shared by the services and the executors.
pub(crate) struct Shared {
    pub(crate) url: String,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    routes: Mutex<HashMap<String, Route>>,
    descriptors: Mutex<HashMap<String, Arc<ProcessBundleDescriptor>>>,
    next: AtomicU64,
    pub(crate) provision: Mutex<fe::ProvisionInfo>,
    /// The server's runtime: every service task runs there, whichever
    /// transport opened its channel.
    runtime: tokio::runtime::Handle,
}

impl Shared {
    pub(crate) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn worker(&self, id: &str) -> Arc<Worker> {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(Worker {
                    id: id.to_string(),
                    control: Mutex::new(None),
                    pending: Mutex::new(HashMap::new()),
                    data: Mutex::new(None),
                    gone: Mutex::new(None),
                })
            })
            .clone()
    }

    fn route(&self, instruction: &str, event: BundleEvent) -> bool {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        match routes.get(instruction) {
            Some(r) => r.tx.send(event).is_ok(),
            None => false,
        }
    }

    fn fail_worker_bundles(&self, worker: &str, reason: &str) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for r in routes.values().filter(|r| r.worker == worker) {
            let _ = r.tx.send(BundleEvent::Failed(reason.to_string()));
        }
    }

    /// Ends every harness's control stream, as Beam runners do at the end of
    /// a job, and waits up to `grace` for the harnesses to close their side
    /// (so they shut down cleanly instead of seeing their connections reset).
    pub(crate) fn close_workers(&self, grace: Duration) {
        let workers: Vec<Arc<Worker>> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut closing = Vec::new();
        for w in workers {
            let had = w.control.lock().ok().and_then(|mut c| c.take()).is_some();
            if had && w.gone().is_none() {
                closing.push(w);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && closing.iter().any(|w| w.gone().is_none()) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Fails every bundle and disconnects every harness (job cancelled).
    pub(crate) fn cancel_all(&self, reason: &str) {
        let workers: Vec<Arc<Worker>> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for w in workers {
            self.worker_gone(&w, reason.to_string());
        }
    }

    fn worker_gone(&self, worker: &Worker, reason: String) {
        tracing::debug!(worker = %worker.id, %reason, "SDK harness disconnected");
        if let Ok(mut g) = worker.gone.lock() {
            g.get_or_insert(reason.clone());
        }
        if let Ok(mut c) = worker.control.lock() {
            *c = None;
        }
        if let Ok(mut d) = worker.data.lock() {
            *d = None;
        }
        if let Ok(mut p) = worker.pending.lock() {
            p.clear();
        }
        self.fail_worker_bundles(&worker.id, &reason);
    }
}

fn worker_id<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(WORKER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The runner's Fn API services. The gRPC services below and the
/// in-memory transport ([`super::transport::InMemoryTransport`]) both open
/// their channels through [`Services::open_control`] and its siblings, so a
/// harness gets the same protocol either way.
#[derive(Clone)]
pub(crate) struct Services(pub(crate) Arc<Shared>);

impl Services {
    /// Opens worker `worker_id`'s control channel: `inbound` carries its
    /// responses; the returned stream carries the runner's requests.
    pub(crate) fn open_control(
        &self,
        worker_id: &str,
        mut inbound: MessageStream<InstructionResponse>,
    ) -> std::result::Result<MessageStream<InstructionRequest>, Status> {
        let worker = self.0.worker(worker_id);
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut control = worker
                .control
                .lock()
                .map_err(|_| Status::internal("poisoned"))?;
            if control.is_some() {
                return Err(Status::already_exists(format!(
                    "worker {:?} already has a control stream",
                    worker.id
                )));
            }
            *control = Some(tx);
            if let Ok(mut g) = worker.gone.lock() {
                *g = None;
            }
        }
        tracing::debug!(worker = %worker.id, "SDK harness connected");
        let shared = self.0.clone();
        self.0.runtime.spawn(async move {
            let reason = loop {
                match inbound.next().await {
                    Some(Ok(response)) => {
                        let id = response.instruction_id.clone();
                        let waiter = worker.pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(w) = waiter {
                            let _ = w.send(response);
                            continue;
                        }
                        if !shared.route(&id, BundleEvent::Response(response)) {
                            tracing::debug!(
                                worker = %worker.id,
                                instruction = %id,
                                "response to an unknown instruction ignored"
                            );
                        }
                    }
                    None => break "it closed its control stream".to_string(),
                    Some(Err(status)) => {
                        break format!("its control stream failed: {}", status.message());
                    }
                }
            };
            shared.worker_gone(&worker, reason);
        });
        Ok(Box::pin(UnboundedReceiverStream::new(rx)))
    }

    /// A registered descriptor (GetProcessBundleDescriptor).
    pub(crate) fn descriptor(
        &self,
        id: &str,
    ) -> std::result::Result<ProcessBundleDescriptor, Status> {
        let d = self
            .0
            .descriptors
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .get(id)
            .cloned();
        match d {
            Some(d) => Ok((*d).clone()),
            None => Err(Status::not_found(format!(
                "no process bundle descriptor {id:?}"
            ))),
        }
    }

    /// Opens worker `worker_id`'s data channel.
    pub(crate) fn open_data(
        &self,
        worker_id: &str,
        mut inbound: MessageStream<Elements>,
    ) -> MessageStream<Elements> {
        let worker = self.0.worker(worker_id);
        let (tx, rx) = mpsc::channel(8);
        if let Ok(mut d) = worker.data.lock() {
            *d = Some(tx);
        }
        let shared = self.0.clone();
        self.0.runtime.spawn(async move {
            loop {
                match inbound.next().await {
                    Some(Ok(elements)) => {
                        for d in elements.data {
                            let id = d.instruction_id.clone();
                            if !shared.route(&id, BundleEvent::Data(d)) {
                                tracing::debug!(instruction = %id, "data for an unknown bundle dropped");
                            }
                        }
                        for t in elements.timers {
                            let id = t.instruction_id.clone();
                            if !shared.route(&id, BundleEvent::Timers(t)) {
                                tracing::debug!(instruction = %id, "timers for an unknown bundle dropped");
                            }
                        }
                    }
                    None => break,
                    Some(Err(status)) => {
                        shared.fail_worker_bundles(
                            &worker.id,
                            &format!("its data stream failed: {}", status.message()),
                        );
                        break;
                    }
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }

    /// Opens a state channel.
    pub(crate) fn open_state(
        &self,
        mut inbound: MessageStream<StateRequest>,
    ) -> MessageStream<StateResponse> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = self.0.clone();
        self.0.runtime.spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                let instruction = req.instruction_id.clone();
                let id = req.id.clone();
                if !shared.route(&instruction, BundleEvent::State(req, tx.clone())) {
                    let _ = tx.send(Ok(StateResponse {
                        id,
                        error: format!("no running bundle {instruction:?}"),
                        response: None,
                    }));
                }
            }
        });
        Box::pin(UnboundedReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl beam_fn_control_server::BeamFnControl for Services {
    type ControlStream = MessageStream<InstructionRequest>;

    async fn control(
        &self,
        request: Request<Streaming<InstructionResponse>>,
    ) -> std::result::Result<Response<Self::ControlStream>, Status> {
        let worker = worker_id(&request);
        let inbound = Box::pin(request.into_inner());
        self.open_control(&worker, inbound).map(Response::new)
    }

    async fn get_process_bundle_descriptor(
        &self,
        request: Request<fe::GetProcessBundleDescriptorRequest>,
    ) -> std::result::Result<Response<ProcessBundleDescriptor>, Status> {
        let id = request.into_inner().process_bundle_descriptor_id;
        self.descriptor(&id).map(Response::new)
    }
}

#[tonic::async_trait]
impl beam_fn_data_server::BeamFnData for Services {
    type DataStream = MessageStream<Elements>;

    async fn data(
        &self,
        request: Request<Streaming<Elements>>,
    ) -> std::result::Result<Response<Self::DataStream>, Status> {
        let worker = worker_id(&request);
        let inbound = Box::pin(request.into_inner());
        Ok(Response::new(self.open_data(&worker, inbound)))
    }
}

#[tonic::async_trait]
impl beam_fn_state_server::BeamFnState for Services {
    type StateStream = MessageStream<StateResponse>;

    async fn state(
        &self,
        request: Request<Streaming<StateRequest>>,
    ) -> std::result::Result<Response<Self::StateStream>, Status> {
        Ok(Response::new(
            self.open_state(Box::pin(request.into_inner())),
        ))
    }
}

#[tonic::async_trait]
impl beam_fn_logging_server::BeamFnLogging for Services {
    type LoggingStream = ReceiverStream<std::result::Result<fe::LogControl, Status>>;

    async fn logging(
        &self,
        request: Request<Streaming<fe::log_entry::List>>,
    ) -> std::result::Result<Response<Self::LoggingStream>, Status> {
        let worker = worker_id(&request);
        // Held until the harness closes its side, so the stream stays open.
        let (tx, rx) = mpsc::channel(1);
        let mut inbound = request.into_inner();
        self.0.runtime.spawn(async move {
            while let Ok(Some(list)) = inbound.message().await {
                for e in list.log_entries {
                    log_entry(&worker, &e);
                }
            }
            drop(tx);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn log_entry(worker: &str, e: &fe::LogEntry) {
    use fe::log_entry::severity::Enum as S;
    let severity = S::try_from(e.severity).unwrap_or(S::Unspecified);
    let (message, trace) = (&e.message, &e.trace);
    let (instruction, transform) = (&e.instruction_id, &e.transform_id);
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "oxbeam::harness",
                $level,
                worker,
                instruction = %instruction,
                transform = %transform,
                location = %e.log_location,
                "{message}{}{trace}",
                if trace.is_empty() { "" } else { "\n" }
            )
        };
    }
    match severity {
        S::Critical | S::Error => emit!(tracing::Level::ERROR),
        S::Warn => emit!(tracing::Level::WARN),
        S::Info | S::Notice => emit!(tracing::Level::INFO),
        S::Debug => emit!(tracing::Level::DEBUG),
        S::Trace | S::Unspecified => emit!(tracing::Level::TRACE),
    }
}

#[tonic::async_trait]
impl provision_service_server::ProvisionService for Services {
    async fn get_provision_info(
        &self,
        _request: Request<fe::GetProvisionInfoRequest>,
    ) -> std::result::Result<Response<fe::GetProvisionInfoResponse>, Status> {
        let info = self
            .0
            .provision
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .clone();
        Ok(Response::new(fe::GetProvisionInfoResponse {
            info: Some(info),
        }))
    }
}

/// The runner's Fn API endpoint: BeamFnControl, BeamFnData, BeamFnState,
/// BeamFnLogging and ProvisionService on one ephemeral port of 127.0.0.1,
/// served by its own small tokio runtime.
///
/// Harnesses identify themselves with the `worker_id` gRPC header (as Beam
/// SDKs do); [`FnServer::executor`] gives an executor that runs bundles on
/// the harness with a given id. Dropping the server (and its executors)
/// stops it.
pub struct FnServer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) runtime: Arc<tokio::runtime::Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for FnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnServer")
            .field("url", &self.shared.url)
            .finish()
    }
}

impl FnServer {
    /// Starts the services on an ephemeral port of 127.0.0.1.
    ///
    /// # Errors
    /// [`Error::Internal`] if the runtime or the socket cannot be created.
    pub fn start() -> Result<FnServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("oxbeam-fn-server")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the Fn API runtime: {e}")))?;
        let incoming = runtime
            .block_on(async {
                tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
            })
            .map_err(|e| Error::Internal(format!("cannot bind the Fn API server: {e}")))?
            .with_nodelay(Some(true));
        let addr = incoming
            .local_addr()
            .map_err(|e| Error::Internal(format!("Fn API server address: {e}")))?;
        let url = addr.to_string();
        let shared = Arc::new(Shared {
            url: url.clone(),
            workers: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            descriptors: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            provision: Mutex::new(fe::ProvisionInfo {
                control_endpoint: Some(super::api_descriptor(&url)),
                logging_endpoint: Some(super::api_descriptor(&url)),
                runner_capabilities: vec![super::CONTROL_RESPONSE_ELEMENTS_EMBEDDING.to_string()],
                ..Default::default()
            }),
            runtime: runtime.handle().clone(),
        });
        let s = Services(shared.clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        let router = super::server_builder()
            .add_service(
                beam_fn_control_server::BeamFnControlServer::new(s.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                beam_fn_data_server::BeamFnDataServer::new(s.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                beam_fn_state_server::BeamFnStateServer::new(s.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                beam_fn_logging_server::BeamFnLoggingServer::new(s.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(provision_service_server::ProvisionServiceServer::new(s));
        runtime.spawn(async move {
            let stopped = async {
                let _ = stop.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::error!("Fn API server failed: {e}");
            }
        });
        Ok(FnServer {
            shared,
            runtime: Arc::new(runtime),
            shutdown: Some(shutdown),
        })
    }

    /// `host:port` of the services, as harnesses are told it.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Sets the pipeline options handed to harnesses by ProvisionService
    /// (a JSON object).
    ///
    /// # Errors
    /// [`Error::Invalid`] if `json` is not a JSON object.
    pub fn set_pipeline_options(&self, json: &str) -> Result<()> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::invalid("pipeline options", format!("not JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(Error::invalid("pipeline options", "not a JSON object"));
        };
        if let Ok(mut p) = self.shared.provision.lock() {
            p.pipeline_options = Some(json_struct(map));
        }
        Ok(())
    }

    /// An executor running bundles on the harness that connects with worker
    /// id `worker_id` (waiting for it to connect on first use).
    pub fn executor(&self, worker_id: &str) -> GrpcExecutor {
        GrpcExecutor {
            name: format!("grpc harness {worker_id}"),
            shared: self.shared.clone(),
            _runtime: self.runtime.clone(),
            worker_id: worker_id.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            launcher: None,
            started: Mutex::new(None),
            registered: Mutex::new(HashMap::new()),
            embed_requests: false,
            state_backed_iterables: false,
        }
    }

    /// A transport for a harness in this process ([`super::serve_harness_with`]):
    /// its channels connect straight to this server's services, with no
    /// socket and no serialization. Executors from [`FnServer::executor`]
    /// drive such a harness exactly like one connected over gRPC.
    pub fn in_memory_transport(&self) -> Arc<dyn Transport> {
        Arc::new(InMemoryTransport::new(Services(self.shared.clone())))
    }

    /// Worker ids of the harnesses connected now, sorted.
    pub fn connected_workers(&self) -> Vec<String> {
        let workers = self
            .shared
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = workers
            .values()
            .filter(|w| w.connected())
            .map(|w| w.id.clone())
            .collect();
        v.sort();
        v
    }
}

impl Drop for FnServer {
    fn drop(&mut self) {
        // End every control stream: harnesses over gRPC see the server go
        // anyway, but an in-memory harness holds the services themselves.
        self.shared.close_workers(Duration::ZERO);
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

fn json_struct(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, json_value(v))).collect(),
    }
}

fn json_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s),
        J::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_value).collect(),
        }),
        J::Object(m) => Kind::StructValue(json_struct(m)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Something that starts a harness and can say why it died (a child
/// process, a worker-pool request). Dropping it stops the harness.
pub(crate) trait Launcher: Send + Sync {
    /// Starts the harness; called once, on first use.
    fn start(&self, server_url: &str, worker_id: &str) -> Result<()>;
    /// If the harness is known to have exited: how, with its last output.
    fn exited(&self) -> Option<String>;
    /// What to append to an error about this harness (e.g. its last output).
    fn diagnostics(&self) -> String;
}

/// A registered descriptor and what the runner needs to drive its bundles.
struct Registered {
    stage: String,
    harness_id: String,
    ports: Ports,
    side_inputs: SideInputSpecs,
    user_state: UserStateSpecs,
    /// `(transform id, timer family id)` of every timer family of the stage.
    timer_families: Vec<(String, String)>,
    /// Data sources of grouped values the harness reads as state-backed
    /// iterables, with their coders.
    state_backed: HashMap<String, state::GroupCoders>,
    /// The descriptor as registered with the harness.
    descriptor: Arc<ProcessBundleDescriptor>,
}

/// The timer families of every ParDo of `d`, sorted.
pub(crate) fn timer_families(d: &ProcessBundleDescriptor) -> Result<Vec<(String, String)>> {
    use oxbeam_model::pipeline as pb;
    use oxbeam_model::urns::standard_p_transforms::primitives::PAR_DO;
    let mut out = Vec::new();
    for (id, t) in &d.transforms {
        let Some(spec) = t.spec.as_ref().filter(|s| s.urn == PAR_DO) else {
            continue;
        };
        let payload = pb::ParDoPayload::decode(spec.payload.as_ref())
            .map_err(|e| Error::invalid(format!("ParDoPayload of transform {id}"), e))?;
        out.extend(
            payload
                .timer_family_specs
                .keys()
                .map(|f| (id.clone(), f.clone())),
        );
    }
    out.sort();
    Ok(out)
}

/// Runs bundles on one SDK harness over the Fn API.
///
/// `create_processor` registers the stage's descriptor with the harness
/// (once per distinct descriptor, with the data and state endpoints filled
/// in); each `process_bundle` sends a ProcessBundleRequest, streams the
/// inputs in ~1 MB `Elements` batches, and serves outputs to the bundle's
/// sink and state requests from its side inputs until the harness answers
/// and closes every output.
pub struct GrpcExecutor {
    name: String,
    shared: Arc<Shared>,
    /// Keeps the server's runtime alive as long as its executors.
    _runtime: Arc<tokio::runtime::Runtime>,
    worker_id: String,
    connect_timeout: Duration,
    launcher: Option<Arc<dyn Launcher>>,
    /// `Some(Ok)` once started and connected, `Some(Err)` if that failed.
    started: Mutex<Option<std::result::Result<(), String>>>,
    registered: Mutex<HashMap<Vec<u8>, Arc<Registered>>>,
    /// The harness reads inputs embedded in its ProcessBundleRequests
    /// (`beam:protocol:control_request_elements_embedding:v1`).
    embed_requests: bool,
    /// The harness reads `beam:coder:state_backed_iterable:v1`: large
    /// groups go to it through the State API.
    state_backed_iterables: bool,
}

impl std::fmt::Debug for GrpcExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcExecutor")
            .field("worker_id", &self.worker_id)
            .field("server", &self.shared.url)
            .finish()
    }
}

impl GrpcExecutor {
    /// How long to wait for the harness to connect (default 120 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Embeds the inputs of small bundles (up to [`EMBED_BYTES`]) in
    /// their ProcessBundleRequest instead of streaming them on the data
    /// channel: for harnesses that declare
    /// `beam:protocol:control_request_elements_embedding:v1`. Saves the
    /// data channel's hops on every small bundle.
    pub fn with_request_embedding(mut self, embed: bool) -> Self {
        self.embed_requests = embed;
        self
    }

    /// Sends the values of groups over [`state::STATE_BACKED_GROUP_BYTES`]
    /// as state-backed iterables, read by the harness a page at a time
    /// through the State API: for harnesses that declare
    /// `beam:coder:state_backed_iterable:v1` (Beam's SDKs do). A group then
    /// need not fit in the harness's memory at once.
    pub fn with_state_backed_iterables(mut self, enabled: bool) -> Self {
        self.state_backed_iterables = enabled;
        self
    }

    pub(crate) fn with_launcher(mut self, name: String, launcher: Arc<dyn Launcher>) -> Self {
        self.name = name;
        self.launcher = Some(launcher);
        self
    }

    /// The worker id of the harness.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn harness_error(&self, message: impl Into<String>) -> Error {
        harness_error(&self.worker_id, self.launcher.as_deref(), message.into())
    }

    /// Starts the harness if needed and waits for its control stream.
    fn ensure_connected(&self) -> Result<Arc<Worker>> {
        let mut started = self
            .started
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?;
        match &*started {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(Error::Harness {
                    worker: self.worker_id.clone(),
                    message: e.clone(),
                });
            }
            None => {
                let result = self.start_and_connect();
                *started = Some(result.as_ref().map(|_| ()).map_err(|e| match e {
                    Error::Harness { message, .. } => message.clone(),
                    other => other.to_string(),
                }));
                result?;
            }
        }
        drop(started);
        let worker = self.shared.worker(&self.worker_id);
        if let Some(reason) = worker.gone() {
            return Err(self.harness_error(format!("is gone: {reason}")));
        }
        Ok(worker)
    }

    fn start_and_connect(&self) -> Result<()> {
        if let Some(l) = &self.launcher {
            l.start(&self.shared.url, &self.worker_id)?;
        }
        let worker = self.shared.worker(&self.worker_id);
        let deadline = Instant::now() + self.connect_timeout;
        while !worker.connected() {
            if let Some(how) = self.launcher.as_ref().and_then(|l| l.exited()) {
                return Err(Error::Harness {
                    worker: self.worker_id.clone(),
                    message: format!("exited before connecting to {}: {how}", self.shared.url),
                });
            }
            if Instant::now() > deadline {
                return Err(self.harness_error(format!(
                    "did not connect to the control service at {} within {:?}",
                    self.shared.url, self.connect_timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn register(&self, worker: &Worker, d: &ProcessBundleDescriptor) -> Result<Arc<Registered>> {
        let key = d.encode_to_vec();
        if let Some(r) = self
            .registered
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?
            .get(&key)
        {
            return Ok(r.clone());
        }
        let url = &self.shared.url;
        let mut hd = d.clone();
        hd.id = format!("{}#{}", d.id, self.shared.next_id());
        for (id, t) in hd.transforms.iter_mut() {
            let Some(spec) = t.spec.as_mut() else {
                continue;
            };
            use oxbeam_model::urns::fn_api_transforms::runner as r;
            if spec.urn != r::DATA_SOURCE && spec.urn != r::DATA_SINK {
                continue;
            }
            let mut port = RemoteGrpcPort::decode(spec.payload.as_ref())
                .map_err(|e| Error::invalid(format!("RemoteGrpcPort of transform {id}"), e))?;
            port.api_service_descriptor = Some(super::api_descriptor(url));
            spec.payload = port.encode_to_vec().into();
        }
        hd.state_api_service_descriptor = Some(super::api_descriptor(url));
        let state_backed = if self.state_backed_iterables {
            state::state_backed_sources(&mut hd)?
        } else {
            HashMap::new()
        };
        let timer_families = timer_families(&hd)?;
        if !timer_families.is_empty() {
            // Timers travel on the data channel.
            hd.timer_api_service_descriptor = Some(super::api_descriptor(url));
        }
        let ports = Ports::of(&hd)?;
        let side_inputs = state::side_input_specs(&hd)?;
        let user_state = state::user_state_specs(&hd)?;
        let hd = Arc::new(hd);
        self.shared
            .descriptors
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?
            .insert(hd.id.clone(), hd.clone());
        let instruction = format!("register-{}", self.shared.next_id());
        let (tx, rx) = oneshot::channel();
        worker
            .pending
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?
            .insert(instruction.clone(), tx);
        worker
            .send(InstructionRequest {
                instruction_id: instruction.clone(),
                request: Some(instruction_request::Request::Register(
                    fe::RegisterRequest {
                        process_bundle_descriptor: vec![(*hd).clone()],
                    },
                )),
            })
            .map_err(|e| self.harness_error(format!("cannot register stage {}: {e}", d.id)))?;
        let response = self
            .shared
            .runtime_wait(rx, PROTOCOL_TIMEOUT)
            .map_err(|e| {
                let reason = worker.gone().unwrap_or(e);
                self.harness_error(format!(
                    "did not answer the registration of stage {}: {reason}",
                    d.id
                ))
            })?;
        if !response.error.is_empty() {
            return Err(Error::Unsupported {
                transform: d.id.clone(),
                message: format!(
                    "SDK harness {} rejected the stage: {}",
                    self.worker_id, response.error
                ),
            });
        }
        let reg = Arc::new(Registered {
            stage: d.id.clone(),
            harness_id: hd.id.clone(),
            ports,
            side_inputs,
            user_state,
            timer_families,
            state_backed,
            descriptor: hd.clone(),
        });
        self.registered
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?
            .insert(key, reg.clone());
        Ok(reg)
    }
}

impl Shared {
    /// Waits for a oneshot from a non-async thread, with a timeout.
    fn runtime_wait<T>(
        &self,
        mut rx: oneshot::Receiver<T>,
        timeout: Duration,
    ) -> std::result::Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err("it disconnected".to_string());
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if Instant::now() > deadline {
                return Err(format!("no answer within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Executor for GrpcExecutor {
    fn name(&self) -> &str {
        &self.name
    }

    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        let worker = self.ensure_connected()?;
        let registered = self.register(&worker, &descriptor)?;
        Ok(Box::new(GrpcProcessor {
            shared: self.shared.clone(),
            launcher: self.launcher.clone(),
            worker,
            registered,
            embed_requests: self.embed_requests,
        }))
    }
}

/// An [`Error::Harness`], with the launcher's diagnostics (e.g. the
/// process's exit status and last output) when there are any.
fn harness_error(worker: &str, launcher: Option<&dyn Launcher>, mut message: String) -> Error {
    if let Some(d) = launcher.map(|l| l.diagnostics()).filter(|d| !d.is_empty()) {
        message.push_str("; ");
        message.push_str(&d);
    }
    Error::Harness {
        worker: worker.to_string(),
        message,
    }
}

struct GrpcProcessor {
    shared: Arc<Shared>,
    launcher: Option<Arc<dyn Launcher>>,
    worker: Arc<Worker>,
    registered: Arc<Registered>,
    embed_requests: bool,
}

/// Removes a bundle's route when the bundle ends, however it ends.
struct RouteGuard<'a> {
    shared: &'a Shared,
    instruction: String,
}

impl Drop for RouteGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.shared.routes.lock() {
            r.remove(&self.instruction);
        }
    }
}

impl GrpcProcessor {
    fn harness_error(&self, message: impl Into<String>) -> Error {
        harness_error(&self.worker.id, self.launcher.as_deref(), message.into())
    }

    /// Sends `inputs` as `Elements` batches of about [`DATA_BATCH_BYTES`],
    /// each data source closed with `is_last`.
    /// Checks that every input of a bundle feeds a data source of the stage.
    fn check_inputs(&self, inputs: &[(&str, &[u8])]) -> Result<()> {
        for &(source, _) in inputs {
            self.source_coder(source)?;
        }
        Ok(())
    }

    fn source_coder(&self, source: &str) -> Result<&Coder> {
        self.registered
            .ports
            .sources
            .iter()
            .find(|(id, _)| id == source)
            .map(|(_, coder)| coder)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "bundle input for {source}, which is not a data source of stage {}",
                    self.registered.stage
                ))
            })
    }

    /// The bundle's input as data-plane messages of about
    /// [`DATA_BATCH_BYTES`], each handed to `emit` as soon as it is cut (so
    /// the first one travels while the rest are cut); the last one closes
    /// every data source with `is_last`, then carries the timers with every
    /// timer family closed.
    fn input_messages(
        &self,
        instruction: &str,
        inputs: &[(&str, &[u8])],
        timers: &[(&str, &str, &[u8])],
        state_cache: &mut StateCache,
        mut emit: impl FnMut(Elements) -> Result<()>,
    ) -> Result<()> {
        let mut batch = Vec::new();
        let mut size = 0;
        for &(source, bytes) in inputs {
            let coder = self.source_coder(source)?;
            let groups = self.registered.state_backed.get(source);
            for_each_piece(bytes, coder, |piece| {
                let piece = match groups {
                    Some(g) => state::spill_large_groups(piece, g, state_cache)?,
                    None => std::borrow::Cow::Borrowed(piece),
                };
                size += piece.len();
                batch.push(elements::Data {
                    instruction_id: instruction.to_string(),
                    transform_id: source.to_string(),
                    data: Bytes::copy_from_slice(&piece),
                    is_last: false,
                });
                if size >= DATA_BATCH_BYTES {
                    size = 0;
                    emit(Elements {
                        data: std::mem::take(&mut batch),
                        timers: vec![],
                    })?;
                }
                Ok(())
            })?;
        }
        for (source, _) in &self.registered.ports.sources {
            batch.push(elements::Data {
                instruction_id: instruction.to_string(),
                transform_id: source.clone(),
                data: Bytes::new(),
                is_last: true,
            });
        }
        // Every timer family of the stage is an input the harness waits
        // for: its timers (if any), then `is_last`.
        let mut out: Vec<elements::Timers> = Vec::new();
        for &(transform, family, bytes) in timers {
            out.push(elements::Timers {
                instruction_id: instruction.to_string(),
                transform_id: transform.to_string(),
                timer_family_id: family.to_string(),
                timers: Bytes::copy_from_slice(bytes),
                is_last: false,
            });
        }
        for (transform, family) in &self.registered.timer_families {
            out.push(elements::Timers {
                instruction_id: instruction.to_string(),
                transform_id: transform.clone(),
                timer_family_id: family.clone(),
                timers: Bytes::new(),
                is_last: true,
            });
        }
        emit(Elements {
            data: batch,
            timers: out,
        })
    }

    fn send_input(
        &self,
        data: &mpsc::Sender<std::result::Result<Elements, Status>>,
        message: Elements,
    ) -> Result<()> {
        data.blocking_send(Ok(message))
            .map_err(|_| self.harness_error("its data stream closed while the runner sent input"))
    }
}

/// Cuts a buffer of whole elements into pieces of about
/// [`DATA_BATCH_BYTES`] at element boundaries, handing each to `f` as it is
/// cut.
fn for_each_piece(
    bytes: &[u8],
    coder: &Coder,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    if bytes.len() <= 2 * DATA_BATCH_BYTES {
        return if bytes.is_empty() { Ok(()) } else { f(bytes) };
    }
    let mut rest = bytes;
    let mut start = bytes;
    while !rest.is_empty() {
        coder
            .skip(&mut rest, Context::Nested)
            .map_err(|e| Error::invalid("bundle input", e))?;
        let taken = start.len() - rest.len();
        if taken >= DATA_BATCH_BYTES || rest.is_empty() {
            f(&start[..taken])?;
            start = rest;
        }
    }
    Ok(())
}

impl BundleProcessor for GrpcProcessor {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        let inputs = std::mem::take(&mut bundle.inputs);
        let timers = std::mem::take(&mut bundle.timers);
        let result = self.run_with_residuals(bundle, &inputs, &timers);
        bundle.inputs = inputs;
        bundle.timers = timers;
        result
    }
}

impl GrpcProcessor {
    /// Runs one bundle, then the residuals a splittable DoFn deferred
    /// (self-checkpointing), as further bundles of the same stage after
    /// their requested delay, until none is left. Each answered bundle that
    /// asks for it is finalized before the next one starts.
    fn run_with_residuals(
        &mut self,
        bundle: &mut Bundle<'_>,
        inputs: &[(&str, &[u8])],
        timers: &[(&str, &str, &[u8])],
    ) -> Result<()> {
        let rebalancer = bundle.rebalancer;
        let mut outcome = self.run_instruction(bundle, inputs, timers, rebalancer)?;
        loop {
            if outcome.requires_finalization {
                self.finalize(&outcome.instruction);
            }
            if outcome.residuals.is_empty() {
                return Ok(());
            }
            if bundle.residuals.is_some() {
                let handed = self.handed_back(&outcome.residuals)?;
                if let Some(out) = bundle.residuals.as_deref_mut() {
                    out.extend(handed);
                }
                return Ok(());
            }
            let (resume, delay) = self.residual_inputs(&outcome.residuals)?;
            tracing::debug!(
                stage = %self.registered.stage,
                residuals = outcome.residuals.len(),
                ?delay,
                "resuming deferred residuals"
            );
            if !delay.is_zero() {
                std::thread::sleep(delay.min(MAX_RESUME_DELAY));
            }
            let refs: Vec<(&str, &[u8])> = resume
                .iter()
                .map(|(s, b)| (s.as_str(), b.as_slice()))
                .collect();
            // Only a bundle's first instruction is split: what a bundle
            // still covers is then that instruction's primary.
            outcome = self.run_instruction(bundle, &refs, &[], None)?;
        }
    }

    /// Residual applications as [`Residual`]s for the runner to schedule.
    fn handed_back(&self, residuals: &[fe::DelayedBundleApplication]) -> Result<Vec<Residual>> {
        residuals
            .iter()
            .map(|r| {
                let app = r.application.as_ref().ok_or_else(|| {
                    self.harness_error(format!(
                        "deferred a residual without an application in stage {}",
                        self.registered.stage
                    ))
                })?;
                let source = residual_source(&self.registered, &app.transform_id, &app.input_id)
                    .ok_or_else(|| {
                        self.harness_error(format!(
                            "deferred a residual of input {:?} of transform {:?}, which no data source of stage {} feeds",
                            app.input_id, app.transform_id, self.registered.stage
                        ))
                    })?;
                let watermark_millis = app
                    .output_watermarks
                    .values()
                    .map(|t| t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000)
                    .min();
                Ok(Residual {
                    source,
                    element: app.element.to_vec(),
                    delay: requested_delay(r),
                    watermark_millis,
                })
            })
            .collect()
    }

    /// Residual applications as inputs of the stage's data sources (their
    /// elements are encoded as those sources' elements are), and the
    /// shortest delay any of them asked for.
    fn residual_inputs(
        &self,
        residuals: &[fe::DelayedBundleApplication],
    ) -> Result<(ResumeInputs, Duration)> {
        let mut by_source: ResumeInputs = Vec::new();
        let mut delay: Option<Duration> = None;
        for r in residuals {
            let Some(app) = r.application.as_ref() else {
                return Err(self.harness_error(format!(
                    "deferred a residual without an application in stage {}",
                    self.registered.stage
                )));
            };
            let source = residual_source(&self.registered, &app.transform_id, &app.input_id)
                .ok_or_else(|| {
                    self.harness_error(format!(
                        "deferred a residual of input {:?} of transform {:?}, which no data source of stage {} feeds",
                        app.input_id, app.transform_id, self.registered.stage
                    ))
                })?;
            match by_source.iter_mut().find(|(s, _)| *s == source) {
                Some((_, bytes)) => bytes.extend_from_slice(&app.element),
                None => by_source.push((source, app.element.to_vec())),
            }
            let d = requested_delay(r);
            delay = Some(delay.map_or(d, |m| m.min(d)));
        }
        Ok((by_source, delay.unwrap_or_default()))
    }

    /// Asks the harness to run the bundle finalization callbacks of
    /// `instruction` (its outputs are committed by now). A failing callback
    /// is logged; it does not fail the job, as in Beam.
    fn finalize(&self, instruction: &str) {
        let id = format!("finalize-{}", self.shared.next_id());
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.worker.pending.lock() {
            p.insert(id.clone(), tx);
        }
        let sent = self.worker.send(InstructionRequest {
            instruction_id: id,
            request: Some(instruction_request::Request::FinalizeBundle(
                fe::FinalizeBundleRequest {
                    instruction_id: instruction.to_string(),
                },
            )),
        });
        let outcome = sent.and_then(|()| self.shared.runtime_wait(rx, PROTOCOL_TIMEOUT));
        match outcome {
            Ok(r) if r.error.is_empty() => {}
            Ok(r) => tracing::warn!(
                stage = %self.registered.stage,
                "a bundle finalization callback failed: {}",
                r.error.trim()
            ),
            Err(e) => tracing::warn!(
                stage = %self.registered.stage,
                "bundle {instruction} was not finalized: {e}"
            ),
        }
    }

    /// Runs one ProcessBundle instruction with `inputs` and `timers`,
    /// splitting it when `rebalancer` asks for it.
    fn run_instruction(
        &mut self,
        bundle: &mut Bundle<'_>,
        inputs: &[(&str, &[u8])],
        timers: &[(&str, &str, &[u8])],
        rebalancer: Option<&dyn Rebalancer>,
    ) -> Result<Outcome> {
        let shared = &*self.shared;
        let reg = self.registered.clone();
        let instruction = format!("bundle-{}", shared.next_id());
        let (tx, rx) = std_mpsc::channel();
        shared
            .routes
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?
            .insert(
                instruction.clone(),
                Route {
                    worker: self.worker.id.clone(),
                    tx,
                },
            );
        let _guard = RouteGuard {
            shared,
            instruction: instruction.clone(),
        };
        if let Some(reason) = self.worker.gone() {
            return Err(self.harness_error(format!("is gone: {reason}")));
        }
        let has_inputs = !reg.ports.sources.is_empty() || !reg.timer_families.is_empty();
        let input_bytes: usize = inputs.iter().map(|(_, b)| b.len()).sum::<usize>()
            + timers.iter().map(|(_, _, b)| b.len()).sum::<usize>();
        self.check_inputs(inputs)?;
        // Answers to the bundle's state requests; large groups of its input
        // go in here as they are sent.
        let mut state_cache = StateCache::default();
        // Small inputs travel in the request; larger ones are cut and sent
        // on the data stream once the harness has the request.
        let embedded = if self.embed_requests && has_inputs && input_bytes <= EMBED_BYTES {
            let mut all = Elements::default();
            self.input_messages(&instruction, inputs, timers, &mut state_cache, |m| {
                all.data.extend(m.data);
                all.timers.extend(m.timers);
                Ok(())
            })?;
            Some(all)
        } else {
            None
        };
        let stream_inputs = has_inputs && embedded.is_none();
        self.worker
            .send(InstructionRequest {
                instruction_id: instruction.clone(),
                request: Some(instruction_request::Request::ProcessBundle(
                    fe::ProcessBundleRequest {
                        process_bundle_descriptor_id: reg.harness_id.clone(),
                        elements: embedded,
                        ..Default::default()
                    },
                )),
            })
            .map_err(|e| self.harness_error(format!("cannot start a bundle: {e}")))?;

        let mut backlog: VecDeque<BundleEvent> = VecDeque::new();
        if stream_inputs {
            // The harness opens its data stream when it first needs it.
            let deadline = Instant::now() + PROTOCOL_TIMEOUT;
            let data = loop {
                if let Some(d) = self.worker.data.lock().ok().and_then(|d| d.clone()) {
                    break d;
                }
                match rx.recv_timeout(Duration::from_millis(2)) {
                    Ok(ev) => {
                        if let Some(e) = self.fatal(&reg, &ev) {
                            return Err(e);
                        }
                        backlog.push_back(ev);
                    }
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(Error::Internal("bundle route dropped".into()));
                    }
                }
                if Instant::now() > deadline {
                    return Err(self.harness_error(format!(
                        "did not open its data stream within {PROTOCOL_TIMEOUT:?}"
                    )));
                }
            };
            self.input_messages(&instruction, inputs, timers, &mut state_cache, |m| {
                self.send_input(&data, m)
            })?;
        }

        let mut open: HashSet<&str> = reg.ports.sinks.iter().map(|(id, _)| id.as_str()).collect();
        // Timer families whose output timers the harness has not closed yet.
        let mut open_timers: HashSet<(&str, &str)> = reg
            .timer_families
            .iter()
            .map(|(t, f)| (t.as_str(), f.as_str()))
            .collect();
        let mut carry: HashMap<String, Vec<u8>> = HashMap::new();
        let mut answered_at: Option<Instant> = None;
        let mut outcome = Outcome {
            instruction: instruction.clone(),
            residuals: Vec::new(),
            requires_finalization: false,
        };
        let mut splits = match rebalancer {
            Some(r) if !inputs.is_empty() => Some(Splits {
                rebalancer: r,
                ledger: Ledger::new(inputs, |s| {
                    reg.ports
                        .sources
                        .iter()
                        .find(|(id, _)| id == s)
                        .map(|(_, c)| c)
                })
                .map_err(|e| Error::Internal(e.to_string()))?,
                started: Instant::now(),
                next_try: Instant::now(),
                pending: None,
            }),
            _ => None,
        };
        loop {
            if answered_at.is_some() && open.is_empty() && open_timers.is_empty() {
                return Ok(outcome);
            }
            if answered_at.is_none() {
                if let Some(s) = splits.as_mut() {
                    self.poll_split(s, &instruction, false)?;
                }
            }
            let wait = match &splits {
                Some(_) if answered_at.is_none() => SPLIT_POLL,
                _ => Duration::from_millis(500),
            };
            let event = match backlog.pop_front() {
                Some(ev) => ev,
                None => match rx.recv_timeout(wait) {
                    Ok(ev) => ev,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        if let Some(reason) = self.worker.gone() {
                            return Err(self.harness_error(format!(
                                "failed while processing a bundle of stage {}: {reason}",
                                reg.stage
                            )));
                        }
                        if answered_at.is_some_and(|t| t.elapsed() > OUTPUT_LINGER) {
                            let mut still: Vec<String> =
                                open.iter().map(|s| s.to_string()).collect();
                            still.extend(
                                open_timers
                                    .iter()
                                    .map(|(t, f)| format!("timers {f} of {t}")),
                            );
                            still.sort_unstable();
                            return Err(self.harness_error(format!(
                                "finished a bundle of stage {} without closing outputs {}",
                                reg.stage,
                                still.join(", ")
                            )));
                        }
                        continue;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(Error::Internal("bundle route dropped".into()));
                    }
                },
            };
            if let Some(e) = self.fatal(&reg, &event) {
                return Err(e);
            }
            match event {
                BundleEvent::Data(d) => {
                    let Some((sink, coder)) =
                        reg.ports.sinks.iter().find(|(id, _)| *id == d.transform_id)
                    else {
                        return Err(self.harness_error(format!(
                            "sent data for {:?}, which is not a data sink of stage {}",
                            d.transform_id, reg.stage
                        )));
                    };
                    let buf = carry.entry(sink.clone()).or_default();
                    let sink_out = &mut *bundle.sink;
                    let emit = |e: &[u8]| sink_out.emit(sink, e);
                    if buf.is_empty() {
                        let tail = super::for_each_element(coder, &d.data, emit)
                            .map_err(|e| self.harness_error(format!("output of {sink}: {e}")))?;
                        buf.extend_from_slice(&d.data[d.data.len() - tail..]);
                    } else {
                        buf.extend_from_slice(&d.data);
                        let tail = super::for_each_element(coder, buf, emit)
                            .map_err(|e| self.harness_error(format!("output of {sink}: {e}")))?;
                        let done = buf.len() - tail;
                        buf.drain(..done);
                    }
                    if buf.len() > MAX_MESSAGE_BYTES {
                        return Err(self.harness_error(format!(
                            "sent more than {MAX_MESSAGE_BYTES} bytes of output to {sink} without completing an element"
                        )));
                    }
                    if d.is_last {
                        if !buf.is_empty() {
                            return Err(self.harness_error(format!(
                                "closed output {sink} in the middle of an element ({} bytes left over)",
                                buf.len()
                            )));
                        }
                        open.remove(sink.as_str());
                    }
                }
                BundleEvent::Timers(t) => {
                    let Some((transform, family)) = reg
                        .timer_families
                        .iter()
                        .find(|(tr, f)| *tr == t.transform_id && *f == t.timer_family_id)
                    else {
                        return Err(self.harness_error(format!(
                            "sent timers of family {:?} of transform {:?}, which stage {} does not declare",
                            t.timer_family_id, t.transform_id, reg.stage
                        )));
                    };
                    if !t.timers.is_empty() {
                        bundle.sink.emit_timer(transform, family, &t.timers)?;
                    }
                    if t.is_last {
                        open_timers.remove(&(transform.as_str(), family.as_str()));
                    }
                }
                BundleEvent::State(request, reply) => {
                    let mut user = UserStateAccess {
                        state: &mut *bundle.state,
                        specs: &reg.user_state,
                    };
                    let response = state::answer(
                        &request,
                        &reg.side_inputs,
                        bundle.side_inputs,
                        &mut user,
                        &mut state_cache,
                    );
                    let _ = reply.send(Ok(response));
                }
                BundleEvent::Response(r) => {
                    // A split answered before the bundle ended applies.
                    if let Some(s) = splits.as_mut() {
                        self.poll_split(s, &instruction, true)?;
                    }
                    if let Some(fe::instruction_response::Response::ProcessBundle(mut pb)) =
                        r.response
                    {
                        outcome.residuals = std::mem::take(&mut pb.residual_roots);
                        outcome.requires_finalization = pb.requires_finalization;
                        bundle.metrics.merge_monitoring_infos(&pb.monitoring_infos);
                        // Outputs embedded in the response (control-response
                        // embedding) are handled as if they came on the
                        // data channel, before anything still queued.
                        if let Some(e) = pb.elements.take() {
                            for t in e.timers.into_iter().rev() {
                                backlog.push_front(BundleEvent::Timers(t));
                            }
                            for d in e.data.into_iter().rev() {
                                backlog.push_front(BundleEvent::Data(d));
                            }
                        }
                    }
                    answered_at = Some(Instant::now());
                }
                // Handled by `fatal` above.
                BundleEvent::Failed(_) => {}
            }
        }
    }
}

/// How often a bundle that may be split asks its rebalancer whether to.
const SPLIT_POLL: Duration = Duration::from_millis(20);
/// After a split request, how long before the next one.
const SPLIT_BACKOFF: Duration = Duration::from_millis(200);

/// Runner-initiated splitting of one running instruction.
struct Splits<'a> {
    rebalancer: &'a dyn Rebalancer,
    /// What the instruction still covers.
    ledger: Ledger<'a>,
    started: Instant,
    /// No split request before this.
    next_try: Instant,
    /// The answer to the split request in flight.
    pending: Option<oneshot::Receiver<InstructionResponse>>,
}

impl GrpcProcessor {
    /// Splits a running instruction: sends a `ProcessBundleSplit` request
    /// when the rebalancer asks for one, and when the harness answers,
    /// hands the residual to the rebalancer. `finished`: the instruction
    /// has answered; wait for the answer of a request in flight.
    fn poll_split(&self, s: &mut Splits<'_>, instruction: &str, finished: bool) -> Result<()> {
        if let Some(mut rx) = s.pending.take() {
            let response = if finished {
                match self.shared.runtime_wait(rx, PROTOCOL_TIMEOUT) {
                    Ok(r) => r,
                    Err(e) => {
                        return Err(self.harness_error(format!(
                            "did not answer a split request of a bundle of stage {}: {e}",
                            self.registered.stage
                        )));
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(r) => r,
                    Err(oneshot::error::TryRecvError::Empty) => {
                        s.pending = Some(rx);
                        return Ok(());
                    }
                    Err(oneshot::error::TryRecvError::Closed) => return Ok(()),
                }
            };
            s.next_try = Instant::now() + SPLIT_BACKOFF;
            let split = match response.response {
                Some(fe::instruction_response::Response::ProcessBundleSplit(split))
                    if response.error.is_empty() =>
                {
                    split
                }
                // A harness may decline (e.g. the bundle is nearly done).
                _ => {
                    tracing::debug!(
                        stage = %self.registered.stage,
                        error = %response.error.trim(),
                        "split request declined"
                    );
                    return Ok(());
                }
            };
            let reg = &self.registered;
            let residual = s
                .ledger
                .apply(&split, |app| {
                    residual_source(reg, &app.transform_id, &app.input_id)
                })
                .map_err(|message| Error::Invalid {
                    what: format!(
                        "split of a bundle of stage {} by harness {}",
                        reg.stage, self.worker.id
                    ),
                    message,
                })?;
            if residual.is_empty() {
                tracing::debug!(stage = %reg.stage, "split request answered without a residual");
            } else {
                tracing::debug!(
                    stage = %reg.stage,
                    elapsed = ?s.started.elapsed(),
                    "split a running bundle"
                );
                s.rebalancer.hand_off(residual, s.ledger.kept());
            }
            return Ok(());
        }
        if finished || Instant::now() < s.next_try {
            return Ok(());
        }
        let Some(fraction) = s.rebalancer.split_fraction(s.started.elapsed()) else {
            return Ok(());
        };
        // Beam's fraction is the share of the remainder the primary keeps.
        let desired_splits = s.ledger.desired_splits(1.0 - fraction.clamp(0.0, 1.0));
        if desired_splits.is_empty() {
            return Ok(());
        }
        let id = format!("split-{}", self.shared.next_id());
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.worker.pending.lock() {
            p.insert(id.clone(), tx);
        }
        s.next_try = Instant::now() + SPLIT_BACKOFF;
        let sent = self.worker.send(InstructionRequest {
            instruction_id: id,
            request: Some(instruction_request::Request::ProcessBundleSplit(
                fe::ProcessBundleSplitRequest {
                    instruction_id: instruction.to_string(),
                    desired_splits,
                },
            )),
        });
        if sent.is_ok() {
            tracing::debug!(
                stage = %self.registered.stage,
                elapsed = ?s.started.elapsed(),
                fraction,
                "split requested"
            );
            s.pending = Some(rx);
        }
        Ok(())
    }
}

/// The delay a residual asked for (none if negative or absent).
fn requested_delay(r: &fe::DelayedBundleApplication) -> Duration {
    r.requested_time_delay
        .as_ref()
        .map(|d| {
            Duration::from_secs(d.seconds.max(0) as u64)
                + Duration::from_nanos(d.nanos.max(0) as u64)
        })
        .unwrap_or_default()
}

/// Encoded elements per data source, to resume residuals with.
type ResumeInputs = Vec<(String, Vec<u8>)>;

/// What an answered ProcessBundle instruction left to do.
struct Outcome {
    instruction: String,
    residuals: Vec<fe::DelayedBundleApplication>,
    requires_finalization: bool,
}

/// The longest the runner waits before resuming deferred residuals (a
/// residual asking for more is resumed early and may defer itself again).
const MAX_RESUME_DELAY: Duration = Duration::from_secs(1);

/// The data source of `reg`'s stage whose elements feed input `input_id`
/// of `transform_id`, directly or through the SDF truncation transform.
fn residual_source(reg: &Registered, transform_id: &str, input_id: &str) -> Option<String> {
    use oxbeam_model::urns::standard_p_transforms::splittable_par_do_components::TRUNCATE_SIZED_RESTRICTION;
    let d = &*reg.descriptor;
    let feeding = |pcoll: &str| {
        reg.ports
            .sources
            .iter()
            .find(|(id, _)| {
                d.transforms
                    .get(id)
                    .is_some_and(|t| t.outputs.values().any(|o| o == pcoll))
            })
            .map(|(id, _)| id.clone())
    };
    let pcoll = d.transforms.get(transform_id)?.inputs.get(input_id)?;
    feeding(pcoll).or_else(|| {
        d.transforms.values().find_map(|t| {
            let truncates = t
                .spec
                .as_ref()
                .is_some_and(|s| s.urn == TRUNCATE_SIZED_RESTRICTION);
            if truncates && t.outputs.values().any(|o| o == pcoll) {
                t.inputs.values().find_map(|i| feeding(i))
            } else {
                None
            }
        })
    })
}

impl GrpcProcessor {
    /// The error an event ends the bundle with, if it does.
    fn fatal(&self, reg: &Registered, event: &BundleEvent) -> Option<Error> {
        match event {
            BundleEvent::Failed(reason) => Some(self.harness_error(format!(
                "failed while processing a bundle of stage {}: {reason}",
                reg.stage
            ))),
            BundleEvent::Response(r) if !r.error.is_empty() => {
                Some(Error::UserCode(UserCodeError {
                    transform: super::transform_in_error(&r.error)
                        .unwrap_or_else(|| format!("stage {}", reg.stage)),
                    message: r.error.trim().to_string(),
                    element: None,
                }))
            }
            BundleEvent::Response(r)
                if !matches!(
                    r.response,
                    Some(fe::instruction_response::Response::ProcessBundle(_))
                ) =>
            {
                Some(self.harness_error(format!(
                    "answered a ProcessBundleRequest of stage {} with something else",
                    reg.stage
                )))
            }
            _ => None,
        }
    }
}
