//! How a harness reaches its runner: one [`Transport`] trait, two
//! implementations.
//!
//! - [`GrpcTransport`]: tonic clients over HTTP/2 (another process, or this
//!   one over loopback). Every message is serialized.
//! - [`InMemoryTransport`]: the harness runs in the runner's process and
//!   its streams are channels into the runner's services: control
//!   requests and responses, data batches and state calls move as Rust
//!   values, never encoded. Element bytes inside `Elements` are shared
//!   [`bytes::Bytes`], so they are not copied either.
//!
//! The harness ([`super::harness`]) speaks the same protocol over both: the
//! only difference is how a stream is opened.

use std::pin::Pin;

use oxbeam_model::fn_execution::{
    self as fe, Elements, InstructionRequest, InstructionResponse, ProcessBundleDescriptor,
    StateRequest, StateResponse, beam_fn_control_client::BeamFnControlClient,
    beam_fn_data_client::BeamFnDataClient, beam_fn_state_client::BeamFnStateClient,
    provision_service_client::ProvisionServiceClient,
};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tonic::transport::Channel;

use super::runner::Services;
use super::{MAX_MESSAGE_BYTES, WORKER_ID_HEADER};

/// Messages arriving from the other end of a Fn API channel; an error ends
/// the channel.
pub type MessageStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

/// Messages this end sends on a Fn API channel; the channel closes when
/// the stream ends.
pub type OutboundStream<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// The harness's side of the Fn API channels to one runner.
///
/// Each method opens one bidirectional channel for worker `worker`: the
/// harness's messages go out on `outbound`, the runner's come back on the
/// returned stream. `endpoint` is the `ApiServiceDescriptor` URL a
/// descriptor names for its data or state (a transport serving a single
/// runner may ignore it).
#[tonic::async_trait]
pub trait Transport: Send + Sync {
    /// What this transport connects to, for messages ("grpc 127.0.0.1:4000").
    fn describe(&self) -> String;

    /// Opens the control channel (BeamFnControl.Control).
    async fn control(
        &self,
        worker: &str,
        outbound: OutboundStream<InstructionResponse>,
    ) -> std::result::Result<MessageStream<InstructionRequest>, Status>;

    /// Fetches a descriptor the runner did not register
    /// (BeamFnControl.GetProcessBundleDescriptor).
    async fn descriptor(
        &self,
        worker: &str,
        id: &str,
    ) -> std::result::Result<ProcessBundleDescriptor, Status>;

    /// The runner's ProvisionInfo (ProvisionService.GetProvisionInfo), for
    /// its capabilities. Transports that cannot reach it answer
    /// `Unimplemented` (the default).
    async fn provision(&self) -> std::result::Result<fe::ProvisionInfo, Status> {
        Err(Status::unimplemented(
            "this transport has no provision service",
        ))
    }

    /// Opens a data channel (BeamFnData.Data).
    async fn data(
        &self,
        endpoint: &str,
        worker: &str,
        outbound: OutboundStream<Elements>,
    ) -> std::result::Result<MessageStream<Elements>, Status>;

    /// Opens a state channel (BeamFnState.State).
    async fn state(
        &self,
        endpoint: &str,
        worker: &str,
        outbound: OutboundStream<StateRequest>,
    ) -> std::result::Result<MessageStream<StateResponse>, Status>;
}

/// The Fn API over gRPC (tonic), tuned for bulk data: large HTTP/2 windows
/// and message limits. Opens one HTTP/2 connection per channel.
pub struct GrpcTransport {
    control_endpoint: String,
    /// The connection to the control endpoint (control and provision).
    control: tokio::sync::OnceCell<Channel>,
}

impl GrpcTransport {
    /// A transport to the runner whose control service is at
    /// `control_endpoint` (`host:port` or `http://host:port`).
    pub fn new(control_endpoint: impl Into<String>) -> GrpcTransport {
        GrpcTransport {
            control_endpoint: control_endpoint.into(),
            control: tokio::sync::OnceCell::new(),
        }
    }

    async fn control_channel(&self) -> std::result::Result<Channel, Status> {
        self.control
            .get_or_try_init(|| channel(&self.control_endpoint))
            .await
            .cloned()
    }

    async fn control_client(&self) -> std::result::Result<BeamFnControlClient<Channel>, Status> {
        Ok(BeamFnControlClient::new(self.control_channel().await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

async fn channel(endpoint: &str) -> std::result::Result<Channel, Status> {
    super::connect(endpoint)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))
}

/// An outbound stream as a concrete type: tonic's streaming calls on a
/// boxed `dyn Stream` trip a rustc limitation (higher-ranked `Send`).
struct Outbound<T>(OutboundStream<T>);

impl<T> Stream for Outbound<T> {
    type Item = T;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.as_mut().poll_next(cx)
    }
}

fn with_worker_id<T>(message: T, id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(v) = id.parse() {
        request.metadata_mut().insert(WORKER_ID_HEADER, v);
    }
    request
}

#[tonic::async_trait]
impl Transport for GrpcTransport {
    fn describe(&self) -> String {
        format!("grpc {}", self.control_endpoint)
    }

    async fn control(
        &self,
        worker: &str,
        outbound: OutboundStream<InstructionResponse>,
    ) -> std::result::Result<MessageStream<InstructionRequest>, Status> {
        let mut client = self.control_client().await?;
        let request = with_worker_id(Outbound(outbound), worker);
        Ok(Box::pin(client.control(request).await?.into_inner()))
    }

    async fn descriptor(
        &self,
        worker: &str,
        id: &str,
    ) -> std::result::Result<ProcessBundleDescriptor, Status> {
        let mut client = self.control_client().await?;
        let request = fe::GetProcessBundleDescriptorRequest {
            process_bundle_descriptor_id: id.to_string(),
        };
        Ok(client
            .get_process_bundle_descriptor(with_worker_id(request, worker))
            .await?
            .into_inner())
    }

    /// Asks the provision service on the control endpoint (where Oxbeam
    /// serves it; a runner serving it elsewhere answers an error, and the
    /// harness assumes no runner capabilities).
    async fn provision(&self) -> std::result::Result<fe::ProvisionInfo, Status> {
        let mut client = ProvisionServiceClient::new(self.control_channel().await?);
        client
            .get_provision_info(fe::GetProvisionInfoRequest {})
            .await?
            .into_inner()
            .info
            .ok_or_else(|| Status::not_found("empty ProvisionInfo"))
    }

    async fn data(
        &self,
        endpoint: &str,
        worker: &str,
        outbound: OutboundStream<Elements>,
    ) -> std::result::Result<MessageStream<Elements>, Status> {
        let (connection, origin) = super::data_conn::connect(endpoint).await?;
        let mut client = BeamFnDataClient::with_origin(connection, origin)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let request = with_worker_id(Outbound(outbound), worker);
        Ok(Box::pin(client.data(request).await?.into_inner()))
    }

    async fn state(
        &self,
        endpoint: &str,
        worker: &str,
        outbound: OutboundStream<StateRequest>,
    ) -> std::result::Result<MessageStream<StateResponse>, Status> {
        let mut client = BeamFnStateClient::new(channel(endpoint).await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let request = with_worker_id(Outbound(outbound), worker);
        Ok(Box::pin(client.state(request).await?.into_inner()))
    }
}

/// The Fn API within one process: the harness's channels are connected
/// straight to a [`super::FnServer`]'s services, messages move as values.
/// Made by [`super::FnServer::in_memory_transport`]; every endpoint is
/// that server.
pub struct InMemoryTransport {
    services: Services,
}

impl InMemoryTransport {
    pub(crate) fn new(services: Services) -> InMemoryTransport {
        InMemoryTransport { services }
    }
}

fn infallible<T: Send + 'static>(outbound: OutboundStream<T>) -> MessageStream<T> {
    Box::pin(outbound.map(Ok))
}

#[tonic::async_trait]
impl Transport for InMemoryTransport {
    fn describe(&self) -> String {
        format!("in-memory {}", self.services.0.url)
    }

    async fn control(
        &self,
        worker: &str,
        outbound: OutboundStream<InstructionResponse>,
    ) -> std::result::Result<MessageStream<InstructionRequest>, Status> {
        self.services.open_control(worker, infallible(outbound))
    }

    async fn descriptor(
        &self,
        _worker: &str,
        id: &str,
    ) -> std::result::Result<ProcessBundleDescriptor, Status> {
        self.services.descriptor(id)
    }

    async fn provision(&self) -> std::result::Result<fe::ProvisionInfo, Status> {
        self.services
            .0
            .provision
            .lock()
            .map(|p| p.clone())
            .map_err(|_| Status::internal("poisoned"))
    }

    async fn data(
        &self,
        _endpoint: &str,
        worker: &str,
        outbound: OutboundStream<Elements>,
    ) -> std::result::Result<MessageStream<Elements>, Status> {
        Ok(self.services.open_data(worker, infallible(outbound)))
    }

    async fn state(
        &self,
        _endpoint: &str,
        _worker: &str,
        outbound: OutboundStream<StateRequest>,
    ) -> std::result::Result<MessageStream<StateResponse>, Status> {
        Ok(self.services.open_state(infallible(outbound)))
    }
}
