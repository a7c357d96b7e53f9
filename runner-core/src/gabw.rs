//! [`GroupAlsoByWindow`]: the runner side of a GroupByKey under a windowing
//! strategy with triggers — Beam's `ReduceFnRunner` over all keys of one
//! GroupByKey, engine independent.
//!
//! The engine feeds it elements ([`GroupAlsoByWindow::process`]) and moves
//! time forward ([`GroupAlsoByWindow::advance`]); it buffers encoded values
//! per (key, window), runs the trigger state machine, and emits
//! [`FiredPane`]s with Beam's pane info, output timestamps, accumulation
//! and garbage collection.
//!
//! Timing follows Beam: triggers are evaluated for the windows that received
//! elements when the engine next calls `advance` (as Beam evaluates them
//! after a bundle of elements of a key), with the watermark as it was while
//! the elements arrived; then the new watermark and processing time fire the
//! window's timers (end of window, expiry, processing-time triggers).
//! Batch is one `advance(+∞)` after all elements.
//!
//! ```
//! use oxbeam_model::window::{BoundedWindow, PaneTiming, Timestamp};
//! use oxbeam_runner_core::gabw::GroupAlsoByWindow;
//! use oxbeam_runner_core::trigger::Trigger;
//! use oxbeam_runner_core::{
//!     AccumulationMode, ClosingBehavior, OnTimeBehavior, OutputTime, PaneRules, WindowCoderKind,
//!     WindowFn, WindowingStrategy,
//! };
//! let strategy = WindowingStrategy {
//!     window_fn: WindowFn::Global,
//!     merging: false,
//!     window_coder_id: "w".into(),
//!     window_coder: WindowCoderKind::Global,
//!     output_time: OutputTime::EndOfWindow,
//!     accumulation: AccumulationMode::Accumulating,
//!     allowed_lateness_ms: 0,
//!     trigger: Trigger::Repeatedly(Box::new(Trigger::ElementCount(2))),
//!     closing_behavior: ClosingBehavior::EmitIfNonEmpty,
//!     on_time_behavior: OnTimeBehavior::FireAlways,
//!     pane_rules: PaneRules::Java,
//! };
//! let mut g = GroupAlsoByWindow::new(&strategy).unwrap();
//! let (mut out, t0) = (Vec::new(), Timestamp::from_millis(0));
//! for v in [b"a", b"b", b"c"] {
//!     g.process(b"k", BoundedWindow::Global, t0, v);
//!     g.advance(Timestamp::MIN, t0, &mut out);
//! }
//! assert_eq!(out.len(), 1); // [a, b], early
//! assert_eq!(out[0].values, vec![b"a".to_vec(), b"b".to_vec()]);
//! assert_eq!(out[0].pane.timing, PaneTiming::Early);
//! g.advance(Timestamp::MAX, t0, &mut out); // expiry: final pane [a, b, c]
//! assert_eq!(out[1].values.len(), 3);
//! assert!(out[1].pane.is_last);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oxbeam_model::coders::wire;
use oxbeam_model::window::{BoundedWindow, PaneInfo, PaneTiming, Timestamp};

use crate::error::{Error, Result};
use crate::merge_windows::WindowMap;
use crate::trigger::{Trigger, TriggerContext, TriggerState};
use crate::windowing::{
    AccumulationMode, ClosingBehavior, OnTimeBehavior, OutputTime, PaneRules, WindowCoderKind,
    WindowFn, WindowingStrategy,
};

/// One pane (or the retraction of one) of one key and window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredPane {
    /// The encoded key (nested, as it came in).
    pub key: Vec<u8>,
    /// The window.
    pub window: BoundedWindow,
    /// Output timestamp, by the strategy's timestamp combiner.
    pub timestamp: Timestamp,
    /// Pane info; `pane.is_retraction` equals [`FiredPane::retraction`].
    pub pane: PaneInfo,
    /// The values, each in its nested encoding, in arrival order.
    pub values: Vec<Vec<u8>>,
    /// Whether this retracts the previous pane of the window (RETRACTING).
    pub retraction: bool,
}

impl FiredPane {
    /// Appends the pane as a nested `windowed_value` of
    /// `KV<key, Iterable<value>>` — exactly what the batch GroupByKey emits:
    /// timestamp, one window, pane, key bytes, big-endian i32 count, values.
    pub fn encode(&self, window_coder: &WindowCoderKind, out: &mut Vec<u8>) {
        encode_grouped(
            &self.key,
            &self.window,
            self.timestamp,
            &self.pane,
            &self.values,
            window_coder,
            out,
        );
    }
}

/// Appends a nested `windowed_value` of `KV<key, Iterable<value>>` in one
/// window (see [`FiredPane::encode`]); `key` and `values` are nested
/// encodings.
pub fn encode_grouped(
    key: &[u8],
    window: &BoundedWindow,
    timestamp: Timestamp,
    pane: &PaneInfo,
    values: &[Vec<u8>],
    window_coder: &WindowCoderKind,
    out: &mut Vec<u8>,
) {
    wire::write_timestamp(out, timestamp);
    wire::write_i32_be(out, 1);
    if !matches!(window_coder, WindowCoderKind::Global) {
        wire::write_window(out, window);
    }
    wire::write_pane(out, pane);
    out.extend_from_slice(key);
    wire::write_i32_be(out, i32::try_from(values.len()).unwrap_or(i32::MAX));
    for v in values {
        out.extend_from_slice(v);
    }
}

/// What [`GroupAlsoByWindow::compact`] hands its merge function: `(key,
/// window, buffered values)` of each window to compact.
pub type CompactionBatch<'a> = [(&'a [u8], BoundedWindow, &'a [Vec<u8>])];

/// A pane emitted earlier, kept to retract it (RETRACTING).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Emitted {
    window: BoundedWindow,
    timestamp: Timestamp,
    values: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct WindowState {
    trigger: TriggerState,
    /// Buffered values (all since the last discard).
    values: Vec<Vec<u8>>,
    /// Elements added since the last pane (Beam's non-empty-pane tracking).
    new_elements: u64,
    /// Hold of the pending elements, combined by the timestamp combiner.
    element_hold: Option<Timestamp>,
    /// End-of-window or expiry hold.
    extra_hold: Option<Timestamp>,
    /// The last pane emitted (Beam's pane info tracker).
    last_pane: Option<PaneInfo>,
    /// Panes to retract before the next pane: this window's last one, and
    /// those of windows merged into it.
    to_retract: Vec<Emitted>,
    /// The trigger finished: new elements are dropped until expiry.
    closed: bool,
    /// What the grouping's indexes hold for this window (see
    /// `GroupAlsoByWindow::sync`).
    registered: Registered,
    /// Listed in `GroupAlsoByWindow::touched`.
    touched: bool,
}

/// A window's entries in the grouping's indexes of holds and timers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Registered {
    hold: Option<Timestamp>,
    deadline: Option<Timestamp>,
    timer: Option<Timestamp>,
}

type TimerIndex = BTreeSet<(Timestamp, Vec<u8>, BoundedWindow)>;

/// Moves one window's index entries from `before` to `now`.
fn update_index(
    holds: &mut BTreeMap<Timestamp, usize>,
    deadlines: &mut TimerIndex,
    timers: &mut TimerIndex,
    key: &[u8],
    window: BoundedWindow,
    before: Registered,
    now: Registered,
) {
    if before.hold != now.hold {
        if let Some(h) = before.hold
            && let Some(n) = holds.get_mut(&h)
        {
            *n -= 1;
            if *n == 0 {
                holds.remove(&h);
            }
        }
        if let Some(h) = now.hold {
            *holds.entry(h).or_default() += 1;
        }
    }
    for (index, old, new) in [
        (deadlines, before.deadline, now.deadline),
        (timers, before.timer, now.timer),
    ] {
        if old != new {
            if let Some(t) = old {
                index.remove(&(t, key.to_vec(), window));
            }
            if let Some(t) = new {
                index.insert((t, key.to_vec(), window));
            }
        }
    }
}

impl WindowState {
    fn new(trigger: &Trigger) -> Self {
        WindowState {
            trigger: TriggerState::new(trigger),
            values: Vec::new(),
            new_elements: 0,
            element_hold: None,
            extra_hold: None,
            last_pane: None,
            to_retract: Vec::new(),
            closed: false,
            registered: Registered::default(),
            touched: false,
        }
    }

    fn hold(&self) -> Option<Timestamp> {
        match (self.element_hold, self.extra_hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The runner-side GroupByKey of one windowing strategy, over all keys:
/// buffers, triggers, panes, holds, lateness and expiry. See the
/// [module docs](self).
#[derive(Debug)]
pub struct GroupAlsoByWindow {
    trigger: Trigger,
    merging: bool,
    /// Merging is decided by the caller (an SDK's window fn), through
    /// [`GroupAlsoByWindow::process_merging`].
    sdk_merging: bool,
    output_time: OutputTime,
    accumulation: AccumulationMode,
    allowed_lateness_ms: i64,
    closing: ClosingBehavior,
    on_time: OnTimeBehavior,
    pane_rules: PaneRules,
    keys: HashMap<Vec<u8>, BTreeMap<BoundedWindow, WindowState>>,
    /// (key, window) that received elements since the last `advance`.
    /// (Windows flag themselves with `WindowState::touched`, so each is
    /// listed once; merged-away windows may linger and are skipped.)
    touched: Vec<(Vec<u8>, BoundedWindow)>,
    /// Indexes, so that `advance` visits only the windows whose timers are
    /// due: the multiset of window holds, processing-time wake-ups, and each
    /// window's next event-time timer (end of window, then expiry), which
    /// fires once the watermark is past it.
    holds: BTreeMap<Timestamp, usize>,
    deadlines: TimerIndex,
    event_timers: TimerIndex,
    input_watermark: Timestamp,
    /// Output watermark as of the last `advance` (Beam decides "late for
    /// output" against it).
    output_watermark: Timestamp,
    processing_time: Timestamp,
    dropped: u64,
    /// Windows holding this many values are listed in `crowded` (see
    /// [`GroupAlsoByWindow::compact`]); `None`: no compaction.
    compact_at: Option<usize>,
    crowded: Vec<(Vec<u8>, BoundedWindow)>,
}

impl GroupAlsoByWindow {
    /// A grouping for `strategy`, with watermark and clock at
    /// [`Timestamp::MIN`].
    ///
    /// # Errors
    /// [`Error::NotImplemented`] for merging window fns other than sessions
    /// (custom merging fns run in SDKs).
    pub fn new(strategy: &WindowingStrategy) -> Result<Self> {
        if strategy.merging && !matches!(strategy.window_fn, WindowFn::Sessions { .. }) {
            return Err(Error::not_implemented(
                "GroupAlsoByWindow",
                format!("merging window fn {}", strategy.window_fn),
            ));
        }
        Self::build(strategy, false)
    }

    /// A grouping for a strategy whose merging window fn the runner does
    /// not know: its elements go through
    /// [`process_merging`](Self::process_merging), which has the SDK merge
    /// each key's windows (see [`crate::merge_windows`]).
    ///
    /// # Errors
    /// [`Error::NotImplemented`] unless the window fn merges and is not
    /// sessions.
    pub fn with_sdk_merging(strategy: &WindowingStrategy) -> Result<Self> {
        if !strategy.merging || matches!(strategy.window_fn, WindowFn::Sessions { .. }) {
            return Err(Error::not_implemented(
                "GroupAlsoByWindow",
                format!("SDK merging for window fn {}", strategy.window_fn),
            ));
        }
        Self::build(strategy, true)
    }

    fn build(strategy: &WindowingStrategy, sdk_merging: bool) -> Result<Self> {
        Ok(GroupAlsoByWindow {
            trigger: strategy.trigger.clone(),
            merging: strategy.merging,
            sdk_merging,
            output_time: strategy.output_time,
            accumulation: strategy.accumulation,
            allowed_lateness_ms: strategy.allowed_lateness_ms.max(0),
            closing: strategy.closing_behavior,
            on_time: strategy.on_time_behavior,
            pane_rules: strategy.pane_rules,
            keys: HashMap::new(),
            touched: Vec::new(),
            holds: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            event_timers: BTreeSet::new(),
            input_watermark: Timestamp::MIN,
            output_watermark: Timestamp::MIN,
            processing_time: Timestamp::MIN,
            dropped: 0,
            compact_at: None,
            crowded: Vec::new(),
        })
    }

    /// Its state — every buffered window with its trigger, panes and holds,
    /// the timer indexes, watermarks and clock — as bytes for a
    /// checkpoint; [`restore`](Self::restore) puts it back into a grouping
    /// built for the same windowing strategy.
    pub fn snapshot(&self) -> Vec<u8> {
        crate::snapshot::encode(&(
            &self.keys,
            &self.touched,
            &self.holds,
            &self.deadlines,
            &self.event_timers,
            (
                self.input_watermark,
                self.output_watermark,
                self.processing_time,
            ),
            self.dropped,
            &self.crowded,
        ))
    }

    /// Replaces its state with a [`snapshot`](Self::snapshot).
    ///
    /// # Errors
    /// [`Error::Internal`] if the bytes are not a snapshot; the grouping is
    /// unchanged.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<()> {
        type Snapshot = (
            HashMap<Vec<u8>, BTreeMap<BoundedWindow, WindowState>>,
            Vec<(Vec<u8>, BoundedWindow)>,
            BTreeMap<Timestamp, usize>,
            TimerIndex,
            TimerIndex,
            (Timestamp, Timestamp, Timestamp),
            u64,
            Vec<(Vec<u8>, BoundedWindow)>,
        );
        let (keys, touched, holds, deadlines, event_timers, times, dropped, crowded): Snapshot =
            crate::snapshot::decode("a GroupByKey's windows", snapshot).map_err(Error::Internal)?;
        self.keys = keys;
        self.touched = touched;
        self.holds = holds;
        self.deadlines = deadlines;
        self.event_timers = event_timers;
        (
            self.input_watermark,
            self.output_watermark,
            self.processing_time,
        ) = times;
        self.dropped = dropped;
        self.crowded = crowded;
        Ok(())
    }

    /// When `window` expires: its max timestamp plus the allowed lateness,
    /// at most the global window's max (Beam's garbage-collection time).
    fn gc_time(&self, window: &BoundedWindow) -> Timestamp {
        let max = window.max_timestamp();
        if max.millis()
            > Timestamp::GLOBAL_WINDOW_MAX
                .millis()
                .saturating_sub(self.allowed_lateness_ms)
        {
            Timestamp::GLOBAL_WINDOW_MAX
        } else {
            max.saturating_add_millis(self.allowed_lateness_ms)
        }
    }

    fn ctx(&self, window: &BoundedWindow) -> TriggerContext {
        TriggerContext {
            window_max: window.max_timestamp(),
            input_watermark: self.input_watermark,
            processing_time: self.processing_time,
            merging: self.merging,
            ready_at_deadline: self.pane_rules == PaneRules::Python,
        }
    }

    /// Adds one element: `value` (nested encoding) of `key` in `window`, at
    /// `timestamp`. It counts as arriving at the processing time of the last
    /// [`advance`](Self::advance). An element whose window has expired, or
    /// whose window's trigger has finished, is dropped and counted.
    pub fn process(
        &mut self,
        key: &[u8],
        window: BoundedWindow,
        timestamp: Timestamp,
        value: &[u8],
    ) {
        if self.gc_time(&window) < self.input_watermark {
            self.dropped += 1;
            return;
        }
        let window = if self.merging && !self.sdk_merging {
            self.merge_into(key, window)
        } else {
            window
        };
        let ctx = self.ctx(&window);
        let gc = self.gc_time(&window);
        let trigger = &self.trigger;
        let windows = match self.keys.get_mut(key) {
            Some(w) => w,
            None => self.keys.entry(key.to_vec()).or_default(),
        };
        let state = windows
            .entry(window)
            .or_insert_with(|| WindowState::new(trigger));
        if state.closed {
            self.dropped += 1;
            return;
        }
        state.new_elements += 1;
        // Hold the output watermark until the pane of this element fires
        // (Beam's WatermarkHold.addHolds).
        let element_hold = match self.output_time {
            OutputTime::EndOfWindow => window.max_timestamp(),
            OutputTime::EarliestInPane | OutputTime::LatestInPane => timestamp,
        };
        if element_hold >= self.output_watermark && window.max_timestamp() >= self.input_watermark {
            state.element_hold = Some(match (state.element_hold, self.output_time) {
                (None, _) => element_hold,
                (Some(h), OutputTime::LatestInPane) => h.max(element_hold),
                (Some(h), _) => h.min(element_hold),
            });
        } else if window.max_timestamp() >= self.input_watermark {
            state.extra_hold = Some(
                state
                    .extra_hold
                    .map_or(window.max_timestamp(), |h| h.min(window.max_timestamp())),
            );
        } else if gc >= self.input_watermark {
            state.extra_hold = Some(state.extra_hold.map_or(gc, |h| h.min(gc)));
        }
        state.values.push(value.to_vec());
        if self.compact_at == Some(state.values.len()) {
            self.crowded.push((key.to_vec(), window));
        }
        state.trigger.on_element(trigger, &ctx);
        if !state.touched {
            state.touched = true;
            self.touched.push((key.to_vec(), window));
        }
        self.sync(key, window);
    }

    /// Lists windows that buffer `threshold` values or more for
    /// [`compact`](Self::compact) (at least 2; `None` stops listing).
    ///
    /// Only for groupings whose values are only ever merged as a whole —
    /// the accumulators of a lifted combine (see
    /// [`crate::compaction`]) — since a pane then holds fewer values.
    pub fn set_compaction_threshold(&mut self, threshold: Option<usize>) {
        self.compact_at = threshold.map(|n| n.max(2));
        self.crowded.clear();
    }

    /// How many windows reached the compaction threshold since the last
    /// [`compact`](Self::compact).
    pub fn crowded_windows(&self) -> usize {
        self.crowded.len()
    }

    /// Replaces the buffered values of each window that reached the
    /// compaction threshold by one value: `merge` gets the windows as
    /// `(key, window, values)` and returns one merged value per window, in
    /// the same order. If `merge` fails, or returns the wrong number of
    /// values, every window keeps its values (nothing is lost) and the
    /// error is returned. Returns how many values were merged away.
    ///
    /// # Errors
    /// What `merge` returns; [`Error::Internal`] (converted into `E`) for
    /// a count mismatch.
    pub fn compact<E: From<Error>>(
        &mut self,
        merge: impl FnOnce(
            &[(&[u8], BoundedWindow, &[Vec<u8>])],
        ) -> std::result::Result<Vec<Vec<u8>>, E>,
    ) -> std::result::Result<usize, E> {
        let mut crowded = std::mem::take(&mut self.crowded);
        // Windows fired, merged away or compacted since they were listed
        // may be gone or small again.
        crowded.retain(|(k, w)| {
            self.keys
                .get(k)
                .and_then(|ws| ws.get(w))
                .is_some_and(|s| s.values.len() >= 2)
        });
        crowded.sort_unstable();
        crowded.dedup();
        if crowded.is_empty() {
            return Ok(0);
        }
        let merged = {
            let batch: Vec<_> = crowded
                .iter()
                .map(|(k, w)| (k.as_slice(), *w, self.keys[k][w].values.as_slice()))
                .collect();
            merge(&batch)
        };
        let merged = match merged {
            Ok(m) if m.len() == crowded.len() => m,
            failed => {
                let error = match failed {
                    Err(e) => e,
                    Ok(m) => E::from(Error::Internal(format!(
                        "compacting {} windows gave {} values",
                        crowded.len(),
                        m.len()
                    ))),
                };
                // Still due.
                self.crowded = crowded;
                return Err(error);
            }
        };
        let mut merged_away = 0;
        for ((k, w), value) in crowded.iter().zip(merged) {
            if let Some(state) = self.keys.get_mut(k).and_then(|ws| ws.get_mut(w)) {
                merged_away += state.values.len() - 1;
                state.values.clear();
                state.values.push(value);
            }
        }
        Ok(merged_away)
    }

    /// Brings the indexes up to date with the state of one window.
    fn sync(&mut self, key: &[u8], window: BoundedWindow) {
        let wm = self.input_watermark;
        let max = window.max_timestamp();
        let gc = self.gc_time(&window);
        let Some(state) = self.keys.get_mut(key).and_then(|w| w.get_mut(&window)) else {
            return;
        };
        let now = Registered {
            hold: state.hold(),
            deadline: if state.closed {
                None
            } else {
                state
                    .trigger
                    .next_processing_time(self.pane_rules == PaneRules::Python)
                    .map(Timestamp::from_millis)
            },
            // The end-of-window timer until the watermark passes it, then
            // the expiry timer; for a window kept past its expiry (Beam
            // Python's rules, see `on_event_time`), the end of the input.
            timer: Some(if max >= wm {
                max
            } else if gc >= wm || self.pane_rules == PaneRules::Java {
                gc
            } else {
                Timestamp::GLOBAL_WINDOW_MAX
            }),
        };
        let before = std::mem::replace(&mut state.registered, now);
        if before != now {
            update_index(
                &mut self.holds,
                &mut self.deadlines,
                &mut self.event_timers,
                key,
                window,
                before,
                now,
            );
        }
    }

    /// Removes a window and its index entries.
    fn remove_window(&mut self, key: &[u8], window: BoundedWindow) {
        let Some(windows) = self.keys.get_mut(key) else {
            return;
        };
        if let Some(s) = windows.remove(&window) {
            update_index(
                &mut self.holds,
                &mut self.deadlines,
                &mut self.event_timers,
                key,
                window,
                s.registered,
                Registered::default(),
            );
        }
        if windows.is_empty() {
            self.keys.remove(key);
        }
    }

    /// Merges `window` with the key's open windows it overlaps (sessions),
    /// merging their states, and returns the window the element goes to.
    fn merge_into(&mut self, key: &[u8], window: BoundedWindow) -> BoundedWindow {
        let BoundedWindow::Interval { start, end } = window else {
            return window;
        };
        let Some(windows) = self.keys.get_mut(key) else {
            return window;
        };
        // Grow the union until no further open window overlaps it.
        let (mut lo, mut hi) = (start, end);
        let mut merged: Vec<BoundedWindow> = Vec::new();
        loop {
            let before = merged.len();
            for (w, s) in windows.iter() {
                if let BoundedWindow::Interval { start: a, end: b } = *w
                    && !s.closed
                    && a < hi
                    && lo < b
                    && !merged.contains(w)
                {
                    lo = lo.min(a);
                    hi = hi.max(b);
                    merged.push(*w);
                }
            }
            if merged.len() == before {
                break;
            }
        }
        let result = BoundedWindow::Interval { start: lo, end: hi };
        self.merge_states(key, merged, result);
        result
    }

    /// Merges the states of `merged` (windows of `key`) into one state of
    /// window `result`: buffers, trigger states, holds, retractions.
    fn merge_states(&mut self, key: &[u8], mut merged: Vec<BoundedWindow>, result: BoundedWindow) {
        let result_gc = self.gc_time(&result);
        let Some(windows) = self.keys.get_mut(key) else {
            return;
        };
        if merged.is_empty() || (merged.len() == 1 && merged[0] == result) {
            return;
        }
        merged.sort();
        let sources: Vec<WindowState> = merged.iter().filter_map(|w| windows.remove(w)).collect();
        for (w, s) in merged.iter().zip(&sources) {
            update_index(
                &mut self.holds,
                &mut self.deadlines,
                &mut self.event_timers,
                key,
                *w,
                s.registered,
                Registered::default(),
            );
        }
        let ctx = TriggerContext {
            window_max: result.max_timestamp(),
            input_watermark: self.input_watermark,
            processing_time: self.processing_time,
            merging: true,
            ready_at_deadline: self.pane_rules == PaneRules::Python,
        };
        let trigger_states: Vec<&TriggerState> = sources.iter().map(|s| &s.trigger).collect();
        let trigger = TriggerState::merge(&self.trigger, &trigger_states, &ctx);
        let element_hold = {
            let holds = sources.iter().filter_map(|s| s.element_hold);
            match self.output_time {
                OutputTime::EndOfWindow => holds.min().map(|_| result.max_timestamp()),
                OutputTime::EarliestInPane => holds.min(),
                OutputTime::LatestInPane => holds.max(),
            }
        };
        let extra_hold = sources.iter().any(|s| s.extra_hold.is_some()).then(|| {
            if result.max_timestamp() >= self.input_watermark {
                result.max_timestamp()
            } else {
                result_gc
            }
        });
        // Beam clears the pane info of merged-away windows: the merged
        // window's next pane is its first.
        let last_pane = None;
        let mut state = WindowState {
            trigger,
            values: Vec::new(),
            new_elements: 0,
            element_hold,
            extra_hold,
            last_pane,
            to_retract: Vec::new(),
            closed: false,
            registered: Registered::default(),
            touched: true,
        };
        for s in sources {
            state.values.extend(s.values);
            state.new_elements += s.new_elements;
            state.to_retract.extend(s.to_retract);
        }
        windows.insert(result, state);
        self.touched.push((key.to_vec(), result));
    }

    /// [`process`](Self::process) for a grouping made
    /// [`with_sdk_merging`](Self::with_sdk_merging): when `window` is new
    /// for `key`, `merge` gets the key's open windows and `window` (as
    /// `(start, end)` milliseconds) and returns each one's merge result
    /// (Beam's `merge_windows`); merged windows' states are combined as for
    /// sessions, and the element goes to its window's result.
    ///
    /// # Errors
    /// What `merge` returns; then nothing has changed.
    pub fn process_merging<E>(
        &mut self,
        key: &[u8],
        window: BoundedWindow,
        timestamp: Timestamp,
        value: &[u8],
        merge: impl FnOnce(&[(i64, i64)]) -> std::result::Result<WindowMap, E>,
    ) -> std::result::Result<(), E> {
        let BoundedWindow::Interval { start, end } = window else {
            self.process(key, window, timestamp, value);
            return Ok(());
        };
        if !self.sdk_merging || self.gc_time(&window) < self.input_watermark {
            self.process(key, window, timestamp, value);
            return Ok(());
        }
        let interval = |w: &BoundedWindow| match *w {
            BoundedWindow::Interval { start, end } => Some((start.millis(), end.millis())),
            BoundedWindow::Global => None,
        };
        let new = (start.millis(), end.millis());
        let mut open: Vec<(i64, i64)> = self
            .keys
            .get(key)
            .into_iter()
            .flat_map(|ws| ws.iter().filter(|(_, s)| !s.closed))
            .filter_map(|(w, _)| interval(w))
            .collect();
        if open.contains(&new) {
            self.process(key, window, timestamp, value);
            return Ok(());
        }
        open.push(new);
        let map = merge(&open)?;
        let as_window = |(start, end): (i64, i64)| BoundedWindow::Interval {
            start: Timestamp::from_millis(start),
            end: Timestamp::from_millis(end),
        };
        let mut targets: BTreeMap<(i64, i64), Vec<BoundedWindow>> = BTreeMap::new();
        for w in &open {
            let to = map.get(w).copied().unwrap_or(*w);
            if *w != new {
                targets.entry(to).or_default().push(as_window(*w));
            }
        }
        for (to, from) in targets {
            self.merge_states(key, from, as_window(to));
        }
        let target = as_window(map.get(&new).copied().unwrap_or(new));
        self.process(key, target, timestamp, value);
        Ok(())
    }

    /// Moves time forward and emits the panes that fire, in order: first
    /// the windows that received elements (under the previous watermark),
    /// then end-of-window, expiry and processing-time timers under the new
    /// watermark and clock. Time never moves backwards: smaller values are
    /// ignored.
    pub fn advance(
        &mut self,
        input_watermark: Timestamp,
        processing_time: Timestamp,
        out: &mut Vec<FiredPane>,
    ) {
        self.advance_up_to(input_watermark, processing_time, out, usize::MAX);
    }

    /// [`advance`](Self::advance), stopping once `out` holds `limit` panes
    /// or more while event-time timers are still due; returns whether
    /// some are (call again, with the same or a later time, for the rest).
    /// Until they fire, their windows hold the output watermark, so an
    /// engine can hand the first panes downstream while the rest wait.
    pub fn advance_up_to(
        &mut self,
        input_watermark: Timestamp,
        processing_time: Timestamp,
        out: &mut Vec<FiredPane>,
        limit: usize,
    ) -> bool {
        // Windows that received elements.
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for (key, window) in touched {
            let ctx = self.ctx(&window);
            let fire = self
                .keys
                .get_mut(&key)
                .and_then(|w| w.get_mut(&window))
                .is_some_and(|s| {
                    s.touched = false;
                    !s.closed && s.trigger.should_fire(&self.trigger, &ctx)
                });
            if fire {
                self.emit(&key, window, out);
                self.sync(&key, window);
            }
        }
        // Processing-time timers, under the old watermark; then event-time
        // timers under the new one. Each round takes the timers due, in
        // time order; handling a timer may set the next one (the expiry
        // after the end of window), so rounds repeat until none is due.
        if processing_time > self.processing_time {
            self.processing_time = processing_time;
            // A window is visited once per deadline, even if a firing left
            // a due deadline behind.
            let mut seen = BTreeSet::new();
            loop {
                let due: Vec<(Timestamp, Vec<u8>, BoundedWindow)> = self
                    .deadlines
                    .iter()
                    .take_while(|(t, ..)| *t <= processing_time)
                    .filter(|e| !seen.contains(*e))
                    .cloned()
                    .collect();
                if due.is_empty() {
                    break;
                }
                for entry in due {
                    self.on_processing_time(&entry.1, entry.2, out);
                    seen.insert(entry);
                }
            }
        }
        self.input_watermark = self.input_watermark.max(input_watermark);
        // Due event-time timers, in time order (a window's expiry, set when
        // its end of window fires, may be due as well).
        let mut more = false;
        while let Some((t, ..)) = self.event_timers.first()
            && *t < self.input_watermark
        {
            if out.len() >= limit {
                more = true;
                break;
            }
            let Some((timer, key, window)) = self.event_timers.pop_first() else {
                break;
            };
            if let Some(s) = self.keys.get_mut(&key).and_then(|w| w.get_mut(&window)) {
                s.registered.timer = None;
            }
            self.on_event_time(&key, window, timer, out);
        }
        self.output_watermark = self
            .watermark_hold()
            .map_or(self.input_watermark, |h| h.min(self.input_watermark));
        more
    }

    fn on_processing_time(&mut self, key: &[u8], window: BoundedWindow, out: &mut Vec<FiredPane>) {
        let ctx = self.ctx(&window);
        let fire = self
            .keys
            .get(key)
            .and_then(|w| w.get(&window))
            .is_some_and(|s| !s.closed && s.trigger.should_fire(&self.trigger, &ctx));
        if fire {
            self.emit(key, window, out);
        }
        // Re-registers the deadline: a trigger that did not fire (its
        // deadline passed but, say, a count is missing) waits for elements.
        let expired = self.gc_time(&window) < self.input_watermark;
        if let Some(s) = self.keys.get_mut(key).and_then(|w| w.get_mut(&window))
            && s.trigger
                .next_processing_time(self.pane_rules == PaneRules::Python)
                .is_some_and(|t| t <= self.processing_time.millis())
            && !fire
        {
            if self.pane_rules == PaneRules::Python && expired {
                // Kept past its expiry, and no element can make it ready.
                self.remove_window(key, window);
                return;
            }
            // Not ready although due: leave the index until state changes.
            let before = s.registered;
            let now = Registered {
                deadline: None,
                ..before
            };
            s.registered = now;
            update_index(
                &mut self.holds,
                &mut self.deadlines,
                &mut self.event_timers,
                key,
                window,
                before,
                now,
            );
            return;
        }
        self.sync(key, window);
        self.retire_if_expired(key, window);
    }

    /// The event-time timer `timer` of a window fired: its end of window,
    /// or its expiry.
    fn on_event_time(
        &mut self,
        key: &[u8],
        window: BoundedWindow,
        timer: Timestamp,
        out: &mut Vec<FiredPane>,
    ) {
        let gc = self.gc_time(&window);
        let Some(state) = self.keys.get(key).and_then(|w| w.get(&window)) else {
            return;
        };
        // When expiry coincides with the end of the window (no allowed
        // lateness), Beam has one timer, handled as expiry only.
        if timer < gc {
            let ctx = self.ctx(&window);
            if !state.closed && state.trigger.should_fire(&self.trigger, &ctx) {
                self.emit(key, window, out);
            }
            self.sync(key, window);
            return;
        }
        // Expiry: the final pane, then all state goes. Under Beam Python's
        // rules there is no final pane, only the trigger's own firing (this
        // timer is also the end of the window when there is no lateness).
        if !state.closed {
            match self.pane_rules {
                PaneRules::Java => self.on_trigger(key, window, true, out),
                PaneRules::Python => {
                    // The trigger is asked only when this timer is also the
                    // end of the window (no allowed lateness): Python's
                    // runners have no expiry timer. (A timer past the expiry
                    // is the end of the input for a window kept for
                    // processing time: it only goes.)
                    let ctx = self.ctx(&window);
                    let end_of_window = timer == window.max_timestamp();
                    if end_of_window && state.trigger.should_fire(&self.trigger, &ctx) {
                        self.emit(key, window, out);
                    }
                    // Beam Python's runners keep a window's state, so a
                    // processing-time trigger still fires it after the
                    // watermark passed; it stays until then (or the end of
                    // the input), taking no more elements.
                    if self.waits_for_processing_time(key, window) {
                        self.sync(key, window);
                        return;
                    }
                }
            }
        }
        self.remove_window(key, window);
    }

    /// Whether a window's trigger waits for a processing-time deadline and
    /// input may still come (the watermark is not past the global window).
    fn waits_for_processing_time(&self, key: &[u8], window: BoundedWindow) -> bool {
        self.input_watermark <= Timestamp::GLOBAL_WINDOW_MAX
            && self
                .keys
                .get(key)
                .and_then(|w| w.get(&window))
                .is_some_and(|s| !s.closed && s.trigger.next_processing_time(true).is_some())
    }

    /// Removes a window kept past its expiry for a processing-time firing
    /// (Beam Python's rules) once it no longer waits for one.
    fn retire_if_expired(&mut self, key: &[u8], window: BoundedWindow) {
        if self.pane_rules == PaneRules::Python
            && self.gc_time(&window) < self.input_watermark
            && !self.waits_for_processing_time(key, window)
        {
            self.remove_window(key, window);
        }
    }

    /// A trigger firing (Beam's ReduceFnRunner.emit).
    fn emit(&mut self, key: &[u8], window: BoundedWindow, out: &mut Vec<FiredPane>) {
        let ctx = self.ctx(&window);
        let Some(state) = self.keys.get_mut(key).and_then(|w| w.get_mut(&window)) else {
            return;
        };
        state.trigger.on_fire(&self.trigger, &ctx);
        let finished = state.trigger.is_finished();
        self.on_trigger(key, window, finished, out);
        let discarding = self.accumulation == AccumulationMode::Discarding;
        let Some(state) = self.keys.get_mut(key).and_then(|w| w.get_mut(&window)) else {
            return;
        };
        state.new_elements = 0;
        if finished || discarding {
            state.values = Vec::new();
        }
        if finished {
            state.closed = true;
            state.last_pane = None;
            state.to_retract.clear();
            state.element_hold = None;
            state.extra_hold = None;
        }
    }

    /// Emits the pane of a window if Beam would (ReduceFnRunner.onTrigger):
    /// non-empty, or the on-time pane under FIRE_ALWAYS, or the final pane
    /// under EMIT_ALWAYS. Under Beam Python's rules every firing emits.
    fn on_trigger(
        &mut self,
        key: &[u8],
        window: BoundedWindow,
        finished: bool,
        out: &mut Vec<FiredPane>,
    ) {
        let max = window.max_timestamp();
        let gc = self.gc_time(&window);
        let (wm, output_wm) = (self.input_watermark, self.output_watermark);
        let (accumulation, closing, on_time) = (self.accumulation, self.closing, self.on_time);
        let python = self.pane_rules == PaneRules::Python;
        let Some(state) = self.keys.get_mut(key).and_then(|w| w.get_mut(&window)) else {
            return;
        };
        // Release the holds; the output timestamp is the old hold, or the
        // end of the window when there was none (or only the expiry hold).
        let timestamp = match state.hold() {
            Some(h) if h <= max => h,
            _ => max,
        };
        // Beam Python's runners keep the hold (so the timestamp of the
        // next pane still counts these elements) until the on-time pane,
        // for triggers that have one.
        let keep_hold = python && wm <= max && self.trigger.has_on_time_pane();
        if !keep_hold {
            state.element_hold = None;
        }
        state.extra_hold = None;
        if !finished {
            if max >= wm {
                state.extra_hold = Some(max);
            } else if gc >= wm && closing == ClosingBehavior::EmitAlways && !python {
                state.extra_hold = Some(gc);
            }
        }
        let is_empty = match accumulation {
            AccumulationMode::Discarding => state.values.is_empty(),
            _ => state.new_elements == 0,
        };
        if is_empty
            && !python
            && closing == ClosingBehavior::EmitIfNonEmpty
            && on_time == OnTimeBehavior::FireIfNonEmpty
        {
            return;
        }
        let pane = describe_pane(state.last_pane, max, wm, output_wm, finished);
        let emit = !is_empty
            || python
            || (pane.timing == PaneTiming::OnTime && on_time == OnTimeBehavior::FireAlways)
            || (finished && closing == ClosingBehavior::EmitAlways);
        if !emit {
            return;
        }
        if accumulation == AccumulationMode::Retracting {
            for r in state.to_retract.drain(..) {
                out.push(FiredPane {
                    key: key.to_vec(),
                    window: r.window,
                    timestamp: r.timestamp,
                    pane: pane.into_retraction(),
                    values: r.values,
                    retraction: true,
                });
            }
            state.to_retract.push(Emitted {
                window,
                timestamp,
                values: state.values.clone(),
            });
        }
        if !finished {
            state.last_pane = Some(pane);
        }
        // The buffer goes with the pane unless later panes accumulate it.
        let values = if finished || accumulation == AccumulationMode::Discarding {
            std::mem::take(&mut state.values)
        } else {
            state.values.clone()
        };
        out.push(FiredPane {
            key: key.to_vec(),
            window,
            timestamp,
            pane,
            values,
            retraction: false,
        });
    }

    /// The output watermark hold of pending data: the earliest hold of any
    /// window, or `None` when nothing holds the output watermark back.
    pub fn watermark_hold(&self) -> Option<Timestamp> {
        self.holds.keys().next().copied()
    }

    /// The earliest processing time at which a processing-time trigger is
    /// ready; the engine should call [`advance`](Self::advance) with a
    /// processing time at or after it.
    pub fn next_processing_time(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, ..)| *t)
    }

    /// Elements dropped so far: their window had expired (later than the
    /// allowed lateness) or its trigger had finished.
    pub fn dropped_late(&self) -> u64 {
        self.dropped
    }

    /// Whether no window holds state (everything fired and expired).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Beam's pane info for the next pane of a window (PaneInfoTracker).
fn describe_pane(
    previous: Option<PaneInfo>,
    window_max: Timestamp,
    input_watermark: Timestamp,
    output_watermark: Timestamp,
    is_last: bool,
) -> PaneInfo {
    let (index, mut on_time_index) = match previous {
        None => (0, 0),
        Some(p) => (p.index + 1, p.on_time_index + 1),
    };
    let late_for_output = window_max < output_watermark;
    let only_early_so_far = previous.is_none_or(|p| p.timing == PaneTiming::Early);
    let timing = if late_for_output || !only_early_so_far {
        PaneTiming::Late
    } else if input_watermark <= window_max {
        on_time_index = -1;
        PaneTiming::Early
    } else {
        PaneTiming::OnTime
    };
    PaneInfo {
        is_first: previous.is_none(),
        is_last,
        timing,
        index,
        on_time_index,
        ..PaneInfo::NO_FIRING
    }
}

#[cfg(test)]
#[path = "gabw_tests.rs"]
mod tests;
