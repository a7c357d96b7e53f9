//! Event-time vocabulary shared by every crate: [`Timestamp`], [`BoundedWindow`]
//! and [`PaneInfo`], with Beam's bounds and Beam's byte encodings.
//!
//! Beam timestamps are milliseconds since the Unix epoch, bounded by
//! [`Timestamp::MIN`] and [`Timestamp::MAX`] (the `beam_constants` of the
//! protos). Values outside the bounds still encode and decode losslessly; the
//! bounds matter to watermarks, not to coders.
//!
//! ```
//! use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};
//! let w = BoundedWindow::Interval { start: Timestamp::from_millis(0), end: Timestamp::from_millis(10) };
//! assert_eq!(w.max_timestamp(), Timestamp::from_millis(9));
//! assert_eq!(BoundedWindow::Global.max_timestamp(), Timestamp::GLOBAL_WINDOW_MAX);
//! assert_eq!(PaneInfo::NO_FIRING.encoded_first_byte(), 0x0F);
//! ```

use crate::urns::beam_constants::constants;

/// Parses a `beam_constant` at compile time; a bad constant fails the build.
const fn parse_constant(s: &str) -> i64 {
    match i64::from_str_radix(s, 10) {
        Ok(v) => v,
        Err(_) => panic!("beam_constant is not an i64"),
    }
}

/// A point in event time: milliseconds since the Unix epoch.
///
/// Ordered like the millisecond count. Encoded by Beam as 8 big-endian bytes of
/// `millis ^ i64::MIN` (see [`Timestamp::to_ordered_bytes`]), so that byte order
/// equals time order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Beam's smallest timestamp, `MIN_TIMESTAMP_MILLIS` (−2⁶³/1000 ms).
    pub const MIN: Timestamp = Timestamp(parse_constant(constants::MIN_TIMESTAMP_MILLIS));
    /// Beam's largest timestamp, `MAX_TIMESTAMP_MILLIS`; the watermark reaches
    /// it at the end of input.
    pub const MAX: Timestamp = Timestamp(parse_constant(constants::MAX_TIMESTAMP_MILLIS));
    /// The max timestamp of the global window: one day before [`Timestamp::MAX`].
    pub const GLOBAL_WINDOW_MAX: Timestamp = Timestamp(parse_constant(
        constants::GLOBAL_WINDOW_MAX_TIMESTAMP_MILLIS,
    ));

    /// The timestamp `millis` milliseconds after the epoch.
    #[inline]
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    #[inline]
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Beam's order-preserving encoding: big-endian `millis ^ i64::MIN`.
    #[inline]
    pub const fn to_ordered_bytes(self) -> [u8; 8] {
        ((self.0 as u64) ^ (1u64 << 63)).to_be_bytes()
    }

    /// Inverse of [`Timestamp::to_ordered_bytes`].
    #[inline]
    pub const fn from_ordered_bytes(bytes: [u8; 8]) -> Self {
        Timestamp((u64::from_be_bytes(bytes) ^ (1u64 << 63)) as i64)
    }

    /// `self + millis`, saturating at the `i64` range.
    #[inline]
    pub const fn saturating_add_millis(self, millis: i64) -> Self {
        Timestamp(self.0.saturating_add(millis))
    }

    /// `self - millis`, saturating at the `i64` range.
    #[inline]
    pub const fn saturating_sub_millis(self, millis: i64) -> Self {
        Timestamp(self.0.saturating_sub(millis))
    }
}

impl From<i64> for Timestamp {
    fn from(millis: i64) -> Self {
        Timestamp(millis)
    }
}

/// A window of event time that elements are assigned to.
///
/// Beam's two standard windows. Windows of other window coders (custom window
/// fns of an SDK) travel as opaque values in the dynamic coder tree
/// ([`crate::coders::Value`]); `beam:coder:custom_window:v1` carries their max
/// timestamp in front of them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum BoundedWindow {
    /// The single window spanning all time (`beam:coder:global_window:v1`,
    /// encoded as zero bytes).
    Global,
    /// The half-open interval `[start, end)` (`beam:coder:interval_window:v1`,
    /// encoded as the end timestamp and the span as a varint).
    Interval {
        /// Inclusive start.
        start: Timestamp,
        /// Exclusive end.
        end: Timestamp,
    },
}

impl BoundedWindow {
    /// The largest timestamp an element of this window can carry: the global
    /// window's fixed max, or `end - 1ms` for an interval.
    #[inline]
    pub const fn max_timestamp(&self) -> Timestamp {
        match self {
            BoundedWindow::Global => Timestamp::GLOBAL_WINDOW_MAX,
            BoundedWindow::Interval { end, .. } => end.saturating_sub_millis(1),
        }
    }
}

/// Whether a pane fired before, at, or after the watermark passed the end of
/// its window. The discriminant is Beam's encoding (bits 2–3 of the pane byte).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum PaneTiming {
    /// Fired before the watermark passed the end of the window (speculative).
    Early = 0,
    /// The firing when the watermark passed the end of the window.
    OnTime = 1,
    /// Fired after the on-time pane, for late data.
    Late = 2,
    /// Not produced by a trigger (the default for unwindowed data).
    Unknown = 3,
}

impl PaneTiming {
    /// The timing encoded by the two bits `bits & 3`.
    #[inline]
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => PaneTiming::Early,
            1 => PaneTiming::OnTime,
            2 => PaneTiming::Late,
            _ => PaneTiming::Unknown,
        }
    }
}

/// Which firing of a trigger produced an element, as Beam's `PaneInfo`.
///
/// Encoded in 1 byte (`is_first | is_last << 1 | timing << 2`, and in the high
/// nibble how many indices follow), then 0, 1 or 2 varint indices, exactly as
/// Beam's `PaneInfoCoder` chooses them. Oxbeam adds one bit Beam leaves
/// unused: `0x80` marks a retraction (see [`PaneInfo::is_retraction`]); panes
/// without it encode byte for byte as Beam's. The single-byte form cannot carry
/// indices: decoding it yields index 0 for a first pane and −1 otherwise, and
/// `on_time_index` −1 for early panes and 0 otherwise, like Beam's table of
/// well-known panes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PaneInfo {
    /// First pane fired for this window.
    pub is_first: bool,
    /// Last pane that will fire for this window.
    pub is_last: bool,
    /// Early, on time, late or unknown.
    pub timing: PaneTiming,
    /// Index of this pane among all firings of the window.
    pub index: i64,
    /// Index among the non-speculative (on-time and late) firings; −1 for
    /// early panes.
    pub on_time_index: i64,
    /// Oxbeam extension: this element retracts the pane of the same window
    /// emitted before the pane described by the other fields (accumulation
    /// mode RETRACTING). Encoded as bit `0x80` of the pane byte; never set
    /// by Beam SDKs. Build panes with `..PaneInfo::NO_FIRING` so that new
    /// fields get defaults.
    pub is_retraction: bool,
}

/// How many varint indices follow the pane byte (its high nibble).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PaneEncoding {
    First = 0,
    OneIndex = 1,
    TwoIndices = 2,
}

impl PaneInfo {
    /// The pane of an element that no trigger produced: first and last, timing
    /// unknown. Encodes as the single byte `0x0F`.
    pub const NO_FIRING: PaneInfo = PaneInfo {
        is_first: true,
        is_last: true,
        timing: PaneTiming::Unknown,
        index: 0,
        on_time_index: 0,
        is_retraction: false,
    };

    /// Bit of the pane byte that marks a retraction (Oxbeam extension).
    pub const RETRACTION_BIT: u8 = 0x80;

    /// The pane byte without the index count: first/last flags and timing in
    /// the low nibble, and [`PaneInfo::RETRACTION_BIT`] for a retraction.
    #[inline]
    pub const fn encoded_first_byte(&self) -> u8 {
        (self.is_first as u8)
            | ((self.is_last as u8) << 1)
            | ((self.timing as u8) << 2)
            | if self.is_retraction {
                Self::RETRACTION_BIT
            } else {
                0
            }
    }

    /// Whether the element retracts an earlier pane (RETRACTING accumulation).
    #[inline]
    pub const fn is_retraction(&self) -> bool {
        self.is_retraction
    }

    /// This pane, marked as a retraction.
    #[inline]
    pub const fn into_retraction(self) -> Self {
        PaneInfo {
            is_retraction: true,
            ..self
        }
    }

    /// The pane Beam decodes from a single-byte encoding `byte & 0x0F`
    /// (with the retraction bit, if set).
    #[inline]
    pub const fn from_first_byte(byte: u8) -> Self {
        let timing = PaneTiming::from_bits(byte >> 2);
        let is_first = byte & 1 != 0;
        PaneInfo {
            is_first,
            is_last: byte & 2 != 0,
            timing,
            index: if is_first { 0 } else { -1 },
            on_time_index: if matches!(timing, PaneTiming::Early) {
                -1
            } else {
                0
            },
            is_retraction: byte & Self::RETRACTION_BIT != 0,
        }
    }

    /// Beam's choice of encoding for this pane.
    #[inline]
    pub(crate) const fn encoding(&self) -> PaneEncoding {
        if (self.index == 0 && self.on_time_index == 0)
            || matches!(self.timing, PaneTiming::Unknown)
        {
            PaneEncoding::First
        } else if self.index == self.on_time_index || matches!(self.timing, PaneTiming::Early) {
            PaneEncoding::OneIndex
        } else {
            PaneEncoding::TwoIndices
        }
    }
}

impl Default for PaneInfo {
    fn default() -> Self {
        PaneInfo::NO_FIRING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_beam() {
        assert_eq!(Timestamp::MIN.millis(), i64::MIN / 1000);
        assert_eq!(Timestamp::MAX.millis(), i64::MAX / 1000);
        assert_eq!(
            Timestamp::GLOBAL_WINDOW_MAX.millis(),
            Timestamp::MAX.millis() - 24 * 3600 * 1000
        );
    }

    #[test]
    fn ordered_bytes_preserve_order() {
        let ts = [i64::MIN, -1000, -1, 0, 1, 1000, i64::MAX];
        for w in ts.windows(2) {
            let a = Timestamp::from_millis(w[0]).to_ordered_bytes();
            let b = Timestamp::from_millis(w[1]).to_ordered_bytes();
            assert!(a < b);
        }
        for t in ts {
            let t = Timestamp::from_millis(t);
            assert_eq!(Timestamp::from_ordered_bytes(t.to_ordered_bytes()), t);
        }
        assert_eq!(
            Timestamp::from_millis(0).to_ordered_bytes(),
            [0x80, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn pane_first_byte_round_trips_well_known_panes() {
        for b in 0u8..16 {
            assert_eq!(PaneInfo::from_first_byte(b).encoded_first_byte(), b);
        }
        assert_eq!(PaneInfo::from_first_byte(0x0F), PaneInfo::NO_FIRING);
        let r = PaneInfo::from_first_byte(0x87);
        assert!(r.is_retraction() && r.is_first && r.is_last);
        assert_eq!(r.encoded_first_byte(), 0x87);
    }
}
