//! Side inputs: singleton, list, iterable, multimap; window mapping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oxbeam::combiners::{Mean, Sum};
use oxbeam::{DoFn, ParDo, ProcessContext, SideInput, Timestamp, WindowFn};

use crate::common::{pipeline, strings, unfused_pipeline};

#[derive(Clone)]
struct AboveMean {
    mean: SideInput<f64>,
}

impl DoFn for AboveMean {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: &i64, ctx: &mut ProcessContext<'_, i64>) {
        let mean = ctx.side_input(&self.mean);
        if (*x as f64) > *mean {
            ctx.output(*x);
        }
    }
}

#[test]
fn singleton_side_input() {
    for p in [pipeline(), unfused_pipeline()] {
        let xs = p.create("Xs", vec![1i64, 2, 3, 10]);
        let mean = xs.apply("Mean", Mean::globally()).as_singleton();
        let out = xs
            .par_do(
                "AboveMean",
                ParDo::of(AboveMean { mean: mean.clone() }).with_side_input(&mean),
            )
            .collect_for_testing("Out");
        p.run().unwrap();
        assert_eq!(out.sorted(), vec![10]);
    }
}

#[derive(Clone)]
struct Enrich {
    names: SideInput<HashMap<i64, Vec<String>>>,
    stop: SideInput<Vec<String>>,
    all: SideInput<Vec<i64>>,
}

impl DoFn for Enrich {
    type In = i64;
    type Out = String;
    fn process(&mut self, id: &i64, ctx: &mut ProcessContext<'_, String>) {
        let names = ctx.side_input(&self.names);
        let stop: Arc<Vec<String>> = ctx.side_input(&self.stop);
        let all = ctx.side_input(&self.all);
        let mut ns = names.get(id).cloned().unwrap_or_default();
        ns.sort();
        ns.retain(|n| !stop.contains(n));
        ctx.output(format!("{id}:{}:{}", ns.join(","), all.len()));
    }
}

#[test]
fn multimap_list_and_iterable_side_inputs() {
    let p = pipeline();
    let ids = p.create("Ids", vec![1i64, 2, 3]);
    let names = p
        .create(
            "Names",
            vec![
                (1i64, "one".to_string()),
                (1, "uno".to_string()),
                (2, "two".to_string()),
                (2, "zwei".to_string()),
            ],
        )
        .as_multimap();
    let stop = p.create("Stop", strings(&["zwei"])).as_list();
    let all = ids.as_iterable();
    let out = ids
        .par_do(
            "Enrich",
            ParDo::of(Enrich {
                names: names.clone(),
                stop: stop.clone(),
                all: all.clone(),
            })
            .with_side_input(&names)
            .with_side_input(&stop)
            .with_side_input(&all),
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    assert_eq!(out.sorted(), strings(&["1:one,uno:3", "2:two:3", "3::3"]));
}

#[derive(Clone)]
struct ShareOfWindow {
    totals: SideInput<i64>,
}

impl DoFn for ShareOfWindow {
    type In = i64;
    type Out = (i64, i64);
    fn process(&mut self, x: &i64, ctx: &mut ProcessContext<'_, (i64, i64)>) {
        let total = ctx.side_input(&self.totals);
        ctx.output((*x, *total));
    }
}

#[test]
fn windowed_side_inputs_follow_the_main_window() {
    let p = pipeline();
    let xs = p
        .create("Xs", vec![1i64, 2, 61, 62, 63])
        .with_timestamps("Ts", |x: &i64| Timestamp::from_millis(x * 1000))
        .window_into("Minutes", WindowFn::fixed(Duration::from_secs(60)));
    let totals = xs.apply("Total", Sum::globally()).as_singleton_or(0);
    let out = xs
        .par_do(
            "Share",
            ParDo::of(ShareOfWindow {
                totals: totals.clone(),
            })
            .with_side_input(&totals),
        )
        .collect_for_testing("Out");
    // A globally windowed side input is seen from every window.
    let global_total = p.create("G", vec![100i64]).as_singleton();
    let out2 = xs
        .par_do(
            "Global",
            ParDo::of(ShareOfWindow {
                totals: global_total.clone(),
            })
            .with_side_input(&global_total),
        )
        .collect_for_testing("Out2");
    p.run().unwrap();
    assert_eq!(
        out.sorted(),
        vec![(1, 3), (2, 3), (61, 186), (62, 186), (63, 186)]
    );
    assert_eq!(
        out2.sorted().into_iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![100; 5]
    );
}

#[test]
fn empty_singleton_without_default_fails_the_reader() {
    let p = pipeline();
    let xs = p.create("Xs", vec![1i64]);
    let none = p.create("None", Vec::<i64>::new()).as_singleton();
    xs.par_do(
        "Reader",
        ParDo::of(ShareOfWindow {
            totals: none.clone(),
        })
        .with_side_input(&none),
    );
    let err = p.run().unwrap_err();
    let u = err.user_code().expect("a user code error");
    assert_eq!(u.transform, "Reader");
    assert!(u.message.contains("empty"), "{}", u.message);
}

/// Unfused, the runner drops each materialized PCollection once every step
/// reading it is done: `xs` is read by the mean, then by the ParDo that
/// needs the mean, then by the Flatten after it, and each still sees all
/// of it.
#[test]
fn a_pcollection_read_early_and_late_keeps_its_data_for_every_reader() {
    for p in [pipeline(), unfused_pipeline()] {
        let xs = p.create("Xs", (1..=100i64).collect::<Vec<_>>());
        let mean = xs.apply("Mean", Mean::globally()).as_singleton();
        let above = xs.par_do(
            "AboveMean",
            ParDo::of(AboveMean { mean: mean.clone() }).with_side_input(&mean),
        );
        let doubled = above.map("Negate", |x: &i64| -x);
        let all = xs.flatten_with("Flatten", &[doubled]);
        let total = all
            .apply("Total", Sum::globally())
            .collect_for_testing("Out");
        p.run().unwrap();
        // 1..=100 sums to 5050; minus 51..=100, which sum to 3775.
        assert_eq!(total.sorted(), vec![5050 - 3775]);
    }
}
