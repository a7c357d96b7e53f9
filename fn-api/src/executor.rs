use std::sync::Arc;

use oxbeam_model::fn_execution::ProcessBundleDescriptor;

use crate::{Metrics, Result};

/// Runs the user code of one kind of environment (native Rust, Python, Wasm,
/// an external SDK harness).
///
/// One executor serves many stages and many threads; processors it creates
/// are used by one thread at a time.
pub trait Executor: Send + Sync {
    /// Short name for plans and error messages ("native", "python", ...).
    fn name(&self) -> &str;

    /// Builds a processor for a fused stage.
    ///
    /// # Errors
    /// [`crate::Error::Unsupported`] if a transform is unknown to this
    /// executor, [`crate::Error::Invalid`] for malformed payloads.
    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>>;
}

/// Processes bundles for one descriptor. Reused across bundles: set-up work
/// (DoFn `setup`, compiled modules) happens once per processor.
pub trait BundleProcessor: Send {
    /// Runs one bundle to completion: every input element is processed,
    /// `finish_bundle` runs, and every output has been emitted to the sink.
    ///
    /// # Errors
    /// [`crate::Error::UserCode`] naming the transform and element when user
    /// code fails; the bundle's outputs must then be discarded by the runner.
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()>;

    /// Releases resources (DoFn `teardown`). Called once, when the runner is
    /// done with this processor.
    fn teardown(&mut self) {}
}

/// One bundle's inputs and where its outputs go.
///
/// Build it with [`Bundle::new`] and the `with_*` methods, so that fields
/// added later (with defaults) do not break callers.
pub struct Bundle<'a> {
    /// Per data-source transform id: concatenated nested windowed values.
    /// A source may appear several times (one entry per input buffer).
    pub inputs: Vec<(&'a str, &'a [u8])>,
    /// Receives every output element (and timers set by user code).
    pub sink: &'a mut dyn OutputSink,
    /// Materialized side inputs.
    pub side_inputs: &'a dyn SideInputs,
    /// User and system metrics of this bundle, merged by the runner.
    pub metrics: &'a mut Metrics,
    /// User state of the stateful transforms of the stage (Beam's State API
    /// for user state). [`NoUserState`] unless the runner gives one.
    pub state: &'a mut dyn UserState,
    /// Timers firing in this bundle: `(transform id, timer family id,
    /// concatenated beam:coder:timer:v1 encodings)`, with the key coder of
    /// the transform's input and the window coder of its windowing. A
    /// bundle may carry timers only, elements only, or both (elements first).
    pub timers: Vec<(&'a str, &'a str, &'a [u8])>,
    /// Where work a splittable DoFn deferred (self-checkpointing) goes, if
    /// the runner schedules it itself (streaming). `None`: the executor
    /// resumes it within the bundle, until none is left.
    pub residuals: Option<&'a mut Vec<Residual>>,
    /// Dynamic work rebalancing: if set, an executor that can split a
    /// running bundle asks it whether to, and hands it what it split off.
    pub rebalancer: Option<&'a dyn Rebalancer>,
}

/// The runner's side of dynamic work rebalancing (Flume's liquid
/// sharding): a straggling bundle gives part of its remaining work away,
/// for idle workers to run as new bundles of the same stage.
pub trait Rebalancer: Sync {
    /// The fraction of its remaining work a bundle that has run for
    /// `elapsed` should give away now (in `(0, 1)`), or `None` to keep it.
    fn split_fraction(&self, elapsed: std::time::Duration) -> Option<f64>;

    /// Work split off a running bundle: encoded elements per data source
    /// of the stage (as that source's elements are encoded), to run as a
    /// new bundle. The running bundle no longer processes it; `kept` is
    /// what it still covers from its start, in the same form (what to
    /// run again if this attempt at the bundle fails).
    fn hand_off(&self, work: Vec<(String, Vec<u8>)>, kept: Vec<(String, Vec<u8>)>);

    /// Standing offers, for rebalancers whose split requests must be
    /// answered while one slow element runs (an SDK harness answers within
    /// milliseconds; an executor checks only between elements): the share
    /// of its remaining work a bundle should set aside at its next check
    /// for a later request to claim, or `None`.
    fn offer_fraction(&self) -> Option<f64> {
        None
    }

    /// Work set aside (as in [`Rebalancer::hand_off`]): the bundle does not
    /// process it unless [`Rebalancer::withdraw`] gives it back.
    fn offer(&self, work: Vec<(String, Vec<u8>)>, kept: Vec<(String, Vec<u8>)>) {
        let _ = (work, kept);
    }

    /// Ends the open offer, once the bundle ran out of other work: `true`
    /// if a split request claimed it (the work is gone), `false` if the
    /// bundle is to process it after all.
    fn withdraw(&self) -> bool {
        false
    }
}

/// Work a splittable DoFn deferred in a bundle: one element for a data
/// source of the same stage, to run after `delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct Residual {
    /// The data source transform (of the stage) the element goes to.
    pub source: String,
    /// The element, encoded as that source's elements are.
    pub element: Vec<u8>,
    /// How long the SDK asked the runner to wait before resuming it.
    pub delay: std::time::Duration,
    /// The SDK's estimate of the output watermark of the residual's work
    /// (milliseconds), if it gave one: the stage's output watermark may
    /// advance to it while the residual waits.
    pub watermark_millis: Option<i64>,
}

impl<'a> Bundle<'a> {
    /// A bundle of `inputs` with no user state and no timers.
    pub fn new(
        inputs: Vec<(&'a str, &'a [u8])>,
        sink: &'a mut dyn OutputSink,
        side_inputs: &'a dyn SideInputs,
        metrics: &'a mut Metrics,
    ) -> Self {
        Bundle {
            inputs,
            sink,
            side_inputs,
            metrics,
            // A zero-sized value: leaking it allocates nothing.
            state: Box::leak(Box::new(NoUserState)),
            timers: Vec::new(),
            residuals: None,
            rebalancer: None,
        }
    }

    /// Lets the executor split this bundle while it runs (see
    /// [`Bundle::rebalancer`]).
    pub fn with_rebalancer(mut self, rebalancer: &'a dyn Rebalancer) -> Self {
        self.rebalancer = Some(rebalancer);
        self
    }

    /// Serves user state from `state`.
    pub fn with_state(mut self, state: &'a mut dyn UserState) -> Self {
        self.state = state;
        self
    }

    /// Hands deferred work back to the runner (see [`Bundle::residuals`]).
    pub fn with_residuals(mut self, residuals: &'a mut Vec<Residual>) -> Self {
        self.residuals = Some(residuals);
        self
    }

    /// Delivers `timers` (see [`Bundle::timers`]).
    pub fn with_timers(mut self, timers: Vec<(&'a str, &'a str, &'a [u8])>) -> Self {
        self.timers = timers;
        self
    }
}

/// Receives the elements a bundle produces.
pub trait OutputSink {
    /// One encoded element (nested windowed value) for the data-sink
    /// transform `sink_transform`. `element` is only borrowed: copy it.
    ///
    /// # Errors
    /// If the runner cannot accept it (e.g. the bundle was cancelled, or the
    /// element does not decode with the sink's coder).
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> Result<()>;

    /// Sets or clears timers of timer family `family` of `transform`:
    /// `timer` is one or more concatenated `beam:coder:timer:v1` encodings
    /// (user key, dynamic tag, windows, clear bit, fire and hold timestamps,
    /// pane). The latest timer for a (key, window, tag) replaces earlier ones.
    ///
    /// Override when the runner supports timers; the default refuses them.
    ///
    /// # Errors
    /// If the runner does not support timers or cannot read the timer.
    fn emit_timer(&mut self, transform: &str, family: &str, timer: &[u8]) -> Result<()> {
        let _ = timer;
        Err(crate::Error::Unsupported {
            transform: transform.to_string(),
            message: format!(
                "it set a timer of family {family:?}, but this runner does not deliver timers here"
            ),
        })
    }
}

/// One user state cell and the part of it a request addresses: Beam's user
/// state `StateKey`s (`BagUserState`, `MultimapKeysUserState`,
/// `MultimapUserState`, `OrderedListUserState`).
///
/// Value, combining and set state are bags on the wire (as in Beam Python);
/// map state is a multimap with one value per map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserStateKey<'a> {
    /// Id of the transform owning the state.
    pub transform: &'a str,
    /// The state's id in its `ParDoPayload.state_specs`.
    pub state_id: &'a str,
    /// The window, encoded with the input's window coder.
    pub window: &'a [u8],
    /// The user key, encoded (nested) with the input's key coder.
    pub key: &'a [u8],
    /// Which part of the cell.
    pub kind: UserStateKind<'a>,
}

/// The kinds of [`UserStateKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserStateKind<'a> {
    /// `BagUserState`: get returns every appended value (concatenated
    /// encodings, in append order); append adds; clear empties.
    Bag,
    /// `MultimapKeysUserState`: get returns the distinct map keys (each
    /// nested-encoded, in first-insertion order); clear removes every entry.
    /// Append is an error.
    MultimapKeys,
    /// `MultimapUserState`: the values under one encoded map key.
    Multimap {
        /// The map key, nested-encoded.
        map_key: &'a [u8],
    },
    /// `OrderedListUserState`: entries are `varint(sort key) ++
    /// length-prefixed value` (Beam's `TupleCoder([VarInt,
    /// LengthPrefix(value)])`); get returns those with sort key in
    /// `[start, end)` in sort-key order (insertion order among equal keys),
    /// clear removes them; append's range is ignored.
    OrderedList {
        /// Inclusive lower bound of the sort keys.
        start: i64,
        /// Exclusive upper bound of the sort keys.
        end: i64,
    },
}

/// Beam's State API for user state, as a runner serves it to executors.
///
/// Reads see every earlier write of the same bundle and of earlier bundles
/// (the runner never runs one key in two bundles at once).
pub trait UserState {
    /// Appends the cell's current contents (see [`UserStateKind`]) to `out`.
    ///
    /// # Errors
    /// If the runner has no user state, or the key is malformed.
    fn get(&mut self, key: &UserStateKey<'_>, out: &mut Vec<u8>) -> Result<()>;

    /// Appends `data`: concatenated encodings of whole values.
    ///
    /// # Errors
    /// As [`UserState::get`], and for appends to `MultimapKeys` or malformed
    /// ordered-list entries.
    fn append(&mut self, key: &UserStateKey<'_>, data: &[u8]) -> Result<()>;

    /// Removes the cell's contents (see [`UserStateKind`]).
    ///
    /// # Errors
    /// As [`UserState::get`].
    fn clear(&mut self, key: &UserStateKey<'_>) -> Result<()>;
}

/// For bundles of stages without user state: every request fails.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoUserState;

impl NoUserState {
    fn refuse(key: &UserStateKey<'_>) -> crate::Error {
        crate::Error::Unsupported {
            transform: key.transform.to_string(),
            message: format!(
                "it uses state {:?}, but this runner gives the bundle no user state",
                key.state_id
            ),
        }
    }
}

impl UserState for NoUserState {
    fn get(&mut self, key: &UserStateKey<'_>, _: &mut Vec<u8>) -> Result<()> {
        Err(Self::refuse(key))
    }
    fn append(&mut self, key: &UserStateKey<'_>, _: &[u8]) -> Result<()> {
        Err(Self::refuse(key))
    }
    fn clear(&mut self, key: &UserStateKey<'_>) -> Result<()> {
        Err(Self::refuse(key))
    }
}

/// Access to materialized side inputs.
pub trait SideInputs: Sync {
    /// Every element of side input `side_input` (its local name in the
    /// ParDoPayload) of transform `transform`: concatenated nested windowed
    /// values with the side PCollection's windowed-value coder.
    ///
    /// # Errors
    /// If the runner has no such side input.
    fn side_input(&self, transform: &str, side_input: &str) -> Result<&[u8]>;
}

/// For bundles without side inputs.
pub struct NoSideInputs;

impl SideInputs for NoSideInputs {
    fn side_input(&self, transform: &str, side_input: &str) -> Result<&[u8]> {
        Err(crate::Error::Internal(format!(
            "transform {transform} asked for side input {side_input}, but the bundle has none"
        )))
    }
}

impl<F: FnMut(&str, &[u8]) -> Result<()>> OutputSink for F {
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> Result<()> {
        self(sink_transform, element)
    }
}

/// The executors a runner may use, keyed by environment id (one
/// environment of a pipeline) or environment URN (every environment of a
/// kind, e.g. `oxbeam:env:native:v1`). A stage runs on the executor of its
/// environment id if there is one, else of its environment URN.
#[derive(Clone, Default)]
pub struct Executors {
    by_env_urn: std::collections::BTreeMap<String, Arc<dyn Executor>>,
    by_env_id: std::collections::BTreeMap<String, Arc<dyn Executor>>,
}

impl Executors {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `executor` for environments with URN `env_urn`.
    pub fn with(mut self, env_urn: impl Into<String>, executor: Arc<dyn Executor>) -> Self {
        self.by_env_urn.insert(env_urn.into(), executor);
        self
    }

    /// Registers `executor` for the environment with id `env_id` only
    /// (e.g. one harness per process environment of a pipeline).
    pub fn with_environment(
        mut self,
        env_id: impl Into<String>,
        executor: Arc<dyn Executor>,
    ) -> Self {
        self.by_env_id.insert(env_id.into(), executor);
        self
    }

    /// The executor for environments with URN `env_urn`, if any.
    pub fn get(&self, env_urn: &str) -> Option<&Arc<dyn Executor>> {
        self.by_env_urn.get(env_urn)
    }

    /// The executor for a stage in environment `env_id` with URN `env_urn`:
    /// the one registered for the id, else for the URN.
    pub fn for_environment(&self, env_id: &str, env_urn: &str) -> Option<&Arc<dyn Executor>> {
        self.by_env_id
            .get(env_id)
            .or_else(|| self.by_env_urn.get(env_urn))
    }

    /// Environment URNs that have an executor, sorted.
    pub fn env_urns(&self) -> impl Iterator<Item = &str> {
        self.by_env_urn.keys().map(String::as_str)
    }

    /// Environment ids that have an executor of their own, sorted.
    pub fn env_ids(&self) -> impl Iterator<Item = &str> {
        self.by_env_id.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.by_env_urn.iter().map(|(k, v)| (k, v.name())))
            .entries(self.by_env_id.iter().map(|(k, v)| (k, v.name())))
            .finish()
    }
}

/// Dynamic work rebalancing at element boundaries, for executors that
/// process a bundle's input buffers in runs of elements: between runs,
/// [`ElementSplits::check`] asks the [`Rebalancer`] whether to give work
/// away and, if so, hands off the last part of the elements left (the rest
/// of the current buffer, then the buffers not started) and shortens what
/// this bundle goes on to process. If the rebalancer asks for an offer
/// instead ([`Rebalancer::offer_fraction`]), the same cut is set aside;
/// once the bundle has nothing else left, [`ElementSplits::reclaim`] takes
/// it back unless a split request claimed it.
pub struct ElementSplits<'a> {
    rebalancer: &'a dyn Rebalancer,
    started: std::time::Instant,
    /// Processed so far: whole buffers and prefixes.
    done: Vec<(&'a str, &'a [u8])>,
    /// The work of the open offer.
    offered: Vec<(&'a str, &'a [u8])>,
}

impl<'a> ElementSplits<'a> {
    /// Splits for a bundle that starts now.
    pub fn new(rebalancer: &'a dyn Rebalancer) -> Self {
        ElementSplits {
            rebalancer,
            started: std::time::Instant::now(),
            done: Vec::new(),
            offered: Vec::new(),
        }
    }

    /// Whether work is set aside in an open offer (the bundle's input
    /// does not end where `pending` ends).
    pub fn has_offer(&self) -> bool {
        !self.offered.is_empty()
    }

    /// The bundle has no work left: the work of an offer no split request
    /// claimed goes back to `pending` (returns `true`; process it).
    pub fn reclaim(
        &mut self,
        pending: &mut std::collections::VecDeque<(&'a str, &'a [u8])>,
    ) -> bool {
        if self.offered.is_empty() || self.rebalancer.withdraw() {
            self.offered.clear();
            return false;
        }
        pending.extend(self.offered.drain(..));
        true
    }

    /// How long the bundle has run.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The rebalancer.
    pub fn rebalancer(&self) -> &'a dyn Rebalancer {
        self.rebalancer
    }

    /// What the bundle processed before `bytes[..at]` of buffer `id`, and
    /// that prefix: the work a split of the element at `at` leaves covered.
    pub fn covered(&self, id: &str, prefix: &[u8]) -> Vec<(String, Vec<u8>)> {
        self.done
            .iter()
            .copied()
            .chain(std::iter::once((id, prefix)))
            .filter(|(_, b)| !b.is_empty())
            .map(|(sid, b)| (sid.to_string(), b.to_vec()))
            .collect()
    }

    /// Records that `bytes` of buffer `id` were processed (all of what the
    /// bundle processes of it).
    pub fn finished(&mut self, id: &'a str, bytes: &'a [u8]) {
        self.done.push((id, bytes));
    }

    /// Between runs: `bytes[at..*end]` of buffer `id` and the buffers of
    /// `pending` are left. If the rebalancer asks for a fraction of the
    /// remaining work, the last elements of what is left (cut where
    /// `ends_of(source, bytes)` says elements end) are handed off;
    /// `*end` and `pending` shrink to what this bundle keeps (set aside as
    /// an offer, if the rebalancer asked for one). Returns whether it split
    /// or offered.
    ///
    /// # Errors
    /// What `ends_of` returns.
    pub fn check(
        &mut self,
        (id, bytes, at): (&'a str, &'a [u8], usize),
        end: &mut usize,
        pending: &mut std::collections::VecDeque<(&'a str, &'a [u8])>,
        ends_of: impl Fn(&str, &[u8]) -> Result<Vec<usize>>,
    ) -> Result<bool> {
        let (fraction, offer) = match self.rebalancer.split_fraction(self.started.elapsed()) {
            Some(f) => {
                // An open offer comes back first: this split covers its work.
                self.reclaim(pending);
                (f, false)
            }
            None if self.offered.is_empty() => match self.rebalancer.offer_fraction() {
                Some(f) => (f, true),
                None => return Ok(false),
            },
            None => return Ok(false),
        };
        let mut left: Vec<(&'a str, &'a [u8], Vec<usize>)> = Vec::new();
        for (sid, b) in std::iter::once((id, &bytes[at..*end])).chain(pending.iter().copied()) {
            left.push((sid, b, ends_of(sid, b)?));
        }
        let total: usize = left.iter().map(|(_, _, e)| e.len()).sum();
        let give = ((total as f64) * fraction.clamp(0.0, 1.0)).floor() as usize;
        if give == 0 {
            return Ok(false);
        }
        // Keep the first `total - give` elements left.
        let mut keep = total - give;
        let cuts: Vec<usize> = left
            .iter()
            .map(|(_, b, ends)| {
                let cut = match keep {
                    0 => 0,
                    k if k >= ends.len() => b.len(),
                    k => ends[k - 1],
                };
                keep -= keep.min(ends.len());
                cut
            })
            .collect();
        let away: Vec<(&'a str, &'a [u8])> = left
            .iter()
            .zip(&cuts)
            .filter(|((_, b, _), cut)| **cut < b.len())
            .map(|((sid, b, _), &cut)| (*sid, &b[cut..]))
            .collect();
        let kept: Vec<(&'a str, &'a [u8])> = left
            .iter()
            .zip(&cuts)
            .map(|((sid, b, _), &cut)| (*sid, &b[..cut]))
            .collect();
        let covered: Vec<(String, Vec<u8>)> = self
            .done
            .iter()
            .chain([(id, &bytes[..at])].iter())
            .chain(kept.iter())
            .filter(|(_, b)| !b.is_empty())
            .map(|(sid, b)| (sid.to_string(), b.to_vec()))
            .collect();
        let owned = away
            .iter()
            .map(|(sid, b)| (sid.to_string(), b.to_vec()))
            .collect();
        if offer {
            self.rebalancer.offer(owned, covered);
            self.offered = away;
        } else {
            self.rebalancer.hand_off(owned, covered);
        }
        *end = at + cuts[0];
        *pending = kept[1..]
            .iter()
            .copied()
            .filter(|(_, b)| !b.is_empty())
            .collect();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    type Work = Vec<(String, Vec<u8>)>;

    /// Answers from a script; records what it was handed or offered.
    #[derive(Default)]
    struct Scripted {
        split: Mutex<Option<f64>>,
        offer: Mutex<Option<f64>>,
        claimed: bool,
        handed: Mutex<Vec<(Work, Work)>>,
        offered: Mutex<Vec<(Work, Work)>>,
    }

    impl Rebalancer for Scripted {
        fn split_fraction(&self, _: std::time::Duration) -> Option<f64> {
            self.split.lock().unwrap().take()
        }
        fn hand_off(&self, work: Work, kept: Work) {
            self.handed.lock().unwrap().push((work, kept));
        }
        fn offer_fraction(&self) -> Option<f64> {
            self.offer.lock().unwrap().take()
        }
        fn offer(&self, work: Work, kept: Work) {
            self.offered.lock().unwrap().push((work, kept));
        }
        fn withdraw(&self) -> bool {
            self.claimed
        }
    }

    fn one_byte_elements(_: &str, b: &[u8]) -> Result<Vec<usize>> {
        Ok((1..=b.len()).collect())
    }

    /// Work of source `src` as one buffer (pieces joined).
    fn joined(pairs: &[(Work, Work)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let join = |w: &Work| -> Vec<u8> {
            assert!(w.iter().all(|(s, _)| s == "src"));
            w.iter().flat_map(|(_, b)| b.clone()).collect()
        };
        pairs.iter().map(|(w, k)| (join(w), join(k))).collect()
    }

    /// An offer sets the tail aside; a split requested while it is open
    /// takes it back first, so the hand-off covers it; an offer nobody
    /// claimed is processed after all, a claimed one is not.
    #[test]
    fn offers_set_work_aside_until_claimed_or_reclaimed() {
        let input: &[u8] = b"abcdef";
        let r = Scripted::default();
        let mut splits = ElementSplits::new(&r);
        let mut pending = VecDeque::new();
        let mut end = input.len();
        *r.offer.lock().unwrap() = Some(0.5);
        assert!(
            splits
                .check(("src", input, 1), &mut end, &mut pending, one_byte_elements)
                .unwrap()
        );
        assert_eq!((end, splits.has_offer()), (4, true));
        assert_eq!(
            joined(&r.offered.lock().unwrap()),
            [(b"ef".to_vec(), b"abcd".to_vec())]
        );
        // No second offer while one is open.
        *r.offer.lock().unwrap() = Some(0.5);
        assert!(
            !splits
                .check(("src", input, 2), &mut end, &mut pending, one_byte_elements)
                .unwrap()
        );
        // A split: the offer comes back and half of c, d, e, f goes.
        *r.split.lock().unwrap() = Some(0.5);
        assert!(
            splits
                .check(("src", input, 2), &mut end, &mut pending, one_byte_elements)
                .unwrap()
        );
        assert_eq!(
            joined(&r.handed.lock().unwrap()),
            [(b"ef".to_vec(), b"abcd".to_vec())]
        );
        assert!(!splits.has_offer());
        assert!(pending.is_empty());
        assert!(!splits.reclaim(&mut pending));

        // Unclaimed: reclaimed at the end; claimed: gone.
        for claimed in [false, true] {
            let r = Scripted {
                claimed,
                ..Default::default()
            };
            let mut splits = ElementSplits::new(&r);
            let (mut end, mut pending) = (input.len(), VecDeque::new());
            *r.offer.lock().unwrap() = Some(0.5);
            splits
                .check(("src", input, 2), &mut end, &mut pending, one_byte_elements)
                .unwrap();
            assert_eq!(end, 4);
            assert_eq!(splits.reclaim(&mut pending), !claimed);
            let back: Vec<&[u8]> = pending.iter().map(|(_, b)| *b).collect();
            assert_eq!(back, if claimed { vec![] } else { vec![&b"ef"[..]] });
        }
    }
}
