//! Windowing strategies in Oxbeam's own terms: how a PCollection is windowed
//! and what a grouping emits for a window.

use std::fmt;

use oxbeam_model::window::{PaneInfo, PaneTiming};

use crate::trigger::Trigger;

/// How elements are assigned to windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowFn {
    /// Everything in the single global window.
    Global,
    /// Back-to-back windows of `size_ms`, shifted by `offset_ms`.
    Fixed {
        /// Window length.
        size_ms: i64,
        /// Start of a window, modulo the size.
        offset_ms: i64,
    },
    /// Windows of `size_ms` starting every `period_ms`.
    Sliding {
        /// Window length.
        size_ms: i64,
        /// Distance between window starts.
        period_ms: i64,
        /// Start of a window, modulo the period.
        offset_ms: i64,
    },
    /// Per-key sessions: `[t, t + gap)` windows merged when they overlap.
    Sessions {
        /// Gap of inactivity that ends a session.
        gap_ms: i64,
    },
    /// A window fn the runner does not interpret.
    Custom {
        /// Its URN.
        urn: String,
    },
}

impl fmt::Display for WindowFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowFn::Global => write!(f, "global"),
            WindowFn::Fixed {
                size_ms,
                offset_ms: 0,
            } => write!(f, "fixed({size_ms}ms)"),
            WindowFn::Fixed { size_ms, offset_ms } => {
                write!(f, "fixed({size_ms}ms, offset {offset_ms}ms)")
            }
            WindowFn::Sliding {
                size_ms,
                period_ms,
                offset_ms: 0,
            } => {
                write!(f, "sliding({size_ms}ms every {period_ms}ms)")
            }
            WindowFn::Sliding {
                size_ms,
                period_ms,
                offset_ms,
            } => {
                write!(
                    f,
                    "sliding({size_ms}ms every {period_ms}ms, offset {offset_ms}ms)"
                )
            }
            WindowFn::Sessions { gap_ms } => write!(f, "sessions(gap {gap_ms}ms)"),
            WindowFn::Custom { urn } => write!(f, "custom({urn})"),
        }
    }
}

/// Which timestamp grouped output gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputTime {
    /// The window's max timestamp (Beam's default).
    #[default]
    EndOfWindow,
    /// The earliest input timestamp of the pane.
    EarliestInPane,
    /// The latest input timestamp of the pane.
    LatestInPane,
}

/// Whether later panes repeat earlier data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccumulationMode {
    /// Each pane holds only new data.
    #[default]
    Discarding,
    /// Each pane holds all data so far.
    Accumulating,
    /// Accumulating, with retractions of earlier panes.
    Retracting,
}

/// Whether the final pane at window expiry is emitted when it has no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClosingBehavior {
    /// Always emit a final pane (Beam `EMIT_ALWAYS`).
    EmitAlways,
    /// Emit it only if it holds new data (Beam `EMIT_IF_NONEMPTY`, the
    /// default when unspecified, as in Beam Java).
    #[default]
    EmitIfNonEmpty,
}

/// Whether the on-time pane is emitted when it has no new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnTimeBehavior {
    /// Always emit the on-time pane (Beam `FIRE_ALWAYS`, the default).
    #[default]
    FireAlways,
    /// Emit it only if it holds new data (Beam `FIRE_IF_NONEMPTY`).
    FireIfNonEmpty,
}

/// Whose rules decide which panes a grouping emits. Beam's runners differ
/// here, and the windowing strategy's proto cannot tell: Beam Python writes
/// `EMIT_ALWAYS` and `FIRE_ALWAYS` and its runners ignore both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaneRules {
    /// Beam Java's ReduceFnRunner (and the Java runners: Flink, Dataflow):
    /// the closing and on-time behaviours are honoured, and a window's
    /// buffered data is emitted in a final pane when it expires even if its
    /// trigger never fired.
    #[default]
    Java,
    /// Beam Python's runners (GeneralTriggerDriver; Prism does the same): a
    /// pane is emitted exactly when the trigger fires, empty or not, and
    /// nothing at expiry — data of a window whose trigger never fired is
    /// dropped. For strategies whose environment is a Python SDK's.
    Python,
}

/// The encoding of the windows of a PCollection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowCoderKind {
    /// `beam:coder:global_window:v1` (zero bytes).
    Global,
    /// `beam:coder:interval_window:v1`.
    Interval,
    /// Something else; the runner cannot read these windows.
    Other,
}

/// A PCollection's windowing strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowingStrategy {
    /// Window assignment.
    pub window_fn: WindowFn,
    /// Whether windows merge (sessions).
    pub merging: bool,
    /// Id of the window coder in the pipeline.
    pub window_coder_id: String,
    /// How windows are encoded.
    pub window_coder: WindowCoderKind,
    /// Timestamp of grouped output.
    pub output_time: OutputTime,
    /// Accumulation mode of panes.
    pub accumulation: AccumulationMode,
    /// Lateness (ms) still accepted after the watermark passes a window.
    pub allowed_lateness_ms: i64,
    /// When panes fire.
    pub trigger: Trigger,
    /// Whether an empty final pane is emitted at expiry.
    pub closing_behavior: ClosingBehavior,
    /// Whether an empty on-time pane is emitted.
    pub on_time_behavior: OnTimeBehavior,
    /// Which runners' pane rules apply (see [`PaneRules`]).
    pub pane_rules: PaneRules,
}

impl WindowingStrategy {
    /// Whether two strategies window identically (trigger and lateness aside):
    /// the condition for flattening PCollections together.
    pub fn compatible_with(&self, other: &WindowingStrategy) -> bool {
        self.window_fn == other.window_fn && self.merging == other.merging
    }

    /// Whether a grouping with this strategy emits exactly one pane per
    /// (key, window) in batch, as the plain shuffle does: the default
    /// trigger, or `Always` (Beam's Reshuffle) whose per-element firings
    /// collapse into one when all input is present, with discarding panes.
    pub fn is_simple_batch_grouping(&self) -> bool {
        matches!(self.trigger, Trigger::Default | Trigger::Always)
            && self.accumulation == AccumulationMode::Discarding
    }

    /// The strategy a batch grouping applies. Beam Python's runners fire a
    /// `Never` trigger once in batch, as `Always` ("for batch, we should
    /// always fire once"); Java's fire it at expiry, which batch reaches too.
    pub fn for_batch(&self) -> WindowingStrategy {
        let mut strategy = self.clone();
        if self.pane_rules == PaneRules::Python && self.trigger == Trigger::Never {
            strategy.trigger = Trigger::Always;
        }
        strategy
    }

    /// The pane of each output of a simple batch grouping (one pane per key
    /// and window): on time, first and last under Java's rules. Beam
    /// Python's runners give that only for the global window with the
    /// default windowing or `Always` (their BatchGlobalTriggerDriver);
    /// elsewhere their trigger driver fires `Always` early, on the input
    /// watermark, and the default trigger on time but never finished, so
    /// neither pane is the last.
    pub fn batch_pane(&self) -> PaneInfo {
        let only = PaneInfo {
            timing: PaneTiming::OnTime,
            ..PaneInfo::NO_FIRING
        };
        let whole_global = self.window_fn == WindowFn::Global
            && match self.trigger {
                Trigger::Always => true,
                Trigger::Default => {
                    self.output_time == OutputTime::EndOfWindow && self.allowed_lateness_ms == 0
                }
                _ => false,
            };
        if self.pane_rules == PaneRules::Java || whole_global {
            return only;
        }
        match self.trigger {
            Trigger::Always => PaneInfo {
                is_last: false,
                timing: PaneTiming::Early,
                on_time_index: -1,
                ..only
            },
            _ => PaneInfo {
                is_last: false,
                ..only
            },
        }
    }

    /// Whether combiners may be lifted in front of a grouping with this
    /// strategy: triggers that count elements must see each of them, and
    /// retractions need the grouped values, so only simple groupings qualify.
    pub fn allows_combiner_lifting(&self) -> bool {
        self.is_simple_batch_grouping()
    }
}

impl fmt::Display for WindowingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.window_fn)?;
        match self.output_time {
            OutputTime::EndOfWindow => {}
            OutputTime::EarliestInPane => write!(f, ", output time earliest")?,
            OutputTime::LatestInPane => write!(f, ", output time latest")?,
        }
        if !matches!(self.trigger, Trigger::Default | Trigger::Always) {
            write!(f, ", trigger {}", self.trigger)?;
        }
        match self.accumulation {
            AccumulationMode::Discarding => {}
            AccumulationMode::Accumulating => write!(f, ", accumulating")?,
            AccumulationMode::Retracting => write!(f, ", retracting")?,
        }
        Ok(())
    }
}
