//! Triggers, accumulation modes and timestamp combiners of GroupByKey in
//! batch, with exact panes. Batch is Beam's streaming model with all input
//! present and the watermark then jumping to +∞: per key, the trigger sees
//! all elements at once, then the window's timers fire. Expectations follow
//! Beam Java's ReduceFnRunner (streaming.md §1); where Beam Python's batch
//! runner differs, the test says so.

use std::time::Duration;

use oxbeam::window::{AfterCount, AfterWatermark, Repeatedly, TimestampCombiner, Window, WindowFn};
use oxbeam::{BoundedWindow, DoFn, PCollection, ParDo, ProcessContext, Timestamp};

use crate::common::{pipeline, unfused_pipeline};

/// Describes each grouped element: key, sorted values and pane.
#[derive(Clone)]
struct DescribePane;

impl DoFn for DescribePane {
    type In = (String, Vec<i64>);
    type Out = String;
    fn process(&mut self, kv: &(String, Vec<i64>), ctx: &mut ProcessContext<'_, String>) {
        let mut values = kv.1.clone();
        values.sort();
        let p = *ctx.pane();
        let text = format!(
            "{}{} {values:?} {:?}{}{} {}/{}",
            if p.is_retraction() { "RETRACT " } else { "" },
            kv.0,
            p.timing,
            if p.is_first { " first" } else { "" },
            if p.is_last { " last" } else { "" },
            p.index,
            p.on_time_index,
        );
        ctx.output(text);
    }
}

fn window_text(w: BoundedWindow) -> String {
    match w {
        BoundedWindow::Global => "G".into(),
        BoundedWindow::Interval { start, end } => format!("[{},{})", start.millis(), end.millis()),
    }
}

/// Runs `build` on `(key, value, event time ms)` input and returns the
/// described panes with window and timestamp, sorted.
fn panes(
    input: &[(&str, i64, i64)],
    build: impl Fn(PCollection<(String, i64)>) -> PCollection<(String, i64)>,
) -> Vec<String> {
    let mut results = Vec::new();
    for p in [pipeline(), unfused_pipeline()] {
        let input: Vec<(String, (i64, i64))> = input
            .iter()
            .map(|&(k, v, t)| (k.to_string(), (v, t)))
            .collect();
        let events = p
            .create("Events", input)
            .with_timestamps("Ts", |e: &(String, (i64, i64))| {
                Timestamp::from_millis(e.1.1)
            })
            .map("KV", |e: &(String, (i64, i64))| (e.0.clone(), e.1.0));
        let out = build(events)
            .group_by_key("Group")
            .par_do("Describe", ParDo::of(DescribePane))
            .collect_for_testing("Out");
        p.run().unwrap();
        let mut got: Vec<String> = out
            .windowed()
            .into_iter()
            .map(|(text, ts, w)| {
                let ts = if ts == Timestamp::GLOBAL_WINDOW_MAX {
                    "max".to_string()
                } else {
                    ts.millis().to_string()
                };
                format!("{} ts={ts} {text}", window_text(w))
            })
            .collect();
        got.sort();
        results.push(got);
    }
    assert_eq!(results[0], results[1], "fused and unfused runs differ");
    results.remove(0)
}

#[test]
fn repeatedly_after_count_accumulating() {
    // Key a: the count is reached once all its elements are in, so one
    // early pane; at +∞ the window expires and fires its on-time pane
    // (FIRE_ALWAYS) with the accumulated data. Beam Python's batch runner
    // emits only the early pane. Key b never reaches the count: its only
    // pane is the on-time one at expiry.
    let got = panes(
        &[
            ("a", 1, 1),
            ("a", 2, 2),
            ("a", 3, 3),
            ("a", 4, 4),
            ("a", 5, 5),
            ("b", 7, 7),
        ],
        |pc| {
            pc.window_into(
                "Window",
                Window::into(WindowFn::Global)
                    .triggering(Repeatedly::forever(AfterCount::new(2)))
                    .accumulating_fired_panes(),
            )
        },
    );
    assert_eq!(
        got,
        [
            "G ts=max a [1, 2, 3, 4, 5] Early first 0/-1",
            "G ts=max a [1, 2, 3, 4, 5] OnTime last 1/0",
            "G ts=max b [7] OnTime first last 0/0",
        ]
    );
}

#[test]
fn retracting_panes_are_marked() {
    let got = panes(&[("a", 1, 1), ("a", 2, 2), ("a", 3, 3)], |pc| {
        pc.window_into(
            "Window",
            Window::into(WindowFn::Global)
                .triggering(Repeatedly::forever(AfterCount::new(2)))
                .retracting_fired_panes(),
        )
    });
    assert_eq!(
        got,
        [
            "G ts=max RETRACT a [1, 2, 3] OnTime last 1/0",
            "G ts=max a [1, 2, 3] Early first 0/-1",
            "G ts=max a [1, 2, 3] OnTime last 1/0",
        ]
    );
}

#[test]
fn timestamp_combiners() {
    let input = [
        ("a", 1, 3_000),
        ("a", 2, 1_000),
        ("a", 3, 12_000),
        ("b", 4, 5_000),
    ];
    let run = |combiner| {
        panes(&input, move |pc| {
            pc.window_into(
                "Window",
                Window::into(WindowFn::fixed(Duration::from_secs(10)))
                    .triggering(AfterWatermark::past_end_of_window())
                    .with_timestamp_combiner(combiner),
            )
        })
    };
    assert_eq!(
        run(TimestampCombiner::Earliest),
        [
            "[0,10000) ts=1000 a [1, 2] OnTime first last 0/0",
            "[0,10000) ts=5000 b [4] OnTime first last 0/0",
            "[10000,20000) ts=12000 a [3] OnTime first last 0/0",
        ]
    );
    assert_eq!(
        run(TimestampCombiner::Latest),
        [
            "[0,10000) ts=3000 a [1, 2] OnTime first last 0/0",
            "[0,10000) ts=5000 b [4] OnTime first last 0/0",
            "[10000,20000) ts=12000 a [3] OnTime first last 0/0",
        ]
    );
    assert_eq!(
        run(TimestampCombiner::EndOfWindow),
        [
            "[0,10000) ts=9999 a [1, 2] OnTime first last 0/0",
            "[0,10000) ts=9999 b [4] OnTime first last 0/0",
            "[10000,20000) ts=19999 a [3] OnTime first last 0/0",
        ]
    );
    // The default trigger keeps the plain shuffle; same timestamps.
    let plain = panes(&input, |pc| {
        pc.window_into(
            "Window",
            Window::into(WindowFn::fixed(Duration::from_secs(10)))
                .with_timestamp_combiner(TimestampCombiner::Earliest),
        )
    });
    assert_eq!(
        plain,
        [
            "[0,10000) ts=1000 a [1, 2] OnTime first last 0/0",
            "[0,10000) ts=5000 b [4] OnTime first last 0/0",
            "[10000,20000) ts=12000 a [3] OnTime first last 0/0",
        ]
    );
}

#[test]
fn sessions_with_early_firings() {
    // Sessions of gap 10s: a's elements at 1s and 5s merge into [1s, 15s);
    // AfterCount(2) early firings see the merged count (Beam sums counts
    // when windows merge), so a gets an early pane, then the on-time pane
    // (accumulating, FIRE_ALWAYS) at the end of the session.
    let got = panes(
        &[
            ("a", 1, 1_000),
            ("a", 2, 5_000),
            ("a", 3, 30_000),
            ("b", 4, 2_000),
        ],
        |pc| {
            pc.window_into(
                "Window",
                Window::into(WindowFn::sessions(Duration::from_secs(10)))
                    .triggering(
                        AfterWatermark::past_end_of_window().with_early_firings(AfterCount::new(2)),
                    )
                    .accumulating_fired_panes(),
            )
        },
    );
    assert_eq!(
        got,
        [
            "[1000,15000) ts=14999 a [1, 2] Early first 0/-1",
            "[1000,15000) ts=14999 a [1, 2] OnTime last 1/0",
            "[2000,12000) ts=11999 b [4] OnTime first last 0/0",
            "[30000,40000) ts=39999 a [3] OnTime first last 0/0",
        ]
    );
}

#[test]
fn triggered_strategies_reach_the_pipeline_proto() {
    let p = pipeline();
    let pc = p
        .create("Xs", vec![("k".to_string(), 1i64)])
        .window_into(
            "Window",
            Window::into(WindowFn::Global)
                .triggering(
                    AfterWatermark::past_end_of_window()
                        .with_early_firings(AfterCount::new(3))
                        .or_finally(AfterCount::new(10)),
                )
                .with_allowed_lateness(Duration::from_secs(5))
                .accumulating_fired_panes(),
        )
        .map("Same", |kv: &(String, i64)| kv.clone());
    let proto = p.to_proto();
    let components = proto.components.unwrap();
    let ws_id = &components.pcollections[pc.id()].windowing_strategy_id;
    let ws = &components.windowing_strategies[ws_id];
    assert_eq!(ws.allowed_lateness, 5000);
    assert_eq!(
        ws.accumulation_mode,
        oxbeam_model::pipeline::accumulation_mode::Enum::Accumulating as i32
    );
    let t = format!("{:?}", ws.trigger);
    assert!(
        t.contains("OrFinally") && t.contains("AfterEndOfWindow"),
        "{t}"
    );
    assert!(!ws.window_coder_id.is_empty());
}

#[test]
fn grouped_output_fires_by_the_continuation_trigger() {
    let p = pipeline();
    let grouped = p
        .create("Xs", vec![("k".to_string(), 1i64)])
        .window_into(
            "Window",
            Window::into(WindowFn::fixed(Duration::from_secs(60)))
                .triggering(
                    AfterWatermark::past_end_of_window()
                        .with_early_firings(AfterCount::new(3))
                        .with_late_firings(AfterCount::new(2)),
                )
                .with_allowed_lateness(Duration::from_secs(5))
                .accumulating_fired_panes(),
        )
        .group_by_key("Group");
    let proto = p.to_proto();
    let components = proto.components.unwrap();
    let ws = &components.windowing_strategies
        [&components.pcollections[grouped.id()].windowing_strategy_id];
    // As Beam: counts continue as counts of one; the rest of the strategy
    // is the input's.
    let t = format!("{:?}", ws.trigger);
    assert_eq!(t.matches("element_count: 1").count(), 2, "{t}");
    assert!(
        !t.contains("element_count: 3") && !t.contains("element_count: 2"),
        "{t}"
    );
    assert_eq!(ws.allowed_lateness, 5000);
    assert_eq!(
        ws.accumulation_mode,
        oxbeam_model::pipeline::accumulation_mode::Enum::Accumulating as i32
    );
}

#[test]
fn combiners_after_a_triggered_grouping_see_every_pane() {
    // Combiner lifting would pre-combine before the shuffle and hide the
    // element count from AfterCount; with triggers it is skipped, and the
    // count runs once per pane.
    for p in [pipeline(), unfused_pipeline()] {
        let words = ["a", "a", "a", "a", "a", "b"].map(String::from).to_vec();
        let out = p
            .create("Words", words)
            .window_into(
                "Window",
                Window::into(WindowFn::Global)
                    .triggering(Repeatedly::forever(AfterCount::new(2)))
                    .accumulating_fired_panes(),
            )
            .count_per_element("Count")
            .collect_for_testing("Out");
        p.run().unwrap();
        assert_eq!(
            out.sorted(),
            [
                ("a".to_string(), 5),
                ("a".to_string(), 5),
                ("b".to_string(), 1)
            ]
        );
    }
}
