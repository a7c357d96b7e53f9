//! GroupByKey in the streaming engine: a [`Grouping`] is fed elements as
//! they arrive and fires panes as the input watermark and processing time
//! advance.
//!
//! The engine uses runner-core's [`GroupAlsoByWindow`] (every trigger,
//! accumulation mode and merging window fn — an SDK's through its
//! harness); the trait is the seam for engine-specific groupings (e.g.
//! spilling ones).

use std::collections::HashMap;
use std::sync::Arc;

use oxbeam_fn_api::{Bundle, BundleProcessor, Metrics, NoSideInputs, OutputSink};
use oxbeam_model::coders::Context;
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};
use oxbeam_runner_core::coder::read_interval_window;
use oxbeam_runner_core::compaction::CompactionSpec;
use oxbeam_runner_core::gabw::{CompactionBatch, FiredPane, GroupAlsoByWindow, encode_grouped};
use oxbeam_runner_core::{Coder, WindowCoderKind, WindowedHeader, WindowingStrategy};

use crate::Error;
use crate::shuffle::WindowMerger;

/// Panes fired per [`Grouping::advance`] when more are due.
pub(crate) const FIRE_BATCH: usize = 128;

/// A window's accumulators are compacted once it buffers this many.
const COMPACT_AT_VALUES: usize = 4;
/// Compaction runs once this many windows are due for it (one bundle).
const COMPACT_BATCH_WINDOWS: usize = 64;

/// The runner side of one GroupByKey over all keys.
pub(crate) trait Grouping: Send {
    /// Adds one value (nested encoding) of `key` in `window`.
    ///
    /// # Errors
    /// A failure of the SDK merging the key's windows; the grouping is
    /// unchanged.
    fn process(
        &mut self,
        key: &[u8],
        window: BoundedWindow,
        timestamp: Timestamp,
        value: &[u8],
    ) -> Result<(), Error>;

    /// Fires what the new input watermark and processing time make ready,
    /// calling `emit` with each output element: a nested windowed
    /// `KV<key, Iterable<value>>`. Stops after about [`FIRE_BATCH`] panes
    /// if more are due and returns `true`: the engine hands those
    /// downstream, then calls again for the rest (whose windows still hold
    /// the output watermark).
    ///
    /// # Errors
    /// What `emit` returns.
    fn advance(
        &mut self,
        input_watermark: Timestamp,
        processing_time: Timestamp,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<bool, Error>;

    /// The output watermark hold of data waiting to fire.
    fn watermark_hold(&self) -> Option<Timestamp>;

    /// The earliest processing time at which [`Grouping::advance`] may fire.
    fn next_processing_time(&self) -> Option<Timestamp>;

    /// Elements dropped for arriving after their window expired.
    fn dropped_late(&self) -> u64;

    /// Its state, as bytes for a checkpoint.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces its state with a [`Grouping::snapshot`]'s.
    ///
    /// # Errors
    /// If the bytes are not a snapshot of this kind of grouping.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), Error>;

    /// Buffered values merged away by compaction so far.
    fn compacted(&self) -> u64 {
        0
    }

    /// Does maintenance work that is due (compacting buffered
    /// accumulators), returning the user metrics it reported.
    ///
    /// # Errors
    /// A failure of the user code it ran; the grouping is unchanged.
    fn maintain(&mut self) -> Result<Metrics, Error> {
        Ok(Metrics::default())
    }
}

/// [`GroupAlsoByWindow`] as a [`Grouping`].
pub(crate) struct Gabw {
    inner: GroupAlsoByWindow,
    window_coder: WindowCoderKind,
    fired: Vec<FiredPane>,
    buf: Vec<u8>,
    compactor: Option<Compactor>,
    compacted: u64,
    /// Merges windows for a merging window fn of the SDK.
    merger: Option<Arc<dyn WindowMerger>>,
}

/// Merges the accumulators a lifted combine's grouping buffers, with the
/// pipeline's CombineFn (see [`oxbeam_runner_core::compaction`]).
pub(crate) struct Compactor {
    /// The GroupByKey, for error messages.
    transform: String,
    spec: Box<CompactionSpec>,
    processor: Box<dyn BundleProcessor>,
    /// `KV<key, accumulator>`: what the sink emits.
    key_value: Coder,
    window_coder: Coder,
}

impl Compactor {
    pub(crate) fn new(
        transform: &str,
        spec: Box<CompactionSpec>,
        processor: Box<dyn BundleProcessor>,
        key_value: Coder,
        window_coder: Coder,
    ) -> Self {
        Compactor {
            transform: transform.to_string(),
            spec,
            processor,
            key_value,
            window_coder,
        }
    }

    fn bad(&self, e: impl std::fmt::Display) -> Error {
        Error::Execution(oxbeam_fn_api::Error::invalid(
            format!(
                "accumulators merged for GroupByKey '{}' ({})",
                self.transform, self.spec.sink
            ),
            e,
        ))
    }

    /// One merged accumulator per `(key, window, accumulators)`, in order.
    fn merge(
        &mut self,
        windows: &CompactionBatch<'_>,
        window_coder: &WindowCoderKind,
        metrics: &mut Metrics,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let mut input = Vec::new();
        for (key, window, values) in windows {
            encode_grouped(
                key,
                window,
                window.max_timestamp(),
                &PaneInfo::NO_FIRING,
                values,
                window_coder,
                &mut input,
            );
        }
        let mut out = Collect {
            sink: &self.spec.sink,
            bytes: Vec::new(),
        };
        {
            let mut bundle = Bundle::new(
                vec![(self.spec.source.as_str(), input.as_slice())],
                &mut out,
                &NoSideInputs,
                metrics,
            );
            self.processor
                .process_bundle(&mut bundle)
                .map_err(Error::Execution)?;
        }
        // One output per input, matched by key and window (an executor
        // may reorder a bundle's outputs).
        let mut merged: HashMap<(&[u8], BoundedWindow), &[u8]> = HashMap::new();
        let mut rest = out.bytes.as_slice();
        while !rest.is_empty() {
            let h = WindowedHeader::parse(&rest, &self.window_coder).map_err(|e| self.bad(e))?;
            let mut value = h.value;
            let (key, acc) = self
                .key_value
                .split_kv(&mut value, Context::Nested)
                .map_err(|e| self.bad(e))?;
            let window = match self.window_coder {
                Coder::GlobalWindow => BoundedWindow::Global,
                _ => {
                    let mut w = h.windows;
                    let (start, end) = read_interval_window(&mut w).map_err(|e| self.bad(e))?;
                    BoundedWindow::Interval {
                        start: Timestamp::from_millis(start),
                        end: Timestamp::from_millis(end),
                    }
                }
            };
            let consumed = rest.len() - value.len();
            merged.insert((key, window), acc);
            rest = &rest[consumed..];
        }
        windows
            .iter()
            .map(|(key, window, _)| {
                merged
                    .get(&(*key, *window))
                    .map(|acc| acc.to_vec())
                    .ok_or_else(|| self.bad(format!("no merged accumulator for window {window:?}")))
            })
            .collect()
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.processor.teardown();
    }
}

/// Collects what a compaction bundle emits.
struct Collect<'a> {
    sink: &'a str,
    bytes: Vec<u8>,
}

impl OutputSink for Collect<'_> {
    fn emit(&mut self, sink: &str, element: &[u8]) -> oxbeam_fn_api::Result<()> {
        if sink != self.sink {
            return Err(oxbeam_fn_api::Error::Internal(format!(
                "compaction output for unknown sink {sink}"
            )));
        }
        self.bytes.extend_from_slice(element);
        Ok(())
    }
}

impl Gabw {
    /// # Errors
    /// [`Error::Plan`] for strategies the grouping does not support.
    pub fn new(
        strategy: &WindowingStrategy,
        merger: Option<Arc<dyn WindowMerger>>,
    ) -> Result<Self, Error> {
        Ok(Gabw {
            inner: match merger {
                Some(_) => GroupAlsoByWindow::with_sdk_merging(strategy)?,
                None => GroupAlsoByWindow::new(strategy)?,
            },
            merger,
            window_coder: strategy.window_coder,
            fired: Vec::new(),
            buf: Vec::new(),
            compactor: None,
            compacted: 0,
        })
    }

    /// Compacts buffered accumulators with `compactor`.
    pub fn with_compactor(mut self, compactor: Compactor) -> Self {
        self.inner.set_compaction_threshold(Some(COMPACT_AT_VALUES));
        self.compactor = Some(compactor);
        self
    }
}

impl Grouping for Gabw {
    fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), Error> {
        Ok(self.inner.restore(snapshot)?)
    }

    fn process(
        &mut self,
        key: &[u8],
        window: BoundedWindow,
        timestamp: Timestamp,
        value: &[u8],
    ) -> Result<(), Error> {
        match &self.merger {
            Some(m) => self
                .inner
                .process_merging(key, window, timestamp, value, |ws| m.merge(key, ws)),
            None => {
                self.inner.process(key, window, timestamp, value);
                Ok(())
            }
        }
    }

    fn advance(
        &mut self,
        input_watermark: Timestamp,
        processing_time: Timestamp,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let more = self.inner.advance_up_to(
            input_watermark,
            processing_time,
            &mut self.fired,
            FIRE_BATCH,
        );
        for pane in self.fired.drain(..) {
            self.buf.clear();
            pane.encode(&self.window_coder, &mut self.buf);
            emit(&self.buf)?;
        }
        Ok(more)
    }

    fn watermark_hold(&self) -> Option<Timestamp> {
        self.inner.watermark_hold()
    }

    fn next_processing_time(&self) -> Option<Timestamp> {
        self.inner.next_processing_time()
    }

    fn dropped_late(&self) -> u64 {
        self.inner.dropped_late()
    }

    fn maintain(&mut self) -> Result<Metrics, Error> {
        let mut metrics = Metrics::default();
        let Some(compactor) = &mut self.compactor else {
            return Ok(metrics);
        };
        if self.inner.crowded_windows() < COMPACT_BATCH_WINDOWS {
            return Ok(metrics);
        }
        let window_coder = self.window_coder;
        let merged = self
            .inner
            .compact(|windows| compactor.merge(windows, &window_coder, &mut metrics))?;
        self.compacted += merged as u64;
        Ok(metrics)
    }

    fn compacted(&self) -> u64 {
        self.compacted
    }
}
