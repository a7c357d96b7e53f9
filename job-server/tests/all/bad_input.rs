//! Malformed and unsupported submissions, and clients that go away.

use std::time::Duration;

use oxbeam_model::job_management::{
    JobMessagesRequest, PrepareJobRequest, PrepareJobResponse, RunJobRequest, job_state,
};
use oxbeam_model::pipeline as pb;
use tonic::Code;

use crate::testing::*;

/// A PrepareJobRequest whose pipeline field holds arbitrary bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPrepare {
    #[prost(bytes = "vec", tag = "1")]
    pipeline: Vec<u8>,
    #[prost(string, tag = "3")]
    job_name: String,
}

#[test]
fn malformed_pipeline_bytes_are_refused_and_the_server_keeps_serving() {
    let server = server();
    runtime().block_on(async {
        let mut grpc = tonic::client::Grpc::new(channel(&server).await);
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/org.apache.beam.model.job_management.v1.JobService/Prepare",
        );
        let codec = tonic_prost::ProstCodec::<RawPrepare, PrepareJobResponse>::default();
        let raw = RawPrepare {
            pipeline: vec![0xff, 0xff, 0xff, 0x01, 0x0a],
            job_name: "garbage".into(),
        };
        let err = grpc
            .unary(tonic::Request::new(raw), path, codec)
            .await
            .unwrap_err();
        assert!(err.message().contains("decode"), "unclear error: {err:?}");
        let mut c = client(&server).await;
        assert_eq!(
            run_to_end(&mut c, impulse_pipeline(vec![])).await,
            job_state::Enum::Done
        );
    });
}

#[test]
fn structurally_broken_pipelines_get_invalid_argument() {
    let server = server();
    runtime().block_on(async {
        let mut c = client(&server).await;
        let mut dangling = impulse_pipeline(vec![]);
        dangling.root_transform_ids.push("nowhere".into());
        let no_pipeline = PrepareJobRequest {
            job_name: "empty".into(),
            ..Default::default()
        };
        for (req, needle) in [
            (
                PrepareJobRequest {
                    pipeline: Some(dangling),
                    pipeline_options: None,
                    job_name: "dangling".into(),
                },
                "not in the pipeline components",
            ),
            (no_pipeline, "holds no pipeline"),
        ] {
            let err = c.prepare(req).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            assert!(err.message().contains(needle), "{err:?}");
        }
        assert_eq!(
            run_to_end(&mut c, impulse_pipeline(vec![])).await,
            job_state::Enum::Done
        );
    });
}

#[test]
fn unknown_urn_without_environment_is_refused() {
    let server = server();
    runtime().block_on(async {
        let mut c = client(&server).await;
        let mystery = pb::PTransform {
            unique_name: "Mystery".into(),
            spec: Some(pb::FunctionSpec {
                urn: "example:transform:mystery:v1".into(),
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
        let err = c
            .prepare(PrepareJobRequest {
                pipeline: Some(impulse_pipeline(vec![("mystery", mystery)])),
                pipeline_options: None,
                job_name: "mystery".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("Mystery")
                && err.message().contains("example:transform:mystery:v1")
                && err.message().contains("no environment"),
            "{err:?}"
        );
    });
}

#[test]
fn unsupported_requirements_are_listed_sorted() {
    let server = server();
    runtime().block_on(async {
        let mut c = client(&server).await;
        let mut p = impulse_pipeline(vec![]);
        // Made-up requirements (so the test holds as Oxbeam learns more),
        // one twice, and a supported one that must not be listed.
        p.requirements = vec![
            "beam:requirement:zzz:v1".into(),
            "beam:requirement:pardo:splittable_dofn:v1".into(),
            "beam:requirement:example:v1".into(),
            "beam:requirement:zzz:v1".into(),
        ];
        let err = c
            .prepare(PrepareJobRequest {
                pipeline: Some(p),
                pipeline_options: None,
                job_name: "reqs".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains(
                "does not support: beam:requirement:example:v1, beam:requirement:zzz:v1 ("
            ),
            "{err:?}"
        );
    });
}

#[test]
fn unknown_job_ids_are_not_found() {
    let server = server();
    runtime().block_on(async {
        let mut c = client(&server).await;
        let err = c
            .run(RunJobRequest {
                preparation_id: "nope".into(),
                retrieval_token: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = c
            .get_message_stream(JobMessagesRequest {
                job_id: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    });
}

#[test]
fn a_client_disconnecting_mid_job_does_not_disturb_the_server() {
    let server = server();
    let slow = slow_python_pipeline(10, 0.2);
    let job_id = runtime().block_on(async {
        let mut c = client(&server).await;
        let id = c
            .prepare(PrepareJobRequest {
                pipeline: Some(slow),
                pipeline_options: None,
                job_name: "abandoned".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .preparation_id;
        let mut messages = c
            .get_message_stream(JobMessagesRequest { job_id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        c.run(RunJobRequest {
            preparation_id: id.clone(),
            retrieval_token: String::new(),
        })
        .await
        .unwrap();
        messages.message().await.unwrap();
        id
        // The runtime, its connections and the open stream go away here.
    });
    runtime().block_on(async {
        let mut c = client(&server).await;
        assert_eq!(
            run_to_end(&mut c, impulse_pipeline(vec![])).await,
            job_state::Enum::Done
        );
        assert_eq!(
            wait_terminal(&mut c, &job_id, Duration::from_secs(120)).await,
            job_state::Enum::Done
        );
    });
}
