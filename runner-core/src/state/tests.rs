use oxbeam_model::coders::Coder;

use super::*;

fn cell<'a>(window: &'a [u8], key: &'a [u8]) -> CellRef<'a> {
    CellRef {
        transform: "t",
        state_id: "s",
        window,
        key,
    }
}

fn get(store: &mut StateStore, c: &CellRef<'_>, kind: StateKind<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    store.get(c, kind, &mut out).unwrap();
    out
}

/// An ordered-list entry: varint(sort key) ++ length-prefixed value.
fn entry(sort_key: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::coder::write_varint(&mut out, sort_key as u64);
    crate::coder::write_varint(&mut out, value.len() as u64);
    out.extend_from_slice(value);
    out
}

fn interval(start: i64, end: i64) -> Vec<u8> {
    let mut w = Vec::new();
    crate::coder::write_interval_window(&mut w, start, end);
    w
}

#[test]
fn bags_append_read_and_clear_per_key_and_window() {
    let mut s = StateStore::new();
    let (a, b) = (cell(b"", b"a"), cell(b"", b"b"));
    s.append(&a, StateKind::Bag, b"\x01").unwrap();
    s.append(&a, StateKind::Bag, b"\x02\x03").unwrap();
    s.append(&b, StateKind::Bag, b"\x09").unwrap();
    assert_eq!(get(&mut s, &a, StateKind::Bag), b"\x01\x02\x03");
    assert_eq!(get(&mut s, &b, StateKind::Bag), b"\x09");
    let w = interval(0, 10);
    assert_eq!(get(&mut s, &cell(&w, b"a"), StateKind::Bag), b"");
    s.clear(&a, StateKind::Bag).unwrap();
    assert_eq!(get(&mut s, &a, StateKind::Bag), b"");
    assert_eq!(s.len(), 1);
    let other_state = CellRef {
        state_id: "other",
        ..b
    };
    assert_eq!(get(&mut s, &other_state, StateKind::Bag), b"");
}

#[test]
fn multimaps_keep_values_per_map_key_and_list_keys_sorted() {
    let mut s = StateStore::new();
    let c = cell(b"", b"k");
    let mk = |k: &'static [u8]| StateKind::Multimap { map_key: k };
    s.append(&c, mk(b"\x01y"), b"\x07").unwrap();
    s.append(&c, mk(b"\x01x"), b"\x05").unwrap();
    s.append(&c, mk(b"\x01x"), b"\x06").unwrap();
    assert_eq!(get(&mut s, &c, mk(b"\x01x")), b"\x05\x06");
    assert_eq!(get(&mut s, &c, StateKind::MultimapKeys), b"\x01x\x01y");
    s.clear(&c, mk(b"\x01x")).unwrap();
    assert_eq!(get(&mut s, &c, StateKind::MultimapKeys), b"\x01y");
    assert!(s.append(&c, StateKind::MultimapKeys, b"\x01").is_err());
    s.clear(&c, StateKind::MultimapKeys).unwrap();
    assert!(s.is_empty());
}

#[test]
fn ordered_lists_read_and_clear_ranges_in_sort_key_order() {
    let mut s = StateStore::new();
    let c = cell(b"", b"k");
    let all = StateKind::OrderedList {
        start: i64::MIN,
        end: i64::MAX,
    };
    let mut data = entry(30, b"c");
    data.extend(entry(10, b"a"));
    s.append(&c, all, &data).unwrap();
    s.append(&c, all, &entry(20, b"b")).unwrap();
    s.append(&c, all, &entry(10, b"a2")).unwrap();
    let mut want = entry(10, b"a");
    want.extend(entry(10, b"a2"));
    want.extend(entry(20, b"b"));
    want.extend(entry(30, b"c"));
    assert_eq!(get(&mut s, &c, all), want);
    let mid = StateKind::OrderedList { start: 11, end: 30 };
    assert_eq!(get(&mut s, &c, mid), entry(20, b"b"));
    s.clear(&c, StateKind::OrderedList { start: 0, end: 21 })
        .unwrap();
    assert_eq!(get(&mut s, &c, all), entry(30, b"c"));
    assert!(s.append(&c, all, b"\x01\x05ab").is_err());
}

#[test]
fn a_cell_keeps_its_kind() {
    let mut s = StateStore::new();
    let c = cell(b"", b"k");
    s.append(&c, StateKind::Bag, b"\x01").unwrap();
    let err = s
        .append(&c, StateKind::Multimap { map_key: b"m" }, b"\x01")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "state \"s\" of transform \"t\" is a bag, not a multimap"
    );
}

#[test]
fn expiry_removes_state_of_windows_past_their_lateness() {
    let mut s = StateStore::new();
    let (w1, w2) = (interval(0, 10), interval(10, 20));
    s.append(&cell(&w1, b"a"), StateKind::Bag, b"\x01").unwrap();
    s.append(&cell(&w2, b"a"), StateKind::Bag, b"\x02").unwrap();
    s.append(&cell(&w1, b"b"), StateKind::Bag, b"\x03").unwrap();
    // Window [0, 10) has max timestamp 9: still live at watermark 9.
    assert_eq!(s.expire(9, 0, &Coder::IntervalWindow), 0);
    assert_eq!(s.expire(10, 0, &Coder::IntervalWindow), 2);
    assert_eq!(get(&mut s, &cell(&w2, b"a"), StateKind::Bag), b"\x02");
    // Allowed lateness keeps it longer.
    assert_eq!(s.expire(25, 10, &Coder::IntervalWindow), 0);
    assert_eq!(s.expire(30, 10, &Coder::IntervalWindow), 1);
    let mut g = StateStore::new();
    g.append(&cell(b"", b"a"), StateKind::Bag, b"\x01").unwrap();
    let global_max = oxbeam_model::window::Timestamp::GLOBAL_WINDOW_MAX.millis();
    assert_eq!(g.expire(global_max, 0, &Coder::GlobalWindow), 0);
    assert_eq!(g.expire(i64::MAX, 0, &Coder::GlobalWindow), 1);
}

fn id(key: &[u8], tag: &str) -> TimerId {
    TimerId {
        transform: "t".into(),
        family: "f".into(),
        key: key.to_vec(),
        window: Vec::new(),
        tag: tag.into(),
    }
}

fn queue() -> TimerQueue {
    let mut q = TimerQueue::new();
    q.declare_family("t", "f", TimeDomain::EventTime);
    q.declare_family("t", "p", TimeDomain::ProcessingTime);
    q
}

fn fired(ts: &[FiredTimer]) -> Vec<(Vec<u8>, String, i64)> {
    ts.iter()
        .map(|t| (t.id.key.clone(), t.id.tag.clone(), t.fire_timestamp))
        .collect()
}

#[test]
fn latest_timer_wins_clear_removes_and_due_timers_fire_in_order() {
    let mut q = queue();
    q.set(id(b"a", ""), Some((50, 50, b"\x0f"))).unwrap();
    q.set(id(b"a", ""), Some((30, 25, b"\x0f"))).unwrap();
    q.set(id(b"b", ""), Some((20, 20, b"\x0f"))).unwrap();
    q.set(id(b"b", "x"), Some((40, 40, b"\x0f"))).unwrap();
    q.set(id(b"c", ""), Some((10, 10, b"\x0f"))).unwrap();
    q.set(id(b"c", ""), None).unwrap();
    assert_eq!(q.len(), 3);
    assert_eq!(q.hold(), Some(20));
    assert_eq!(fired(&q.fire_due(19, i64::MIN)), vec![]);
    assert_eq!(
        fired(&q.fire_due(30, i64::MIN)),
        vec![
            (b"b".to_vec(), String::new(), 20),
            (b"a".to_vec(), String::new(), 30)
        ]
    );
    assert_eq!(q.hold(), Some(40));
    assert_eq!(
        fired(&q.fire_due(i64::MAX, i64::MIN)),
        vec![(b"b".to_vec(), "x".to_string(), 40)]
    );
    assert!(q.is_empty());
    assert_eq!(q.hold(), None);
    let err = q
        .set(
            TimerId {
                family: "nope".into(),
                ..id(b"a", "")
            },
            None,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "transform \"t\" set a timer of undeclared family \"nope\""
    );
}

#[test]
fn state_and_timers_restore_from_snapshots() {
    let mut s = StateStore::new();
    let (a, b, o) = (cell(b"", b"a"), cell(b"", b"b"), cell(b"", b"o"));
    s.append(&a, StateKind::Bag, b"\x01\x02").unwrap();
    let mk = StateKind::Multimap { map_key: b"\x01x" };
    s.append(&b, mk, b"\x05").unwrap();
    let all = StateKind::OrderedList {
        start: i64::MIN,
        end: i64::MAX,
    };
    s.append(&o, all, &entry(10, b"x")).unwrap();
    let mut r = StateStore::new();
    r.restore(&s.snapshot()).unwrap();
    assert_eq!(get(&mut r, &a, StateKind::Bag), b"\x01\x02");
    assert_eq!(get(&mut r, &b, mk), b"\x05");
    // The ordered list's insertion sequence goes on where it was.
    s.append(&o, all, &entry(10, b"y")).unwrap();
    r.append(&o, all, &entry(10, b"y")).unwrap();
    assert_eq!(get(&mut r, &o, all), get(&mut s, &o, all));
    assert_eq!(r.len(), s.len());

    let mut q = queue();
    q.set(id(b"a", ""), Some((30, 25, b"\x0f"))).unwrap();
    q.set(id(b"b", "x"), Some((40, 40, b"\x0f"))).unwrap();
    let mut pt = id(b"c", "");
    pt.family = "p".into();
    q.set(pt, Some((7, 5, b"\x0f"))).unwrap();
    let mut r = queue();
    r.restore(&q.snapshot()).unwrap();
    assert_eq!(
        (r.len(), r.hold(), r.next_processing_time()),
        (3, Some(5), Some(7))
    );
    assert_eq!(
        fired(&r.fire_due(i64::MAX, i64::MAX)),
        fired(&q.fire_due(i64::MAX, i64::MAX))
    );
    assert!(r.is_empty());

    let err = r.restore(b"\x09").unwrap_err().to_string();
    assert!(
        err.contains("corrupt snapshot of timers (1 bytes)"),
        "{err}"
    );
    let err = StateStore::new().restore(b"").unwrap_err().to_string();
    assert!(
        err.contains("corrupt snapshot of user state (0 bytes)"),
        "{err}"
    );
}

#[test]
fn processing_time_timers_fire_with_processing_time() {
    let mut q = queue();
    let p = TimerId {
        family: "p".into(),
        ..id(b"a", "")
    };
    q.set(p, Some((100, 5, b"\x0f"))).unwrap();
    q.set(id(b"a", ""), Some((100, 100, b"\x0f"))).unwrap();
    assert_eq!(q.next_processing_time(), Some(100));
    let due = q.fire_due(i64::MIN, 100);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].domain, TimeDomain::ProcessingTime);
    assert_eq!(due[0].hold_timestamp, 5);
    assert_eq!(q.fire_due(100, 100)[0].domain, TimeDomain::EventTime);
}

#[test]
fn earliest_per_key_leaves_later_timers_of_the_key_pending() {
    let mut q = queue();
    q.set(id(b"a", "1"), Some((10, 10, b"\x0f"))).unwrap();
    q.set(id(b"a", "2"), Some((20, 20, b"\x0f"))).unwrap();
    q.set(id(b"b", ""), Some((15, 15, b"\x0f"))).unwrap();
    assert_eq!(
        fired(&q.fire_due_earliest_per_key(i64::MAX, i64::MAX)),
        vec![
            (b"a".to_vec(), "1".into(), 10),
            (b"b".to_vec(), String::new(), 15)
        ]
    );
    assert_eq!(q.len(), 1);
    assert_eq!(
        fired(&q.fire_due_earliest_per_key(i64::MAX, i64::MAX)),
        vec![(b"a".to_vec(), "2".into(), 20)]
    );
}

#[test]
fn timers_round_trip_through_the_beam_timer_coder() {
    use oxbeam_model::coders::{Context, Timer, TimerFiring, Value};
    use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};
    let coder = Coder::Timer {
        key: std::sync::Arc::new(Coder::StringUtf8),
        window: std::sync::Arc::new(Coder::IntervalWindow),
    };
    let w = |s, e| BoundedWindow::Interval {
        start: Timestamp::from_millis(s),
        end: Timestamp::from_millis(e),
    };
    let timer = Value::Timer(Box::new(Timer {
        user_key: Value::String("key".into()),
        dynamic_timer_tag: "tag".into(),
        windows: vec![Value::Window(w(0, 10)), Value::Window(w(10, 20))],
        firing: Some(TimerFiring {
            fire_timestamp: Timestamp::from_millis(9),
            hold_timestamp: Timestamp::from_millis(7),
            pane: PaneInfo::NO_FIRING,
        }),
    }));
    let mut bytes = Vec::new();
    coder.encode(&timer, &mut bytes, Context::Nested).unwrap();
    let mut clear = Vec::new();
    let cleared = Value::Timer(Box::new(Timer {
        user_key: Value::String("key".into()),
        dynamic_timer_tag: "tag".into(),
        windows: vec![Value::Window(w(0, 10))],
        firing: None,
    }));
    coder.encode(&cleared, &mut clear, Context::Nested).unwrap();

    let mut q = queue();
    q.set_encoded("t", "f", &bytes, &Coder::StringUtf8, &Coder::IntervalWindow)
        .unwrap();
    assert_eq!(q.len(), 2);
    q.set_encoded("t", "f", &clear, &Coder::StringUtf8, &Coder::IntervalWindow)
        .unwrap();
    let due = q.fire_due(i64::MAX, i64::MIN);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id.key, b"\x03key");
    assert_eq!(due[0].id.tag, "tag");
    assert_eq!(due[0].id.window, interval(10, 20));
    let mut again = Vec::new();
    due[0].encode(&mut again);
    let decoded = coder.decode(&mut &again[..], Context::Nested).unwrap();
    let Value::Timer(t) = decoded else {
        panic!("not a timer")
    };
    assert_eq!(t.windows, vec![Value::Window(w(10, 20))]);
    assert_eq!(
        t.firing,
        Some(TimerFiring {
            fire_timestamp: Timestamp::from_millis(9),
            hold_timestamp: Timestamp::from_millis(7),
            pane: PaneInfo::NO_FIRING,
        })
    );
    assert_eq!(q.expire(i64::MAX, 0, &Coder::IntervalWindow), 0);
    assert!(
        q.set_encoded(
            "t",
            "f",
            b"\x03ke",
            &Coder::StringUtf8,
            &Coder::IntervalWindow
        )
        .is_err()
    );
}

/// A planned stateful ParDo: its timer families use a timer coder of the
/// input's key and window coders (whatever the SDK declared), and its
/// stage descriptor holds the coders of its state and timer specs.
#[test]
fn plans_align_timer_coders_and_carry_spec_coders_into_descriptors() {
    use oxbeam_model::pipeline as pb;
    use prost::Message;

    use crate::optimizer::testing::Builder;
    let mut b = Builder::new();
    let imp = b.impulse("Impulse");
    let kv = b.pardo("MakeKV", &imp, "kv_str");
    b.pardo("Stateful", &kv, "str");
    let t =
        b.p.components
            .as_mut()
            .unwrap()
            .transforms
            .get_mut("Stateful")
            .unwrap();
    let mut payload = pb::ParDoPayload::decode(t.spec.as_ref().unwrap().payload.as_ref()).unwrap();
    payload.state_specs.insert(
        "values".into(),
        pb::StateSpec {
            spec: Some(pb::state_spec::Spec::BagSpec(pb::BagStateSpec {
                element_coder_id: "iter_varint".into(),
            })),
            protocol: None,
        },
    );
    payload.timer_family_specs.insert(
        "flush".into(),
        pb::TimerFamilySpec {
            time_domain: pb::time_domain::Enum::EventTime as i32,
            // Not a timer coder at all: the planner replaces it.
            timer_family_coder_id: "bytes".into(),
        },
    );
    t.spec.as_mut().unwrap().payload = payload.encode_to_vec().into();
    let plan = crate::plan(&b.build(), &crate::PlanOptions::default()).unwrap();
    let stage = plan
        .steps()
        .iter()
        .find_map(|s| match s {
            crate::Step::Stage(s) if s.state.is_some() => Some(s),
            _ => None,
        })
        .unwrap();
    let state = stage.state.as_ref().unwrap();
    assert_eq!(state.key_coder, Coder::StringUtf8);
    assert_eq!(state.value_coder, Coder::Varint);
    assert_eq!(state.window_coder, Coder::GlobalWindow);
    let d = &stage.descriptor;
    let p = pb::ParDoPayload::decode(
        d.transforms["Stateful"]
            .spec
            .as_ref()
            .unwrap()
            .payload
            .as_ref(),
    )
    .unwrap();
    let timer_coder = &d.coders[&p.timer_family_specs["flush"].timer_family_coder_id];
    assert_eq!(
        timer_coder.spec.as_ref().unwrap().urn,
        oxbeam_model::urns::standard_coders::TIMER
    );
    assert_eq!(timer_coder.component_coder_ids, ["str", "gw"]);
    assert!(d.coders.contains_key("iter_varint"));
    assert!(d.coders.contains_key("varint"));
}

/// Makes transform `id` of `b` stateful with one bag state.
fn with_bag_state(b: &mut crate::optimizer::testing::Builder, id: &str) {
    use oxbeam_model::pipeline as pb;
    use prost::Message;
    let t =
        b.p.components
            .as_mut()
            .unwrap()
            .transforms
            .get_mut(id)
            .unwrap();
    let mut payload = pb::ParDoPayload::decode(t.spec.as_ref().unwrap().payload.as_ref()).unwrap();
    payload
        .state_specs
        .insert("s".into(), pb::StateSpec::default());
    t.spec.as_mut().unwrap().payload = payload.encode_to_vec().into();
}

#[test]
fn stateful_dofns_in_merging_windows_are_not_implemented() {
    let mut b = crate::optimizer::testing::Builder::new();
    let imp = b.impulse("Impulse");
    let kv = b.pardo("MakeKV", &imp, "kv_str");
    let sessions = b.window_into("Sessions", &kv, "sessions");
    b.pardo("Stateful", &sessions, "str");
    with_bag_state(&mut b, "Stateful");
    let err = crate::plan(&b.build(), &crate::PlanOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not implemented: transform 'Stateful': state and timers in merging windows \
         (sessions(gap 5ms)); re-window or group first"
    );
}
