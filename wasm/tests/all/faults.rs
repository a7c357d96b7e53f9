//! A guest that loops, hogs memory, traps, panics or returns garbage fails
//! its bundle with a user-code error naming the transform; the host goes on.

use std::time::{Duration, Instant};

use oxbeam_fn_api::{Error, Executor};
use oxbeam_model::oxbeam::WasmFunctionKind;

use crate::common::*;
use crate::wat_guest;

fn fail(
    module: &[u8],
    export: &str,
    limits: Option<(u64, u64, u64)>,
    input: &[&str],
) -> (String, Option<String>, Duration) {
    let mut p = payload(module, export, WasmFunctionKind::Map);
    if let Some((m, d, f)) = limits {
        p = limited(p, m, d, f);
    }
    let d = descriptor(STR, &[par_do(&p, STR)], false);
    let mut proc = executor().create_processor(d).unwrap();
    let input = encode(STR, &global(input.iter().map(|x| s(x))));
    let start = Instant::now();
    let err = run_bundle(&mut *proc, &input, STR, false).unwrap_err();
    let took = start.elapsed();
    // The processor recovers: a fresh instance serves the next bundle.
    let again = run_bundle(&mut *proc, &encode(STR, &global([s("fine")])), STR, false);
    if let ("upper" | "boom" | "hog" | "spin", Ok(v)) = (export, again) {
        assert_eq!(values(v).len(), 1);
    }
    match err {
        Error::UserCode(u) => {
            assert_eq!(u.transform, "Step0");
            (u.message, u.element, took)
        }
        other => panic!("expected a user-code error, got {other:?}"),
    }
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let (msg, element, took) = fail(&wat_guest::module(), "spin", Some((0, 200, 0)), &["a"]);
    assert!(
        msg.contains("deadline exceeded") && msg.contains("200 ms"),
        "{msg}"
    );
    assert_eq!(element.as_deref(), Some("a"));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn rust_infinite_loop_is_stopped_by_the_deadline() {
    let (msg, element, took) = fail(&rust_guest(), "spin", Some((0, 300, 0)), &["x", "spin"]);
    assert!(msg.contains("deadline exceeded"), "{msg}");
    assert_eq!(element.as_deref(), Some("spin"));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn fuel_exhaustion_fails_the_bundle() {
    let (msg, _, took) = fail(
        &wat_guest::module(),
        "spin",
        Some((0, 10_000, 1_000_000)),
        &["a"],
    );
    assert!(msg.contains("fuel exhausted"), "{msg}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn memory_cap_is_enforced() {
    let (msg, _, _) = fail(&wat_guest::module(), "grow", Some((1 << 20, 0, 0)), &["a"]);
    assert!(
        msg.contains("memory limit exceeded") && msg.contains("1048576"),
        "{msg}"
    );
    let (msg, element, _) = fail(&rust_guest(), "hog", Some((16 << 20, 0, 0)), &["ok", "hog"]);
    assert!(msg.contains("memory limit exceeded"), "{msg}");
    assert_eq!(element.as_deref(), Some("hog"));
}

#[test]
fn default_memory_cap_is_64_mib() {
    let (msg, _, _) = fail(&rust_guest(), "hog", None, &["hog"]);
    assert!(msg.contains("cap of 67108864 bytes"), "{msg}");
}

#[test]
fn traps_name_the_trap_and_element() {
    let (msg, element, _) = fail(&wat_guest::module(), "trap", None, &["a", "b", "c"]);
    assert!(
        msg.contains("wasm trap") && msg.contains("unreachable"),
        "{msg}"
    );
    assert_eq!(element.as_deref(), Some("b"));
}

#[test]
fn rust_panics_carry_their_message() {
    let (msg, element, _) = fail(&rust_guest(), "boom", None, &["a", "boom"]);
    assert!(msg.contains("guest panicked on purpose"), "{msg}");
    assert_eq!(element.as_deref(), Some("boom"));
}

#[test]
fn malformed_output_is_rejected() {
    let (msg, _, _) = fail(&wat_guest::module(), "bad_range", None, &["a"]);
    assert!(
        msg.contains("malformed output") && msg.contains("outside its"),
        "{msg}"
    );
    let (msg, _, _) = fail(&wat_guest::module(), "short", None, &["a", "b"]);
    assert!(msg.contains("malformed output"), "{msg}");
}

#[test]
fn guest_errors_are_user_errors() {
    // double_plus_one on a string that is not a varint (0x80 = truncated).
    let m = rust_guest();
    let d = descriptor(
        BYTES,
        &[par_do(
            &payload(&m, "double_plus_one", WasmFunctionKind::Map),
            VARINT,
        )],
        false,
    );
    let mut p = executor().create_processor(d).unwrap();
    let input = encode(
        BYTES,
        &global([oxbeam_model::coders::Value::Bytes(vec![0x80])]),
    );
    match run_bundle(&mut *p, &input, VARINT, false).unwrap_err() {
        Error::UserCode(u) => assert!(
            u.message.contains("element 0: not a varint"),
            "{}",
            u.message
        ),
        e => panic!("{e:?}"),
    }
}

#[test]
fn invalid_utf8_output_for_a_string_coder_is_malformed() {
    // identity over bytes, declared as producing strings.
    let m = rust_guest();
    let d = descriptor(
        BYTES,
        &[par_do(&payload(&m, "identity", WasmFunctionKind::Map), STR)],
        false,
    );
    let mut p = executor().create_processor(d).unwrap();
    let input = encode(
        BYTES,
        &global([oxbeam_model::coders::Value::Bytes(vec![0xFF])]),
    );
    match run_bundle(&mut *p, &input, STR, false).unwrap_err() {
        Error::UserCode(u) => assert!(u.message.contains("not valid UTF-8"), "{}", u.message),
        e => panic!("{e:?}"),
    }
}
