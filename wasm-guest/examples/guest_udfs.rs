//! Example Wasm UDFs, used by the host's tests and benchmark.
//!
//! Build: `cargo build -p oxbeam-wasm-guest --target wasm32-unknown-unknown --release --example guest_udfs`
//! (the module is `target/wasm32-unknown-unknown/release/examples/guest_udfs.wasm`).

// On the host the export macros expand to nothing.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code, unused_imports))]

use oxbeam_wasm_guest::{
    CombineFn, Window, oxbeam_combine, oxbeam_do_fn, oxbeam_filter, oxbeam_flat_map, oxbeam_map,
    wire,
};

// Strings (`string_utf8`, outer context: the raw UTF-8 bytes).
oxbeam_map!(upper, |value: &[u8], out: &mut Vec<u8>| {
    out.extend(value.iter().map(u8::to_ascii_uppercase));
});

oxbeam_map!(identity, |value: &[u8], out: &mut Vec<u8>| {
    out.extend_from_slice(value);
});

// Varints: x -> 2x + 1.
oxbeam_map!(double_plus_one, |value: &[u8], out: &mut Vec<u8>| {
    let mut input = value;
    match wire::read_varint_i64(&mut input) {
        Some(v) => {
            wire::write_varint_i64(out, v.wrapping_mul(2).wrapping_add(1));
            Ok(())
        }
        None => Err("not a varint"),
    }
});

// Splits a line into words (ASCII whitespace), the wordcount tokenizer.
oxbeam_flat_map!(
    tokenize,
    |line: &[u8], out: &mut oxbeam_wasm_guest::Emitter| {
        for word in line.split(u8::is_ascii_whitespace) {
            if !word.is_empty() {
                out.emit(word);
            }
        }
    }
);

// Keeps strings at least as long as the u32 (little-endian) configuration,
// 1 if unconfigured.
oxbeam_filter!(min_len, |value: &[u8]| {
    let min = match oxbeam_wasm_guest::config() {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
        _ => 1,
    };
    value.len() >= min
});

// KV<string, varint> -> KV<string, string> "value@window", one millisecond
// later.
oxbeam_do_fn!(
    describe,
    |e: &oxbeam_wasm_guest::Element, out: &mut oxbeam_wasm_guest::DoFnOutput| {
        let mut v = e.value;
        let Some(n) = wire::read_varint_i64(&mut v) else {
            return Err("value is not a varint".to_string());
        };
        let window = match e.window {
            Window::Global => "global".to_string(),
            Window::Interval { start, end } => format!("[{start},{end})"),
        };
        let text = format!("{n}@{window}");
        out.emit_at(e.timestamp + 1, e.key, text.as_bytes());
        Ok(())
    }
);

// Panics on the element "boom".
oxbeam_map!(boom, |value: &[u8], out: &mut Vec<u8>| {
    if value == b"boom" {
        panic!("guest panicked on purpose");
    }
    out.extend_from_slice(value);
});

// Allocates without bound on the element "hog".
oxbeam_map!(hog, |value: &[u8], out: &mut Vec<u8>| {
    if value == b"hog" {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            out.push(hoard.len() as u8);
        }
    }
    out.extend_from_slice(value);
});

// Loops forever on the element "spin".
oxbeam_map!(spin, |value: &[u8], out: &mut Vec<u8>| {
    if value == b"spin" {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
    out.extend_from_slice(value);
});

/// Sums varints; the accumulator is a varint too.
struct Sum;

impl CombineFn for Sum {
    type Accumulator = i64;
    fn create(&self) -> i64 {
        0
    }
    fn add_input(&self, acc: &mut i64, value: &[u8]) -> Result<(), String> {
        let mut v = value;
        let n = wire::read_varint_i64(&mut v).ok_or("input is not a varint")?;
        *acc = acc.wrapping_add(n);
        Ok(())
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc = acc.wrapping_add(other);
    }
    fn extract(&self, acc: i64, out: &mut Vec<u8>) {
        wire::write_varint_i64(out, acc);
    }
    fn encode_accumulator(&self, acc: &i64, out: &mut Vec<u8>) {
        wire::write_varint_i64(out, *acc);
    }
    fn decode_accumulator(&self, bytes: &[u8]) -> Result<i64, String> {
        let mut b = bytes;
        wire::read_varint_i64(&mut b).ok_or_else(|| "bad accumulator".to_string())
    }
}

oxbeam_combine!(sum, Sum);
