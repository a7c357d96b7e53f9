//! The harness's data connection: HTTP/2 as tonic's channels speak it, but
//! accepting frames of up to [`DATA_FRAME_BYTES`].
//!
//! A peer sends frames no larger than the receiver advertises, and tonic's
//! client advertises HTTP/2's default 16 KiB: the runner then cuts each
//! 1 MB batch of input into 64 frames, each written by a syscall of its own
//! and read by another. This connection advertises 1 MiB frames (the
//! runner's server already accepts 16 MiB), so a batch crosses in a few
//! large writes and reads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Status;
use tonic::codegen::http;

use super::{CONNECTION_WINDOW, STREAM_WINDOW};

/// Largest HTTP/2 frame the harness accepts on its data connection.
const DATA_FRAME_BYTES: u32 = 1 << 20;
/// Bytes a stream may buffer for sending before it waits for the socket.
const SEND_BUFFER_BYTES: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP/2 connection to the runner's data endpoint, as a service the
/// generated gRPC clients call (`BeamFnDataClient::with_origin`).
#[derive(Clone)]
pub(crate) struct DataConnection(SendRequest<tonic::body::Body>);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for DataConnection {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// Connects to `url` (`host:port` or `http://host:port`); returns the
/// connection and the origin its requests go to.
pub(crate) async fn connect(url: &str) -> Result<(DataConnection, http::Uri), Status> {
    let uri: http::Uri = super::http_url(url)
        .parse()
        .map_err(|e| Status::invalid_argument(format!("data endpoint {url:?}: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| Status::invalid_argument(format!("data endpoint {url:?} has no host")))?
        .to_string();
    let unavailable = |e: &dyn std::fmt::Display| {
        Status::unavailable(format!("cannot connect to the data endpoint {url}: {e}"))
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&authority))
        .await
        .map_err(|e| unavailable(&e))?
        .map_err(|e| unavailable(&e))?;
    stream.set_nodelay(true).map_err(|e| unavailable(&e))?;
    let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(DATA_FRAME_BYTES)
        .max_send_buf_size(SEND_BUFFER_BYTES)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unavailable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("data connection closed: {e}");
        }
    });
    Ok((DataConnection(send), uri))
}
