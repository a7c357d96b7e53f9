//! Artifact staging (the client uploads its environments' dependencies
//! while submitting) and retrieval (harnesses fetch them).
//!
//! Staging runs Beam's reverse protocol: the client opens
//! `ReverseArtifactRetrievalService` and names its job with the staging
//! token; the server then asks it to resolve each environment's
//! dependencies and to send each one's bytes, stores them in the job's
//! staging directory, and rewrites the environments' dependencies into
//! `beam:artifact:type:file:v1` artifacts pointing at the stored files.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use oxbeam_model::job_management::{
    ArtifactRequestWrapper, ArtifactResponseWrapper, GetArtifactRequest, GetArtifactResponse,
    ResolveArtifactsRequest, ResolveArtifactsResponse, artifact_request_wrapper,
    artifact_response_wrapper, artifact_retrieval_service_server, artifact_staging_service_server,
};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_artifacts::{roles, types};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::jobs::{Job, Jobs, Staging};

/// Bytes per chunk when serving an artifact.
const CHUNK_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub(crate) struct ArtifactServices {
    pub jobs: Arc<Jobs>,
}

/// Checks a staged name from a client: a relative path that stays inside
/// the staging directory.
///
/// # Errors
/// A message saying why the name is refused.
pub(crate) fn check_staged_name(name: &str) -> Result<PathBuf, String> {
    if name.is_empty() {
        return Err("the staged name is empty".into());
    }
    let path = Path::new(name);
    if path.is_absolute() || name.starts_with('/') || name.starts_with('\\') {
        return Err(format!("staged name {name:?} is an absolute path"));
    }
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("staged name {name:?} contains '..'"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("staged name {name:?} is an absolute path"));
            }
        }
    }
    if name.split(['/', '\\']).any(|p| p == "..") {
        return Err(format!("staged name {name:?} contains '..'"));
    }
    if clean.as_os_str().is_empty() {
        return Err(format!("staged name {name:?} names no file"));
    }
    Ok(clean)
}

type Requests = mpsc::Sender<Result<ArtifactRequestWrapper, Status>>;

/// The client's side of the reverse stream, from the server's view.
struct Client {
    requests: Requests,
    responses: Streaming<ArtifactResponseWrapper>,
}

impl Client {
    async fn ask(&mut self, request: artifact_request_wrapper::Request) -> Result<(), String> {
        self.requests
            .send(Ok(ArtifactRequestWrapper {
                request: Some(request),
            }))
            .await
            .map_err(|_| "the client closed the staging stream".to_string())
    }

    async fn next(&mut self) -> Result<ArtifactResponseWrapper, String> {
        match self.responses.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err("the client ended the staging stream early".into()),
            Err(s) => Err(format!("the staging stream failed: {}", s.message())),
        }
    }

    async fn resolve(
        &mut self,
        artifacts: Vec<pb::ArtifactInformation>,
    ) -> Result<Vec<pb::ArtifactInformation>, String> {
        self.ask(artifact_request_wrapper::Request::ResolveArtifact(
            ResolveArtifactsRequest {
                artifacts,
                preferred_urns: vec![],
            },
        ))
        .await?;
        match self.next().await?.response {
            Some(artifact_response_wrapper::Response::ResolveArtifactResponse(r)) => {
                Ok(r.replacements)
            }
            _ => Err("the client answered a ResolveArtifacts request with something else".into()),
        }
    }

    async fn fetch(&mut self, artifact: pb::ArtifactInformation, to: &Path) -> Result<(), String> {
        self.ask(artifact_request_wrapper::Request::GetArtifact(
            GetArtifactRequest {
                artifact: Some(artifact),
            },
        ))
        .await?;
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let mut file = std::fs::File::create(to)
            .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
        loop {
            let r = self.next().await?;
            match r.response {
                Some(artifact_response_wrapper::Response::GetArtifactResponse(chunk)) => {
                    file.write_all(&chunk.data)
                        .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
                }
                None if r.is_last => {}
                _ => {
                    return Err(
                        "the client answered a GetArtifact request with something else".into(),
                    );
                }
            }
            if r.is_last {
                return Ok(());
            }
        }
    }
}

/// The name an artifact is staged under: its `STAGING_TO` role's name.
fn staged_name(a: &pb::ArtifactInformation, index: usize) -> Result<PathBuf, String> {
    if a.role_urn == roles::STAGING_TO {
        let p = pb::ArtifactStagingToRolePayload::decode(a.role_payload.as_ref())
            .map_err(|e| format!("malformed staging-to role payload: {e}"))?;
        let name = check_staged_name(&p.staged_name)?;
        Ok(PathBuf::from(index.to_string()).join(name))
    } else {
        Ok(PathBuf::from(index.to_string()).join("artifact"))
    }
}

/// Stages every dependency of every environment of `job`, rewriting the
/// pipeline's environments to the stored files.
async fn stage(job: &Job, client: &mut Client) -> Result<(), String> {
    let environments: Vec<(String, Vec<pb::ArtifactInformation>)> = {
        let inner = job.lock();
        inner
            .pipeline
            .components
            .as_ref()
            .map(|c| {
                c.environments
                    .iter()
                    .filter(|(_, e)| !e.dependencies.is_empty())
                    .map(|(id, e)| (id.clone(), e.dependencies.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut index = 0;
    let mut staged: Vec<(String, Vec<pb::ArtifactInformation>)> = Vec::new();
    for (env, deps) in environments {
        let resolved = client.resolve(deps).await?;
        let mut files = Vec::new();
        for a in resolved {
            let name = staged_name(&a, index).map_err(|e| format!("environment {env}: {e}"))?;
            index += 1;
            let path = job.staging_dir.join(name);
            client.fetch(a.clone(), &path).await?;
            files.push(pb::ArtifactInformation {
                type_urn: types::FILE.to_string(),
                type_payload: pb::ArtifactFilePayload {
                    path: path.to_string_lossy().into_owned(),
                    sha256: String::new(),
                }
                .encode_to_vec()
                .into(),
                role_urn: a.role_urn,
                role_payload: a.role_payload,
            });
        }
        staged.push((env, files));
    }
    let mut inner = job.lock();
    if let Some(c) = inner.pipeline.components.as_mut() {
        for (env, files) in staged {
            if let Some(e) = c.environments.get_mut(&env) {
                e.dependencies = files;
            }
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl artifact_staging_service_server::ArtifactStagingService for ArtifactServices {
    type ReverseArtifactRetrievalServiceStream =
        ReceiverStream<Result<ArtifactRequestWrapper, Status>>;

    async fn reverse_artifact_retrieval_service(
        &self,
        request: Request<Streaming<ArtifactResponseWrapper>>,
    ) -> Result<Response<Self::ReverseArtifactRetrievalServiceStream>, Status> {
        let mut responses = request.into_inner();
        let first = responses.message().await?.ok_or_else(|| {
            Status::invalid_argument("the staging stream ended before naming a job")
        })?;
        let job = self.jobs.get(&first.staging_token).map_err(|_| {
            Status::not_found(format!("no such staging token: {:?}", first.staging_token))
        })?;
        {
            let mut inner = job.lock();
            if inner.staging != Staging::NotStarted {
                return Err(Status::failed_precondition(format!(
                    "the artifacts of job {} are already staged (or being staged)",
                    job.id
                )));
            }
            inner.staging = Staging::InProgress;
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut client = Client {
                requests: tx,
                responses,
            };
            let outcome = stage(&job, &mut client).await;
            match outcome {
                Ok(()) => {
                    job.lock().staging = Staging::Done;
                }
                Err(why) => {
                    tracing::warn!(job = %job.id, "staging failed: {why}");
                    job.lock().staging = Staging::Failed(why.clone());
                    let _ = client
                        .requests
                        .send(Err(Status::invalid_argument(format!(
                            "staging the artifacts of job {} failed: {why}",
                            job.id
                        ))))
                        .await;
                }
            }
            // Dropping `client` ends the stream: staging is over.
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl artifact_retrieval_service_server::ArtifactRetrievalService for ArtifactServices {
    async fn resolve_artifacts(
        &self,
        request: Request<ResolveArtifactsRequest>,
    ) -> Result<Response<ResolveArtifactsResponse>, Status> {
        // Staged artifacts are already files this server can read.
        Ok(Response::new(ResolveArtifactsResponse {
            replacements: request.into_inner().artifacts,
        }))
    }

    type GetArtifactStream = ReceiverStream<Result<GetArtifactResponse, Status>>;

    async fn get_artifact(
        &self,
        request: Request<GetArtifactRequest>,
    ) -> Result<Response<Self::GetArtifactStream>, Status> {
        let artifact = request
            .into_inner()
            .artifact
            .ok_or_else(|| Status::invalid_argument("GetArtifactRequest names no artifact"))?;
        let data: Vec<u8> = match artifact.type_urn.as_str() {
            types::EMBEDDED => pb::EmbeddedFilePayload::decode(artifact.type_payload.as_ref())
                .map_err(|e| Status::invalid_argument(format!("malformed embedded payload: {e}")))?
                .data
                .to_vec(),
            types::FILE => {
                let p = pb::ArtifactFilePayload::decode(artifact.type_payload.as_ref()).map_err(
                    |e| Status::invalid_argument(format!("malformed file payload: {e}")),
                )?;
                let root = std::fs::canonicalize(&self.jobs.settings.staging_root)
                    .map_err(|e| Status::not_found(format!("no staged artifacts: {e}")))?;
                let path = std::fs::canonicalize(&p.path)
                    .map_err(|e| Status::not_found(format!("artifact {:?}: {e}", p.path)))?;
                if !path.starts_with(&root) {
                    return Err(Status::permission_denied(format!(
                        "artifact {:?} was not staged with this job server",
                        p.path
                    )));
                }
                std::fs::read(&path)
                    .map_err(|e| Status::not_found(format!("artifact {:?}: {e}", p.path)))?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "artifacts of type {other:?} cannot be retrieved from this job server"
                )));
            }
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for chunk in data.chunks(CHUNK_BYTES) {
                let msg = GetArtifactResponse {
                    data: chunk.to_vec().into(),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::check_staged_name;

    #[test]
    fn staged_names_stay_inside_the_staging_directory() {
        assert!(check_staged_name("wheel.whl").is_ok());
        assert!(check_staged_name("deps/a.tar.gz").is_ok());
        for bad in ["../etc/passwd", "a/../../b", "/etc/passwd", "", ".", "a/.."] {
            assert!(check_staged_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
