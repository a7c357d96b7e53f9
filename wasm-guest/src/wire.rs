//! Beam wire primitives a guest needs to read and write values: varints
//! (`beam:coder:varint:v1`) and length-prefixed bytes (nested `bytes` and
//! `string_utf8`, e.g. the key of a kv).
//!
//! ```
//! use oxbeam_wasm_guest::wire;
//! let mut out = Vec::new();
//! wire::write_varint_i64(&mut out, -1);
//! wire::write_length_prefixed(&mut out, b"key");
//! let mut input = &out[..];
//! assert_eq!(wire::read_varint_i64(&mut input), Some(-1));
//! assert_eq!(wire::read_length_prefixed(&mut input), Some(&b"key"[..]));
//! ```

/// Appends `v` as an unsigned LEB128 varint.
pub fn write_varint_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` as Beam's varint of its two's-complement pattern.
pub fn write_varint_i64(out: &mut Vec<u8>, v: i64) {
    write_varint_u64(out, v as u64);
}

/// Appends a varint length, then `bytes`.
pub fn write_length_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varint_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads an unsigned LEB128 varint of at most 10 bytes; `None` if malformed.
pub fn read_varint_u64(input: &mut &[u8]) -> Option<u64> {
    let mut result = 0u64;
    for (i, &b) in input.iter().enumerate().take(10) {
        result |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(result);
        }
    }
    None
}

/// Reads Beam's varint as an `i64`; `None` if malformed.
pub fn read_varint_i64(input: &mut &[u8]) -> Option<i64> {
    read_varint_u64(input).map(|v| v as i64)
}

/// Reads a varint length and that many bytes; `None` if malformed.
pub fn read_length_prefixed<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut rest = *input;
    let len = usize::try_from(read_varint_u64(&mut rest)?).ok()?;
    if len > rest.len() {
        return None;
    }
    let (bytes, rest) = rest.split_at(len);
    *input = rest;
    Some(bytes)
}
