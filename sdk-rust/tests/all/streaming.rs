//! Streaming through the Rust SDK: TestStream scripts and the generator
//! source, run by the local runner's streaming engine.

use std::time::Duration;

use oxbeam::io::Generate;
use oxbeam::window::{AfterCount, AfterProcessingTime, AfterWatermark, Repeatedly, Window};
use oxbeam::{
    BoundedWindow, DoFn, PCollection, ParDo, ProcessContext, SideInput, TestStream, Timestamp,
    TimestampedValue, WindowFn,
};

use crate::common::{pipeline, unfused_pipeline};

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn at(word: &str, ms: i64) -> TimestampedValue<String> {
    TimestampedValue::new(word.to_string(), ts(ms))
}

fn window_text(w: BoundedWindow) -> String {
    match w {
        BoundedWindow::Global => "G".into(),
        BoundedWindow::Interval { start, end } => format!("[{},{})", start.millis(), end.millis()),
    }
}

#[test]
fn test_stream_counts_per_window_and_drops_late_data() {
    for p in [pipeline(), unfused_pipeline()] {
        let out = p
            .apply(
                "Words",
                TestStream::<String>::new()
                    .add_elements(vec![at("a", 1), at("b", 2), at("a", 3)])
                    .advance_watermark_to(ts(10))
                    // "late" is behind the watermark, in an expired window.
                    .add_elements(vec![at("a", 12), at("late", 5)])
                    .advance_watermark_to(ts(20))
                    .advance_watermark_to_infinity(),
            )
            .window_into("Window", WindowFn::fixed(Duration::from_millis(10)))
            .count_per_element("Count")
            .collect_for_testing("Out");
        let result = p.run().unwrap();
        let mut got: Vec<String> = out
            .windowed()
            .into_iter()
            .map(|((w, n), t, win)| format!("{} {w}={n} @{}", window_text(win), t.millis()))
            .collect();
        got.sort();
        assert_eq!(got, ["[0,10) a=2 @9", "[0,10) b=1 @9", "[10,20) a=1 @19"]);
        assert_eq!(result.counter("oxbeam", "dropped_late_elements"), 1);
    }
}

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
        ctx.output(format!(
            "{} {values:?} {:?}{}{} {}/{}",
            kv.0,
            p.timing,
            if p.is_first { " first" } else { "" },
            if p.is_last { " last" } else { "" },
            p.index,
            p.on_time_index,
        ));
    }
}

/// Runs a TestStream of `(team, points)` through `window` and a
/// GroupByKey; the described panes in firing order.
fn panes(stream: TestStream<(String, i64)>, window: Window) -> Vec<String> {
    let p = pipeline();
    let grouped: PCollection<String> = p
        .apply("Scores", stream)
        .window_into("Window", window)
        .group_by_key("Group")
        .par_do("Describe", ParDo::of(DescribePane));
    let out = grouped.collect_for_testing("Out");
    p.run().unwrap();
    out.values()
}

fn score(team: &str, points: i64, ms: i64) -> TimestampedValue<(String, i64)> {
    TimestampedValue::new((team.to_string(), points), ts(ms))
}

/// Beam's team-score scenario: early panes every 2 scores, the on-time
/// pane, late panes for each late score within the allowed lateness.
fn team_score(accumulating: bool) -> Vec<String> {
    let stream = TestStream::new()
        .add_elements(vec![score("red", 3, 1), score("red", 4, 2)])
        .add_elements(vec![score("blue", 5, 3)])
        .add_elements(vec![score("red", 1, 4)])
        .advance_watermark_to(ts(10))
        .add_elements(vec![score("red", 7, 5)])
        .advance_watermark_to(ts(200))
        .add_elements(vec![score("red", 100, 6)]);
    let window = Window::into(WindowFn::fixed(Duration::from_millis(10)))
        .triggering(
            AfterWatermark::past_end_of_window()
                .with_early_firings(AfterCount::new(2))
                .with_late_firings(AfterCount::new(1)),
        )
        .with_allowed_lateness(Duration::from_millis(100));
    let window = if accumulating {
        window.accumulating_fired_panes()
    } else {
        window.discarding_fired_panes()
    };
    panes(stream, window)
}

#[test]
fn team_score_with_discarding_panes() {
    assert_eq!(
        team_score(false),
        [
            "red [3, 4] Early first 0/-1",
            "red [1] OnTime 1/0",
            "blue [5] OnTime first 0/0",
            "red [7] Late 2/1",
        ]
    );
}

#[test]
fn team_score_with_accumulating_panes() {
    assert_eq!(
        team_score(true),
        [
            "red [3, 4] Early first 0/-1",
            "red [1, 3, 4] OnTime 1/0",
            "blue [5] OnTime first 0/0",
            "red [1, 3, 4, 7] Late 2/1",
        ]
    );
}

#[test]
fn processing_time_trigger_fires_on_test_stream_clock() {
    let stream = TestStream::new()
        .add_elements(vec![score("red", 1, 1)])
        .advance_processing_time(Duration::from_millis(30))
        .add_elements(vec![score("red", 2, 2)])
        .advance_processing_time(Duration::from_millis(5))
        .add_elements(vec![score("red", 3, 3)])
        .advance_processing_time(Duration::from_millis(60));
    let window = Window::into(WindowFn::Global)
        .triggering(Repeatedly::forever(
            AfterProcessingTime::past_first_element_in_pane()
                .plus_delay_of(Duration::from_millis(50)),
        ))
        .discarding_fired_panes();
    // Two elements by processing time 35; the first came at 0, so the pane
    // fires when the clock passes 50 (at 95); nothing is left for the
    // on-time pane at the end but Beam fires it anyway (FIRE_ALWAYS).
    assert_eq!(
        panes(stream, window),
        ["red [1, 2, 3] Early first 0/-1", "red [] OnTime last 1/0"]
    );
}

#[test]
fn generate_emits_exactly_n_keyed_sequence_numbers() {
    let p = pipeline();
    let out = p
        .apply(
            "Events",
            Generate::elements(2_000)
                .keys(4)
                .seed(9)
                .event_time_skew(Duration::from_millis(5))
                .starting_at(ts(1_000)),
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    let mut got = out.windowed();
    assert_eq!(got.len(), 2_000);
    got.sort_by_key(|((_, seq), _, _)| *seq);
    for (i, ((key, seq), t, w)) in got.into_iter().enumerate() {
        assert_eq!(seq, i as u64);
        assert!(key < 4);
        // Rate 0: 1 ms apart from the start, minus the skew.
        assert_eq!(t.millis(), 1_000 + i as i64 - 5);
        assert_eq!(w, BoundedWindow::Global);
    }
}

#[test]
fn generated_events_in_windows_give_exact_counts() {
    let p = pipeline();
    let out = p
        .apply(
            "Events",
            Generate::elements(1_000).keys(1).starting_at(ts(0)),
        )
        .window_into("Window", WindowFn::fixed(Duration::from_millis(100)))
        .map("Same", |_: &(u64, u64)| "n".to_string())
        .count_per_element("Count")
        .collect_for_testing("Out");
    p.run().unwrap();
    let mut got: Vec<(String, i64)> = out
        .windowed()
        .into_iter()
        .map(|((_, n), _, w)| (window_text(w), n))
        .collect();
    got.sort();
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|(_, n)| *n == 100), "{got:?}");
}

/// Outputs, per element, its window and the size of its window's side list.
#[derive(Clone)]
struct SideListSize {
    side: SideInput<Vec<u64>>,
}

impl DoFn for SideListSize {
    type In = u64;
    type Out = (String, usize);
    fn process(&mut self, _: &u64, ctx: &mut ProcessContext<'_, (String, usize)>) {
        let n = ctx.side_input(&self.side).len();
        let w = window_text(*ctx.window());
        ctx.output((w, n));
    }
}

#[test]
fn an_unbounded_side_input_is_read_window_by_window() {
    // The side input never ends: each main element waits only until the
    // side input's watermark has passed the end of its window, and then
    // sees that window's side elements, all of them.
    let window = || WindowFn::fixed(Duration::from_millis(100));
    let p = pipeline();
    let side = p
        .apply(
            "Side",
            Generate::unbounded()
                .rate_per_second(1000)
                .starting_at(ts(0)),
        )
        .map("SideSeq", |(_, seq): &(u64, u64)| *seq)
        .window_into("SideWindows", window())
        .as_list();
    let out = p
        .apply(
            "Main",
            Generate::unbounded()
                .rate_per_second(100)
                .starting_at(ts(0)),
        )
        .map("MainSeq", |(_, seq): &(u64, u64)| *seq)
        .window_into("MainWindows", window())
        .par_do(
            "SideListSize",
            ParDo::of(SideListSize { side: side.clone() }).with_side_input(&side),
        )
        .collect_for_testing("Out");
    let job = p.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while out.values().len() < 30 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!job.is_finished());
    job.cancel();
    let _ = job.wait();
    let got = out.values();
    assert!(got.len() >= 30, "only {} results in 20 s", got.len());
    // Main elements are 10 ms apart: ten per window, each seeing the
    // window's 100 side elements (1 ms apart).
    assert!(got.iter().all(|(_, n)| *n == 100), "{got:?}");
    let mut windows: Vec<&String> = got.iter().map(|(w, _)| w).collect();
    windows.sort();
    windows.dedup();
    assert!(windows.len() >= 3, "{windows:?}");
    assert_eq!(windows[0], "[0,100)");
}

mod stateful {
    //! Stateful DoFns on the streaming engine: state kept across bundles,
    //! event-time timers fired as the watermark passes them.

    use oxbeam::state::{
        BagState, Declarations, FiredTimer, StateContext, StatefulDoFn, TimerSpec, ValueState,
    };

    use super::*;

    /// Logs each element, buffers it, and flushes the buffer when the
    /// window ends.
    #[derive(Clone)]
    struct FlushAtWindowEnd {
        buffer: BagState<i64>,
        flush: TimerSpec,
    }

    impl StatefulDoFn for FlushAtWindowEnd {
        type Key = String;
        type Value = i64;
        type Out = String;
        fn declare(&self, d: &mut Declarations) {
            d.state(&self.buffer).timer(&self.flush);
        }
        fn process(&mut self, key: &String, v: &i64, ctx: &mut StateContext<'_, String>) {
            ctx.state(&self.buffer).add(v);
            let end = ctx.window().max_timestamp();
            ctx.timer(&self.flush).set(end);
            ctx.output(format!("{key} got {v}"));
        }
        fn on_timer(&mut self, key: &String, _: &FiredTimer, ctx: &mut StateContext<'_, String>) {
            let mut buffer = ctx.state(&self.buffer);
            let mut values = buffer.read();
            buffer.clear();
            values.sort();
            ctx.output(format!("{key} flush {values:?}"));
        }
    }

    #[test]
    fn event_time_timers_fire_as_the_watermark_passes() {
        let p = pipeline();
        let out = p
            .apply(
                "Scores",
                TestStream::new()
                    .add_elements(vec![score("a", 1, 1), score("a", 2, 2), score("b", 3, 3)])
                    .advance_watermark_to(ts(9))
                    .add_elements(vec![score("a", 4, 4)])
                    .advance_watermark_to(ts(10))
                    .add_elements(vec![score("a", 12, 12)])
                    .advance_watermark_to(ts(30)),
            )
            .window_into("Window", WindowFn::fixed(Duration::from_millis(10)))
            .stateful_par_do(
                "Flush",
                FlushAtWindowEnd {
                    buffer: BagState::new("buffer"),
                    flush: TimerSpec::event_time("flush"),
                },
            )
            .collect_for_testing("Out");
        p.run().unwrap();
        let log = out.values();
        // Keys a and b may run in either order within an event; events and
        // timers are in script order.
        let mut first: Vec<String> = log[..3].to_vec();
        first.sort();
        assert_eq!(first, ["a got 1", "a got 2", "b got 3"]);
        assert_eq!(log[3], "a got 4", "{log:?}");
        let mut flushed: Vec<String> = log[4..6].to_vec();
        flushed.sort();
        assert_eq!(flushed, ["a flush [1, 2, 4]", "b flush [3]"]);
        assert_eq!(log[6..], ["a got 12", "a flush [12]"]);
    }

    #[derive(Clone)]
    struct RunningCount {
        count: ValueState<i64>,
    }

    impl StatefulDoFn for RunningCount {
        type Key = String;
        type Value = i64;
        type Out = (String, i64);
        fn declare(&self, d: &mut Declarations) {
            d.state(&self.count);
        }
        fn process(&mut self, key: &String, v: &i64, ctx: &mut StateContext<'_, (String, i64)>) {
            let mut count = ctx.state(&self.count);
            let n = count.read().unwrap_or(0) + v;
            count.write(&n);
            ctx.output((key.clone(), n));
        }
    }

    #[test]
    fn value_state_lives_across_bundles_of_a_generated_stream() {
        let p = pipeline();
        let out = p
            .apply(
                "Events",
                Generate::elements(3_000)
                    .rate_per_second(20_000)
                    .keys(3)
                    .seed(1)
                    .starting_at(ts(0)),
            )
            .map("Key", |(k, _): &(u64, u64)| (format!("k{k}"), 1i64))
            .stateful_par_do(
                "Count",
                RunningCount {
                    count: ValueState::new("count"),
                },
            )
            .collect_for_testing("Out");
        p.run().unwrap();
        let got = out.values();
        assert_eq!(got.len(), 3_000);
        // Per key, the running counts are 1..=n in order: one state per key
        // across every bundle, one bundle of a key at a time.
        let mut total = 0;
        for k in 0..3 {
            let key = format!("k{k}");
            let counts: Vec<i64> = got
                .iter()
                .filter(|(x, _)| *x == key)
                .map(|(_, c)| *c)
                .collect();
            assert_eq!(counts, (1..=counts.len() as i64).collect::<Vec<_>>());
            total += counts.len();
        }
        assert_eq!(total, 3_000);
    }
}
