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
