//! The example binaries, run as a user would, checked against independent results.

use std::collections::HashMap;
use std::fs;
use std::process::Command;

use regex::Regex;

fn run(bin: &str, args: &[&str]) {
    let out = Command::new(bin)
        .args(args)
        .args(["--parallelism", "2", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_shards(prefix: &str) -> Vec<String> {
    let dir = std::path::Path::new(prefix).parent().unwrap();
    let base = std::path::Path::new(prefix)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut lines = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{base}-")) {
            lines.extend(
                fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    lines
}

#[test]
fn wordcount_matches_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    // Input: the bundled text plus generated lines with punctuation and case.
    let mut text = oxbeam_examples::SAMPLE_TEXT.to_string();
    let vocab = oxbeam_examples::vocabulary();
    for i in 0..5_000 {
        text.push_str(&oxbeam_examples::generated_line(&vocab, i));
        text.push_str(if i % 3 == 0 {
            ", THE End!\n"
        } else {
            " -- it's 42.\n"
        });
    }
    let input = dir.path().join("input.txt");
    fs::write(&input, &text).unwrap();
    let prefix = dir
        .path()
        .join("out")
        .join("counts")
        .to_string_lossy()
        .into_owned();
    run(
        env!("CARGO_BIN_EXE_wordcount"),
        &[
            "--input",
            &input.to_string_lossy(),
            "--output",
            &prefix,
            "--num-shards",
            "3",
        ],
    );

    let mut expected: HashMap<&str, i64> = HashMap::new();
    for m in Regex::new("[A-Za-z']+").unwrap().find_iter(&text) {
        *expected.entry(m.as_str()).or_default() += 1;
    }
    let mut expected: Vec<String> = expected
        .into_iter()
        .map(|(w, n)| format!("{w}: {n}"))
        .collect();
    expected.sort();
    assert_eq!(read_shards(&prefix), expected);
    assert!(fs::read_dir(dir.path().join("out")).unwrap().count() == 3);
}

#[test]
fn wordcount_runs_without_input() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("counts").to_string_lossy().into_owned();
    run(
        env!("CARGO_BIN_EXE_wordcount"),
        &["--output", &prefix, "--generate-lines", "2000"],
    );
    let lines = read_shards(&prefix);
    let total: i64 = lines
        .iter()
        .map(|l| l.rsplit(": ").next().unwrap().parse::<i64>().unwrap())
        .sum();
    let vocab = oxbeam_examples::vocabulary();
    let expected: usize = (0..2000)
        .map(|i| oxbeam_examples::words(&oxbeam_examples::generated_line(&vocab, i)).count())
        .sum();
    assert_eq!(total as usize, expected);
}

#[test]
fn top_scores_from_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scores.csv");
    fs::write(
        &input,
        "Owls,ann,10\nOwls,bo,30\nOwls,cy,20\nOwls,ann,40\nBats,dee,5\n",
    )
    .unwrap();
    let prefix = dir.path().join("top").to_string_lossy().into_owned();
    run(
        env!("CARGO_BIN_EXE_top_scores"),
        &[
            "--input",
            &input.to_string_lossy(),
            "--output",
            &prefix,
            "--top",
            "2",
        ],
    );
    assert_eq!(
        read_shards(&prefix),
        vec![
            "Bats: n=1 mean=5.00 top=dee:5".to_string(),
            "Owls: n=4 mean=25.00 top=ann:40,bo:30".to_string()
        ]
    );
}

#[test]
fn user_sessions_from_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let t0 = 1_700_000_000_000i64;
    let events = [("ann", 0), ("ann", 60_000), ("bo", 0), ("ann", 3_600_000)];
    let text: String = events
        .iter()
        .map(|(u, dt)| {
            format!(
                "{{\"user\":\"{u}\",\"ts_ms\":{},\"action\":\"view\"}}\n",
                t0 + dt
            )
        })
        .collect();
    fs::write(&input, text).unwrap();
    let prefix = dir.path().join("sessions").to_string_lossy().into_owned();
    run(
        env!("CARGO_BIN_EXE_user_sessions"),
        &[
            "--input",
            &input.to_string_lossy(),
            "--output",
            &prefix,
            "--gap-minutes",
            "10",
        ],
    );
    assert_eq!(
        read_shards(&prefix),
        vec![
            "ann 2023-11-14T22:13:20Z +00:11:00 events=2".to_string(),
            "ann 2023-11-14T23:13:20Z +00:10:00 events=1".to_string(),
            "bo 2023-11-14T22:13:20Z +00:10:00 events=1".to_string(),
        ]
    );
}

/// `process_workers`' exact output for `--count n`: `digit: sum` lines, sorted.
fn digit_sums(n: i64) -> Vec<String> {
    let mut sums = [0i64; 10];
    for x in 0..n {
        sums[(x % 10) as usize] += x;
    }
    let mut lines: Vec<String> = (0..10).map(|d| format!("{d}: {}", sums[d])).collect();
    lines.sort();
    lines
}

/// Runs `process_workers` with its stages in harness processes; returns
/// whether it succeeded, its stderr, its pid, and the attempt log's lines.
fn run_process_workers(dir: &std::path::Path, extra: &[&str]) -> (bool, String, u32, Vec<String>) {
    let prefix = dir.join("sums").to_string_lossy().into_owned();
    let log = dir.join("attempts.log");
    let child = Command::new(env!("CARGO_BIN_EXE_process_workers"))
        .args(["--environment-type", "PROCESS", "--count", "200000"])
        .args(["--output", &prefix, "--attempt-log", &log.to_string_lossy()])
        .args(["--parallelism", "2", "--no-progress"])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let attempts = fs::read_to_string(&log)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        pid,
        attempts,
    )
}

/// With `--environment-type PROCESS` every stage runs in harness processes
/// (this binary in worker mode) and the output is exactly that of the
/// in-process run.
#[test]
fn process_environment_runs_native_stages_in_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    // Number 7 is seen once, in a harness process: its pid is logged.
    let (ok, stderr, pid, attempts) = run_process_workers(
        dir.path(),
        &[
            "--fail-on",
            "7",
            "--fail-how",
            "exit-once",
            "--max-bundle-attempts",
            "1",
        ],
    );
    // exit-once exits the first time: with one attempt the job fails, but
    // only because a harness process, not this one, exited.
    assert!(!ok);
    assert!(stderr.contains("exit status: 3"), "{stderr}");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_ne!(attempts[0], format!("pid {pid}"));

    let embedded = dir.path().join("embedded");
    run(
        env!("CARGO_BIN_EXE_process_workers"),
        &["--count", "200000", "--output", &embedded.to_string_lossy()],
    );
    assert_eq!(read_shards(&embedded.to_string_lossy()), digit_sums(200000));
    let (ok, stderr, _, _) = run_process_workers(dir.path(), &[]);
    assert!(ok, "{stderr}");
    assert_eq!(
        read_shards(&dir.path().join("sums").to_string_lossy()),
        digit_sums(200000)
    );
}

/// A harness process that dies mid-bundle (after emitting half its
/// output) is replaced and the bundle retried: the output is exact, with
/// nothing lost or duplicated.
#[test]
fn a_bundle_whose_harness_died_is_retried_on_a_fresh_harness() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr, pid, attempts) = run_process_workers(
        dir.path(),
        &["--fail-on", "150000", "--fail-how", "exit-once"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        read_shards(&dir.path().join("sums").to_string_lossy()),
        digit_sums(200000)
    );
    // Two attempts, in two different harness processes, neither this one.
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_ne!(attempts[0], attempts[1]);
    assert!(!attempts.contains(&format!("pid {pid}")));
}

/// User-code errors are not retried; a harness that dies every time fails
/// the job after `--max-bundle-attempts`, saying so.
#[test]
fn user_code_errors_fail_fast_and_harness_deaths_stop_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr, _, attempts) =
        run_process_workers(dir.path(), &["--fail-on", "150000", "--fail-how", "panic"]);
    assert!(!ok);
    assert!(stderr.contains("refusing number 150000"), "{stderr}");
    assert_eq!(attempts.len(), 1, "{attempts:?}");

    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr, _, attempts) = run_process_workers(
        dir.path(),
        &[
            "--fail-on",
            "150000",
            "--fail-how",
            "exit",
            "--max-bundle-attempts",
            "2",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("the bundle failed on harnesses 2 times"),
        "{stderr}"
    );
    assert!(stderr.contains("exit status: 3"), "{stderr}");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("sums-")),
        "a failed job writes no output"
    );
}

/// A harness process killed from outside (SIGKILL) in the middle of a
/// bundle: the bundle is retried on a fresh harness and the output is
/// exact.
#[test]
fn a_harness_killed_by_a_signal_mid_bundle_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let worker = std::thread::spawn({
        let log = log.clone();
        move || {
            // The first attempt logs its pid and hangs: kill that process.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let text = fs::read_to_string(&log).unwrap_or_default();
                if let Some(pid) = text.lines().next().and_then(|l| l.strip_prefix("pid ")) {
                    let status = Command::new("kill").args(["-9", pid]).status().unwrap();
                    assert!(status.success());
                    return pid.to_string();
                }
                assert!(std::time::Instant::now() < deadline, "no attempt logged");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    });
    let (ok, stderr, _, attempts) = run_process_workers(
        dir.path(),
        &["--fail-on", "150000", "--fail-how", "hang-once"],
    );
    let killed = worker.join().unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(
        read_shards(&dir.path().join("sums").to_string_lossy()),
        digit_sums(200000)
    );
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0], format!("pid {killed}"));
    assert_ne!(attempts[1], attempts[0]);
}

/// Dynamic work rebalancing across harness processes: unfused, the slow
/// `Check` stage reads all 2000 numbers as one bundle; the runner asks its
/// harness to split it (ProcessBundleSplit) and the second harness takes
/// the rest. Output is exact.
#[test]
fn a_straggling_bundle_in_a_harness_process_is_split_for_an_idle_one() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("sums").to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_process_workers"))
        .args([
            "--environment-type",
            "PROCESS",
            "--sdk-worker-parallelism",
            "2",
        ])
        .args(["--count", "2000", "--slow-micros", "500", "--no-fusion"])
        .args(["--output", &prefix, "--parallelism", "2", "--no-progress"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(read_shards(&prefix), digit_sums(2000));
    let splits: u64 = Regex::new(r"\((\d+) dynamic splits\)")
        .unwrap()
        .captures(&stderr)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no split count in: {stderr}"));
    assert!(splits >= 1, "{stderr}");
}
