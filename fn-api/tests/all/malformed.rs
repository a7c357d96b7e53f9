//! A fake harness that breaks the protocol: the runner reports a clear
//! error for the bundle and keeps serving other harnesses.

use std::sync::Arc;
use std::time::Duration;

use oxbeam_fn_api::{Error, FnServer, HarnessConfig, serve_harness};
use oxbeam_model::fn_execution::{
    Elements, InstructionResponse, beam_fn_control_client::BeamFnControlClient,
    beam_fn_data_client::BeamFnDataClient, elements, instruction_request, instruction_response,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};

use crate::harness::run_bundle;
use crate::testing::*;

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Output bytes that are not windowed values.
    GarbageOutput,
    /// Output for a transform that is not a data sink.
    UnknownSink,
    /// A ProcessBundleRequest answered with a RegisterResponse.
    WrongResponse,
    /// An element cut in the middle, then the output closed.
    TruncatedOutput,
}

fn request<T>(message: T, id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("worker_id", id.parse().unwrap());
    r
}

/// Runs a misbehaving harness on its own thread.
fn fake_harness(url: String, id: &'static str, how: Misbehaviour) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mut control = BeamFnControlClient::connect(format!("http://{url}"))
                .await
                .unwrap();
            let (responses, rx) = mpsc::unbounded_channel();
            let mut inbound = control
                .control(request(UnboundedReceiverStream::new(rx), id))
                .await
                .unwrap()
                .into_inner();
            let mut data_client = BeamFnDataClient::connect(format!("http://{url}"))
                .await
                .unwrap();
            let (data_tx, data_rx) = mpsc::channel(8);
            let mut data_in = data_client
                .data(request(ReceiverStream::new(data_rx), id))
                .await
                .unwrap()
                .into_inner();
            // Swallow the runner's input.
            tokio::spawn(async move { while let Ok(Some(_)) = data_in.message().await {} });
            while let Ok(Some(req)) = inbound.message().await {
                let instruction_id = req.instruction_id.clone();
                let response = match req.request {
                    Some(instruction_request::Request::Register(_)) => {
                        Some(instruction_response::Response::Register(Default::default()))
                    }
                    Some(instruction_request::Request::ProcessBundle(_)) => {
                        let data = |transform: &str, bytes: Vec<u8>| elements::Data {
                            instruction_id: instruction_id.clone(),
                            transform_id: transform.into(),
                            data: bytes.into(),
                            is_last: true,
                        };
                        let out = match how {
                            Misbehaviour::GarbageOutput => {
                                // A negative window count.
                                let mut e = vec![0u8; 8];
                                e.extend_from_slice(&[0xff, 0xff, 0xff, 0xfb]);
                                e.extend_from_slice(&[0u8; 8]);
                                Some(data(SINK, e))
                            }
                            Misbehaviour::UnknownSink => Some(data("nope", elements(&["a"]))),
                            Misbehaviour::TruncatedOutput => {
                                let mut e = elements(&["abcdef"]);
                                e.pop();
                                Some(data(SINK, e))
                            }
                            Misbehaviour::WrongResponse => None,
                        };
                        if let Some(d) = out {
                            data_tx
                                .send(Elements {
                                    data: vec![d],
                                    timers: vec![],
                                })
                                .await
                                .unwrap();
                        }
                        Some(match how {
                            Misbehaviour::WrongResponse => {
                                instruction_response::Response::Register(Default::default())
                            }
                            _ => instruction_response::Response::ProcessBundle(Default::default()),
                        })
                    }
                    _ => None,
                };
                let _ = responses.send(InstructionResponse {
                    instruction_id,
                    error: String::new(),
                    response,
                });
            }
        });
    });
}

#[test]
fn malformed_harness_responses_are_clear_errors_and_the_runner_stays_healthy() {
    let server = FnServer::start().unwrap();
    let cases: [(&'static str, Misbehaviour, &str); 4] = [
        (
            "garbage",
            Misbehaviour::GarbageOutput,
            "does not decode with its port coder",
        ),
        (
            "unknown-sink",
            Misbehaviour::UnknownSink,
            "sent data for \"nope\", which is not a data sink",
        ),
        (
            "wrong-response",
            Misbehaviour::WrongResponse,
            "with something else",
        ),
        (
            "truncated",
            Misbehaviour::TruncatedOutput,
            "closed output sink in the middle of an element",
        ),
    ];
    for (id, how, expected) in cases {
        fake_harness(server.url().to_string(), id, how);
        let exec = server
            .executor(id)
            .with_connect_timeout(Duration::from_secs(30));
        let err = run_bundle(&exec, UPPER, b"", &elements(&["a"]), None).unwrap_err();
        assert!(matches!(err, Error::Harness { .. }), "{id}: {err}");
        assert!(err.to_string().contains(expected), "{id}: {err}");
    }
    // A well-behaved harness on the same server still works.
    let url = server.url().to_string();
    std::thread::spawn(move || {
        serve_harness(
            HarnessConfig {
                control_endpoint: url,
                id: "good".into(),
            },
            Arc::new(TestExecutor),
        )
    });
    let exec = server.executor("good");
    assert_eq!(
        run_bundle(&exec, UPPER, b"", &elements(&["a", "b"]), None).unwrap(),
        ["A", "B"]
    );
}

#[test]
fn a_harness_that_never_connects_times_out() {
    let server = FnServer::start().unwrap();
    let exec = server
        .executor("nobody")
        .with_connect_timeout(Duration::from_millis(200));
    let err = run_bundle(&exec, UPPER, b"", &elements(&["a"]), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("did not connect to the control service"),
        "{err}"
    );
}
