//! The streaming engine: TestStream, the generator source, drain and cancel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxbeam_fn_api::Executors;
use oxbeam_model::oxbeam::GeneratePayload;
use oxbeam_model::pipeline as pb;
use oxbeam_model::pipeline::test_stream_payload::{Event, TimestampedElement, event};
use oxbeam_model::urns::{self, standard_coders as c, standard_p_transforms as t};
use oxbeam_runner_local::{Error, LocalOptions, LocalRunner, PipelineResult};
use prost::Message;

use crate::executor::*;
use crate::pipelines::Builder;
use crate::{options, run_with};

/// Builder additions for streaming pipelines.
trait StreamingBuilder {
    fn coder(&mut self, id: &str, urn: &str, components: &[&str]);
    fn fixed_windows(&mut self, id: &str, size_ms: i64, allowed_lateness_ms: i64);
    fn output(&mut self, transform: &str, coder: &str, ws: &str, bounded: bool) -> String;
    fn test_stream(&mut self, name: &str, events: Vec<Event>) -> String;
    fn generate(&mut self, name: &str, payload: GeneratePayload) -> String;
    fn group_varint(&mut self, name: &str, input: &str) -> String;
}

impl StreamingBuilder for Builder {
    fn coder(&mut self, id: &str, urn: &str, components: &[&str]) {
        self.p.components.as_mut().unwrap().coders.insert(
            id.into(),
            pb::Coder {
                spec: Some(pb::FunctionSpec {
                    urn: urn.into(),
                    payload: Default::default(),
                }),
                component_coder_ids: components.iter().map(|s| s.to_string()).collect(),
            },
        );
    }

    fn fixed_windows(&mut self, id: &str, size_ms: i64, allowed_lateness_ms: i64) {
        let payload = pb::FixedWindowsPayload {
            size: Some(prost_types::Duration {
                seconds: size_ms / 1000,
                nanos: ((size_ms % 1000) * 1_000_000) as i32,
            }),
            offset: None,
        };
        self.p
            .components
            .as_mut()
            .unwrap()
            .windowing_strategies
            .insert(
                id.into(),
                pb::WindowingStrategy {
                    window_fn: Some(pb::FunctionSpec {
                        urn: urns::fixed_windows_payload::PROPERTIES.into(),
                        payload: payload.encode_to_vec().into(),
                    }),
                    merge_status: pb::merge_status::Enum::NonMerging as i32,
                    window_coder_id: "iw".into(),
                    allowed_lateness: allowed_lateness_ms,
                    ..Default::default()
                },
            );
    }

    fn output(&mut self, transform: &str, coder: &str, ws: &str, bounded: bool) -> String {
        let id = format!("{transform}.out");
        let comps = self.p.components.as_mut().unwrap();
        comps.pcollections.insert(
            id.clone(),
            pb::PCollection {
                unique_name: id.clone(),
                coder_id: coder.into(),
                windowing_strategy_id: ws.into(),
                is_bounded: if bounded {
                    pb::is_bounded::Enum::Bounded
                } else {
                    pb::is_bounded::Enum::Unbounded
                } as i32,
                ..Default::default()
            },
        );
        id
    }

    fn test_stream(&mut self, name: &str, events: Vec<Event>) -> String {
        let payload = pb::TestStreamPayload {
            coder_id: "str".into(),
            events,
            endpoint: None,
        };
        let out = self.output(name, "str", "global", false);
        self.add(
            name,
            t::primitives::TEST_STREAM,
            payload.encode_to_vec(),
            &[],
            Some(&out),
            "",
            true,
        );
        out
    }

    fn generate(&mut self, name: &str, payload: GeneratePayload) -> String {
        self.coder("kv_varint", c::KV, &["varint", "varint"]);
        let bounded = payload.num_elements > 0;
        let out = self.output(name, "kv_varint", "global", bounded);
        self.add(
            name,
            urns::oxbeam_transforms::GENERATE,
            payload.encode_to_vec(),
            &[],
            Some(&out),
            "",
            true,
        );
        out
    }

    /// GroupByKey of `KV<varint, varint>`.
    fn group_varint(&mut self, name: &str, input: &str) -> String {
        self.coder("kv_varint_iter", c::KV, &["varint", "iter_varint"]);
        let ws = self.p.components.as_ref().unwrap().pcollections[input]
            .windowing_strategy_id
            .clone();
        let out = self.output(name, "kv_varint_iter", &ws, true);
        self.add(
            name,
            t::primitives::GROUP_BY_KEY,
            vec![],
            &[("in", input)],
            Some(&out),
            "",
            true,
        );
        out
    }
}

fn elements(items: &[(&str, i64)]) -> Event {
    Event {
        event: Some(event::Event::ElementEvent(event::AddElements {
            elements: items
                .iter()
                .map(|(s, ts)| TimestampedElement {
                    encoded_element: s.as_bytes().to_vec().into(),
                    timestamp: *ts,
                })
                .collect(),
            tag: String::new(),
        })),
    }
}

fn watermark(to: i64) -> Event {
    Event {
        event: Some(event::Event::WatermarkEvent(event::AdvanceWatermark {
            new_watermark: to,
            tag: String::new(),
        })),
    }
}

fn dropped_late(r: &PipelineResult) -> i64 {
    r.metrics
        .counters
        .iter()
        .filter(|(k, _)| k.name == "dropped_late_elements")
        .map(|(_, v)| v)
        .sum()
}

/// TestStream → fixed(10ms) windows → count per word, twice (the second
/// count groups the first's output: it must not be late).
fn counted_twice(events: Vec<Event>) -> pb::Pipeline {
    let mut b = Builder::new();
    let words = b.test_stream("Words", events);
    let windowed = b.window_into("Window", &words, "fixed");
    let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &windowed, "kv_str");
    let counts = b.sum_per_key("Count", &pairs);
    let formatted = b.pardo("Format", FORMAT, "", &counts, "str");
    b.capture("Capture", &formatted);
    let again = b.sum_per_key("CountAgain", &counts);
    let formatted = b.pardo("FormatAgain", FORMAT, "", &again, "str");
    b.capture("CaptureAgain", &formatted);
    b.build()
}

#[test]
fn test_stream_fires_on_time_panes_and_drops_late_data() {
    let p = counted_twice(vec![
        elements(&[("a", 1), ("b", 2), ("a", 3)]),
        watermark(5),
        elements(&[("a", 12)]),
        watermark(10),
        // [0,10) has fired and expired: "c" is dropped; "d" is on time.
        elements(&[("c", 5), ("d", 15)]),
        watermark(20),
        elements(&[("e", 25)]),
    ]);
    let mut outputs = Vec::new();
    for opts in [
        options(),
        LocalOptions {
            bundle_bytes: 16,
            combiner_lifting: false,
            ..options()
        },
        LocalOptions {
            fusion: false,
            parallelism: 1,
            ..options()
        },
    ] {
        let (out, result, _) = run_with(&p, opts).unwrap();
        assert_eq!(dropped_late(&result), 1);
        outputs.push(out);
    }
    assert!(outputs.iter().all(|o| *o == outputs[0]));
    insta::assert_snapshot!(outputs[0].join("\n"), @r"
        a: 1 @19 [10,20) pane=[07]
        a: 1 @19 [10,20) pane=[07]
        a: 2 @9 [0,10) pane=[07]
        a: 2 @9 [0,10) pane=[07]
        b: 1 @9 [0,10) pane=[07]
        b: 1 @9 [0,10) pane=[07]
        d: 1 @19 [10,20) pane=[07]
        d: 1 @19 [10,20) pane=[07]
        e: 1 @29 [20,30) pane=[07]
        e: 1 @29 [20,30) pane=[07]
        ");
}

/// Panes fire when the watermark passes the end of their window, not at
/// the end of the stream: a window's pane is captured before the elements
/// of later events are.
#[test]
fn panes_fire_as_the_watermark_passes() {
    let mut b = Builder::new();
    let words = b.test_stream(
        "Words",
        vec![
            elements(&[("a", 1), ("b", 2)]),
            watermark(10),
            elements(&[("c", 12)]),
            watermark(20),
        ],
    );
    b.capture("CaptureRaw", &words);
    let windowed = b.window_into("Window", &words, "fixed");
    let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &windowed, "kv_str");
    let groups = b.gbk("Group", &pairs);
    let formatted = b.pardo("Format", FORMAT, "", &groups, "str");
    b.capture("Capture", &formatted);
    let (_, _, exec) = run_with(&b.build(), options()).unwrap();
    let in_order = exec.captured.lock().unwrap().clone();
    let pos = |s: &str| in_order.iter().position(|x| x.starts_with(s)).unwrap();
    assert!(pos("a: [1]") < pos("c @12"), "{in_order:?}");
    assert!(pos("c @12") < pos("c: [1]"), "{in_order:?}");
    assert_eq!(in_order.len(), 6, "{in_order:?}");
}

#[test]
fn allowed_lateness_gives_late_panes() {
    let mut b = Builder::new();
    b.fixed_windows("fixed_late", 10, 100);
    let words = b.test_stream(
        "Words",
        vec![
            elements(&[("a", 1)]),
            watermark(10),
            elements(&[("a", 2)]),
            watermark(50),
            elements(&[("a", 3), ("a", 4)]),
            // Past 9 + 100: the window is gone.
            watermark(120),
            elements(&[("a", 5)]),
        ],
    );
    let windowed = b.window_into("Window", &words, "fixed_late");
    let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &windowed, "kv_str");
    let groups = b.gbk("Group", &pairs);
    let formatted = b.pardo("Format", FORMAT, "", &groups, "str");
    b.capture("Capture", &formatted);
    let (_, result, exec) = run_with(&b.build(), options()).unwrap();
    // On time (first), late (index 1), late (index 2): Beam's pane bytes.
    assert_eq!(
        exec.captured.lock().unwrap().clone(),
        [
            "a: [1] @9 [0,10) pane=[05]",
            "a: [1] @9 [0,10) pane=[18, 01]",
            "a: [1, 1] @9 [0,10) pane=[18, 02]",
        ]
    );
    assert_eq!(dropped_late(&result), 1);
}

#[test]
fn bounded_generator_emits_exactly_n() {
    let mut b = Builder::new();
    let kvs = b.generate(
        "Gen",
        GeneratePayload {
            rate_per_second: 0,
            num_elements: 5000,
            key_count: 7,
            event_time_skew_millis: 3,
            max_out_of_orderness_millis: 4,
            seed: 42,
            start_timestamp_millis: Some(1_000),
        },
    );
    let formatted = b.pardo("Format", FORMAT, "", &kvs, "str");
    b.capture("Capture", &formatted);
    let (out, result, _) = run_with(&b.build(), options()).unwrap();
    assert_eq!(out.len(), 5000);
    assert_eq!(result.metrics.element_counts["Gen.out"], 5000);
    let mut seqs: Vec<u64> = out
        .iter()
        .map(|s| s.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..5000).collect::<Vec<_>>());
    // Keys below 7; timestamps 1000 + i - 3 - jitter(0..=4).
    for line in &out {
        let (key, rest) = line.split_once(": ").unwrap();
        let seq: i64 = rest.split(' ').next().unwrap().parse().unwrap();
        let ts: i64 = rest
            .split('@')
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(key.parse::<u64>().unwrap() < 7);
        assert!((1000 + seq - 7..=1000 + seq - 3).contains(&ts), "{line}");
    }
    // The same seed, the same elements.
    let (again, _, _) = run_with(&b_generated(42), options()).unwrap();
    let (other, _, _) = run_with(&b_generated(43), options()).unwrap();
    assert_eq!(run_with(&b_generated(42), options()).unwrap().0, again);
    assert_ne!(other, again);
}

fn b_generated(seed: u64) -> pb::Pipeline {
    let mut b = Builder::new();
    let kvs = b.generate(
        "Gen",
        GeneratePayload {
            num_elements: 100,
            key_count: 3,
            max_out_of_orderness_millis: 10,
            seed,
            start_timestamp_millis: Some(0),
            ..Default::default()
        },
    );
    let formatted = b.pardo("Format", FORMAT, "", &kvs, "str");
    b.capture("Capture", &formatted);
    b.build()
}

/// An unbounded generator into 50 ms windows, grouped per key.
fn unbounded_grouped() -> pb::Pipeline {
    let mut b = Builder::new();
    b.fixed_windows("fixed50", 50, 0);
    let kvs = b.generate(
        "Gen",
        GeneratePayload {
            rate_per_second: 2000,
            num_elements: 0,
            key_count: 3,
            max_out_of_orderness_millis: 5,
            seed: 7,
            ..Default::default()
        },
    );
    let windowed = b.window_into("Window", &kvs, "fixed50");
    let groups = b.group_varint("Group", &windowed);
    let formatted = b.pardo("Format", FORMAT, "", &groups, "str");
    b.capture("Capture", &formatted);
    b.build()
}

fn start(p: &pb::Pipeline) -> (oxbeam_runner_local::JobHandle, TestExecutor) {
    let exec = TestExecutor::default();
    let executors =
        Executors::new().with(urns::oxbeam_environments::NATIVE, Arc::new(exec.clone()));
    let handle = LocalRunner::new(options()).start(p, &executors).unwrap();
    (handle, exec)
}

#[test]
fn draining_an_unbounded_generator_fires_every_window_and_ends_done() {
    let (handle, exec) = start(&unbounded_grouped());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!handle.is_finished());
    // Windows fire while the job runs.
    let fired_before_drain = exec.captured.lock().unwrap().len();
    assert!(fired_before_drain > 0);
    handle.drain();
    let result = handle.wait().expect("a drained job ends DONE");
    let generated = result.metrics.element_counts["Gen.out"];
    assert!(generated >= 400, "{generated} elements in 300 ms at 2000/s");
    // Every element is in exactly one pane, every pane on time.
    let mut seqs = Vec::new();
    for line in exec.captured() {
        assert!(line.ends_with("pane=[07]"), "{line}");
        let values = line.split('[').nth(1).unwrap().split(']').next().unwrap();
        seqs.extend(values.split(", ").map(|v| v.parse::<u64>().unwrap()));
    }
    seqs.sort();
    assert_eq!(seqs, (0..generated).collect::<Vec<_>>());
}

#[test]
fn wait_timeout_returns_when_the_job_ends_not_when_the_timeout_does() {
    let (handle, _) = start(&unbounded_grouped());
    let t = Instant::now();
    assert!(!handle.wait_timeout(Duration::from_millis(100)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    handle.cancel();
    let t = Instant::now();
    assert!(handle.wait_timeout(Duration::from_secs(30)));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(handle.is_finished());
    assert!(handle.wait_timeout(Duration::ZERO));
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));
}

#[test]
fn cancel_ends_an_unbounded_job_promptly() {
    let (handle, _) = start(&unbounded_grouped());
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    handle.cancel();
    let err = handle.wait().expect_err("a cancelled job fails");
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn a_bounded_pipeline_gives_the_same_result_on_the_streaming_engine() {
    let p = crate::word_count(Some("fixed"));
    let batch = run_with(&p, options()).unwrap().0;
    let streaming = run_with(
        &p,
        LocalOptions {
            streaming: true,
            ..options()
        },
    )
    .unwrap()
    .0;
    assert_eq!(streaming, batch);
}

mod triggers {
    //! Non-default triggers through TestStream (GroupAlsoByWindow in the
    //! streaming engine).

    use oxbeam_model::pipeline as pb;
    use pb::trigger::Trigger as T;

    use super::*;

    fn trigger(t: T) -> pb::Trigger {
        pb::Trigger { trigger: Some(t) }
    }

    fn count(n: i32) -> pb::Trigger {
        trigger(T::ElementCount(pb::trigger::ElementCount {
            element_count: n,
        }))
    }

    fn repeat(t: pb::Trigger) -> pb::Trigger {
        trigger(T::Repeat(Box::new(pb::trigger::Repeat {
            subtrigger: Some(Box::new(t)),
        })))
    }

    fn after_processing_time(delay_ms: i64) -> pb::Trigger {
        trigger(T::AfterProcessingTime(pb::trigger::AfterProcessingTime {
            timestamp_transforms: vec![pb::TimestampTransform {
                timestamp_transform: Some(pb::timestamp_transform::TimestampTransform::Delay(
                    pb::timestamp_transform::Delay {
                        delay_millis: delay_ms,
                    },
                )),
            }],
        }))
    }

    /// Adds windowing strategy `id`: `base`'s window fn with this trigger,
    /// accumulation and lateness.
    fn strategy(
        b: &mut Builder,
        id: &str,
        base: &str,
        t: pb::Trigger,
        mode: pb::accumulation_mode::Enum,
        allowed_lateness: i64,
    ) {
        let comps = b.p.components.as_mut().unwrap();
        let mut ws = comps.windowing_strategies[base].clone();
        ws.trigger = Some(t);
        ws.accumulation_mode = mode as i32;
        ws.allowed_lateness = allowed_lateness;
        comps.windowing_strategies.insert(id.into(), ws);
    }

    fn processing_time(by: i64) -> Event {
        Event {
            event: Some(event::Event::ProcessingTimeEvent(
                event::AdvanceProcessingTime {
                    advance_duration: by,
                },
            )),
        }
    }

    /// TestStream → WindowInto(`ws`) → PairWithOne → GroupByKey → capture,
    /// on the streaming engine; the captured panes in firing order.
    fn grouped(b: Builder, events: Vec<Event>, ws: &str) -> (Vec<String>, PipelineResult) {
        let mut b = b;
        let words = b.test_stream("Words", events);
        let windowed = b.window_into("Window", &words, ws);
        let pairs = b.pardo("PairWithOne", PAIR_WITH_ONE, "", &windowed, "kv_str");
        let groups = b.gbk("Group", &pairs);
        let formatted = b.pardo("Format", FORMAT, "", &groups, "str");
        b.capture("Capture", &formatted);
        let (_, result, exec) = run_with(&b.build(), options()).unwrap();
        let panes = exec.captured.lock().unwrap().clone();
        (panes, result)
    }

    /// Beam's team-score scenario: fixed windows with early firings every
    /// two elements, on-time firing, and late firings for every late
    /// element within the allowed lateness.
    fn team_score(mode: pb::accumulation_mode::Enum) -> (Vec<String>, PipelineResult) {
        let mut b = Builder::new();
        let t = trigger(T::AfterEndOfWindow(Box::new(
            pb::trigger::AfterEndOfWindow {
                early_firings: Some(Box::new(count(2))),
                late_firings: Some(Box::new(count(1))),
            },
        )));
        strategy(&mut b, "team", "fixed", t, mode, 100);
        grouped(
            b,
            vec![
                elements(&[("red", 1), ("red", 2), ("blue", 3)]),
                elements(&[("red", 4)]),
                watermark(10),
                elements(&[("red", 5)]),
                elements(&[("blue", 6), ("blue", 7)]),
                // Past 9 + 100: the window expires; later data is dropped.
                watermark(200),
                elements(&[("red", 8)]),
            ],
            "team",
        )
    }

    #[test]
    fn team_score_discarding() {
        let (panes, result) = team_score(pb::accumulation_mode::Enum::Discarding);
        insta::assert_snapshot!(panes.join("\n"), @r"
        red: [1, 1] @9 [0,10) pane=[11, 00]
        red: [1] @9 [0,10) pane=[24, 01, 00]
        blue: [1] @9 [0,10) pane=[05]
        red: [1] @9 [0,10) pane=[28, 02, 01]
        blue: [1, 1] @9 [0,10) pane=[18, 01]
        ");
        assert_eq!(dropped_late(&result), 1);
    }

    #[test]
    fn team_score_accumulating() {
        let (panes, result) = team_score(pb::accumulation_mode::Enum::Accumulating);
        insta::assert_snapshot!(panes.join("\n"), @r"
        red: [1, 1] @9 [0,10) pane=[11, 00]
        red: [1, 1, 1] @9 [0,10) pane=[24, 01, 00]
        blue: [1] @9 [0,10) pane=[05]
        red: [1, 1, 1, 1] @9 [0,10) pane=[28, 02, 01]
        blue: [1, 1, 1] @9 [0,10) pane=[18, 01]
        ");
        assert_eq!(dropped_late(&result), 1);
    }

    #[test]
    fn processing_time_trigger_follows_test_stream_clock() {
        let mut b = Builder::new();
        strategy(
            &mut b,
            "every10",
            "global",
            repeat(after_processing_time(10)),
            pb::accumulation_mode::Enum::Discarding,
            0,
        );
        let (panes, _) = grouped(
            b,
            vec![
                elements(&[("a", 1)]),
                processing_time(5),
                elements(&[("a", 2)]),
                processing_time(6),
                elements(&[("a", 3), ("b", 4)]),
                // At 20 nothing is due; a processing-time trigger fires once
                // the clock is past its deadline (11 + 10), as in Beam.
                processing_time(9),
                processing_time(2),
                elements(&[("b", 5)]),
            ],
            "every10",
        );
        insta::assert_snapshot!(panes.join("\n"), @r"
        a: [1, 1] @end-of-global global pane=[11, 00]
        a: [1] @end-of-global global pane=[10, 01]
        b: [1] @end-of-global global pane=[11, 00]
        a: [] @end-of-global global pane=[26, 02, 00]
        b: [1] @end-of-global global pane=[26, 01, 00]
        ");
        // Early panes at processing times 11 and 22; at the end of the
        // window an on-time pane for each key, empty for "a" (Beam's
        // default on-time behavior fires always).
    }

    #[test]
    fn sessions_merge_late_data_into_fired_sessions() {
        let mut b = Builder::new();
        strategy(
            &mut b,
            "sessions_late",
            "sessions",
            trigger(T::Default(pb::trigger::Default {})),
            pb::accumulation_mode::Enum::Accumulating,
            50,
        );
        let (panes, result) = grouped(
            b,
            vec![
                elements(&[("x", 1), ("x", 30)]),
                // Fires [1,6) on time; [30,35) is still open.
                watermark(15),
                // Late, within lateness: [4,9) merges with [1,6) into [1,9).
                elements(&[("x", 4)]),
                // Bridges [30,35) and [33,38).
                elements(&[("x", 33)]),
                watermark(100),
                elements(&[("x", 2)]),
            ],
            "sessions_late",
        );
        insta::assert_snapshot!(panes.join("\n"), @r"
        x: [1] @5 [1,6) pane=[05]
        x: [1, 1] @8 [1,9) pane=[09]
        x: [1, 1] @37 [30,38) pane=[05]
        ");
        assert_eq!(dropped_late(&result), 1);
    }

    /// Processing-time triggers on the wall clock: early panes while an
    /// unbounded source runs, every element exactly once after a drain.
    #[test]
    fn processing_time_trigger_on_the_wall_clock() {
        let mut b = Builder::new();
        strategy(
            &mut b,
            "every50",
            "global",
            repeat(after_processing_time(50)),
            pb::accumulation_mode::Enum::Discarding,
            0,
        );
        let kvs = b.generate(
            "Gen",
            GeneratePayload {
                rate_per_second: 1000,
                key_count: 1,
                ..Default::default()
            },
        );
        let windowed = b.window_into("Window", &kvs, "every50");
        let groups = b.group_varint("Group", &windowed);
        let formatted = b.pardo("Format", FORMAT, "", &groups, "str");
        b.capture("Capture", &formatted);
        let (handle, exec) = start(&b.build());
        std::thread::sleep(Duration::from_millis(400));
        let early = exec.captured.lock().unwrap().len();
        assert!(early >= 3, "{early} panes in 400 ms with a 50 ms trigger");
        handle.drain();
        let result = handle.wait().unwrap();
        let generated = result.metrics.element_counts["Gen.out"];
        let mut seqs = Vec::new();
        for line in exec.captured() {
            let values = line.split('[').nth(1).unwrap().split(']').next().unwrap();
            seqs.extend(
                values
                    .split(", ")
                    .filter(|v| !v.is_empty())
                    .map(|v| v.parse::<u64>().unwrap()),
            );
        }
        seqs.sort();
        assert_eq!(seqs, (0..generated).collect::<Vec<_>>());
    }
}

fn compacted(r: &PipelineResult) -> i64 {
    r.metrics
        .counters
        .iter()
        .filter(|(k, _)| k.name == "compacted_accumulators")
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn a_lifted_combine_compacts_its_accumulators_without_changing_panes() {
    // Six TestStream events, each one bundle holding every one of 100 keys
    // once: the GroupByKey of the lifted count gets six accumulators per
    // key, compacted once 64 windows hold four (3 merged away per key).
    let keys: Vec<String> = (0..100).map(|k| format!("k{k:03}")).collect();
    let mut events = Vec::new();
    for ts in 1..=6 {
        let items: Vec<(&str, i64)> = keys.iter().map(|k| (k.as_str(), ts)).collect();
        events.push(elements(&items));
    }
    events.push(watermark(10));
    events.push(elements(&[("late", 5), ("k000", 11)]));
    let p = counted_twice(events);
    let (on, with, _) = run_with(&p, options()).unwrap();
    let (off, without, _) = run_with(
        &p,
        LocalOptions {
            compaction: false,
            ..options()
        },
    )
    .unwrap();
    assert_eq!(on, off);
    assert_eq!(compacted(&with), 300);
    assert_eq!(compacted(&without), 0);
    assert_eq!(dropped_late(&with), 1);
    // Every key counted 6 in [0,10), in both counts; k000 once in [10,20).
    let sixes = on
        .iter()
        .filter(|l| l.ends_with(": 6 @9 [0,10) pane=[07]"))
        .count();
    assert_eq!(sixes, 200, "{on:?}");
    assert_eq!(on.len(), 202);
}
