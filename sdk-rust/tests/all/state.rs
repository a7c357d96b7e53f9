//! Stateful DoFns (state and timers) on the local runner: exact outputs.

use std::time::Duration;

use oxbeam::state::{
    BagState, CombiningState, Declarations, FiredTimer, MapState, OrderedListState, SetState,
    StateContext, StatefulDoFn, TimeDomain, TimerSpec, ValueState,
};
use oxbeam::{BoundedWindow, CombineFn, Timestamp, WindowFn};

use crate::common::{pipeline, unfused_pipeline};

fn kv(k: &str, v: i64) -> (String, i64) {
    (k.to_string(), v)
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// A running sum per key in ValueState, emitted with each input.
#[derive(Clone)]
pub(crate) struct RunningCount {
    pub count: ValueState<i64>,
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
fn running_count_per_key_with_value_state() {
    for p in [pipeline(), unfused_pipeline()] {
        let input: Vec<(String, i64)> = (0..300).map(|i| kv(&format!("k{}", i % 7), 1)).collect();
        let out = p
            .create("In", input)
            .stateful_par_do(
                "Count",
                RunningCount {
                    count: ValueState::new("count"),
                },
            )
            .collect_for_testing("Out");
        p.run().unwrap();
        let mut want: Vec<(String, i64)> = (0..7)
            .flat_map(|k| {
                let n = (0..300).filter(|i| i % 7 == k).count() as i64;
                (1..=n).map(move |c| kv(&format!("k{k}"), c))
            })
            .collect();
        want.sort();
        assert_eq!(out.sorted(), want);
        // Per key, the counts come in order: one key, one bundle at a time.
        let values = out.values();
        for k in 0..7 {
            let key = format!("k{k}");
            let counts: Vec<i64> = values
                .iter()
                .filter(|(x, _)| *x == key)
                .map(|(_, c)| *c)
                .collect();
            let mut sorted = counts.clone();
            sorted.sort();
            assert_eq!(counts, sorted, "key {key}");
        }
    }
}

/// Buffers values per key and window; flushes them, sorted, when the
/// window ends.
#[derive(Clone)]
struct BufferUntilWindowEnd {
    buffer: BagState<i64>,
    flush: TimerSpec,
}

impl StatefulDoFn for BufferUntilWindowEnd {
    type Key = String;
    type Value = i64;
    type Out = (String, Vec<i64>);
    fn declare(&self, d: &mut Declarations) {
        d.state(&self.buffer).timer(&self.flush);
    }
    fn process(&mut self, _: &String, v: &i64, ctx: &mut StateContext<'_, (String, Vec<i64>)>) {
        ctx.state(&self.buffer).add(v);
        let end = ctx.window().max_timestamp();
        ctx.timer(&self.flush).set(end);
    }
    fn on_timer(
        &mut self,
        key: &String,
        timer: &FiredTimer,
        ctx: &mut StateContext<'_, (String, Vec<i64>)>,
    ) {
        assert!(timer.is(&self.flush));
        let mut buffer = ctx.state(&self.buffer);
        let mut values = buffer.read();
        buffer.clear();
        values.sort();
        ctx.output((key.clone(), values));
    }
}

#[test]
fn bag_state_buffers_until_an_event_time_timer_flushes() {
    let p = pipeline();
    let out = p
        .create(
            "In",
            vec![
                kv("a", 3),
                kv("a", 1),
                kv("b", 7),
                kv("a", 12),
                kv("b", 15),
                kv("a", 2),
            ],
        )
        .with_timestamps("Time", |(_, v): &(String, i64)| Timestamp::from_millis(*v))
        .window_into("Window", WindowFn::fixed(Duration::from_millis(10)))
        .stateful_par_do(
            "Buffer",
            BufferUntilWindowEnd {
                buffer: BagState::new("buffer"),
                flush: TimerSpec::event_time("flush"),
            },
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    let w = |s, e| BoundedWindow::Interval {
        start: ts(s),
        end: ts(e),
    };
    let mut got = out.windowed();
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        got,
        vec![
            (("a".to_string(), vec![1, 2, 3]), ts(9), w(0, 10)),
            (("a".to_string(), vec![12]), ts(19), w(10, 20)),
            (("b".to_string(), vec![7]), ts(9), w(0, 10)),
            (("b".to_string(), vec![15]), ts(19), w(10, 20)),
        ]
    );
}

#[derive(Clone)]
struct Dedup {
    seen: SetState<String>,
}

impl StatefulDoFn for Dedup {
    type Key = String;
    type Value = String;
    type Out = (String, String);
    fn declare(&self, d: &mut Declarations) {
        d.state(&self.seen);
    }
    fn process(&mut self, key: &String, v: &String, ctx: &mut StateContext<'_, (String, String)>) {
        if ctx.state(&self.seen).add(v) {
            ctx.output((key.clone(), v.clone()));
        }
    }
}

#[test]
fn set_state_deduplicates_per_key() {
    let p = pipeline();
    let s = |k: &str, v: &str| (k.to_string(), v.to_string());
    let out = p
        .create(
            "In",
            vec![
                s("a", "x"),
                s("a", "y"),
                s("a", "x"),
                s("b", "x"),
                s("b", "x"),
                s("a", "y"),
            ],
        )
        .stateful_par_do(
            "Dedup",
            Dedup {
                seen: SetState::new("seen"),
            },
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    assert_eq!(out.sorted(), vec![s("a", "x"), s("a", "y"), s("b", "x")]);
}

/// Counts words per user in a map; at the end emits the map's entries.
#[derive(Clone)]
struct WordsPerUser {
    counts: MapState<String, i64>,
    done: TimerSpec,
}

impl StatefulDoFn for WordsPerUser {
    type Key = String;
    type Value = String;
    type Out = (String, Vec<(String, i64)>);
    fn declare(&self, d: &mut Declarations) {
        d.state(&self.counts).timer(&self.done);
    }
    fn process(&mut self, _: &String, word: &String, ctx: &mut StateContext<'_, Self::Out>) {
        let mut counts = ctx.state(&self.counts);
        let n = counts.get(word).unwrap_or(0) + 1;
        counts.put(word, &n);
        if word == "drop" {
            counts.remove(word);
        }
        ctx.timer(&self.done).set(ts(1000));
    }
    fn on_timer(&mut self, user: &String, _: &FiredTimer, ctx: &mut StateContext<'_, Self::Out>) {
        let mut counts = ctx.state(&self.counts);
        let entries = counts.entries();
        assert_eq!(
            counts.keys(),
            entries.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
        );
        counts.clear();
        assert!(counts.entries().is_empty());
        ctx.output((user.clone(), entries));
    }
}

#[test]
fn map_state_counts_per_map_key() {
    let p = pipeline();
    let s = |k: &str, v: &str| (k.to_string(), v.to_string());
    let out = p
        .create(
            "In",
            vec![
                s("ann", "b"),
                s("ann", "a"),
                s("bob", "a"),
                s("ann", "b"),
                s("ann", "drop"),
                s("bob", "c"),
            ],
        )
        .stateful_par_do(
            "Words",
            WordsPerUser {
                counts: MapState::new("counts"),
                done: TimerSpec::event_time("done"),
            },
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    let e = |w: &str, n: i64| (w.to_string(), n);
    assert_eq!(
        out.sorted(),
        vec![
            ("ann".to_string(), vec![e("a", 1), e("b", 2)]),
            ("bob".to_string(), vec![e("a", 1), e("c", 1)]),
        ]
    );
}

#[derive(Clone)]
struct SumI64;

impl CombineFn for SumI64 {
    type In = i64;
    type Acc = i64;
    type Out = i64;
    fn create_accumulator(&self) -> i64 {
        0
    }
    fn add_input(&self, acc: &mut i64, v: &i64) {
        *acc += v;
    }
    fn merge_accumulators(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
    fn extract_output(&self, acc: i64) -> i64 {
        acc
    }
}

/// Sums per key with a combining state; emits the running sum every third
/// element and the total when the timer fires.
#[derive(Clone)]
struct Totals {
    sum: CombiningState<SumI64>,
    seen: ValueState<i64>,
    done: TimerSpec,
}

impl StatefulDoFn for Totals {
    type Key = String;
    type Value = i64;
    type Out = (String, (String, i64));
    fn declare(&self, d: &mut Declarations) {
        d.state(&self.sum).state(&self.seen).timer(&self.done);
    }
    fn process(&mut self, key: &String, v: &i64, ctx: &mut StateContext<'_, Self::Out>) {
        ctx.state(&self.sum).add(v);
        let n = ctx.state(&self.seen).read().unwrap_or(0) + 1;
        ctx.state(&self.seen).write(&n);
        if n % 3 == 0 {
            let s = ctx.state(&self.sum).read();
            ctx.output((key.clone(), (format!("after {n}"), s)));
        }
        ctx.timer(&self.done).set(ts(0));
    }
    fn on_timer(&mut self, key: &String, _: &FiredTimer, ctx: &mut StateContext<'_, Self::Out>) {
        let total = ctx.state(&self.sum).read();
        ctx.output((key.clone(), ("total".to_string(), total)));
        ctx.state(&self.sum).clear();
        assert_eq!(ctx.state(&self.sum).read(), 0);
    }
}

#[test]
fn combining_state_folds_inputs() {
    let p = pipeline();
    let input: Vec<(String, i64)> = (1..=7).map(|i| kv("x", i)).chain([kv("y", 10)]).collect();
    let out = p
        .create("In", input)
        .stateful_par_do(
            "Totals",
            Totals {
                sum: CombiningState::new("sum", SumI64),
                seen: ValueState::new("seen"),
                done: TimerSpec::event_time("done"),
            },
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    let t = |k: &str, what: &str, n: i64| (k.to_string(), (what.to_string(), n));
    assert_eq!(
        out.sorted(),
        vec![
            t("x", "after 3", 6),
            t("x", "after 6", 21),
            t("x", "total", 28),
            t("y", "total", 10),
        ]
    );
}

/// Collects values with their event times in an ordered list; on the timer
/// emits those before 20 ms in time order and drops them, then the rest.
#[derive(Clone)]
struct Sorted {
    list: OrderedListState<String>,
    done: TimerSpec,
}

impl StatefulDoFn for Sorted {
    type Key = String;
    type Value = i64;
    type Out = (String, Vec<(i64, String)>);
    fn declare(&self, d: &mut Declarations) {
        d.state(&self.list).timer(&self.done);
    }
    fn process(&mut self, _: &String, v: &i64, ctx: &mut StateContext<'_, Self::Out>) {
        let t = ctx.timestamp();
        ctx.state(&self.list).add(t, &format!("v{v}"));
        ctx.timer(&self.done).set(ts(100));
    }
    fn on_timer(&mut self, key: &String, _: &FiredTimer, ctx: &mut StateContext<'_, Self::Out>) {
        let mut list = ctx.state(&self.list);
        let early = list.read_range(ts(0), ts(20));
        list.clear_range(ts(0), ts(20));
        let rest = list.read();
        list.clear();
        assert!(list.read().is_empty());
        let render =
            |v: Vec<(Timestamp, String)>| v.into_iter().map(|(t, s)| (t.millis(), s)).collect();
        ctx.output((format!("{key}/early"), render(early)));
        ctx.output((format!("{key}/rest"), render(rest)));
    }
}

#[test]
fn ordered_list_state_reads_by_time_range() {
    let p = pipeline();
    let out = p
        .create(
            "In",
            vec![
                kv("a", 30),
                kv("a", 5),
                kv("a", 19),
                kv("a", 20),
                kv("a", 1),
            ],
        )
        .with_timestamps("Time", |(_, v): &(String, i64)| Timestamp::from_millis(*v))
        .stateful_par_do(
            "Sorted",
            Sorted {
                list: OrderedListState::new("list"),
                done: TimerSpec::event_time("done"),
            },
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    let e = |t: i64| (t, format!("v{t}"));
    assert_eq!(
        out.sorted(),
        vec![
            ("a/early".to_string(), vec![e(1), e(5), e(19)]),
            ("a/rest".to_string(), vec![e(20), e(30)]),
        ]
    );
}

/// Every element resets the key's timer to its timestamp + 10; the value
/// -1 clears it. A fired timer reports its firing time.
#[derive(Clone)]
struct Debounce {
    timer: TimerSpec,
}

impl StatefulDoFn for Debounce {
    type Key = String;
    type Value = i64;
    type Out = (String, i64);
    fn declare(&self, d: &mut Declarations) {
        d.timer(&self.timer);
    }
    fn process(&mut self, _: &String, v: &i64, ctx: &mut StateContext<'_, (String, i64)>) {
        if *v < 0 {
            ctx.timer(&self.timer).clear();
        } else {
            let at = ctx.timestamp().saturating_add_millis(10);
            ctx.timer(&self.timer).set(at);
        }
    }
    fn on_timer(
        &mut self,
        key: &String,
        t: &FiredTimer,
        ctx: &mut StateContext<'_, (String, i64)>,
    ) {
        assert_eq!(t.domain, TimeDomain::EventTime);
        assert_eq!(t.output_timestamp, t.fire_timestamp);
        ctx.output((key.clone(), t.fire_timestamp.millis()));
    }
}

#[test]
fn timers_are_reset_by_the_latest_setting_and_cleared() {
    let p = pipeline();
    let out = p
        .create(
            "In",
            vec![
                kv("a", 1),
                kv("b", 3),
                kv("a", 5),
                kv("b", -1),
                kv("c", 7),
                kv("c", 2),
            ],
        )
        .with_timestamps("Time", |(_, v): &(String, i64)| {
            Timestamp::from_millis(v.abs())
        })
        .stateful_par_do(
            "Debounce",
            Debounce {
                timer: TimerSpec::event_time("debounce"),
            },
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    // a: reset from 11 to 15; b: cleared; c: the later setting (12) wins
    // even though it is earlier in time.
    assert_eq!(out.sorted(), vec![kv("a", 15), kv("c", 12)]);
}

/// Sets a timer whose outputs carry an explicit output timestamp, a
/// processing-time timer, and tagged members of a timer family; each timer
/// chains to the next until three fired per key.
#[derive(Clone)]
struct Timers {
    event: TimerSpec,
    processing: TimerSpec,
    family: TimerSpec,
    fired: ValueState<i64>,
}

impl StatefulDoFn for Timers {
    type Key = String;
    type Value = i64;
    type Out = String;
    fn declare(&self, d: &mut Declarations) {
        d.timer(&self.event)
            .timer(&self.processing)
            .timer(&self.family)
            .state(&self.fired);
    }
    fn process(&mut self, _: &String, v: &i64, ctx: &mut StateContext<'_, String>) {
        ctx.timer(&self.event)
            .with_output_timestamp(ts(*v))
            .set(ts(50));
        ctx.timer(&self.processing).set(ts(1_000));
        ctx.timer(&self.family).with_tag("late").set(ts(80));
        ctx.timer(&self.family).with_tag("early").set(ts(60));
        ctx.timer(&self.family).with_tag("cleared").set(ts(70));
        ctx.timer(&self.family).with_tag("cleared").clear();
    }
    fn on_timer(&mut self, key: &String, t: &FiredTimer, ctx: &mut StateContext<'_, String>) {
        let kind = if t.is(&self.event) {
            "event"
        } else if t.is(&self.processing) {
            "processing"
        } else {
            "family"
        };
        ctx.output(format!(
            "{key} {kind}/{} fire={} out={} ctx={}",
            t.tag,
            t.fire_timestamp.millis(),
            t.output_timestamp.millis(),
            ctx.timestamp().millis()
        ));
        if t.is(&self.event) {
            let mut fired = ctx.state(&self.fired);
            let n = fired.read().unwrap_or(0) + 1;
            fired.write(&n);
            if n < 3 {
                // Chain: fire again 1 ms later.
                let next = t.fire_timestamp.saturating_add_millis(1);
                ctx.timer(&self.event).set(next);
            }
        }
    }
}

#[test]
fn timer_output_timestamps_domains_tags_and_chains() {
    let p = pipeline();
    let out = p
        .create("In", vec![kv("k", 7)])
        .with_timestamps("Time", |(_, v): &(String, i64)| Timestamp::from_millis(*v))
        .stateful_par_do(
            "Timers",
            Timers {
                event: TimerSpec::event_time("event"),
                processing: TimerSpec::processing_time("processing"),
                family: TimerSpec::event_time("family"),
                fired: ValueState::new("fired"),
            },
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    let got: Vec<(String, i64)> = out
        .windowed()
        .into_iter()
        .map(|(v, t, _)| (v, t.millis()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("k event/ fire=50 out=7 ctx=7".to_string(), 7),
            ("k event/ fire=51 out=51 ctx=51".to_string(), 51),
            ("k event/ fire=52 out=52 ctx=52".to_string(), 52),
            ("k family/early fire=60 out=60 ctx=60".to_string(), 60),
            ("k family/late fire=80 out=80 ctx=80".to_string(), 80),
            ("k processing/ fire=1000 out=7 ctx=7".to_string(), 7),
        ]
    );
}

#[test]
fn stateful_dofn_panics_fail_the_job_naming_the_transform() {
    #[derive(Clone)]
    struct Boom {
        s: ValueState<i64>,
    }
    impl StatefulDoFn for Boom {
        type Key = String;
        type Value = i64;
        type Out = i64;
        fn declare(&self, d: &mut Declarations) {
            d.state(&self.s);
        }
        fn process(&mut self, _: &String, v: &i64, _: &mut StateContext<'_, i64>) {
            assert!(*v != 2, "two is not allowed");
        }
    }
    let p = pipeline();
    p.create("In", vec![kv("a", 1), kv("a", 2)])
        .stateful_par_do(
            "Boom",
            Boom {
                s: ValueState::new("s"),
            },
        );
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("Boom"), "{err}");
    assert!(err.contains("two is not allowed"), "{err}");
}

/// The proto declares state, timers and the stateful-processing requirement
/// with Beam's messages.
#[test]
fn stateful_par_do_writes_beam_state_and_timer_specs() {
    use oxbeam_model::pipeline as pb;
    use prost::Message;
    let p = pipeline();
    p.create("In", vec![kv("a", 1)]).stateful_par_do(
        "Buffer",
        BufferUntilWindowEnd {
            buffer: BagState::new("buffer"),
            flush: TimerSpec::event_time("flush"),
        },
    );
    let proto = p.to_proto();
    assert_eq!(proto.requirements, ["beam:requirement:pardo:stateful:v1"]);
    let comps = proto.components.unwrap();
    let t = &comps.transforms["Buffer"];
    let payload = pb::ParDoPayload::decode(t.spec.as_ref().unwrap().payload.as_ref()).unwrap();
    let Some(pb::state_spec::Spec::BagSpec(bag)) = &payload.state_specs["buffer"].spec else {
        panic!("not a bag spec")
    };
    assert_eq!(
        comps.coders[&bag.element_coder_id]
            .spec
            .as_ref()
            .unwrap()
            .urn,
        "beam:coder:varint:v1"
    );
    assert_eq!(
        payload.state_specs["buffer"].protocol.as_ref().unwrap().urn,
        "beam:user_state:bag:v1"
    );
    let flush = &payload.timer_family_specs["flush"];
    assert_eq!(flush.time_domain, pb::time_domain::Enum::EventTime as i32);
    let timer_coder = &comps.coders[&flush.timer_family_coder_id];
    assert_eq!(
        timer_coder.spec.as_ref().unwrap().urn,
        "beam:coder:timer:v1"
    );
    let key_and_window: Vec<&str> = timer_coder
        .component_coder_ids
        .iter()
        .map(|c| comps.coders[c].spec.as_ref().unwrap().urn.as_str())
        .collect();
    assert_eq!(
        key_and_window,
        ["beam:coder:string_utf8:v1", "beam:coder:global_window:v1"]
    );
}
