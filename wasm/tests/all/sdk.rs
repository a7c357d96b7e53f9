//! The same pipelines through the Rust SDK with native and Wasm UDFs give
//! identical output.

use std::sync::Arc;

use oxbeam::Pipeline;
use oxbeam::wasm::{
    WasmCombineGlobally, WasmCombinePerKey, WasmFilter, WasmFlatMap, WasmFn, WasmMap,
};
use oxbeam_model::urns;

use crate::common::*;

fn lines() -> Vec<String> {
    (0..2_000)
        .map(|i| {
            format!(
                "the quick brown fox {} jumps over the lazy dog {}",
                i % 7,
                i % 13
            )
        })
        .collect()
}

fn wasm_pipeline() -> Pipeline {
    let p = Pipeline::default();
    p.with_executor(urns::wasm_functions::ENVIRONMENT, executor());
    p
}

#[test]
fn wordcount_native_and_wasm_agree() {
    let native = {
        let p = Pipeline::default();
        let out = p
            .create("Lines", lines())
            .flat_map("Split", |l: &String| {
                l.split_whitespace().map(str::to_string).collect::<Vec<_>>()
            })
            .filter("Long", |w: &String| w.len() >= 3)
            .map("Upper", |w: &String| w.to_ascii_uppercase())
            .count_per_element("Count")
            .collect_for_testing("Out");
        p.run().unwrap();
        out.sorted()
    };
    let wasm = {
        let p = wasm_pipeline();
        let m = rust_guest();
        let out = p
            .create("Lines", lines())
            .apply(
                "Split",
                WasmFlatMap::<String>::new(WasmFn::new(m.clone(), "tokenize")),
            )
            .apply(
                "Long",
                WasmFilter::new(WasmFn::new(m.clone(), "min_len").with_config(3u32.to_le_bytes())),
            )
            .apply("Upper", WasmMap::<String>::new(WasmFn::new(m, "upper")))
            .count_per_element("Count")
            .collect_for_testing("Out");
        p.run().unwrap();
        out.sorted()
    };
    assert!(!native.is_empty());
    assert_eq!(native, wasm);
}

#[test]
fn combine_per_key_native_and_wasm_agree() {
    let data: Vec<(String, i64)> = (0..5_000).map(|i| (format!("k{}", i % 17), i)).collect();
    let native = {
        let p = Pipeline::default();
        let out = p
            .create("Data", data.clone())
            .combine_per_key("Sum", oxbeam::combiners::Sum::of::<i64>())
            .collect_for_testing("Out");
        p.run().unwrap();
        out.sorted()
    };
    let wasm = {
        let p = wasm_pipeline();
        let out = p
            .create("Data", data)
            .apply(
                "Sum",
                WasmCombinePerKey::<i64>::new(WasmFn::new(rust_guest(), "sum")),
            )
            .collect_for_testing("Out");
        p.run().unwrap();
        out.sorted()
    };
    assert_eq!(native.len(), 17);
    assert_eq!(native, wasm);
}

#[test]
fn combine_globally_native_and_wasm_agree_with_defaults_for_empty_input() {
    let data: Vec<i64> = (1..=1_000).collect();
    let native = {
        let p = Pipeline::default();
        let out = p
            .create("Data", data.clone())
            .combine_globally("Sum", oxbeam::combiners::Sum::of::<i64>())
            .collect_for_testing("Out");
        p.run().unwrap();
        out.sorted()
    };
    assert_eq!(native, vec![500_500]);
    let p = wasm_pipeline();
    let sum = || WasmFn::new(rust_guest(), "sum");
    let all = p
        .create("Data", data)
        .apply("Sum", WasmCombineGlobally::<i64>::new(sum()))
        .collect_for_testing("All");
    // Empty input in the global window: the guest's sum of nothing.
    let empty = p
        .create("Nothing", Vec::<i64>::new())
        .apply("SumOfNothing", WasmCombineGlobally::<i64>::new(sum()))
        .collect_for_testing("Empty");
    let none = p
        .create("Nothing2", Vec::<i64>::new())
        .apply(
            "NoDefault",
            WasmCombineGlobally::<i64>::new(sum()).without_defaults(),
        )
        .collect_for_testing("None");
    p.run().unwrap();
    assert_eq!(all.sorted(), native);
    assert_eq!(empty.sorted(), vec![0]);
    assert!(none.sorted().is_empty());
}

#[test]
fn wasm_failure_fails_the_job_naming_the_transform() {
    let p = wasm_pipeline();
    p.create("Words", vec!["a".to_string(), "boom".to_string()])
        .apply(
            "Explode",
            WasmMap::<String>::new(WasmFn::new(rust_guest(), "boom")),
        )
        .collect_for_testing("Out");
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("Explode"), "{err}");
    assert!(err.contains("guest panicked on purpose"), "{err}");
}

/// An unfused Wasm stage reading Create's one chunk as one bundle, with a
/// slow guest function (a busy loop per element, about 0.3 ms): with two
/// workers the runner splits the running bundle and hands the rest to the
/// idle one; the output is exact either way. The bundle runs over a second
/// alone here, well past runner-local's 100 ms before a straggler is split,
/// even on a machine several times faster.
#[test]
fn a_straggling_wasm_bundle_is_split_for_an_idle_worker() {
    let words: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
    let mut want: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    want.sort();
    for split in [true, false] {
        let p = Pipeline::new(oxbeam::PipelineOptions {
            parallelism: Some(2),
            no_progress: true,
            no_fusion: true,
            no_dynamic_splitting: !split,
            ..Default::default()
        });
        p.with_executor(urns::wasm_functions::ENVIRONMENT, executor());
        let module = Arc::new(crate::wat_guest::module());
        let out = p
            .create("Words", words.clone())
            .apply(
                "SlowUpper",
                WasmMap::<String>::new(WasmFn::new(module, "slow_upper")),
            )
            .collect_for_testing("Out");
        let started = std::time::Instant::now();
        let result = p.run().unwrap();
        eprintln!(
            "splitting {split}: {:?}, {} splits",
            started.elapsed(),
            result.dynamic_splits
        );
        assert_eq!(out.sorted(), want);
        if split {
            assert!(result.dynamic_splits >= 1);
        } else {
            assert_eq!(result.dynamic_splits, 0);
        }
    }
}

#[test]
fn the_constructors_next_to_the_native_ones_build_the_same_transforms() {
    use oxbeam::ParDo;
    use oxbeam::wasm::{Filter, FlatMap, Map};
    let p = wasm_pipeline();
    let m = rust_guest();
    let out = p
        .create(
            "Lines",
            vec!["the quick  brown fox".to_string(), "a jumps".into()],
        )
        .apply(
            "Split",
            FlatMap::wasm::<String>(WasmFn::new(m.clone(), "tokenize")),
        )
        .apply(
            "Long",
            Filter::wasm(WasmFn::new(m.clone(), "min_len").with_config(4u32.to_le_bytes())),
        )
        .apply(
            "Upper",
            Map::wasm::<String>(WasmFn::new(m.clone(), "upper")),
        )
        .map("Pair", |w: &String| (w.clone(), w.len() as i64))
        .apply(
            "Describe",
            ParDo::wasm::<(String, String)>(WasmFn::new(m, "describe")),
        )
        .collect_for_testing("Out");
    p.run().unwrap();
    let kv = |k: &str| (k.to_string(), "5@global".to_string());
    assert_eq!(out.sorted(), [kv("BROWN"), kv("JUMPS"), kv("QUICK")]);
}
