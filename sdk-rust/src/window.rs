//! Window functions: how elements are assigned to windows of event time.
//!
//! [`WindowFn`] covers Beam's four standard window fns. The SDK writes them
//! into the pipeline proto with their standard URNs and payloads; the native
//! executor reads them back from a bundle descriptor to assign windows
//! (`beam:transform:window_into:v1`) and to map main-input windows to
//! side-input windows.

use std::time::Duration;

use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::{BoundedWindow, Timestamp};
use prost::Message;

/// A standard Beam window function. Durations are whole milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WindowFn {
    /// Every element in the single global window (the default).
    #[default]
    Global,
    /// Consecutive non-overlapping windows of `size_ms`, aligned to `offset_ms`.
    Fixed {
        /// Window length.
        size_ms: i64,
        /// Alignment of window starts.
        offset_ms: i64,
    },
    /// Windows of `size_ms` starting every `period_ms`: an element is in
    /// `size / period` windows.
    Sliding {
        /// Window length.
        size_ms: i64,
        /// Distance between window starts.
        period_ms: i64,
        /// Alignment of window starts.
        offset_ms: i64,
    },
    /// Per-key sessions: windows `[t, t + gap)` that merge when they overlap
    /// (at GroupByKey).
    Sessions {
        /// Inactivity gap closing a session.
        gap_ms: i64,
    },
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl WindowFn {
    /// Fixed windows of `size`.
    pub fn fixed(size: Duration) -> Self {
        WindowFn::Fixed {
            size_ms: millis(size),
            offset_ms: 0,
        }
    }

    /// Sliding windows of `size`, one starting every `period`.
    pub fn sliding(size: Duration, period: Duration) -> Self {
        WindowFn::Sliding {
            size_ms: millis(size),
            period_ms: millis(period),
            offset_ms: 0,
        }
    }

    /// Session windows closed by `gap` of inactivity.
    pub fn sessions(gap: Duration) -> Self {
        WindowFn::Sessions {
            gap_ms: millis(gap),
        }
    }

    /// Whether windows merge at GroupByKey (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowFn::Sessions { .. })
    }

    /// Calls `f` with every window an element at `ts` belongs to.
    #[inline]
    pub fn assign(&self, ts: Timestamp, mut f: impl FnMut(BoundedWindow)) {
        let t = ts.millis();
        match *self {
            WindowFn::Global => f(BoundedWindow::Global),
            WindowFn::Fixed { size_ms, offset_ms } => {
                let start = t - (t - offset_ms).rem_euclid(size_ms);
                f(interval(start, start.saturating_add(size_ms)));
            }
            WindowFn::Sliding {
                size_ms,
                period_ms,
                offset_ms,
            } => {
                let last_start = t - (t - offset_ms).rem_euclid(period_ms);
                let mut start = last_start;
                while start > t - size_ms {
                    f(interval(start, start.saturating_add(size_ms)));
                    start -= period_ms;
                }
            }
            WindowFn::Sessions { gap_ms } => f(interval(t, t.saturating_add(gap_ms))),
        }
    }

    /// The side-input window a main-input `window` reads, for a side input
    /// windowed by `self` (Beam's `getSideInputWindow`).
    ///
    /// # Errors
    /// Session windows cannot be side-input windows.
    pub fn side_input_window(&self, window: &BoundedWindow) -> Result<BoundedWindow, String> {
        let ts = window.max_timestamp();
        match *self {
            WindowFn::Global => Ok(BoundedWindow::Global),
            WindowFn::Fixed { .. } => {
                let mut out = BoundedWindow::Global;
                self.assign(ts, |w| out = w);
                Ok(out)
            }
            WindowFn::Sliding {
                size_ms,
                period_ms,
                offset_ms,
            } => {
                let t = ts.millis();
                let last_start = t - (t - offset_ms).rem_euclid(period_ms);
                Ok(interval(last_start, last_start.saturating_add(size_ms)))
            }
            WindowFn::Sessions { .. } => {
                Err("session windows cannot be used to window a side input".into())
            }
        }
    }

    /// The window fn's `FunctionSpec` (standard URN and payload).
    pub fn to_proto(&self) -> pb::FunctionSpec {
        let dur = |ms: i64| prost_types::Duration {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        };
        let ts = |ms: i64| prost_types::Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        };
        let (urn, payload) = match *self {
            WindowFn::Global => (urns::global_windows_payload::PROPERTIES, Vec::new()),
            WindowFn::Fixed { size_ms, offset_ms } => (
                urns::fixed_windows_payload::PROPERTIES,
                pb::FixedWindowsPayload {
                    size: Some(dur(size_ms)),
                    offset: Some(ts(offset_ms)),
                }
                .encode_to_vec(),
            ),
            WindowFn::Sliding {
                size_ms,
                period_ms,
                offset_ms,
            } => (
                urns::sliding_windows_payload::PROPERTIES,
                pb::SlidingWindowsPayload {
                    size: Some(dur(size_ms)),
                    offset: Some(ts(offset_ms)),
                    period: Some(dur(period_ms)),
                }
                .encode_to_vec(),
            ),
            WindowFn::Sessions { gap_ms } => (
                urns::session_windows_payload::PROPERTIES,
                pb::SessionWindowsPayload {
                    gap_size: Some(dur(gap_ms)),
                }
                .encode_to_vec(),
            ),
        };
        pb::FunctionSpec {
            urn: urn.to_string(),
            payload: payload.into(),
        }
    }

    /// Reads a standard window fn from its `FunctionSpec`.
    ///
    /// # Errors
    /// An unknown URN, a malformed payload, or a non-positive size.
    pub fn from_proto(spec: &pb::FunctionSpec) -> Result<Self, String> {
        fn ms_d(d: Option<prost_types::Duration>) -> i64 {
            d.map_or(0, |d| {
                d.seconds.saturating_mul(1000) + i64::from(d.nanos) / 1_000_000
            })
        }
        fn ms_t(t: Option<prost_types::Timestamp>) -> i64 {
            t.map_or(0, |t| {
                t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000
            })
        }
        let bad = |e: prost::DecodeError| format!("bad payload of window fn {}: {e}", spec.urn);
        let wf = match spec.urn.as_str() {
            urns::global_windows_payload::PROPERTIES => WindowFn::Global,
            urns::fixed_windows_payload::PROPERTIES => {
                let p = pb::FixedWindowsPayload::decode(&spec.payload[..]).map_err(bad)?;
                WindowFn::Fixed {
                    size_ms: ms_d(p.size),
                    offset_ms: ms_t(p.offset),
                }
            }
            urns::sliding_windows_payload::PROPERTIES => {
                let p = pb::SlidingWindowsPayload::decode(&spec.payload[..]).map_err(bad)?;
                WindowFn::Sliding {
                    size_ms: ms_d(p.size),
                    period_ms: ms_d(p.period),
                    offset_ms: ms_t(p.offset),
                }
            }
            urns::session_windows_payload::PROPERTIES => {
                let p = pb::SessionWindowsPayload::decode(&spec.payload[..]).map_err(bad)?;
                WindowFn::Sessions {
                    gap_ms: ms_d(p.gap_size),
                }
            }
            other => return Err(format!("window fn {other:?} is not a standard window fn")),
        };
        let positive = match wf {
            WindowFn::Global => true,
            WindowFn::Fixed { size_ms, .. } => size_ms > 0,
            WindowFn::Sliding {
                size_ms, period_ms, ..
            } => size_ms > 0 && period_ms > 0,
            WindowFn::Sessions { gap_ms } => gap_ms > 0,
        };
        if positive {
            Ok(wf)
        } else {
            Err(format!("window fn {wf:?} has a non-positive duration"))
        }
    }

    /// The URN of the coder of this fn's windows.
    pub fn window_coder_urn(&self) -> &'static str {
        match self {
            WindowFn::Global => urns::standard_coders::GLOBAL_WINDOW,
            _ => urns::standard_coders::INTERVAL_WINDOW,
        }
    }
}

fn interval(start: i64, end: i64) -> BoundedWindow {
    BoundedWindow::Interval {
        start: Timestamp::from_millis(start),
        end: Timestamp::from_millis(end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(wf: WindowFn, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        wf.assign(Timestamp::from_millis(t), |w| match w {
            BoundedWindow::Interval { start, end } => out.push((start.millis(), end.millis())),
            BoundedWindow::Global => out.push((i64::MIN, i64::MAX)),
        });
        out
    }

    #[test]
    fn assigns_standard_windows() {
        let fixed = WindowFn::fixed(Duration::from_millis(10));
        assert_eq!(windows(fixed, 25), [(20, 30)]);
        assert_eq!(windows(fixed, -1), [(-10, 0)]);
        let sliding = WindowFn::sliding(Duration::from_millis(10), Duration::from_millis(5));
        assert_eq!(windows(sliding, 7), [(5, 15), (0, 10)]);
        assert_eq!(
            windows(WindowFn::sessions(Duration::from_millis(3)), 7),
            [(7, 10)]
        );
    }

    #[test]
    fn proto_round_trip() {
        for wf in [
            WindowFn::Global,
            WindowFn::fixed(Duration::from_secs(60)),
            WindowFn::sliding(Duration::from_millis(1500), Duration::from_millis(500)),
            WindowFn::sessions(Duration::from_secs(600)),
        ] {
            assert_eq!(WindowFn::from_proto(&wf.to_proto()).unwrap(), wf);
        }
    }

    #[test]
    fn side_input_windows() {
        let main = interval(20, 30);
        let fixed = WindowFn::fixed(Duration::from_millis(100));
        assert_eq!(fixed.side_input_window(&main).unwrap(), interval(0, 100));
        assert_eq!(
            WindowFn::Global.side_input_window(&main).unwrap(),
            BoundedWindow::Global
        );
    }
}
