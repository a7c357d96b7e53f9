//! `WatchFiles`: the lines of files as they appear, on the streaming engine.

use std::path::Path;
use std::time::{Duration, Instant};

use oxbeam::io::WatchFiles;

use crate::common::pipeline;

fn write(dir: &Path, name: &str, text: &str) {
    // Written aside, then renamed in: a poll never sees half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

fn lines(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix}{i}\n")).collect()
}

#[test]
fn new_files_are_read_once_each_as_they_appear() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", &lines("a", 3));
    write(dir.path(), "b.txt", "b0\r\nb1");
    let pattern = format!("{}/*.txt", dir.path().display());
    let p = pipeline();
    let out = p
        .apply(
            "Watch",
            WatchFiles::new(pattern)
                .poll_interval(Duration::from_millis(20))
                .stop_after_idle(Duration::from_millis(600)),
        )
        .collect_for_testing("Out");
    let job = p.start().unwrap();
    // A file that appears while the job runs, and one that does not match.
    std::thread::sleep(Duration::from_millis(150));
    write(dir.path(), "c.txt", &lines("c", 2));
    write(dir.path(), "ignored.csv", "x\n");
    let started = Instant::now();
    job.wait().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "ended before idle"
    );
    let got = out.windowed();
    let mut values: Vec<&str> = got.iter().map(|(v, ..)| v.as_str()).collect();
    values.sort_unstable();
    assert_eq!(values, ["a0", "a1", "a2", "b0", "b1", "c0", "c1"]);
    // Timestamps are the time of the poll that found the file.
    let ts = |v: &str| got.iter().find(|(x, ..)| x == v).unwrap().1.millis();
    assert_eq!(ts("a0"), ts("b1"));
    assert!(ts("c0") >= ts("a0") + 100, "{} vs {}", ts("c0"), ts("a0"));
}

#[test]
fn max_files_reads_the_first_files_in_path_order_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["3.txt", "1.txt", "2.txt"] {
        write(dir.path(), name, &format!("{name}\n"));
    }
    let p = pipeline();
    let out = p
        .apply(
            "Watch",
            WatchFiles::new(format!("{}/*.txt", dir.path().display())).max_files(2),
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    assert_eq!(out.sorted(), ["1.txt", "2.txt"]);
}

#[test]
fn an_unbounded_watch_drains() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", &lines("a", 2));
    let p = pipeline();
    let out = p
        .apply(
            "Watch",
            WatchFiles::new(format!("{}/*", dir.path().display()))
                .poll_interval(Duration::from_millis(10)),
        )
        .collect_for_testing("Out");
    let job = p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.values().len() < 2 {
        assert!(Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(5));
    }
    job.drain();
    job.wait().unwrap();
    assert_eq!(out.sorted(), ["a0", "a1"]);
}

#[test]
fn bad_files_and_patterns_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.txt"), b"fine\n\xff\xfe\n").unwrap();
    let p = pipeline();
    p.apply(
        "Watch",
        WatchFiles::new(format!("{}/*.txt", dir.path().display())).max_files(1),
    );
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.ends_with(&format!(
            "file-watching source 'Watch/WatchFiles' at {}: line 2 is not UTF-8",
            dir.path().join("bad.txt").display()
        )),
        "{err}"
    );

    let p = pipeline();
    p.apply("Watch", WatchFiles::new("/tmp/[oops"));
    let err = p.run().unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid pipeline: transform 'Watch/WatchFiles': pattern \"/tmp/[oops\" is not a glob: \
         Pattern syntax error near position 5: invalid range pattern"
    );
}
