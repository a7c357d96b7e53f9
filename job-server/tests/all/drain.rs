//! Drain (Beam's `JobService.Drain`): an unbounded job's sources stop,
//! event time advances to the end so every window fires, and the job ends
//! DRAINED, having lost nothing it read.

use std::path::Path;
use std::time::{Duration, Instant};

use oxbeam_model::job_management::{
    DrainJobRequest, GetJobStateRequest, PrepareJobRequest, RunJobRequest,
    job_service_client::JobServiceClient, job_state,
};
use oxbeam_model::pipeline as pb;
use tonic::transport::Channel;

use crate::testing::{client, python_pipeline, runtime, server};

/// A Beam Python streaming pipeline (process environment): PeriodicImpulse
/// ticks every 50 ms, unbounded; each tick's index is appended to
/// `dir/ticks`, and the ticks counted per 1 s fixed window are appended to
/// `dir/counts`.
fn periodic_pipeline(dir: &Path) -> pb::Pipeline {
    let script = r#"
import os, sys, time
import apache_beam as beam
from apache_beam.transforms.environments import ProcessEnvironment
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.window import FixedWindows
from apache_beam.options.pipeline_options import PipelineOptions

proto, out = sys.argv[1], sys.argv[2]
start = time.time()

def append(name, line, out=out):
    with open(os.path.join(out, name), 'a') as f:
        f.write('%s\n' % line)

p = beam.Pipeline(options=PipelineOptions(['--streaming']))
ticks = (p | PeriodicImpulse(start_timestamp=start, fire_interval=0.05)
           | beam.Map(lambda t, start=start: int(round((t - start) / 0.05))))
ticks | 'Ticks' >> beam.Map(lambda i: append('ticks', i))
(ticks | beam.WindowInto(FixedWindows(1)) | beam.Map(lambda i: (0, 1))
       | beam.CombinePerKey(sum) | 'Counts' >> beam.Map(lambda kv: append('counts', kv[1])))
env = ProcessEnvironment(command='%s -m apache_beam.runners.worker.sdk_worker_main' % sys.executable)
open(proto, 'wb').write(p.to_runner_api(default_environment=env).SerializeToString())
"#;
    python_pipeline(script, &[dir])
}

async fn state_of(c: &mut JobServiceClient<Channel>, id: &str) -> job_state::Enum {
    c.get_state(GetJobStateRequest { job_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .state()
}

fn numbers(path: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn drain_ends_an_unbounded_job_drained_with_every_window_fired() {
    use job_state::Enum as S;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = periodic_pipeline(dir.path());
    let server = server();
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(&server).await;
        let id = c
            .prepare(PrepareJobRequest {
                pipeline: Some(pipeline),
                pipeline_options: None,
                job_name: "periodic".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .preparation_id;
        c.run(RunJobRequest {
            preparation_id: id.clone(),
            retrieval_token: String::new(),
        })
        .await
        .unwrap();
        // Runs (unbounded) until drained: wait for some ticks.
        let deadline = Instant::now() + Duration::from_secs(90);
        while numbers(&dir.path().join("ticks")).len() < 10 {
            assert!(Instant::now() < deadline, "no ticks");
            let s = state_of(&mut c, &id).await;
            assert!(matches!(s, S::Starting | S::Running), "{s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drained = c
            .drain(DrainJobRequest { job_id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .state();
        assert_eq!(drained, S::Draining);
        let deadline = Instant::now() + Duration::from_secs(60);
        let end = loop {
            let s = state_of(&mut c, &id).await;
            if s != S::Draining || Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(end, S::Drained);
        // Every tick read was processed once, and counted once in a window
        // that fired (the last ones only because event time reached the end).
        let ticks = numbers(&dir.path().join("ticks"));
        assert_eq!(ticks, (0..ticks.len() as i64).collect::<Vec<_>>());
        let counts = numbers(&dir.path().join("counts"));
        assert_eq!(counts.iter().sum::<i64>(), ticks.len() as i64, "{counts:?}");
    });
}
