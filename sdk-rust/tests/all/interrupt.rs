//! Ending unbounded pipelines: `Pipeline::start` with drain and cancel, and
//! Ctrl-C (SIGINT) on a pipeline running in a child process (this test
//! binary, re-run in a child mode).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxbeam::io::Generate;
use oxbeam::{BoundedWindow, DoFn, Pipeline, ProcessContext, WindowFn};

use crate::common::pipeline;

/// Set in the child: which pipeline to run (`drain` or `slow`).
const CHILD: &str = "OXBEAM_TEST_SIGINT_CHILD";

/// What the child prints once its pipeline processes elements.
const RUNNING: &str = "child pipeline running";

static PARSED: AtomicU64 = AtomicU64::new(0);

/// Prints every pane as `pane KEY START END COUNT`.
#[derive(Clone)]
struct PrintPane;

impl DoFn for PrintPane {
    type In = (u64, i64);
    type Out = ();
    fn process(&mut self, (key, n): &(u64, i64), ctx: &mut ProcessContext<'_, ()>) {
        if let BoundedWindow::Interval { start, end } = ctx.window() {
            println!("pane {key} {} {} {n}", start.millis(), end.millis());
        }
    }
}

/// Generator (2000/s, 3 keys) → 100 ms windows → count per key → print.
/// `slow`: each element takes 5 ms, so a backlog builds up (2000/s, two
/// workers: ~1600 more each second) and a drain takes a while.
fn windowed_count(p: &Pipeline, slow: bool) {
    p.apply(
        "Events",
        Generate::unbounded().rate_per_second(2000).keys(3),
    )
    .map("Parse", move |(key, _): &(u64, u64)| {
        if PARSED.fetch_add(1, Ordering::SeqCst) == 0 {
            // Own line: libtest's "test ... " has no newline yet.
            println!("\n{RUNNING}");
        }
        if slow {
            std::thread::sleep(Duration::from_millis(5));
        }
        *key
    })
    .window_into("Window", WindowFn::fixed(Duration::from_millis(100)))
    .count_per_element("Count")
    .par_do("Print", oxbeam::ParDo::of(PrintPane));
}

/// The child's side: runs until Ctrl-C, then reports what it parsed.
#[test]
fn sigint_child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return; // Only meaningful as the parent's child.
    };
    let p = pipeline();
    windowed_count(&p, mode == "slow");
    let result = p.run();
    println!("parsed {}", PARSED.load(Ordering::SeqCst));
    if let Err(e) = result {
        println!("error {e}");
        std::process::exit(3);
    }
}

/// A child process, killed if a test fails before it exits.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts this test binary running `sigint_child` in `mode`; returns it once
/// its pipeline processes elements, with its stdout lines.
fn spawn_child(mode: &str) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "interrupt::sigint_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Child(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l == RUNNING => break,
            Ok(_) => {}
            Err(e) => panic!("the child never started: {e}"),
        }
    }
    (child, rx)
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to `limit` for the child to exit.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            panic!("the child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_drains_an_unbounded_pipeline_and_fires_every_window() {
    let (mut child, lines) = spawn_child("drain");
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status}");
    let mut parsed = None;
    // Per key: window start → (end, count).
    let mut panes: BTreeMap<u64, BTreeMap<i64, (i64, u64)>> = BTreeMap::new();
    for line in lines.try_iter() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["pane", key, start, end, n] => {
                let old = panes.entry(key.parse().unwrap()).or_default().insert(
                    start.parse().unwrap(),
                    (end.parse().unwrap(), n.parse().unwrap()),
                );
                assert_eq!(old, None, "two panes for one window: {line}");
            }
            ["parsed", n] => parsed = Some(n.parse::<u64>().unwrap()),
            _ => {}
        }
    }
    let parsed = parsed.expect("the child reports what it parsed");
    // ~1000 events in 0.5 s; every one counted in exactly one pane.
    assert!(parsed >= 200, "{parsed}");
    let counted: u64 = panes.values().flat_map(|w| w.values().map(|p| p.1)).sum();
    assert_eq!(counted, parsed);
    assert_eq!(panes.len(), 3, "{panes:?}");
    // Every window of every key fired, from the first to the last.
    for windows in panes.values() {
        let mut expected_start = *windows.keys().next().unwrap();
        for (&start, &(end, _)) in windows {
            assert_eq!(
                start, expected_start,
                "a missing window before {start}: {windows:?}"
            );
            assert_eq!(end, start + 100);
            expected_start = end;
        }
    }
}

#[test]
fn a_second_ctrl_c_cancels_the_drain() {
    let (mut child, lines) = spawn_child("slow");
    // ~500 elements of backlog: the drain needs over a second.
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.0.try_wait().unwrap().is_none(), "drained too fast");
    interrupt(&child);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "{status}");
    let errors: Vec<String> = lines
        .try_iter()
        .filter(|l| l.starts_with("error "))
        .collect();
    assert_eq!(errors, ["error the pipeline was cancelled"]);
}

#[test]
fn start_returns_a_handle_that_drains() {
    let p = pipeline();
    let out = p
        .apply(
            "Events",
            Generate::unbounded().rate_per_second(5000).keys(2),
        )
        .map("Key", |(key, _): &(u64, u64)| *key)
        .window_into("Window", WindowFn::fixed(Duration::from_millis(50)))
        .count_per_element("Count")
        .map("N", |(_, n): &(u64, i64)| *n)
        .collect_for_testing("Out");
    let job = p.start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!job.is_finished());
    job.drain();
    job.wait().unwrap();
    let total: i64 = out.values().iter().sum();
    assert!(total > 0);
}

#[test]
fn start_returns_a_handle_that_cancels() {
    let p = pipeline();
    p.apply("Events", Generate::unbounded().rate_per_second(1000))
        .map("Seq", |(_, seq): &(u64, u64)| *seq);
    let job = p.start().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    job.cancel();
    let err = job.wait().unwrap_err();
    assert!(matches!(err, oxbeam::Error::Cancelled), "{err}");
}
