//! gRPC status codes that say who is at fault.

use std::task::{Context, Poll};

use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// Wraps a service so that a request it cannot decode is answered
/// INVALID_ARGUMENT: tonic answers INTERNAL ("failed to decode Protobuf
/// message"), but a malformed message is the client's fault, and clients
/// must not retry it as a server error.
#[derive(Debug, Clone)]
pub(crate) struct DecodeErrorsAreInvalid<S>(pub S);

impl<S: NamedService> NamedService for DecodeErrorsAreInvalid<S> {
    const NAME: &'static str = S::NAME;
}

/// Whether a response is tonic's answer to an undecodable request. Such
/// errors are sent before any handler runs, as a trailers-only response
/// whose headers carry the status; handlers of this crate never answer
/// INTERNAL with this text.
fn is_decode_failure<B>(response: &http::Response<B>) -> bool {
    let headers = response.headers();
    headers.get("grpc-status").is_some_and(|s| s == "13")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.starts_with("failed%20to%20decode") || m.starts_with("failed to decode")
            })
}

impl<S, Req, B> Service<http::Request<Req>> for DecodeErrorsAreInvalid<S>
where
    S: Service<http::Request<Req>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Req>) -> Self::Future {
        let response = self.0.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if is_decode_failure(&response) {
                response.headers_mut().insert(
                    "grpc-status",
                    http::HeaderValue::from(tonic::Code::InvalidArgument as i32),
                );
            }
            Ok(response)
        })
    }
}
