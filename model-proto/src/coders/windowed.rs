//! The runner's fast path for windowed values: a typed header
//! ([`WindowedValueHeader`]) and the value as borrowed, still-encoded bytes.
//!
//! `beam:coder:windowed_value:v1` encodes timestamp, windows, pane, then the
//! value. Runners rarely need the value decoded: they read the header, keep
//! the value bytes, and let the element's own coder (or the SDK harness)
//! interpret them. Nothing here allocates unless an element is in more than
//! one window.

use std::fmt;
use std::ops::Deref;

use super::coder::{Budget, Coder, Context, read_iterable};
use super::error::{CoderError, Result};
use super::wire;
use crate::window::{BoundedWindow, PaneEncoding, PaneInfo, Timestamp};

/// The windows of an element: inline for the usual single window, a `Vec`
/// otherwise. Dereferences to `[BoundedWindow]`.
#[derive(Clone)]
pub struct Windows(Repr);

#[derive(Clone)]
enum Repr {
    One(BoundedWindow),
    Many(Vec<BoundedWindow>),
}

impl Windows {
    /// Just the global window.
    pub const GLOBAL: Windows = Windows(Repr::One(BoundedWindow::Global));

    /// A single window.
    #[inline]
    pub const fn one(window: BoundedWindow) -> Self {
        Windows(Repr::One(window))
    }

    /// The windows of `windows`, in order.
    pub fn from_vec(windows: Vec<BoundedWindow>) -> Self {
        match windows.as_slice() {
            [w] => Windows::one(*w),
            _ => Windows(Repr::Many(windows)),
        }
    }

    /// The windows as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[BoundedWindow] {
        match &self.0 {
            Repr::One(w) => std::slice::from_ref(w),
            Repr::Many(v) => v,
        }
    }

    /// Appends a window.
    pub fn push(&mut self, window: BoundedWindow) {
        match &mut self.0 {
            Repr::One(w) => self.0 = Repr::Many(vec![*w, window]),
            Repr::Many(v) if v.is_empty() => self.0 = Repr::One(window),
            Repr::Many(v) => v.push(window),
        }
    }
}

impl Default for Windows {
    /// No windows.
    fn default() -> Self {
        Windows(Repr::Many(Vec::new()))
    }
}

impl Deref for Windows {
    type Target = [BoundedWindow];
    #[inline]
    fn deref(&self) -> &[BoundedWindow] {
        self.as_slice()
    }
}

impl PartialEq for Windows {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Windows {}

impl std::hash::Hash for Windows {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for Windows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl From<BoundedWindow> for Windows {
    fn from(w: BoundedWindow) -> Self {
        Windows::one(w)
    }
}

impl From<Vec<BoundedWindow>> for Windows {
    fn from(v: Vec<BoundedWindow>) -> Self {
        Windows::from_vec(v)
    }
}

impl FromIterator<BoundedWindow> for Windows {
    fn from_iter<I: IntoIterator<Item = BoundedWindow>>(iter: I) -> Self {
        let mut windows = Windows::default();
        for w in iter {
            windows.push(w);
        }
        windows
    }
}

/// The standard window coders the fast path reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowCoder {
    /// `beam:coder:global_window:v1`.
    Global,
    /// `beam:coder:interval_window:v1`.
    Interval,
}

impl WindowCoder {
    /// The fast-path window coder for a dynamic one, if it is standard.
    pub fn from_coder(coder: &Coder) -> Option<Self> {
        match coder {
            Coder::GlobalWindow => Some(WindowCoder::Global),
            Coder::IntervalWindow => Some(WindowCoder::Interval),
            _ => None,
        }
    }

    #[inline]
    fn read(self, input: &mut &[u8]) -> Result<BoundedWindow> {
        match self {
            WindowCoder::Global => Ok(BoundedWindow::Global),
            WindowCoder::Interval => wire::read_interval_window(input),
        }
    }

    #[inline]
    fn min_encoded_len(self) -> usize {
        match self {
            WindowCoder::Global => 0,
            WindowCoder::Interval => 9,
        }
    }
}

/// Timestamp, windows and pane of a windowed value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowedValueHeader {
    /// Event time of the element.
    pub timestamp: Timestamp,
    /// Windows the element is in; each window is encoded with its standard
    /// coder (nothing for [`BoundedWindow::Global`]).
    pub windows: Windows,
    /// The trigger firing that produced it.
    pub pane: PaneInfo,
}

impl WindowedValueHeader {
    /// An element at `timestamp` in the global window, not from a trigger.
    #[inline]
    pub const fn global(timestamp: Timestamp) -> Self {
        WindowedValueHeader {
            timestamp,
            windows: Windows::GLOBAL,
            pane: PaneInfo::NO_FIRING,
        }
    }

    /// Appends the header's encoding (everything before the value).
    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>) {
        let windows = self.windows.as_slice();
        if matches!(windows, [BoundedWindow::Global]) && self.pane.encoding() == PaneEncoding::First
        {
            // The common case in one write: timestamp, count 1, pane byte.
            let mut buf = [0u8; 13];
            buf[..8].copy_from_slice(&self.timestamp.to_ordered_bytes());
            buf[11] = 1;
            buf[12] = self.pane.encoded_first_byte();
            out.extend_from_slice(&buf);
            return;
        }
        wire::write_timestamp(out, self.timestamp);
        // A header cannot hold 2^31 windows in memory anyway; saturate rather
        // than wrap if it somehow does.
        wire::write_i32_be(out, i32::try_from(windows.len()).unwrap_or(i32::MAX));
        for w in windows {
            wire::write_window(out, w);
        }
        wire::write_pane(out, &self.pane);
    }

    /// Reads a header whose windows are encoded with `window_coder`.
    ///
    /// # Errors
    /// The bad-bytes kinds of [`CoderError`].
    #[inline]
    pub fn decode(input: &mut &[u8], window_coder: WindowCoder) -> Result<Self> {
        let start = input.len();
        Self::decode_in(input, window_coder, &mut Budget::for_input(start))
            .map_err(|e| e.shift_offset(start - input.len()))
    }

    #[inline(always)]
    fn decode_in(
        input: &mut &[u8],
        window_coder: WindowCoder,
        budget: &mut Budget,
    ) -> Result<Self> {
        let timestamp = wire::read_timestamp(input)?;
        let windows = match input.split_first_chunk::<4>() {
            Some((&[0, 0, 0, 1], rest)) => {
                *input = rest;
                Windows::one(window_coder.read(input)?)
            }
            _ => {
                let mut windows = Windows::default();
                read_iterable(
                    input,
                    window_coder.min_encoded_len(),
                    false,
                    budget,
                    |i, _| {
                        windows.push(window_coder.read(i)?);
                        Ok(())
                    },
                )?;
                windows
            }
        };
        let pane = wire::read_pane(input)?;
        Ok(WindowedValueHeader {
            timestamp,
            windows,
            pane,
        })
    }
}

/// A decoded header and the value's bytes, borrowed from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowedRef<'a> {
    /// Timestamp, windows, pane.
    pub header: WindowedValueHeader,
    /// The value's bytes: see [`decode_windowed`] and
    /// [`decode_windowed_with`] for what exactly they hold.
    pub value: &'a [u8],
}

/// Appends a windowed value whose value coder is bytes-like: in the nested
/// context the value is length-prefixed (as `bytes` or `length_prefix(..)`
/// encode it), in the outer context it is written raw.
///
/// This is `windowed_value(bytes)` or, nested, `windowed_value(length_prefix(X))`
/// when `value` is X's outer-context encoding: how runners carry elements
/// whose coder they do not know.
#[inline]
pub fn encode_windowed_bytes(
    header: &WindowedValueHeader,
    value: &[u8],
    ctx: Context,
    out: &mut Vec<u8>,
) {
    out.reserve(13 + wire::MAX_VARINT_LEN + value.len());
    header.encode(out);
    match ctx {
        Context::Nested => {
            wire::write_varint_u64(out, value.len() as u64);
            out.extend_from_slice(value);
        }
        Context::Outer => out.extend_from_slice(value),
    }
}

/// Reads a windowed value written by [`encode_windowed_bytes`]: in the nested
/// context `value` is the bytes after the length prefix; in the outer context
/// it is the whole rest of the input.
///
/// # Errors
/// The bad-bytes kinds of [`CoderError`]; the offset counts from the start of
/// `input`, which is left at the failing read.
#[inline]
pub fn decode_windowed<'a>(
    input: &mut &'a [u8],
    window_coder: WindowCoder,
    ctx: Context,
) -> Result<WindowedRef<'a>> {
    let start = input.len();
    let result = (|| {
        let header =
            WindowedValueHeader::decode_in(input, window_coder, &mut Budget::for_input(start))?;
        let value = match ctx {
            Context::Nested => wire::read_length_prefixed(input)?,
            Context::Outer => std::mem::take(input),
        };
        Ok(WindowedRef { header, value })
    })();
    result.map_err(|e: CoderError| e.shift_offset(start - input.len()))
}

/// Reads a windowed value whose value is encoded with `value_coder`, without
/// decoding the value: `value` is its complete encoding in context `ctx`
/// (found with [`Coder::skip`]), ready to hand to that coder or to re-emit.
///
/// # Errors
/// As [`decode_windowed`], plus [`CoderError::OpaqueNested`] if the value
/// coder is unknown and `ctx` is nested.
#[inline]
pub fn decode_windowed_with<'a>(
    input: &mut &'a [u8],
    window_coder: WindowCoder,
    value_coder: &Coder,
    ctx: Context,
) -> Result<WindowedRef<'a>> {
    let start = input.len();
    let result = (|| {
        let mut budget = Budget::for_input(start);
        let header = WindowedValueHeader::decode_in(input, window_coder, &mut budget)?;
        let before = *input;
        value_coder.skip_in(input, ctx, &mut budget)?;
        Ok(WindowedRef {
            header,
            value: &before[..before.len() - input.len()],
        })
    })();
    result.map_err(|e: CoderError| e.shift_offset(start - input.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_header_round_trip() {
        let header = WindowedValueHeader::global(Timestamp::from_millis(1454293425000));
        let mut out = Vec::new();
        encode_windowed_bytes(&header, &[2], Context::Outer, &mut out);
        // The windowed_value vector of standard_coders.yaml.
        assert_eq!(out, b"\x80\x00\x01R\x9a\xa4\x9bh\x00\x00\x00\x01\x0f\x02");
        let mut input = &out[..];
        let r = decode_windowed(&mut input, WindowCoder::Global, Context::Outer).unwrap();
        assert_eq!(r.header, header);
        assert_eq!(r.value, [2]);
        assert!(input.is_empty());
    }

    #[test]
    fn many_windows_round_trip_nested() {
        let w = |s, e| BoundedWindow::Interval {
            start: Timestamp::from_millis(s),
            end: Timestamp::from_millis(e),
        };
        let header = WindowedValueHeader {
            timestamp: Timestamp::from_millis(-100),
            windows: Windows::from_vec(vec![w(0, 10), w(5, 15)]),
            pane: PaneInfo::NO_FIRING,
        };
        let mut out = Vec::new();
        encode_windowed_bytes(&header, b"abc", Context::Nested, &mut out);
        out.extend_from_slice(b"next");
        let mut input = &out[..];
        let r = decode_windowed(&mut input, WindowCoder::Interval, Context::Nested).unwrap();
        assert_eq!(r.header, header);
        assert_eq!(r.value, b"abc");
        assert_eq!(input, b"next");

        let mut input = &out[..];
        let r = decode_windowed_with(
            &mut input,
            WindowCoder::Interval,
            &Coder::Bytes,
            Context::Nested,
        )
        .unwrap();
        assert_eq!(r.value, b"\x03abc");
    }

    #[test]
    fn truncated_header_reports_offset() {
        let header = WindowedValueHeader::global(Timestamp::from_millis(0));
        let mut out = Vec::new();
        encode_windowed_bytes(&header, b"abcdef", Context::Nested, &mut out);
        out.truncate(out.len() - 2);
        let mut input = &out[..];
        let err = decode_windowed(&mut input, WindowCoder::Global, Context::Nested).unwrap_err();
        assert_eq!(
            err,
            CoderError::LengthExceedsInput {
                offset: 13,
                length: 6,
                available: 4
            }
        );
    }

    #[test]
    fn windows_container() {
        let mut ws = Windows::default();
        assert!(ws.is_empty());
        ws.push(BoundedWindow::Global);
        assert_eq!(ws, Windows::GLOBAL);
        ws.push(BoundedWindow::Global);
        assert_eq!(ws.len(), 2);
        let collected: Windows = ws.iter().copied().collect();
        assert_eq!(collected, ws);
    }
}
