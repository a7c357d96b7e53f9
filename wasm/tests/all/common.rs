//! Shared helpers: guest modules, one-transform stages, bundles.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use oxbeam_fn_api::{Bundle, BundleProcessor, Error, Executor, Metrics, NoSideInputs};
use oxbeam_model::coders::{
    Coder, Context, Value, WindowCoder, WindowedValueHeader, decode_windowed_with,
};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::oxbeam::{
    WasmFunctionKind, WasmFunctionPayload, WasmLimits, wasm_function_payload,
};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::urns::standard_coders as sc;
use oxbeam_wasm::{WasmExecutor, WasmOptions};
use prost::Message;

/// The example Rust guests (`wasm-guest/examples/guest_udfs.rs`), built
/// for wasm32-unknown-unknown once per test run.
pub fn rust_guest() -> Arc<Vec<u8>> {
    static WASM: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    WASM.get_or_init(|| Arc::new(build_rust_guest())).clone()
}

fn build_rust_guest() -> Vec<u8> {
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..");
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(o) = installed {
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"),
            "the Rust target wasm32-unknown-unknown is not installed, so the Wasm guest \
             examples cannot be built: run `rustup target add wasm32-unknown-unknown` \
             (scripts/env.sh does it)"
        );
    }
    oxbeam_wasm::dev::build_guest_udfs(&root).unwrap_or_else(|e| panic!("{e}"))
}

/// Coder ids of [`descriptor`]'s coders.
pub const BYTES: &str = "bytes";
pub const STR: &str = "str";
pub const VARINT: &str = "varint";
pub const KV_STR_VARINT: &str = "kv_str_varint";
pub const KV_STR_STR: &str = "kv_str_str";
pub const KV_STR_ITER_VARINT: &str = "kv_str_iter_varint";

fn coders() -> std::collections::BTreeMap<String, pb::Coder> {
    let c = |urn: &str, comps: &[&str]| pb::Coder {
        spec: Some(pb::FunctionSpec {
            urn: urn.into(),
            payload: Default::default(),
        }),
        component_coder_ids: comps.iter().map(|s| s.to_string()).collect(),
    };
    [
        (BYTES, c(sc::BYTES, &[])),
        (STR, c(sc::STRING_UTF8, &[])),
        (VARINT, c(sc::VARINT, &[])),
        (KV_STR_VARINT, c(sc::KV, &[STR, VARINT])),
        (KV_STR_STR, c(sc::KV, &[STR, STR])),
        ("iter_varint", c(sc::ITERABLE, &[VARINT])),
        (KV_STR_ITER_VARINT, c(sc::KV, &[STR, "iter_varint"])),
        ("global", c(sc::GLOBAL_WINDOW, &[])),
        ("interval", c(sc::INTERVAL_WINDOW, &[])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A Wasm function payload.
pub fn payload(module: &[u8], export: &str, kind: WasmFunctionKind) -> WasmFunctionPayload {
    WasmFunctionPayload {
        module: Some(wasm_function_payload::Module::ModuleBytes(
            module.to_vec().into(),
        )),
        export_name: export.into(),
        kind: kind as i32,
        abi_version: 1,
        ..Default::default()
    }
}

/// With limits.
pub fn limited(
    mut p: WasmFunctionPayload,
    memory: u64,
    deadline_ms: u64,
    fuel: u64,
) -> WasmFunctionPayload {
    p.limits = Some(WasmLimits {
        max_memory_bytes: memory,
        bundle_deadline_millis: deadline_ms,
        fuel_per_bundle: fuel,
    });
    p
}

/// A stage: source "src" → transforms → sink "sink". `steps` are
/// (transform urn, payload bytes, output coder id); the first reads a
/// PCollection of `input_coder`. `interval` picks interval windows.
pub fn descriptor(
    input_coder: &str,
    steps: &[(&str, Vec<u8>, &str)],
    interval: bool,
) -> Arc<ProcessBundleDescriptor> {
    let ws = pb::WindowingStrategy {
        window_coder_id: if interval { "interval" } else { "global" }.into(),
        ..Default::default()
    };
    let mut d = ProcessBundleDescriptor {
        id: "stage-1".into(),
        coders: coders(),
        ..Default::default()
    };
    d.windowing_strategies.insert("ws".into(), ws);
    let pcoll = |coder: &str| pb::PCollection {
        unique_name: String::new(),
        coder_id: coder.into(),
        windowing_strategy_id: "ws".into(),
        ..Default::default()
    };
    d.pcollections.insert("p0".into(), pcoll(input_coder));
    let port = RemoteGrpcPort {
        coder_id: String::new(),
        ..Default::default()
    }
    .encode_to_vec();
    let t =
        |urn: &str, payload: Vec<u8>, ins: &[(&str, &str)], outs: &[(&str, &str)], name: &str| {
            pb::PTransform {
                unique_name: name.into(),
                spec: Some(pb::FunctionSpec {
                    urn: urn.into(),
                    payload: payload.into(),
                }),
                inputs: ins
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                outputs: outs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                ..Default::default()
            }
        };
    d.transforms.insert(
        "src".into(),
        t(
            urns::fn_api_transforms::runner::DATA_SOURCE,
            port.clone(),
            &[],
            &[("out", "p0")],
            "src",
        ),
    );
    for (i, (urn, payload, out_coder)) in steps.iter().enumerate() {
        let (input, output) = (format!("p{i}"), format!("p{}", i + 1));
        d.pcollections.insert(output.clone(), pcoll(out_coder));
        d.transforms.insert(
            format!("t{i}"),
            t(
                urn,
                payload.clone(),
                &[("in", &input)],
                &[("out", &output)],
                &format!("Step{i}"),
            ),
        );
    }
    let last = format!("p{}", steps.len());
    d.transforms.insert(
        "sink".into(),
        t(
            urns::fn_api_transforms::runner::DATA_SINK,
            port,
            &[("in", &last)],
            &[],
            "sink",
        ),
    );
    Arc::new(d)
}

/// A ParDo step running `p`.
pub fn par_do(
    p: &WasmFunctionPayload,
    out_coder: &'static str,
) -> (&'static str, Vec<u8>, &'static str) {
    let payload = pb::ParDoPayload {
        do_fn: Some(pb::FunctionSpec {
            urn: urns::wasm_functions::DO_FN.into(),
            payload: p.encode_to_vec().into(),
        }),
        ..Default::default()
    };
    (
        urns::standard_p_transforms::primitives::PAR_DO,
        payload.encode_to_vec(),
        out_coder,
    )
}

/// A combine component step running `p`.
pub fn combine(
    urn: &'static str,
    p: &WasmFunctionPayload,
    out_coder: &'static str,
) -> (&'static str, Vec<u8>, &'static str) {
    let payload = pb::CombinePayload {
        combine_fn: Some(pb::FunctionSpec {
            urn: urns::wasm_functions::COMBINE_FN.into(),
            payload: p.encode_to_vec().into(),
        }),
        accumulator_coder_id: VARINT.into(),
    };
    (urn, payload.encode_to_vec(), out_coder)
}

/// Encodes `(value, header)`s with `coder`.
pub fn encode(coder_id: &str, values: &[(Value, WindowedValueHeader)]) -> Vec<u8> {
    let coder = Coder::from_proto(coder_id, &components()).unwrap();
    let mut out = Vec::new();
    for (v, h) in values {
        h.encode(&mut out);
        coder.encode(v, &mut out, Context::Nested).unwrap();
    }
    out
}

fn components() -> pb::Components {
    pb::Components {
        coders: coders(),
        ..Default::default()
    }
}

/// Values in the global window at timestamp 0.
pub fn global(values: impl IntoIterator<Item = Value>) -> Vec<(Value, WindowedValueHeader)> {
    values
        .into_iter()
        .map(|v| {
            (
                v,
                WindowedValueHeader::global(oxbeam_model::window::Timestamp::from_millis(0)),
            )
        })
        .collect()
}

/// Runs one bundle; returns the sink's decoded elements.
pub fn run_bundle(
    processor: &mut dyn BundleProcessor,
    input: &[u8],
    out_coder: &str,
    interval: bool,
) -> Result<Vec<(Value, WindowedValueHeader)>, Error> {
    let coder = Coder::from_proto(out_coder, &components()).unwrap();
    let wc = if interval {
        WindowCoder::Interval
    } else {
        WindowCoder::Global
    };
    let mut raw: Vec<Vec<u8>> = Vec::new();
    let mut sink = |id: &str, e: &[u8]| {
        assert_eq!(id, "sink");
        raw.push(e.to_vec());
        Ok(())
    };
    let mut metrics = Metrics::default();
    let mut bundle = Bundle::new(vec![("src", input)], &mut sink, &NoSideInputs, &mut metrics);
    processor.process_bundle(&mut bundle)?;
    Ok(raw
        .iter()
        .map(|e| {
            let mut input = &e[..];
            let r = decode_windowed_with(&mut input, wc, &coder, Context::Nested).unwrap();
            assert!(input.is_empty());
            (
                coder.decode(&mut &r.value[..], Context::Nested).unwrap(),
                r.header,
            )
        })
        .collect())
}

/// One shared executor (modules compile once per run).
pub fn executor() -> Arc<WasmExecutor> {
    static EXEC: OnceLock<Arc<WasmExecutor>> = OnceLock::new();
    EXEC.get_or_init(|| Arc::new(WasmExecutor::new(WasmOptions::default())))
        .clone()
}

/// Builds a processor for a stage and runs one bundle of `input`.
pub fn run_stage(
    input_coder: &str,
    steps: &[(&str, Vec<u8>, &str)],
    input: &[(Value, WindowedValueHeader)],
) -> Result<Vec<(Value, WindowedValueHeader)>, Error> {
    let out_coder = steps.last().map_or(input_coder, |s| s.2);
    let d = descriptor(input_coder, steps, false);
    let mut p = executor().create_processor(d)?;
    run_bundle(&mut *p, &encode(input_coder, input), out_coder, false)
}

/// The values of outputs.
pub fn values(out: Vec<(Value, WindowedValueHeader)>) -> Vec<Value> {
    out.into_iter().map(|(v, _)| v).collect()
}

pub fn s(x: &str) -> Value {
    Value::String(x.into())
}
