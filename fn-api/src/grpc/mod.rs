//! The Fn API over gRPC: both ends of Beam's control, data, state and
//! logging channels.
//!
//! - [`FnServer`] (runner side) serves BeamFnControl, BeamFnData,
//!   BeamFnState, BeamFnLogging and ProvisionService on 127.0.0.1; a
//!   [`GrpcExecutor`] drives one connected SDK harness through it.
//! - [`serve_harness`] (harness side) connects to a runner's control
//!   endpoint and runs its bundles on any in-process [`crate::Executor`].
//! - [`Harnesses`] starts harnesses for `beam:env:process:v1` and
//!   `beam:env:external:v1` environments, once per job, and replaces an
//!   environment's harnesses when one dies ([`Harnesses::restart`]; the
//!   runner then retries the bundle, up to
//!   [`HarnessOptions::max_bundle_attempts`]).

mod data_conn;
mod env;
mod harness;
mod in_memory;
mod runner;
mod split;
mod state;
mod transport;
pub mod warm;

use std::time::Duration;

use oxbeam_model::coders::{Coder, CoderError, Context, wire};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::pipeline as pb;
use prost::Message;

pub use env::{HarnessOptions, Harnesses};
pub use harness::{HarnessConfig, serve_harness, serve_harness_with};
pub use in_memory::InMemoryHarness;
pub use runner::{EMBED_BYTES, FnServer, GrpcExecutor};
pub use transport::{GrpcTransport, InMemoryTransport, MessageStream, OutboundStream, Transport};

use crate::{Error, Result};

/// Largest gRPC message either side accepts: bundles' data batches are far
/// smaller, but a single huge element must still fit.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Target size of one `Elements` message on the data plane.
pub(crate) const DATA_BATCH_BYTES: usize = 1 << 20;
/// Target size of one page of a state response.
pub(crate) const STATE_PAGE_BYTES: usize = 1 << 20;
/// HTTP/2 windows: large enough that a 1 MB batch never waits for a
/// window update on loopback.
const STREAM_WINDOW: u32 = 16 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;
/// Runner capability: a harness may embed a bundle's outputs in its
/// ProcessBundleResponse.
pub(crate) const CONTROL_RESPONSE_ELEMENTS_EMBEDDING: &str =
    "beam:protocol:control_response_elements_embedding:v1";
/// Harness capability: it reads inputs embedded in ProcessBundleRequests.
pub const CONTROL_REQUEST_ELEMENTS_EMBEDDING: &str =
    "beam:protocol:control_request_elements_embedding:v1";
/// gRPC metadata key carrying the harness's worker id, as Beam SDKs send it.
pub(crate) const WORKER_ID_HEADER: &str = "worker_id";

/// A tonic server builder tuned for bulk data on loopback.
pub(crate) fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(Some((1 << 24) - 1))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
}

/// Connects a channel to `url` (`host:port` or `http://host:port`), tuned
/// like [`server_builder`].
pub(crate) async fn connect(url: &str) -> Result<tonic::transport::Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(http_url(url))
        .map_err(|e| Error::invalid(format!("endpoint {url:?}"), e))?
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect_timeout(Duration::from_secs(30));
    endpoint
        .connect()
        .await
        .map_err(|e| Error::Internal(format!("cannot connect to {url}: {e}")))
}

/// `url` with the `http://` scheme if it names none (endpoints are often
/// given as `host:port`).
pub(crate) fn http_url(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// An `ApiServiceDescriptor` for `url`.
pub(crate) fn api_descriptor(url: &str) -> pb::ApiServiceDescriptor {
    pb::ApiServiceDescriptor {
        url: url.to_string(),
        ..Default::default()
    }
}

/// The data sources and sinks of a descriptor, with their windowed-value
/// coders: `(transform id, coder)`.
pub(crate) struct Ports {
    pub sources: Vec<(String, Coder)>,
    pub sinks: Vec<(String, Coder)>,
}

impl Ports {
    pub(crate) fn of(d: &ProcessBundleDescriptor) -> Result<Ports> {
        use oxbeam_model::urns::fn_api_transforms::runner as r;
        let components = pb::Components {
            coders: d.coders.clone(),
            ..Default::default()
        };
        let mut ports = Ports {
            sources: vec![],
            sinks: vec![],
        };
        for (id, t) in &d.transforms {
            let Some(spec) = &t.spec else { continue };
            let is_source = spec.urn == r::DATA_SOURCE;
            if !is_source && spec.urn != r::DATA_SINK {
                continue;
            }
            let port = RemoteGrpcPort::decode(spec.payload.as_ref())
                .map_err(|e| Error::invalid(format!("RemoteGrpcPort of transform {id}"), e))?;
            let coder = Coder::from_proto(&port.coder_id, &components).map_err(|e| {
                Error::invalid(format!("coder {} of data port {id}", port.coder_id), e)
            })?;
            if !coder.is_self_delimiting() {
                return Err(Error::invalid(
                    format!("coder {} of data port {id}", port.coder_id),
                    "contains a coder unknown to Oxbeam outside a length prefix",
                ));
            }
            if is_source {
                ports.sources.push((id.clone(), coder));
            } else {
                ports.sinks.push((id.clone(), coder));
            }
        }
        Ok(ports)
    }
}

/// Whether a decoding error only means the input ended early (more bytes
/// may complete the element).
pub(crate) fn is_truncation(e: &CoderError) -> bool {
    matches!(
        e,
        CoderError::Truncated { .. } | CoderError::LengthExceedsInput { .. }
    )
}

/// Splits `data` into whole elements of `coder` (nested), calling `f` with
/// each; returns the length of the incomplete tail, if any.
///
/// # Errors
/// Bad bytes (other than truncation), or `f`'s error.
pub(crate) fn for_each_element(
    coder: &Coder,
    data: &[u8],
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<usize> {
    let mut rest = data;
    while !rest.is_empty() {
        let before = rest;
        match coder.read_encoded(&mut rest, Context::Nested) {
            Ok(element) => f(element)?,
            Err(e) if is_truncation(&e) => return Ok(before.len()),
            Err(e) => {
                return Err(Error::invalid(
                    "element on the data plane",
                    format!("does not decode with its port coder: {e}"),
                ));
            }
        }
    }
    Ok(0)
}

/// One windowed value split into its parts, borrowed from its bytes.
pub(crate) struct WindowedParts<'a> {
    /// Each window's encoding.
    pub windows: Vec<&'a [u8]>,
    /// The value's nested encoding.
    pub value: &'a [u8],
}

/// Reads one nested windowed value of `value` in windows of `window`.
pub(crate) fn read_windowed<'a>(
    input: &mut &'a [u8],
    value: &Coder,
    window: &Coder,
) -> std::result::Result<WindowedParts<'a>, CoderError> {
    wire::read_array::<8>(input)?;
    let count = wire::read_i32_be(input)?;
    let mut windows = Vec::with_capacity(count.clamp(0, 16) as usize);
    for _ in 0..count.max(0) {
        windows.push(window.read_encoded(input, Context::Nested)?);
    }
    wire::read_pane(input)?;
    let value = value.read_encoded(input, Context::Nested)?;
    Ok(WindowedParts { windows, value })
}

/// A short, single-line rendering of a harness error for messages.
pub(crate) fn transform_in_error(text: &str) -> Option<String> {
    for marker in ["while running '", "in transform '"] {
        if let Some(start) = text.rfind(marker) {
            let rest = &text[start + marker.len()..];
            if let Some(end) = rest.find('\'') {
                return Some(rest[..end].to_string());
            }
        }
    }
    None
}
