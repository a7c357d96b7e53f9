//! Typed coders: how values of each Rust type become Beam-standard bytes.
//!
//! Every element type implements [`Element`], which names its [`Coder`]. The
//! standard types use Beam's standard coders, so other SDKs and the runner can
//! read them:
//!
//! | Rust type | Beam coder |
//! |---|---|
//! | `i64`, `i32`, `i16`, `u64`, `u32`, `u16`, `usize`, `isize` | `beam:coder:varint:v1` |
//! | `f64`, `f32` | `beam:coder:double:v1` |
//! | `bool` | `beam:coder:bool:v1` |
//! | `String` | `beam:coder:string_utf8:v1` |
//! | `Vec<u8>` | `beam:coder:bytes:v1` |
//! | `()` | `beam:coder:bytes:v1` (always empty) |
//! | `(K, V)` | `beam:coder:kv:v1` |
//! | `Vec<T>` | `beam:coder:iterable:v1` |
//! | `Option<T>` | `beam:coder:nullable:v1` |
//!
//! Other types (your structs) use [`SerdeCoder`] through the
//! [`serde_element!`](crate::serde_element) macro: serde's bincode format,
//! declared in the pipeline as `beam:coder:length_prefix:v1` around
//! `oxbeam:coder:serde_bincode:v1`, so runners carry the bytes opaquely.
//!
//! Values are always encoded in Beam's *nested* context (self-delimiting),
//! which is what windowed values crossing the executor boundary use.

use std::fmt::Debug;
use std::marker::PhantomData;

use oxbeam_model::coders::{CoderError, wire};
use oxbeam_model::urns;

/// A description of a coder for the pipeline proto: URN, payload and
/// component coders.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoderSpec {
    /// The coder URN.
    pub urn: &'static str,
    /// The coder payload (empty for standard coders).
    pub payload: Vec<u8>,
    /// Component coders, in the URN's order.
    pub components: Vec<CoderSpec>,
}

impl CoderSpec {
    /// A coder with no payload.
    pub fn new(urn: &'static str, components: Vec<CoderSpec>) -> Self {
        CoderSpec {
            urn,
            payload: Vec::new(),
            components,
        }
    }
}

/// Encodes and decodes values of type `T` (nested context).
///
/// Implementations are usually zero-sized; the executor creates one per
/// operator with `Default` and calls it on every element, so keep
/// `encode` allocation-free (it appends to a reused buffer).
pub trait Coder<T>: Default + Send + Sync + 'static {
    /// Appends the nested encoding of `value` to `out`.
    fn encode(&self, value: &T, out: &mut Vec<u8>);

    /// Reads one value from the front of `input`, advancing it.
    ///
    /// # Errors
    /// [`CoderError`] for malformed or truncated bytes.
    fn decode(&self, input: &mut &[u8]) -> Result<T, CoderError>;

    /// The coder's description in the pipeline proto.
    fn spec(&self) -> CoderSpec;
}

/// A type that can be an element of a [`PCollection`](crate::PCollection).
///
/// Implemented for the standard types listed in the [module docs](self);
/// implement it for your own types with [`serde_element!`](crate::serde_element)
/// or by naming your own [`Coder`].
pub trait Element: Clone + Debug + Send + Sync + 'static {
    /// The coder of this type.
    type Coder: Coder<Self>;
}

fn invalid(what: &'static str, detail: impl Into<String>) -> CoderError {
    CoderError::InvalidData {
        offset: 0,
        what,
        detail: detail.into(),
    }
}

macro_rules! zst_coder {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<T = ()>(PhantomData<fn() -> T>);
        impl<T> Default for $name<T> {
            fn default() -> Self {
                $name(PhantomData)
            }
        }
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name(PhantomData)
            }
        }
        impl<T> Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
}

zst_coder!(
    /// `beam:coder:varint:v1` for integers (two's complement, up to 10 bytes).
    VarIntCoder
);
zst_coder!(
    /// `beam:coder:double:v1`: big-endian IEEE-754 double.
    DoubleCoder
);
zst_coder!(
    /// `beam:coder:bool:v1`: one byte.
    BoolCoder
);
zst_coder!(
    /// `beam:coder:string_utf8:v1`: length-prefixed UTF-8.
    StringUtf8Coder
);
zst_coder!(
    /// `beam:coder:bytes:v1`: length-prefixed bytes.
    BytesCoder
);
zst_coder!(
    /// `beam:coder:kv:v1` of the key's and value's coders.
    KvCoder
);
zst_coder!(
    /// `beam:coder:iterable:v1`: big-endian i32 count, then each element.
    IterableCoder
);
zst_coder!(
    /// `beam:coder:nullable:v1`: a 0/1 byte, then the value if 1.
    NullableCoder
);
zst_coder!(
    /// serde + bincode, declared as `length_prefix(oxbeam:coder:serde_bincode:v1)`.
    SerdeCoder
);

macro_rules! varint_element {
    ($($t:ty),*) => {$(
        impl Coder<$t> for VarIntCoder<$t> {
            #[inline]
            fn encode(&self, value: &$t, out: &mut Vec<u8>) {
                wire::write_varint_i64(out, *value as i64);
            }
            #[inline]
            fn decode(&self, input: &mut &[u8]) -> Result<$t, CoderError> {
                wire::read_varint_i64(input).map(|v| v as $t)
            }
            fn spec(&self) -> CoderSpec {
                CoderSpec::new(urns::standard_coders::VARINT, vec![])
            }
        }
        impl Element for $t {
            type Coder = VarIntCoder<$t>;
        }
    )*};
}
varint_element!(i64, i32, i16, u64, u32, u16, usize, isize);

macro_rules! double_element {
    ($($t:ty),*) => {$(
        impl Coder<$t> for DoubleCoder<$t> {
            #[inline]
            fn encode(&self, value: &$t, out: &mut Vec<u8>) {
                wire::write_f64_be(out, *value as f64);
            }
            #[inline]
            fn decode(&self, input: &mut &[u8]) -> Result<$t, CoderError> {
                wire::read_f64_be(input).map(|v| v as $t)
            }
            fn spec(&self) -> CoderSpec {
                CoderSpec::new(urns::standard_coders::DOUBLE, vec![])
            }
        }
        impl Element for $t {
            type Coder = DoubleCoder<$t>;
        }
    )*};
}
double_element!(f64, f32);

impl Coder<bool> for BoolCoder<bool> {
    #[inline]
    fn encode(&self, value: &bool, out: &mut Vec<u8>) {
        wire::write_bool(out, *value);
    }
    #[inline]
    fn decode(&self, input: &mut &[u8]) -> Result<bool, CoderError> {
        wire::read_bool(input)
    }
    fn spec(&self) -> CoderSpec {
        CoderSpec::new(urns::standard_coders::BOOL, vec![])
    }
}
impl Element for bool {
    type Coder = BoolCoder<bool>;
}

impl Coder<String> for StringUtf8Coder<String> {
    #[inline]
    fn encode(&self, value: &String, out: &mut Vec<u8>) {
        wire::write_length_prefixed(out, value.as_bytes());
    }
    #[inline]
    fn decode(&self, input: &mut &[u8]) -> Result<String, CoderError> {
        wire::read_str(input).map(str::to_owned)
    }
    fn spec(&self) -> CoderSpec {
        CoderSpec::new(urns::standard_coders::STRING_UTF8, vec![])
    }
}
impl Element for String {
    type Coder = StringUtf8Coder<String>;
}

impl Coder<Vec<u8>> for BytesCoder<Vec<u8>> {
    #[inline]
    fn encode(&self, value: &Vec<u8>, out: &mut Vec<u8>) {
        wire::write_length_prefixed(out, value);
    }
    #[inline]
    fn decode(&self, input: &mut &[u8]) -> Result<Vec<u8>, CoderError> {
        wire::read_length_prefixed(input).map(<[u8]>::to_vec)
    }
    fn spec(&self) -> CoderSpec {
        CoderSpec::new(urns::standard_coders::BYTES, vec![])
    }
}
impl Element for Vec<u8> {
    type Coder = BytesCoder<Vec<u8>>;
}

impl Coder<()> for BytesCoder<()> {
    #[inline]
    fn encode(&self, _: &(), out: &mut Vec<u8>) {
        out.push(0);
    }
    #[inline]
    fn decode(&self, input: &mut &[u8]) -> Result<(), CoderError> {
        wire::read_length_prefixed(input).map(|_| ())
    }
    fn spec(&self) -> CoderSpec {
        CoderSpec::new(urns::standard_coders::BYTES, vec![])
    }
}
impl Element for () {
    type Coder = BytesCoder<()>;
}

impl<K: Element, V: Element> Coder<(K, V)> for KvCoder<(K, V)> {
    #[inline]
    fn encode(&self, value: &(K, V), out: &mut Vec<u8>) {
        K::Coder::default().encode(&value.0, out);
        V::Coder::default().encode(&value.1, out);
    }
    #[inline]
    fn decode(&self, input: &mut &[u8]) -> Result<(K, V), CoderError> {
        let k = K::Coder::default().decode(input)?;
        let v = V::Coder::default().decode(input)?;
        Ok((k, v))
    }
    fn spec(&self) -> CoderSpec {
        CoderSpec::new(
            urns::standard_coders::KV,
            vec![K::Coder::default().spec(), V::Coder::default().spec()],
        )
    }
}
impl<K: Element, V: Element> Element for (K, V) {
    type Coder = KvCoder<(K, V)>;
}

impl<T: Element> Coder<Vec<T>> for IterableCoder<Vec<T>> {
    fn encode(&self, value: &Vec<T>, out: &mut Vec<u8>) {
        let c = T::Coder::default();
        wire::write_i32_be(out, i32::try_from(value.len()).unwrap_or(i32::MAX));
        for v in value {
            c.encode(v, out);
        }
    }
    fn decode(&self, input: &mut &[u8]) -> Result<Vec<T>, CoderError> {
        let c = T::Coder::default();
        let n = wire::read_i32_be(input)?;
        if n >= 0 {
            // Each element takes at least one byte unless zero-sized, so cap
            // the pre-allocation by the input left.
            let mut out = Vec::with_capacity((n as usize).min(input.len()));
            for _ in 0..n {
                out.push(c.decode(input)?);
            }
            Ok(out)
        } else if n == -1 {
            // Beam's chunked form: varint count per block, terminated by 0.
            let mut out = Vec::new();
            loop {
                let block = wire::read_varint_u64(input)?;
                if block == 0 {
                    return Ok(out);
                }
                for _ in 0..block {
                    out.push(c.decode(input)?);
                }
            }
        } else {
            Err(invalid("iterable", format!("negative element count {n}")))
        }
    }
    fn spec(&self) -> CoderSpec {
        CoderSpec::new(
            urns::standard_coders::ITERABLE,
            vec![T::Coder::default().spec()],
        )
    }
}
impl<T: Element> Element for Vec<T> {
    type Coder = IterableCoder<Vec<T>>;
}

impl<T: Element> Coder<Option<T>> for NullableCoder<Option<T>> {
    #[inline]
    fn encode(&self, value: &Option<T>, out: &mut Vec<u8>) {
        match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                T::Coder::default().encode(v, out);
            }
        }
    }
    #[inline]
    fn decode(&self, input: &mut &[u8]) -> Result<Option<T>, CoderError> {
        match wire::read_u8(input)? {
            0 => Ok(None),
            1 => T::Coder::default().decode(input).map(Some),
            b => Err(invalid(
                "nullable",
                format!("marker byte {b:#04x} is neither 0 nor 1"),
            )),
        }
    }
    fn spec(&self) -> CoderSpec {
        CoderSpec::new(
            urns::standard_coders::NULLABLE,
            vec![T::Coder::default().spec()],
        )
    }
}
impl<T: Element> Element for Option<T> {
    type Coder = NullableCoder<Option<T>>;
}

impl<T> Coder<T> for SerdeCoder<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn encode(&self, value: &T, out: &mut Vec<u8>) {
        // Serializing plain data to memory cannot fail unless a user Serialize
        // impl reports an error, which is a bug in that impl.
        let len = bincode::serialized_size(value).expect("serde Serialize impl failed");
        wire::write_varint_u64(out, len);
        bincode::serialize_into(&mut *out, value).expect("serde Serialize impl failed");
    }
    fn decode(&self, input: &mut &[u8]) -> Result<T, CoderError> {
        let bytes = wire::read_length_prefixed(input)?;
        bincode::deserialize(bytes).map_err(|e| invalid("serde value", e.to_string()))
    }
    fn spec(&self) -> CoderSpec {
        CoderSpec::new(
            urns::standard_coders::LENGTH_PREFIX,
            vec![CoderSpec::new(urns::oxbeam_coders::SERDE_BINCODE, vec![])],
        )
    }
}

/// Makes serde types usable as elements, with [`SerdeCoder`].
///
/// ```
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct Event { user: String, score: i64 }
/// oxbeam::serde_element!(Event);
/// ```
#[macro_export]
macro_rules! serde_element {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::Element for $t {
            type Coder = $crate::coder::SerdeCoder<$t>;
        }
    )+};
}

/// Encodes `value` with its element coder (nested context) into a new buffer.
pub fn encode_to_vec<T: Element>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    T::Coder::default().encode(value, &mut out);
    out
}

/// Decodes one value of `T` from the whole of `bytes`.
///
/// # Errors
/// [`CoderError`] for malformed bytes or bytes left over.
pub fn decode_from_slice<T: Element>(bytes: &[u8]) -> Result<T, CoderError> {
    let mut input = bytes;
    let v = T::Coder::default().decode(&mut input)?;
    if input.is_empty() {
        Ok(v)
    } else {
        Err(invalid(
            "element",
            format!("{} bytes left after the value", input.len()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Element + PartialEq>(v: T) -> Vec<u8> {
        let bytes = encode_to_vec(&v);
        assert_eq!(decode_from_slice::<T>(&bytes).unwrap(), v);
        bytes
    }

    #[test]
    fn standard_encodings() {
        assert_eq!(round_trip(300i64), [0xAC, 0x02]);
        assert_eq!(round_trip(-1i64).len(), 10);
        assert_eq!(round_trip(-1i32).len(), 10);
        assert_eq!(round_trip(1.5f64), 1.5f64.to_be_bytes());
        assert_eq!(round_trip(true), [1]);
        assert_eq!(round_trip("héllo".to_string()), b"\x06h\xc3\xa9llo");
        assert_eq!(round_trip(vec![1u8, 2]), [2, 1, 2]);
        assert_eq!(round_trip(()), [0]);
        assert_eq!(round_trip(("a".to_string(), 2i64)), [1, b'a', 2]);
        assert_eq!(round_trip(vec![1i64, 2]), [0, 0, 0, 2, 1, 2]);
        assert_eq!(round_trip(Some(5i64)), [1, 5]);
        assert_eq!(round_trip(None::<i64>), [0]);
    }

    #[test]
    fn chunked_iterable_decodes() {
        let bytes = [0xFF, 0xFF, 0xFF, 0xFF, 2, 1, 2, 1, 3, 0];
        assert_eq!(
            decode_from_slice::<Vec<i64>>(&bytes).unwrap(),
            vec![1, 2, 3]
        );
    }

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Point {
        x: i32,
        name: String,
    }
    crate::serde_element!(Point);

    #[test]
    fn serde_coder_is_length_prefixed() {
        let bytes = round_trip(Point {
            x: 3,
            name: "p".into(),
        });
        assert_eq!(bytes[0] as usize, bytes.len() - 1);
        let spec = <Point as Element>::Coder::default().spec();
        assert_eq!(spec.urn, urns::standard_coders::LENGTH_PREFIX);
        assert_eq!(spec.components[0].urn, urns::oxbeam_coders::SERDE_BINCODE);
    }

    #[test]
    fn malformed_bytes_are_errors() {
        assert!(decode_from_slice::<String>(&[5, b'a']).is_err());
        assert!(decode_from_slice::<Option<i64>>(&[7]).is_err());
        assert!(decode_from_slice::<Vec<i64>>(&[0x80, 0, 0, 0]).is_err());
        assert!(decode_from_slice::<i64>(&[1, 2]).is_err());
    }
}
