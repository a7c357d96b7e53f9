//! Beam's own Python SDK harness (`apache_beam.runners.worker.sdk_worker_main`
//! from the pinned apache-beam) running pipelines built with the real Beam
//! Python SDK, on the local runner, over the gRPC Fn API.
//!
//! Each pipeline writes its results from a `Map` with side effects into a
//! temp dir (one file per harness thread); the test reads them back.

use std::path::{Path, PathBuf};
use std::process::Command;

use oxbeam_fn_api::Executors;
use oxbeam_runner_local::{LocalOptions, LocalRunner};

/// The interpreter with apache-beam: `$OXBEAM_PYTHON`, else the workspace venv.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OXBEAM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with apache-beam: run ./scripts/test (creates .venv) or set OXBEAM_PYTHON"
    );
    venv
}

/// Builds pipeline `case` with the Beam Python SDK; its output goes to `out`.
const BUILD: &str = r#"
import os, sys, threading, json
import apache_beam as beam
from apache_beam.transforms.environments import ProcessEnvironment

case, out, proto_path, python = sys.argv[1:5]

def write(x, out=out):
    import os, threading
    path = os.path.join(out, '%d-%d' % (os.getpid(), threading.get_ident()))
    with open(path, 'a') as f:
        f.write('%s\n' % (x,))

p = beam.Pipeline()
if case == 'map_gbk':
    (p | beam.Create(['a', 'b', 'a', 'c', 'b', 'a'])
       | beam.Map(lambda w: (w, 1))
       | beam.GroupByKey()
       | beam.Map(lambda kv: '%s=%s' % (kv[0], sorted(kv[1])))
       | beam.Map(write))
elif case == 'side_inputs':
    side = p | 'Side' >> beam.Create([10, 20, 30])
    kvs = p | 'Kvs' >> beam.Create([('x', 1), ('y', 2), ('x', 3)])
    unique = p | 'Unique' >> beam.Create([('x', 1), ('y', 2)])
    (p | 'Main' >> beam.Create([1, 2, 3])
       | 'List' >> beam.Map(lambda x, s: x + sum(s), beam.pvalue.AsList(side))
       | 'Dict' >> beam.Map(lambda x, d: '%d:%s' % (x, sorted(d.items())), beam.pvalue.AsDict(unique))
       | 'Multi' >> beam.Map(lambda x, m: '%s:%s' % (x, sorted(m['x'])), beam.pvalue.AsMultiMap(kvs))
       | beam.Map(write))
elif case == 'combine':
    words = p | beam.Create(['to', 'be', 'or', 'not', 'to', 'be'] * 50)
    (words | beam.Map(lambda w: (w, 1)) | beam.CombinePerKey(sum)
           | 'FmtSum' >> beam.Map(lambda kv: 'sum %s=%d' % kv) | 'WriteSum' >> beam.Map(write))
    (words | 'Len' >> beam.Map(lambda w: (w[0], len(w)))
           | beam.CombinePerKey(beam.combiners.MeanCombineFn())
           | 'FmtMean' >> beam.Map(lambda kv: 'mean %s=%.2f' % kv) | 'WriteMean' >> beam.Map(write))
elif case == 'flatten_reshuffle':
    a = p | 'A' >> beam.Create([1, 2, 3])
    b = p | 'B' >> beam.Create([4, 5])
    ((a, b) | beam.Flatten() | beam.Reshuffle() | beam.Map(lambda x: x * 10) | beam.Map(write))
elif case == 'write_to_text':
    (p | beam.Create(['line %d' % i for i in range(100)])
       | beam.io.WriteToText(os.path.join(out, 'part'), shard_name_template='-SS'))
elif case in ('skewed_sdf', 'skewed_file'):
    # One straggler: a single restriction whose positions each take 20 ms
    # (the provider does not split it up front), so only runner-initiated
    # splits spread it over workers.
    import time
    from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
    from apache_beam.transforms.core import RestrictionProvider

    class WholeRange(RestrictionProvider):
        def initial_restriction(self, n):
            return OffsetRange(0, n)
        def create_tracker(self, r):
            return OffsetRestrictionTracker(r)
        def restriction_size(self, n, r):
            return r.size()
        def split(self, n, r):
            yield r

    class Slow(beam.DoFn):
        def process(self, n, tracker=beam.DoFn.RestrictionParam(WholeRange())):
            pos = tracker.current_restriction().start
            while tracker.try_claim(pos):
                time.sleep(0.02)
                yield pos
                pos += 1

    if case == 'skewed_sdf':
        (p | beam.Create([100]) | beam.ParDo(Slow()) | beam.Map(write))
    else:
        # One big file and many small ones, read by Beam's ReadFromText
        # (an SDF over byte ranges), each line costing 10 ms downstream.
        data = os.path.join(out, '..', 'data')
        os.makedirs(data, exist_ok=True)
        with open(os.path.join(data, 'big.txt'), 'w') as f:
            f.write(''.join('big %d\n' % i for i in range(120)))
        for k in range(6):
            with open(os.path.join(data, 'small-%d.txt' % k), 'w') as f:
                f.write('small %d\n' % k)
        def slow(line):
            time.sleep(0.01)
            return line
        (p | beam.io.ReadFromText(os.path.join(data, '*.txt'))
           | beam.Map(slow) | beam.Map(write))
elif case == 'fails':
    (p | beam.Create([1, 2, 0]) | beam.Map(lambda x: 10 // x) | beam.Map(write))
else:
    raise SystemExit('unknown case ' + case)

env = ProcessEnvironment(command='%s -m apache_beam.runners.worker.sdk_worker_main' % python)
proto = p.to_runner_api(default_environment=env)
with open(proto_path, 'wb') as f:
    f.write(proto.SerializeToString())
"#;

/// Runs `case` and returns its sorted output lines, or the runner's error.
fn run(case: &str, dir: &Path) -> Result<Vec<String>, oxbeam_runner_local::Error> {
    run_with(
        case,
        dir,
        LocalOptions {
            parallelism: 2,
            progress: false,
            ..LocalOptions::default()
        },
    )
}

fn run_with(
    case: &str,
    dir: &Path,
    options: LocalOptions,
) -> Result<Vec<String>, oxbeam_runner_local::Error> {
    run_for_result(case, dir, options).map(|(lines, _)| lines)
}

/// Like [`run_with`], with the runner's result.
fn run_for_result(
    case: &str,
    dir: &Path,
    options: LocalOptions,
) -> Result<(Vec<String>, oxbeam_runner_local::PipelineResult), oxbeam_runner_local::Error> {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let proto = dir.join("pipeline.pb");
    let status = Command::new(python())
        .args(["-W", "ignore", "-c", BUILD, case])
        .arg(&out)
        .arg(&proto)
        .arg(python())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let pipeline = oxbeam_runner_core::decode_pipeline(&std::fs::read(&proto).unwrap()).unwrap();
    let result = LocalRunner::new(options).run(&pipeline, &Executors::new())?;
    Ok((read_lines(&out), result))
}

fn read_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

#[test]
fn beam_python_map_group_by_key() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        run("map_gbk", dir.path()).unwrap(),
        ["a=[1, 1, 1]", "b=[1, 1]", "c=[1]"]
    );
}

#[test]
fn beam_python_side_inputs() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        run("side_inputs", dir.path()).unwrap(),
        [
            "61:[('x', 1), ('y', 2)]:[1, 3]",
            "62:[('x', 1), ('y', 2)]:[1, 3]",
            "63:[('x', 1), ('y', 2)]:[1, 3]",
        ]
    );
}

#[test]
fn beam_python_combine_per_key() {
    // Lifted (precombine, merge, extract in the harness) and not lifted.
    for combiner_lifting in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let options = LocalOptions {
            parallelism: 2,
            progress: false,
            combiner_lifting,
            ..LocalOptions::default()
        };
        assert_eq!(
            run_with("combine", dir.path(), options).unwrap(),
            [
                "mean b=2.00",
                "mean n=3.00",
                "mean o=2.00",
                "mean t=2.00",
                "sum be=100",
                "sum not=50",
                "sum or=50",
                "sum to=100"
            ],
            "combiner lifting {combiner_lifting}"
        );
    }
}

#[test]
fn beam_python_flatten_reshuffle() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        run("flatten_reshuffle", dir.path()).unwrap(),
        ["10", "20", "30", "40", "50"]
    );
}

#[test]
fn beam_python_write_to_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    expected.sort();
    assert_eq!(run("write_to_text", dir.path()).unwrap(), expected);
}

#[test]
fn beam_python_user_error_fails_the_job_with_the_traceback() {
    let dir = tempfile::tempdir().unwrap();
    let err = run("fails", dir.path()).unwrap_err().to_string();
    assert!(err.contains("ZeroDivisionError"), "{err}");
    assert!(err.contains("Map(<lambda at"), "{err}");
}

/// Dynamic work rebalancing: a straggling bundle on Beam's harness is split
/// (ProcessBundleSplit) while a worker idles; its residual runs as another
/// bundle. Every position or line is output exactly once either way.
#[test]
fn beam_python_stragglers_are_split_for_idle_workers() {
    for (case, expected) in [
        (
            "skewed_sdf",
            (0..100).map(|i| i.to_string()).collect::<Vec<_>>(),
        ),
        (
            "skewed_file",
            (0..120)
                .map(|i| format!("big {i}"))
                .chain((0..6).map(|k| format!("small {k}")))
                .collect(),
        ),
    ] {
        let mut expected = expected;
        expected.sort();
        for split in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            // Two harness processes: Beam Python runs a process's bundles
            // under one GIL, so the runner splits only across processes.
            let options = LocalOptions {
                parallelism: 2,
                progress: false,
                split_stragglers_after: split.then(|| std::time::Duration::from_millis(100)),
                harness: oxbeam_fn_api::HarnessOptions {
                    workers_per_environment: 2,
                    ..Default::default()
                },
                ..LocalOptions::default()
            };
            let (lines, result) = run_for_result(case, dir.path(), options).unwrap();
            assert_eq!(lines, expected, "{case}, splitting {split}");
            if split {
                assert!(
                    result.dynamic_splits >= 1,
                    "{case}: no split: {:?}",
                    result.steps
                );
            } else {
                assert_eq!(result.dynamic_splits, 0, "{case}");
            }
        }
    }
}
