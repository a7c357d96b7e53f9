//! Artifact staging over the reverse protocol, and retrieval.

use oxbeam_model::job_management::{
    ArtifactResponseWrapper, GetArtifactRequest, GetArtifactResponse, GetJobPipelineRequest,
    PrepareJobRequest, ResolveArtifactsResponse, RunJobRequest,
    artifact_request_wrapper::Request as Ask, artifact_response_wrapper::Response as Answer,
    artifact_retrieval_service_client::ArtifactRetrievalServiceClient,
    artifact_staging_service_client::ArtifactStagingServiceClient, job_state,
};
use oxbeam_model::pipeline as pb;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::testing::*;

fn staged(name: &str) -> pb::ArtifactInformation {
    pb::ArtifactInformation {
        type_urn: "beam:artifact:type:embedded:v1".into(),
        type_payload: pb::EmbeddedFilePayload {
            data: b"hello".to_vec().into(),
        }
        .encode_to_vec()
        .into(),
        role_urn: "beam:artifact:role:staging_to:v1".into(),
        role_payload: pb::ArtifactStagingToRolePayload {
            staged_name: name.into(),
        }
        .encode_to_vec()
        .into(),
    }
}

/// A pipeline whose one environment depends on an artifact staged as `name`.
fn with_dependency(name: &str) -> pb::Pipeline {
    let mut p = impulse_pipeline(vec![]);
    p.components.as_mut().unwrap().environments.insert(
        "env".into(),
        pb::Environment {
            urn: "beam:env:process:v1".into(),
            dependencies: vec![staged(name)],
            ..Default::default()
        },
    );
    p
}

/// Plays the client's side of staging, answering with the artifact's
/// bytes; returns the stream's final status.
async fn stage(server: &oxbeam_job_server::JobServer, token: &str) -> Result<(), tonic::Status> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(ArtifactResponseWrapper {
        staging_token: token.into(),
        is_last: false,
        response: None,
    })
    .await
    .unwrap();
    let mut staging = ArtifactStagingServiceClient::new(channel(server).await);
    let mut asks = staging
        .reverse_artifact_retrieval_service(ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(ask) = asks.message().await? {
        match ask.request.unwrap() {
            Ask::ResolveArtifact(r) => tx
                .send(ArtifactResponseWrapper {
                    staging_token: String::new(),
                    is_last: false,
                    response: Some(Answer::ResolveArtifactResponse(ResolveArtifactsResponse {
                        replacements: r.artifacts,
                    })),
                })
                .await
                .unwrap(),
            Ask::GetArtifact(_) => {
                for (data, is_last) in [(&b"hel"[..], false), (&b"lo"[..], true)] {
                    tx.send(ArtifactResponseWrapper {
                        staging_token: String::new(),
                        is_last,
                        response: Some(Answer::GetArtifactResponse(GetArtifactResponse {
                            data: data.to_vec().into(),
                        })),
                    })
                    .await
                    .unwrap();
                }
            }
        }
    }
    Ok(())
}

async fn prepare(server: &oxbeam_job_server::JobServer, p: pb::Pipeline) -> String {
    client(server)
        .await
        .prepare(PrepareJobRequest {
            pipeline: Some(p),
            pipeline_options: None,
            job_name: "artifacts".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .staging_session_token
}

#[test]
fn staged_artifacts_are_stored_and_served_back() {
    let server = server();
    runtime().block_on(async {
        let token = prepare(&server, with_dependency("deps/wheel.whl")).await;
        stage(&server, &token).await.unwrap();
        let pipeline = client(&server)
            .await
            .get_pipeline(GetJobPipelineRequest {
                job_id: token.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .pipeline
            .unwrap();
        let dep = pipeline.components.unwrap().environments["env"].dependencies[0].clone();
        assert_eq!(dep.type_urn, "beam:artifact:type:file:v1");
        let path = pb::ArtifactFilePayload::decode(dep.type_payload.as_ref())
            .unwrap()
            .path;
        assert!(path.ends_with("deps/wheel.whl"), "{path}");
        let mut retrieval = ArtifactRetrievalServiceClient::new(channel(&server).await);
        let mut chunks = retrieval
            .get_artifact(GetArtifactRequest {
                artifact: Some(dep),
            })
            .await
            .unwrap()
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(c) = chunks.message().await.unwrap() {
            bytes.extend_from_slice(&c.data);
        }
        assert_eq!(bytes, b"hello");
        // Files outside the staging directory are not served.
        let err = retrieval
            .get_artifact(GetArtifactRequest {
                artifact: Some(pb::ArtifactInformation {
                    type_urn: "beam:artifact:type:file:v1".into(),
                    type_payload: pb::ArtifactFilePayload {
                        path: "/etc/hostname".into(),
                        sha256: String::new(),
                    }
                    .encode_to_vec()
                    .into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err.code(), Code::PermissionDenied | Code::NotFound),
            "{err:?}"
        );
    });
}

#[test]
fn artifact_names_escaping_the_staging_directory_are_refused() {
    let server = server();
    runtime().block_on(async {
        for name in ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt"] {
            let token = prepare(&server, with_dependency(name)).await;
            let err = stage(&server, &token).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
            assert!(
                err.message().contains("contains '..'") || err.message().contains("absolute"),
                "{name}: {err:?}"
            );
            let mut c = client(&server).await;
            let err = c
                .run(RunJobRequest {
                    preparation_id: token.clone(),
                    retrieval_token: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
            assert!(err.message().contains("staging"), "{err:?}");
        }
        assert!(!std::env::temp_dir().join("evil.txt").exists());
        let mut c = client(&server).await;
        assert_eq!(
            run_to_end(&mut c, impulse_pipeline(vec![])).await,
            job_state::Enum::Done
        );
    });
}
