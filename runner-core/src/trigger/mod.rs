//! Beam triggers: the [`Trigger`] tree a windowing strategy carries, its
//! conversion from and to the `Trigger` proto, and the state machine that
//! decides, per (key, window), when a pane fires.
//!
//! The state machine follows Beam's `TriggerStateMachine` semantics: every
//! node of the tree has a *finished* bit and a little state (an element
//! count, a processing-time deadline); [`TriggerState::on_element`],
//! [`TriggerState::on_merge`], [`TriggerState::should_fire`] and
//! [`TriggerState::on_fire`] walk the tree.
//!
//! ```
//! use oxbeam_runner_core::trigger::Trigger;
//! let t = Trigger::AfterWatermark {
//!     early: Some(Box::new(Trigger::ElementCount(2))),
//!     late: Some(Box::new(Trigger::ElementCount(1))),
//! };
//! assert_eq!(Trigger::from_proto(&t.to_proto()).unwrap(), t);
//! ```

mod proto;
mod state;

pub use state::{TriggerContext, TriggerState};

use std::fmt;

/// A transformation of a processing time, applied in order by
/// [`Trigger::AfterProcessingTime`] to the arrival time of the first element
/// of a pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampTransform {
    /// Add `delay_ms`.
    Delay {
        /// Milliseconds to add.
        delay_ms: i64,
    },
    /// Round up to the next `period_ms` boundary shifted by `offset_ms`
    /// (a time already on a boundary is kept).
    AlignTo {
        /// Period of the boundaries.
        period_ms: i64,
        /// Offset of the boundaries.
        offset_ms: i64,
    },
}

impl TimestampTransform {
    /// Applies the transform to `millis`.
    pub fn apply(&self, millis: i64) -> i64 {
        match *self {
            TimestampTransform::Delay { delay_ms } => millis.saturating_add(delay_ms),
            TimestampTransform::AlignTo {
                period_ms,
                offset_ms,
            } => {
                if period_ms <= 0 {
                    return millis;
                }
                // Beam: the next boundary at or after the time.
                let rem = (millis - offset_ms).rem_euclid(period_ms);
                if rem == 0 {
                    millis
                } else {
                    millis.saturating_add(period_ms - rem)
                }
            }
        }
    }
}

/// A Beam trigger: when a window's buffered data is emitted as a pane.
///
/// One variant per message of Beam's `Trigger` proto.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Trigger {
    /// Fires once when the watermark passes the end of the window, then for
    /// every late element (Beam's default trigger:
    /// `Repeatedly(AfterWatermark)`).
    #[default]
    Default,
    /// Never fires; only the final pane at window expiry is emitted.
    Never,
    /// Fires after every element (`Repeatedly(AfterCount(1))`).
    Always,
    /// Fires when the watermark passes the end of the window; optionally
    /// repeatedly before (early) and after (late) that.
    AfterWatermark {
        /// Trigger of speculative panes, repeated until the watermark.
        early: Option<Box<Trigger>>,
        /// Trigger of late panes, repeated after the on-time pane.
        late: Option<Box<Trigger>>,
    },
    /// Fires when processing time passes the arrival time of the first
    /// element of the pane, transformed in order.
    AfterProcessingTime {
        /// Transforms of the arrival time.
        transforms: Vec<TimestampTransform>,
    },
    /// Fires when synchronized processing time passes the first element's
    /// arrival; on one machine it is processing time itself.
    AfterSynchronizedProcessingTime,
    /// Fires once at least this many elements arrived in the pane.
    ElementCount(i64),
    /// Fires once every subtrigger fired.
    AfterAll(Vec<Trigger>),
    /// Fires once any subtrigger fires.
    AfterAny(Vec<Trigger>),
    /// Runs the subtriggers one after another; fires whenever the current
    /// one fires.
    AfterEach(Vec<Trigger>),
    /// Fires as `main`; finishes as soon as `finally` fires.
    OrFinally {
        /// The trigger that fires.
        main: Box<Trigger>,
        /// The trigger that ends it.
        finally: Box<Trigger>,
    },
    /// Fires whenever the subtrigger fires, restarting it each time.
    Repeatedly(Box<Trigger>),
}

impl Trigger {
    /// Whether the trigger is Beam's default (no special handling needed by
    /// a grouping: one on-time pane per window, one per late element).
    pub fn is_default(&self) -> bool {
        matches!(self, Trigger::Default)
    }

    /// Whether the trigger fires when the watermark passes the end of the
    /// window, data or not (Beam Python's `has_ontime_pane`). Beam Python's
    /// runners keep a window's output-time hold across the panes before it.
    pub fn has_on_time_pane(&self) -> bool {
        match self {
            Trigger::Default | Trigger::AfterWatermark { .. } => true,
            Trigger::Repeatedly(t) => t.has_on_time_pane(),
            Trigger::AfterAll(s) | Trigger::AfterAny(s) | Trigger::AfterEach(s) => {
                s.iter().any(Trigger::has_on_time_pane)
            }
            Trigger::OrFinally { main, finally } => {
                main.has_on_time_pane() || finally.has_on_time_pane()
            }
            Trigger::Never
            | Trigger::Always
            | Trigger::AfterProcessingTime { .. }
            | Trigger::AfterSynchronizedProcessingTime
            | Trigger::ElementCount(_) => false,
        }
    }

    /// Whether the trigger can finish before the window expires, closing
    /// the window to later data (Beam's `mayFinish`).
    pub fn may_finish(&self) -> bool {
        match self {
            Trigger::Default | Trigger::Never | Trigger::Always | Trigger::Repeatedly(_) => false,
            Trigger::AfterWatermark { late, .. } => late.is_none(),
            Trigger::AfterProcessingTime { .. }
            | Trigger::AfterSynchronizedProcessingTime
            | Trigger::ElementCount(_) => true,
            Trigger::AfterAll(s) => s.iter().all(Trigger::may_finish),
            Trigger::AfterAny(s) => s.iter().any(Trigger::may_finish),
            Trigger::AfterEach(s) => s.iter().all(Trigger::may_finish),
            Trigger::OrFinally { main, finally } => main.may_finish() || finally.may_finish(),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, name: &str, s: &[Trigger]) -> fmt::Result {
            write!(f, "{name}(")?;
            for (i, t) in s.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{t}")?;
            }
            write!(f, ")")
        }
        match self {
            Trigger::Default => write!(f, "Default"),
            Trigger::Never => write!(f, "Never"),
            Trigger::Always => write!(f, "Always"),
            Trigger::AfterWatermark { early, late } => {
                write!(f, "AfterWatermark")?;
                if let Some(e) = early {
                    write!(f, ".early({e})")?;
                }
                if let Some(l) = late {
                    write!(f, ".late({l})")?;
                }
                Ok(())
            }
            Trigger::AfterProcessingTime { transforms } => {
                write!(f, "AfterProcessingTime")?;
                for t in transforms {
                    match t {
                        TimestampTransform::Delay { delay_ms } => {
                            write!(f, ".delay({delay_ms}ms)")?
                        }
                        TimestampTransform::AlignTo {
                            period_ms,
                            offset_ms,
                        } => write!(f, ".align({period_ms}ms, {offset_ms}ms)")?,
                    }
                }
                Ok(())
            }
            Trigger::AfterSynchronizedProcessingTime => {
                write!(f, "AfterSynchronizedProcessingTime")
            }
            Trigger::ElementCount(n) => write!(f, "AfterCount({n})"),
            Trigger::AfterAll(s) => list(f, "AfterAll", s),
            Trigger::AfterAny(s) => list(f, "AfterAny", s),
            Trigger::AfterEach(s) => list(f, "AfterEach", s),
            Trigger::OrFinally { main, finally } => write!(f, "{main}.orFinally({finally})"),
            Trigger::Repeatedly(t) => write!(f, "Repeatedly({t})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rounds_up_to_the_next_boundary() {
        let a = TimestampTransform::AlignTo {
            period_ms: 10,
            offset_ms: 3,
        };
        assert_eq!(a.apply(3), 3);
        assert_eq!(a.apply(4), 13);
        assert_eq!(a.apply(-8), -7);
        assert_eq!(TimestampTransform::Delay { delay_ms: 5 }.apply(1), 6);
    }

    #[test]
    fn which_triggers_may_finish() {
        let count = || Trigger::ElementCount(1);
        assert!(count().may_finish());
        assert!(!Trigger::Repeatedly(Box::new(count())).may_finish());
        assert!(!Trigger::Default.may_finish());
        assert!(
            Trigger::AfterWatermark {
                early: Some(Box::new(count())),
                late: None
            }
            .may_finish()
        );
        assert!(
            !Trigger::AfterWatermark {
                early: None,
                late: Some(Box::new(count()))
            }
            .may_finish()
        );
        assert!(
            Trigger::OrFinally {
                main: Box::new(Trigger::Repeatedly(Box::new(count()))),
                finally: Box::new(count()),
            }
            .may_finish()
        );
        assert_eq!(
            Trigger::AfterAny(vec![Trigger::Never, count()]).to_string(),
            "AfterAny(Never, AfterCount(1))"
        );
    }
}
