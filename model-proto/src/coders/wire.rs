//! Low-level reads and writes of Beam's wire primitives.
//!
//! Writers append to a caller-owned `Vec<u8>` (reuse it across elements: no
//! allocation once it has grown). Readers take `&mut &[u8]`, advance it past
//! what they read, and return borrowed slices where they can. A failing reader
//! leaves the input where it was and reports offset 0: the position of the
//! failing read relative to the slice it was given.
//!
//! | primitive | encoding |
//! |---|---|
//! | varint | unsigned LEB128 of the 64-bit pattern (i64 −1 is 10 bytes) |
//! | int32 varint (row `INT32`) | unsigned LEB128 of the 32-bit pattern (−1 is 5 bytes) |
//! | fixed ints, floats | big-endian |
//! | length-prefixed bytes | varint length, then the bytes |
//! | timestamp | 8 bytes big-endian of `millis ^ i64::MIN` |
//! | interval window | end timestamp, then `end - start` as varint |
//! | global window | nothing |
//! | pane | 1 byte, then 0–2 varint indices |
//!
//! ```
//! use oxbeam_model::coders::wire;
//! let mut out = Vec::new();
//! wire::write_varint_u64(&mut out, 300);
//! wire::write_length_prefixed(&mut out, b"abc");
//! let mut input = &out[..];
//! assert_eq!(wire::read_varint_u64(&mut input).unwrap(), 300);
//! assert_eq!(wire::read_length_prefixed(&mut input).unwrap(), b"abc");
//! assert!(input.is_empty());
//! ```

use super::error::{CoderError, Result};
use crate::window::{BoundedWindow, PaneInfo, PaneTiming, Timestamp};

/// Longest varint of a 64-bit value.
pub const MAX_VARINT_LEN: usize = 10;

#[cold]
#[inline(never)]
fn truncated(needed: usize, available: usize) -> CoderError {
    CoderError::Truncated {
        offset: 0,
        needed,
        available,
    }
}

// ---------------------------------------------------------------- writers

/// Appends `v` as an unsigned LEB128 varint (1–10 bytes).
#[inline]
pub fn write_varint_u64(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&[(v as u8) | 0x80, (v >> 7) as u8]);
    } else if v < 1 << 21 {
        out.extend_from_slice(&[(v as u8) | 0x80, ((v >> 7) as u8) | 0x80, (v >> 14) as u8]);
    } else {
        write_varint_u64_long(out, v);
    }
}

#[inline(never)]
fn write_varint_u64_long(out: &mut Vec<u8>, v: u64) {
    // Branch-free: spread the 7-bit groups over a u64 (bytes 0-7: 28|28, then
    // 14|14, then 7|7 bits) and a u16 (bytes 8-9), set every continuation bit
    // but the last, append all ten bytes and trim. Byte-at-a-time stores into
    // an array would stall store-to-load forwarding on the copy.
    let mut lo = v & 0x00FF_FFFF_FFFF_FFFF;
    lo = (lo & 0x0FFF_FFFF) | ((lo & 0x00FF_FFFF_F000_0000) << 4);
    lo = (lo & 0x0000_3FFF_0000_3FFF) | ((lo & 0x0FFF_C000_0FFF_C000) << 2);
    lo = (lo & 0x007F_007F_007F_007F) | ((lo & 0x3F80_3F80_3F80_3F80) << 1);
    lo |= 0x8080_8080_8080_8080;
    let mut hi = (((v >> 56) & 0x7F) | 0x80 | ((v >> 63) << 8)) as u16;
    let n = varint_len(v);
    if n <= 8 {
        lo &= !(0x80u64 << (8 * (n - 1)));
    } else {
        hi &= !(0x80u16 << (8 * (n - 9)));
    }
    let mut bytes = [0u8; MAX_VARINT_LEN];
    bytes[..8].copy_from_slice(&lo.to_le_bytes());
    bytes[8..].copy_from_slice(&hi.to_le_bytes());
    let len = out.len();
    out.extend_from_slice(&bytes);
    out.truncate(len + n);
}

/// Appends `v` as Beam's varint of its 64-bit two's-complement pattern
/// (`beam:coder:varint:v1`; negative values take 10 bytes).
#[inline]
pub fn write_varint_i64(out: &mut Vec<u8>, v: i64) {
    write_varint_u64(out, v as u64);
}

/// Appends `v` as Beam's 32-bit varint (Java `VarIntCoder`, row `INT32`):
/// the 32-bit pattern, so negative values take 5 bytes.
#[inline]
pub fn write_varint_i32(out: &mut Vec<u8>, v: i32) {
    write_varint_u64(out, u64::from(v as u32));
}

/// Number of bytes [`write_varint_u64`] writes for `v`.
#[inline]
pub const fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends one byte, 0 or 1.
#[inline]
pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(v as u8);
}

/// Appends 2 bytes big-endian.
#[inline]
pub fn write_i16_be(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends 4 bytes big-endian.
#[inline]
pub fn write_i32_be(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends 8 bytes big-endian.
#[inline]
pub fn write_i64_be(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends an IEEE-754 single, big-endian.
#[inline]
pub fn write_f32_be(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends an IEEE-754 double, big-endian (`beam:coder:double:v1`).
#[inline]
pub fn write_f64_be(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a varint length, then `bytes` (bytes/string coders, nested context).
#[inline]
pub fn write_length_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + MAX_VARINT_LEN);
    write_varint_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a timestamp: 8 bytes big-endian of `millis ^ i64::MIN`.
#[inline]
pub fn write_timestamp(out: &mut Vec<u8>, ts: Timestamp) {
    out.extend_from_slice(&ts.to_ordered_bytes());
}

/// Appends a window with its standard coder: nothing for the global window;
/// end timestamp and span varint for an interval window.
#[inline]
pub fn write_window(out: &mut Vec<u8>, window: &BoundedWindow) {
    match window {
        BoundedWindow::Global => {}
        BoundedWindow::Interval { start, end } => {
            write_timestamp(out, *end);
            write_varint_i64(out, end.millis().wrapping_sub(start.millis()));
        }
    }
}

/// Appends a pane in Beam's `PaneInfoCoder` encoding.
#[inline]
pub fn write_pane(out: &mut Vec<u8>, pane: &PaneInfo) {
    use crate::window::PaneEncoding;
    let encoding = pane.encoding();
    out.push(pane.encoded_first_byte() | ((encoding as u8) << 4));
    match encoding {
        PaneEncoding::First => {}
        PaneEncoding::OneIndex => write_varint_i64(out, pane.index),
        PaneEncoding::TwoIndices => {
            write_varint_i64(out, pane.index);
            write_varint_i64(out, pane.on_time_index);
        }
    }
}

// ---------------------------------------------------------------- readers

/// Reads `N` bytes.
///
/// # Errors
/// [`CoderError::Truncated`] if fewer than `N` bytes remain.
#[inline]
pub fn read_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    match input.split_first_chunk::<N>() {
        Some((head, rest)) => {
            *input = rest;
            Ok(*head)
        }
        None => Err(truncated(N, input.len())),
    }
}

/// Reads one byte.
///
/// # Errors
/// [`CoderError::Truncated`] at the end of input.
#[inline]
pub fn read_u8(input: &mut &[u8]) -> Result<u8> {
    match input.split_first() {
        Some((b, rest)) => {
            *input = rest;
            Ok(*b)
        }
        None => Err(truncated(1, 0)),
    }
}

/// Reads a bool byte (`beam:coder:bool:v1`).
///
/// # Errors
/// [`CoderError::Truncated`] at the end of input; [`CoderError::InvalidData`]
/// for a byte other than 0 or 1.
#[inline]
pub fn read_bool(input: &mut &[u8]) -> Result<bool> {
    match input.first() {
        Some(0) => {
            *input = &input[1..];
            Ok(false)
        }
        Some(1) => {
            *input = &input[1..];
            Ok(true)
        }
        Some(b) => Err(CoderError::invalid(
            "bool",
            format!("byte {b:#04x} is neither 0 nor 1"),
        )),
        None => Err(truncated(1, 0)),
    }
}

/// Reads 2 bytes big-endian.
///
/// # Errors
/// [`CoderError::Truncated`] if fewer than 2 bytes remain.
#[inline]
pub fn read_i16_be(input: &mut &[u8]) -> Result<i16> {
    read_array(input).map(i16::from_be_bytes)
}

/// Reads 4 bytes big-endian.
///
/// # Errors
/// [`CoderError::Truncated`] if fewer than 4 bytes remain.
#[inline]
pub fn read_i32_be(input: &mut &[u8]) -> Result<i32> {
    read_array(input).map(i32::from_be_bytes)
}

/// Reads 8 bytes big-endian.
///
/// # Errors
/// [`CoderError::Truncated`] if fewer than 8 bytes remain.
#[inline]
pub fn read_i64_be(input: &mut &[u8]) -> Result<i64> {
    read_array(input).map(i64::from_be_bytes)
}

/// Reads a big-endian IEEE-754 single.
///
/// # Errors
/// [`CoderError::Truncated`] if fewer than 4 bytes remain.
#[inline]
pub fn read_f32_be(input: &mut &[u8]) -> Result<f32> {
    read_array(input).map(f32::from_be_bytes)
}

/// Reads a big-endian IEEE-754 double.
///
/// # Errors
/// [`CoderError::Truncated`] if fewer than 8 bytes remain.
#[inline]
pub fn read_f64_be(input: &mut &[u8]) -> Result<f64> {
    read_array(input).map(f64::from_be_bytes)
}

/// Reads an unsigned LEB128 varint of up to 10 bytes.
///
/// # Errors
/// [`CoderError::Truncated`] if the input ends inside the varint;
/// [`CoderError::InvalidVarint`] if it is longer than 10 bytes or its value
/// overflows 64 bits.
#[inline]
pub fn read_varint_u64(input: &mut &[u8]) -> Result<u64> {
    match input.split_first() {
        Some((&b, rest)) if b < 0x80 => {
            *input = rest;
            Ok(u64::from(b))
        }
        _ => read_varint_u64_slow(input),
    }
}

fn read_varint_u64_slow(input: &mut &[u8]) -> Result<u64> {
    let mut result = 0u64;
    for (i, &b) in input.iter().enumerate() {
        let bits = u64::from(b & 0x7F);
        if i == MAX_VARINT_LEN - 1 && (b & 0x80 != 0 || bits > 1) {
            return Err(CoderError::InvalidVarint { offset: 0 });
        }
        result |= bits << (7 * i);
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Ok(result);
        }
    }
    Err(truncated(input.len() + 1, input.len()))
}

/// Reads Beam's varint as the two's-complement `i64` it encodes.
///
/// # Errors
/// As [`read_varint_u64`].
#[inline]
pub fn read_varint_i64(input: &mut &[u8]) -> Result<i64> {
    read_varint_u64(input).map(|v| v as i64)
}

/// Reads Beam's 32-bit varint (Java `VarIntCoder`, row `INT32`).
///
/// # Errors
/// As [`read_varint_u64`], and [`CoderError::InvalidData`] if the value does
/// not fit 32 bits.
#[inline]
pub fn read_varint_i32(input: &mut &[u8]) -> Result<i32> {
    let before = *input;
    let v = read_varint_u64(input)?;
    match u32::try_from(v) {
        Ok(v) => Ok(v as i32),
        Err(_) => {
            *input = before;
            Err(CoderError::invalid(
                "int32 varint",
                format!("{v} overflows 32 bits"),
            ))
        }
    }
}

/// Reads `len` bytes, borrowed from the input.
///
/// # Errors
/// [`CoderError::LengthExceedsInput`] if fewer than `len` bytes remain.
#[inline]
pub fn read_bytes<'a>(input: &mut &'a [u8], len: u64) -> Result<&'a [u8]> {
    match usize::try_from(len) {
        Ok(n) if n <= input.len() => {
            let (head, rest) = input.split_at(n);
            *input = rest;
            Ok(head)
        }
        _ => Err(CoderError::LengthExceedsInput {
            offset: 0,
            length: len,
            available: input.len(),
        }),
    }
}

/// Reads a varint length, then that many bytes, borrowed from the input.
///
/// # Errors
/// As [`read_varint_u64`]; [`CoderError::LengthExceedsInput`] if the length
/// exceeds the rest of the input (the offset is that of the length varint, and
/// nothing is consumed).
#[inline]
pub fn read_length_prefixed<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    let before = *input;
    let len = read_varint_u64(input)?;
    read_bytes(input, len).inspect_err(|_| *input = before)
}

/// Reads a varint length, then that many bytes as UTF-8 (string coder, nested
/// context).
///
/// # Errors
/// As [`read_length_prefixed`]; [`CoderError::InvalidUtf8`] if the bytes are
/// not UTF-8, with the input left at the first invalid byte.
#[inline]
pub fn read_str<'a>(input: &mut &'a [u8]) -> Result<&'a str> {
    let before = *input;
    let bytes = read_length_prefixed(input)?;
    let start = before.len() - input.len() - bytes.len();
    utf8(bytes).map_err(|(valid_up_to, e)| {
        *input = &before[start + valid_up_to..];
        e
    })
}

/// Validates UTF-8; on failure returns the valid prefix length and the error.
#[inline]
pub(crate) fn utf8(bytes: &[u8]) -> std::result::Result<&str, (usize, CoderError)> {
    std::str::from_utf8(bytes).map_err(|e| {
        (
            e.valid_up_to(),
            CoderError::InvalidUtf8 {
                offset: 0,
                detail: e.to_string(),
            },
        )
    })
}

/// Reads a timestamp (8 bytes big-endian of `millis ^ i64::MIN`).
///
/// # Errors
/// [`CoderError::Truncated`] if fewer than 8 bytes remain.
#[inline]
pub fn read_timestamp(input: &mut &[u8]) -> Result<Timestamp> {
    read_array(input).map(Timestamp::from_ordered_bytes)
}

/// Reads an interval window (end timestamp, span varint).
///
/// # Errors
/// As [`read_timestamp`] and [`read_varint_u64`].
#[inline]
pub fn read_interval_window(input: &mut &[u8]) -> Result<BoundedWindow> {
    let before = *input;
    let end = read_timestamp(input)?;
    let span = read_varint_i64(input).inspect_err(|_| *input = before)?;
    Ok(BoundedWindow::Interval {
        start: Timestamp::from_millis(end.millis().wrapping_sub(span)),
        end,
    })
}

/// The panes of the 16 single-byte encodings.
static WELL_KNOWN_PANES: [PaneInfo; 16] = {
    let mut panes = [PaneInfo::NO_FIRING; 16];
    let mut i = 0;
    while i < 16 {
        panes[i] = PaneInfo::from_first_byte(i as u8);
        i += 1;
    }
    panes
};

/// Reads a pane in Beam's `PaneInfoCoder` encoding.
///
/// # Errors
/// [`CoderError::Truncated`] at the end of input; [`CoderError::InvalidData`]
/// for an encoding nibble other than 0, 1 or 2; as [`read_varint_u64`] for the
/// indices.
#[inline]
pub fn read_pane(input: &mut &[u8]) -> Result<PaneInfo> {
    // Hot path: the single-byte encodings, copied whole from a table (building
    // the struct field by field and then moving it stalls store forwarding).
    match input.split_first() {
        Some((&byte, rest)) if byte >> 4 == 0 => {
            *input = rest;
            Ok(WELL_KNOWN_PANES[usize::from(byte)])
        }
        _ => read_pane_with_indices(input),
    }
}

#[inline(never)]
fn read_pane_with_indices(input: &mut &[u8]) -> Result<PaneInfo> {
    let before = *input;
    let byte = read_u8(input)?;
    let mut base = WELL_KNOWN_PANES[usize::from(byte & 0x0F)];
    base.is_retraction = byte & PaneInfo::RETRACTION_BIT != 0;
    // The retraction bit is not part of the index count.
    match (byte & !PaneInfo::RETRACTION_BIT) >> 4 {
        0 => Ok(base),
        1 => {
            let index = read_varint_i64(input).inspect_err(|_| *input = before)?;
            let on_time_index = if base.timing == PaneTiming::Early {
                -1
            } else {
                index
            };
            Ok(PaneInfo {
                index,
                on_time_index,
                ..base
            })
        }
        2 => {
            let index = read_varint_i64(input).inspect_err(|_| *input = before)?;
            let on_time_index = read_varint_i64(input).inspect_err(|_| *input = before)?;
            Ok(PaneInfo {
                index,
                on_time_index,
                ..base
            })
        }
        n => {
            *input = before;
            Err(CoderError::invalid(
                "pane",
                format!("unknown pane encoding {n} in byte {byte:#04x}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn varint_known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7F]),
            (128, &[0x80, 1]),
            (200, &[0xC8, 1]),
            (9001, &[0xA9, 0x46]),
            (
                u64::MAX,
                &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ),
        ];
        for &(v, bytes) in cases {
            assert_eq!(enc(|o| write_varint_u64(o, v)), bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
            let mut input = bytes;
            assert_eq!(read_varint_u64(&mut input).unwrap(), v);
            assert!(input.is_empty());
        }
        assert_eq!(enc(|o| write_varint_i64(o, -1)).len(), 10);
        assert_eq!(
            enc(|o| write_varint_i32(o, -1)),
            [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]
        );
    }

    #[test]
    fn varint_round_trips_all_widths() {
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                let bytes = enc(|o| write_varint_u64(o, v));
                assert_eq!(bytes.len(), varint_len(v));
                let mut input = &bytes[..];
                assert_eq!(read_varint_u64(&mut input).unwrap(), v);
            }
        }
    }

    #[test]
    fn varint_errors() {
        let mut input: &[u8] = &[0x80, 0x80];
        assert_eq!(
            read_varint_u64(&mut input),
            Err(CoderError::Truncated {
                offset: 0,
                needed: 3,
                available: 2
            })
        );
        assert_eq!(input.len(), 2, "failed reads do not advance");
        let mut input: &[u8] = &[0xFF; 11];
        assert_eq!(
            read_varint_u64(&mut input),
            Err(CoderError::InvalidVarint { offset: 0 })
        );
        // 10th byte may only carry bit 63.
        let mut input: &[u8] = &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02];
        assert_eq!(
            read_varint_u64(&mut input),
            Err(CoderError::InvalidVarint { offset: 0 })
        );
        let mut input: &[u8] = &[];
        assert!(matches!(
            read_varint_u64(&mut input),
            Err(CoderError::Truncated { .. })
        ));
        let mut input: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x10];
        assert!(matches!(
            read_varint_i32(&mut input),
            Err(CoderError::InvalidData { .. })
        ));
        assert_eq!(input.len(), 5);
    }

    #[test]
    fn fixed_width_round_trips() {
        let bytes = enc(|o| {
            write_i16_be(o, -2);
            write_i32_be(o, -3);
            write_i64_be(o, -4);
            write_f32_be(o, 1.5);
            write_f64_be(o, -0.25);
            write_bool(o, true);
        });
        assert_eq!(bytes.len(), 2 + 4 + 8 + 4 + 8 + 1);
        let mut input = &bytes[..];
        assert_eq!(read_i16_be(&mut input).unwrap(), -2);
        assert_eq!(read_i32_be(&mut input).unwrap(), -3);
        assert_eq!(read_i64_be(&mut input).unwrap(), -4);
        assert_eq!(read_f32_be(&mut input).unwrap(), 1.5);
        assert_eq!(read_f64_be(&mut input).unwrap(), -0.25);
        assert!(read_bool(&mut input).unwrap());
        assert!(matches!(
            read_i64_be(&mut input),
            Err(CoderError::Truncated { needed: 8, .. })
        ));
        let mut input: &[u8] = &[2];
        assert!(matches!(
            read_bool(&mut input),
            Err(CoderError::InvalidData { .. })
        ));
    }

    #[test]
    fn length_prefixed_checks_length_before_slicing() {
        let bytes = enc(|o| write_length_prefixed(o, b"hello"));
        assert_eq!(bytes, b"\x05hello");
        let mut input = &bytes[..];
        assert_eq!(read_length_prefixed(&mut input).unwrap(), b"hello");
        let huge = enc(|o| write_varint_u64(o, u64::MAX));
        let mut input = &huge[..];
        assert!(matches!(
            read_length_prefixed(&mut input),
            Err(CoderError::LengthExceedsInput {
                length: u64::MAX,
                ..
            })
        ));
        assert_eq!(input.len(), huge.len());
    }

    #[test]
    fn timestamp_window_pane_encodings() {
        assert_eq!(
            enc(|o| write_timestamp(o, Timestamp::from_millis(1000))),
            [0x80, 0, 0, 0, 0, 0, 0x03, 0xE8]
        );
        let w = BoundedWindow::Interval {
            start: Timestamp::from_millis(10),
            end: Timestamp::from_millis(20),
        };
        let bytes = enc(|o| write_window(o, &w));
        assert_eq!(bytes, [0x80, 0, 0, 0, 0, 0, 0, 0x14, 0x0A]);
        assert_eq!(read_interval_window(&mut &bytes[..]).unwrap(), w);
        assert!(enc(|o| write_window(o, &BoundedWindow::Global)).is_empty());

        let pane = PaneInfo {
            is_first: false,
            is_last: true,
            timing: PaneTiming::OnTime,
            index: 30,
            on_time_index: 40,
            is_retraction: false,
        };
        let bytes = enc(|o| write_pane(o, &pane));
        assert_eq!(bytes, [0x26, 0x1E, 0x28]);
        assert_eq!(read_pane(&mut &bytes[..]).unwrap(), pane);
        assert_eq!(enc(|o| write_pane(o, &PaneInfo::NO_FIRING)), [0x0F]);
        let early = PaneInfo {
            is_first: false,
            is_last: false,
            timing: PaneTiming::Early,
            index: 3,
            on_time_index: -1,
            is_retraction: false,
        };
        let bytes = enc(|o| write_pane(o, &early));
        assert_eq!(bytes, [0x10, 3]);
        assert_eq!(read_pane(&mut &bytes[..]).unwrap(), early);
        // The retraction bit rides on top of every encoding.
        for p in [pane, early, PaneInfo::NO_FIRING] {
            let r = p.into_retraction();
            let bytes = enc(|o| write_pane(o, &r));
            let plain = enc(|o| write_pane(o, &p));
            assert_eq!(bytes[0], plain[0] | 0x80);
            assert_eq!(bytes[1..], plain[1..]);
            assert_eq!(read_pane(&mut &bytes[..]).unwrap(), r);
        }
        let mut input: &[u8] = &[0x3F];
        assert!(matches!(
            read_pane(&mut input),
            Err(CoderError::InvalidData { .. })
        ));
        let mut input: &[u8] = &[0x2F, 0x01];
        assert!(matches!(
            read_pane(&mut input),
            Err(CoderError::Truncated { .. })
        ));
        assert_eq!(input.len(), 2);
    }
}
