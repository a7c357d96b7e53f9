//! Timestamps and windowing: fixed, sliding, sessions, global.

use std::time::Duration;

use oxbeam::{BoundedWindow, Timestamp, WindowFn};

use crate::common::{pipeline, unfused_pipeline};

fn iw(start: i64, end: i64) -> BoundedWindow {
    BoundedWindow::Interval {
        start: Timestamp::from_millis(start),
        end: Timestamp::from_millis(end),
    }
}

fn events() -> Vec<(String, i64)> {
    // (user, event time in ms)
    vec![
        ("ann", 1_000),
        ("ann", 2_000),
        ("bo", 3_000),
        ("ann", 11_000),
        ("ann", 61_000),
        ("bo", 65_000),
    ]
    .into_iter()
    .map(|(u, t)| (u.to_string(), t))
    .collect()
}

#[test]
fn with_timestamps_sets_event_time() {
    let p = pipeline();
    let out = p
        .create("Xs", vec![5i64, 7])
        .with_timestamps("Ts", |x: &i64| Timestamp::from_millis(*x * 1000))
        .collect_for_testing("Out");
    p.run().unwrap();
    let mut got: Vec<(i64, i64)> = out
        .windowed()
        .into_iter()
        .map(|(v, t, w)| {
            assert_eq!(w, BoundedWindow::Global);
            (v, t.millis())
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(5, 5000), (7, 7000)]);
}

#[test]
fn fixed_windows_count_per_key_per_window() {
    for p in [pipeline(), unfused_pipeline()] {
        let out = p
            .create("Events", events())
            .with_timestamps("Ts", |e: &(String, i64)| Timestamp::from_millis(e.1))
            .window_into("Minutes", WindowFn::fixed(Duration::from_secs(60)))
            .map("User", |e: &(String, i64)| e.0.clone())
            .count_per_element("Count")
            .collect_for_testing("Out");
        p.run().unwrap();
        let mut got: Vec<(String, i64, BoundedWindow, i64)> = out
            .windowed()
            .into_iter()
            .map(|((u, n), t, w)| (u, n, w, t.millis()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("ann".to_string(), 1, iw(60_000, 120_000), 119_999),
                ("ann".to_string(), 3, iw(0, 60_000), 59_999),
                ("bo".to_string(), 1, iw(0, 60_000), 59_999),
                ("bo".to_string(), 1, iw(60_000, 120_000), 119_999),
            ]
        );
    }
}

#[test]
fn sliding_windows_put_elements_in_several_windows() {
    let p = pipeline();
    let out = p
        .create("Xs", vec![1_000i64, 6_000])
        .with_timestamps("Ts", |x: &i64| Timestamp::from_millis(*x))
        .window_into(
            "Sliding",
            WindowFn::sliding(Duration::from_secs(10), Duration::from_secs(5)),
        )
        .apply("Count", oxbeam::combiners::Count::globally())
        .collect_for_testing("Out");
    p.run().unwrap();
    let mut got: Vec<(BoundedWindow, i64)> =
        out.windowed().into_iter().map(|(n, _, w)| (w, n)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (iw(-5_000, 5_000), 1),
            (iw(0, 10_000), 2),
            (iw(5_000, 15_000), 1)
        ]
    );
}

#[test]
fn sessions_merge_per_key() {
    let p = pipeline();
    let out = p
        .create("Events", events())
        .with_timestamps("Ts", |e: &(String, i64)| Timestamp::from_millis(e.1))
        .map("KeyByUser", |e: &(String, i64)| (e.0.clone(), 1i64))
        .window_into("Sessions", WindowFn::sessions(Duration::from_secs(10)))
        .apply("Sum", oxbeam::combiners::Sum::per_key())
        .collect_for_testing("Out");
    p.run().unwrap();
    let mut got: Vec<(String, i64, BoundedWindow)> = out
        .windowed()
        .into_iter()
        .map(|((u, n), _, w)| (u, n, w))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("ann".to_string(), 1, iw(61_000, 71_000)),
            ("ann".to_string(), 3, iw(1_000, 21_000)),
            ("bo".to_string(), 1, iw(3_000, 13_000)),
            ("bo".to_string(), 1, iw(65_000, 75_000)),
        ]
    );
}

#[test]
fn rewindow_into_global() {
    let p = pipeline();
    let out = p
        .create("Events", events())
        .with_timestamps("Ts", |e: &(String, i64)| Timestamp::from_millis(e.1))
        .window_into("Minutes", WindowFn::fixed(Duration::from_secs(60)))
        .window_into("Global", WindowFn::Global)
        .apply("Count", oxbeam::combiners::Count::globally())
        .collect_for_testing("Out");
    p.run().unwrap();
    assert_eq!(out.values(), vec![6]);
}
