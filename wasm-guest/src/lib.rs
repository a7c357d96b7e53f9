//! # oxbeam-wasm-guest: write Oxbeam user functions that run as WebAssembly
//!
//! Build a `cdylib` for `wasm32-unknown-unknown` with this crate, export
//! functions with the macros below, and use the `.wasm` file in a pipeline
//! (`oxbeam::wasm::WasmMap` and friends). The host (crate `oxbeam-wasm`)
//! runs it sandboxed: no imports, capped memory, a deadline per bundle.
//!
//! The macros implement ABI v1 (`wasm/ABI.md`): the host writes a batch of
//! elements into this module's input arena, calls the export once per batch,
//! and the loop here calls your closure per element, writing outputs into a
//! reused output arena. Nothing allocates per element unless your closure
//! does.
//!
//! | macro | closure | per input |
//! |---|---|---|
//! | [`oxbeam_map!`] | `\|value: &[u8], out: &mut Vec<u8>\|` | exactly one output (appended to `out`) |
//! | [`oxbeam_flat_map!`] | `\|value: &[u8], out: &mut Emitter\|` | any number of outputs |
//! | [`oxbeam_filter!`] | `\|value: &[u8]\| -> bool` | kept or dropped |
//! | [`oxbeam_do_fn!`] | `\|element: &Element, out: &mut DoFnOutput\|` | key, timestamp, window in; outputs with timestamps |
//! | [`oxbeam_combine!`] | a [`CombineFn`] value | create / add / merge / extract |
//!
//! Values are the element's encoding in its Beam coder's *outer* context:
//! raw bytes for `bytes` and `string_utf8`, a varint for `varint`, key
//! (nested) then value for `kv`. [`wire`] reads and writes the primitives.
//! Closures return `()` or `Result<(), E: Display>` (filters `bool` or
//! `Result<bool, E>`); an `Err` or a panic fails the bundle with its message
//! and the element's index.
//!
//! ```
//! use oxbeam_wasm_guest::{oxbeam_map, oxbeam_filter};
//! oxbeam_map!(upper, |value: &[u8], out: &mut Vec<u8>| {
//!     out.extend(value.iter().map(u8::to_ascii_uppercase));
//! });
//! oxbeam_filter!(non_empty, |value: &[u8]| !value.is_empty());
//! ```
//!
//! On other targets the macros export nothing, so a workspace build for the
//! host still compiles guest crates.

pub mod wire;

#[doc(hidden)]
pub mod __rt;

pub use __rt::{
    ABI_VERSION, CombineFn, DoFnOutput, Element, Emitter, FilterResult, UdfResult, Window, config,
};

/// Exports `$name` as a Wasm map function (kind `MAP`): the closure appends
/// exactly one output value to `out` per input value.
#[macro_export]
macro_rules! oxbeam_map {
    ($name:ident, $f:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(in_len: i32) -> i64 {
            $crate::__rt::call(in_len, |input, out| $crate::__rt::run_map(input, out, $f))
        }
    };
}

/// Exports `$name` as a Wasm flat-map function (kind `FLAT_MAP`): the closure
/// emits zero or more values per input through [`Emitter`].
#[macro_export]
macro_rules! oxbeam_flat_map {
    ($name:ident, $f:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(in_len: i32) -> i64 {
            $crate::__rt::call(in_len, |input, out| {
                $crate::__rt::run_flat_map(input, out, $f)
            })
        }
    };
}

/// Exports `$name` as a Wasm filter (kind `FILTER`): the closure returns
/// whether to keep the element, which then passes unchanged.
#[macro_export]
macro_rules! oxbeam_filter {
    ($name:ident, $f:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(in_len: i32) -> i64 {
            $crate::__rt::call(in_len, |input, out| {
                $crate::__rt::run_filter(input, out, $f)
            })
        }
    };
}

/// Exports `$name` as a Wasm DoFn (kind `DO_FN`): the closure sees the key
/// (for kv inputs), value, timestamp and window of each element, and emits
/// outputs with [`DoFnOutput`].
#[macro_export]
macro_rules! oxbeam_do_fn {
    ($name:ident, $f:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(in_len: i32) -> i64 {
            $crate::__rt::call(in_len, |input, out| $crate::__rt::run_do_fn(input, out, $f))
        }
    };
}

/// Exports `$name` as a Wasm CombineFn (kind `COMBINE`) implemented by the
/// [`CombineFn`] value `$combine_fn`.
#[macro_export]
macro_rules! oxbeam_combine {
    ($name:ident, $combine_fn:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(missing_docs)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(op: i32, in_len: i32) -> i64 {
            $crate::__rt::call(in_len, |input, out| {
                $crate::__rt::run_combine(&$combine_fn, op, input, out)
            })
        }
    };
}
