//! GroupByKey in the streaming engine: a [`Grouping`] is fed elements as
//! they arrive and fires panes as the input watermark and processing time
//! advance.
//!
//! The engine uses runner-core's [`GroupAlsoByWindow`] (every trigger,
//! accumulation mode and merging window fn); the trait is the seam for
//! engine-specific groupings (e.g. spilling ones).

use oxbeam_model::window::{BoundedWindow, Timestamp};
use oxbeam_runner_core::gabw::{FiredPane, GroupAlsoByWindow};
use oxbeam_runner_core::{WindowCoderKind, WindowingStrategy};

use crate::Error;

/// The runner side of one GroupByKey over all keys.
pub(crate) trait Grouping: Send {
    /// Adds one value (nested encoding) of `key` in `window`.
    fn process(&mut self, key: &[u8], window: BoundedWindow, timestamp: Timestamp, value: &[u8]);

    /// Fires what the new input watermark and processing time make ready,
    /// calling `emit` with each output element: a nested windowed
    /// `KV<key, Iterable<value>>`.
    ///
    /// # Errors
    /// What `emit` returns.
    fn advance(
        &mut self,
        input_watermark: Timestamp,
        processing_time: Timestamp,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error>;

    /// The output watermark hold of data waiting to fire.
    fn watermark_hold(&self) -> Option<Timestamp>;

    /// The earliest processing time at which [`Grouping::advance`] may fire.
    fn next_processing_time(&self) -> Option<Timestamp>;

    /// Elements dropped for arriving after their window expired.
    fn dropped_late(&self) -> u64;
}

/// [`GroupAlsoByWindow`] as a [`Grouping`].
pub(crate) struct Gabw {
    inner: GroupAlsoByWindow,
    window_coder: WindowCoderKind,
    fired: Vec<FiredPane>,
    buf: Vec<u8>,
}

impl Gabw {
    /// # Errors
    /// [`Error::Plan`] for strategies the grouping does not support.
    pub fn new(strategy: &WindowingStrategy) -> Result<Self, Error> {
        Ok(Gabw {
            inner: GroupAlsoByWindow::new(strategy)?,
            window_coder: strategy.window_coder,
            fired: Vec::new(),
            buf: Vec::new(),
        })
    }
}

impl Grouping for Gabw {
    fn process(&mut self, key: &[u8], window: BoundedWindow, timestamp: Timestamp, value: &[u8]) {
        self.inner.process(key, window, timestamp, value);
    }

    fn advance(
        &mut self,
        input_watermark: Timestamp,
        processing_time: Timestamp,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.inner
            .advance(input_watermark, processing_time, &mut self.fired);
        for pane in self.fired.drain(..) {
            self.buf.clear();
            pane.encode(&self.window_coder, &mut self.buf);
            emit(&self.buf)?;
        }
        Ok(())
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
}
