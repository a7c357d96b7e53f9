//! The Wasm mode: the user functions of steps that have a Wasm twin run as
//! Wasm stages (`oxbeam:env:wasm:v1`, the `oxbeam-wasm` executor) and must
//! give the same outputs as the native ones. The functions are the example
//! guests of `oxbeam-wasm-guest` (`wasm-guest/examples/guest_udfs.rs`),
//! built for wasm32-unknown-unknown on first use.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use oxbeam::wasm::{WasmCombinePerKey, WasmDoFn, WasmFilter, WasmFn, WasmMap};
use oxbeam::{PCollection, Pipeline};
use oxbeam_wasm::WasmExecutor;

use crate::case::Step;

type Kv = (String, i64);

/// The guest module, built once per process.
///
/// # Errors
/// Cargo or the wasm32-unknown-unknown target is missing, or the build fails.
pub(crate) fn guest() -> anyhow::Result<Arc<Vec<u8>>> {
    static GUEST: OnceLock<Result<Arc<Vec<u8>>, String>> = OnceLock::new();
    GUEST
        .get_or_init(|| build_guest().map(Arc::new).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_guest() -> anyhow::Result<Vec<u8>> {
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..");
    oxbeam_wasm::dev::build_guest_udfs(&root).map_err(anyhow::Error::msg)
}

/// Registers the process's Wasm executor (modules compile once per process).
pub(crate) fn register(p: &Pipeline) {
    static EXEC: OnceLock<Arc<WasmExecutor>> = OnceLock::new();
    let exec = EXEC
        .get_or_init(|| Arc::new(WasmExecutor::default()))
        .clone();
    p.with_executor(oxbeam_model::urns::wasm_functions::ENVIRONMENT, exec);
}

fn configured(m: &Arc<Vec<u8>>, export: &str, n: i64) -> WasmFn {
    WasmFn::new(m.clone(), export).with_config(n.to_le_bytes())
}

/// `step` with its user function in Wasm, if it has a Wasm twin.
pub(crate) fn apply_step(
    pc: &PCollection<Kv>,
    step: &Step,
    label: &dyn Fn(&str) -> String,
    m: &Arc<Vec<u8>>,
) -> Option<PCollection<Kv>> {
    let per_key = |what: &str, export: &str| {
        pc.apply(
            &label(what),
            WasmCombinePerKey::<i64>::new(WasmFn::new(m.clone(), export)),
        )
    };
    Some(match step {
        Step::TimestampFromValue => pc.apply(
            &label("Timestamps"),
            WasmDoFn::<Kv>::new(WasmFn::new(m.clone(), "timestamp_from_value")),
        ),
        Step::AddToValue(n) => pc.apply(
            &label("Add"),
            WasmMap::<Kv>::new(configured(m, "add_to_value", *n)),
        ),
        Step::MultiplyValue(n) => pc.apply(
            &label("Multiply"),
            WasmMap::<Kv>::new(configured(m, "multiply_value", *n)),
        ),
        Step::KeepValuesAtLeast(n) => pc.apply(
            &label("Filter"),
            WasmFilter::new(configured(m, "value_at_least", *n)),
        ),
        Step::SumPerKey => per_key("Sum", "sum"),
        Step::MinPerKey => per_key("Min", "min"),
        Step::MaxPerKey => per_key("Max", "max"),
        Step::CountPerKey => per_key("Count", "count"),
        Step::MeanPerKey => pc
            .apply(
                &label("Mean"),
                WasmCombinePerKey::<f64>::new(WasmFn::new(m.clone(), "mean")),
            )
            .map_values(&label("Floor"), |m: &f64| m.floor() as i64),
        Step::PanicOnValue(bad) => pc.apply(
            &label("MayPanic"),
            WasmMap::<Kv>::new(configured(m, "panic_on_value", *bad)),
        ),
        _ => return None,
    })
}
