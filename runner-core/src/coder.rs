//! The runner's view of element encodings: coders are
//! `oxbeam_model::coders::Coder`, built from the graph's coder table with
//! [`build_coder`]; [`WindowedHeader`] reads a windowed value's header
//! *zero-copy*, keeping the windows as their encoded bytes (what a shuffle
//! groups by), which the model's decoded `WindowedValueHeader` does not.

use std::collections::BTreeMap;

use oxbeam_model::coders::MAX_CODER_DEPTH;
pub use oxbeam_model::coders::{Coder, Context};
use oxbeam_model::urns::standard_coders as c;

/// A coder as the pipeline declares it: URN, payload and component ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoderSpec {
    /// Coder URN.
    pub urn: String,
    /// Coder payload (empty for most standard coders).
    pub payload: Vec<u8>,
    /// Ids of the component coders, in the order the URN defines.
    pub components: Vec<String>,
}

/// Builds coder `id` of the pipeline's coder table as an
/// `oxbeam_model::coders::Coder` (unknown URNs become `Coder::Opaque`).
///
/// # Errors
/// A message if `id` or a component is missing, a standard coder has the
/// wrong components or payload, or the tree is cyclic or too deep.
pub fn build_coder(id: &str, specs: &BTreeMap<String, CoderSpec>) -> Result<Coder, String> {
    build(id, specs, 0, false)
}

fn build(
    id: &str,
    specs: &BTreeMap<String, CoderSpec>,
    depth: usize,
    inside_length_prefix: bool,
) -> Result<Coder, String> {
    if depth > MAX_CODER_DEPTH {
        return Err(format!(
            "coder {id:?} nests deeper than {MAX_CODER_DEPTH} (cyclic?)"
        ));
    }
    let spec = specs
        .get(id)
        .ok_or_else(|| format!("coder id {id:?} is not in the pipeline"))?;
    // Components of unknown coders are opaque to the runner: not built.
    let components = if is_known_urn(&spec.urn) {
        spec.components
            .iter()
            .map(|cid| build(cid, specs, depth + 1, spec.urn == c::LENGTH_PREFIX))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    match Coder::from_parts(&spec.urn, &spec.payload, components) {
        Ok(c) => Ok(c),
        // A row whose schema the runner cannot read travels length-prefixed
        // (Graph::length_prefix_unknown): opaque, like an unknown coder.
        Err(_) if spec.urn == c::ROW && inside_length_prefix => Ok(Coder::Opaque {
            urn: spec.urn.clone(),
            payload: spec.payload.clone().into(),
        }),
        Err(e) => Err(format!("coder {id:?}: {e}")),
    }
}

/// Whether the runner understands coders with this URN (their bytes, and so
/// their components). Other coders (e.g. `beam:coder:pickled_python:v1`) are
/// opaque and must sit inside `beam:coder:length_prefix:v1`.
pub fn is_known_urn(urn: &str) -> bool {
    const KNOWN: [&str; 18] = [
        c::BYTES,
        c::STRING_UTF8,
        c::VARINT,
        c::DOUBLE,
        c::BOOL,
        c::KV,
        c::ITERABLE,
        c::LENGTH_PREFIX,
        c::NULLABLE,
        c::GLOBAL_WINDOW,
        c::INTERVAL_WINDOW,
        c::WINDOWED_VALUE,
        c::STATE_BACKED_ITERABLE,
        c::CUSTOM_WINDOW,
        c::PARAM_WINDOWED_VALUE,
        c::TIMER,
        c::ROW,
        c::SHARDED_KEY,
    ];
    KNOWN.contains(&urn)
}

/// Bytes that do not decode with the coder the pipeline declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

type DecodeResult<T> = std::result::Result<T, DecodeError>;

fn short(n: usize, what: &str) -> DecodeError {
    DecodeError(format!("input ended inside {what} ({n} bytes left)"))
}

/// Reads an unsigned LEB128 varint.
///
/// # Errors
/// On truncated or over-long varints.
#[inline]
pub fn read_varint(input: &mut &[u8]) -> DecodeResult<u64> {
    if let Some((&b, rest)) = input.split_first() {
        if b < 0x80 {
            *input = rest;
            return Ok(u64::from(b));
        }
    }
    let mut result = 0u64;
    for (i, &b) in input.iter().enumerate().take(10) {
        result |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Ok(result);
        }
    }
    Err(DecodeError("truncated or over-long varint".into()))
}

/// Appends an unsigned LEB128 varint.
#[inline]
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn take<'a>(input: &mut &'a [u8], n: u64, what: &str) -> DecodeResult<&'a [u8]> {
    match usize::try_from(n) {
        Ok(n) if n <= input.len() => {
            let (head, rest) = input.split_at(n);
            *input = rest;
            Ok(head)
        }
        _ => Err(short(input.len(), what)),
    }
}

#[inline]
fn take_array<const N: usize>(input: &mut &[u8], what: &str) -> DecodeResult<[u8; N]> {
    match input.split_first_chunk::<N>() {
        Some((head, rest)) => {
            *input = rest;
            Ok(*head)
        }
        None => Err(short(input.len(), what)),
    }
}

/// The metadata of one nested `windowed_value`, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowedHeader<'a> {
    /// Event time in milliseconds.
    pub timestamp: i64,
    /// Number of windows.
    pub window_count: u32,
    /// The encoded windows, back to back.
    pub windows: &'a [u8],
    /// The encoded pane.
    pub pane: &'a [u8],
    /// Everything after the pane: the value, and whatever follows it.
    pub value: &'a [u8],
}

impl<'a> WindowedHeader<'a> {
    /// Parses the header at the start of `input` (timestamp, windows, pane);
    /// `value` is the rest of `input`. Does not advance `input`.
    ///
    /// # Errors
    /// If the bytes do not hold a header with windows of `window_coder`.
    #[inline]
    pub fn parse(input: &&'a [u8], window_coder: &Coder) -> DecodeResult<Self> {
        let mut rest: &'a [u8] = input;
        let ts = take_array::<8>(&mut rest, "a timestamp")?;
        let timestamp = (u64::from_be_bytes(ts) ^ (1u64 << 63)) as i64;
        let count = i32::from_be_bytes(take_array(&mut rest, "a window count")?);
        let window_count = u32::try_from(count)
            .map_err(|_| DecodeError(format!("negative window count {count}")))?;
        let start = rest;
        match window_coder {
            Coder::GlobalWindow => {}
            Coder::IntervalWindow => {
                for _ in 0..window_count {
                    take(&mut rest, 8, "an interval window")?;
                    read_varint(&mut rest)?;
                }
            }
            other => {
                for _ in 0..window_count {
                    other
                        .skip(&mut rest, Context::Nested)
                        .map_err(|e| DecodeError(e.to_string()))?;
                }
            }
        }
        let windows = &start[..start.len() - rest.len()];
        let pane_start = rest;
        let b = take_array::<1>(&mut rest, "a pane")?[0];
        // Bit 0x80 marks a retraction; the index count is the rest of the
        // high nibble.
        let indices = (b & 0x7F) >> 4;
        for _ in 0..indices {
            read_varint(&mut rest)?;
        }
        if indices > 2 {
            return Err(DecodeError(format!("invalid pane byte {b:#04x}")));
        }
        let pane = &pane_start[..pane_start.len() - rest.len()];
        Ok(WindowedHeader {
            timestamp,
            window_count,
            windows,
            pane,
            value: rest,
        })
    }
}

/// Appends a timestamp in Beam's order-preserving encoding.
#[inline]
pub fn write_timestamp(out: &mut Vec<u8>, millis: i64) {
    out.extend_from_slice(&((millis as u64) ^ (1u64 << 63)).to_be_bytes());
}

/// Decodes an interval window's bytes (end timestamp, span) to `(start, end)`.
///
/// # Errors
/// If the bytes are not one interval window.
pub fn read_interval_window(input: &mut &[u8]) -> DecodeResult<(i64, i64)> {
    let end = (u64::from_be_bytes(take_array(input, "an interval window")?) ^ (1u64 << 63)) as i64;
    let span = read_varint(input)? as i64;
    Ok((end.wrapping_sub(span), end))
}

/// Appends an interval window `[start, end)`.
pub fn write_interval_window(out: &mut Vec<u8>, start: i64, end: i64) {
    write_timestamp(out, end);
    write_varint(out, end.wrapping_sub(start) as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(list: &[(&str, &str, &[&str])]) -> BTreeMap<String, CoderSpec> {
        list.iter()
            .map(|(id, urn, comps)| {
                (
                    id.to_string(),
                    CoderSpec {
                        urn: urn.to_string(),
                        payload: vec![],
                        components: comps.iter().map(|s| s.to_string()).collect(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn builds_model_coders_from_the_table() {
        let s = specs(&[
            ("s", c::STRING_UTF8, &[]),
            ("v", c::VARINT, &[]),
            ("it", c::ITERABLE, &["v"]),
            ("kv", c::KV, &["s", "it"]),
            ("u", "x:unknown", &["missing-but-opaque"]),
            ("lp", c::LENGTH_PREFIX, &["u"]),
        ]);
        let coder = build_coder("kv", &s).unwrap();
        let bytes = [3, b'a', b'b', b'c', 0, 0, 0, 2, 1, 0x80, 1, 42];
        let mut input = &bytes[..];
        let (key, _) = coder.split_kv(&mut input, Context::Nested).unwrap();
        assert_eq!(key, [3, b'a', b'b', b'c']);
        assert_eq!(input, [42]);
        assert!(!build_coder("u", &s).unwrap().is_self_delimiting());
        assert!(build_coder("lp", &s).unwrap().is_self_delimiting());
        assert!(build_coder("missing", &s).is_err());
    }

    #[test]
    fn parses_windowed_header() {
        let mut buf = Vec::new();
        write_timestamp(&mut buf, 5);
        buf.extend_from_slice(&2i32.to_be_bytes());
        write_interval_window(&mut buf, 0, 10);
        write_interval_window(&mut buf, 5, 15);
        buf.push(0x0F);
        buf.extend_from_slice(b"rest");
        let h = WindowedHeader::parse(&&buf[..], &Coder::IntervalWindow).unwrap();
        assert_eq!(h.timestamp, 5);
        assert_eq!(h.window_count, 2);
        assert_eq!(h.pane, [0x0F]);
        assert_eq!(h.value, b"rest");
        let mut w = h.windows;
        assert_eq!(read_interval_window(&mut w).unwrap(), (0, 10));
        assert_eq!(read_interval_window(&mut w).unwrap(), (5, 15));
        assert!(WindowedHeader::parse(&&buf[..10], &Coder::IntervalWindow).is_err());
    }
}
