//! WASI preview 1 imports: provided deny by default, granted per function;
//! a Rust guest built for wasm32-wasip1 runs.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use oxbeam_fn_api::{Error, Executor};
use oxbeam_model::oxbeam::{WasmFunctionKind, WasmFunctionPayload, WasmGrants};

use crate::common::*;

/// A MAP whose every output is 5 bytes: the number of environment
/// variables, the first byte of the first, and the errnos of
/// `clock_time_get`, `random_get` and `path_open`. It also writes a line
/// to standard error. `shout_then_trap` writes the line and traps;
/// `exit` calls `proc_exit(3)`.
const PROBE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 4)
  (data (i32.const 512) "hello from wasi\n")
  (func (export "oxbeam_abi_version") (result i32) i32.const 1)
  (func (export "oxbeam_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.le_u (local.get $n) (i32.const 130048))
      (then (i32.const 1024)) (else (i32.const 0))))
  (func $shout
    (i32.store (i32.const 0x120) (i32.const 512))
    (i32.store (i32.const 0x124) (i32.const 16))
    (drop (call $fd_write (i32.const 2) (i32.const 0x120) (i32.const 1) (i32.const 0x128))))
  (func (export "probe") (param $len i32) (result i64)
    (local $count i32) (local $i i32) (local $out i32)
    (call $shout)
    (drop (call $env_sizes (i32.const 0x100) (i32.const 0x104)))
    (i32.store8 (i32.const 0x140) (i32.load (i32.const 0x100)))
    (i32.store8 (i32.const 0x141) (i32.const 0))
    (if (i32.gt_u (i32.load (i32.const 0x100)) (i32.const 0))
      (then
        (drop (call $env_get (i32.const 0x200) (i32.const 0x300)))
        (i32.store8 (i32.const 0x141) (i32.load8_u (i32.load (i32.const 0x200))))))
    (i32.store8 (i32.const 0x142) (call $clock (i32.const 0) (i64.const 1) (i32.const 0x108)))
    (i32.store8 (i32.const 0x143) (call $random (i32.const 0x110) (i32.const 8)))
    (i32.store8 (i32.const 0x144)
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                       (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0x118)))
    (local.set $count (i32.load (i32.const 1024)))
    (local.set $out (i32.const 131072))
    (block $done
      (loop $rec
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (i32.store (local.get $out) (i32.const 5))
        (memory.copy (i32.add (local.get $out) (i32.const 4)) (i32.const 0x140) (i32.const 5))
        (local.set $out (i32.add (local.get $out) (i32.const 9)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rec)))
    (i64.or
      (i64.shl (i64.extend_i32_u (i32.sub (local.get $out) (i32.const 131072))) (i64.const 32))
      (i64.const 131072)))
  (func (export "shout_then_trap") (param i32) (result i64)
    (call $shout)
    unreachable)
  (func (export "exit") (param i32) (result i64)
    (call $proc_exit (i32.const 3))
    (i64.const 0))
)
"#;

fn probe_module() -> Vec<u8> {
    wat::parse_str(PROBE).unwrap()
}

fn run(p: &WasmFunctionPayload, input: &[&str]) -> Result<Vec<Vec<u8>>, Error> {
    let d = descriptor(STR, &[par_do(p, BYTES)], false);
    let mut proc = executor().create_processor(d)?;
    let out = run_bundle(
        &mut *proc,
        &encode(STR, &global(input.iter().map(|x| s(x)))),
        BYTES,
        false,
    )?;
    Ok(values(out)
        .into_iter()
        .map(|v| match v {
            oxbeam_model::coders::Value::Bytes(b) => b,
            other => panic!("not bytes: {other:?}"),
        })
        .collect())
}

#[test]
fn nothing_is_granted_by_default() {
    let p = payload(&probe_module(), "probe", WasmFunctionKind::Map);
    // No variables; clock and random ENOTCAPABLE (76); no files ever.
    assert_eq!(
        run(&p, &["a", "b"]).unwrap(),
        vec![vec![0, 0, 76, 76, 76]; 2]
    );
}

#[test]
fn granted_environment_clock_and_random_are_provided() {
    let mut p = payload(&probe_module(), "probe", WasmFunctionKind::Map);
    p.grants = Some(WasmGrants {
        env: vec!["GREETING=hi".into(), "B=2".into()],
        clock: true,
        random: true,
    });
    assert_eq!(run(&p, &["a"]).unwrap(), vec![vec![2, b'G', 0, 0, 76]]);
}

#[test]
fn guest_output_and_exit_codes_reach_the_error() {
    let m = probe_module();
    let err = run(
        &payload(&m, "shout_then_trap", WasmFunctionKind::Map),
        &["a"],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("wasm trap"), "{err}");
    assert!(err.contains("guest output: hello from wasi"), "{err}");
    let err = run(&payload(&m, "exit", WasmFunctionKind::Map), &["a"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("the guest called proc_exit(3)"), "{err}");
}

#[test]
fn imports_other_than_wasi_are_rejected() {
    let m = wat::parse_str(
        r#"(module (import "env" "now" (func (result i64)))
            (memory (export "memory") 1))"#,
    )
    .unwrap();
    let d = descriptor(
        STR,
        &[par_do(&payload(&m, "upper", WasmFunctionKind::Map), STR)],
        false,
    );
    let err = executor().create_processor(d).err().unwrap().to_string();
    assert!(
        err.contains(
            "module imports env::now, but Wasm UDFs get no imports besides WASI preview 1"
        ),
        "{err}"
    );
}

/// The example guest built for wasm32-wasip1 (its std imports WASI).
fn wasip1_guest() -> Arc<Vec<u8>> {
    static WASM: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    WASM.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        Arc::new(
            oxbeam_wasm::dev::build_guest_udfs_for(&root, "wasm32-wasip1")
                .unwrap_or_else(|e| panic!("{e}")),
        )
    })
    .clone()
}

#[test]
fn a_rust_guest_built_for_wasip1_runs_and_reports_its_panics() {
    let m = wasip1_guest();
    let module = imports_of(&m);
    assert!(
        module
            .iter()
            .any(|i| i.starts_with("wasi_snapshot_preview1::")),
        "a wasip1 build imports WASI: {module:?}"
    );
    let d = descriptor(
        STR,
        &[
            par_do(&payload(&m, "tokenize", WasmFunctionKind::FlatMap), STR),
            par_do(&payload(&m, "upper", WasmFunctionKind::Map), STR),
        ],
        false,
    );
    let mut proc = executor().create_processor(d).unwrap();
    let out = run_bundle(
        &mut *proc,
        &encode(STR, &global([s("the quick fox")])),
        STR,
        false,
    )
    .unwrap();
    assert_eq!(values(out), [s("THE"), s("QUICK"), s("FOX")]);

    let d = descriptor(
        STR,
        &[par_do(&payload(&m, "boom", WasmFunctionKind::Map), STR)],
        false,
    );
    let mut proc = executor().create_processor(d).unwrap();
    let err = run_bundle(&mut *proc, &encode(STR, &global([s("boom")])), STR, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("guest panicked on purpose"), "{err}");
}

/// `module::name` of every import (via wasmtime's own parser).
fn imports_of(module: &[u8]) -> Vec<String> {
    let engine = wasmtime::Engine::default();
    let m = wasmtime::Module::new(&engine, module).unwrap();
    m.imports()
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect()
}
