//! [`Value`]: a decoded element of any coder in the dynamic coder tree.

use crate::window::{BoundedWindow, PaneInfo, Timestamp};

/// A value of the dynamic coder tree ([`Coder`](super::Coder)).
///
/// Built for generality (inspection, tests, SDK glue), not for the runner's
/// hot loop, which moves encoded bytes with the [`wire`](super::wire) functions
/// and [`decode_windowed`](super::decode_windowed). Which variant each coder
/// produces and accepts is listed on [`Coder`](super::Coder).
///
/// Equality compares floats by bit pattern, so a NaN equals itself and
/// `0.0 != -0.0`: two values are equal iff they encode to the same bytes.
#[derive(Clone, Debug)]
pub enum Value {
    /// Absent value (`nullable`, nullable row fields and map values).
    Null,
    /// `bool`, row `BOOLEAN`.
    Bool(bool),
    /// `varint`, row `BYTE`/`INT16`/`INT32`/`INT64`.
    Int(i64),
    /// Row `FLOAT`.
    Float(f32),
    /// `double`, row `DOUBLE`.
    Double(f64),
    /// `bytes`, row `BYTES`, and the bytes of unknown coders.
    Bytes(Vec<u8>),
    /// `string_utf8`, row `STRING`.
    String(String),
    /// `kv`.
    Kv(Box<Value>, Box<Value>),
    /// `iterable`, `state_backed_iterable` (inline form), row `ARRAY`/`ITERABLE`.
    Iterable(Vec<Value>),
    /// The state-backed form of `state_backed_iterable`: the elements written
    /// inline, then a token to read the rest from the Fn API state channel.
    StateBackedIterable {
        /// Elements encoded inline before the token.
        prefix: Vec<Value>,
        /// State key token for the remaining elements.
        state_token: Vec<u8>,
    },
    /// `global_window`, `interval_window`, and `custom_window` around them.
    Window(BoundedWindow),
    /// `custom_window` around a window coder that is not a standard one: the
    /// max timestamp prefix and the inner window's value.
    CustomWindow {
        /// The window's max timestamp, as encoded in front of it.
        max_timestamp: Timestamp,
        /// The window, as its own coder decodes it.
        window: Box<Value>,
    },
    /// `windowed_value`, `param_windowed_value`.
    WindowedValue(Box<WindowedValue>),
    /// `timer`.
    Timer(Box<Timer>),
    /// `row`: one value per schema field, in schema order ([`Value::Null`] for
    /// nulls).
    Row(Vec<Value>),
    /// Row `MAP`: entries in encoded order.
    Map(Vec<(Value, Value)>),
    /// `sharded_key`.
    ShardedKey {
        /// Opaque shard id.
        shard_id: Vec<u8>,
        /// The user key.
        key: Box<Value>,
    },
    /// Row logical type `millis_instant` (Java `DATETIME`).
    Timestamp(Timestamp),
    /// Row logical type `decimal` (Java `DECIMAL`).
    Decimal(Decimal),
}

/// An element with its event-time metadata (`beam:coder:windowed_value:v1`).
#[derive(Clone, Debug, PartialEq)]
pub struct WindowedValue {
    /// The element.
    pub value: Value,
    /// Event time.
    pub timestamp: Timestamp,
    /// Windows, each as the window coder decodes it (usually [`Value::Window`]).
    pub windows: Vec<Value>,
    /// Trigger firing that produced the element.
    pub pane: PaneInfo,
}

/// A user timer firing or clearing (`beam:coder:timer:v1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Timer {
    /// The key the timer is set for.
    pub user_key: Value,
    /// Tag of a timer family member; empty for plain timers.
    pub dynamic_timer_tag: String,
    /// Windows the timer is set in.
    pub windows: Vec<Value>,
    /// `None` clears the timer (Beam's `clear_bit`).
    pub firing: Option<TimerFiring>,
}

/// When a set timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerFiring {
    /// Event or processing time at which the timer fires.
    pub fire_timestamp: Timestamp,
    /// Output watermark hold while the timer is set.
    pub hold_timestamp: Timestamp,
    /// Pane of the firing.
    pub pane: PaneInfo,
}

/// An arbitrary-precision decimal, as Java's `BigDecimal`: `unscaled × 10^-scale`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// Big-endian two's-complement unscaled value (Java `BigInteger.toByteArray`).
    pub unscaled: Vec<u8>,
    /// Power of ten to divide by.
    pub scale: i32,
}

impl Decimal {
    /// The decimal `unscaled × 10^-scale`, in minimal two's-complement bytes.
    pub fn from_i128(unscaled: i128, scale: i32) -> Self {
        let bytes = unscaled.to_be_bytes();
        // Drop leading bytes that only repeat the sign bit of the next one.
        let mut start = 0;
        while start < bytes.len() - 1 {
            let (b, next) = (bytes[start], bytes[start + 1]);
            if (b == 0 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        Decimal {
            unscaled: bytes[start..].to_vec(),
            scale,
        }
    }

    /// The unscaled value, if it fits an `i128`.
    pub fn unscaled_i128(&self) -> Option<i128> {
        if self.unscaled.is_empty() || self.unscaled.len() > 16 {
            return None;
        }
        let fill = if self.unscaled[0] & 0x80 != 0 {
            0xFF
        } else {
            0
        };
        let mut buf = [fill; 16];
        buf[16 - self.unscaled.len()..].copy_from_slice(&self.unscaled);
        Some(i128::from_be_bytes(buf))
    }
}

impl Value {
    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Bytes(_) => "bytes",
            Value::String(_) => "string",
            Value::Kv(..) => "kv",
            Value::Iterable(_) => "iterable",
            Value::StateBackedIterable { .. } => "state-backed iterable",
            Value::Window(_) => "window",
            Value::CustomWindow { .. } => "custom window",
            Value::WindowedValue(_) => "windowed value",
            Value::Timer(_) => "timer",
            Value::Row(_) => "row",
            Value::Map(_) => "map",
            Value::ShardedKey { .. } => "sharded key",
            Value::Timestamp(_) => "timestamp",
            Value::Decimal(_) => "decimal",
        }
    }

    /// `Value::Kv(key, value)`.
    pub fn kv(key: Value, value: Value) -> Value {
        Value::Kv(Box::new(key), Box::new(value))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value as V;
        match (self, other) {
            (V::Null, V::Null) => true,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Int(a), V::Int(b)) => a == b,
            (V::Float(a), V::Float(b)) => a.to_bits() == b.to_bits(),
            (V::Double(a), V::Double(b)) => a.to_bits() == b.to_bits(),
            (V::Bytes(a), V::Bytes(b)) => a == b,
            (V::String(a), V::String(b)) => a == b,
            (V::Kv(ak, av), V::Kv(bk, bv)) => ak == bk && av == bv,
            (V::Iterable(a), V::Iterable(b)) => a == b,
            (
                V::StateBackedIterable {
                    prefix: ap,
                    state_token: at,
                },
                V::StateBackedIterable {
                    prefix: bp,
                    state_token: bt,
                },
            ) => ap == bp && at == bt,
            (V::Window(a), V::Window(b)) => a == b,
            (
                V::CustomWindow {
                    max_timestamp: at,
                    window: aw,
                },
                V::CustomWindow {
                    max_timestamp: bt,
                    window: bw,
                },
            ) => at == bt && aw == bw,
            (V::WindowedValue(a), V::WindowedValue(b)) => a == b,
            (V::Timer(a), V::Timer(b)) => a == b,
            (V::Row(a), V::Row(b)) => a == b,
            (V::Map(a), V::Map(b)) => a == b,
            (
                V::ShardedKey {
                    shard_id: asid,
                    key: ak,
                },
                V::ShardedKey {
                    shard_id: bsid,
                    key: bk,
                },
            ) => asid == bsid && ak == bk,
            (V::Timestamp(a), V::Timestamp(b)) => a == b,
            (V::Decimal(a), V::Decimal(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_minimal_bytes() {
        assert_eq!(Decimal::from_i128(0, 1).unscaled, [0]);
        assert_eq!(Decimal::from_i128(31415, 4).unscaled, [0x7A, 0xB7]);
        assert_eq!(Decimal::from_i128(-100123, 3).unscaled, [0xFE, 0x78, 0xE5]);
        assert_eq!(Decimal::from_i128(128, 0).unscaled, [0, 0x80]);
        assert_eq!(Decimal::from_i128(-128, 0).unscaled, [0x80]);
        assert_eq!(Decimal::from_i128(-1, 0).unscaled, [0xFF]);
        for v in [0, 1, -1, 127, 128, -129, i128::MAX, i128::MIN] {
            assert_eq!(Decimal::from_i128(v, 0).unscaled_i128(), Some(v));
        }
    }

    #[test]
    fn floats_compare_by_bits() {
        assert_eq!(Value::Double(f64::NAN), Value::Double(f64::NAN));
        assert_ne!(Value::Double(0.0), Value::Double(-0.0));
    }
}
