//! Integration tests of the local runner, with a test-only executor.

mod codec;
mod executor;
mod perf;
mod pipelines;
mod retry;
mod streaming;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxbeam_fn_api::Executors;
use oxbeam_model::pipeline::Pipeline;
use oxbeam_model::urns;
use oxbeam_runner_local::{LocalOptions, LocalRunner, PipelineResult};

use executor::*;
use pipelines::Builder;

fn options() -> LocalOptions {
    LocalOptions {
        parallelism: 2,
        progress: false,
        ..LocalOptions::default()
    }
}

fn run_with(
    p: &Pipeline,
    opts: LocalOptions,
) -> anyhow::Result<(Vec<String>, PipelineResult, TestExecutor)> {
    let exec = TestExecutor::default();
    let executors =
        Executors::new().with(urns::oxbeam_environments::NATIVE, Arc::new(exec.clone()));
    let result = LocalRunner::new(opts).run(p, &executors)?;
    Ok((exec.captured(), result, exec))
}

fn run(p: &Pipeline) -> Vec<String> {
    run_with(p, options()).unwrap().0
}

/// Every combination of fusion, combiner lifting and tiny bundles.
fn variants() -> Vec<LocalOptions> {
    let mut v = Vec::new();
    for fusion in [true, false] {
        for combiner_lifting in [true, false] {
            for bundle_bytes in [1 << 20, 16] {
                v.push(LocalOptions {
                    fusion,
                    combiner_lifting,
                    bundle_bytes,
                    ..options()
                });
            }
        }
    }
    v
}

fn assert_same_everywhere(p: &Pipeline) -> Vec<String> {
    let expected = run(p);
    for opts in variants() {
        let got = run_with(p, opts.clone()).unwrap().0;
        assert_eq!(got, expected, "options {opts:?}");
    }
    expected
}

const LINES: &[(i64, &str)] = &[(1, "a b a"), (2, "c a b"), (12, "b d"), (13, "a")];

fn word_count(window: Option<&str>) -> Pipeline {
    let mut b = Builder::new();
    let lines = b.create("Create", LINES);
    let mut words = b.pardo("Split", SPLIT_WORDS, "", &lines, "str");
    if let Some(ws) = window {
        words = b.window_into("Window", &words, ws);
    }
    let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &words, "kv_str");
    let counts = b.sum_per_key("Count", &pairs);
    let formatted = b.pardo("Format", FORMAT, "", &counts, "str");
    b.capture("Capture", &formatted);
    b.build()
}

#[test]
fn word_count_in_the_global_window() {
    let out = assert_same_everywhere(&word_count(None));
    insta::assert_snapshot!(out.join("\n"), @r"
    a: 4 @end-of-global global pane=[07]
    b: 3 @end-of-global global pane=[07]
    c: 1 @end-of-global global pane=[07]
    d: 1 @end-of-global global pane=[07]
    ");
}

#[test]
fn word_count_in_fixed_windows() {
    let out = assert_same_everywhere(&word_count(Some("fixed")));
    insta::assert_snapshot!(out.join("\n"), @r"
    a: 1 @19 [10,20) pane=[07]
    a: 3 @9 [0,10) pane=[07]
    b: 1 @19 [10,20) pane=[07]
    b: 2 @9 [0,10) pane=[07]
    c: 1 @9 [0,10) pane=[07]
    d: 1 @19 [10,20) pane=[07]
    ");
}

fn grouped(ws: &str, lines: &[(i64, &str)]) -> Pipeline {
    let mut b = Builder::new();
    let lines = b.create("Create", lines);
    let words = b.pardo("Split", SPLIT_WORDS, "", &lines, "str");
    let windowed = b.window_into("Window", &words, ws);
    let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &windowed, "kv_str");
    let groups = b.gbk("Group", &pairs);
    let formatted = b.pardo("Format", FORMAT, "", &groups, "str");
    b.capture("Capture", &formatted);
    b.build()
}

#[test]
fn group_by_key_with_fixed_windows() {
    let out = assert_same_everywhere(&grouped("fixed", LINES));
    insta::assert_snapshot!(out.join("\n"), @r"
    a: [1, 1, 1] @9 [0,10) pane=[07]
    a: [1] @19 [10,20) pane=[07]
    b: [1, 1] @9 [0,10) pane=[07]
    b: [1] @19 [10,20) pane=[07]
    c: [1] @9 [0,10) pane=[07]
    d: [1] @19 [10,20) pane=[07]
    ");
}

#[test]
fn earliest_output_time() {
    let out = run(&grouped("fixed_earliest", LINES));
    insta::assert_snapshot!(out.join("\n"), @r"
    a: [1, 1, 1] @1 [0,10) pane=[07]
    a: [1] @13 [10,20) pane=[07]
    b: [1, 1] @1 [0,10) pane=[07]
    b: [1] @12 [10,20) pane=[07]
    c: [1] @2 [0,10) pane=[07]
    d: [1] @12 [10,20) pane=[07]
    ");
}

#[test]
fn sliding_windows_put_an_element_in_several_windows() {
    let out = assert_same_everywhere(&grouped("sliding", &[(1, "x"), (7, "x y"), (12, "y")]));
    insta::assert_snapshot!(out.join("\n"), @r"
    x: [1, 1] @9 [0,10) pane=[07]
    x: [1] @14 [5,15) pane=[07]
    x: [1] @4 [-5,5) pane=[07]
    y: [1, 1] @14 [5,15) pane=[07]
    y: [1] @19 [10,20) pane=[07]
    y: [1] @9 [0,10) pane=[07]
    ");
}

#[test]
fn sessions_merge_per_key() {
    // Gap 5: x at 1, 4, 8 is one session [1,13); x at 20 another; y at 3 and 9
    // do not overlap ([3,8) and [9,14)).
    let p = grouped(
        "sessions",
        &[(1, "x"), (4, "x"), (8, "x"), (20, "x"), (3, "y"), (9, "y")],
    );
    let out = assert_same_everywhere(&p);
    insta::assert_snapshot!(out.join("\n"), @r"
    x: [1, 1, 1] @12 [1,13) pane=[07]
    x: [1] @24 [20,25) pane=[07]
    y: [1] @13 [9,14) pane=[07]
    y: [1] @7 [3,8) pane=[07]
    ");
}

#[test]
fn sessions_with_a_combiner_stay_unlifted_and_agree() {
    let mut b = Builder::new();
    let lines = b.create("Create", &[(1, "x"), (4, "x"), (30, "x")]);
    let windowed = b.window_into("Window", &lines, "sessions");
    let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &windowed, "kv_str");
    let counts = b.sum_per_key("Count", &pairs);
    let formatted = b.pardo("Format", FORMAT, "", &counts, "str");
    b.capture("Capture", &formatted);
    let out = assert_same_everywhere(&b.build());
    assert_eq!(
        out,
        ["x: 1 @34 [30,35) pane=[07]", "x: 2 @8 [1,9) pane=[07]"]
    );
}

#[test]
fn flatten_is_a_union_for_stages_and_shuffles() {
    let mut b = Builder::new();
    let a = b.create("A", &[(1, "a b")]);
    let c = b.create("C", &[(2, "b c")]);
    let both = b.flatten("Flatten", &[&a, &c]);
    b.capture("CaptureLines", &both);
    let words = b.pardo("Split", SPLIT_WORDS, "", &both, "str");
    let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &words, "kv_str");
    let p2 = b.pardo("PairAgain", PAIR_WITH_ONE, "", &words, "kv_str");
    let pairs = b.flatten("FlattenPairs", &[&pairs, &p2]);
    let groups = b.gbk("Group", &pairs);
    let formatted = b.pardo("Format", FORMAT, "", &groups, "str");
    b.capture("Capture", &formatted);
    let p = b.build();
    let out = assert_same_everywhere(&p);
    let no_unzip = {
        // Flatten steps materialize the union when unzipping is off.
        let plan = oxbeam_runner_core::plan(
            &p,
            &oxbeam_runner_core::PlanOptions {
                flatten_unzip: false,
                ..Default::default()
            },
        )
        .unwrap();
        let exec = TestExecutor::default();
        let executors =
            Executors::new().with(urns::oxbeam_environments::NATIVE, Arc::new(exec.clone()));
        LocalRunner::new(options())
            .run_plan(&plan, &executors)
            .unwrap();
        exec.captured()
    };
    assert_eq!(no_unzip, out);
    insta::assert_snapshot!(out.join("\n"), @r"
    a b @1 global pane=[0f]
    a: [1, 1] @end-of-global global pane=[07]
    b c @2 global pane=[0f]
    b: [1, 1, 1, 1] @end-of-global global pane=[07]
    c: [1, 1] @end-of-global global pane=[07]
    ");
}

#[test]
fn side_inputs_are_materialized_before_the_reader_runs() {
    let mut b = Builder::new();
    let main = b.create("Main", &[(1, "m1"), (2, "m2")]);
    let lines = b.create("Lines", &[(1, "a b c"), (2, "d")]);
    let side = b.pardo("SideWords", SPLIT_WORDS, "", &lines, "str");
    let out = b.pardo_side("Annotate", WITH_SIDE_COUNT, "", &main, "str", Some(&side));
    b.capture("Capture", &out);
    let out = assert_same_everywhere(&b.build());
    assert_eq!(
        out,
        [
            "m1 (side has 4) @1 global pane=[0f]",
            "m2 (side has 4) @2 global pane=[0f]"
        ]
    );
}

fn many_words(n: usize) -> Vec<(i64, String)> {
    (0..n)
        .map(|i| (i as i64 % 50, format!("w{} w{} common", i % 97, i % 13)))
        .collect()
}

#[test]
fn spilling_shuffles_give_identical_output() {
    let lines = many_words(2000);
    let items: Vec<(i64, &str)> = lines.iter().map(|(t, s)| (*t, s.as_str())).collect();
    let p = grouped("fixed", &items);
    let (expected, normal, _) = run_with(&p, options()).unwrap();
    assert_eq!(normal.spilled_runs, 0);
    for combiner_lifting in [true, false] {
        let opts = LocalOptions {
            memory_budget_bytes: 256,
            bundle_bytes: 512,
            combiner_lifting,
            ..options()
        };
        let (got, result, _) = run_with(&p, opts).unwrap();
        assert!(
            result.spilled_runs > 1,
            "expected spills, got {}",
            result.spilled_runs
        );
        assert_eq!(got, expected);
    }
    let sessions = grouped("sessions", &items);
    let (expected, _, _) = run_with(&sessions, options()).unwrap();
    let (got, result, _) = run_with(
        &sessions,
        LocalOptions {
            memory_budget_bytes: 256,
            bundle_bytes: 512,
            ..options()
        },
    )
    .unwrap();
    assert!(result.spilled_runs > 1);
    assert_eq!(got, expected);
}

#[test]
fn many_bundles_run_in_parallel_with_one_processor_per_thread_and_stage() {
    let lines = many_words(3000);
    let items: Vec<(i64, &str)> = lines.iter().map(|(t, s)| (*t, s.as_str())).collect();
    let p = grouped("fixed", &items);
    let (expected, _, _) = run_with(
        &p,
        LocalOptions {
            parallelism: 1,
            ..options()
        },
    )
    .unwrap();
    let (got, result, exec) = run_with(
        &p,
        LocalOptions {
            parallelism: 4,
            bundle_bytes: 1024,
            ..options()
        },
    )
    .unwrap();
    assert_eq!(got, expected);
    let stage_tasks: usize = result
        .steps
        .iter()
        .filter(|s| s.step.starts_with("stage"))
        .map(|s| s.tasks)
        .sum();
    assert!(stage_tasks > 10, "{:?}", result.steps);
    let processors = exec.processors.load(Ordering::Relaxed);
    assert!(
        processors <= 2 * 4,
        "{processors} processors for 2 stages on 4 threads"
    );
    assert_eq!(exec.teardowns.load(Ordering::Relaxed), processors);
}

#[test]
fn element_counts_per_pcollection() {
    let (_, result, _) = run_with(&word_count(None), options()).unwrap();
    let counts = &result.metrics.element_counts;
    assert_eq!(counts["Create/Impulse.out"], 1);
    // Lifted: one accumulator per key per bundle, grouped into 4 keys.
    assert_eq!(counts["t7/GroupAccumulators.out"], 4);
}

#[test]
fn a_failing_bundle_fails_the_job_with_the_user_error() {
    let mut b = Builder::new();
    let lines = b.create("Create", &[(1, "fine"), (2, "boom"), (3, "fine")]);
    let checked = b.pardo("Check", FAIL_ON, "boom", &lines, "str");
    b.capture("Capture", &checked);
    let p = b.build();
    for opts in variants() {
        let err = run_with(&p, opts).err().expect("the job must fail");
        insta::assert_snapshot!("user_code_failure", err.to_string());
    }
}

#[test]
fn unknown_urn_is_a_plan_error() {
    let mut b = Builder::new();
    let lines = b.create("Create", &[(1, "x")]);
    b.add(
        "Mystery",
        "example:transform:mystery:v1",
        vec![],
        &[("in", &lines)],
        None,
        "",
        true,
    );
    let err = run_with(&b.build(), options()).err().unwrap();
    insta::assert_snapshot!(err.to_string(), @"invalid pipeline: transform 'Mystery' (id t3): has URN 'example:transform:mystery:v1', which is neither a runner primitive nor a composite, and no environment to run it");
}

#[test]
fn unknown_dofn_is_an_executor_error() {
    let mut b = Builder::new();
    let lines = b.create("Create", &[(1, "x")]);
    b.pardo("Weird", "test:dofn:no_such_fn:v1", "", &lines, "str");
    let err = run_with(&b.build(), options()).err().unwrap();
    insta::assert_snapshot!(err.to_string(), @"cannot run transform t3: unknown DoFn test:dofn:no_such_fn:v1");
}

#[test]
fn missing_executor_is_reported() {
    let p = word_count(None);
    let err = LocalRunner::new(options())
        .run(&p, &Executors::new())
        .err()
        .unwrap();
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn empty_pipeline_runs() {
    let (out, result, _) = run_with(&Pipeline::default(), options()).unwrap();
    assert!(out.is_empty());
    assert!(result.steps.is_empty());
}

/// Emits the same malformed bytes to every data sink of its stage.
struct GarbageExecutor;

struct GarbageProcessor(Vec<String>);

impl oxbeam_fn_api::Executor for GarbageExecutor {
    fn name(&self) -> &str {
        "garbage"
    }

    fn create_processor(
        &self,
        d: Arc<oxbeam_model::fn_execution::ProcessBundleDescriptor>,
    ) -> oxbeam_fn_api::Result<Box<dyn oxbeam_fn_api::BundleProcessor>> {
        let sinks = d
            .transforms
            .iter()
            .filter(|(_, t)| {
                t.spec
                    .as_ref()
                    .is_some_and(|s| s.urn == urns::fn_api_transforms::runner::DATA_SINK)
            })
            .map(|(id, _)| id.clone())
            .collect();
        Ok(Box::new(GarbageProcessor(sinks)))
    }
}

impl oxbeam_fn_api::BundleProcessor for GarbageProcessor {
    fn process_bundle(
        &mut self,
        bundle: &mut oxbeam_fn_api::Bundle<'_>,
    ) -> oxbeam_fn_api::Result<()> {
        for s in &self.0 {
            bundle
                .sink
                .emit(s, &[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x0F, 0xFF])?;
        }
        Ok(())
    }
}

#[test]
fn malformed_elements_into_a_shuffle_fail_the_job_cleanly() {
    let mut b = Builder::new();
    let imp = b.impulse("Impulse");
    let kvs = b.pardo("Garbage", IDENTITY, "", &imp, "kv_str");
    b.gbk("Group", &kvs);
    let executors =
        Executors::new().with(urns::oxbeam_environments::NATIVE, Arc::new(GarbageExecutor));
    let err = LocalRunner::new(options())
        .run(&b.build(), &executors)
        .err()
        .unwrap();
    insta::assert_snapshot!(err.to_string(), @"invalid input element of GroupByKey 'Group': truncated input at byte 0: needed 2 bytes, 1 available");
}
