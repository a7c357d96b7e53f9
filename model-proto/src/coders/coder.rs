//! [`Coder`]: the dynamic tree of Beam standard coders, built from the proto.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use super::error::{CoderError, Result};
use super::row::{self, RowSchema};
use super::value::{Timer, TimerFiring, Value, WindowedValue};
use super::wire::{self, MAX_VARINT_LEN};
use crate::pipeline;
use crate::urns::standard_coders as urn;
use crate::window::{BoundedWindow, PaneInfo, Timestamp};

/// Deepest coder (or schema) nesting accepted from a proto; deeper specs are
/// rejected so that decoding cannot exhaust the stack.
pub const MAX_CODER_DEPTH: usize = 64;

/// Elements (iterable and map entries, row fields) one decode may produce
/// regardless of input size: [`Coder::decode`] and [`Coder::skip`] allow this
/// many plus [`MAX_ELEMENTS_PER_INPUT_BYTE`] per byte of input. Some elements
/// take no bytes (global windows, fields of a short row), so without this
/// budget a few bytes could demand gigabytes or minutes.
pub const MAX_ELEMENTS_BASE: u64 = 1 << 20;

/// See [`MAX_ELEMENTS_BASE`]. Legitimate encodings stay well below: a varint
/// element takes a byte, a null row field an eighth of one.
pub const MAX_ELEMENTS_PER_INPUT_BYTE: u64 = 16;

/// How many more elements the current decode may produce.
#[derive(Debug)]
pub(crate) struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    /// The budget for decoding from an input of `len` bytes.
    #[inline]
    pub(crate) fn for_input(len: usize) -> Self {
        let limit = MAX_ELEMENTS_BASE
            .saturating_add(MAX_ELEMENTS_PER_INPUT_BYTE.saturating_mul(len as u64));
        Budget { left: limit, limit }
    }

    /// Spends `n` elements.
    #[inline]
    pub(crate) fn charge(&mut self, n: u64) -> Result<()> {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(CoderError::TooManyElements {
                offset: 0,
                count: n,
                limit: self.limit,
            }),
        }
    }
}

/// Beam's coder context: where a value sits in the byte stream.
///
/// In the `Outer` context a value owns the rest of the buffer, so unbounded
/// coders (bytes, string, unknown coders) write no length. In the `Nested`
/// context something may follow, so they are length-prefixed. Composite coders
/// encode their inner parts nested, except the last part, which inherits the
/// context (the value of a kv or a windowed value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// Something may follow the value.
    Nested,
    /// The value is the whole remaining buffer.
    Outer,
}

/// A Beam coder, as a tree of standard coders with unknown coders as leaves.
///
/// Built from a pipeline's `Components` with [`Coder::from_proto`], or from a
/// URN, payload and components with [`Coder::from_parts`]. Cheap to clone
/// (components are shared).
///
/// | variant | URN | [`Value`] |
/// |---|---|---|
/// | `Bytes` | `beam:coder:bytes:v1` | `Bytes` |
/// | `StringUtf8` | `beam:coder:string_utf8:v1` | `String` |
/// | `Bool` | `beam:coder:bool:v1` | `Bool` |
/// | `Varint` | `beam:coder:varint:v1` | `Int` |
/// | `Double` | `beam:coder:double:v1` | `Double` |
/// | `Kv` | `beam:coder:kv:v1` | `Kv` |
/// | `Iterable` | `beam:coder:iterable:v1` | `Iterable` |
/// | `StateBackedIterable` | `beam:coder:state_backed_iterable:v1` | `Iterable`, `StateBackedIterable` |
/// | `LengthPrefix` | `beam:coder:length_prefix:v1` | the inner coder's |
/// | `Nullable` | `beam:coder:nullable:v1` | `Null` or the inner coder's |
/// | `GlobalWindow` | `beam:coder:global_window:v1` | `Window(Global)` |
/// | `IntervalWindow` | `beam:coder:interval_window:v1` | `Window(Interval)` |
/// | `CustomWindow` | `beam:coder:custom_window:v1` | `Window`, or `CustomWindow` around other window coders |
/// | `WindowedValue` | `beam:coder:windowed_value:v1` | `WindowedValue` |
/// | `ParamWindowedValue` | `beam:coder:param_windowed_value:v1` | `WindowedValue` |
/// | `Timer` | `beam:coder:timer:v1` | `Timer` |
/// | `Row` | `beam:coder:row:v1` | `Row` |
/// | `ShardedKey` | `beam:coder:sharded_key:v1` | `ShardedKey` |
/// | `Opaque` | any other | `Bytes`, outer context only |
#[derive(Clone, Debug, PartialEq)]
pub enum Coder {
    /// Raw bytes; length-prefixed when nested.
    Bytes,
    /// UTF-8 text; length-prefixed when nested.
    StringUtf8,
    /// One byte, 0 or 1.
    Bool,
    /// Varint of an `i64`'s 64-bit pattern.
    Varint,
    /// Big-endian IEEE-754 double.
    Double,
    /// Key (nested) then value (in the outer context).
    Kv {
        /// Key coder.
        key: Arc<Coder>,
        /// Value coder.
        value: Arc<Coder>,
    },
    /// 4-byte big-endian count then nested elements; or count −1 then blocks
    /// of (varint count, elements) ended by a 0 count.
    Iterable(Arc<Coder>),
    /// Like `Iterable`, and the blocked form may end with varint −1 and a
    /// length-prefixed state token for the remaining elements.
    StateBackedIterable(Arc<Coder>),
    /// Varint length, then the inner coder's outer-context encoding.
    LengthPrefix(Arc<Coder>),
    /// Byte 0 for null, or byte 1 then the inner coder.
    Nullable(Arc<Coder>),
    /// The global window: zero bytes.
    GlobalWindow,
    /// End timestamp, then span varint.
    IntervalWindow,
    /// The window's max timestamp, then the window in its own coder.
    CustomWindow(Arc<Coder>),
    /// Timestamp, windows (an iterable of the window coder), pane, then the
    /// value in the outer context.
    WindowedValue {
        /// Element coder.
        value: Arc<Coder>,
        /// Window coder.
        window: Arc<Coder>,
    },
    /// Only the value is encoded; timestamp, windows and pane are fixed by the
    /// coder's payload.
    ParamWindowedValue {
        /// Element coder.
        value: Arc<Coder>,
        /// Window coder.
        window: Arc<Coder>,
        /// Fixed timestamp.
        timestamp: Timestamp,
        /// Fixed windows, as the window coder decodes them.
        windows: Vec<Value>,
        /// Fixed pane.
        pane: PaneInfo,
        /// The payload the fixed parts came from.
        payload: Bytes,
    },
    /// Key (nested), dynamic tag, windows, clear bit, and unless cleared fire
    /// timestamp, hold timestamp and pane.
    Timer {
        /// User key coder.
        key: Arc<Coder>,
        /// Window coder.
        window: Arc<Coder>,
    },
    /// A schema row (`beam:coder:row:v1`, schema in the payload).
    Row(Arc<RowSchema>),
    /// Length-prefixed shard id, then the key (nested).
    ShardedKey(Arc<Coder>),
    /// A coder Oxbeam does not know. Its values are opaque bytes that can be
    /// read only in the outer context, i.e. inside `LengthPrefix` or as the
    /// whole buffer; runners length-prefix such coders.
    Opaque {
        /// The coder's URN.
        urn: String,
        /// The coder's payload.
        payload: Bytes,
    },
}

impl Coder {
    /// Builds the coder `coder_id` of a pipeline, with its components.
    ///
    /// Unknown URNs become [`Coder::Opaque`] (their components are not read).
    ///
    /// # Errors
    /// [`CoderError::UnknownCoderId`] for a missing id; [`CoderError::BadCoder`]
    /// for a missing spec, a wrong number of components, a cycle, nesting
    /// deeper than [`MAX_CODER_DEPTH`], or a bad payload;
    /// [`CoderError::BadSchema`] for a row schema Oxbeam cannot encode.
    pub fn from_proto(coder_id: &str, components: &pipeline::Components) -> Result<Coder> {
        let mut builder = ProtoBuilder {
            coders: &components.coders,
            built: HashMap::new(),
            stack: Vec::new(),
        };
        builder.build(coder_id).map(Arc::unwrap_or_clone)
    }

    /// Builds a coder from its URN, payload and component coders.
    ///
    /// # Errors
    /// As [`Coder::from_proto`], minus the id errors.
    pub fn from_parts(urn: &str, payload: &[u8], components: Vec<Coder>) -> Result<Coder> {
        from_parts_arc(
            urn,
            &Bytes::copy_from_slice(payload),
            components.into_iter().map(Arc::new).collect(),
        )
    }

    /// `beam:coder:kv:v1` of `key` and `value`.
    pub fn kv(key: Coder, value: Coder) -> Coder {
        Coder::Kv {
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }

    /// `beam:coder:iterable:v1` of `element`.
    pub fn iterable(element: Coder) -> Coder {
        Coder::Iterable(Arc::new(element))
    }

    /// `beam:coder:length_prefix:v1` of `inner`.
    pub fn length_prefix(inner: Coder) -> Coder {
        Coder::LengthPrefix(Arc::new(inner))
    }

    /// `beam:coder:nullable:v1` of `inner`.
    pub fn nullable(inner: Coder) -> Coder {
        Coder::Nullable(Arc::new(inner))
    }

    /// `beam:coder:windowed_value:v1` of `value` in windows of `window`.
    pub fn windowed_value(value: Coder, window: Coder) -> Coder {
        Coder::WindowedValue {
            value: Arc::new(value),
            window: Arc::new(window),
        }
    }

    /// The coder's Beam URN.
    pub fn urn(&self) -> &str {
        match self {
            Coder::Bytes => urn::BYTES,
            Coder::StringUtf8 => urn::STRING_UTF8,
            Coder::Bool => urn::BOOL,
            Coder::Varint => urn::VARINT,
            Coder::Double => urn::DOUBLE,
            Coder::Kv { .. } => urn::KV,
            Coder::Iterable(_) => urn::ITERABLE,
            Coder::StateBackedIterable(_) => urn::STATE_BACKED_ITERABLE,
            Coder::LengthPrefix(_) => urn::LENGTH_PREFIX,
            Coder::Nullable(_) => urn::NULLABLE,
            Coder::GlobalWindow => urn::GLOBAL_WINDOW,
            Coder::IntervalWindow => urn::INTERVAL_WINDOW,
            Coder::CustomWindow(_) => urn::CUSTOM_WINDOW,
            Coder::WindowedValue { .. } => urn::WINDOWED_VALUE,
            Coder::ParamWindowedValue { .. } => urn::PARAM_WINDOWED_VALUE,
            Coder::Timer { .. } => urn::TIMER,
            Coder::Row(_) => urn::ROW,
            Coder::ShardedKey(_) => urn::SHARDED_KEY,
            Coder::Opaque { urn, .. } => urn,
        }
    }

    /// Whether values of this coder can be read in the nested context: false
    /// when a [`Coder::Opaque`] occurs in it outside every length prefix.
    pub fn is_self_delimiting(&self) -> bool {
        match self {
            Coder::Opaque { .. } => false,
            Coder::LengthPrefix(_) | Coder::Row(_) => true,
            Coder::Bytes
            | Coder::StringUtf8
            | Coder::Bool
            | Coder::Varint
            | Coder::Double
            | Coder::GlobalWindow
            | Coder::IntervalWindow => true,
            Coder::Kv { key, value } => key.is_self_delimiting() && value.is_self_delimiting(),
            Coder::Iterable(c)
            | Coder::StateBackedIterable(c)
            | Coder::Nullable(c)
            | Coder::CustomWindow(c)
            | Coder::ShardedKey(c) => c.is_self_delimiting(),
            Coder::WindowedValue { value, window }
            | Coder::ParamWindowedValue { value, window, .. } => {
                value.is_self_delimiting() && window.is_self_delimiting()
            }
            Coder::Timer { key, window } => key.is_self_delimiting() && window.is_self_delimiting(),
        }
    }

    /// Appends the encoding of `value` to `out`.
    ///
    /// On error `out` is left as it was.
    ///
    /// # Errors
    /// [`CoderError::ValueMismatch`] if `value` does not fit the coder;
    /// [`CoderError::OpaqueNested`] for an unknown coder in the nested context.
    pub fn encode(&self, value: &Value, out: &mut Vec<u8>, ctx: Context) -> Result<()> {
        let start = out.len();
        self.encode_in(value, out, ctx)
            .inspect_err(|_| out.truncate(start))
    }

    /// Decodes one value from the front of `input` and advances past it.
    ///
    /// In the outer context the value consumes the whole input. On error,
    /// `input` is left at the failing read and the error's offset counts from
    /// where `input` started.
    ///
    /// # Errors
    /// The bad-bytes kinds of [`CoderError`]; [`CoderError::OpaqueNested`] for
    /// an unknown coder in the nested context.
    pub fn decode(&self, input: &mut &[u8], ctx: Context) -> Result<Value> {
        let start = input.len();
        let mut budget = Budget::for_input(start);
        self.decode_in(input, ctx, &mut budget)
            .map_err(|e| e.shift_offset(start - input.len()))
    }

    /// Advances `input` past one value without building it. Checks the framing
    /// (lengths, counts, flags), not the contents (UTF-8 is not validated).
    ///
    /// # Errors
    /// As [`Coder::decode`].
    pub fn skip(&self, input: &mut &[u8], ctx: Context) -> Result<()> {
        if matches!(ctx, Context::Nested) {
            if let Some(len) = self.common_windowed_len(input) {
                *input = &input[len..];
                return Ok(());
            }
        }
        let start = input.len();
        let mut budget = Budget::for_input(start);
        self.skip_in(input, ctx, &mut budget)
            .map_err(|e| e.shift_offset(start - input.len()))
    }

    /// The length of the nested windowed value at the start of `input`
    /// when it has the shape most of the data plane carries — one global
    /// window, a one-byte pane, a length-prefixed value shorter than 16 KiB
    /// — and is whole; `None` for anything else, which the general path
    /// then reads (errors included). The runner splits every bundle's input
    /// and output into elements with this.
    #[inline]
    fn common_windowed_len(&self, input: &[u8]) -> Option<usize> {
        let Coder::WindowedValue { value, window } = self else {
            return None;
        };
        if !matches!(**window, Coder::GlobalWindow)
            || !matches!(
                **value,
                Coder::Bytes | Coder::StringUtf8 | Coder::LengthPrefix(_)
            )
        {
            return None;
        }
        // Timestamp (8), window count 1 (4), pane byte, first length byte.
        let head: &[u8; 14] = input.first_chunk()?;
        if head[8..12] != [0, 0, 0, 1] || head[12] >> 4 != 0 {
            return None;
        }
        let (len, at) = if head[13] < 0x80 {
            (usize::from(head[13]), 14)
        } else {
            let second = *input.get(14)?;
            if second >= 0x80 {
                return None;
            }
            (usize::from(head[13] & 0x7F) | usize::from(second) << 7, 15)
        };
        let end = at + len;
        (end <= input.len()).then_some(end)
    }

    /// Advances `input` past one value and returns its encoded bytes.
    ///
    /// # Errors
    /// As [`Coder::skip`].
    pub fn read_encoded<'a>(&self, input: &mut &'a [u8], ctx: Context) -> Result<&'a [u8]> {
        let before = *input;
        self.skip(input, ctx)?;
        Ok(&before[..before.len() - input.len()])
    }

    /// For a kv coder: advances past one kv and returns the key's encoding
    /// (nested context) and the value's encoding (in `ctx`), e.g. to group by
    /// encoded key.
    ///
    /// # Errors
    /// [`CoderError::BadCoder`] if this is not a kv coder; otherwise as
    /// [`Coder::skip`].
    pub fn split_kv<'a>(&self, input: &mut &'a [u8], ctx: Context) -> Result<(&'a [u8], &'a [u8])> {
        let Coder::Kv { key, value } = self else {
            return Err(CoderError::bad_coder(
                self.urn(),
                "split_kv needs a kv coder",
            ));
        };
        let before = *input;
        let start = input.len();
        let mut mid = start;
        let mut budget = Budget::for_input(start);
        let result = key
            .skip_in(input, Context::Nested, &mut budget)
            .and_then(|()| {
                mid = input.len();
                value.skip_in(input, ctx, &mut budget)
            });
        match result {
            Ok(()) => Ok((
                &before[..start - mid],
                &before[start - mid..start - input.len()],
            )),
            Err(e) => Err(e.shift_offset(start - input.len())),
        }
    }

    /// The fewest bytes a value takes in the nested context.
    pub fn min_encoded_len(&self) -> usize {
        match self {
            Coder::Bytes | Coder::StringUtf8 | Coder::Bool | Coder::Varint => 1,
            Coder::Double => 8,
            Coder::Kv { key, value } => key
                .min_encoded_len()
                .saturating_add(value.min_encoded_len()),
            Coder::Iterable(_) | Coder::StateBackedIterable(_) => 4,
            Coder::LengthPrefix(_) | Coder::Nullable(_) => 1,
            Coder::GlobalWindow | Coder::Opaque { .. } => 0,
            Coder::IntervalWindow => 9,
            Coder::CustomWindow(w) => 8usize.saturating_add(w.min_encoded_len()),
            Coder::WindowedValue { value, .. } => 13usize.saturating_add(value.min_encoded_len()),
            Coder::ParamWindowedValue { value, .. } => value.min_encoded_len(),
            Coder::Timer { key, .. } => key.min_encoded_len().saturating_add(6),
            Coder::Row(_) => 2,
            Coder::ShardedKey(key) => key.min_encoded_len().saturating_add(1),
        }
    }

    fn mismatch(&self, value: &Value) -> CoderError {
        CoderError::ValueMismatch {
            coder: self.urn().to_string(),
            found: value.kind(),
            detail: format!("{} does not encode a {} value", self.urn(), value.kind()),
        }
    }

    pub(crate) fn encode_in(&self, value: &Value, out: &mut Vec<u8>, ctx: Context) -> Result<()> {
        match (self, value) {
            (Coder::Bytes, Value::Bytes(b)) => write_unbounded(out, b, ctx),
            (Coder::StringUtf8, Value::String(s)) => write_unbounded(out, s.as_bytes(), ctx),
            (Coder::Bool, Value::Bool(b)) => wire::write_bool(out, *b),
            (Coder::Varint, Value::Int(i)) => wire::write_varint_i64(out, *i),
            (Coder::Double, Value::Double(d)) => wire::write_f64_be(out, *d),
            (Coder::Kv { key, value }, Value::Kv(k, v)) => {
                key.encode_in(k, out, Context::Nested)?;
                value.encode_in(v, out, ctx)?;
            }
            (Coder::Iterable(elem) | Coder::StateBackedIterable(elem), Value::Iterable(items)) => {
                encode_iterable(self, elem, items, out)?;
            }
            (
                Coder::StateBackedIterable(elem),
                Value::StateBackedIterable {
                    prefix,
                    state_token,
                },
            ) => {
                wire::write_i32_be(out, -1);
                if !prefix.is_empty() {
                    wire::write_varint_u64(out, prefix.len() as u64);
                    for item in prefix {
                        elem.encode_in(item, out, Context::Nested)?;
                    }
                }
                wire::write_varint_i64(out, -1);
                wire::write_length_prefixed(out, state_token);
            }
            (Coder::LengthPrefix(inner), v) => {
                let start = out.len();
                inner.encode_in(v, out, Context::Outer)?;
                let len = (out.len() - start) as u64;
                let mut prefix = Vec::with_capacity(MAX_VARINT_LEN);
                wire::write_varint_u64(&mut prefix, len);
                out.extend_from_slice(&prefix);
                out[start..].rotate_right(prefix.len());
            }
            (Coder::Nullable(_), Value::Null) => out.push(0),
            (Coder::Nullable(inner), v) => {
                out.push(1);
                inner.encode_in(v, out, ctx)?;
            }
            (Coder::GlobalWindow, Value::Window(BoundedWindow::Global)) => {}
            (Coder::IntervalWindow, Value::Window(w @ BoundedWindow::Interval { .. })) => {
                wire::write_window(out, w);
            }
            (Coder::CustomWindow(inner), Value::Window(w)) => {
                wire::write_timestamp(out, w.max_timestamp());
                inner.encode_in(value, out, ctx)?;
            }
            (
                Coder::CustomWindow(inner),
                Value::CustomWindow {
                    max_timestamp,
                    window,
                },
            ) => {
                wire::write_timestamp(out, *max_timestamp);
                inner.encode_in(window, out, ctx)?;
            }
            (Coder::WindowedValue { value, window }, Value::WindowedValue(wv)) => {
                wire::write_timestamp(out, wv.timestamp);
                encode_iterable(self, window, &wv.windows, out)?;
                wire::write_pane(out, &wv.pane);
                value.encode_in(&wv.value, out, ctx)?;
            }
            (Coder::ParamWindowedValue { value, .. }, Value::WindowedValue(wv)) => {
                value.encode_in(&wv.value, out, ctx)?;
            }
            (Coder::Timer { key, window }, Value::Timer(t)) => {
                key.encode_in(&t.user_key, out, Context::Nested)?;
                wire::write_length_prefixed(out, t.dynamic_timer_tag.as_bytes());
                encode_iterable(self, window, &t.windows, out)?;
                wire::write_bool(out, t.firing.is_none());
                if let Some(f) = &t.firing {
                    wire::write_timestamp(out, f.fire_timestamp);
                    wire::write_timestamp(out, f.hold_timestamp);
                    wire::write_pane(out, &f.pane);
                }
            }
            (Coder::Row(schema), Value::Row(fields)) => row::encode_row(schema, fields, out)?,
            (Coder::ShardedKey(key), Value::ShardedKey { shard_id, key: k }) => {
                wire::write_length_prefixed(out, shard_id);
                key.encode_in(k, out, Context::Nested)?;
            }
            (Coder::Opaque { urn, .. }, Value::Bytes(b)) => match ctx {
                Context::Outer => out.extend_from_slice(b),
                Context::Nested => return Err(CoderError::OpaqueNested { urn: urn.clone() }),
            },
            _ => return Err(self.mismatch(value)),
        }
        Ok(())
    }

    pub(crate) fn decode_in(
        &self,
        input: &mut &[u8],
        ctx: Context,
        budget: &mut Budget,
    ) -> Result<Value> {
        Ok(match self {
            Coder::Bytes => Value::Bytes(read_unbounded(input, ctx)?.to_vec()),
            Coder::StringUtf8 => Value::String(read_unbounded_str(input, ctx)?.to_owned()),
            Coder::Bool => Value::Bool(wire::read_bool(input)?),
            Coder::Varint => Value::Int(wire::read_varint_i64(input)?),
            Coder::Double => Value::Double(wire::read_f64_be(input)?),
            Coder::Kv { key, value } => {
                let k = key.decode_in(input, Context::Nested, budget)?;
                let v = value.decode_in(input, ctx, budget)?;
                Value::kv(k, v)
            }
            Coder::Iterable(elem) => {
                let mut items = Vec::new();
                read_iterable(input, elem.min_encoded_len(), false, budget, |i, budget| {
                    items.push(elem.decode_in(i, Context::Nested, budget)?);
                    Ok(())
                })?;
                Value::Iterable(items)
            }
            Coder::StateBackedIterable(elem) => {
                let mut items = Vec::new();
                let end =
                    read_iterable(input, elem.min_encoded_len(), true, budget, |i, budget| {
                        items.push(elem.decode_in(i, Context::Nested, budget)?);
                        Ok(())
                    })?;
                match end {
                    IterableEnd::Complete => Value::Iterable(items),
                    IterableEnd::StateToken(token) => Value::StateBackedIterable {
                        prefix: items,
                        state_token: token.to_vec(),
                    },
                }
            }
            Coder::LengthPrefix(inner) => {
                within_length_prefix(input, |sub| inner.decode_in(sub, Context::Outer, budget))?
            }
            Coder::Nullable(inner) => match read_null_flag(input)? {
                false => Value::Null,
                true => inner.decode_in(input, ctx, budget)?,
            },
            Coder::GlobalWindow => Value::Window(BoundedWindow::Global),
            Coder::IntervalWindow => Value::Window(wire::read_interval_window(input)?),
            Coder::CustomWindow(inner) => {
                let max_timestamp = wire::read_timestamp(input)?;
                match inner.decode_in(input, ctx, budget)? {
                    w @ Value::Window(_) => w,
                    window => Value::CustomWindow {
                        max_timestamp,
                        window: Box::new(window),
                    },
                }
            }
            Coder::WindowedValue { value, window } => {
                let timestamp = wire::read_timestamp(input)?;
                let windows = decode_windows(window, input, budget)?;
                let pane = wire::read_pane(input)?;
                let value = value.decode_in(input, ctx, budget)?;
                Value::WindowedValue(Box::new(WindowedValue {
                    value,
                    timestamp,
                    windows,
                    pane,
                }))
            }
            Coder::ParamWindowedValue {
                value,
                timestamp,
                windows,
                pane,
                ..
            } => Value::WindowedValue(Box::new(WindowedValue {
                value: value.decode_in(input, ctx, budget)?,
                timestamp: *timestamp,
                windows: windows.clone(),
                pane: *pane,
            })),
            Coder::Timer { key, window } => {
                let user_key = key.decode_in(input, Context::Nested, budget)?;
                let dynamic_timer_tag = wire::read_str(input)?.to_owned();
                let windows = decode_windows(window, input, budget)?;
                let firing = if wire::read_bool(input)? {
                    None
                } else {
                    Some(TimerFiring {
                        fire_timestamp: wire::read_timestamp(input)?,
                        hold_timestamp: wire::read_timestamp(input)?,
                        pane: wire::read_pane(input)?,
                    })
                };
                Value::Timer(Box::new(Timer {
                    user_key,
                    dynamic_timer_tag,
                    windows,
                    firing,
                }))
            }
            Coder::Row(schema) => row::decode_row(schema, input, budget)?,
            Coder::ShardedKey(key) => {
                let shard_id = wire::read_length_prefixed(input)?.to_vec();
                let key = key.decode_in(input, Context::Nested, budget)?;
                Value::ShardedKey {
                    shard_id,
                    key: Box::new(key),
                }
            }
            Coder::Opaque { urn, .. } => match ctx {
                Context::Outer => Value::Bytes(std::mem::take(input).to_vec()),
                Context::Nested => return Err(CoderError::OpaqueNested { urn: urn.clone() }),
            },
        })
    }

    pub(crate) fn skip_in(
        &self,
        input: &mut &[u8],
        ctx: Context,
        budget: &mut Budget,
    ) -> Result<()> {
        match self {
            Coder::Bytes | Coder::StringUtf8 => {
                read_unbounded(input, ctx)?;
            }
            Coder::Bool => {
                wire::read_bool(input)?;
            }
            Coder::Varint => {
                wire::read_varint_u64(input)?;
            }
            Coder::Double => {
                wire::read_array::<8>(input)?;
            }
            Coder::Kv { key, value } => {
                key.skip_in(input, Context::Nested, budget)?;
                value.skip_in(input, ctx, budget)?;
            }
            Coder::Iterable(elem) | Coder::StateBackedIterable(elem) => {
                let allow_state = matches!(self, Coder::StateBackedIterable(_));
                read_iterable(
                    input,
                    elem.min_encoded_len(),
                    allow_state,
                    budget,
                    |i, budget| elem.skip_in(i, Context::Nested, budget),
                )?;
            }
            Coder::LengthPrefix(_) => {
                wire::read_length_prefixed(input)?;
            }
            Coder::Nullable(inner) => {
                if read_null_flag(input)? {
                    inner.skip_in(input, ctx, budget)?;
                }
            }
            Coder::GlobalWindow => {}
            Coder::IntervalWindow => {
                wire::read_interval_window(input)?;
            }
            Coder::CustomWindow(inner) => {
                wire::read_timestamp(input)?;
                inner.skip_in(input, ctx, budget)?;
            }
            Coder::WindowedValue { value, window } => {
                wire::read_timestamp(input)?;
                read_iterable(
                    input,
                    window.min_encoded_len(),
                    false,
                    budget,
                    |i, budget| window.skip_in(i, Context::Nested, budget),
                )?;
                wire::read_pane(input)?;
                value.skip_in(input, ctx, budget)?;
            }
            Coder::ParamWindowedValue { value, .. } => value.skip_in(input, ctx, budget)?,
            Coder::Timer { key, window } => {
                key.skip_in(input, Context::Nested, budget)?;
                wire::read_length_prefixed(input)?;
                read_iterable(
                    input,
                    window.min_encoded_len(),
                    false,
                    budget,
                    |i, budget| window.skip_in(i, Context::Nested, budget),
                )?;
                if !wire::read_bool(input)? {
                    wire::read_timestamp(input)?;
                    wire::read_timestamp(input)?;
                    wire::read_pane(input)?;
                }
            }
            Coder::Row(schema) => row::skip_row(schema, input, budget)?,
            Coder::ShardedKey(key) => {
                wire::read_length_prefixed(input)?;
                key.skip_in(input, Context::Nested, budget)?;
            }
            Coder::Opaque { urn, .. } => match ctx {
                Context::Outer => *input = &[],
                Context::Nested => return Err(CoderError::OpaqueNested { urn: urn.clone() }),
            },
        }
        Ok(())
    }
}

/// Writes bytes without a length in the outer context, with one when nested.
#[inline]
fn write_unbounded(out: &mut Vec<u8>, bytes: &[u8], ctx: Context) {
    match ctx {
        Context::Nested => wire::write_length_prefixed(out, bytes),
        Context::Outer => out.extend_from_slice(bytes),
    }
}

/// Reads what [`write_unbounded`] wrote.
#[inline]
fn read_unbounded<'a>(input: &mut &'a [u8], ctx: Context) -> Result<&'a [u8]> {
    match ctx {
        Context::Nested => wire::read_length_prefixed(input),
        Context::Outer => Ok(std::mem::take(input)),
    }
}

fn read_unbounded_str<'a>(input: &mut &'a [u8], ctx: Context) -> Result<&'a str> {
    match ctx {
        Context::Nested => wire::read_str(input),
        Context::Outer => {
            let bytes = *input;
            let s = wire::utf8(bytes).map_err(|(valid_up_to, e)| {
                *input = &bytes[valid_up_to..];
                e
            })?;
            *input = &[];
            Ok(s)
        }
    }
}

fn read_null_flag(input: &mut &[u8]) -> Result<bool> {
    match input.first() {
        Some(0) | Some(1) => Ok(wire::read_u8(input)? == 1),
        Some(b) => Err(CoderError::invalid(
            "nullable marker",
            format!("byte {b:#04x} is neither 0 (null) nor 1 (present)"),
        )),
        None => wire::read_u8(input).map(|_| false),
    }
}

/// Runs `f` on the bytes of a length prefix. On success `input` ends after
/// them (bytes `f` left unread are ignored, as Beam does); on error `input` is
/// left where `f` failed.
pub(crate) fn within_length_prefix<'a, T>(
    input: &mut &'a [u8],
    f: impl FnOnce(&mut &'a [u8]) -> Result<T>,
) -> Result<T> {
    let before = *input;
    let region = wire::read_length_prefixed(input)?;
    let region_start = before.len() - input.len() - region.len();
    let mut sub = region;
    f(&mut sub).inspect_err(|_| {
        *input = &before[region_start + (region.len() - sub.len())..];
    })
}

fn encode_iterable(coder: &Coder, elem: &Coder, items: &[Value], out: &mut Vec<u8>) -> Result<()> {
    let count = i32::try_from(items.len()).map_err(|_| CoderError::ValueMismatch {
        coder: coder.urn().to_string(),
        found: "iterable",
        detail: format!("{} elements exceed the 4-byte count", items.len()),
    })?;
    wire::write_i32_be(out, count);
    for item in items {
        elem.encode_in(item, out, Context::Nested)?;
    }
    Ok(())
}

fn decode_windows(window: &Coder, input: &mut &[u8], budget: &mut Budget) -> Result<Vec<Value>> {
    let mut windows = Vec::with_capacity(1);
    read_iterable(
        input,
        window.min_encoded_len(),
        false,
        budget,
        |i, budget| {
            windows.push(window.decode_in(i, Context::Nested, budget)?);
            Ok(())
        },
    )?;
    Ok(windows)
}

/// How an iterable's encoding ended.
pub(crate) enum IterableEnd<'a> {
    /// All elements were inline.
    Complete,
    /// The rest is behind this state token.
    StateToken(&'a [u8]),
}

/// Reads an iterable's framing, calling `elem` on the input once per element.
///
/// Each block's count is charged to `budget` and, when elements take at least
/// `elem_min_len > 0` bytes, checked against the remaining input before any
/// element is read.
pub(crate) fn read_iterable<'a>(
    input: &mut &'a [u8],
    elem_min_len: usize,
    allow_state_token: bool,
    budget: &mut Budget,
    mut elem: impl FnMut(&mut &'a [u8], &mut Budget) -> Result<()>,
) -> Result<IterableEnd<'a>> {
    let before = *input;
    let count = wire::read_i32_be(input)?;
    if count >= 0 {
        check_count(input, count as u64, elem_min_len, budget).inspect_err(|_| *input = before)?;
        for _ in 0..count {
            elem(input, budget)?;
        }
        return Ok(IterableEnd::Complete);
    }
    if count != -1 {
        *input = before;
        return Err(CoderError::invalid(
            "iterable count",
            format!("{count} is negative and not -1 (unknown length)"),
        ));
    }
    loop {
        let before = *input;
        match wire::read_varint_i64(input)? {
            0 => return Ok(IterableEnd::Complete),
            -1 if allow_state_token => {
                let token = wire::read_length_prefixed(input).inspect_err(|_| *input = before)?;
                return Ok(IterableEnd::StateToken(token));
            }
            n if n > 0 => {
                check_count(input, n as u64, elem_min_len, budget)
                    .inspect_err(|_| *input = before)?;
                for _ in 0..n {
                    elem(input, budget)?;
                }
            }
            n => {
                *input = before;
                return Err(CoderError::invalid(
                    "iterable block count",
                    if n == -1 {
                        "state-backed continuation (-1) in a coder that is not state_backed_iterable"
                            .to_string()
                    } else {
                        format!("{n} is negative")
                    },
                ));
            }
        }
    }
}

/// Fails if `count` elements of at least `elem_min_len` bytes cannot fit the
/// input, or exceed the budget.
pub(crate) fn check_count(
    input: &[u8],
    count: u64,
    elem_min_len: usize,
    budget: &mut Budget,
) -> Result<()> {
    if elem_min_len > 0 && count.saturating_mul(elem_min_len as u64) > input.len() as u64 {
        return Err(CoderError::LengthExceedsInput {
            offset: 0,
            length: count,
            available: input.len(),
        });
    }
    budget.charge(count)
}

struct ProtoBuilder<'p> {
    coders: &'p std::collections::BTreeMap<String, pipeline::Coder>,
    built: HashMap<&'p str, Arc<Coder>>,
    stack: Vec<&'p str>,
}

impl<'p> ProtoBuilder<'p> {
    /// URN of the coder whose components are being built.
    fn parent_urn(&self) -> Option<&str> {
        let parent = self.coders.get(*self.stack.last()?)?;
        parent.spec.as_ref().map(|s| s.urn.as_str())
    }

    fn build(&mut self, id: &str) -> Result<Arc<Coder>> {
        let Some((id, proto)) = self.coders.get_key_value(id) else {
            return Err(CoderError::UnknownCoderId(id.to_string()));
        };
        if let Some(c) = self.built.get(id.as_str()) {
            return Ok(c.clone());
        }
        let spec = proto
            .spec
            .as_ref()
            .ok_or_else(|| CoderError::bad_coder("", format!("coder {id:?} has no spec")))?;
        if self.stack.contains(&id.as_str()) {
            return Err(CoderError::bad_coder(
                &spec.urn,
                format!("coder {id:?} contains itself"),
            ));
        }
        if self.stack.len() >= MAX_CODER_DEPTH {
            return Err(CoderError::bad_coder(
                &spec.urn,
                format!("coders nest deeper than {MAX_CODER_DEPTH}"),
            ));
        }
        let coder = if is_known_urn(&spec.urn) {
            self.stack.push(id);
            let components = proto
                .component_coder_ids
                .iter()
                .map(|c| self.build(c))
                .collect::<Result<Vec<_>>>();
            self.stack.pop();
            match from_parts_arc(&spec.urn, &spec.payload, components?) {
                Ok(c) => c,
                // A row whose schema Oxbeam cannot read (e.g. Beam Python's
                // `pythonsdk_any` logical type) is opaque inside a length
                // prefix, as runners send it.
                Err(CoderError::BadSchema(_))
                    if spec.urn == urn::ROW && self.parent_urn() == Some(urn::LENGTH_PREFIX) =>
                {
                    Coder::Opaque {
                        urn: spec.urn.clone(),
                        payload: spec.payload.clone(),
                    }
                }
                Err(e) => return Err(e),
            }
        } else {
            from_parts_arc(&spec.urn, &spec.payload, Vec::new())?
        };
        let coder = Arc::new(coder);
        self.built.insert(id, coder.clone());
        Ok(coder)
    }
}

fn is_known_urn(u: &str) -> bool {
    [
        urn::BYTES,
        urn::STRING_UTF8,
        urn::BOOL,
        urn::VARINT,
        urn::DOUBLE,
        urn::KV,
        urn::ITERABLE,
        urn::STATE_BACKED_ITERABLE,
        urn::LENGTH_PREFIX,
        urn::NULLABLE,
        urn::GLOBAL_WINDOW,
        urn::INTERVAL_WINDOW,
        urn::CUSTOM_WINDOW,
        urn::WINDOWED_VALUE,
        urn::PARAM_WINDOWED_VALUE,
        urn::TIMER,
        urn::ROW,
        urn::SHARDED_KEY,
    ]
    .contains(&u)
}

fn from_parts_arc(u: &str, payload: &Bytes, components: Vec<Arc<Coder>>) -> Result<Coder> {
    if !is_known_urn(u) {
        return Ok(Coder::Opaque {
            urn: u.to_string(),
            payload: payload.clone(),
        });
    }
    let expected = match u {
        _ if u == urn::KV
            || u == urn::WINDOWED_VALUE
            || u == urn::PARAM_WINDOWED_VALUE
            || u == urn::TIMER =>
        {
            2
        }
        _ if u == urn::ITERABLE
            || u == urn::STATE_BACKED_ITERABLE
            || u == urn::LENGTH_PREFIX
            || u == urn::NULLABLE
            || u == urn::CUSTOM_WINDOW
            || u == urn::SHARDED_KEY =>
        {
            1
        }
        _ => 0,
    };
    if components.len() != expected {
        return Err(CoderError::bad_coder(
            u,
            format!(
                "expected {expected} component coders, got {}",
                components.len()
            ),
        ));
    }
    let mut it = components.into_iter();
    let mut next = || {
        it.next()
            .ok_or_else(|| CoderError::bad_coder(u, "missing component coder"))
    };
    Ok(match u {
        _ if u == urn::BYTES => Coder::Bytes,
        _ if u == urn::STRING_UTF8 => Coder::StringUtf8,
        _ if u == urn::BOOL => Coder::Bool,
        _ if u == urn::VARINT => Coder::Varint,
        _ if u == urn::DOUBLE => Coder::Double,
        _ if u == urn::GLOBAL_WINDOW => Coder::GlobalWindow,
        _ if u == urn::INTERVAL_WINDOW => Coder::IntervalWindow,
        _ if u == urn::KV => Coder::Kv {
            key: next()?,
            value: next()?,
        },
        _ if u == urn::ITERABLE => Coder::Iterable(next()?),
        _ if u == urn::STATE_BACKED_ITERABLE => Coder::StateBackedIterable(next()?),
        _ if u == urn::LENGTH_PREFIX => Coder::LengthPrefix(next()?),
        _ if u == urn::NULLABLE => Coder::Nullable(next()?),
        _ if u == urn::CUSTOM_WINDOW => Coder::CustomWindow(next()?),
        _ if u == urn::SHARDED_KEY => Coder::ShardedKey(next()?),
        _ if u == urn::WINDOWED_VALUE => Coder::WindowedValue {
            value: next()?,
            window: next()?,
        },
        _ if u == urn::TIMER => Coder::Timer {
            key: next()?,
            window: next()?,
        },
        _ if u == urn::PARAM_WINDOWED_VALUE => {
            let value = next()?;
            let window = next()?;
            let mut input = &payload[..];
            let header = (|| {
                let timestamp = wire::read_timestamp(&mut input)?;
                let windows =
                    decode_windows(&window, &mut input, &mut Budget::for_input(payload.len()))?;
                let pane = wire::read_pane(&mut input)?;
                Ok::<_, CoderError>((timestamp, windows, pane))
            })();
            let (timestamp, windows, pane) = header.map_err(|e| {
                let e = e.shift_offset(payload.len() - input.len());
                CoderError::bad_coder(
                    u,
                    format!("payload is not an encoded windowed value header: {e}"),
                )
            })?;
            Coder::ParamWindowedValue {
                value,
                window,
                timestamp,
                windows,
                pane,
                payload: payload.clone(),
            }
        }
        _ if u == urn::ROW => {
            let schema = pipeline::Schema::decode(&payload[..]).map_err(|e| {
                CoderError::BadSchema(format!("payload is not a Schema proto: {e}"))
            })?;
            Coder::Row(Arc::new(RowSchema::from_proto(&schema)?))
        }
        _ => Coder::Opaque {
            urn: u.to_string(),
            payload: payload.clone(),
        },
    })
}

#[cfg(test)]
mod common_windowed_tests {
    use proptest::prelude::*;

    use super::*;

    /// Bytes read by `skip` (with its scan of the common shape).
    fn scanned(coder: &Coder, bytes: &[u8]) -> Option<usize> {
        let mut input = bytes;
        coder
            .skip(&mut input, Context::Nested)
            .ok()
            .map(|()| bytes.len() - input.len())
    }

    /// Bytes read by the general path alone.
    fn general(coder: &Coder, bytes: &[u8]) -> Option<usize> {
        let mut input = bytes;
        let mut budget = Budget::for_input(bytes.len());
        coder
            .skip_in(&mut input, Context::Nested, &mut budget)
            .ok()
            .map(|()| bytes.len() - input.len())
    }

    proptest! {
        #[test]
        fn the_common_shape_scan_reads_what_the_general_path_reads(
            value in prop_oneof![
                Just(Coder::Bytes),
                Just(Coder::StringUtf8),
                Just(Coder::LengthPrefix(Arc::new(Coder::Varint))),
                Just(Coder::Varint),
            ],
            window in prop_oneof![Just(Coder::GlobalWindow), Just(Coder::IntervalWindow)],
            ts in any::<[u8; 8]>(),
            count in prop_oneof![3 => Just(1i32), 1 => -1i32..3],
            pane in prop_oneof![3 => 0u8..16, 1 => any::<u8>()],
            len in prop_oneof![0usize..130, 16_370usize..16_400, 2_097_150usize..2_097_155],
            extra in 0usize..3,
            cut in any::<prop::sample::Index>(),
        ) {
            let coder = Coder::WindowedValue { value: Arc::new(value), window: Arc::new(window) };
            let mut bytes = ts.to_vec();
            bytes.extend_from_slice(&count.to_be_bytes());
            bytes.push(pane);
            wire::write_varint_u64(&mut bytes, len as u64);
            bytes.resize(bytes.len() + len + extra, 7);
            prop_assert_eq!(scanned(&coder, &bytes), general(&coder, &bytes));
            let short = &bytes[..cut.index(bytes.len() + 1)];
            prop_assert_eq!(scanned(&coder, short), general(&coder, short));
        }
    }

    #[test]
    fn the_scan_reads_one_and_two_byte_lengths() {
        let coder = Coder::WindowedValue {
            value: Arc::new(Coder::Bytes),
            window: Arc::new(Coder::GlobalWindow),
        };
        for len in [0usize, 1, 127, 128, 300, 16_383] {
            let mut bytes = vec![0; 8];
            bytes.extend_from_slice(&[0, 0, 0, 1, 0x0F]);
            wire::write_varint_u64(&mut bytes, len as u64);
            let end = bytes.len() + len;
            bytes.resize(end + 5, 1);
            assert_eq!(coder.common_windowed_len(&bytes), Some(end), "length {len}");
        }
    }
}
