//! Failures: panics in user code, missing inputs, no partial outputs.

use std::fs;

use oxbeam::io::{ReadFromText, WriteToText};
use oxbeam::{DoFn, ParDo, ProcessContext};

use crate::common::{pipeline, strings};

#[derive(Clone)]
struct Explode;

impl DoFn for Explode {
    type In = String;
    type Out = String;
    fn process(&mut self, s: &String, ctx: &mut ProcessContext<'_, String>) {
        if s == "boom" {
            panic!("cannot handle {s:?}");
        }
        ctx.output(s.clone());
    }
}

#[test]
fn panicking_dofn_names_transform_message_and_element() {
    let p = pipeline();
    p.create("Words", strings(&["fine", "boom", "ok"]))
        .par_do("Explode", ParDo::of(Explode))
        .collect_for_testing("Out");
    let err = p.run().unwrap_err();
    let u = err
        .user_code()
        .unwrap_or_else(|| panic!("expected a user code error, got {err}"));
    assert_eq!(u.transform, "Explode");
    assert_eq!(u.message, "cannot handle \"boom\"");
    assert_eq!(u.element.as_deref(), Some("\"boom\""));
    let text = err.to_string();
    assert!(
        text.contains("Explode") && text.contains("cannot handle") && text.contains("boom"),
        "{text}"
    );
}

#[test]
fn panicking_closure_inside_a_composite_is_named_by_its_full_path() {
    let p = pipeline();
    p.create("Xs", vec![1i64, 2, 0])
        .apply("Invert", InvertAll)
        .collect_for_testing("Out");
    let err = p.run().unwrap_err();
    let u = err.user_code().unwrap();
    assert_eq!(u.transform, "Invert/Divide");
    assert!(u.message.contains("divide by zero"), "{}", u.message);
    assert_eq!(u.element.as_deref(), Some("0"));
}

struct InvertAll;

impl oxbeam::PTransform<oxbeam::PCollection<i64>> for InvertAll {
    type Output = oxbeam::PCollection<i64>;
    fn expand(self, xs: &oxbeam::PCollection<i64>) -> Self::Output {
        xs.map("Divide", |x: &i64| 100 / *x)
    }
}

#[test]
fn long_elements_are_truncated_in_errors() {
    let p = pipeline();
    p.create("Big", vec!["y".repeat(10_000)])
        .map("Fail", |_: &String| -> i64 { panic!("nope") });
    let err = p.run().unwrap_err();
    let element = err.user_code().unwrap().element.clone().unwrap();
    assert!(element.len() < 400, "{}", element.len());
}

#[test]
fn failed_job_leaves_no_complete_looking_output() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("out").to_string_lossy().into_owned();
    let p = pipeline();
    let words = p.create(
        "Words",
        (0..1000).map(|i| format!("w{i}")).collect::<Vec<_>>(),
    );
    words.apply("Write", WriteToText::new(prefix).with_num_shards(2));
    // A second branch fails after (or while) the write stage runs.
    words.map("Fail", |w: &String| -> String {
        if w == "w999" {
            panic!("late failure")
        } else {
            w.clone()
        }
    });
    let err = p.run().unwrap_err();
    assert!(err.to_string().contains("late failure"));
    for e in fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("out-"),
            "complete-looking file {name} after a failed job"
        );
    }
}

#[test]
fn reading_a_glob_that_matches_nothing_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline();
    p.apply(
        "Read",
        ReadFromText::new(format!("{}/nothing-*.txt", dir.path().display())),
    );
    let err = p.run().unwrap_err();
    assert!(err.to_string().contains("no files match"), "{err}");
}

#[test]
fn unknown_runner_is_rejected() {
    let p = oxbeam::Pipeline::new(oxbeam::PipelineOptions {
        runner: "spark".into(),
        ..Default::default()
    });
    p.create("Xs", vec![1i64]);
    let err = p.run().unwrap_err();
    assert!(err.to_string().contains("unknown runner"), "{err}");
}

#[test]
fn panics_in_by_value_maps_say_the_element_was_moved() {
    let p = pipeline();
    p.create("Xs", vec![1i64, 2, 0])
        .map("Invert", |x: i64| 100 / x)
        .collect_for_testing("Out");
    let err = p.run().unwrap_err();
    let u = err.user_code().unwrap();
    assert_eq!(u.transform, "Invert");
    assert!(u.message.contains("divide by zero"), "{}", u.message);
    let element = u.element.as_deref().unwrap();
    assert!(element.contains("moved into the function"), "{element}");

    // By reference, the same failure shows the element.
    let p = pipeline();
    p.create("Xs", vec![1i64, 2, 0])
        .flat_map("Invert", |x: &i64| vec![100 / *x])
        .collect_for_testing("Out");
    let err = p.run().unwrap_err();
    assert_eq!(err.user_code().unwrap().element.as_deref(), Some("0"));
}
