//! Shared helpers: a server, a client runtime, small pipelines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxbeam_job_server::{JobServer, JobServerOptions};
use oxbeam_model::job_management::{
    GetJobStateRequest, PrepareJobRequest, RunJobRequest, job_service_client::JobServiceClient,
    job_state,
};
use oxbeam_model::pipeline as pb;
use tonic::transport::Channel;

pub fn server() -> JobServer {
    JobServer::start(JobServerOptions {
        job_port: 0,
        parallelism: 2,
        ..JobServerOptions::default()
    })
    .unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn channel(server: &JobServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.job_endpoint()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn client(server: &JobServer) -> JobServiceClient<Channel> {
    JobServiceClient::new(channel(server).await)
}

fn coder(urn: &str) -> pb::Coder {
    pb::Coder {
        spec: Some(pb::FunctionSpec {
            urn: urn.into(),
            payload: Default::default(),
        }),
        component_coder_ids: vec![],
    }
}

/// Impulse, plus `extra` transforms reading its output.
pub fn impulse_pipeline(extra: Vec<(&str, pb::PTransform)>) -> pb::Pipeline {
    let mut c = pb::Components::default();
    c.coders
        .insert("bytes".into(), coder("beam:coder:bytes:v1"));
    c.coders
        .insert("gw".into(), coder("beam:coder:global_window:v1"));
    c.windowing_strategies.insert(
        "ws".into(),
        pb::WindowingStrategy {
            window_fn: Some(pb::FunctionSpec {
                urn: "beam:window_fn:global_windows:v1".into(),
                payload: Default::default(),
            }),
            window_coder_id: "gw".into(),
            ..Default::default()
        },
    );
    for id in ["out", "out2"] {
        c.pcollections.insert(
            id.into(),
            pb::PCollection {
                unique_name: id.into(),
                coder_id: "bytes".into(),
                windowing_strategy_id: "ws".into(),
                ..Default::default()
            },
        );
    }
    c.transforms.insert(
        "impulse".into(),
        pb::PTransform {
            unique_name: "Impulse".into(),
            spec: Some(pb::FunctionSpec {
                urn: "beam:transform:impulse:v1".into(),
                payload: Default::default(),
            }),
            outputs: [("out".to_string(), "out".to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        },
    );
    let mut roots = vec!["impulse".to_string()];
    for (id, t) in extra {
        c.transforms.insert(id.into(), t);
        roots.push(id.into());
    }
    pb::Pipeline {
        components: Some(c),
        root_transform_ids: roots,
        ..Default::default()
    }
}

/// Prepares and runs `pipeline`; waits for a terminal state and returns it.
pub async fn run_to_end(
    client: &mut JobServiceClient<Channel>,
    pipeline: pb::Pipeline,
) -> job_state::Enum {
    let id = client
        .prepare(PrepareJobRequest {
            pipeline: Some(pipeline),
            pipeline_options: None,
            job_name: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .preparation_id;
    client
        .run(RunJobRequest {
            preparation_id: id.clone(),
            retrieval_token: String::new(),
        })
        .await
        .unwrap();
    wait_terminal(client, &id, Duration::from_secs(120)).await
}

pub async fn wait_terminal(
    client: &mut JobServiceClient<Channel>,
    id: &str,
    limit: Duration,
) -> job_state::Enum {
    use job_state::Enum as S;
    let deadline = Instant::now() + limit;
    loop {
        let s = client
            .get_state(GetJobStateRequest { job_id: id.into() })
            .await
            .unwrap()
            .into_inner()
            .state();
        if matches!(s, S::Done | S::Failed | S::Cancelled) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The interpreter with apache-beam: `$OXBEAM_PYTHON`, else the workspace venv.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OXBEAM_PYTHON") {
        return PathBuf::from(p);
    }
    Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../.venv/bin/python")
}

/// Runs a Beam Python `script` that writes a Pipeline proto to its first
/// argument (`args` follow it), and returns that pipeline.
pub fn python_pipeline(script: &str, args: &[&Path]) -> pb::Pipeline {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.pb");
    let status = std::process::Command::new(python())
        .args(["-W", "ignore", "-c", script])
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    pb::Pipeline::decode(std::fs::read(&out).unwrap().as_slice()).unwrap()
}

/// A Beam Python pipeline (process environment) whose Map sleeps
/// `seconds_per_element` on each of `n` elements.
pub fn slow_python_pipeline(n: usize, seconds_per_element: f64) -> pb::Pipeline {
    let script = format!(
        r#"
import sys, time
import apache_beam as beam
from apache_beam.transforms.environments import ProcessEnvironment
p = beam.Pipeline()
p | beam.Create(list(range({n}))) | beam.Map(lambda x: time.sleep({seconds_per_element}) or x)
env = ProcessEnvironment(command='%s -m apache_beam.runners.worker.sdk_worker_main' % sys.executable)
open(sys.argv[1], 'wb').write(p.to_runner_api(default_environment=env).SerializeToString())
"#
    );
    python_pipeline(&script, &[])
}
