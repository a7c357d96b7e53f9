//! Beam Python's `FastPrimitivesCoder`, read far enough to re-encode a
//! TestStream's elements into the coder of the PCollection they enter.
//!
//! Beam Python's `TestStream` encodes its events with its own coder —
//! `FastPrimitivesCoder` unless the user passes one — while its output
//! PCollection usually gets a coder from the element type: `('a', 1)`
//! elements go into a `KV` PCollection. Taking the payload's coder for the
//! output would hide that the output is keyed (a stateful DoFn downstream
//! needs the key), so the runner re-encodes each element: the tagged
//! `FastPrimitivesCoder` value is parsed ([`parse`]) and written in the
//! output coder ([`transcode`]) when that coder is built from parts the
//! runner can produce — KV, iterables, strings, bytes, integers, doubles,
//! booleans, nullables, and length-prefixed Python coders of the same
//! family.
//!
//! The wire format (`apache_beam/coders/coder_impl.py`,
//! `FastPrimitivesCoderImpl`): one type byte, then the value. Strings,
//! bytes and pickled fallbacks carry a varint length only when nested;
//! sequence items, dict entries and fields are always nested.

use oxbeam_model::coders::Coder;
use oxbeam_model::coders::wire;

const NONE: u8 = 0;
const INT: u8 = 1;
const FLOAT: u8 = 2;
const BYTES: u8 = 3;
const UNICODE: u8 = 4;
const LIST: u8 = 5;
const TUPLE: u8 = 6;
const DICT: u8 = 7;
const SET: u8 = 8;
const BOOL: u8 = 9;
const ITERABLE_LIKE: u8 = 10;
const PROTO: u8 = 100;
const DATACLASS: u8 = 101;
const NAMED_TUPLE: u8 = 102;
const ENUM: u8 = 103;
const NESTED_STATE: u8 = 104;
const DATACLASS_KW_ONLY: u8 = 105;
const UNKNOWN: u8 = 0xFF;

/// Python coder classes whose encoding is `FastPrimitivesCoderImpl`'s.
const FAMILY: [&str; 3] = [
    "FastPrimitivesCoder",
    "DeterministicFastPrimitivesCoder",
    "DeterministicFastPrimitivesCoderV2",
];

type Result<T> = std::result::Result<T, String>;

/// Whether `coder` is one of Beam Python's pickled coders that encode with
/// `FastPrimitivesCoderImpl`. Beam writes the class name ahead of the
/// pickle: the payload is a `BytesValue` holding `<ClassName>$<pickle>`.
pub(crate) fn is_fast_primitives(coder: &Coder) -> bool {
    let Coder::Opaque { urn, payload } = coder else {
        return false;
    };
    if urn != "beam:coder:pickled_python:v1" {
        return false;
    }
    let mut input: &[u8] = payload;
    let Ok(0x0a) = wire::read_u8(&mut input) else {
        return false;
    };
    let Ok(value) = wire::read_length_prefixed(&mut input) else {
        return false;
    };
    let name = value.split(|b| *b == b'$').next().unwrap_or_default();
    FAMILY.iter().any(|f| f.as_bytes() == name)
}

/// One parsed value: its type byte, what the runner can re-encode, and its
/// encoding (type byte included) in the context it was read in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Value<'a> {
    tag: u8,
    kind: Kind<'a>,
    raw: &'a [u8],
    /// Whether `raw` is the nested encoding.
    nested: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind<'a> {
    None,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// `bytes` or `str` contents (UTF-8 for `str`).
    Data(&'a [u8]),
    /// List, tuple or set items.
    Items(Vec<Value<'a>>),
    /// Anything else: dicts, pickled objects, protos, dataclasses…
    Other,
}

/// Parses one whole outer-context (top-level) encoding, as
/// `FastPrimitivesCoder.encode` writes it.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value<'_>> {
    let mut input = bytes;
    let v = value(&mut input, false)?;
    if !input.is_empty() {
        return Err(format!("{} bytes after the value", input.len()));
    }
    Ok(v)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn count(input: &mut &[u8]) -> Result<usize> {
    let n = wire::read_varint_i64(input).map_err(err)?;
    // Every item takes at least one byte.
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= input.len())
        .ok_or_else(|| format!("count {n} does not fit the {} bytes left", input.len()))
}

/// Bytes, strings and pickles: length-prefixed when nested, the rest of
/// the input otherwise.
fn data<'a>(input: &mut &'a [u8], nested: bool) -> Result<&'a [u8]> {
    if nested {
        wire::read_length_prefixed(input).map_err(err)
    } else {
        Ok(std::mem::take(input))
    }
}

/// `IterableCoderImpl` of nested values: a 4-byte count, or −1 and blocks
/// of (varint count, items) ended by a 0 count.
fn iterable<'a>(input: &mut &'a [u8]) -> Result<Vec<Value<'a>>> {
    let n = wire::read_i32_be(input).map_err(err)?;
    let mut items = Vec::new();
    if n >= 0 {
        for _ in 0..n {
            items.push(value(input, true)?);
        }
        return Ok(items);
    }
    loop {
        let block = count(input)?;
        if block == 0 {
            return Ok(items);
        }
        for _ in 0..block {
            items.push(value(input, true)?);
        }
    }
}

fn value<'a>(input: &mut &'a [u8], nested: bool) -> Result<Value<'a>> {
    let start = *input;
    let tag = wire::read_u8(input).map_err(err)?;
    let kind = match tag {
        NONE => Kind::None,
        INT => Kind::Int(wire::read_varint_i64(input).map_err(err)?),
        FLOAT => Kind::Float(wire::read_f64_be(input).map_err(err)?),
        BOOL => Kind::Bool(wire::read_u8(input).map_err(err)? != 0),
        BYTES | UNICODE => Kind::Data(data(input, nested)?),
        LIST | TUPLE | SET => {
            let n = count(input)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(value(input, true)?);
            }
            Kind::Items(items)
        }
        DICT => {
            for _ in 0..2 * count(input)? {
                value(input, true)?;
            }
            Kind::Other
        }
        ITERABLE_LIKE => {
            iterable(input)?;
            Kind::Other
        }
        UNKNOWN => {
            data(input, nested)?;
            Kind::Other
        }
        PROTO => {
            wire::read_length_prefixed(input).map_err(err)?; // the type
            wire::read_length_prefixed(input).map_err(err)?;
            Kind::Other
        }
        DATACLASS | NAMED_TUPLE => {
            wire::read_length_prefixed(input).map_err(err)?;
            iterable(input)?;
            Kind::Other
        }
        DATACLASS_KW_ONLY => {
            wire::read_length_prefixed(input).map_err(err)?;
            for _ in 0..count(input)? {
                wire::read_length_prefixed(input).map_err(err)?; // field name
                value(input, true)?;
            }
            Kind::Other
        }
        ENUM | NESTED_STATE => {
            wire::read_length_prefixed(input).map_err(err)?;
            value(input, true)?;
            Kind::Other
        }
        t => return Err(format!("unknown FastPrimitivesCoder type byte {t}")),
    };
    let raw = &start[..start.len() - input.len()];
    Ok(Value {
        tag,
        kind,
        raw,
        nested,
    })
}

impl Value<'_> {
    /// The value's outer-context encoding: for bytes, strings and pickles
    /// read nested, the type byte and the contents without their length.
    fn write_outer(&self, out: &mut Vec<u8>) -> Result<()> {
        if !self.nested || !matches!(self.tag, BYTES | UNICODE | UNKNOWN) {
            out.extend_from_slice(self.raw);
            return Ok(());
        }
        let mut rest = &self.raw[1..];
        out.push(self.tag);
        out.extend_from_slice(wire::read_length_prefixed(&mut rest).map_err(err)?);
        Ok(())
    }
}

/// Writes `v` in `coder` (nested or outer context), or says why it cannot.
pub(crate) fn transcode(
    v: &Value<'_>,
    coder: &Coder,
    nested: bool,
    out: &mut Vec<u8>,
) -> Result<()> {
    let mismatch = || {
        Err(format!(
            "a Python value of FastPrimitivesCoder type {} cannot be written as {}",
            v.tag,
            coder.urn()
        ))
    };
    match (coder, &v.kind) {
        (Coder::LengthPrefix(inner), _) if is_fast_primitives(inner) => {
            let mut outer = Vec::with_capacity(v.raw.len());
            v.write_outer(&mut outer)?;
            wire::write_length_prefixed(out, &outer);
        }
        (Coder::Kv { key, value }, Kind::Items(items))
            if items.len() == 2 && matches!(v.tag, TUPLE | LIST) =>
        {
            transcode(&items[0], key, true, out)?;
            transcode(&items[1], value, nested, out)?;
        }
        (Coder::Iterable(elem), Kind::Items(items)) => {
            let n = i32::try_from(items.len()).map_err(err)?;
            wire::write_i32_be(out, n);
            for item in items {
                transcode(item, elem, true, out)?;
            }
        }
        (Coder::StringUtf8, Kind::Data(d)) if v.tag == UNICODE => write_data(out, d, nested),
        (Coder::Bytes, Kind::Data(d)) if v.tag == BYTES => write_data(out, d, nested),
        (Coder::Varint, Kind::Int(i)) => wire::write_varint_i64(out, *i),
        (Coder::Double, Kind::Float(f)) => wire::write_f64_be(out, *f),
        (Coder::Bool, Kind::Bool(b)) => wire::write_bool(out, *b),
        (Coder::Nullable(_), Kind::None) => out.push(0),
        (Coder::Nullable(inner), _) => {
            out.push(1);
            transcode(v, inner, nested, out)?;
        }
        _ => return mismatch(),
    }
    Ok(())
}

fn write_data(out: &mut Vec<u8>, d: &[u8], nested: bool) {
    if nested {
        wire::write_length_prefixed(out, d);
    } else {
        out.extend_from_slice(d);
    }
}

/// Re-encodes one outer-context `FastPrimitivesCoder` element into `coder`'s
/// outer context.
pub(crate) fn recode_element(bytes: &[u8], coder: &Coder) -> Result<Vec<u8>> {
    let v = parse(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() + 4);
    transcode(&v, coder, false, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn fast_primitives() -> Coder {
        // BytesValue { value: b"FastPrimitivesCoder$<pickle>" }
        let value = b"FastPrimitivesCoder$eNprYJ2axgA";
        let mut payload = vec![0x0a, value.len() as u8];
        payload.extend_from_slice(value);
        Coder::Opaque {
            urn: "beam:coder:pickled_python:v1".into(),
            payload: payload.into(),
        }
    }

    fn lp_fp() -> Coder {
        Coder::LengthPrefix(Arc::new(fast_primitives()))
    }

    // ('a', 1) as FastPrimitivesCoder().encode writes it.
    const TUPLE_STR_INT: &[u8] = &[TUPLE, 2, UNICODE, 1, b'a', INT, 1];

    #[test]
    fn recognises_the_fast_primitives_family_by_class_name() {
        assert!(is_fast_primitives(&fast_primitives()));
        let mut other = fast_primitives();
        if let Coder::Opaque { payload, .. } = &mut other {
            let mut p = payload.to_vec();
            p[2] = b'X';
            *payload = p.into();
        }
        assert!(!is_fast_primitives(&other));
        assert!(!is_fast_primitives(&Coder::Bytes));
    }

    #[test]
    fn a_tuple_becomes_a_kv_of_length_prefixed_python_values() {
        let kv = Coder::Kv {
            key: Arc::new(lp_fp()),
            value: Arc::new(lp_fp()),
        };
        // Key 'a' outer: [UNICODE, 'a'] behind length 2; value 1: [INT, 1].
        assert_eq!(
            recode_element(TUPLE_STR_INT, &kv).unwrap(),
            vec![2, UNICODE, b'a', 2, INT, 1]
        );
    }

    #[test]
    fn a_tuple_becomes_a_kv_of_standard_coders() {
        let kv = Coder::Kv {
            key: Arc::new(Coder::StringUtf8),
            value: Arc::new(Coder::Varint),
        };
        assert_eq!(
            recode_element(TUPLE_STR_INT, &kv).unwrap(),
            vec![1, b'a', 1]
        );
        let kv = Coder::Kv {
            key: Arc::new(Coder::Bytes),
            value: Arc::new(Coder::Iterable(Arc::new(Coder::Double))),
        };
        // (b'k', [0.5])
        let mut el = vec![TUPLE, 2, BYTES, 1, b'k', LIST, 1, FLOAT];
        el.extend_from_slice(&0.5f64.to_be_bytes());
        let mut want = vec![1, b'k', 0, 0, 0, 1];
        want.extend_from_slice(&0.5f64.to_be_bytes());
        assert_eq!(recode_element(&el, &kv).unwrap(), want);
    }

    #[test]
    fn top_level_strings_and_pickles_lose_their_length_when_outer() {
        // A nested pickled object inside a tuple keeps its length; as a
        // length-prefixed value of its own it is written outer.
        let el = [TUPLE, 2, INT, 7, UNKNOWN, 3, b'p', b'k', b'l'];
        let kv = Coder::Kv {
            key: Arc::new(Coder::Varint),
            value: Arc::new(lp_fp()),
        };
        assert_eq!(
            recode_element(&el, &kv).unwrap(),
            vec![7, 4, UNKNOWN, b'p', b'k', b'l']
        );
        // A whole outer string is copied as it is.
        assert_eq!(
            recode_element(&[UNICODE, b'h', b'i'], &lp_fp()).unwrap(),
            vec![3, UNICODE, b'h', b'i']
        );
    }

    #[test]
    fn skips_values_it_does_not_model() {
        // ({'x': None}, 1.0) into KV<LP(FP), Double>
        let mut el = vec![TUPLE, 2, DICT, 1, UNICODE, 1, b'x', NONE, FLOAT];
        el.extend_from_slice(&1.0f64.to_be_bytes());
        let kv = Coder::Kv {
            key: Arc::new(lp_fp()),
            value: Arc::new(Coder::Double),
        };
        let mut want = vec![6, DICT, 1, UNICODE, 1, b'x', NONE];
        want.extend_from_slice(&1.0f64.to_be_bytes());
        assert_eq!(recode_element(&el, &kv).unwrap(), want);
    }

    #[test]
    fn says_why_a_value_does_not_fit() {
        let kv = Coder::Kv {
            key: Arc::new(Coder::StringUtf8),
            value: Arc::new(Coder::Varint),
        };
        // A 3-tuple is not a KV.
        let el = [TUPLE, 3, INT, 1, INT, 2, INT, 3];
        let e = recode_element(&el, &kv).unwrap_err();
        assert_eq!(
            e,
            "a Python value of FastPrimitivesCoder type 6 cannot be written as beam:coder:kv:v1"
        );
        assert!(
            recode_element(&[42], &kv)
                .unwrap_err()
                .contains("type byte 42")
        );
        assert!(
            recode_element(&[TUPLE, 9, INT], &kv)
                .unwrap_err()
                .contains("count 9")
        );
        assert!(
            recode_element(&[INT, 1, 0], &Coder::Varint)
                .unwrap_err()
                .contains("1 bytes after")
        );
    }
}
