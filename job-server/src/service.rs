//! Beam's `JobService` over the job registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use oxbeam_model::job_management::{
    CancelJobRequest, CancelJobResponse, DescribePipelineOptionsRequest,
    DescribePipelineOptionsResponse, DrainJobRequest, DrainJobResponse, GetJobMetricsRequest,
    GetJobMetricsResponse, GetJobPipelineRequest, GetJobPipelineResponse, GetJobStateRequest,
    GetJobsRequest, GetJobsResponse, JobInfo, JobMessagesRequest, JobMessagesResponse,
    JobStateEvent, MetricResults, PipelineOptionDescriptor, PrepareJobRequest, PrepareJobResponse,
    RunJobRequest, RunJobResponse, job_messages_response, job_service_server, pipeline_option_type,
};
use oxbeam_model::pipeline as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::jobs::{Job, JobState, Jobs, PARALLELISM_OPTION, is_terminal};
use crate::{Error, check_requirements};

#[derive(Clone)]
pub(crate) struct JobServiceImpl {
    pub jobs: Arc<Jobs>,
    /// `host:port` of the artifact staging service, for PrepareJobResponse.
    pub artifact_url: String,
    /// When the server last saw a request (for idle shutdown).
    pub last_activity: Arc<std::sync::Mutex<Instant>>,
}

impl JobServiceImpl {
    fn touch(&self) {
        if let Ok(mut t) = self.last_activity.lock() {
            *t = Instant::now();
        }
    }

    fn job(&self, id: &str) -> Result<Arc<Job>, Status> {
        self.touch();
        self.jobs.get(id).map_err(Status::from)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match &e {
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::InvalidPipeline(_) | Error::Unsupported(_) => {
                Status::invalid_argument(e.to_string())
            }
            Error::Precondition(_) => Status::failed_precondition(e.to_string()),
            Error::Internal(_) => Status::internal(e.to_string()),
        }
    }
}

/// Streams the job's log from `start`, ending after a terminal state.
/// `only_states` keeps state changes only, beginning with the current one.
fn follow(job: Arc<Job>, only_states: bool) -> ReceiverStream<Result<JobMessagesResponse, Status>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut changes = job.subscribe();
        let mut cursor = if only_states {
            // Start at the latest state change: the current state.
            let inner = job.lock();
            inner
                .log
                .iter()
                .rposition(|e| {
                    matches!(
                        e.response,
                        Some(job_messages_response::Response::StateResponse(_))
                    )
                })
                .unwrap_or(0)
        } else {
            0
        };
        loop {
            changes.borrow_and_update();
            let (batch, done) = {
                let inner = job.lock();
                let batch: Vec<JobMessagesResponse> = inner.log[cursor.min(inner.log.len())..]
                    .iter()
                    .filter(|e| {
                        !only_states
                            || matches!(
                                e.response,
                                Some(job_messages_response::Response::StateResponse(_))
                            )
                    })
                    .cloned()
                    .collect();
                cursor = inner.log.len();
                (batch, is_terminal(inner.state))
            };
            for e in batch {
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            if done {
                return;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Adapts a log stream to state events.
pub(crate) struct StateStream(ReceiverStream<Result<JobMessagesResponse, Status>>);

impl tokio_stream::Stream for StateStream {
    type Item = Result<JobStateEvent, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            return match std::pin::Pin::new(&mut self.0).poll_next(cx) {
                std::task::Poll::Ready(Some(Ok(JobMessagesResponse {
                    response: Some(job_messages_response::Response::StateResponse(s)),
                }))) => std::task::Poll::Ready(Some(Ok(s))),
                std::task::Poll::Ready(Some(Ok(_))) => continue,
                std::task::Poll::Ready(Some(Err(e))) => std::task::Poll::Ready(Some(Err(e))),
                std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
                std::task::Poll::Pending => std::task::Poll::Pending,
            };
        }
    }
}

#[tonic::async_trait]
impl job_service_server::JobService for JobServiceImpl {
    async fn prepare(
        &self,
        request: Request<PrepareJobRequest>,
    ) -> Result<Response<PrepareJobResponse>, Status> {
        self.touch();
        let r = request.into_inner();
        let mut pipeline = r
            .pipeline
            .ok_or_else(|| Status::invalid_argument("PrepareJobRequest holds no pipeline"))?;
        check_requirements(&pipeline)?;
        crate::environments::as_process(&mut pipeline, &self.jobs.settings.python)?;
        // Plan now so a pipeline Oxbeam cannot run is refused before the
        // client stages anything, with the planner's message.
        // (TestStreams served by a service get their events at Run.)
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            oxbeam_runner_core::plan(
                &crate::test_stream::for_planning(&pipeline),
                &oxbeam_runner_core::PlanOptions::default(),
            )
            .map(|_| ())
        }));
        match planned {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::InvalidPipeline(e.to_string()).into()),
            // A planner bug must not take the request down with it.
            Err(panic) => {
                return Err(Error::Internal(format!(
                    "the planner panicked on this pipeline: {}",
                    crate::jobs::panic_message(panic.as_ref())
                ))
                .into());
            }
        }
        let job = self.jobs.prepare(
            &r.job_name,
            pipeline,
            r.pipeline_options.unwrap_or_default(),
        )?;
        tracing::info!(job = %job.id, name = %r.job_name, "job prepared");
        Ok(Response::new(PrepareJobResponse {
            preparation_id: job.id.clone(),
            artifact_staging_endpoint: Some(pb::ApiServiceDescriptor {
                url: self.artifact_url.clone(),
                ..Default::default()
            }),
            staging_session_token: job.id.clone(),
        }))
    }

    async fn run(
        &self,
        request: Request<RunJobRequest>,
    ) -> Result<Response<RunJobResponse>, Status> {
        let id = request.into_inner().preparation_id;
        let job = self.job(&id)?;
        self.jobs.run(&job)?;
        Ok(Response::new(RunJobResponse {
            job_id: job.id.clone(),
        }))
    }

    async fn get_jobs(
        &self,
        _request: Request<GetJobsRequest>,
    ) -> Result<Response<GetJobsResponse>, Status> {
        self.touch();
        let job_info = self
            .jobs
            .all()
            .into_iter()
            .map(|j| JobInfo {
                job_id: j.id.clone(),
                job_name: j.name.clone(),
                pipeline_options: Some(j.options.clone()),
                state: j.state() as i32,
            })
            .collect();
        Ok(Response::new(GetJobsResponse { job_info }))
    }

    async fn get_state(
        &self,
        request: Request<GetJobStateRequest>,
    ) -> Result<Response<JobStateEvent>, Status> {
        let job = self.job(&request.into_inner().job_id)?;
        Ok(Response::new(job.state_event()))
    }

    async fn get_pipeline(
        &self,
        request: Request<GetJobPipelineRequest>,
    ) -> Result<Response<GetJobPipelineResponse>, Status> {
        let job = self.job(&request.into_inner().job_id)?;
        let pipeline = job.lock().pipeline.clone();
        Ok(Response::new(GetJobPipelineResponse {
            pipeline: Some(pipeline),
        }))
    }

    async fn cancel(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let job = self.job(&request.into_inner().job_id)?;
        let state = stop(&job, &job.cancel, JobState::Cancelling, JobState::Cancelled);
        Ok(Response::new(CancelJobResponse {
            state: state as i32,
        }))
    }

    async fn drain(
        &self,
        request: Request<DrainJobRequest>,
    ) -> Result<Response<DrainJobResponse>, Status> {
        let job = self.job(&request.into_inner().job_id)?;
        // Sources stop, event time advances to the end, every window fires;
        // a batch job finishes as it would anyway. A cancel goes first.
        let state = match job.state() {
            JobState::Cancelling => JobState::Cancelling,
            _ => stop(&job, &job.drain, JobState::Draining, JobState::Drained),
        };
        Ok(Response::new(DrainJobResponse {
            state: state as i32,
        }))
    }

    type GetStateStreamStream = StateStream;

    async fn get_state_stream(
        &self,
        request: Request<GetJobStateRequest>,
    ) -> Result<Response<Self::GetStateStreamStream>, Status> {
        let job = self.job(&request.into_inner().job_id)?;
        Ok(Response::new(StateStream(follow(job, true))))
    }

    type GetMessageStreamStream = ReceiverStream<Result<JobMessagesResponse, Status>>;

    async fn get_message_stream(
        &self,
        request: Request<JobMessagesRequest>,
    ) -> Result<Response<Self::GetMessageStreamStream>, Status> {
        let job = self.job(&request.into_inner().job_id)?;
        Ok(Response::new(follow(job, false)))
    }

    async fn get_job_metrics(
        &self,
        request: Request<GetJobMetricsRequest>,
    ) -> Result<Response<GetJobMetricsResponse>, Status> {
        let job = self.job(&request.into_inner().job_id)?;
        let infos = job.lock().metrics.to_monitoring_infos();
        // Local jobs do not retry bundles: what was attempted was committed.
        Ok(Response::new(GetJobMetricsResponse {
            metrics: Some(MetricResults {
                attempted: infos.clone(),
                committed: infos,
            }),
        }))
    }

    async fn describe_pipeline_options(
        &self,
        _request: Request<DescribePipelineOptionsRequest>,
    ) -> Result<Response<DescribePipelineOptionsResponse>, Status> {
        self.touch();
        Ok(Response::new(DescribePipelineOptionsResponse {
            options: vec![PipelineOptionDescriptor {
                name: PARALLELISM_OPTION.to_string(),
                r#type: pipeline_option_type::Enum::Integer as i32,
                description: format!(
                    "Worker threads of the job (default: the job server's, {}).",
                    self.jobs.settings.parallelism
                ),
                default_value: String::new(),
                group: "Oxbeam".to_string(),
            }],
        }))
    }
}

/// Asks `job` to stop by setting `flag`: a job that never started ends at
/// once in state `ended`; a running one goes to `ending` (the runner then
/// ends it); a finished one stays as it is. Returns the job's state.
fn stop(job: &Job, flag: &AtomicBool, ending: JobState, ended: JobState) -> JobState {
    let state = job.state();
    if is_terminal(state) {
        state
    } else if state == JobState::Stopped {
        job.set_state(ended);
        ended
    } else {
        flag.store(true, Ordering::SeqCst);
        job.set_state(ending);
        job.state()
    }
}
