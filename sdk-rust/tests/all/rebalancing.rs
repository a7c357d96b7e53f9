//! Dynamic work rebalancing of native stages.

use std::time::{Duration, Instant};

use oxbeam::{Pipeline, PipelineOptions};

/// Unfused, the slow `Map` reads `Create`'s output as one chunk: a single
/// bundle of 60 elements of 10 ms each. With splitting, an idle worker
/// takes part of it once it has run a while; output is exact either way.
#[test]
fn a_straggling_bundle_is_split_for_an_idle_worker() {
    for split in [true, false] {
        let p = Pipeline::new(PipelineOptions {
            parallelism: Some(2),
            no_progress: true,
            no_fusion: true,
            no_dynamic_splitting: !split,
            ..Default::default()
        });
        let out = p
            .create("Xs", 0..60i64)
            .map("Slow", |x: &i64| {
                std::thread::sleep(Duration::from_millis(10));
                x * 2
            })
            .collect_for_testing("Out");
        let started = Instant::now();
        let result = p.run().unwrap();
        eprintln!(
            "splitting {split}: {:?}, {} splits",
            started.elapsed(),
            result.dynamic_splits
        );
        assert_eq!(out.sorted(), (0..60).map(|x| x * 2).collect::<Vec<_>>());
        if split {
            assert!(result.dynamic_splits >= 1);
        } else {
            assert_eq!(result.dynamic_splits, 0);
        }
    }
}

/// One text file read as a single byte range (no split up front), with
/// slow per-line work fused after the read: the read is split while it
/// runs (the splittable text read hands the unclaimed tail of its range
/// to the idle worker), and every line is still read exactly once.
#[test]
fn a_text_file_read_as_one_range_is_split_while_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    let lines: Vec<String> = (0..400).map(|i| format!("line {i}")).collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let p = Pipeline::new(PipelineOptions {
        parallelism: Some(2),
        no_progress: true,
        ..Default::default()
    });
    let out = p
        .apply(
            "Read",
            oxbeam::io::ReadFromText::new(path.to_string_lossy()).with_split_bytes(1 << 30),
        )
        .map("Slow", |l: &String| {
            std::thread::sleep(Duration::from_millis(2));
            l.clone()
        })
        .collect_for_testing("Out");
    let result = p.run().unwrap();
    let mut want = lines.clone();
    want.sort();
    assert_eq!(out.sorted(), want);
    assert!(
        result.dynamic_splits >= 1,
        "{} splits",
        result.dynamic_splits
    );
}
