//! Property tests of Prepare / Run / GetState / Cancel against a real job
//! server on 127.0.0.1: random bytes for the pipeline, random pipelines
//! (transforms, URNs, coders, windowing, environments, dangling
//! references), mutated encodings of a valid pipeline, unknown job ids and
//! bad options. Every call must end in a clear status (INVALID_ARGUMENT,
//! NOT_FOUND, FAILED_PRECONDITION) or a job that ends DONE, or FAILED with
//! an error message; never INTERNAL, a dropped connection or a panic; and
//! a valid job still runs afterwards.
//!
//! Cases per property: `PROPTEST_CASES` (default 48), a few seconds in all.

use std::time::Duration;

use oxbeam_job_server::JobServer;
use oxbeam_model::job_management::{
    CancelJobRequest, GetJobMetricsRequest, GetJobPipelineRequest, GetJobStateRequest,
    JobMessagesRequest, PrepareJobRequest, PrepareJobResponse, RunJobRequest,
    job_message::MessageImportance, job_messages_response, job_service_client::JobServiceClient,
    job_state,
};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_environments::environments as env_urns;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use crate::testing::*;

type Client = JobServiceClient<Channel>;
use job_state::Enum as S;

/// How long a fuzzed job may take to end (they fail fast or run natively).
const JOB_LIMIT: Duration = Duration::from_secs(30);

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

/// A refusal must say what is wrong, with a code that puts the fault on the
/// client.
fn check_refusal(status: &tonic::Status, allowed: &[Code]) -> Result<(), TestCaseError> {
    check(
        allowed.contains(&status.code()) && !status.message().trim().is_empty(),
        || format!("expected one of {allowed:?} with a message, got {status:?}"),
    )
}

/// The error messages the job logged.
async fn error_messages(c: &mut Client, id: &str) -> Vec<String> {
    let mut stream = c
        .get_message_stream(JobMessagesRequest { job_id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let mut errors = vec![];
    while let Ok(Some(m)) = stream.message().await {
        if let Some(job_messages_response::Response::MessageResponse(m)) = m.response {
            if m.importance == MessageImportance::JobMessageError as i32 {
                errors.push(m.message_text);
            }
        }
    }
    errors
}

/// Runs a prepared job to its end: DONE, or FAILED with an error message
/// that is not an internal panic.
async fn check_runs_to_an_end(c: &mut Client, id: &str) -> Result<(), TestCaseError> {
    let run = c
        .run(RunJobRequest {
            preparation_id: id.into(),
            retrieval_token: String::new(),
        })
        .await;
    if let Err(status) = run {
        return check_refusal(&status, &[Code::InvalidArgument]);
    }
    let state = wait_terminal(c, id, JOB_LIMIT).await;
    match state {
        S::Done => Ok(()),
        S::Failed => {
            let errors = error_messages(c, id).await;
            check(
                !errors.is_empty()
                    && errors
                        .iter()
                        .all(|e| !e.trim().is_empty() && !e.contains("panicked")),
                || format!("job {id} failed with errors {errors:?}"),
            )
        }
        other => Err(TestCaseError::fail(format!(
            "job {id} did not end within {JOB_LIMIT:?}: {other:?}"
        ))),
    }
}

/// Prepares `request`; if accepted, runs it to its end.
async fn check_prepare_and_run(
    c: &mut Client,
    request: PrepareJobRequest,
) -> Result<(), TestCaseError> {
    match c.prepare(request).await {
        Ok(r) => check_runs_to_an_end(c, &r.into_inner().preparation_id).await,
        Err(status) => check_refusal(&status, &[Code::InvalidArgument]),
    }
}

fn prepare(pipeline: pb::Pipeline) -> PrepareJobRequest {
    PrepareJobRequest {
        pipeline: Some(pipeline),
        pipeline_options: None,
        job_name: "fuzz".into(),
    }
}

/// After a property: the server still runs a valid job.
fn check_still_serving(server: &JobServer, rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let mut c = client(server).await;
        assert_eq!(
            run_to_end(&mut c, impulse_pipeline(vec![])).await,
            job_state::Enum::Done
        );
    });
}

/// A PrepareJobRequest whose pipeline field holds arbitrary bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPrepare {
    #[prost(bytes = "vec", tag = "1")]
    pipeline: Vec<u8>,
    #[prost(string, tag = "3")]
    job_name: String,
}

async fn raw_prepare(
    server: &JobServer,
    pipeline: Vec<u8>,
) -> Result<PrepareJobResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel(server).await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/org.apache.beam.model.job_management.v1.JobService/Prepare",
    );
    let codec = tonic_prost::ProstCodec::<RawPrepare, PrepareJobResponse>::default();
    let raw = RawPrepare {
        pipeline,
        job_name: "raw".into(),
    };
    grpc.unary(tonic::Request::new(raw), path, codec)
        .await
        .map(|r| r.into_inner())
}

#[test]
fn random_bytes_as_a_pipeline() {
    let server = server();
    let rt = runtime();
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..256), |bytes| {
            rt.block_on(async {
                match raw_prepare(&server, bytes).await {
                    Ok(r) => {
                        let mut c = client(&server).await;
                        check_runs_to_an_end(&mut c, &r.preparation_id).await
                    }
                    Err(status) => check_refusal(&status, &[Code::InvalidArgument]),
                }
            })
        })
        .unwrap();
    check_still_serving(&server, &rt);
}

#[test]
fn undecodable_pipelines_are_invalid_arguments() {
    let server = server();
    runtime().block_on(async {
        // A length running past the end of the message.
        let err = raw_prepare(&server, vec![0x0a, 0x7f, 0x01])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("failed to decode Protobuf message"),
            "{err:?}"
        );
    });
}

/// Identifiers drawn from small pools, so random references sometimes
/// resolve and sometimes dangle.
fn id(prefix: &'static str, n: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (0..n).prop_map(move |i| format!("{prefix}{i}")),
        1 => Just(format!("{prefix}-missing")),
        1 => Just(String::new()),
    ]
}

/// Known URNs (of every kind, so often the wrong kind) and made-up ones.
fn urn() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(oxbeam_model::urns::ALL).prop_map(|(_, v)| v.to_string()),
        1 => "[a-z:]{0,24}",
    ]
}

fn function_spec() -> impl Strategy<Value = pb::FunctionSpec> {
    (urn(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(urn, payload)| pb::FunctionSpec {
        urn,
        payload: payload.into(),
    })
}

fn coder() -> impl Strategy<Value = pb::Coder> {
    (function_spec(), prop::collection::vec(id("c", 4), 0..3)).prop_map(
        |(spec, component_coder_ids)| pb::Coder {
            spec: Some(spec),
            component_coder_ids,
        },
    )
}

fn windowing_strategy() -> impl Strategy<Value = pb::WindowingStrategy> {
    (
        function_spec(),
        id("c", 4),
        0..5i32,
        0..4i32,
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(
            |(window_fn, window_coder_id, merge_status, output_time, allowed_lateness, one)| {
                pb::WindowingStrategy {
                    window_fn: Some(window_fn),
                    merge_status,
                    window_coder_id,
                    output_time,
                    allowed_lateness,
                    assigns_to_one_window: one,
                    ..Default::default()
                }
            },
        )
}

fn pcollection() -> impl Strategy<Value = pb::PCollection> {
    (id("c", 4), id("w", 2), 0..3i32).prop_map(|(coder_id, windowing_strategy_id, bounded)| {
        pb::PCollection {
            unique_name: coder_id.clone(),
            coder_id,
            is_bounded: bounded,
            windowing_strategy_id,
            ..Default::default()
        }
    })
}

/// Environments whose harnesses cannot start, or that no executor serves:
/// a fuzzed job fails fast instead of waiting for a harness. Commands are
/// fixed, never random.
fn environment() -> impl Strategy<Value = pb::Environment> {
    prop_oneof![
        Just(pb::Environment {
            urn: env_urns::PROCESS.into(),
            payload: pb::ProcessPayload {
                command: "/nonexistent/oxbeam-fuzz-harness".into(),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            ..Default::default()
        }),
        Just(pb::Environment {
            urn: env_urns::EXTERNAL.into(),
            payload: pb::ExternalPayload {
                // Nothing listens on port 1: the connection is refused.
                endpoint: Some(pb::ApiServiceDescriptor {
                    url: "127.0.0.1:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            ..Default::default()
        }),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|payload| pb::Environment {
            urn: env_urns::DOCKER.into(),
            payload: payload.into(),
            ..Default::default()
        }),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|payload| pb::Environment {
            urn: env_urns::PROCESS.into(),
            payload: payload.into(),
            ..Default::default()
        }),
    ]
}

/// A transform payload: random bytes, or a well-formed ParDo / Combine /
/// WindowInto payload with random contents.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        (
            function_spec(),
            prop::collection::btree_map("[a-z]{1,3}", function_spec(), 0..2),
            id("c", 4),
        )
            .prop_map(|(do_fn, sides, restriction_coder_id)| {
                pb::ParDoPayload {
                    do_fn: Some(do_fn),
                    side_inputs: sides
                        .into_iter()
                        .map(|(tag, access)| {
                            (
                                tag,
                                pb::SideInput {
                                    access_pattern: Some(access.clone()),
                                    view_fn: Some(access.clone()),
                                    window_mapping_fn: Some(access),
                                },
                            )
                        })
                        .collect(),
                    restriction_coder_id,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
        (function_spec(), id("c", 4)).prop_map(|(combine_fn, accumulator_coder_id)| {
            pb::CombinePayload {
                combine_fn: Some(combine_fn),
                accumulator_coder_id,
            }
            .encode_to_vec()
        }),
        function_spec().prop_map(|window_fn| pb::WindowIntoPayload {
            window_fn: Some(window_fn),
        }
        .encode_to_vec()),
    ]
}

fn transform() -> impl Strategy<Value = pb::PTransform> {
    (
        urn(),
        payload(),
        prop::collection::btree_map("[a-z]{1,2}", id("p", 5), 0..3),
        prop::collection::btree_map("[a-z]{1,2}", id("p", 5), 0..3),
        prop_oneof![
            4 => Just(vec![]),
            1 => prop::collection::vec(id("t", 6), 1..3),
        ],
        id("e", 1),
    )
        .prop_map(
            |(urn, payload, inputs, outputs, subtransforms, environment_id)| pb::PTransform {
                unique_name: urn.clone(),
                spec: Some(pb::FunctionSpec {
                    urn,
                    payload: payload.into(),
                }),
                subtransforms,
                inputs: inputs.into_iter().collect(),
                outputs: outputs.into_iter().collect(),
                environment_id,
                ..Default::default()
            },
        )
}

fn requirements() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        3 => Just(vec![]),
        1 => prop::collection::vec(
            prop::sample::select(oxbeam_runner_core::SUPPORTED_REQUIREMENTS)
                .prop_map(str::to_string),
            0..3,
        ),
        1 => prop::collection::vec(urn(), 0..3),
    ]
}

/// Random pipelines over small pools of ids: many are malformed (dangling
/// references, wrong URNs, cycles through subtransforms), some plan and run.
fn pipeline() -> impl Strategy<Value = pb::Pipeline> {
    (
        prop::collection::vec(coder(), 0..4),
        prop::collection::vec(windowing_strategy(), 0..2),
        prop::collection::vec(pcollection(), 0..5),
        prop::collection::vec(environment(), 0..1),
        prop::collection::vec(transform(), 0..6),
        prop_oneof![
            3 => Just(None),
            1 => prop::collection::vec(id("t", 6), 0..4).prop_map(Some),
        ],
        requirements(),
    )
        .prop_map(|(coders, ws, pcs, envs, transforms, roots, requirements)| {
            let named = |prefix: &str, n: usize| format!("{prefix}{n}");
            // Mostly the transforms no other one contains, as SDKs send.
            let roots = roots.unwrap_or_else(|| {
                (0..transforms.len())
                    .map(|i| named("t", i))
                    .filter(|id| !transforms.iter().any(|t| t.subtransforms.contains(id)))
                    .collect()
            });
            pb::Pipeline {
                components: Some(pb::Components {
                    coders: coders
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| (named("c", i), c))
                        .collect(),
                    windowing_strategies: ws
                        .into_iter()
                        .enumerate()
                        .map(|(i, w)| (named("w", i), w))
                        .collect(),
                    pcollections: pcs
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| (named("p", i), p))
                        .collect(),
                    environments: envs
                        .into_iter()
                        .enumerate()
                        .map(|(i, e)| (named("e", i), e))
                        .collect(),
                    transforms: transforms
                        .into_iter()
                        .enumerate()
                        .map(|(i, t)| (named("t", i), t))
                        .collect(),
                }),
                root_transform_ids: roots,
                requirements,
                ..Default::default()
            }
        })
}

fn spec(urn: &str, payload: Vec<u8>) -> Option<pb::FunctionSpec> {
    Some(pb::FunctionSpec {
        urn: urn.into(),
        payload: payload.into(),
    })
}

fn coder_of(urn: &str, components: &[&str]) -> pb::Coder {
    pb::Coder {
        spec: spec(urn, vec![]),
        component_coder_ids: components.iter().map(|c| c.to_string()).collect(),
    }
}

/// One step of a plausible pipeline: what it applies, which earlier
/// PCollections it reads (indices taken modulo what exists), and the
/// coder and windowing of its output.
#[derive(Debug, Clone)]
struct Step {
    kind: u8,
    inputs: (usize, usize),
    coder: usize,
    windowing: usize,
    urn: String,
    payload: Vec<u8>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..7u8,
        any::<(usize, usize)>(),
        0..5usize,
        0..3usize,
        urn(),
        payload(),
    )
        .prop_map(|(kind, inputs, coder, windowing, urn, payload)| Step {
            kind,
            inputs,
            coder,
            windowing,
            urn,
            payload,
        })
}

/// Pipelines shaped like an SDK's: an Impulse, then ParDos, GroupByKeys,
/// Flattens, WindowIntos, Combines and other URNs reading earlier outputs,
/// with standard and random coders and windowing; then one random edit
/// (a component removed, a reference redirected). Many plan; their jobs
/// run natively or fail on a harness that cannot start.
fn plausible_pipeline() -> impl Strategy<Value = pb::Pipeline> {
    use oxbeam_model::urns::standard_p_transforms::{composites, primitives};
    (
        prop::collection::vec(step(), 1..6),
        coder(),
        windowing_strategy(),
        environment(),
        0..8u8,
        any::<usize>(),
        requirements(),
    )
        .prop_map(
            |(steps, random_coder, random_ws, env, edit, at, requirements)| {
                let mut c = pb::Components::default();
                c.coders
                    .insert("bytes".into(), coder_of("beam:coder:bytes:v1", &[]));
                c.coders
                    .insert("varint".into(), coder_of("beam:coder:varint:v1", &[]));
                c.coders.insert(
                    "kv".into(),
                    coder_of("beam:coder:kv:v1", &["bytes", "varint"]),
                );
                c.coders
                    .insert("gw".into(), coder_of("beam:coder:global_window:v1", &[]));
                c.coders.insert("c0".into(), random_coder);
                c.windowing_strategies.insert(
                    "ws".into(),
                    pb::WindowingStrategy {
                        window_fn: spec("beam:window_fn:global_windows:v1", vec![]),
                        window_coder_id: "gw".into(),
                        ..Default::default()
                    },
                );
                c.windowing_strategies.insert("w0".into(), random_ws);
                c.environments.insert("env".into(), env);
                let coders = ["bytes", "kv", "varint", "c0", "kv"];
                let windowings = ["ws", "ws", "w0"];
                let pcollection = |c: &mut pb::Components, n: usize, coder: &str, ws: &str| {
                    let id = format!("p{n}");
                    c.pcollections.insert(
                        id.clone(),
                        pb::PCollection {
                            unique_name: id.clone(),
                            coder_id: coder.into(),
                            windowing_strategy_id: ws.into(),
                            ..Default::default()
                        },
                    );
                    id
                };
                let mut outputs = vec![pcollection(&mut c, 0, "bytes", "ws")];
                let mut transforms = vec![(
                    "t0".to_string(),
                    pb::PTransform {
                        unique_name: "Impulse".into(),
                        spec: spec(primitives::IMPULSE, vec![]),
                        outputs: [("out".to_string(), outputs[0].clone())]
                            .into_iter()
                            .collect(),
                        ..Default::default()
                    },
                )];
                for (i, s) in steps.into_iter().enumerate() {
                    let n = i + 1;
                    let a = outputs[s.inputs.0 % outputs.len()].clone();
                    let b = outputs[s.inputs.1 % outputs.len()].clone();
                    let (urn, payload, env, inputs) = match s.kind {
                        0 => (primitives::PAR_DO.to_string(), s.payload, "env", vec![a]),
                        1 => (primitives::GROUP_BY_KEY.to_string(), vec![], "", vec![a]),
                        2 => (primitives::FLATTEN.to_string(), vec![], "", vec![a, b]),
                        3 => (
                            primitives::ASSIGN_WINDOWS.to_string(),
                            s.payload,
                            "env",
                            vec![a],
                        ),
                        4 => (
                            composites::COMBINE_PER_KEY.to_string(),
                            s.payload,
                            "env",
                            vec![a],
                        ),
                        5 => (primitives::IMPULSE.to_string(), vec![], "", vec![]),
                        _ => (s.urn, s.payload, "env", vec![a]),
                    };
                    let out = pcollection(&mut c, n, coders[s.coder], windowings[s.windowing]);
                    outputs.push(out.clone());
                    transforms.push((
                        format!("t{n}"),
                        pb::PTransform {
                            unique_name: format!("{urn} {n}"),
                            spec: spec(&urn, payload),
                            inputs: inputs
                                .into_iter()
                                .enumerate()
                                .map(|(k, p)| (format!("in{k}"), p))
                                .collect(),
                            outputs: [("out".to_string(), out)].into_iter().collect(),
                            environment_id: env.into(),
                            ..Default::default()
                        },
                    ));
                }
                let roots = transforms.iter().map(|(id, _)| id.clone()).collect();
                c.transforms = transforms.into_iter().collect();
                // One random edit, or none.
                let pick = |keys: Vec<String>| keys.get(at % keys.len().max(1)).cloned();
                match edit {
                    0 => {
                        if let Some(k) = pick(c.coders.keys().cloned().collect()) {
                            c.coders.remove(&k);
                        }
                    }
                    1 => {
                        if let Some(k) = pick(c.pcollections.keys().cloned().collect()) {
                            c.pcollections.remove(&k);
                        }
                    }
                    2 => {
                        if let Some(k) = pick(c.transforms.keys().cloned().collect()) {
                            let t = c.transforms.get_mut(&k).unwrap();
                            if let Some(v) = t.inputs.values_mut().next() {
                                *v = "p-missing".into();
                            }
                        }
                    }
                    3 => {
                        c.windowing_strategies.remove("ws");
                    }
                    4 => {
                        c.environments.clear();
                    }
                    _ => {}
                }
                pb::Pipeline {
                    components: Some(c),
                    root_transform_ids: roots,
                    requirements,
                    ..Default::default()
                }
            },
        )
}

#[test]
fn random_pipelines_are_refused_or_run_to_an_end() {
    let server = server();
    let rt = runtime();
    runner()
        .run(&prop_oneof![pipeline(), plausible_pipeline()], |p| {
            rt.block_on(async {
                let mut c = client(&server).await;
                check_prepare_and_run(&mut c, prepare(p)).await
            })
        })
        .unwrap();
    check_still_serving(&server, &rt);
}

/// A valid pipeline with a runner-side GroupByKey and Flatten, encoded.
fn valid_pipeline_bytes() -> Vec<u8> {
    let gbk = pb::PTransform {
        unique_name: "Group".into(),
        spec: Some(pb::FunctionSpec {
            urn: oxbeam_model::urns::standard_p_transforms::primitives::FLATTEN.into(),
            payload: Default::default(),
        }),
        inputs: [("in".to_string(), "out".to_string())]
            .into_iter()
            .collect(),
        outputs: [("out".to_string(), "out2".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    impulse_pipeline(vec![("flatten", gbk)]).encode_to_vec()
}

/// Byte-level mutations of an encoding: overwrite, insert, delete, truncate.
fn mutated(original: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = original.len();
    prop::collection::vec((0..4u8, 0..len.max(1), any::<u8>()), 1..6).prop_map(move |edits| {
        let mut b = original.clone();
        for (kind, at, byte) in edits {
            let at = at.min(b.len());
            match kind {
                0 if at < b.len() => b[at] = byte,
                1 => b.insert(at, byte),
                2 if at < b.len() => {
                    b.remove(at);
                }
                _ => b.truncate(at),
            }
        }
        b
    })
}

#[test]
fn mutated_encodings_of_a_valid_pipeline() {
    let server = server();
    let rt = runtime();
    let valid = valid_pipeline_bytes();
    rt.block_on(async {
        let r = raw_prepare(&server, valid.clone()).await.unwrap();
        let mut c = client(&server).await;
        check_runs_to_an_end(&mut c, &r.preparation_id)
            .await
            .unwrap();
    });
    runner()
        .run(&mutated(valid), |bytes| {
            rt.block_on(async {
                match raw_prepare(&server, bytes).await {
                    Ok(r) => {
                        let mut c = client(&server).await;
                        check_runs_to_an_end(&mut c, &r.preparation_id).await
                    }
                    Err(status) => check_refusal(&status, &[Code::InvalidArgument]),
                }
            })
        })
        .unwrap();
    check_still_serving(&server, &rt);
}

#[test]
fn unknown_job_ids_are_not_found() {
    let server = server();
    let rt = runtime();
    runner()
        .run(&".{0,40}", |id| {
            rt.block_on(async {
                let mut c = client(&server).await;
                let not_found = |r: Result<(), tonic::Status>| match r {
                    Err(s) => check_refusal(&s, &[Code::NotFound]),
                    Ok(()) => Err(TestCaseError::fail(format!("job {id:?} was found"))),
                };
                let job_id = id.clone();
                not_found(
                    c.get_state(GetJobStateRequest {
                        job_id: job_id.clone(),
                    })
                    .await
                    .map(drop),
                )?;
                not_found(
                    c.cancel(CancelJobRequest {
                        job_id: job_id.clone(),
                    })
                    .await
                    .map(drop),
                )?;
                not_found(
                    c.run(RunJobRequest {
                        preparation_id: job_id.clone(),
                        retrieval_token: String::new(),
                    })
                    .await
                    .map(drop),
                )?;
                not_found(
                    c.get_pipeline(GetJobPipelineRequest {
                        job_id: job_id.clone(),
                    })
                    .await
                    .map(drop),
                )?;
                not_found(
                    c.get_job_metrics(GetJobMetricsRequest {
                        job_id: job_id.clone(),
                    })
                    .await
                    .map(drop),
                )?;
                not_found(
                    c.get_state_stream(GetJobStateRequest {
                        job_id: job_id.clone(),
                    })
                    .await
                    .map(drop),
                )?;
                not_found(
                    c.get_message_stream(JobMessagesRequest { job_id })
                        .await
                        .map(drop),
                )
            })
        })
        .unwrap();
    check_still_serving(&server, &rt);
}

/// A value for a pipeline option: numbers (whole, fractional, negative,
/// huge, NaN), strings, booleans, nulls, lists.
fn option_value() -> impl Strategy<Value = prost_types::Value> {
    use prost_types::value::Kind;
    prop_oneof![
        (0..6u32).prop_map(|n| Kind::NumberValue(n.into())),
        any::<f64>().prop_map(Kind::NumberValue),
        prop_oneof![Just(-1.0), Just(1e300), Just(f64::NAN), Just(2.5)].prop_map(Kind::NumberValue),
        "[0-9 a-z-]{0,6}".prop_map(Kind::StringValue),
        any::<bool>().prop_map(Kind::BoolValue),
        Just(Kind::NullValue(0)),
        Just(Kind::ListValue(prost_types::ListValue { values: vec![] })),
    ]
    .prop_map(|k| prost_types::Value { kind: Some(k) })
}

/// Whether the server must accept `v` for an option taking whole numbers
/// in `lo..=hi` (absent and null mean the default).
fn acceptable(v: &prost_types::Value, lo: f64, hi: f64) -> bool {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => true,
        Some(Kind::NumberValue(n)) => n.fract() == 0.0 && *n >= lo && *n <= hi,
        Some(Kind::StringValue(s)) => s
            .trim()
            .parse::<u64>()
            .is_ok_and(|n| n as f64 >= lo && n as f64 <= hi),
        _ => false,
    }
}

#[test]
fn bad_options_are_refused_naming_the_option() {
    let server = server();
    let rt = runtime();
    let names = prop::sample::select(vec![
        ("oxbeam_parallelism", 1.0, 1024.0),
        ("beam:option:oxbeam_parallelism:v1", 1.0, 1024.0),
        ("beam:option:sdk_worker_parallelism:v1", 0.0, 64.0),
    ]);
    runner()
        .run(
            &(names, option_value(), any::<bool>()),
            |((name, lo, hi), value, run)| {
                rt.block_on(async {
                    let mut c = client(&server).await;
                    let ok = acceptable(&value, lo, hi);
                    let options = prost_types::Struct {
                        fields: [(name.to_string(), value.clone())].into_iter().collect(),
                    };
                    let r = c
                        .prepare(PrepareJobRequest {
                            pipeline: Some(impulse_pipeline(vec![])),
                            pipeline_options: Some(options),
                            job_name: "options".into(),
                        })
                        .await;
                    match r {
                        Ok(r) if ok => {
                            if run {
                                let id = r.into_inner().preparation_id;
                                check_runs_to_an_end(&mut c, &id).await?;
                                let state = c
                                    .get_state(GetJobStateRequest { job_id: id })
                                    .await
                                    .map_err(|s| TestCaseError::fail(format!("{s:?}")))?
                                    .into_inner()
                                    .state();
                                check(state == S::Done, || format!("{name}={value:?}: {state:?}"))?;
                            }
                            Ok(())
                        }
                        Ok(_) => Err(TestCaseError::fail(format!(
                            "{name}={value:?} was accepted"
                        ))),
                        Err(s) => {
                            check_refusal(&s, &[Code::InvalidArgument])?;
                            let short = name
                                .trim_start_matches("beam:option:")
                                .trim_end_matches(":v1");
                            check(!ok && s.message().contains(short), || {
                                format!("{name}={value:?} refused unclearly: {s:?}")
                            })
                        }
                    }
                })
            },
        )
        .unwrap();
    check_still_serving(&server, &rt);
}

#[test]
fn cancel_at_any_point_ends_the_job() {
    let server = server();
    let rt = runtime();
    runner()
        .run(
            &(any::<bool>(), 0..3u64, 0..3usize),
            |(run, delay_ms, cancels)| {
                rt.block_on(async {
                    let mut c = client(&server).await;
                    let id = c
                        .prepare(prepare(impulse_pipeline(vec![])))
                        .await
                        .map_err(|s| TestCaseError::fail(format!("{s:?}")))?
                        .into_inner()
                        .preparation_id;
                    if run {
                        c.run(RunJobRequest {
                            preparation_id: id.clone(),
                            retrieval_token: String::new(),
                        })
                        .await
                        .map_err(|s| TestCaseError::fail(format!("{s:?}")))?;
                    }
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    for _ in 0..=cancels {
                        let state = c
                            .cancel(CancelJobRequest { job_id: id.clone() })
                            .await
                            .map_err(|s| TestCaseError::fail(format!("{s:?}")))?
                            .into_inner()
                            .state();
                        check(
                            matches!(state, S::Cancelling | S::Cancelled | S::Done),
                            || format!("Cancel answered {state:?}"),
                        )?;
                    }
                    let end = wait_terminal(&mut c, &id, JOB_LIMIT).await;
                    check(matches!(end, S::Cancelled | S::Done), || {
                        format!("a cancelled job ended {end:?}")
                    })?;
                    // A cancelled or finished job cannot run (again).
                    let again = c
                        .run(RunJobRequest {
                            preparation_id: id,
                            retrieval_token: String::new(),
                        })
                        .await;
                    match again {
                        Err(s) => check_refusal(&s, &[Code::FailedPrecondition]),
                        Ok(_) => Err(TestCaseError::fail("a cancelled job ran".to_string())),
                    }
                })
            },
        )
        .unwrap();
    check_still_serving(&server, &rt);
}
