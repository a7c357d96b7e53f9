//! `serve_harness` with the test executor in a child process (this test
//! binary, re-executed), driven through `Harnesses` and `GrpcExecutor`.

use std::sync::Arc;
use std::time::Duration;

use oxbeam_fn_api::{
    Bundle, Error, Executor, HarnessConfig, HarnessOptions, Harnesses, Metrics, NoSideInputs,
    SideInputs, serve_harness,
};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_environments::environments;
use prost::Message;

use crate::testing::*;

/// Entry point of the child process: serves as a harness when started by
/// `Harnesses` through the wrapper script of [`process_environment`].
#[test]
fn child_harness_main() {
    if std::env::var_os("OXBEAM_TEST_HARNESS").is_none() {
        return;
    }
    let control = std::env::var("CONTROL_API_SERVICE_DESCRIPTOR").unwrap();
    let url = control
        .trim()
        .trim_start_matches("url:")
        .trim()
        .trim_matches('"')
        .to_string();
    let id = std::env::var("WORKER_ID").unwrap();
    let result = serve_harness(
        HarnessConfig {
            control_endpoint: url,
            id,
        },
        Arc::new(TestExecutor),
    );
    std::process::exit(if result.is_ok() { 0 } else { 1 });
}

/// A `beam:env:process:v1` environment whose command re-executes this test
/// binary as a harness.
pub fn process_environment(dir: &std::path::Path) -> pb::Environment {
    let exe = std::env::current_exe().unwrap();
    let script = dir.join("harness.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nOXBEAM_TEST_HARNESS=1 exec '{}' --exact harness::child_harness_main --nocapture --test-threads=1\n",
            exe.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    pb::Environment {
        urn: environments::PROCESS.into(),
        payload: pb::ProcessPayload {
            command: script.display().to_string(),
            ..Default::default()
        }
        .encode_to_vec()
        .into(),
        ..Default::default()
    }
}

pub fn options() -> HarnessOptions {
    HarnessOptions {
        connect_timeout: Duration::from_secs(60),
        ..HarnessOptions::default()
    }
}

/// Runs one bundle; returns the output values.
pub fn run_bundle(
    exec: &dyn Executor,
    urn: &str,
    payload: &[u8],
    input: &[u8],
    side: Option<&dyn SideInputs>,
) -> Result<Vec<String>, Error> {
    run_bundle_with_metrics(exec, urn, payload, input, side).map(|(v, _)| v)
}

/// Runs one bundle; returns the output values and the bundle's metrics.
pub fn run_bundle_with_metrics(
    exec: &dyn Executor,
    urn: &str,
    payload: &[u8],
    input: &[u8],
    side: Option<&dyn SideInputs>,
) -> Result<(Vec<String>, Metrics), Error> {
    let d = Arc::new(descriptor(urn, payload, side.is_some()));
    let mut p = exec.create_processor(d)?;
    let mut out = Vec::new();
    let mut sink = |t: &str, e: &[u8]| {
        assert_eq!(t, SINK);
        out.extend_from_slice(e);
        Ok(())
    };
    let mut metrics = Metrics::default();
    let mut bundle = Bundle::new(
        vec![(SOURCE, input)],
        &mut sink,
        side.unwrap_or(&NoSideInputs),
        &mut metrics,
    );
    p.process_bundle(&mut bundle)?;
    drop(bundle);
    Ok((values(&out), metrics))
}

struct Side(Vec<u8>);

impl SideInputs for Side {
    fn side_input(&self, transform: &str, side_input: &str) -> oxbeam_fn_api::Result<&[u8]> {
        assert_eq!((transform, side_input), ("fn", "side"));
        Ok(&self.0)
    }
}

#[test]
fn process_harness_runs_bundles_with_exact_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let harnesses = Harnesses::start(options()).unwrap();
    let exec = harnesses
        .executor_for("env", &process_environment(dir.path()))
        .unwrap();

    let (out, metrics) =
        run_bundle_with_metrics(&*exec, UPPER, b"", &elements(&["a", "bc", ""]), None).unwrap();
    assert_eq!(out, ["A", "BC", ""]);
    // User metrics come back in the response's monitoring infos.
    assert_eq!(metrics.counters.get(&upper_counter()), Some(&3));

    // Several MB: inputs and outputs cross many ~1 MB data batches, in order.
    let big: Vec<String> = (0..60_000).map(|i| format!("{i:0>96}x")).collect();
    let out = run_bundle(&*exec, UPPER, b"", &elements(&big), None).unwrap();
    assert_eq!(out.len(), big.len());
    assert!(out.iter().zip(&big).all(|(o, i)| *o == i.to_uppercase()));

    // An empty bundle still closes every port.
    assert!(
        run_bundle(&*exec, UPPER, b"", &[], None)
            .unwrap()
            .is_empty()
    );

    // Side inputs over the State API, several pages of them.
    let side: Vec<String> = (0..30_000).map(|i| format!("{i:0>60}")).collect();
    let side = Side(elements(&side));
    let out = run_bundle(&*exec, SIDE_COUNT, b"", &elements(&["a", "b"]), Some(&side)).unwrap();
    assert_eq!(out, ["a:30000", "b:30000"]);

    // One harness process served all of it.
    assert_eq!(harnesses.server().connected_workers().len(), 1);
}

#[test]
fn user_code_errors_fail_the_bundle_and_the_harness_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let harnesses = Harnesses::start(options()).unwrap();
    let exec = harnesses
        .executor_for("env", &process_environment(dir.path()))
        .unwrap();

    let err = run_bundle(&*exec, FAIL_ON, b"b", &elements(&["a", "b"]), None).unwrap_err();
    let Error::UserCode(u) = &err else {
        panic!("{err}")
    };
    assert_eq!(u.transform, "Fn");
    assert!(u.message.contains("cannot handle b"), "{err}");

    let err = run_bundle(&*exec, PANIC, b"", &elements(&["a"]), None).unwrap_err();
    assert!(matches!(err, Error::UserCode(_)), "{err}");
    assert!(err.to_string().contains("test panic on a"), "{err}");

    let err = run_bundle(&*exec, "test:fn:unknown:v1", b"", &elements(&["a"]), None).unwrap_err();
    assert!(
        err.to_string().contains("unknown URN test:fn:unknown:v1"),
        "{err}"
    );

    assert_eq!(
        run_bundle(&*exec, UPPER, b"", &elements(&["ok"]), None).unwrap(),
        ["OK"]
    );
}

#[test]
fn a_harness_killed_mid_bundle_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let harnesses = Harnesses::start(options()).unwrap();
    let exec = harnesses
        .executor_for("env", &process_environment(dir.path()))
        .unwrap();
    assert_eq!(
        run_bundle(&*exec, UPPER, b"", &elements(&["a"]), None).unwrap(),
        ["A"]
    );

    let err = run_bundle(&*exec, SIGKILL, b"", &elements(&["a"]), None).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Harness { .. }), "{text}");
    assert!(
        text.contains("failed while processing a bundle of stage test-test:fn:sigkill:v1"),
        "{text}"
    );
    assert!(text.contains("signal: 9"), "{text}");

    // Later bundles fail fast, naming the cause.
    let err = run_bundle(&*exec, UPPER, b"", &elements(&["a"]), None).unwrap_err();
    assert!(matches!(err, Error::Harness { .. }), "{err}");
}

#[test]
fn a_harness_that_cannot_start_is_a_clear_error() {
    let harnesses = Harnesses::start(options()).unwrap();
    let env = pb::Environment {
        urn: environments::PROCESS.into(),
        payload: pb::ProcessPayload {
            command: "/bin/sh -c 'echo no harness here >&2; exit 3'".into(),
            ..Default::default()
        }
        .encode_to_vec()
        .into(),
        ..Default::default()
    };
    let exec = harnesses.executor_for("env", &env).unwrap();
    let err = run_bundle(&*exec, UPPER, b"", &elements(&["a"]), None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("exited before connecting"), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("no harness here"), "{text}");
}

#[test]
fn restart_replaces_a_dead_harness_once_and_not_after_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let harnesses = Harnesses::start(options()).unwrap();
    let exec = harnesses
        .executor_for("env", &process_environment(dir.path()))
        .unwrap();
    let err = run_bundle(&*exec, SIGKILL, b"", &elements(&["a"]), None).unwrap_err();
    assert!(matches!(err, Error::Harness { .. }), "{err}");

    // Threads that saw the same death get the same fresh harness.
    let fresh = harnesses.restart("env", &exec).unwrap();
    assert!(!Arc::ptr_eq(&fresh, &exec));
    assert!(Arc::ptr_eq(
        &harnesses.restart("env", &exec).unwrap(),
        &fresh
    ));
    assert!(Arc::ptr_eq(&harnesses.current("env").unwrap(), &fresh));
    assert_eq!(
        run_bundle(&*fresh, UPPER, b"", &elements(&["a", "b"]), None).unwrap(),
        ["A", "B"]
    );
    assert_eq!(harnesses.max_bundle_attempts(), 3);

    harnesses.cancel("the test is done");
    let Err(err) = harnesses.restart("env", &fresh) else {
        panic!("a cancelled job's harness restarted");
    };
    assert!(err.to_string().contains("cancelled"), "{err}");
}
