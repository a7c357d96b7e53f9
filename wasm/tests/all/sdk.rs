//! The same pipelines through the Rust SDK with native and Wasm UDFs give
//! identical output.

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
