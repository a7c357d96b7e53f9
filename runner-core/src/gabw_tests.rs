//! Exact panes of [`GroupAlsoByWindow`] for Beam's classic trigger
//! scenarios. Each scenario states where its expectations come from: the
//! Beam Python DirectRunner (apache-beam 2.77.0, TestStream; its times in
//! seconds become milliseconds here) or, where that runner differs or
//! fails, Beam Java's ReduceFnRunner rules, which `streaming.md` names as
//! the reference.

use super::*;
use crate::trigger::TimestampTransform;

const G: BoundedWindow = BoundedWindow::Global;

fn strategy(
    window_fn: WindowFn,
    trigger: Trigger,
    accumulation: AccumulationMode,
    allowed_lateness_ms: i64,
) -> WindowingStrategy {
    WindowingStrategy {
        merging: matches!(window_fn, WindowFn::Sessions { .. }),
        window_coder: if window_fn == WindowFn::Global {
            WindowCoderKind::Global
        } else {
            WindowCoderKind::Interval
        },
        window_fn,
        window_coder_id: "w".into(),
        output_time: OutputTime::EndOfWindow,
        accumulation,
        allowed_lateness_ms,
        trigger,
        closing_behavior: ClosingBehavior::EmitIfNonEmpty,
        on_time_behavior: OnTimeBehavior::FireAlways,
        pane_rules: PaneRules::Java,
    }
}

fn fixed(size: i64) -> impl Fn(i64) -> BoundedWindow {
    move |t| {
        let start = t.div_euclid(size) * size;
        BoundedWindow::Interval {
            start: Timestamp::from_millis(start),
            end: Timestamp::from_millis(start + size),
        }
    }
}

fn sessions(gap: i64) -> impl Fn(i64) -> BoundedWindow {
    move |t| BoundedWindow::Interval {
        start: Timestamp::from_millis(t),
        end: Timestamp::from_millis(t + gap),
    }
}

fn global(_: i64) -> BoundedWindow {
    G
}

#[derive(Clone, Copy)]
enum Ev {
    /// One bundle of (value, timestamp ms), then an `advance` with
    /// unchanged time (the engine evaluates triggers after a bundle).
    Add(&'static [(i64, i64)]),
    /// Advance the watermark to this time.
    Wm(i64),
    /// Advance processing time to this time.
    Pt(i64),
    /// End of input: watermark and processing time to +∞.
    End,
}

fn show(p: &FiredPane) -> String {
    let w = match p.window {
        BoundedWindow::Global => "G".to_string(),
        BoundedWindow::Interval { start, end } => format!("[{},{})", start.millis(), end.millis()),
    };
    let ts = if p.timestamp == Timestamp::GLOBAL_WINDOW_MAX {
        "max".to_string()
    } else {
        p.timestamp.millis().to_string()
    };
    let values: Vec<String> = p
        .values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(p.retraction, p.pane.is_retraction);
    format!(
        "{}{w} ts={ts} [{}] {:?}{}{} {}/{}",
        if p.retraction { "RETRACT " } else { "" },
        values.join(","),
        p.pane.timing,
        if p.pane.is_first { " first" } else { "" },
        if p.pane.is_last { " last" } else { "" },
        p.pane.index,
        p.pane.on_time_index,
    )
}

struct Run {
    g: GroupAlsoByWindow,
    wm: Timestamp,
    pt: Timestamp,
    out: Vec<FiredPane>,
}

impl Run {
    fn new(s: &WindowingStrategy) -> Self {
        let mut g = GroupAlsoByWindow::new(s).unwrap();
        // The clock starts at 0.
        g.advance(Timestamp::MIN, Timestamp::from_millis(0), &mut Vec::new());
        Run {
            g,
            wm: Timestamp::MIN,
            pt: Timestamp::from_millis(0),
            out: Vec::new(),
        }
    }

    fn events(&mut self, window_of: &dyn Fn(i64) -> BoundedWindow, events: &[Ev]) -> Vec<String> {
        for e in events {
            match *e {
                Ev::Add(elems) => {
                    for &(v, t) in elems {
                        let value = v.to_string();
                        self.g.process(
                            b"k",
                            window_of(t),
                            Timestamp::from_millis(t),
                            value.as_bytes(),
                        );
                    }
                }
                Ev::Wm(t) => self.wm = Timestamp::from_millis(t),
                Ev::Pt(t) => self.pt = Timestamp::from_millis(t),
                Ev::End => (self.wm, self.pt) = (Timestamp::MAX, Timestamp::MAX),
            }
            self.g.advance(self.wm, self.pt, &mut self.out);
        }
        std::mem::take(&mut self.out).iter().map(show).collect()
    }
}

fn run(
    s: &WindowingStrategy,
    window_of: &dyn Fn(i64) -> BoundedWindow,
    events: &[Ev],
) -> Vec<String> {
    let mut r = Run::new(s);
    let out = r.events(window_of, events);
    assert!(r.g.is_empty(), "state left after the end");
    out
}

use Ev::*;

#[test]
fn default_trigger_on_fixed_windows() {
    // Python DirectRunner: one on-time pane per window.
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::Default,
        AccumulationMode::Discarding,
        0,
    );
    let out = run(
        &s,
        &fixed(10_000),
        &[Add(&[(1, 1000), (2, 2000), (3, 12_000)]), Wm(20_000), End],
    );
    assert_eq!(
        out,
        [
            "[0,10000) ts=9999 [1,2] OnTime first last 0/0",
            "[10000,20000) ts=19999 [3] OnTime first last 0/0",
        ]
    );
}

fn team_score(accumulation: AccumulationMode) -> (Vec<String>, u64) {
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(2))),
            late: Some(Box::new(Trigger::ElementCount(1))),
        },
        accumulation,
        10_000,
    );
    let mut r = Run::new(&s);
    let out = r.events(
        &fixed(10_000),
        &[
            Add(&[(1, 1000), (2, 2000)]),
            Add(&[(3, 3000)]),
            Wm(10_000),
            Add(&[(4, 4000)]),
            Add(&[(5, 5000)]),
            Wm(25_000),
            // Beyond the allowed lateness: dropped.
            Add(&[(6, 6000)]),
            End,
        ],
    );
    assert!(r.g.is_empty());
    (out, r.g.dropped_late())
}

#[test]
fn after_watermark_with_early_and_late_firings_discarding() {
    // Python DirectRunner gives exactly these panes (no empty final pane:
    // the strategy closes with EMIT_IF_NONEMPTY).
    let (out, dropped) = team_score(AccumulationMode::Discarding);
    assert_eq!(
        out,
        [
            "[0,10000) ts=9999 [1,2] Early first 0/-1",
            "[0,10000) ts=9999 [3] OnTime 1/0",
            "[0,10000) ts=9999 [4] Late 2/1",
            "[0,10000) ts=9999 [5] Late 3/2",
        ]
    );
    assert_eq!(dropped, 1);
}

#[test]
fn after_watermark_with_early_and_late_firings_accumulating() {
    // Python DirectRunner gives exactly these panes.
    let (out, dropped) = team_score(AccumulationMode::Accumulating);
    assert_eq!(
        out,
        [
            "[0,10000) ts=9999 [1,2] Early first 0/-1",
            "[0,10000) ts=9999 [1,2,3] OnTime 1/0",
            "[0,10000) ts=9999 [1,2,3,4] Late 2/1",
            "[0,10000) ts=9999 [1,2,3,4,5] Late 3/2",
        ]
    );
    assert_eq!(dropped, 1);
}

#[test]
fn after_watermark_with_early_and_late_firings_retracting() {
    // Accumulating panes, each after the first preceded by the retraction
    // of the previous one, carrying the new pane's info (streaming.md §1).
    let (out, dropped) = team_score(AccumulationMode::Retracting);
    assert_eq!(
        out,
        [
            "[0,10000) ts=9999 [1,2] Early first 0/-1",
            "RETRACT [0,10000) ts=9999 [1,2] OnTime 1/0",
            "[0,10000) ts=9999 [1,2,3] OnTime 1/0",
            "RETRACT [0,10000) ts=9999 [1,2,3] Late 2/1",
            "[0,10000) ts=9999 [1,2,3,4] Late 2/1",
            "RETRACT [0,10000) ts=9999 [1,2,3,4] Late 3/2",
            "[0,10000) ts=9999 [1,2,3,4,5] Late 3/2",
        ]
    );
    assert_eq!(dropped, 1);
}

#[test]
fn default_trigger_fires_late_elements_and_emit_always_closes_with_an_empty_pane() {
    // Beam Java: the default trigger fires again for each late element;
    // under EMIT_ALWAYS expiry adds an empty final pane (Python's runner
    // does not emit it).
    let mut s = strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::Default,
        AccumulationMode::Discarding,
        5_000,
    );
    s.closing_behavior = ClosingBehavior::EmitAlways;
    let out = run(
        &s,
        &fixed(10_000),
        &[Add(&[(1, 1000)]), Wm(12_000), Add(&[(2, 2000)]), End],
    );
    assert_eq!(
        out,
        [
            "[0,10000) ts=9999 [1] OnTime first 0/0",
            "[0,10000) ts=9999 [2] Late 1/1",
            "[0,10000) ts=9999 [] Late last 2/2",
        ]
    );
}

#[test]
fn sessions_merge_when_a_late_element_bridges_them() {
    // Python DirectRunner: the merged session's pane is its first.
    let events = [
        Add(&[(1, 1000), (15, 15_000)]),
        Wm(12_000),
        Add(&[(8, 8000)]),
        Wm(30_000),
        End,
    ];
    let s = strategy(
        WindowFn::Sessions { gap_ms: 10_000 },
        Trigger::Default,
        AccumulationMode::Discarding,
        100_000,
    );
    assert_eq!(
        run(&s, &sessions(10_000), &events),
        [
            "[1000,11000) ts=10999 [1] OnTime first 0/0",
            "[1000,25000) ts=24999 [15,8] OnTime first 0/0",
        ]
    );
    let s = strategy(
        WindowFn::Sessions { gap_ms: 10_000 },
        Trigger::Default,
        AccumulationMode::Accumulating,
        100_000,
    );
    assert_eq!(
        run(&s, &sessions(10_000), &events),
        [
            "[1000,11000) ts=10999 [1] OnTime first 0/0",
            "[1000,25000) ts=24999 [1,15,8] OnTime first 0/0",
        ]
    );
    // Retracting: the merged-away session's pane is retracted before the
    // merged session's first pane.
    let s = strategy(
        WindowFn::Sessions { gap_ms: 10_000 },
        Trigger::Default,
        AccumulationMode::Retracting,
        100_000,
    );
    assert_eq!(
        run(&s, &sessions(10_000), &events),
        [
            "[1000,11000) ts=10999 [1] OnTime first 0/0",
            "RETRACT [1000,11000) ts=10999 [1] OnTime first 0/0",
            "[1000,25000) ts=24999 [1,15,8] OnTime first 0/0",
        ]
    );
}

#[test]
fn sessions_merge_trigger_state_counts_across_sessions() {
    // Beam Java AfterPane.onMerge sums the counts of merged windows: two
    // sessions of one element each merge into one of three, which fires
    // AfterCount(3) early.
    let s = strategy(
        WindowFn::Sessions { gap_ms: 10 },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(3))),
            late: None,
        },
        AccumulationMode::Discarding,
        0,
    );
    let out = run(
        &s,
        &sessions(10),
        &[Add(&[(1, 0)]), Add(&[(2, 15)]), Add(&[(3, 8)]), End],
    );
    assert_eq!(
        out,
        [
            "[0,25) ts=24 [1,2,3] Early first 0/-1",
            "[0,25) ts=24 [] OnTime last 1/0"
        ]
    );
}

#[test]
fn after_processing_time_fires_on_the_clock() {
    // Repeatedly(AfterProcessingTime(5s)). Beam Java fires once the clock
    // is strictly past the deadline (`isAfter`); Python's DirectRunner fires
    // at the deadline itself, so it gives the same panes with the clock at
    // 5000 instead of 5001. At the end of time Java adds the empty on-time
    // pane (its ReduceFnRunnerTest fireEmptyOnDrainInGlobalWindowIfRequested).
    let s = strategy(
        WindowFn::Global,
        Trigger::Repeatedly(Box::new(Trigger::AfterProcessingTime {
            transforms: vec![TimestampTransform::Delay { delay_ms: 5000 }],
        })),
        AccumulationMode::Discarding,
        0,
    );
    let mut r = Run::new(&s);
    let mut out = r.events(&global, &[Add(&[(1, 1)])]);
    assert_eq!(
        r.g.next_processing_time(),
        Some(Timestamp::from_millis(5001))
    );
    out.extend(r.events(&global, &[Pt(4000), Add(&[(2, 2)]), Pt(5000)]));
    assert!(out.is_empty());
    out.extend(r.events(&global, &[Pt(5001)]));
    assert_eq!(r.g.next_processing_time(), None);
    out.extend(r.events(&global, &[Add(&[(3, 3)]), Pt(15_000), End]));
    assert_eq!(
        out,
        [
            "G ts=max [1,2] Early first 0/-1",
            "G ts=max [3] Early 1/-1",
            "G ts=max [] OnTime last 2/0"
        ]
    );
    assert!(r.g.is_empty());
}

#[test]
fn after_processing_time_applies_delay_then_alignment() {
    let s = strategy(
        WindowFn::Global,
        Trigger::AfterProcessingTime {
            transforms: vec![
                TimestampTransform::Delay { delay_ms: 5 },
                TimestampTransform::AlignTo {
                    period_ms: 10,
                    offset_ms: 0,
                },
            ],
        },
        AccumulationMode::Discarding,
        0,
    );
    let mut r = Run::new(&s);
    r.pt = Timestamp::from_millis(2);
    let out = r.events(&global, &[Add(&[(1, 1)])]);
    assert!(out.is_empty());
    assert_eq!(r.g.next_processing_time(), Some(Timestamp::from_millis(11)));
    assert!(r.events(&global, &[Pt(10)]).is_empty());
    assert_eq!(
        r.events(&global, &[Pt(11)]),
        ["G ts=max [1] Early first last 0/-1"]
    );
    // Finished: later elements are dropped.
    assert!(r.events(&global, &[Add(&[(2, 2)]), End]).is_empty());
    assert_eq!(r.g.dropped_late(), 1);
}

#[test]
fn repeatedly_after_count_accumulating() {
    // Python DirectRunner gives the two early panes, then fails at the end
    // of the stream; the final pane follows Beam Java: at expiry the
    // window's last pane fires (ON_TIME: the watermark is past the window
    // and only early panes came before) with the pending element.
    let s = strategy(
        WindowFn::Global,
        Trigger::Repeatedly(Box::new(Trigger::ElementCount(2))),
        AccumulationMode::Accumulating,
        0,
    );
    let events = one_per_bundle(5);
    assert_eq!(
        run(&s, &global, &events),
        [
            "G ts=max [1,2] Early first 0/-1",
            "G ts=max [1,2,3,4] Early 1/-1",
            "G ts=max [1,2,3,4,5] OnTime last 2/0",
        ]
    );
    // All elements in one bundle (batch): Beam evaluates the trigger once
    // after the bundle. Python's batch runner gives the first pane only;
    // Beam Java also emits the on-time pane at expiry (FIRE_ALWAYS).
    assert_eq!(
        run(
            &s,
            &global,
            &[Add(&[(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]), End]
        ),
        [
            "G ts=max [1,2,3,4,5] Early first 0/-1",
            "G ts=max [1,2,3,4,5] OnTime last 1/0",
        ]
    );
}

fn one_per_bundle(n: i64) -> Vec<Ev> {
    (1..=n)
        .map(|i| Add(Box::leak(vec![(i, i)].into_boxed_slice())))
        .chain([End])
        .collect()
}

#[test]
fn after_each_runs_subtriggers_in_order() {
    // Python DirectRunner: [1,2] then [3,4,5] as the last pane; later
    // elements are dropped (the trigger finished).
    let s = strategy(
        WindowFn::Global,
        Trigger::AfterEach(vec![Trigger::ElementCount(2), Trigger::ElementCount(3)]),
        AccumulationMode::Discarding,
        0,
    );
    let mut r = Run::new(&s);
    let out = r.events(&global, &one_per_bundle(7));
    assert_eq!(
        out,
        [
            "G ts=max [1,2] Early first 0/-1",
            "G ts=max [3,4,5] Early last 1/-1"
        ]
    );
    assert_eq!(r.g.dropped_late(), 2);

    // Python DirectRunner gives the four early panes (then fails at the
    // end); the final pane follows Beam Java.
    let s = strategy(
        WindowFn::Global,
        Trigger::Repeatedly(Box::new(Trigger::AfterEach(vec![
            Trigger::ElementCount(2),
            Trigger::ElementCount(1),
        ]))),
        AccumulationMode::Discarding,
        0,
    );
    assert_eq!(
        run(&s, &global, &one_per_bundle(7)),
        [
            "G ts=max [1,2] Early first 0/-1",
            "G ts=max [3] Early 1/-1",
            "G ts=max [4,5] Early 2/-1",
            "G ts=max [6] Early 3/-1",
            "G ts=max [7] OnTime last 4/0",
        ]
    );
}

#[test]
fn after_any_fires_on_the_first_subtrigger() {
    // Python DirectRunner: [1,2] when the clock passes 5s, then [3] when
    // processing time ends; Beam Java adds the empty on-time pane at the
    // end of time (see `after_all_waits_for_every_subtrigger`).
    let s = strategy(
        WindowFn::Global,
        Trigger::Repeatedly(Box::new(Trigger::AfterAny(vec![
            Trigger::ElementCount(3),
            Trigger::AfterProcessingTime {
                transforms: vec![TimestampTransform::Delay { delay_ms: 5000 }],
            },
        ]))),
        AccumulationMode::Discarding,
        0,
    );
    assert_eq!(
        run(
            &s,
            &global,
            &[
                Add(&[(1, 1)]),
                Add(&[(2, 2)]),
                Pt(10_000),
                Add(&[(3, 3)]),
                End
            ]
        ),
        [
            "G ts=max [1,2] Early first 0/-1",
            "G ts=max [3] Early 1/-1",
            "G ts=max [] OnTime last 2/0",
        ]
    );
    // The count wins when it comes first; the clock restarts with the
    // next pane.
    let mut r = Run::new(&s);
    let out = r.events(
        &global,
        &[Add(&[(1, 1), (2, 2), (3, 3)]), Add(&[(4, 4)]), Pt(4000)],
    );
    assert_eq!(out, ["G ts=max [1,2,3] Early first 0/-1"]);
    assert_eq!(
        r.g.next_processing_time(),
        Some(Timestamp::from_millis(5001))
    );
}

#[test]
fn after_all_waits_for_every_subtrigger() {
    // Python's DirectRunner fails on this pipeline; Beam Java semantics:
    // fires once both the count and the clock are satisfied (the clock
    // strictly past the deadline, as Java's AfterProcessingTime).
    let s = strategy(
        WindowFn::Global,
        Trigger::Repeatedly(Box::new(Trigger::AfterAll(vec![
            Trigger::ElementCount(2),
            Trigger::AfterProcessingTime {
                transforms: vec![TimestampTransform::Delay { delay_ms: 5000 }],
            },
        ]))),
        AccumulationMode::Discarding,
        0,
    );
    assert_eq!(
        run(
            &s,
            &global,
            &[
                Add(&[(1, 1)]),
                Pt(10_000),
                Add(&[(2, 2)]),
                Add(&[(3, 3)]),
                Add(&[(4, 4)]),
                Pt(15_000),
                Pt(15_001),
                End,
            ]
        ),
        [
            "G ts=max [1,2] Early first 0/-1",
            "G ts=max [3,4] Early 1/-1",
            // Beam Java fires an empty on-time pane when the watermark
            // reaches the end of time (FIRE_ALWAYS; its ReduceFnRunnerTest
            // fireEmptyOnDrainInGlobalWindowIfRequested).
            "G ts=max [] OnTime last 2/0",
        ]
    );
}

#[test]
fn or_finally_stops_the_main_trigger() {
    // Python DirectRunner: [1], [2], [3] (last); 4 and 5 are dropped.
    let s = strategy(
        WindowFn::Global,
        Trigger::OrFinally {
            main: Box::new(Trigger::Repeatedly(Box::new(Trigger::ElementCount(1)))),
            finally: Box::new(Trigger::ElementCount(3)),
        },
        AccumulationMode::Discarding,
        0,
    );
    let mut r = Run::new(&s);
    let out = r.events(&global, &one_per_bundle(5));
    assert_eq!(
        out,
        [
            "G ts=max [1] Early first 0/-1",
            "G ts=max [2] Early 1/-1",
            "G ts=max [3] Early last 2/-1"
        ]
    );
    assert_eq!(r.g.dropped_late(), 2);
}

#[test]
fn never_fires_only_at_expiry() {
    // Beam Java: Never only gets the final pane at garbage collection
    // (Python's DirectRunner fails on this pipeline).
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::Never,
        AccumulationMode::Discarding,
        0,
    );
    assert_eq!(
        run(
            &s,
            &fixed(10_000),
            &[Add(&[(1, 1000)]), Add(&[(2, 2000)]), Wm(20_000), End]
        ),
        ["[0,10000) ts=9999 [1,2] OnTime first last 0/0"]
    );
    // With allowed lateness the window lives on past its end. Its pane is
    // still on time: the window's hold kept the output watermark at its
    // end (Beam Java's PaneInfoTracker looks at the output watermark).
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::Never,
        AccumulationMode::Discarding,
        5_000,
    );
    let mut r = Run::new(&s);
    assert!(
        r.events(
            &fixed(10_000),
            &[Add(&[(1, 1000)]), Wm(12_000), Add(&[(2, 2000)])]
        )
        .is_empty()
    );
    // The first element's hold stays until its pane fires.
    assert_eq!(r.g.watermark_hold(), Some(Timestamp::from_millis(9999)));
    assert_eq!(
        r.events(&fixed(10_000), &[Wm(15_000)]),
        ["[0,10000) ts=9999 [1,2] OnTime first last 0/0"]
    );
}

fn combiner_run(output_time: OutputTime, accumulation: AccumulationMode) -> Vec<String> {
    let mut s = strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(2))),
            late: None,
        },
        accumulation,
        0,
    );
    s.output_time = output_time;
    run(
        &s,
        &fixed(10_000),
        &[
            Add(&[(3, 3000), (1, 1000)]),
            Add(&[(5, 5000)]),
            Wm(20_000),
            End,
        ],
    )
}

#[test]
fn timestamp_combiners() {
    // Python DirectRunner gives these, except EARLIEST's on-time pane in
    // accumulating mode (Python: 1000). Beam Java releases the holds at
    // every pane, so the on-time pane's timestamp comes from the element
    // that arrived after the early pane: 5000.
    use AccumulationMode::*;
    assert_eq!(
        combiner_run(OutputTime::EarliestInPane, Accumulating),
        [
            "[0,10000) ts=1000 [3,1] Early first 0/-1",
            "[0,10000) ts=5000 [3,1,5] OnTime last 1/0"
        ]
    );
    assert_eq!(
        combiner_run(OutputTime::LatestInPane, Accumulating),
        [
            "[0,10000) ts=3000 [3,1] Early first 0/-1",
            "[0,10000) ts=5000 [3,1,5] OnTime last 1/0"
        ]
    );
    assert_eq!(
        combiner_run(OutputTime::EndOfWindow, Accumulating),
        [
            "[0,10000) ts=9999 [3,1] Early first 0/-1",
            "[0,10000) ts=9999 [3,1,5] OnTime last 1/0"
        ]
    );
    assert_eq!(
        combiner_run(OutputTime::EarliestInPane, Discarding),
        [
            "[0,10000) ts=1000 [3,1] Early first 0/-1",
            "[0,10000) ts=5000 [5] OnTime last 1/0"
        ]
    );
}

#[test]
fn holds_follow_the_timestamp_combiner() {
    let mut s = strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(2))),
            late: None,
        },
        AccumulationMode::Discarding,
        0,
    );
    s.output_time = OutputTime::EarliestInPane;
    let mut r = Run::new(&s);
    assert_eq!(r.g.watermark_hold(), None);
    r.events(&fixed(10_000), &[Add(&[(3, 3000)])]);
    assert_eq!(r.g.watermark_hold(), Some(Timestamp::from_millis(3000)));
    r.events(&fixed(10_000), &[Add(&[(1, 1000)])]);
    // The early pane released the element holds; the end of the window
    // holds until the on-time pane.
    assert_eq!(r.g.watermark_hold(), Some(Timestamp::from_millis(9999)));
    r.events(&fixed(10_000), &[Wm(10_000)]);
    assert_eq!(r.g.watermark_hold(), None);
}

#[test]
fn fired_panes_encode_like_the_batch_group_by_key() {
    let p = FiredPane {
        key: b"\x01k".to_vec(),
        window: G,
        timestamp: Timestamp::GLOBAL_WINDOW_MAX,
        pane: PaneInfo {
            is_first: true,
            is_last: true,
            timing: PaneTiming::OnTime,
            index: 0,
            on_time_index: 0,
            is_retraction: false,
        },
        values: vec![b"\x01a".to_vec(), b"\x01b".to_vec()],
        retraction: false,
    };
    let mut out = Vec::new();
    p.encode(&WindowCoderKind::Global, &mut out);
    let mut want = Timestamp::GLOBAL_WINDOW_MAX.to_ordered_bytes().to_vec();
    want.extend_from_slice(&[0, 0, 0, 1, 0x07, 1, b'k', 0, 0, 0, 2, 1, b'a', 1, b'b']);
    assert_eq!(out, want);
    // Interval window, a later pane with its index, a retraction.
    let r = FiredPane {
        window: BoundedWindow::Interval {
            start: Timestamp::from_millis(0),
            end: Timestamp::from_millis(10),
        },
        timestamp: Timestamp::from_millis(9),
        pane: PaneInfo {
            is_first: false,
            is_last: false,
            timing: PaneTiming::Late,
            index: 2,
            on_time_index: 1,
            is_retraction: true,
        },
        retraction: true,
        ..p
    };
    out.clear();
    r.encode(&WindowCoderKind::Interval, &mut out);
    let mut want = Timestamp::from_millis(9).to_ordered_bytes().to_vec();
    want.extend_from_slice(&[0, 0, 0, 1]);
    want.extend_from_slice(&Timestamp::from_millis(10).to_ordered_bytes());
    want.extend_from_slice(&[
        10,
        0x80 | 0x20 | 0x08,
        2,
        1,
        1,
        b'k',
        0,
        0,
        0,
        2,
        1,
        b'a',
        1,
        b'b',
    ]);
    assert_eq!(out, want);
}

#[test]
fn keys_and_windows_fire_in_timer_order_and_state_is_collected() {
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 10,
            offset_ms: 0,
        },
        Trigger::AfterWatermark {
            early: None,
            late: Some(Box::new(Trigger::ElementCount(1))),
        },
        AccumulationMode::Discarding,
        5,
    );
    let mut g = GroupAlsoByWindow::new(&s).unwrap();
    let t = Timestamp::from_millis;
    let w = |start: i64| BoundedWindow::Interval {
        start: t(start),
        end: t(start + 10),
    };
    g.process(b"b", w(10), t(12), b"b12");
    g.process(b"a", w(10), t(11), b"a11");
    g.process(b"b", w(0), t(3), b"b3");
    assert_eq!(g.watermark_hold(), Some(t(9)));
    let mut out = Vec::new();
    g.advance(t(25), t(0), &mut out);
    let got: Vec<(String, String)> = out
        .iter()
        .map(|p| (String::from_utf8_lossy(&p.key).into_owned(), show(p)))
        .collect();
    assert_eq!(
        got,
        [
            ("b".into(), "[0,10) ts=9 [b3] OnTime first 0/0".into()),
            ("a".into(), "[10,20) ts=19 [a11] OnTime first 0/0".into()),
            ("b".into(), "[10,20) ts=19 [b12] OnTime first 0/0".into()),
        ]
    );
    // [0,10) expired at 14 (lateness 5): its state is gone; [10,20) lives
    // until 24... also passed: everything was collected.
    assert!(g.is_empty());
    assert_eq!(g.watermark_hold(), None);
    // Time does not go back; late data for expired windows is counted.
    g.advance(t(3), t(0), &mut out);
    g.process(b"a", w(0), t(1), b"x");
    assert_eq!(g.dropped_late(), 1);
    assert!(g.is_empty());
}

#[test]
fn planning_checks_triggered_strategies() {
    use crate::optimizer::testing::Builder;
    use oxbeam_model::pipeline as pb;
    let build = |accumulation: pb::accumulation_mode::Enum, env_urn: &str| {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let kv = b.pardo("KV", &imp, "kv_str");
        b.gbk("Group", &kv);
        let mut p = b.build();
        let c = p.components.as_mut().unwrap();
        let ws = c.windowing_strategies.get_mut("global").unwrap();
        ws.accumulation_mode = accumulation as i32;
        ws.trigger = Some(Trigger::Repeatedly(Box::new(Trigger::ElementCount(2))).to_proto());
        c.environments
            .get_mut(crate::optimizer::testing::NATIVE_ENV)
            .unwrap()
            .urn = env_urn.to_string();
        p
    };
    let native = oxbeam_model::urns::oxbeam_environments::NATIVE;
    let process = oxbeam_model::urns::standard_environments::environments::PROCESS;
    let plan = |p: &pb::Pipeline| crate::plan(p, &crate::PlanOptions::default());
    // Triggers plan; the grouping's strategy carries the parsed trigger.
    let ok = plan(&build(pb::accumulation_mode::Enum::Retracting, native)).unwrap();
    let gbk = ok
        .steps()
        .iter()
        .find_map(|s| match s {
            crate::Step::GroupByKey(g) => Some(g),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        gbk.windowing.trigger,
        Trigger::Repeatedly(Box::new(Trigger::ElementCount(2)))
    );
    assert_eq!(gbk.windowing.accumulation, AccumulationMode::Retracting);
    assert!(!gbk.windowing.is_simple_batch_grouping());
    // A Beam SDK harness cannot read retractions.
    let e = plan(&build(pb::accumulation_mode::Enum::Retracting, process)).unwrap_err();
    assert!(e.to_string().contains("RETRACTING"), "{e}");
    plan(&build(pb::accumulation_mode::Enum::Accumulating, process)).unwrap();
}

#[test]
fn early_count_across_merging_sessions_then_the_on_time_pane() {
    // Python DirectRunner gives exactly these panes (times in seconds
    // there): the merged session's count reaches 2; the on-time pane
    // follows, accumulating, even with no new data.
    let s = strategy(
        WindowFn::Sessions { gap_ms: 10_000 },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(2))),
            late: None,
        },
        AccumulationMode::Accumulating,
        0,
    );
    assert_eq!(
        run(
            &s,
            &sessions(10_000),
            &[Add(&[(1, 1000)]), Add(&[(2, 5000)]), Wm(20_000), End]
        ),
        [
            "[1000,15000) ts=14999 [1,2] Early first 0/-1",
            "[1000,15000) ts=14999 [1,2] OnTime last 1/0",
        ]
    );
    // Discarding: the on-time pane is empty, and still emitted
    // (FIRE_ALWAYS); Python DirectRunner agrees.
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(2))),
            late: None,
        },
        AccumulationMode::Discarding,
        0,
    );
    assert_eq!(
        run(
            &s,
            &fixed(10_000),
            &[Add(&[(1, 1000), (2, 2000)]), Wm(20_000), End]
        ),
        [
            "[0,10000) ts=9999 [1,2] Early first 0/-1",
            "[0,10000) ts=9999 [] OnTime last 1/0",
        ]
    );
    // FIRE_IF_NONEMPTY drops that empty on-time pane.
    let mut s = s;
    s.on_time_behavior = OnTimeBehavior::FireIfNonEmpty;
    assert_eq!(
        run(
            &s,
            &fixed(10_000),
            &[Add(&[(1, 1000), (2, 2000)]), Wm(20_000), End]
        ),
        ["[0,10000) ts=9999 [1,2] Early first 0/-1"]
    );
}

/// Throughput smoke check (`cargo test --release -p oxbeam-runner-core
/// gabw_throughput -- --ignored --nocapture`).
#[test]
#[ignore]
fn gabw_throughput() {
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 1000,
            offset_ms: 0,
        },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(100))),
            late: None,
        },
        AccumulationMode::Discarding,
        0,
    );
    let mut g = GroupAlsoByWindow::new(&s).unwrap();
    let mut out = Vec::new();
    let keys: Vec<Vec<u8>> = (0..1000u32).map(|k| k.to_be_bytes().to_vec()).collect();
    let start = std::time::Instant::now();
    let n = 2_000_000i64;
    let mut panes = 0;
    for i in 0..n {
        let t = i / 100;
        let w = fixed(1000)(t);
        g.process(
            &keys[(i % 1000) as usize],
            w,
            Timestamp::from_millis(t),
            b"12345678",
        );
        if i % 10_000 == 9_999 {
            g.advance(
                Timestamp::from_millis(t - 2000),
                Timestamp::from_millis(0),
                &mut out,
            );
            panes += out.len();
            out.clear();
        }
    }
    g.advance(Timestamp::MAX, Timestamp::MAX, &mut out);
    panes += out.len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} elements, {panes} panes in {secs:.2}s: {:.2}M elements/s",
        n as f64 / secs / 1e6
    );
    assert!(g.is_empty());
}

/// Sums the decimal values of each window: a stand-in for a CombineFn's
/// `merge_accumulators`.
fn sum_values(windows: &CompactionBatch<'_>) -> Result<Vec<Vec<u8>>> {
    Ok(windows
        .iter()
        .map(|(_, _, values)| {
            let sum: i64 = values
                .iter()
                .map(|v| std::str::from_utf8(v).unwrap().parse::<i64>().unwrap())
                .sum();
            sum.to_string().into_bytes()
        })
        .collect())
}

#[test]
fn compaction_merges_crowded_windows_and_keeps_panes_and_holds() {
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 10,
            offset_ms: 0,
        },
        Trigger::Default,
        AccumulationMode::Discarding,
        0,
    );
    let mut g = GroupAlsoByWindow::new(&s).unwrap();
    g.set_compaction_threshold(Some(3));
    let w = fixed(10);
    for v in 1..=7 {
        g.process(
            b"a",
            w(1),
            Timestamp::from_millis(1),
            v.to_string().as_bytes(),
        );
    }
    g.process(b"b", w(2), Timestamp::from_millis(2), b"100");
    g.process(b"a", w(15), Timestamp::from_millis(15), b"5");
    // "a" in [0,10) reached 3 values (listed once; more arrived since).
    assert_eq!(g.crowded_windows(), 1);
    let hold = g.watermark_hold();
    let mut seen = Vec::new();
    let merged = g
        .compact(|windows| {
            seen.extend(windows.iter().map(|(k, w, v)| (k.to_vec(), *w, v.len())));
            sum_values(windows)
        })
        .unwrap();
    assert_eq!(seen, vec![(b"a".to_vec(), w(1), 7)]);
    assert_eq!(merged, 6);
    assert_eq!(g.crowded_windows(), 0);
    assert_eq!(g.watermark_hold(), hold);
    // A failing merge leaves every value in place.
    for v in [10, 20] {
        g.process(
            b"a",
            w(1),
            Timestamp::from_millis(1),
            v.to_string().as_bytes(),
        );
    }
    let err = g
        .compact(|_| Err::<Vec<Vec<u8>>, Error>(Error::Internal("merge failed".into())))
        .unwrap_err();
    assert!(err.to_string().contains("merge failed"), "{err}");
    assert_eq!(g.crowded_windows(), 1);
    // Wrong count: refused, values kept.
    for v in [1, 2, 3] {
        g.process(
            b"b",
            w(2),
            Timestamp::from_millis(2),
            v.to_string().as_bytes(),
        );
    }
    assert!(g.compact(|_| Ok::<_, Error>(vec![])).is_err());
    assert_eq!(g.crowded_windows(), 2);
    let mut out = Vec::new();
    g.advance(Timestamp::MAX, Timestamp::MAX, &mut out);
    let mut panes: Vec<String> = out.iter().map(show).collect();
    panes.sort();
    assert_eq!(
        panes,
        vec![
            "[0,10) ts=9 [100,1,2,3] OnTime first last 0/0",
            "[0,10) ts=9 [28,10,20] OnTime first last 0/0",
            "[10,20) ts=19 [5] OnTime first last 0/0",
        ]
    );
}

#[test]
fn advance_up_to_fires_in_batches_holding_the_rest() {
    let s = strategy(
        WindowFn::Fixed {
            size_ms: 10,
            offset_ms: 0,
        },
        Trigger::Default,
        AccumulationMode::Discarding,
        0,
    );
    let mut g = GroupAlsoByWindow::new(&s).unwrap();
    let w = fixed(10);
    for k in 0..10u8 {
        g.process(&[k], w(k.into()), Timestamp::from_millis(k.into()), b"x");
        g.process(&[k], w(20), Timestamp::from_millis(20), b"y");
    }
    let mut out = Vec::new();
    let mut batches = Vec::new();
    let wm = Timestamp::from_millis(15);
    while g.advance_up_to(wm, Timestamp::from_millis(0), &mut out, 4) {
        batches.push(out.len());
        // The windows not yet fired hold the output watermark.
        assert_eq!(g.watermark_hold(), Some(Timestamp::from_millis(9)));
        out.clear();
    }
    batches.push(out.len());
    assert_eq!(batches, vec![4, 4, 2]);
    assert_eq!(g.watermark_hold(), Some(Timestamp::from_millis(29)));
    out.clear();
    assert!(!g.advance_up_to(Timestamp::MAX, Timestamp::MAX, &mut out, 100));
    assert_eq!(out.len(), 10);
    assert!(g.is_empty());
}

/// Beam's fn_runner_test CustomMergingWindowFn, as an SDK answers
/// merge_windows: windows starting at an even time merge into their span.
fn merge_evens(windows: &[(i64, i64)]) -> Result<crate::merge_windows::WindowMap> {
    let evens: Vec<(i64, i64)> = windows.iter().copied().filter(|w| w.0 % 2 == 0).collect();
    let mut map: crate::merge_windows::WindowMap = windows.iter().map(|&w| (w, w)).collect();
    if evens.len() > 1 {
        let span = (
            evens.iter().map(|w| w.0).min().unwrap(),
            evens.iter().map(|w| w.1).max().unwrap(),
        );
        for w in evens {
            map.insert(w, span);
        }
    }
    Ok(map)
}

#[test]
fn sdk_merged_windows_combine_states_as_elements_arrive() {
    let mut s = strategy(
        WindowFn::Custom {
            urn: "beam:window_fn:pickled_python:v1".into(),
        },
        Trigger::ElementCount(2),
        AccumulationMode::Accumulating,
        100,
    );
    s.merging = true;
    s.window_coder = WindowCoderKind::Interval;
    assert!(GroupAlsoByWindow::new(&s).is_err());
    let mut g = GroupAlsoByWindow::with_sdk_merging(&s).unwrap();
    let window = |t: i64| BoundedWindow::Interval {
        start: Timestamp::from_millis(t),
        end: Timestamp::from_millis(t + 10),
    };
    let mut calls = Vec::new();
    let mut add = |g: &mut GroupAlsoByWindow, t: i64, v: &str| {
        g.process_merging(
            b"k",
            window(t),
            Timestamp::from_millis(t),
            v.as_bytes(),
            |ws| {
                calls.push(ws.to_vec());
                merge_evens(ws)
            },
        )
        .unwrap();
    };
    add(&mut g, 1, "a"); // [1,11)
    add(&mut g, 2, "b"); // [2,12)
    add(&mut g, 2, "c"); // already open: no SDK call
    add(&mut g, 4, "d"); // [4,14) merges with [2,12): [2,14)
    let mut out = Vec::new();
    g.advance(
        Timestamp::from_millis(0),
        Timestamp::from_millis(0),
        &mut out,
    );
    // A failing merge changes nothing.
    let failed = g.process_merging(b"k", window(6), Timestamp::from_millis(6), b"x", |_| {
        Err::<crate::merge_windows::WindowMap, Error>(Error::Internal("harness died".into()))
    });
    assert!(failed.is_err());
    g.advance(Timestamp::MAX, Timestamp::MAX, &mut out);
    let panes: Vec<String> = out.iter().map(show).collect();
    assert_eq!(
        panes,
        // AfterCount(2) fires once for the merged window (its third
        // element arrived as the merge happened) and finishes it.
        vec![
            "[2,14) ts=13 [b,c,d] Early first last 0/-1",
            "[1,11) ts=10 [a] OnTime first last 0/0",
        ]
    );
    assert_eq!(
        calls,
        vec![
            vec![(1, 11)],
            vec![(1, 11), (2, 12)],
            vec![(1, 11), (2, 12), (4, 14)],
        ]
    );
}

#[test]
fn a_restored_snapshot_goes_on_as_if_never_stopped() {
    // Sessions with early, on-time and late panes, retracting: windows
    // merge, panes are retracted and late data arrives after the snapshot.
    let s = strategy(
        WindowFn::Sessions { gap_ms: 10 },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(2))),
            late: Some(Box::new(Trigger::ElementCount(1))),
        },
        AccumulationMode::Retracting,
        100,
    );
    let first: &[Ev] = &[
        Add(&[(1, 1), (2, 4)]),
        Add(&[(3, 30)]),
        Pt(5),
        Wm(20),
        Add(&[(4, 12)]),
    ];
    let second: &[Ev] = &[
        Add(&[(5, 8), (6, 31)]),
        Wm(50),
        Add(&[(7, 2)]),
        Add(&[(8, 41)]),
        End,
    ];
    let mut straight = Run::new(&s);
    let mut want = straight.events(&sessions(10), first);
    want.extend(straight.events(&sessions(10), second));

    let mut before = Run::new(&s);
    let mut got = before.events(&sessions(10), first);
    let snapshot = before.g.snapshot();
    drop(before);
    let mut after = Run::new(&s);
    after.g.restore(&snapshot).unwrap();
    (after.wm, after.pt) = (Timestamp::from_millis(20), Timestamp::from_millis(5));
    got.extend(after.events(&sessions(10), second));
    assert!(want.iter().any(|p| p.starts_with("RETRACT")), "{want:#?}");
    assert!(want.iter().any(|p| p.contains("Late")), "{want:#?}");
    assert_eq!(got, want);
    assert!(after.g.is_empty());

    // Not a snapshot: an error, the grouping unchanged.
    let mut g = GroupAlsoByWindow::new(&s).unwrap();
    g.process(b"k", sessions(10)(1), Timestamp::from_millis(1), b"1");
    let err = g.restore(b"\xff\xff\xff\xff\xff").unwrap_err().to_string();
    assert!(
        err.contains("corrupt snapshot of a GroupByKey's windows (5 bytes)"),
        "{err}"
    );
    assert!(!g.is_empty());
}

fn python(mut s: WindowingStrategy) -> WindowingStrategy {
    s.pane_rules = PaneRules::Python;
    s
}

#[test]
fn python_rules_emit_only_when_the_trigger_fires() {
    // Beam Python's runners (GeneralTriggerDriver): AfterCount(3) fires
    // once with the whole bundle and finishes; the second window never
    // reaches 3 and emits nothing at expiry (trigger_test.py test_after_count).
    // The default trigger's pane is never the last.
    let fixed10 = WindowFn::Fixed {
        size_ms: 10,
        offset_ms: 0,
    };
    let s = python(strategy(
        fixed10.clone(),
        Trigger::ElementCount(3),
        AccumulationMode::Discarding,
        0,
    ));
    let out = run(
        &s,
        &fixed(10),
        &[
            Add(&[(1, 1), (2, 2), (3, 3), (4, 4), (10, 10), (11, 11)]),
            End,
        ],
    );
    assert_eq!(out, ["[0,10) ts=9 [1,2,3,4] Early first last 0/-1"]);
    let s = python(strategy(
        fixed10,
        Trigger::Default,
        AccumulationMode::Discarding,
        0,
    ));
    let out = run(&s, &fixed(10), &[Add(&[(1, 1)]), End]);
    assert_eq!(out, ["[0,10) ts=9 [1] OnTime first 0/0"]);
}

#[test]
fn python_rules_fire_late_panes_but_no_closing_pane() {
    // trigger_transcripts.yaml fixed_drop_late_data_after_allowed_lateness:
    // accumulating, allowed lateness 20; Java would close each window with a
    // final pane repeating its values.
    let s = python(strategy(
        WindowFn::Fixed {
            size_ms: 10,
            offset_ms: 0,
        },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(3))),
            late: Some(Box::new(Trigger::ElementCount(1))),
        },
        AccumulationMode::Accumulating,
        20,
    ));
    let out = run(
        &s,
        &fixed(10),
        &[
            Add(&[(1, 1), (2, 2), (80, 80), (81, 81)]),
            Wm(100),
            Add(&[(7, 7)]),
            Add(&[(82, 82)]),
            End,
        ],
    );
    assert_eq!(
        out,
        [
            "[0,10) ts=9 [1,2] OnTime first 0/0",
            "[80,90) ts=89 [80,81] OnTime first 0/0",
            "[80,90) ts=89 [80,81,82] Late 1/1",
        ]
    );
}

#[test]
fn python_rules_default_trigger_with_lateness_fires_late_elements_only() {
    // test_stream_test.py test_gbk_execution_no_triggers: the on-time pane,
    // one late pane for the late element, and nothing when the window
    // expires (Python's runners have no expiry timer to fire on).
    let s = python(strategy(
        WindowFn::Fixed {
            size_ms: 15,
            offset_ms: 0,
        },
        Trigger::Default,
        AccumulationMode::Discarding,
        300,
    ));
    let out = run(
        &s,
        &fixed(15),
        &[
            Add(&[(1, 10), (2, 10)]),
            Wm(20),
            Wm(300),
            Add(&[(3, 12)]),
            End,
        ],
    );
    assert_eq!(
        out,
        [
            "[0,15) ts=14 [1,2] OnTime first 0/0",
            "[0,15) ts=14 [3] Late 1/1",
        ]
    );
}

#[test]
fn python_rules_keep_an_expired_window_for_its_processing_time_trigger() {
    // snippets_test.py test_model_setting_trigger: the watermark passes the
    // window before the clock reaches AfterProcessingTime's deadline, which
    // Python fires at the deadline itself (Java: strictly after).
    let s = python(strategy(
        WindowFn::Fixed {
            size_ms: 60_000,
            offset_ms: 0,
        },
        Trigger::AfterProcessingTime {
            transforms: vec![TimestampTransform::Delay { delay_ms: 600_000 }],
        },
        AccumulationMode::Discarding,
        0,
    ));
    let mut r = Run::new(&s);
    let out = r.events(&fixed(60_000), &[Add(&[(1, 10_000)]), Wm(70_000)]);
    assert!(out.is_empty());
    assert_eq!(
        r.g.next_processing_time(),
        Some(Timestamp::from_millis(600_000))
    );
    // Late for the expired window: dropped. (The pane is on time: the
    // window's hold kept the output watermark back. Python labels it LATE,
    // comparing the processing time with the window's end.)
    let out = r.events(&fixed(60_000), &[Add(&[(2, 20_000)]), Pt(600_000)]);
    assert_eq!(out, ["[0,60000) ts=59999 [1] OnTime first last 0/0"]);
    assert!(r.g.is_empty());
    assert_eq!(r.g.dropped_late(), 1);
    // A deadline the clock never reaches: the window goes at the end of
    // the input.
    let mut r = Run::new(&s);
    let end = Wm(Timestamp::MAX.millis());
    let out = r.events(&fixed(60_000), &[Add(&[(1, 10_000)]), Wm(70_000), end]);
    assert!(out.is_empty());
    assert!(r.g.is_empty());
    assert_eq!(r.g.watermark_hold(), None);
}

#[test]
fn python_rules_reset_composite_early_triggers_and_keep_holds() {
    // trigger_test.py test_multiple_accumulating_firings: the early
    // AfterAll(AfterCount(1), AfterProcessingTime(5)) starts over after
    // firing, so element 6 does not fire at once. With OUTPUT_AT_EARLIEST,
    // Beam Python keeps the hold until the on-time pane.
    let mut s = python(strategy(
        WindowFn::Fixed {
            size_ms: 10_000,
            offset_ms: 0,
        },
        Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::AfterAll(vec![
                Trigger::ElementCount(1),
                Trigger::AfterProcessingTime {
                    transforms: vec![TimestampTransform::Delay { delay_ms: 5000 }],
                },
            ]))),
            late: None,
        },
        AccumulationMode::Accumulating,
        0,
    ));
    s.output_time = OutputTime::EarliestInPane;
    let out = run(
        &s,
        &fixed(10_000),
        &[
            Add(&[(1, 1000), (2, 2000)]),
            Pt(5000),
            Add(&[(6, 6000)]),
            Pt(7000),
            Wm(10_000),
            End,
        ],
    );
    assert_eq!(
        out,
        [
            "[0,10000) ts=1000 [1,2] Early first 0/-1",
            "[0,10000) ts=1000 [1,2,6] OnTime last 1/0",
        ]
    );
}

#[test]
fn python_rules_fire_never_once_in_batch() {
    // Beam Python's batch runner turns Never into Always (one pane);
    // Java's fires it at expiry, which batch reaches as well.
    let s = python(strategy(
        WindowFn::Global,
        Trigger::Never,
        AccumulationMode::Discarding,
        0,
    ));
    let batch = s.for_batch();
    assert_eq!(batch.trigger, Trigger::Always);
    assert!(batch.is_simple_batch_grouping());
    assert_eq!(batch.batch_pane(), java_only_pane());
    assert_eq!(
        run(&s, &global, &[Add(&[(1, 1)]), End]),
        Vec::<String>::new()
    );
    let java = strategy(
        WindowFn::Global,
        Trigger::Never,
        AccumulationMode::Discarding,
        0,
    );
    assert_eq!(java.for_batch().trigger, Trigger::Never);
    // The one pane of a fixed window's plain batch grouping is not the
    // last under Python's rules; Always fires it early there.
    let fixed10 = WindowFn::Fixed {
        size_ms: 10,
        offset_ms: 0,
    };
    let fixed_default = python(strategy(
        fixed10.clone(),
        Trigger::Default,
        AccumulationMode::Discarding,
        0,
    ));
    assert_eq!(
        fixed_default.batch_pane(),
        PaneInfo {
            is_last: false,
            ..java_only_pane()
        }
    );
    let fixed_always = python(strategy(
        fixed10,
        Trigger::Always,
        AccumulationMode::Discarding,
        0,
    ));
    assert_eq!(
        fixed_always.batch_pane(),
        PaneInfo {
            is_last: false,
            timing: PaneTiming::Early,
            on_time_index: -1,
            ..java_only_pane()
        }
    );
}

fn java_only_pane() -> PaneInfo {
    PaneInfo {
        timing: PaneTiming::OnTime,
        ..PaneInfo::NO_FIRING
    }
}
