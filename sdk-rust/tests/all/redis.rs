//! Redis Streams IO against a real `redis-server`: read → map → write,
//! exactly once across a cancelled job and a `kill -9`ed pipeline process
//! (stateless, and through a stateful DoFn and windowed counts, whose state
//! is checkpointed with the offsets), and clear errors for malformed
//! entries and unreachable servers.

use std::process::Command;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use oxbeam::io::redis::{ReadFromRedisStream, WriteToRedisStream};
use oxbeam::state::ValueState;
use oxbeam::{Error, Pipeline, WindowFn};

use crate::common::pipeline;
use crate::state::RunningCount;

#[path = "../../../runner-local/tests/support/redis_server.rs"]
mod redis_server;

use redis_server::RedisServer;

/// Adds entries with field `data` = `e<i>` for `i` in `range`.
fn add_entries(c: &mut redis::Connection, stream: &str, range: std::ops::Range<u32>) {
    let mut pipe = redis::pipe();
    for i in range {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg(format!("e{i}"))
            .ignore();
    }
    pipe.query::<()>(c).unwrap();
}

/// The `data` field of every entry of `stream`, in order.
fn stream_data(c: &mut redis::Connection, stream: &str) -> Vec<String> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(c)
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            assert_eq!(fields.len(), 1, "{fields:?}");
            assert_eq!(fields[0].0, "data");
            fields[0].1.clone()
        })
        .collect()
}

fn xlen(c: &mut redis::Connection, stream: &str) -> usize {
    redis::cmd("XLEN").arg(stream).query(c).unwrap()
}

fn expected(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("E{i}!")).collect()
}

/// Read `in` → upper-case and append `!` (slowly, if `slow`) → write `out`.
fn build(p: &Pipeline, url: &str, read: ReadFromRedisStream, slow: bool) {
    p.apply("Read", read)
        .map("Transform", move |(_id, data): &(String, Vec<u8>)| {
            if slow {
                std::thread::sleep(Duration::from_micros(300));
            }
            let mut s = String::from_utf8(data.to_ascii_uppercase()).unwrap();
            s.push('!');
            s
        })
        .apply("Write", WriteToRedisStream::new(url, "out"));
}

fn wait_for_output(c: &mut redis::Connection, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while xlen(c, "out") < at_least {
        assert!(Instant::now() < deadline, "no output after 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the rest of the input with a bounded source and checks that `out`
/// holds every record exactly once, in order.
fn finish_and_check(server: &RedisServer, c: &mut redis::Connection, total: u32) {
    let url = server.url();
    let p = pipeline();
    build(
        &p,
        &url,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .batch_size(50)
            .stop_at_end(),
        false,
    );
    p.run().unwrap();
    assert_eq!(stream_data(c, "out"), expected(0..total));
    let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg("in")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(c)
        .unwrap();
    let ckpt: String = redis::cmd("GET").arg("ckpt").query(c).unwrap();
    assert_eq!(ckpt, last[0].0);
}

#[test]
fn read_map_write_writes_exactly_the_transformed_entries() {
    let server = RedisServer::start();
    let mut c = server.connection();
    add_entries(&mut c, "in", 0..250);
    let url = server.url();
    let p = pipeline();
    build(
        &p,
        &url,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .batch_size(40)
            .stop_at_end(),
        false,
    );
    p.run().unwrap();
    assert_eq!(stream_data(&mut c, "out"), expected(0..250));
    // Run again: the checkpoint is at the end, so nothing more is written.
    let p = pipeline();
    build(
        &p,
        &url,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .stop_at_end(),
        false,
    );
    p.run().unwrap();
    assert_eq!(xlen(&mut c, "out"), 250);
}

#[test]
fn max_entries_bounds_a_run() {
    let server = RedisServer::start();
    let mut c = server.connection();
    add_entries(&mut c, "in", 0..30);
    let url = server.url();
    for _ in 0..3 {
        let p = pipeline();
        build(
            &p,
            &url,
            ReadFromRedisStream::new(&url, "in")
                .checkpoint_key("ckpt")
                .batch_size(7)
                .max_entries(10),
            false,
        );
        p.run().unwrap();
    }
    assert_eq!(stream_data(&mut c, "out"), expected(0..30));
}

/// Adds 2000 entries to "in" and starts a slow, checkpointed
/// read → map → write job over them (batches of 25).
fn start_slow_checkpointed_job(
    server: &RedisServer,
    c: &mut redis::Connection,
) -> oxbeam::PipelineHandle {
    add_entries(c, "in", 0..2000);
    let url = server.url();
    let p = pipeline();
    build(
        &p,
        &url,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .batch_size(25),
        true,
    );
    p.start().unwrap()
}

#[test]
fn a_cancelled_job_restarts_without_losing_or_duplicating_records() {
    let server = RedisServer::start();
    let mut c = server.connection();
    let job = start_slow_checkpointed_job(&server, &mut c);
    wait_for_output(&mut c, 300);
    job.cancel();
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
    let partial = xlen(&mut c, "out");
    assert!((300..2000).contains(&partial), "{partial} written");
    assert_eq!(stream_data(&mut c, "out"), expected(0..partial as u32));
    add_entries(&mut c, "in", 2000..2500);
    finish_and_check(&server, &mut c, 2500);
}

#[test]
fn draining_commits_everything_read_and_ends_done() {
    let server = RedisServer::start();
    let mut c = server.connection();
    let job = start_slow_checkpointed_job(&server, &mut c);
    wait_for_output(&mut c, 100);
    job.drain();
    job.wait().unwrap();
    let out = stream_data(&mut c, "out");
    assert!((100..2000).contains(&out.len()), "{} written", out.len());
    assert_eq!(out, expected(0..out.len() as u32));
    // The checkpoint is the id of the last entry whose result is in `out`.
    let ids: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("in")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    let ckpt: String = redis::cmd("GET").arg("ckpt").query(&mut c).unwrap();
    assert_eq!(ckpt, ids[out.len() - 1].0);
}

#[test]
fn windows_fire_as_entry_ids_advance_the_watermark() {
    let server = RedisServer::start();
    let mut c = server.connection();
    for (id, word) in [("1-0", "a"), ("2-0", "b"), ("15-0", "c")] {
        let _: String = redis::cmd("XADD")
            .arg("in")
            .arg(id)
            .arg("data")
            .arg(word)
            .query(&mut c)
            .unwrap();
    }
    let url = server.url();
    let p = pipeline();
    p.apply(
        "Read",
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .block(Duration::from_millis(20)),
    )
    .map("Word", |(_id, data): &(String, Vec<u8>)| {
        String::from_utf8(data.clone()).unwrap()
    })
    .window_into("Window", WindowFn::fixed(Duration::from_millis(10)))
    .count_per_element("Count")
    .map("Format", |(w, n): &(String, i64)| format!("{w}={n}"))
    .apply("Write", WriteToRedisStream::new(&url, "out"));
    let job = p.start().unwrap();
    // The watermark is 15 (the last id read): [0, 10) fires, [10, 20) not.
    wait_for_output(&mut c, 2);
    std::thread::sleep(Duration::from_millis(200));
    let mut first = stream_data(&mut c, "out");
    first.sort();
    assert_eq!(first, ["a=1", "b=1"]);
    // An entry at 25 moves the watermark past [10, 20).
    let _: String = redis::cmd("XADD")
        .arg("in")
        .arg("25-0")
        .arg("data")
        .arg("d")
        .query(&mut c)
        .unwrap();
    wait_for_output(&mut c, 3);
    assert_eq!(stream_data(&mut c, "out")[2], "c=1");
    // Drain: the watermark goes to +inf and [20, 30) fires.
    job.drain();
    job.wait().unwrap();
    assert_eq!(stream_data(&mut c, "out")[2..], ["c=1", "d=1"]);
    let ckpt: String = redis::cmd("GET").arg("ckpt").query(&mut c).unwrap();
    assert_eq!(ckpt, "25-0");
}

/// Env var naming the Redis server of the child pipeline process.
const CHILD_URL: &str = "OXBEAM_TEST_REDIS_CHILD_URL";

/// Run as a child process by `a_killed_pipeline_process_restarts_exactly_once`:
/// an unbounded pipeline that runs until it is killed.
#[test]
#[ignore = "the child process of a_killed_pipeline_process_restarts_exactly_once"]
fn redis_child_pipeline() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let p = pipeline();
    build(
        &p,
        &url,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .batch_size(25),
        true,
    );
    p.run().unwrap();
}

#[test]
fn a_killed_pipeline_process_restarts_exactly_once() {
    let server = RedisServer::start();
    let mut c = server.connection();
    add_entries(&mut c, "in", 0..3000);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "redis::redis_child_pipeline", "--ignored"])
        .env(CHILD_URL, server.url())
        .spawn()
        .unwrap();
    wait_for_output(&mut c, 300);
    // SIGKILL: no chance to flush or commit anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = xlen(&mut c, "out");
    assert!((300..3000).contains(&partial), "{partial} written");
    assert_eq!(stream_data(&mut c, "out"), expected(0..partial as u32));
    add_entries(&mut c, "in", 3000..3400);
    finish_and_check(&server, &mut c, 3400);
}

/// Entry `i` of the stateful test: id `<10 + i/5>-<i%5>` (event time
/// 10 + i/5 ms), data `k<i%4>`.
fn add_keyed_entries(c: &mut redis::Connection, range: std::ops::Range<u32>) {
    let mut pipe = redis::pipe();
    for i in range {
        pipe.cmd("XADD")
            .arg("in")
            .arg(format!("{}-{}", 10 + i / 5, i % 5))
            .arg("data")
            .arg(format!("k{}", i % 4))
            .ignore();
    }
    pipe.query::<()>(c).unwrap();
}

/// Read `in` (slowly) → a running count per key in ValueState → `out`, and
/// → counts per key in 100 ms fixed windows → `wins`.
fn build_stateful(p: &Pipeline, read: ReadFromRedisStream, url: &str) {
    let keyed = p
        .apply("Read", read)
        .map("Key", |(_id, data): &(String, Vec<u8>)| {
            std::thread::sleep(Duration::from_micros(300));
            (String::from_utf8(data.clone()).unwrap(), 1i64)
        });
    keyed
        .stateful_par_do(
            "Running",
            RunningCount {
                count: ValueState::new("count"),
            },
        )
        .map("Show", |(k, n): &(String, i64)| format!("{k}#{n}"))
        .apply("WriteRunning", WriteToRedisStream::new(url, "out"));
    keyed
        .keys("Keys")
        .window_into("Window", WindowFn::fixed(Duration::from_millis(100)))
        .count_per_element("Count")
        .map("Format", |(k, n): &(String, i64)| format!("{k}={n}"))
        .apply("WriteWindows", WriteToRedisStream::new(url, "wins"));
}

/// Run as a child process by
/// `a_killed_stateful_pipeline_process_restarts_exactly_once`.
#[test]
#[ignore = "the child process of a_killed_stateful_pipeline_process_restarts_exactly_once"]
fn redis_stateful_child_pipeline() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let p = pipeline();
    build_stateful(
        &p,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .batch_size(25),
        &url,
    );
    p.run().unwrap();
}

#[test]
fn a_killed_stateful_pipeline_process_restarts_exactly_once() {
    const TOTAL: u32 = 2400;
    let server = RedisServer::start();
    let mut c = server.connection();
    add_keyed_entries(&mut c, 0..2000);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "redis::redis_stateful_child_pipeline",
            "--ignored",
        ])
        .env(CHILD_URL, server.url())
        .spawn()
        .unwrap();
    // Past the first windows (100 ms of event time = 500 entries).
    wait_for_output(&mut c, 700);
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = xlen(&mut c, "out");
    assert!((700..2000).contains(&partial), "{partial} written");
    let state: Option<Vec<u8>> = redis::cmd("GET").arg("ckpt:state").query(&mut c).unwrap();
    assert!(
        state.is_some_and(|s| !s.is_empty()),
        "engine state committed"
    );
    add_keyed_entries(&mut c, 2000..TOTAL);
    let url = server.url();
    let p = pipeline();
    build_stateful(
        &p,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .batch_size(50)
            .stop_at_end(),
        &url,
    );
    p.run().unwrap();

    // Every running count exactly once, in order per key: counts restarted
    // from zero would repeat `k0#1`, lost state would skip some.
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in stream_data(&mut c, "out") {
        let (k, n) = r.split_once('#').unwrap();
        per_key
            .entry(k.into())
            .or_default()
            .push(n.parse().unwrap());
    }
    let per_key_total = i64::from(TOTAL / 4);
    for k in 0..4 {
        assert_eq!(
            per_key[&format!("k{k}")],
            (1..=per_key_total).collect::<Vec<_>>(),
            "running counts of k{k}"
        );
    }
    // Each window's count once, whole: entries of a window read before the
    // kill are in the restored grouping, not lost or counted twice.
    let mut wins = stream_data(&mut c, "wins");
    wins.sort();
    let mut want: Vec<String> = Vec::new();
    let mut counts: BTreeMap<(String, u32), i64> = BTreeMap::new();
    for i in 0..TOTAL {
        *counts
            .entry((format!("k{}", i % 4), (10 + i / 5) / 100))
            .or_default() += 1;
    }
    for ((k, _), n) in counts {
        want.push(format!("{k}={n}"));
    }
    want.sort();
    assert_eq!(wins, want);
    // The finished job (its bounded source ended) left no state to resume.
    let state: Option<Vec<u8>> = redis::cmd("GET").arg("ckpt:state").query(&mut c).unwrap();
    assert_eq!(state, None);
}

#[test]
fn engine_state_of_another_pipeline_or_corrupt_is_refused() {
    let server = RedisServer::start();
    let mut c = server.connection();
    add_keyed_entries(&mut c, 0..20);
    let url = server.url();
    let read = || {
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .stop_at_end()
    };
    // A job cancelled mid-stream leaves its last committed state.
    let p = pipeline();
    build_stateful(
        &p,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .batch_size(5),
        &url,
    );
    let job = p.start().unwrap();
    wait_for_output(&mut c, 5);
    job.cancel();
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
    let state: Option<Vec<u8>> = redis::cmd("GET").arg("ckpt:state").query(&mut c).unwrap();
    assert!(state.is_some());
    let source = format!("Redis stream source 'Read/ReadFromRedisStream' at {url}");

    // Another pipeline with the same checkpoint key.
    let p = pipeline();
    p.apply("Read", read())
        .map("Word", |(_id, data): &(String, Vec<u8>)| {
            String::from_utf8(data.clone()).unwrap()
        })
        .count_per_element("Other")
        .map("Format", |(w, n): &(String, i64)| format!("{w}={n}"))
        .apply("Write", WriteToRedisStream::new(&url, "other"));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.ends_with(&format!(
            "{source}: engine state key \"ckpt:state\": it holds the state of stateful \
             transform 'Running', which this pipeline does not have (was it written by \
             another pipeline?)"
        )),
        "{err}"
    );

    let _: () = redis::cmd("SET")
        .arg("ckpt:state")
        .arg("garbage")
        .query(&mut c)
        .unwrap();
    let p = pipeline();
    build_stateful(&p, read(), &url);
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "{source}: engine state key \"ckpt:state\": corrupt snapshot of the engine state \
             (7 bytes): "
        )),
        "{err}"
    );
    assert_eq!(xlen(&mut c, "other"), 0);
}

#[test]
fn malformed_entries_fail_with_the_transform_and_address() {
    let server = RedisServer::start();
    let mut c = server.connection();
    add_entries(&mut c, "in", 0..3);
    let _: String = redis::cmd("XADD")
        .arg("in")
        .arg("*")
        .arg("payload")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let url = server.url();
    let p = pipeline();
    build(
        &p,
        &url,
        ReadFromRedisStream::new(&url, "in")
            .checkpoint_key("ckpt")
            .stop_at_end(),
        false,
    );
    let err = p.run().unwrap_err().to_string();
    let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg("in")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert!(
        err.ends_with(&format!(
            "Redis stream source 'Read/ReadFromRedisStream' at {url}: entry {} of stream \"in\" has no field \"data\" (fields: payload)",
            last[0].0
        )),
        "{err}"
    );
    // The batch with the bad entry was not committed.
    assert_eq!(xlen(&mut c, "out"), 0);
}

#[test]
fn an_unreachable_server_fails_with_the_transform_and_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let p = pipeline();
    build(
        &p,
        &url,
        ReadFromRedisStream::new(&url, "in").stop_at_end(),
        false,
    );
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "Redis stream source 'Read/ReadFromRedisStream' at {url}: cannot connect: "
        )),
        "{err}"
    );
}

#[test]
fn bad_payloads_are_plan_errors() {
    let p = pipeline();
    let url = "redis://127.0.0.1:1/";
    build(
        &p,
        url,
        ReadFromRedisStream::new(url, "in").after_id("latest"),
        false,
    );
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("start id \"latest\" is not a Redis stream id <ms>-<seq>"),
        "{err}"
    );
}
