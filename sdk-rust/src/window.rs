//! Window functions: how elements are assigned to windows of event time;
//! and triggers: when a GroupByKey emits a window's panes.
//!
//! [`Window`] is the whole windowing of a `WindowInto`, Beam-style:
//!
//! ```
//! use std::time::Duration;
//! use oxbeam::window::{AfterCount, AfterWatermark, Window, WindowFn};
//! let w = Window::into(WindowFn::fixed(Duration::from_secs(60)))
//!     .triggering(
//!         AfterWatermark::past_end_of_window()
//!             .with_early_firings(AfterCount::new(100))
//!             .with_late_firings(AfterCount::new(1)),
//!     )
//!     .with_allowed_lateness(Duration::from_secs(600))
//!     .accumulating_fired_panes();
//! assert!(w.to_proto().is_some());
//! ```
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

/// A Beam trigger: when a GroupByKey emits the data of a window as a pane.
///
/// Build one with the builders of this module ([`AfterWatermark`],
/// [`AfterProcessingTime`], [`AfterCount`], [`Repeatedly`], [`AfterEach`],
/// [`AfterFirst`] / [`AfterAny`], [`AfterAll`], [`Never`], [`Always`],
/// [`DefaultTrigger`]) and [`Trigger::or_finally`]; it is written into the
/// pipeline as Beam's `Trigger` proto.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Trigger {
    /// Once when the watermark passes the end of the window, then once per
    /// late element.
    #[default]
    Default,
    /// Never: only the final pane at window expiry.
    Never,
    /// After every element.
    Always,
    /// When the watermark passes the end of the window, with optional
    /// early and late firings.
    AfterWatermark {
        /// Fires speculative panes before the watermark (repeated).
        early: Option<Box<Trigger>>,
        /// Fires late panes after it (repeated).
        late: Option<Box<Trigger>>,
    },
    /// When processing time passes the arrival of the pane's first element
    /// plus `delay_ms`, aligned up to `align: (period_ms, offset_ms)`.
    AfterProcessingTime {
        /// Delay after the first element.
        delay_ms: i64,
        /// Alignment of the firing time, applied after the delay.
        align: Option<(i64, i64)>,
    },
    /// Once at least this many elements are in the pane.
    AfterCount(i64),
    /// Once all subtriggers fired.
    AfterAll(Vec<Trigger>),
    /// Once any subtrigger fires.
    AfterAny(Vec<Trigger>),
    /// The subtriggers in sequence.
    AfterEach(Vec<Trigger>),
    /// `main`, until `finally` fires.
    OrFinally(Box<Trigger>, Box<Trigger>),
    /// The subtrigger, restarted after every firing.
    Repeatedly(Box<Trigger>),
}

impl Trigger {
    /// Fires as `self` until `until` fires, then finishes (Beam's
    /// `orFinally`).
    pub fn or_finally(self, until: impl Into<Trigger>) -> Trigger {
        Trigger::OrFinally(Box::new(self), Box::new(until.into()))
    }

    /// Beam's `Trigger` proto.
    pub fn to_proto(&self) -> pb::Trigger {
        use pb::trigger as t;
        let boxed = |x: &Trigger| Box::new(x.to_proto());
        let list = |s: &[Trigger]| s.iter().map(Trigger::to_proto).collect();
        let trigger = match self {
            Trigger::Default => t::Trigger::Default(t::Default {}),
            Trigger::Never => t::Trigger::Never(t::Never {}),
            Trigger::Always => t::Trigger::Always(t::Always {}),
            Trigger::AfterWatermark { early, late } => {
                t::Trigger::AfterEndOfWindow(Box::new(t::AfterEndOfWindow {
                    early_firings: early.as_deref().map(boxed),
                    late_firings: late.as_deref().map(boxed),
                }))
            }
            Trigger::AfterProcessingTime { delay_ms, align } => {
                use pb::timestamp_transform::TimestampTransform as Tt;
                let mut transforms = Vec::new();
                if *delay_ms != 0 {
                    transforms.push(pb::TimestampTransform {
                        timestamp_transform: Some(Tt::Delay(pb::timestamp_transform::Delay {
                            delay_millis: *delay_ms,
                        })),
                    });
                }
                if let Some((period, offset)) = align {
                    transforms.push(pb::TimestampTransform {
                        timestamp_transform: Some(Tt::AlignTo(pb::timestamp_transform::AlignTo {
                            period: *period,
                            offset: *offset,
                        })),
                    });
                }
                t::Trigger::AfterProcessingTime(t::AfterProcessingTime {
                    timestamp_transforms: transforms,
                })
            }
            Trigger::AfterCount(n) => t::Trigger::ElementCount(t::ElementCount {
                element_count: i32::try_from(*n).unwrap_or(i32::MAX),
            }),
            Trigger::AfterAll(s) => t::Trigger::AfterAll(t::AfterAll {
                subtriggers: list(s),
            }),
            Trigger::AfterAny(s) => t::Trigger::AfterAny(t::AfterAny {
                subtriggers: list(s),
            }),
            Trigger::AfterEach(s) => t::Trigger::AfterEach(t::AfterEach {
                subtriggers: list(s),
            }),
            Trigger::OrFinally(main, until) => t::Trigger::OrFinally(Box::new(t::OrFinally {
                main: Some(boxed(main)),
                finally: Some(boxed(until)),
            })),
            Trigger::Repeatedly(x) => t::Trigger::Repeat(Box::new(t::Repeat {
                subtrigger: Some(boxed(x)),
            })),
        };
        pb::Trigger {
            trigger: Some(trigger),
        }
    }
}

/// Beam's default trigger (`DefaultTrigger.of()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultTrigger;

/// A trigger that never fires: each window emits one pane at expiry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Never;

/// A trigger that fires after every element.
#[derive(Clone, Copy, Debug, Default)]
pub struct Always;

impl From<DefaultTrigger> for Trigger {
    fn from(_: DefaultTrigger) -> Self {
        Trigger::Default
    }
}

impl From<Never> for Trigger {
    fn from(_: Never) -> Self {
        Trigger::Never
    }
}

impl From<Always> for Trigger {
    fn from(_: Always) -> Self {
        Trigger::Always
    }
}

/// `AfterWatermark.pastEndOfWindow()`, with optional early and late firings.
#[derive(Clone, Debug, Default)]
pub struct AfterWatermark {
    early: Option<Trigger>,
    late: Option<Trigger>,
}

impl AfterWatermark {
    /// Fires when the watermark passes the end of the window.
    pub fn past_end_of_window() -> Self {
        AfterWatermark::default()
    }

    /// Also fires speculative panes whenever `early` fires before then.
    pub fn with_early_firings(self, early: impl Into<Trigger>) -> Self {
        AfterWatermark {
            early: Some(early.into()),
            ..self
        }
    }

    /// Also fires late panes whenever `late` fires after then.
    pub fn with_late_firings(self, late: impl Into<Trigger>) -> Self {
        AfterWatermark {
            late: Some(late.into()),
            ..self
        }
    }

    /// See [`Trigger::or_finally`].
    pub fn or_finally(self, until: impl Into<Trigger>) -> Trigger {
        Trigger::from(self).or_finally(until)
    }
}

impl From<AfterWatermark> for Trigger {
    fn from(w: AfterWatermark) -> Self {
        Trigger::AfterWatermark {
            early: w.early.map(Box::new),
            late: w.late.map(Box::new),
        }
    }
}

/// `AfterProcessingTime.pastFirstElementInPane()`, with a delay and an
/// alignment.
#[derive(Clone, Copy, Debug, Default)]
pub struct AfterProcessingTime {
    delay_ms: i64,
    align: Option<(i64, i64)>,
}

impl AfterProcessingTime {
    /// Fires once processing time passes the arrival of the pane's first
    /// element.
    pub fn past_first_element_in_pane() -> Self {
        AfterProcessingTime::default()
    }

    /// Waits `delay` more.
    pub fn plus_delay_of(self, delay: Duration) -> Self {
        AfterProcessingTime {
            delay_ms: self
                .delay_ms
                .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            ..self
        }
    }

    /// Rounds the firing time up to a multiple of `period` (after the delay).
    pub fn aligned_to(self, period: Duration, offset: Duration) -> Self {
        AfterProcessingTime {
            align: Some((
                millis(period),
                i64::try_from(offset.as_millis()).unwrap_or(0),
            )),
            ..self
        }
    }

    /// See [`Trigger::or_finally`].
    pub fn or_finally(self, until: impl Into<Trigger>) -> Trigger {
        Trigger::from(self).or_finally(until)
    }
}

impl From<AfterProcessingTime> for Trigger {
    fn from(t: AfterProcessingTime) -> Self {
        Trigger::AfterProcessingTime {
            delay_ms: t.delay_ms,
            align: t.align,
        }
    }
}

/// `AfterPane.elementCountAtLeast(n)`.
#[derive(Clone, Copy, Debug)]
pub struct AfterCount(pub i64);

impl AfterCount {
    /// Fires once the pane has at least `n` elements.
    pub fn new(n: i64) -> Self {
        AfterCount(n)
    }
}

impl From<AfterCount> for Trigger {
    fn from(c: AfterCount) -> Self {
        Trigger::AfterCount(c.0)
    }
}

/// `Repeatedly.forever(t)`.
#[derive(Clone, Copy, Debug)]
pub struct Repeatedly;

impl Repeatedly {
    /// Fires whenever `t` fires, restarting it after each firing.
    pub fn forever(t: impl Into<Trigger>) -> Trigger {
        Trigger::Repeatedly(Box::new(t.into()))
    }
}

/// `AfterEach.inOrder(..)`.
#[derive(Clone, Copy, Debug)]
pub struct AfterEach;

impl AfterEach {
    /// Runs `triggers` one after another.
    pub fn in_order(triggers: impl IntoIterator<Item = Trigger>) -> Trigger {
        Trigger::AfterEach(triggers.into_iter().collect())
    }
}

/// `AfterFirst.of(..)` (Python: `AfterAny`).
#[derive(Clone, Copy, Debug)]
pub struct AfterFirst;

impl AfterFirst {
    /// Fires once any of `triggers` fires.
    pub fn of(triggers: impl IntoIterator<Item = Trigger>) -> Trigger {
        Trigger::AfterAny(triggers.into_iter().collect())
    }
}

/// Python's name for [`AfterFirst`].
pub type AfterAny = AfterFirst;

/// `AfterAll.of(..)`.
#[derive(Clone, Copy, Debug)]
pub struct AfterAll;

impl AfterAll {
    /// Fires once every one of `triggers` fired.
    pub fn of(triggers: impl IntoIterator<Item = Trigger>) -> Trigger {
        Trigger::AfterAll(triggers.into_iter().collect())
    }
}

/// Whether later panes of a window repeat the data of earlier ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AccumulationMode {
    /// Each pane holds the data since the previous pane (the default).
    #[default]
    Discarding,
    /// Each pane holds all data of the window so far.
    Accumulating,
    /// Accumulating, and each pane after the first is preceded by the
    /// retraction of the previous one (`PaneInfo::is_retraction`).
    Retracting,
}

/// Which timestamp a GroupByKey gives a pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TimestampCombiner {
    /// The window's max timestamp (the default).
    #[default]
    EndOfWindow,
    /// The earliest timestamp of the pane's input.
    Earliest,
    /// The latest timestamp of the pane's input.
    Latest,
}

/// The windowing of a `WindowInto`: a window fn, and when and how the
/// GroupByKeys downstream emit panes. Beam's `Window.into(..)`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Window {
    window_fn: WindowFn,
    trigger: Option<Trigger>,
    accumulation: AccumulationMode,
    allowed_lateness_ms: i64,
    timestamp_combiner: TimestampCombiner,
}

impl From<WindowFn> for Window {
    fn from(window_fn: WindowFn) -> Self {
        Window::into(window_fn)
    }
}

impl Window {
    /// Windows by `window_fn`, with the default trigger.
    pub fn into(window_fn: WindowFn) -> Self {
        Window {
            window_fn,
            ..Window::default()
        }
    }

    /// The window fn.
    pub fn window_fn(&self) -> WindowFn {
        self.window_fn
    }

    /// Emits panes when `trigger` fires.
    pub fn triggering(self, trigger: impl Into<Trigger>) -> Self {
        Window {
            trigger: Some(trigger.into()),
            ..self
        }
    }

    /// Each pane holds all data of its window so far.
    pub fn accumulating_fired_panes(self) -> Self {
        Window {
            accumulation: AccumulationMode::Accumulating,
            ..self
        }
    }

    /// Each pane holds only the data since the previous one (the default).
    pub fn discarding_fired_panes(self) -> Self {
        Window {
            accumulation: AccumulationMode::Discarding,
            ..self
        }
    }

    /// Accumulating panes, each after the first preceded by a retraction of
    /// the previous pane (Oxbeam; Beam SDK harnesses cannot run consumers).
    pub fn retracting_fired_panes(self) -> Self {
        Window {
            accumulation: AccumulationMode::Retracting,
            ..self
        }
    }

    /// Accepts data up to `lateness` after the watermark passed a window.
    pub fn with_allowed_lateness(self, lateness: Duration) -> Self {
        Window {
            allowed_lateness_ms: i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX),
            ..self
        }
    }

    /// Gives panes the timestamp chosen by `combiner`.
    pub fn with_timestamp_combiner(self, combiner: TimestampCombiner) -> Self {
        Window {
            timestamp_combiner: combiner,
            ..self
        }
    }

    /// The `WindowingStrategy` proto of the windowed PCollection, or `None`
    /// when everything is default (the SDK then shares the plain strategy of
    /// the window fn). The window coder id is left empty for the pipeline to
    /// fill.
    pub fn to_proto(&self) -> Option<pb::WindowingStrategy> {
        if self.trigger.is_none()
            && self.accumulation == AccumulationMode::Discarding
            && self.allowed_lateness_ms == 0
            && self.timestamp_combiner == TimestampCombiner::EndOfWindow
        {
            return None;
        }
        let wf = self.window_fn;
        Some(pb::WindowingStrategy {
            window_fn: Some(wf.to_proto()),
            merge_status: if wf.is_merging() {
                pb::merge_status::Enum::NeedsMerge
            } else {
                pb::merge_status::Enum::NonMerging
            } as i32,
            window_coder_id: String::new(),
            trigger: Some(self.trigger.clone().unwrap_or_default().to_proto()),
            accumulation_mode: match self.accumulation {
                AccumulationMode::Discarding => pb::accumulation_mode::Enum::Discarding,
                AccumulationMode::Accumulating => pb::accumulation_mode::Enum::Accumulating,
                AccumulationMode::Retracting => pb::accumulation_mode::Enum::Retracting,
            } as i32,
            output_time: match self.timestamp_combiner {
                TimestampCombiner::EndOfWindow => pb::output_time::Enum::EndOfWindow,
                TimestampCombiner::Earliest => pb::output_time::Enum::EarliestInPane,
                TimestampCombiner::Latest => pb::output_time::Enum::LatestInPane,
            } as i32,
            // Beam Java's defaults.
            closing_behavior: pb::closing_behavior::Enum::EmitIfNonempty as i32,
            allowed_lateness: self.allowed_lateness_ms,
            on_time_behavior: pb::on_time_behavior::Enum::FireAlways as i32,
            assigns_to_one_window: !matches!(wf, WindowFn::Sliding { .. }),
            environment_id: String::new(),
        })
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

/// The trigger Beam gives the output of a GroupByKey whose input fires by
/// `t` (Java's `Trigger.getContinuationTrigger`): downstream groupings fire
/// as soon as upstream panes arrive instead of waiting again. Element counts
/// become 1, processing-time delays become synchronized processing time,
/// AfterEach becomes Repeatedly(AfterAny(continuations)); composite triggers
/// continue their subtriggers; Default, Never, Always and synchronized
/// processing time continue as themselves.
pub(crate) fn continuation_trigger(t: &pb::Trigger) -> pb::Trigger {
    use pb::trigger as k;
    let cont = |x: &pb::Trigger| Box::new(continuation_trigger(x));
    let list = |s: &[pb::Trigger]| s.iter().map(continuation_trigger).collect::<Vec<_>>();
    let trigger = match &t.trigger {
        None => None,
        Some(k::Trigger::ElementCount(_)) => Some(k::Trigger::ElementCount(k::ElementCount {
            element_count: 1,
        })),
        Some(k::Trigger::AfterProcessingTime(_)) => Some(
            k::Trigger::AfterSynchronizedProcessingTime(k::AfterSynchronizedProcessingTime {}),
        ),
        Some(k::Trigger::AfterAll(a)) => Some(k::Trigger::AfterAll(k::AfterAll {
            subtriggers: list(&a.subtriggers),
        })),
        Some(k::Trigger::AfterAny(a)) => Some(k::Trigger::AfterAny(k::AfterAny {
            subtriggers: list(&a.subtriggers),
        })),
        Some(k::Trigger::AfterEach(a)) => Some(k::Trigger::Repeat(Box::new(k::Repeat {
            subtrigger: Some(Box::new(pb::Trigger {
                trigger: Some(k::Trigger::AfterAny(k::AfterAny {
                    subtriggers: list(&a.subtriggers),
                })),
            })),
        }))),
        Some(k::Trigger::AfterEndOfWindow(w)) => Some(k::Trigger::AfterEndOfWindow(Box::new(
            k::AfterEndOfWindow {
                early_firings: w.early_firings.as_deref().map(cont),
                late_firings: w.late_firings.as_deref().map(cont),
            },
        ))),
        Some(k::Trigger::OrFinally(o)) => Some(k::Trigger::OrFinally(Box::new(k::OrFinally {
            main: o.main.as_deref().map(cont),
            finally: o.finally.as_deref().map(cont),
        }))),
        Some(k::Trigger::Repeat(r)) => Some(k::Trigger::Repeat(Box::new(k::Repeat {
            subtrigger: r.subtrigger.as_deref().map(cont),
        }))),
        Some(
            same @ (k::Trigger::AfterSynchronizedProcessingTime(_)
            | k::Trigger::Always(_)
            | k::Trigger::Default(_)
            | k::Trigger::Never(_)),
        ) => Some(same.clone()),
    };
    pb::Trigger { trigger }
}

#[cfg(test)]
mod continuation_tests {
    use super::*;

    #[test]
    fn continuations_follow_beam() {
        let c = |t: Trigger| continuation_trigger(&t.to_proto());
        // Early counts continue as counts of one; late firings continue too.
        assert_eq!(
            c(Trigger::AfterWatermark {
                early: Some(Box::new(Trigger::AfterCount(5))),
                late: Some(Box::new(Trigger::AfterCount(2))),
            }),
            Trigger::AfterWatermark {
                early: Some(Box::new(Trigger::AfterCount(1))),
                late: Some(Box::new(Trigger::AfterCount(1))),
            }
            .to_proto()
        );
        assert_eq!(
            c(Trigger::Repeatedly(Box::new(Trigger::AfterCount(3)))),
            Trigger::Repeatedly(Box::new(Trigger::AfterCount(1))).to_proto()
        );
        // AfterEach continues as Repeatedly(AfterAny(continuations)).
        assert_eq!(
            c(Trigger::AfterEach(vec![
                Trigger::AfterCount(2),
                Trigger::AfterCount(4)
            ])),
            Trigger::Repeatedly(Box::new(Trigger::AfterAny(vec![
                Trigger::AfterCount(1),
                Trigger::AfterCount(1)
            ])))
            .to_proto()
        );
        // Processing-time delays become synchronized processing time.
        let sync = c(Trigger::AfterProcessingTime {
            delay_ms: 1000,
            align: None,
        });
        assert!(matches!(
            sync.trigger,
            Some(pb::trigger::Trigger::AfterSynchronizedProcessingTime(_))
        ));
        for same in [Trigger::Default, Trigger::Never, Trigger::Always] {
            assert_eq!(c(same.clone()), same.to_proto());
        }
        assert_eq!(
            c(Trigger::OrFinally(
                Box::new(Trigger::Repeatedly(Box::new(Trigger::AfterCount(2)))),
                Box::new(Trigger::AfterCount(9))
            )),
            Trigger::OrFinally(
                Box::new(Trigger::Repeatedly(Box::new(Trigger::AfterCount(1)))),
                Box::new(Trigger::AfterCount(1))
            )
            .to_proto()
        );
    }
}
