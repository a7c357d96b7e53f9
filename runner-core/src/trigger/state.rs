//! The trigger state machine of one (key, window).
//!
//! [`TriggerState`] mirrors the shape of its [`Trigger`]: one node per
//! trigger (an `AfterWatermark` has an early node, `Never` when absent, and
//! a late node when present). Each node has a finished bit, which Beam
//! keeps apart from the rest of the state: *clearing* a node forgets its
//! data (counts, deadlines) but keeps the bits; *resetting* it (what
//! `Repeatedly` does) forgets both.

use oxbeam_model::window::Timestamp;

use super::Trigger;

/// What a trigger may look at: the window, the watermark and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerContext {
    /// The window's max timestamp.
    pub window_max: Timestamp,
    /// The input watermark of the grouping.
    pub input_watermark: Timestamp,
    /// The current processing time.
    pub processing_time: Timestamp,
    /// Whether windows may merge (sessions): composite triggers then keep
    /// all their subtriggers up to date, as Beam does.
    pub merging: bool,
    /// Whether a processing-time trigger is ready at its deadline (Beam
    /// Python's runners) rather than strictly after it (Beam Java).
    pub ready_at_deadline: bool,
}

impl TriggerContext {
    /// Beam's "end of window reached": the watermark is past the window's
    /// max timestamp.
    fn end_of_window_reached(&self) -> bool {
        self.input_watermark > self.window_max
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Node {
    finished: bool,
    /// Elements in the pane (ElementCount, Always).
    count: i64,
    /// The processing-time deadline (ms) of a processing-time trigger; it
    /// is ready once the clock is strictly past it.
    deadline: Option<i64>,
    children: Vec<Node>,
}

/// The state of a trigger for one (key, window): finished bits and the data
/// of every node of the trigger tree.
///
/// Methods take the [`Trigger`] the state was made for; passing another one
/// gives meaningless answers (never a panic).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TriggerState {
    root: Node,
}

/// The children of a node, as (trigger, present) pairs in Beam's order.
fn children(t: &Trigger) -> Vec<&Trigger> {
    const NEVER: &Trigger = &Trigger::Never;
    match t {
        Trigger::AfterWatermark { early, late } => {
            let mut v = vec![early.as_deref().unwrap_or(NEVER)];
            if let Some(l) = late {
                v.push(l);
            }
            v
        }
        Trigger::AfterAll(s) | Trigger::AfterAny(s) | Trigger::AfterEach(s) => s.iter().collect(),
        Trigger::OrFinally { main, finally } => vec![main, finally],
        Trigger::Repeatedly(t) => vec![t],
        _ => Vec::new(),
    }
}

/// Child `i` of a node, by the same numbering as [`children`], without
/// allocating (the hot path runs per element).
fn sub(t: &Trigger, i: usize) -> &Trigger {
    const NEVER: &Trigger = &Trigger::Never;
    match t {
        Trigger::AfterWatermark { early, late } => match i {
            0 => early.as_deref().unwrap_or(NEVER),
            _ => late.as_deref().unwrap_or(NEVER),
        },
        Trigger::AfterAll(s) | Trigger::AfterAny(s) | Trigger::AfterEach(s) => {
            s.get(i).unwrap_or(NEVER)
        }
        Trigger::OrFinally { main, finally } => {
            if i == 0 {
                main
            } else {
                finally
            }
        }
        Trigger::Repeatedly(t) => t,
        _ => NEVER,
    }
}

fn fresh(t: &Trigger) -> Node {
    Node {
        children: children(t).into_iter().map(fresh).collect(),
        ..Node::default()
    }
}

impl Node {
    fn child(&self, i: usize) -> Option<&Node> {
        self.children.get(i)
    }

    /// Forgets the data of the subtree, keeping finished bits.
    fn clear(&mut self) {
        self.count = 0;
        self.deadline = None;
        for c in &mut self.children {
            c.clear();
        }
    }

    /// Forgets data and finished bits of the subtree.
    fn reset(&mut self) {
        self.finished = false;
        self.clear();
        for c in &mut self.children {
            c.reset();
        }
    }

    fn first_unfinished(&self) -> Option<usize> {
        self.children.iter().position(|c| !c.finished)
    }

    fn on_element(&mut self, t: &Trigger, ctx: &TriggerContext) {
        if self.finished {
            return;
        }
        match t {
            Trigger::ElementCount(_) | Trigger::Always => self.count += 1,
            Trigger::AfterProcessingTime { transforms } => {
                if self.deadline.is_none() {
                    let mut at = ctx.processing_time.millis();
                    for tr in transforms {
                        at = tr.apply(at);
                    }
                    self.deadline = Some(at);
                }
            }
            Trigger::AfterSynchronizedProcessingTime => {
                if self.deadline.is_none() {
                    self.deadline = Some(ctx.processing_time.millis());
                }
            }
            Trigger::AfterWatermark { .. } | Trigger::AfterEach(_) => {
                if ctx.merging {
                    for (i, c) in self.children.iter_mut().enumerate() {
                        let s = sub(t, i);
                        c.on_element(s, ctx);
                    }
                } else if let Some(i) = self.first_unfinished() {
                    self.children[i].on_element(sub(t, i), ctx);
                }
            }
            Trigger::AfterAll(_)
            | Trigger::AfterAny(_)
            | Trigger::OrFinally { .. }
            | Trigger::Repeatedly(_) => {
                for (i, c) in self.children.iter_mut().enumerate() {
                    let s = sub(t, i);
                    c.on_element(s, ctx);
                }
            }
            Trigger::Default | Trigger::Never => {}
        }
    }

    fn should_fire(&self, t: &Trigger, ctx: &TriggerContext) -> bool {
        let sub_fires = |i: usize| self.child(i).is_some_and(|c| c.should_fire(sub(t, i), ctx));
        match t {
            Trigger::Default => ctx.end_of_window_reached(),
            Trigger::Never => false,
            Trigger::Always => self.count >= 1,
            Trigger::ElementCount(n) => self.count >= *n,
            // Strictly after, as Beam Java (`isAfter`), or at the deadline.
            Trigger::AfterProcessingTime { .. } | Trigger::AfterSynchronizedProcessingTime => {
                self.deadline.is_some_and(|d| {
                    let now = ctx.processing_time.millis();
                    now > d || (ctx.ready_at_deadline && now == d)
                })
            }
            Trigger::AfterWatermark { late, .. } => {
                if !self.children[0].finished {
                    sub_fires(0) || ctx.end_of_window_reached()
                } else {
                    late.is_some() && sub_fires(1)
                }
            }
            Trigger::AfterAll(_) => self
                .children
                .iter()
                .enumerate()
                .all(|(i, c)| c.finished || sub_fires(i)),
            Trigger::AfterAny(_) => (0..self.children.len()).any(sub_fires),
            Trigger::AfterEach(_) => self.first_unfinished().is_some_and(sub_fires),
            Trigger::OrFinally { .. } => sub_fires(0) || sub_fires(1),
            Trigger::Repeatedly(_) => sub_fires(0),
        }
    }

    fn on_fire(&mut self, t: &Trigger, ctx: &TriggerContext) {
        match t {
            Trigger::Default | Trigger::Never => {}
            Trigger::Always => self.count = 0,
            Trigger::ElementCount(_)
            | Trigger::AfterProcessingTime { .. }
            | Trigger::AfterSynchronizedProcessingTime => {
                self.clear();
                self.finished = true;
            }
            Trigger::AfterWatermark { late, .. } => {
                if !self.children[0].finished {
                    let early = sub(t, 0);
                    if !ctx.end_of_window_reached() {
                        // An early firing; the early trigger repeats, its
                        // subtriggers' finished bits cleared too (Beam's
                        // setFinished(false), Python's Repeatedly reset).
                        self.children[0].on_fire(early, ctx);
                        self.children[0].reset();
                    } else {
                        // The on-time firing ends the early phase.
                        if self.children[0].should_fire(early, ctx) {
                            self.children[0].on_fire(early, ctx);
                        }
                        self.children[0].finished = true;
                        self.children[0].clear();
                        if late.is_none() {
                            self.finished = true;
                        } else {
                            // The late trigger may have run alongside (merging).
                            self.children[1].clear();
                        }
                    }
                } else if late.is_some() {
                    // A late firing; the late trigger repeats (all of it).
                    self.children[1].on_fire(sub(t, 1), ctx);
                    self.children[1].reset();
                } else {
                    self.finished = true;
                }
            }
            Trigger::AfterAll(_) => {
                for (i, c) in self.children.iter_mut().enumerate() {
                    let s = sub(t, i);
                    if !c.finished {
                        c.on_fire(s, ctx);
                    }
                }
                self.finished = true;
            }
            Trigger::AfterAny(_) => {
                for (i, c) in self.children.iter_mut().enumerate() {
                    let s = sub(t, i);
                    if c.should_fire(s, ctx) {
                        c.on_fire(s, ctx);
                    } else {
                        // Whatever pane it tracked has just been emitted.
                        c.clear();
                    }
                }
                self.finished = true;
            }
            Trigger::AfterEach(_) => {
                if let Some(i) = self.first_unfinished() {
                    self.children[i].on_fire(sub(t, i), ctx);
                }
                if ctx.merging {
                    for c in &mut self.children {
                        c.clear();
                    }
                }
                self.finished = self.first_unfinished().is_none();
            }
            Trigger::OrFinally { .. } => {
                if self.children[1].should_fire(sub(t, 1), ctx) {
                    self.children[1].on_fire(sub(t, 1), ctx);
                    self.children[0].clear();
                } else {
                    // The main trigger fired; `finally` keeps counting
                    // across firings.
                    self.children[0].on_fire(sub(t, 0), ctx);
                }
                self.finished = self.children.iter().any(|c| c.finished);
            }
            Trigger::Repeatedly(_) => {
                self.children[0].on_fire(sub(t, 0), ctx);
                if self.children[0].finished {
                    self.children[0].reset();
                }
            }
        }
    }

    /// Makes `self` (a fresh node) the merge of `sources`.
    fn on_merge(&mut self, t: &Trigger, sources: &[&Node], ctx: &TriggerContext) {
        let all_finished = sources.iter().all(|n| n.finished);
        let any_finished = sources.iter().any(|n| n.finished);
        let merge_child = |me: &mut Node, i: usize| {
            let srcs: Vec<&Node> = sources.iter().filter_map(|n| n.child(i)).collect();
            me.children[i].on_merge(sub(t, i), &srcs, ctx);
        };
        match t {
            Trigger::Default | Trigger::Never => {}
            Trigger::Always => self.count = sources.iter().map(|n| n.count).sum(),
            Trigger::ElementCount(_) => {
                if any_finished {
                    self.finished = true;
                } else {
                    self.count = sources.iter().map(|n| n.count).sum();
                }
            }
            Trigger::AfterProcessingTime { .. } | Trigger::AfterSynchronizedProcessingTime => {
                if any_finished {
                    self.finished = true;
                } else {
                    self.deadline = sources.iter().filter_map(|n| n.deadline).min();
                }
            }
            Trigger::AfterWatermark { late, .. } => {
                let early_all_finished = sources
                    .iter()
                    .all(|n| n.child(0).is_none_or(|c| c.finished));
                if !early_all_finished || !ctx.end_of_window_reached() {
                    merge_child(self, 0);
                    self.children[0].finished = false;
                    if late.is_some() {
                        self.children[1].reset();
                    }
                } else {
                    self.children[0].finished = true;
                    if late.is_some() {
                        merge_child(self, 1);
                    }
                }
                // Without late firings the whole trigger finishes with the
                // early phase (Beam's AfterWatermark.FromEndOfWindow).
                if late.is_none() && !matches!(t, Trigger::AfterWatermark { early: Some(_), .. }) {
                    self.finished = all_finished && ctx.end_of_window_reached();
                }
            }
            Trigger::AfterAll(_) => {
                for i in 0..self.children.len() {
                    merge_child(self, i);
                }
                self.finished = self.children.iter().all(|c| c.finished);
            }
            Trigger::AfterAny(_) => {
                for i in 0..self.children.len() {
                    merge_child(self, i);
                }
                self.finished = self.children.iter().any(|c| c.finished);
            }
            Trigger::AfterEach(_) => {
                let mut prior_finished = true;
                for i in 0..self.children.len() {
                    if prior_finished {
                        merge_child(self, i);
                        prior_finished = self.children[i].finished;
                    } else {
                        self.children[i].clear();
                    }
                }
                self.finished = self.first_unfinished().is_none();
            }
            Trigger::OrFinally { .. } => {
                merge_child(self, 0);
                merge_child(self, 1);
                self.finished = self.children.iter().any(|c| c.finished);
            }
            Trigger::Repeatedly(_) => merge_child(self, 0),
        }
    }

    fn next_deadline(&self) -> Option<i64> {
        if self.finished {
            return None;
        }
        self.children
            .iter()
            .filter_map(Node::next_deadline)
            .chain(self.deadline)
            .min()
    }
}

impl TriggerState {
    /// The state of a window no element reached yet.
    pub fn new(trigger: &Trigger) -> Self {
        TriggerState {
            root: fresh(trigger),
        }
    }

    /// An element arrived in the window.
    pub fn on_element(&mut self, trigger: &Trigger, ctx: &TriggerContext) {
        self.root.on_element(trigger, ctx);
    }

    /// Whether the trigger is ready to fire now.
    pub fn should_fire(&self, trigger: &Trigger, ctx: &TriggerContext) -> bool {
        !self.root.finished && self.root.should_fire(trigger, ctx)
    }

    /// The window fired: move the state machine past this firing.
    pub fn on_fire(&mut self, trigger: &Trigger, ctx: &TriggerContext) {
        self.root.on_fire(trigger, ctx);
    }

    /// Whether the trigger is finished (closed): it fires no more and the
    /// window drops new elements.
    pub fn is_finished(&self) -> bool {
        self.root.finished
    }

    /// The state of a window merged from windows with states `sources`,
    /// by Beam's per-trigger merge rules; `ctx` describes the merged window.
    pub fn merge(trigger: &Trigger, sources: &[&TriggerState], ctx: &TriggerContext) -> Self {
        let mut root = fresh(trigger);
        let srcs: Vec<&Node> = sources.iter().map(|s| &s.root).collect();
        root.on_merge(trigger, &srcs, ctx);
        TriggerState { root }
    }

    /// The earliest processing time (ms) at which a processing-time trigger
    /// of this state becomes ready (1 ms after its deadline, or at it when
    /// `ready_at_deadline`), if one waits.
    pub fn next_processing_time(&self, ready_at_deadline: bool) -> Option<i64> {
        let after = i64::from(!ready_at_deadline);
        self.root.next_deadline().map(|d| d.saturating_add(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(watermark: i64) -> TriggerContext {
        TriggerContext {
            window_max: Timestamp::from_millis(9),
            input_watermark: Timestamp::from_millis(watermark),
            processing_time: Timestamp::from_millis(0),
            merging: false,
            ready_at_deadline: false,
        }
    }

    #[test]
    fn after_watermark_moves_from_early_to_late_firings() {
        let t = Trigger::AfterWatermark {
            early: Some(Box::new(Trigger::ElementCount(2))),
            late: Some(Box::new(Trigger::ElementCount(1))),
        };
        let mut s = TriggerState::new(&t);
        let early = ctx(0);
        s.on_element(&t, &early);
        assert!(!s.should_fire(&t, &early));
        s.on_element(&t, &early);
        assert!(s.should_fire(&t, &early));
        s.on_fire(&t, &early);
        // The early trigger repeats.
        assert!(!s.should_fire(&t, &early) && !s.is_finished());
        // The watermark passes the end of the window: the on-time firing.
        let late = ctx(10);
        assert!(s.should_fire(&t, &late));
        s.on_fire(&t, &late);
        assert!(!s.should_fire(&t, &late));
        // Late firings, one per element, forever.
        for _ in 0..3 {
            s.on_element(&t, &late);
            assert!(s.should_fire(&t, &late));
            s.on_fire(&t, &late);
            assert!(!s.should_fire(&t, &late) && !s.is_finished());
        }
    }

    #[test]
    fn repeatedly_resets_finished_subtriggers() {
        let t = Trigger::Repeatedly(Box::new(Trigger::AfterEach(vec![
            Trigger::ElementCount(1),
            Trigger::ElementCount(2),
        ])));
        let c = ctx(0);
        let mut s = TriggerState::new(&t);
        let mut fired = Vec::new();
        for i in 1..=7 {
            s.on_element(&t, &c);
            if s.should_fire(&t, &c) {
                s.on_fire(&t, &c);
                fired.push(i);
            }
        }
        // Counts 1, 2, 1, 2, ...
        assert_eq!(fired, [1, 3, 4, 6, 7]);
        assert!(!s.is_finished());
    }

    #[test]
    fn merging_sums_counts_unless_one_window_finished() {
        let t = Trigger::ElementCount(3);
        let c = TriggerContext {
            merging: true,
            ..ctx(0)
        };
        let mut a = TriggerState::new(&t);
        let mut b = TriggerState::new(&t);
        a.on_element(&t, &c);
        b.on_element(&t, &c);
        b.on_element(&t, &c);
        let m = TriggerState::merge(&t, &[&a, &b], &c);
        assert!(m.should_fire(&t, &c));
        let mut done = TriggerState::new(&t);
        for _ in 0..3 {
            done.on_element(&t, &c);
        }
        done.on_fire(&t, &c);
        assert!(done.is_finished());
        assert!(TriggerState::merge(&t, &[&a, &done], &c).is_finished());
    }

    #[test]
    fn or_finally_finishes_when_the_until_trigger_fires() {
        let t = Trigger::OrFinally {
            main: Box::new(Trigger::Repeatedly(Box::new(Trigger::ElementCount(1)))),
            finally: Box::new(Trigger::ElementCount(2)),
        };
        let c = ctx(0);
        let mut s = TriggerState::new(&t);
        s.on_element(&t, &c);
        s.on_fire(&t, &c);
        assert!(!s.is_finished());
        s.on_element(&t, &c);
        assert!(s.should_fire(&t, &c));
        s.on_fire(&t, &c);
        assert!(s.is_finished());
        assert!(!s.should_fire(&t, &c));
    }

    #[test]
    fn processing_time_deadlines_follow_the_transforms() {
        use super::super::TimestampTransform::{AlignTo, Delay};
        let t = Trigger::AfterProcessingTime {
            transforms: vec![
                Delay { delay_ms: 5 },
                AlignTo {
                    period_ms: 10,
                    offset_ms: 3,
                },
            ],
        };
        let mut c = ctx(0);
        c.processing_time = Timestamp::from_millis(1);
        let mut s = TriggerState::new(&t);
        s.on_element(&t, &c);
        // 1 + 5 = 6, aligned up to 13; ready once the clock is past it.
        assert_eq!(s.next_processing_time(false), Some(14));
        c.processing_time = Timestamp::from_millis(13);
        assert!(!s.should_fire(&t, &c));
        c.processing_time = Timestamp::from_millis(14);
        assert!(s.should_fire(&t, &c));
        s.on_fire(&t, &c);
        assert!(s.is_finished());
        assert_eq!(s.next_processing_time(false), None);
    }
}
