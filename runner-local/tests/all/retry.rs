//! Bundles whose SDK harness process dies are retried on a fresh harness:
//! stages in a `beam:env:process:v1` environment run in this test binary
//! re-executed as a harness (serving the test executor over gRPC).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oxbeam_fn_api::{HarnessConfig, HarnessOptions, serve_harness};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_environments::environments;
use oxbeam_runner_local::{Error, LocalOptions};
use prost::Message;

use crate::executor::*;
use crate::pipelines::Builder;
use crate::{LINES, run_with};

const CHILD_ENV: &str = "OXBEAM_RUNNER_LOCAL_TEST_HARNESS";
/// Environment id of the harness-process stages.
const PROC: &str = "proc";

/// Entry point of the harness processes: serves the test executor.
#[test]
fn child_harness_main() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let control = std::env::var("CONTROL_API_SERVICE_DESCRIPTOR").unwrap();
    let url = control
        .trim()
        .trim_start_matches("url:")
        .trim()
        .trim_matches('"')
        .to_string();
    let config = HarnessConfig {
        control_endpoint: url,
        id: std::env::var("WORKER_ID").unwrap(),
    };
    let result = serve_harness(config, Arc::new(TestExecutor::default()));
    std::process::exit(if result.is_ok() { 0 } else { 1 });
}

/// A fresh, empty attempt log path.
fn log_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oxbeam-retry-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("attempts.log")
}

fn attempts(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Word count whose Split, Attempt and PairWithOne run in harness
/// processes (the rest in the runner's test executor); Attempt acts on the
/// word "c" in `mode`.
fn word_count_on_harnesses(mode: &str, log: &Path) -> pb::Pipeline {
    let mut b = Builder::new();
    let lines = b.create("Create", LINES);
    let words = b.pardo("Split", SPLIT_WORDS, "", &lines, "str");
    let arg = format!("{mode}|{}|c", log.display());
    let words = b.pardo("Attempt", ATTEMPT, &arg, &words, "str");
    let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &words, "kv_str");
    let counts = b.sum_per_key("Count", &pairs);
    let formatted = b.pardo("Format", FORMAT, "", &counts, "str");
    b.capture("Capture", &formatted);
    let mut p = b.build();
    let c = p.components.as_mut().unwrap();
    for t in c.transforms.values_mut() {
        if ["Split", "Attempt", "PairWithOne"].contains(&t.unique_name.as_str()) {
            t.environment_id = PROC.into();
        }
    }
    let exe = std::env::current_exe().unwrap();
    c.environments.insert(
        PROC.into(),
        pb::Environment {
            urn: environments::PROCESS.into(),
            payload: pb::ProcessPayload {
                // The boot flags the launcher appends go to the inner
                // shell's positional parameters, not to the test binary.
                command: format!(
                    "/bin/sh -c 'exec {} --exact retry::child_harness_main --nocapture --test-threads=1'",
                    exe.display()
                ),
                env: [(CHILD_ENV.to_string(), "1".to_string())].into(),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            ..Default::default()
        },
    );
    p
}

fn options(max_bundle_attempts: usize) -> LocalOptions {
    LocalOptions {
        harness: HarnessOptions {
            connect_timeout: Duration::from_secs(60),
            max_bundle_attempts,
            ..HarnessOptions::default()
        },
        ..crate::options()
    }
}

#[test]
fn a_bundle_whose_harness_exits_is_retried_with_exact_output() {
    let log = log_path("exit-once");
    let p = word_count_on_harnesses("exit-once", &log);
    let (out, _, _) = run_with(&p, options(3)).unwrap();
    assert_eq!(
        out,
        [
            "a: 4 @end-of-global global pane=[07]",
            "b: 3 @end-of-global global pane=[07]",
            "c: 1 @end-of-global global pane=[07]",
            "d: 1 @end-of-global global pane=[07]",
        ]
    );
    let seen = attempts(&log);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_ne!(seen[0], seen[1], "the retry ran in a fresh process");
    assert_ne!(seen[0], format!("pid {}", std::process::id()));
}

#[test]
fn harness_deaths_fail_the_job_after_max_attempts_and_user_errors_at_once() {
    let log = log_path("exit-once-1");
    let p = word_count_on_harnesses("exit-once", &log);
    let Err(err) = run_with(&p, options(1)) else {
        panic!("the job succeeded with one attempt");
    };
    let text = format!("{err:#}");
    assert!(
        matches!(
            err.downcast_ref::<Error>(),
            Some(Error::Execution(oxbeam_fn_api::Error::Harness { .. }))
        ),
        "{text}"
    );
    assert!(text.contains("exit status: 3"), "{text}");
    assert_eq!(attempts(&log).len(), 1);

    let log = log_path("fail");
    let p = word_count_on_harnesses("fail", &log);
    let Err(err) = run_with(&p, options(3)) else {
        panic!("the job succeeded despite the user-code error");
    };
    let text = format!("{err:#}");
    assert!(
        matches!(
            err.downcast_ref::<Error>(),
            Some(Error::Execution(oxbeam_fn_api::Error::UserCode(_)))
        ),
        "{text}"
    );
    assert!(text.contains("refusing \"c\""), "{text}");
    assert_eq!(attempts(&log).len(), 1, "user-code errors are not retried");
}
