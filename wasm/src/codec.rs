//! Element values between the runner's nested encoding and the ABI's outer
//! encoding.
//!
//! Beam's nested and outer contexts differ only where a bytes-like coder
//! (`bytes`, `string_utf8`) sits in the last position: nested it carries a
//! varint length, outer it runs to the end. So the conversion strips or adds
//! that prefix along the "last component" path (kv value, nullable inner) and
//! copies everything else as is; no value is ever decoded.

use std::borrow::Cow;

use oxbeam_model::coders::{Coder, Context, wire};

/// A kv's key and value, each in its outer encoding.
pub(crate) type OuterKv<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// How one coder's values convert between the contexts.
#[derive(Debug, Clone)]
pub(crate) enum ValueCodec {
    /// `bytes` / `string_utf8`: nested = varint length + outer bytes.
    Prefixed {
        /// Check UTF-8 on guest output.
        utf8: bool,
    },
    /// `kv`: key nested in both contexts, value converts.
    Kv {
        key: Coder,
        key_codec: Box<ValueCodec>,
        value: Box<ValueCodec>,
    },
    /// `nullable`: a flag byte, then the inner value if the flag is 1.
    Nullable(Box<ValueCodec>),
    /// Same bytes in both contexts (varint, double, iterable, length_prefix,
    /// ...); `Coder` checks guest output.
    Same(Coder),
}

/// The nested encoding of a bytes-like guest output shorter than 16 bytes,
/// `window` being 16 bytes from its start: one fixed-size copy (then a
/// truncate) instead of a `memcpy` call, and the ASCII check on one word.
#[inline(always)]
pub(crate) fn write_short_prefixed(
    utf8: bool,
    value: &[u8],
    window: &[u8; 16],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let n = value.len();
    debug_assert!(n < 16);
    let high_bits =
        u128::from_le_bytes(*window) & ((1u128 << (8 * n)) - 1) & (u128::MAX / 255 * 0x80);
    if utf8 && high_bits != 0 && std::str::from_utf8(value).is_err() {
        return Err("string output is not valid UTF-8".into());
    }
    let mut prefixed = [0u8; 17];
    prefixed[0] = n as u8;
    prefixed[1..].copy_from_slice(window);
    let len = out.len();
    out.extend_from_slice(&prefixed);
    out.truncate(len + 1 + n);
    Ok(())
}

impl ValueCodec {
    pub(crate) fn new(coder: &Coder) -> Self {
        match coder {
            Coder::Bytes => ValueCodec::Prefixed { utf8: false },
            Coder::StringUtf8 => ValueCodec::Prefixed { utf8: true },
            Coder::Kv { key, value } => ValueCodec::Kv {
                key: (**key).clone(),
                key_codec: Box::new(ValueCodec::new(key)),
                value: Box::new(ValueCodec::new(value)),
            },
            Coder::Nullable(inner) => ValueCodec::Nullable(Box::new(ValueCodec::new(inner))),
            other => ValueCodec::Same(other.clone()),
        }
    }

    /// The outer encoding of a complete nested encoding `nested`.
    #[inline]
    pub(crate) fn nested_to_outer<'a>(&self, nested: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
        match self {
            // Fast path: values under 128 bytes have a one-byte length.
            ValueCodec::Prefixed { .. } if nested.first().is_some_and(|&n| n < 0x80) => {
                if nested.len() == 1 + usize::from(nested[0]) {
                    Ok(Cow::Borrowed(&nested[1..]))
                } else {
                    Err(format!(
                        "length prefix {} does not match the {} bytes after it",
                        nested[0],
                        nested.len() - 1
                    ))
                }
            }
            ValueCodec::Prefixed { .. } => {
                let mut input = nested;
                wire::read_length_prefixed(&mut input)
                    .map(Cow::Borrowed)
                    .map_err(|e| e.to_string())
            }
            ValueCodec::Kv { key, value, .. } => {
                let mut input = nested;
                key.skip(&mut input, Context::Nested)
                    .map_err(|e| e.to_string())?;
                let key_len = nested.len() - input.len();
                match value.nested_to_outer(input)? {
                    // The value's outer form is a suffix: borrow the whole kv.
                    Cow::Borrowed(v) if v.len() == input.len() => Ok(Cow::Borrowed(nested)),
                    v => {
                        let mut out = Vec::with_capacity(key_len + v.len());
                        out.extend_from_slice(&nested[..key_len]);
                        out.extend_from_slice(&v);
                        Ok(Cow::Owned(out))
                    }
                }
            }
            ValueCodec::Nullable(inner) => match nested.split_first() {
                Some((0, [])) => Ok(Cow::Borrowed(nested)),
                Some((1, rest)) => {
                    let v = inner.nested_to_outer(rest)?;
                    let mut out = Vec::with_capacity(1 + v.len());
                    out.push(1);
                    out.extend_from_slice(&v);
                    Ok(Cow::Owned(out))
                }
                _ => Err("bad nullable flag".into()),
            },
            ValueCodec::Same(_) => Ok(Cow::Borrowed(nested)),
        }
    }

    /// For a kv codec: the key's and value's outer encodings of a nested kv.
    pub(crate) fn split_kv_outer<'a>(
        &self,
        nested: &'a [u8],
    ) -> Result<Option<OuterKv<'a>>, String> {
        let ValueCodec::Kv {
            key,
            key_codec,
            value,
        } = self
        else {
            return Ok(None);
        };
        let mut input = nested;
        let k = key
            .read_encoded(&mut input, Context::Nested)
            .map_err(|e| e.to_string())?;
        Ok(Some((
            key_codec.nested_to_outer(k)?,
            value.nested_to_outer(input)?,
        )))
    }

    /// Appends the nested encoding of guest output `outer`, checking that it
    /// is one well-formed value of the coder.
    #[inline]
    pub(crate) fn write_nested(&self, outer: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        // Strings and bytes, the common case, inline into the output loops;
        // the rest is a call.
        if let ValueCodec::Prefixed { utf8 } = self {
            // ASCII (the common case) is checked inline, word by word.
            if *utf8 && !outer.is_ascii() && std::str::from_utf8(outer).is_err() {
                return Err("string output is not valid UTF-8".into());
            }
            wire::write_length_prefixed(out, outer);
            return Ok(());
        }
        self.write_nested_composite(outer, out)
    }

    #[inline(never)]
    fn write_nested_composite(&self, outer: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            ValueCodec::Prefixed { .. } => self.write_nested(outer, out),
            ValueCodec::Kv { key, value, .. } => {
                let mut input = outer;
                key.skip(&mut input, Context::Nested)
                    .map_err(|e| format!("bad kv key: {e}"))?;
                out.extend_from_slice(&outer[..outer.len() - input.len()]);
                value.write_nested(input, out)
            }
            ValueCodec::Nullable(inner) => match outer.split_first() {
                Some((0, [])) => {
                    out.push(0);
                    Ok(())
                }
                Some((1, rest)) => {
                    out.push(1);
                    inner.write_nested(rest, out)
                }
                _ => Err("bad nullable flag".into()),
            },
            ValueCodec::Same(coder) => {
                let mut input = outer;
                coder
                    .skip(&mut input, Context::Nested)
                    .map_err(|e| format!("not a {} value: {e}", coder.urn()))?;
                if !input.is_empty() {
                    return Err(format!(
                        "{} trailing bytes after a {} value",
                        input.len(),
                        coder.urn()
                    ));
                }
                out.extend_from_slice(outer);
                Ok(())
            }
        }
    }

    /// For a kv codec: appends the nested kv of an outer key and outer value.
    pub(crate) fn write_kv_nested(
        &self,
        key: &[u8],
        value: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let ValueCodec::Kv {
            key_codec,
            value: value_codec,
            ..
        } = self
        else {
            return Err("the output coder is not a kv, but the guest emitted a key".into());
        };
        key_codec.write_nested(key, out)?;
        value_codec.write_nested(value, out)
    }

    /// For a kv codec: the value's codec.
    pub(crate) fn kv_value(&self) -> Option<&ValueCodec> {
        match self {
            ValueCodec::Kv { value, .. } => Some(value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxbeam_model::coders::Value;

    #[test]
    fn short_values_encode_as_the_general_path_does() {
        let samples: [&[u8]; 6] = [
            b"",
            b"word",
            b"fifteen bytes!!",
            "h\u{e9}llo".as_bytes(),
            b"bad \xff utf8",
            b"\xe2\x82",
        ];
        for utf8 in [true, false] {
            for value in samples {
                for trailing in [
                    &b""[..],
                    b"0123456789abcdef",
                    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",
                ] {
                    let mut output = value.to_vec();
                    output.extend_from_slice(trailing);
                    let Some(window) = output.first_chunk::<16>() else {
                        continue;
                    };
                    let (mut fast, mut general) = (b"header".to_vec(), b"header".to_vec());
                    let f = write_short_prefixed(utf8, value, window, &mut fast);
                    let g = ValueCodec::Prefixed { utf8 }.write_nested(value, &mut general);
                    assert_eq!(f, g, "{value:?} utf8={utf8}");
                    if g.is_ok() {
                        assert_eq!(fast, general, "{value:?} utf8={utf8}");
                    }
                }
            }
        }
    }

    #[test]
    fn conversions_match_the_coder() {
        let coder = Coder::kv(Coder::StringUtf8, Coder::nullable(Coder::Bytes));
        let v = Value::kv(Value::String("k".into()), Value::Bytes(b"abc".to_vec()));
        let (mut nested, mut outer) = (Vec::new(), Vec::new());
        coder.encode(&v, &mut nested, Context::Nested).unwrap();
        coder.encode(&v, &mut outer, Context::Outer).unwrap();
        let codec = ValueCodec::new(&coder);
        assert_eq!(codec.nested_to_outer(&nested).unwrap().as_ref(), &outer[..]);
        let mut back = Vec::new();
        codec.write_nested(&outer, &mut back).unwrap();
        assert_eq!(back, nested);
        let (k, val) = codec.split_kv_outer(&nested).unwrap().unwrap();
        assert_eq!((k.as_ref(), val.as_ref()), (&b"k"[..], &b"\x01abc"[..]));
        assert!(
            ValueCodec::new(&Coder::Varint)
                .write_nested(&[0x80], &mut back)
                .is_err()
        );
        assert!(
            ValueCodec::new(&Coder::StringUtf8)
                .write_nested(&[0xFF], &mut back)
                .is_err()
        );
    }
}
