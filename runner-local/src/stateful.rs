//! Batch execution of stateful stages: input partitioned by key, user state
//! in a [`StateStore`], timers in a [`TimerQueue`].
//!
//! A stateful stage's input is split into partitions by a hash of each
//! element's encoded key ([`partition`]); each partition is one task, so a
//! key is never in two concurrent bundles. A task ([`run_partition`]) runs
//! its elements as one bundle, then — the input watermark being at +∞ once
//! the input is complete — fires the due timers (event and processing
//! time) as timer bundles, the earliest per key and window first, round
//! after round until no timer is set. All windows have then expired, so the
//! partition's state is dropped with its store.
//!
//! [`UserStateAdapter`] and [`TimerSink`] are what any engine needs to run
//! bundles on a store and a queue; the streaming engine reuses them with its
//! own watermarks.

use std::collections::BTreeMap;
use std::sync::Arc;

use oxbeam_fn_api::{
    Bundle, BundleProcessor, Metrics, OutputSink, SideInputs, UserState, UserStateKey,
    UserStateKind,
};
use oxbeam_model::coders::{Coder, Context};
use oxbeam_runner_core::WindowedHeader;
use oxbeam_runner_core::state::{CellRef, StageState, StateKind, StateStore, TimerQueue};

use crate::Error;
use crate::data::Chunk;

/// Timer rounds after which a partition fails: a DoFn that always sets a
/// new timer would otherwise never finish.
const MAX_TIMER_ROUNDS: usize = 100_000;

/// The input of one key partition: `(stage input index, chunk)` pairs.
type PartitionInputs = Vec<(usize, Arc<Chunk>)>;

/// Serves `oxbeam_fn_api::UserState` from a runner-core [`StateStore`].
pub(crate) struct UserStateAdapter<'a>(pub &'a mut StateStore);

fn cell<'k>(key: &UserStateKey<'k>) -> (CellRef<'k>, StateKind<'k>) {
    let kind = match key.kind {
        UserStateKind::Bag => StateKind::Bag,
        UserStateKind::MultimapKeys => StateKind::MultimapKeys,
        UserStateKind::Multimap { map_key } => StateKind::Multimap { map_key },
        UserStateKind::OrderedList { start, end } => StateKind::OrderedList { start, end },
    };
    (
        CellRef {
            transform: key.transform,
            state_id: key.state_id,
            window: key.window,
            key: key.key,
        },
        kind,
    )
}

fn state_error(key: &UserStateKey<'_>, e: impl std::fmt::Display) -> oxbeam_fn_api::Error {
    oxbeam_fn_api::Error::invalid(format!("state request of transform {}", key.transform), e)
}

impl UserState for UserStateAdapter<'_> {
    fn get(&mut self, key: &UserStateKey<'_>, out: &mut Vec<u8>) -> oxbeam_fn_api::Result<()> {
        let (c, kind) = cell(key);
        self.0.get(&c, kind, out).map_err(|e| state_error(key, e))
    }

    fn append(&mut self, key: &UserStateKey<'_>, data: &[u8]) -> oxbeam_fn_api::Result<()> {
        let (c, kind) = cell(key);
        self.0
            .append(&c, kind, data)
            .map_err(|e| state_error(key, e))
    }

    fn clear(&mut self, key: &UserStateKey<'_>) -> oxbeam_fn_api::Result<()> {
        let (c, kind) = cell(key);
        self.0.clear(&c, kind).map_err(|e| state_error(key, e))
    }
}

/// An [`OutputSink`] that passes elements on and puts timers in a queue.
pub(crate) struct TimerSink<'a> {
    /// Where elements go.
    pub inner: &'a mut dyn OutputSink,
    /// Where timers go.
    pub queue: &'a mut TimerQueue,
    /// Key coder of the stateful transforms' input.
    pub key_coder: &'a Coder,
    /// Window coder of that input.
    pub window_coder: &'a Coder,
}

impl OutputSink for TimerSink<'_> {
    #[inline]
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> oxbeam_fn_api::Result<()> {
        self.inner.emit(sink_transform, element)
    }

    fn emit_timer(
        &mut self,
        transform: &str,
        family: &str,
        timer: &[u8],
    ) -> oxbeam_fn_api::Result<()> {
        self.queue
            .set_encoded(transform, family, timer, self.key_coder, self.window_coder)
            .map_err(|e| {
                oxbeam_fn_api::Error::invalid(format!("timer of transform {transform}"), e)
            })
    }
}

/// Splits a stateful stage's input chunks (`(stage input index, chunk)`)
/// into `parts` bundles by a hash of each element's key.
///
/// # Errors
/// If an element does not decode as a windowed KV of the stage's coders.
pub(crate) fn partition(
    state: &StageState,
    chunks: Vec<(usize, Arc<Chunk>)>,
    parts: usize,
) -> Result<Vec<PartitionInputs>, Error> {
    Ok(partition_indexed(state, chunks, parts)?
        .into_iter()
        .map(|(_, inputs)| inputs)
        .collect())
}

/// As [`partition`], with each non-empty partition's index (a key always
/// lands in the same partition of `parts`).
///
/// # Errors
/// As [`partition`].
pub(crate) fn partition_indexed(
    state: &StageState,
    chunks: Vec<(usize, Arc<Chunk>)>,
    parts: usize,
) -> Result<Vec<(usize, PartitionInputs)>, Error> {
    let parts = parts.max(1);
    // Per partition, per stage input: the elements' bytes.
    let mut buffers: Vec<BTreeMap<usize, Vec<u8>>> = vec![BTreeMap::new(); parts];
    let bad = |e: String| Error::Internal(format!("element of a stateful stage's input: {e}"));
    for (idx, chunk) in chunks {
        let mut rest: &[u8] = &chunk.bytes;
        while !rest.is_empty() {
            let header = WindowedHeader::parse(&rest, &state.window_coder).map_err(|e| bad(e.0))?;
            let mut value = header.value;
            let key_start = value;
            state
                .key_coder
                .skip(&mut value, Context::Nested)
                .map_err(|e| bad(e.to_string()))?;
            let key = &key_start[..key_start.len() - value.len()];
            let element_start = rest;
            state
                .value_coder
                .skip(&mut value, Context::Nested)
                .map_err(|e| bad(e.to_string()))?;
            rest = value;
            let element = &element_start[..element_start.len() - rest.len()];
            let p = (hash(key) % parts as u64) as usize;
            buffers[p]
                .entry(idx)
                .or_default()
                .extend_from_slice(element);
        }
    }
    Ok(buffers
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(p, b)| {
            let inputs = b
                .into_iter()
                .map(|(idx, bytes)| (idx, Arc::new(Chunk { bytes })))
                .collect();
            (p, inputs)
        })
        .collect())
}

/// FNV-1a: stable across runs, so partitions (and timer order) are too.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Runs one key partition of a stateful stage: its elements, then its
/// timers round by round until none is set (the watermark is at +∞).
///
/// # Errors
/// Whatever a bundle fails with; a malformed timer; or more than
/// [`MAX_TIMER_ROUNDS`] rounds of timers.
pub(crate) fn run_partition(
    state: &StageState,
    processor: &mut dyn BundleProcessor,
    inputs: Vec<(&str, &[u8])>,
    sink: &mut dyn OutputSink,
    side_inputs: &dyn SideInputs,
    metrics: &mut Metrics,
) -> oxbeam_fn_api::Result<()> {
    let mut store = StateStore::new();
    let mut queue = state.timer_queue();
    let mut keyed = Keyed {
        store: &mut store,
        queue: &mut queue,
        input_watermark: i64::MAX,
        processing_time: i64::MAX,
    };
    run_keyed(
        state,
        processor,
        inputs,
        sink,
        side_inputs,
        metrics,
        &mut keyed,
    )?;
    // The watermark is at +∞: every window has expired, and its state with it.
    store.expire(i64::MAX, state.allowed_lateness_ms, &state.window_coder);
    Ok(())
}

/// The state and timers of one key partition, and the time to fire its
/// timers at: event-time timers at or before `input_watermark`,
/// processing-time ones at or before `processing_time`.
pub(crate) struct Keyed<'a> {
    pub store: &'a mut StateStore,
    pub queue: &'a mut TimerQueue,
    pub input_watermark: i64,
    pub processing_time: i64,
}

/// Runs a bundle of a stateful stage on one key partition's state: its
/// elements (if any), then the due timers round by round until none is due.
///
/// # Errors
/// As [`run_partition`].
pub(crate) fn run_keyed(
    state: &StageState,
    processor: &mut dyn BundleProcessor,
    inputs: Vec<(&str, &[u8])>,
    sink: &mut dyn OutputSink,
    side_inputs: &dyn SideInputs,
    metrics: &mut Metrics,
    keyed: &mut Keyed<'_>,
) -> oxbeam_fn_api::Result<()> {
    let Keyed {
        store,
        queue,
        input_watermark,
        processing_time,
    } = keyed;
    let (store, queue) = (&mut **store, &mut **queue);
    if !inputs.is_empty() {
        let mut timers = TimerSink {
            inner: &mut *sink,
            queue: &mut *queue,
            key_coder: &state.key_coder,
            window_coder: &state.window_coder,
        };
        let mut adapter = UserStateAdapter(&mut *store);
        processor.process_bundle(
            &mut Bundle::new(inputs, &mut timers, side_inputs, metrics).with_state(&mut adapter),
        )?;
    }
    let mut rounds = 0;
    loop {
        let fired = queue.fire_due_earliest_per_key(*input_watermark, *processing_time);
        if fired.is_empty() {
            break;
        }
        rounds += 1;
        if rounds > MAX_TIMER_ROUNDS {
            let t = &fired[0].id;
            return Err(oxbeam_fn_api::Error::UserCode(
                oxbeam_fn_api::UserCodeError {
                    transform: t.transform.clone(),
                    message: format!(
                        "its timers kept setting new timers for {MAX_TIMER_ROUNDS} rounds after the end of input (timer family {:?})",
                        t.family
                    ),
                    element: None,
                },
            ));
        }
        let mut by_family: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
        for t in &fired {
            let buf = by_family
                .entry((t.id.transform.clone(), t.id.family.clone()))
                .or_default();
            t.encode(buf);
        }
        let timer_inputs: Vec<(&str, &str, &[u8])> = by_family
            .iter()
            .map(|((t, f), b)| (t.as_str(), f.as_str(), b.as_slice()))
            .collect();
        let mut timers = TimerSink {
            inner: &mut *sink,
            queue: &mut *queue,
            key_coder: &state.key_coder,
            window_coder: &state.window_coder,
        };
        let mut adapter = UserStateAdapter(&mut *store);
        processor.process_bundle(
            &mut Bundle::new(Vec::new(), &mut timers, side_inputs, metrics)
                .with_state(&mut adapter)
                .with_timers(timer_inputs),
        )?;
    }
    Ok(())
}
