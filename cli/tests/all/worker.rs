//! `oxbeam worker` as the SDK harness of a process environment: the local
//! runner starts it with Beam's boot flags and sends it the Wasm stages.

use std::path::PathBuf;
use std::sync::Arc;

use oxbeam::wasm::{WASM_ENVIRONMENT_ID, WasmFn, WasmMap};
use oxbeam::{Pipeline, PipelineOptions};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_environments::environments;
use oxbeam_runner_local::{LocalOptions, LocalRunner};
use prost::Message;

fn guest() -> Arc<Vec<u8>> {
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..");
    Arc::new(oxbeam_wasm::dev::build_guest_udfs(&root).expect("the Wasm guest builds"))
}

/// Runs `p` on the local runner with its Wasm environment served by
/// `oxbeam worker` processes (and no Wasm executor in this process).
fn run_with_worker(p: &Pipeline) -> Result<(), oxbeam_runner_local::Error> {
    let mut proto = p.to_proto();
    let components = proto.components.as_mut().unwrap();
    assert!(components.environments.contains_key(WASM_ENVIRONMENT_ID));
    components.environments.insert(
        WASM_ENVIRONMENT_ID.to_string(),
        pb::Environment {
            urn: environments::PROCESS.to_string(),
            payload: pb::ProcessPayload {
                command: format!("{} worker", env!("CARGO_BIN_EXE_oxbeam")),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            ..Default::default()
        },
    );
    let options = LocalOptions {
        parallelism: 2,
        progress: false,
        ..LocalOptions::default()
    };
    LocalRunner::new(options)
        .run(&proto, &p.executors())
        .map(|_| ())
}

fn pipeline() -> Pipeline {
    Pipeline::new(PipelineOptions {
        parallelism: Some(2),
        no_progress: true,
        ..Default::default()
    })
}

#[test]
fn oxbeam_worker_runs_wasm_stages_out_of_process() {
    let m = guest();
    let p = pipeline();
    let input: Vec<(String, i64)> = (0..5000).map(|i| (format!("k{}", i % 7), i)).collect();
    let out = p
        .create("Input", input.clone())
        .apply(
            "Add",
            WasmMap::<(String, i64)>::new(
                WasmFn::new(m.clone(), "add_to_value").with_config(100i64.to_le_bytes()),
            ),
        )
        .collect_for_testing("Out");
    run_with_worker(&p).unwrap();
    let mut expected: Vec<(String, i64)> = input.into_iter().map(|(k, v)| (k, v + 100)).collect();
    expected.sort();
    assert_eq!(out.sorted(), expected);
}

#[test]
fn guest_failures_in_oxbeam_worker_fail_the_job_with_the_guest_message() {
    let m = guest();
    let p = pipeline();
    p.create("Input", vec![("a".to_string(), 1i64), ("b".to_string(), 2)])
        .apply(
            "MayPanic",
            WasmMap::<(String, i64)>::new(
                WasmFn::new(m, "panic_on_value").with_config(2i64.to_le_bytes()),
            ),
        );
    let err = run_with_worker(&p).unwrap_err().to_string();
    assert!(err.contains("MayPanic"), "{err}");
    assert!(err.contains("refusing value 2"), "{err}");
}

#[test]
fn oxbeam_worker_without_an_endpoint_is_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxbeam"))
        .arg("worker")
        .env_remove("CONTROL_API_SERVICE_DESCRIPTOR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--control_endpoint is required"),
        "{stderr}"
    );
}
