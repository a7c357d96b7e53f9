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

// ---------------------------------------------------------------------------
// KV<string, varint> functions of the conformance suite's Wasm mode. A kv's
// outer encoding is the key (nested: varint length, UTF-8) then the value
// (a varint); the i64 parameter is the little-endian i64 configuration.

fn config_i64() -> Result<i64, String> {
    match oxbeam_wasm_guest::config() {
        [a, b, c, d, e, f, g, h] => Ok(i64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h])),
        other => Err(format!(
            "expected an 8-byte i64 config, got {} bytes",
            other.len()
        )),
    }
}

/// Splits a kv<string, varint>'s outer encoding into the nested key and the
/// value.
fn split_kv(kv: &[u8]) -> Result<(&[u8], i64), String> {
    let mut rest = kv;
    wire::read_length_prefixed(&mut rest).ok_or("kv key is not length-prefixed")?;
    let key = &kv[..kv.len() - rest.len()];
    let v = wire::read_varint_i64(&mut rest).ok_or("kv value is not a varint")?;
    Ok((key, v))
}

fn map_value(kv: &[u8], out: &mut Vec<u8>, f: impl FnOnce(i64) -> i64) -> Result<(), String> {
    let (key, v) = split_kv(kv)?;
    out.extend_from_slice(key);
    wire::write_varint_i64(out, f(v));
    Ok(())
}

// (k, v) -> (k, v + n).
oxbeam_map!(add_to_value, |kv: &[u8], out: &mut Vec<u8>| {
    let n = config_i64()?;
    map_value(kv, out, |v| v.wrapping_add(n))
});

// (k, v) -> (k, v * n).
oxbeam_map!(multiply_value, |kv: &[u8], out: &mut Vec<u8>| {
    let n = config_i64()?;
    map_value(kv, out, |v| v.wrapping_mul(n))
});

// Keeps (k, v) with v >= n.
oxbeam_filter!(value_at_least, |kv: &[u8]| -> Result<bool, String> {
    Ok(split_kv(kv)?.1 >= config_i64()?)
});

// Panics on (k, n), passes everything else.
oxbeam_map!(panic_on_value, |kv: &[u8], out: &mut Vec<u8>| {
    let n = config_i64()?;
    let (_, v) = split_kv(kv)?;
    if v == n {
        panic!("conformance: refusing value {n}");
    }
    out.extend_from_slice(kv);
    Ok::<(), String>(())
});

// DoFn: (k, v) at any time -> (k, v) at timestamp v milliseconds.
oxbeam_do_fn!(
    timestamp_from_value,
    |e: &oxbeam_wasm_guest::Element, out: &mut oxbeam_wasm_guest::DoFnOutput| {
        let mut v = e.value;
        let Some(ts) = wire::read_varint_i64(&mut v) else {
            return Err("value is not a varint".to_string());
        };
        out.emit_at(ts, e.key, e.value);
        Ok(())
    }
);

/// Min or max of varints; the accumulator is empty (no input yet) or one
/// varint.
struct Extreme {
    max: bool,
}

impl CombineFn for Extreme {
    type Accumulator = Option<i64>;
    fn create(&self) -> Option<i64> {
        None
    }
    fn add_input(&self, acc: &mut Option<i64>, value: &[u8]) -> Result<(), String> {
        let mut v = value;
        let n = wire::read_varint_i64(&mut v).ok_or("input is not a varint")?;
        self.merge(acc, Some(n));
        Ok(())
    }
    fn merge(&self, acc: &mut Option<i64>, other: Option<i64>) {
        *acc = match (*acc, other) {
            (Some(a), Some(b)) => Some(if self.max { a.max(b) } else { a.min(b) }),
            (a, b) => a.or(b),
        };
    }
    fn extract(&self, acc: Option<i64>, out: &mut Vec<u8>) {
        // Beam's Min/Max of nothing: the identity of the order.
        let identity = if self.max { i64::MIN } else { i64::MAX };
        wire::write_varint_i64(out, acc.unwrap_or(identity));
    }
    fn encode_accumulator(&self, acc: &Option<i64>, out: &mut Vec<u8>) {
        if let Some(a) = acc {
            wire::write_varint_i64(out, *a);
        }
    }
    fn decode_accumulator(&self, bytes: &[u8]) -> Result<Option<i64>, String> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let mut b = bytes;
        wire::read_varint_i64(&mut b)
            .map(Some)
            .ok_or_else(|| "bad accumulator".to_string())
    }
}

oxbeam_combine!(min, Extreme { max: false });
oxbeam_combine!(max, Extreme { max: true });

/// Counts inputs (any coder); the accumulator is a varint.
struct Count;

impl CombineFn for Count {
    type Accumulator = i64;
    fn create(&self) -> i64 {
        0
    }
    fn add_input(&self, acc: &mut i64, _value: &[u8]) -> Result<(), String> {
        *acc += 1;
        Ok(())
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
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

oxbeam_combine!(count, Count);

/// Mean of varints as a `double` (big-endian f64); the accumulator is the
/// sum and the count, two varints.
struct Mean;

impl CombineFn for Mean {
    type Accumulator = (i64, i64);
    fn create(&self) -> (i64, i64) {
        (0, 0)
    }
    fn add_input(&self, acc: &mut (i64, i64), value: &[u8]) -> Result<(), String> {
        let mut v = value;
        let n = wire::read_varint_i64(&mut v).ok_or("input is not a varint")?;
        acc.0 = acc.0.wrapping_add(n);
        acc.1 += 1;
        Ok(())
    }
    fn merge(&self, acc: &mut (i64, i64), other: (i64, i64)) {
        acc.0 = acc.0.wrapping_add(other.0);
        acc.1 += other.1;
    }
    fn extract(&self, acc: (i64, i64), out: &mut Vec<u8>) {
        let mean = if acc.1 == 0 {
            f64::NAN
        } else {
            acc.0 as f64 / acc.1 as f64
        };
        out.extend_from_slice(&mean.to_be_bytes());
    }
    fn encode_accumulator(&self, acc: &(i64, i64), out: &mut Vec<u8>) {
        wire::write_varint_i64(out, acc.0);
        wire::write_varint_i64(out, acc.1);
    }
    fn decode_accumulator(&self, bytes: &[u8]) -> Result<(i64, i64), String> {
        let mut b = bytes;
        let sum = wire::read_varint_i64(&mut b).ok_or("bad accumulator")?;
        let count = wire::read_varint_i64(&mut b).ok_or("bad accumulator")?;
        Ok((sum, count))
    }
}

oxbeam_combine!(mean, Mean);

// Doubles (`double`, outer context: big-endian f64): x -> x / 2.
oxbeam_map!(halve, |value: &[u8], out: &mut Vec<u8>| {
    let bytes: [u8; 8] = value.try_into().map_err(|_| "not a double")?;
    out.extend_from_slice(&(f64::from_be_bytes(bytes) / 2.0).to_be_bytes());
    Ok::<(), &str>(())
});
