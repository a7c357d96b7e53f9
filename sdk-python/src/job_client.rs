//! Submitting a pipeline to a Beam job service (`--runner=PortableRunner
//! --job_endpoint=HOST:PORT`), such as `oxbeam job-server`: Prepare, Run,
//! then the job's state until it ends, its error messages if it failed,
//! and its metrics (Beam's Job API, as Beam's own `PortableRunner` uses it).

use std::time::Duration;

use oxbeam_model::job_management::{
    CancelJobRequest, GetJobMetricsRequest, GetJobStateRequest, JobMessagesRequest,
    PrepareJobRequest, RunJobRequest, job_message::MessageImportance, job_messages_response,
    job_service_client::JobServiceClient, job_state,
};
use prost::Message;
use pyo3::prelude::*;
use tonic::transport::Channel;

use crate::errors;

/// Longest wait between two state polls (also how soon Ctrl-C is seen).
const POLL: Duration = Duration::from_millis(50);
/// Largest pipeline or response the client sends or accepts.
const MAX_MESSAGE_BYTES: usize = 512 << 20;

/// A finished job: its metrics, or why it did not finish.
pub(crate) enum Outcome {
    Done(oxbeam_fn_api::Metrics),
    Failed {
        job_id: String,
        state: String,
        error: String,
    },
}

fn failed(what: &str, endpoint: &str, e: impl std::fmt::Display) -> PyErr {
    errors::ExecutionError::new_err(format!("job service at {endpoint}: {what}: {e}"))
}

/// The pipeline options as a `Struct` with Beam's `beam:option:NAME:v1`
/// keys (from a JSON object of option names and values).
fn options_struct(json: &str) -> PyResult<prost_types::Struct> {
    fn value(v: serde_json::Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match v {
            serde_json::Value::Null => Kind::NullValue(0),
            serde_json::Value::Bool(b) => Kind::BoolValue(b),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
            serde_json::Value::String(s) => Kind::StringValue(s),
            serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.into_iter().map(value).collect(),
            }),
            serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
                fields: o.into_iter().map(|(k, v)| (k, value(v))).collect(),
            }),
        };
        prost_types::Value { kind: Some(kind) }
    }
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| errors::PipelineError::new_err(format!("pipeline options: {e}")))?;
    Ok(prost_types::Struct {
        fields: parsed
            .into_iter()
            .map(|(k, v)| (format!("beam:option:{k}:v1"), value(v)))
            .collect(),
    })
}

/// Runs `pipeline` (an encoded Beam `Pipeline`) on the job service at
/// `endpoint` (`host:port`) to its end. Ctrl-C cancels the job and raises
/// `KeyboardInterrupt` once the service confirms.
///
/// # Errors
/// `PipelineError` for bad options; `ExecutionError` when the service
/// cannot be reached or refuses the job.
pub(crate) fn run_job(
    py: Python<'_>,
    endpoint: &str,
    pipeline: &[u8],
    options_json: &str,
    job_name: &str,
) -> PyResult<Outcome> {
    let pipeline = oxbeam_model::pipeline::Pipeline::decode(pipeline).map_err(|e| {
        errors::PipelineError::new_err(format!("pipeline proto does not decode: {e}"))
    })?;
    let options = options_struct(options_json)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed("cannot start a client runtime", endpoint, e))?;
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let channel = py
        .detach(|| {
            runtime.block_on(async {
                Channel::from_shared(url)
                    .map_err(|e| e.to_string())?
                    .connect_timeout(Duration::from_secs(30))
                    .connect()
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .map_err(|e| failed("cannot connect", endpoint, e))?;
    let mut client = JobServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let job_id = py
        .detach(|| {
            runtime.block_on(async {
                let prepared = client
                    .prepare(PrepareJobRequest {
                        pipeline: Some(pipeline),
                        pipeline_options: Some(options),
                        job_name: job_name.to_string(),
                    })
                    .await?
                    .into_inner();
                // The pipeline's environments stage no artifacts.
                let run = client
                    .run(RunJobRequest {
                        preparation_id: prepared.preparation_id,
                        retrieval_token: prepared.staging_session_token,
                    })
                    .await?
                    .into_inner();
                Ok::<_, tonic::Status>(run.job_id)
            })
        })
        .map_err(|s| failed("the job was refused", endpoint, s.message()))?;

    let mut wait = Duration::from_millis(1);
    let state = loop {
        let state = py
            .detach(|| runtime.block_on(state_of(&mut client, &job_id)))
            .map_err(|s| failed(&format!("state of job {job_id}"), endpoint, s.message()))?;
        if is_terminal(state) {
            break state;
        }
        py.detach(|| std::thread::sleep(wait));
        wait = (wait * 2).min(POLL);
        if let Err(interrupt) = py.check_signals() {
            let _ = py.detach(|| {
                runtime.block_on(async {
                    client
                        .cancel(CancelJobRequest {
                            job_id: job_id.clone(),
                        })
                        .await?;
                    // Until the job has stopped: no output after Ctrl-C.
                    for _ in 0..600 {
                        if is_terminal(state_of(&mut client, &job_id).await?) {
                            break;
                        }
                        tokio::time::sleep(POLL).await;
                    }
                    Ok::<_, tonic::Status>(())
                })
            });
            return Err(interrupt);
        }
    };
    if state == job_state::Enum::Done {
        let infos = py
            .detach(|| {
                runtime.block_on(client.get_job_metrics(GetJobMetricsRequest {
                    job_id: job_id.clone(),
                }))
            })
            .map_err(|s| failed(&format!("metrics of job {job_id}"), endpoint, s.message()))?
            .into_inner()
            .metrics
            .map(|m| m.committed)
            .unwrap_or_default();
        let mut metrics = oxbeam_fn_api::Metrics::default();
        metrics.merge_monitoring_infos(&infos);
        return Ok(Outcome::Done(metrics));
    }
    let error = py.detach(|| runtime.block_on(error_messages(&mut client, &job_id)));
    Ok(Outcome::Failed {
        state: format!("{state:?}").to_uppercase(),
        job_id,
        error,
    })
}

async fn state_of(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
) -> Result<job_state::Enum, tonic::Status> {
    Ok(client
        .get_state(GetJobStateRequest {
            job_id: job_id.to_string(),
        })
        .await?
        .into_inner()
        .state())
}

fn is_terminal(s: job_state::Enum) -> bool {
    use job_state::Enum as S;
    matches!(
        s,
        S::Done | S::Failed | S::Cancelled | S::Drained | S::Updated
    )
}

/// The job's error messages, in order (the message stream replays them).
async fn error_messages(client: &mut JobServiceClient<Channel>, job_id: &str) -> String {
    let mut errors = Vec::new();
    let stream = client
        .get_message_stream(JobMessagesRequest {
            job_id: job_id.to_string(),
        })
        .await;
    if let Ok(stream) = stream {
        let mut stream = stream.into_inner();
        let read = async {
            while let Ok(Some(m)) = stream.message().await {
                match m.response {
                    Some(job_messages_response::Response::MessageResponse(msg))
                        if msg.importance() == MessageImportance::JobMessageError =>
                    {
                        errors.push(msg.message_text);
                    }
                    Some(job_messages_response::Response::StateResponse(s))
                        if is_terminal(s.state()) =>
                    {
                        break;
                    }
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    }
    errors.join("\n")
}
