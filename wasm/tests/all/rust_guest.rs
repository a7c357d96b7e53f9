//! Guests written in Rust with oxbeam-wasm-guest, built for
//! wasm32-unknown-unknown during the test run.

use oxbeam_fn_api::Executor;
use oxbeam_model::coders::{Value, WindowedValueHeader, Windows};
use oxbeam_model::oxbeam::WasmFunctionKind;
use oxbeam_model::urns::standard_p_transforms::combine_components as cc;
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};

use crate::common::*;

fn kv(k: &str, v: Value) -> Value {
    Value::kv(s(k), v)
}

#[test]
fn map_flat_map_filter_fuse_in_one_stage() {
    let m = rust_guest();
    let mut keep = payload(&m, "min_len", WasmFunctionKind::Filter);
    keep.config = 3u32.to_le_bytes().to_vec().into();
    let out = run_stage(
        STR,
        &[
            par_do(&payload(&m, "tokenize", WasmFunctionKind::FlatMap), STR),
            par_do(&keep, STR),
            par_do(&payload(&m, "upper", WasmFunctionKind::Map), STR),
        ],
        &global([s("the quick  brown fox"), s(""), s("a jumps")]),
    )
    .unwrap();
    assert_eq!(
        values(out),
        [s("THE"), s("QUICK"), s("BROWN"), s("FOX"), s("JUMPS")]
    );
}

/// Words of every length from 0 to 40 bytes, ASCII and not, in the middle
/// of a batch and at its very end: the guest copies short words in fixed
/// 16-byte windows where the batch has the bytes, and the host reads short
/// outputs the same way; outputs are exactly the native split.
#[test]
fn tokenize_gives_exactly_the_native_split_for_words_of_every_length() {
    let m = rust_guest();
    let word = |n: usize| -> String {
        (0..n)
            .map(|i| {
                if n % 3 == 0 && i == 1 {
                    'é'
                } else {
                    char::from(b'a' + (i % 26) as u8)
                }
            })
            .collect()
    };
    let mut lines: Vec<String> = (0..=40).map(|n| format!("x {} y", word(n))).collect();
    lines.push((0..=40).map(word).collect::<Vec<_>>().join(" "));
    lines.push(word(3));
    lines.push(word(15));
    let expected: Vec<Value> = lines
        .iter()
        .flat_map(|l| l.split_ascii_whitespace().map(s))
        .collect();
    let out = run_stage(
        STR,
        &[par_do(
            &payload(&m, "tokenize", WasmFunctionKind::FlatMap),
            STR,
        )],
        &global(lines.iter().map(|l| s(l))),
    )
    .unwrap();
    assert_eq!(values(out), expected);
}

#[test]
fn map_keeps_timestamps_windows_and_panes() {
    let m = rust_guest();
    let w = BoundedWindow::Interval {
        start: Timestamp::from_millis(0),
        end: Timestamp::from_millis(10),
    };
    let header = WindowedValueHeader {
        timestamp: Timestamp::from_millis(7),
        windows: Windows::one(w),
        pane: PaneInfo::NO_FIRING,
    };
    let d = descriptor(
        VARINT,
        &[par_do(
            &payload(&m, "double_plus_one", WasmFunctionKind::Map),
            VARINT,
        )],
        true,
    );
    let mut p = executor().create_processor(d).unwrap();
    let input = encode(
        VARINT,
        &[
            (Value::Int(20), header.clone()),
            (Value::Int(-1), header.clone()),
        ],
    );
    let out = run_bundle(&mut *p, &input, VARINT, true).unwrap();
    assert_eq!(
        out,
        [(Value::Int(41), header.clone()), (Value::Int(-1), header)]
    );
}

#[test]
fn keyed_do_fn_sees_key_timestamp_and_each_window() {
    let m = rust_guest();
    let w = |a, b| BoundedWindow::Interval {
        start: Timestamp::from_millis(a),
        end: Timestamp::from_millis(b),
    };
    let header = WindowedValueHeader {
        timestamp: Timestamp::from_millis(5),
        windows: Windows::from_vec(vec![w(0, 10), w(5, 15)]),
        pane: PaneInfo::NO_FIRING,
    };
    let d = descriptor(
        KV_STR_VARINT,
        &[par_do(
            &payload(&m, "describe", WasmFunctionKind::DoFn),
            KV_STR_STR,
        )],
        true,
    );
    let mut p = executor().create_processor(d).unwrap();
    let input = encode(KV_STR_VARINT, &[(kv("k", Value::Int(3)), header)]);
    let out = run_bundle(&mut *p, &input, KV_STR_STR, true).unwrap();
    let at = |win| WindowedValueHeader {
        timestamp: Timestamp::from_millis(6),
        windows: Windows::one(win),
        pane: PaneInfo::NO_FIRING,
    };
    assert_eq!(
        out,
        [
            (kv("k", s("3@[0,10)")), at(w(0, 10))),
            (kv("k", s("3@[5,15)")), at(w(5, 15))),
        ]
    );
}

#[test]
fn combine_components_sum_per_key() {
    let m = rust_guest();
    let sum = payload(&m, "sum", WasmFunctionKind::Combine);
    // Lifted: precombine → (shuffle) → merge → extract.
    let pre = run_stage(
        KV_STR_VARINT,
        &[combine(cc::COMBINE_PER_KEY_PRECOMBINE, &sum, KV_STR_VARINT)],
        &global([
            kv("a", Value::Int(1)),
            kv("b", Value::Int(10)),
            kv("a", Value::Int(2)),
        ]),
    )
    .unwrap();
    assert_eq!(
        values(pre),
        [kv("a", Value::Int(3)), kv("b", Value::Int(10))]
    );
    let merged = run_stage(
        KV_STR_ITER_VARINT,
        &[
            combine(cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS, &sum, KV_STR_VARINT),
            combine(cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS, &sum, KV_STR_VARINT),
        ],
        &global([
            kv("a", Value::Iterable(vec![Value::Int(3), Value::Int(4)])),
            kv("b", Value::Iterable(vec![])),
        ]),
    )
    .unwrap();
    assert_eq!(
        values(merged),
        [kv("a", Value::Int(7)), kv("b", Value::Int(0))]
    );
    // Unlifted, with a group larger than one batch (several rounds).
    let big: Vec<Value> = (1..=10_000).map(Value::Int).collect();
    let grouped = run_stage(
        KV_STR_ITER_VARINT,
        &[combine(cc::COMBINE_GROUPED_VALUES, &sum, KV_STR_VARINT)],
        &global([
            kv("n", Value::Iterable(big)),
            kv("m", Value::Iterable(vec![Value::Int(-5)])),
        ]),
    )
    .unwrap();
    assert_eq!(
        values(grouped),
        [kv("n", Value::Int(50_005_000)), kv("m", Value::Int(-5))]
    );
}

#[test]
fn module_is_compiled_once_per_executor() {
    let exec = oxbeam_wasm::WasmExecutor::default();
    let m = rust_guest();
    for _ in 0..3 {
        let d = descriptor(
            STR,
            &[par_do(&payload(&m, "upper", WasmFunctionKind::Map), STR)],
            false,
        );
        exec.create_processor(d).unwrap();
    }
    assert_eq!(exec.cached_modules(), 1);
}
