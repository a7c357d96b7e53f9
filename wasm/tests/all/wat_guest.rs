//! A guest written by hand in WAT: the ABI is language-neutral.

use oxbeam_fn_api::Executor;
use oxbeam_model::oxbeam::WasmFunctionKind;

use crate::common::*;

/// ABI v1 by hand: a fixed input arena at 1024, outputs at 128 KiB.
pub const WAT: &str = r#"
(module
  (memory (export "memory") 4)
  (func (export "oxbeam_abi_version") (result i32) i32.const 1)
  (func (export "oxbeam_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.le_u (local.get $n) (i32.const 130048))
      (then (i32.const 1024)) (else (i32.const 0))))
  ;; MAP: ASCII upper-case of each value.
  (func (export "upper") (param $len i32) (result i64)
    (call $upper_spinning (local.get $len) (i32.const 0)))
  ;; The same, spinning `busy` iterations per value (a slow UDF).
  (func (export "slow_upper") (param $len i32) (result i64)
    (call $upper_spinning (local.get $len) (i32.const 2000000)))
  (func $upper_spinning (param $len i32) (param $busy i32) (result i64)
    (local $count i32) (local $i i32) (local $in i32) (local $out i32)
    (local $n i32) (local $j i32) (local $c i32) (local $k i32)
    (local.set $count (i32.load (i32.const 1024)))
    (local.set $in (i32.const 1032))
    (local.set $out (i32.const 131072))
    (block $done
      (loop $rec
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (i32.store (i32.const 1028) (local.get $i))
        (local.set $n (i32.load (local.get $in)))
        (i32.store (local.get $out) (local.get $n))
        (local.set $in (i32.add (local.get $in) (i32.const 4)))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (local.set $k (local.get $busy))
        (block $spun
          (loop $spin
            (br_if $spun (i32.eqz (local.get $k)))
            (local.set $k (i32.sub (local.get $k) (i32.const 1)))
            (br $spin)))
        (local.set $j (i32.const 0))
        (block $bdone
          (loop $byte
            (br_if $bdone (i32.ge_u (local.get $j) (local.get $n)))
            (local.set $c (i32.load8_u (i32.add (local.get $in) (local.get $j))))
            (if (i32.and (i32.ge_u (local.get $c) (i32.const 97))
                         (i32.le_u (local.get $c) (i32.const 122)))
              (then (local.set $c (i32.sub (local.get $c) (i32.const 32)))))
            (i32.store8 (i32.add (local.get $out) (local.get $j)) (local.get $c))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $byte)))
        (local.set $in (i32.add (local.get $in) (local.get $n)))
        (local.set $out (i32.add (local.get $out) (local.get $n)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rec)))
    (i64.or
      (i64.shl (i64.extend_i32_u (i32.sub (local.get $out) (i32.const 131072))) (i64.const 32))
      (i64.const 131072)))
  ;; Faults.
  (func (export "spin") (param i32) (result i64)
    (i32.store (i32.const 1028) (i32.const 0))
    (loop $l (br $l))
    (i64.const 0))
  (func (export "trap") (param i32) (result i64)
    (i32.store (i32.const 1028) (i32.const 1))
    unreachable)
  (func (export "bad_range") (param i32) (result i64)
    (i64.const 0x7fff000000000000))
  (func (export "short") (param i32) (result i64)
    (i64.const 131072))
  (func (export "grow") (param i32) (result i64)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (i64.const 131072))
)
"#;

pub fn module() -> Vec<u8> {
    wat::parse_str(WAT).unwrap()
}

#[test]
fn wat_map_upper_cases_exactly() {
    let m = module();
    let out = run_stage(
        STR,
        &[par_do(&payload(&m, "upper", WasmFunctionKind::Map), STR)],
        &global([s("hello"), s(""), s("Wasm 1!")]),
    )
    .unwrap();
    assert_eq!(values(out), [s("HELLO"), s(""), s("WASM 1!")]);
}

#[test]
fn wat_map_runs_many_batches_and_bundles() {
    let m = module();
    let d = descriptor(
        STR,
        &[par_do(&payload(&m, "upper", WasmFunctionKind::Map), STR)],
        false,
    );
    let mut p = executor().create_processor(d).unwrap();
    let words: Vec<String> = (0..10_000).map(|i| format!("w{i}")).collect();
    let input = encode(STR, &global(words.iter().map(|w| s(w))));
    for _ in 0..3 {
        let out = run_bundle(&mut *p, &input, STR, false).unwrap();
        assert_eq!(out.len(), words.len());
        assert_eq!(out[9_999].0, s("W9999"));
    }
}

#[test]
fn missing_exports_are_clear_errors() {
    let m = module();
    let d = descriptor(
        STR,
        &[par_do(&payload(&m, "nope", WasmFunctionKind::Map), STR)],
        false,
    );
    let err = executor().create_processor(d).err().unwrap().to_string();
    assert!(err.contains("export \"nope\" is missing"), "{err}");
}
