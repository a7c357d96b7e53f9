//! Materialized PCollections: lists of immutable chunks of whole encoded
//! elements, and the per-bundle writers that fill them (and feed shuffles).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::Error;
use crate::shuffle::{Shuffle, ShuffleWriter};

/// Whole nested windowed values, back to back. Immutable once written, so
/// any number of readers (stages, Flattens, side inputs) share it.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub bytes: Vec<u8>,
}

/// A materialized PCollection.
pub(crate) struct Slot {
    pub id: String,
    /// Someone reads the chunks (a stage, a Flatten step or a side input);
    /// otherwise elements only feed shuffles and are not kept.
    pub buffered: bool,
    /// Shuffles (indices into the job's shuffles) fed by this PCollection.
    pub shuffles: Vec<usize>,
    pub chunks: Mutex<Vec<Arc<Chunk>>>,
    pub elements: AtomicU64,
}

impl Slot {
    pub fn new(id: &str) -> Self {
        Slot {
            id: id.to_string(),
            buffered: false,
            shuffles: Vec::new(),
            chunks: Mutex::new(Vec::new()),
            elements: AtomicU64::new(0),
        }
    }

    pub fn chunks(&self) -> Vec<Arc<Chunk>> {
        self.chunks.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Drops the chunks (every reader is done); readers that took them
    /// keep theirs.
    pub fn release(&self) {
        if let Ok(mut c) = self.chunks.lock() {
            *c = Vec::new();
        }
    }
}

/// Writes one bundle's elements for one PCollection. Nothing is visible to
/// readers until [`SlotWriter::commit`]: a failed bundle leaves no output.
pub(crate) struct SlotWriter<'a> {
    slot: &'a Slot,
    chunk_bytes: usize,
    current: Vec<u8>,
    done: Vec<Arc<Chunk>>,
    count: u64,
    shuffles: Vec<ShuffleWriter<'a>>,
}

impl<'a> SlotWriter<'a> {
    pub fn new(slot: &'a Slot, shuffles: &'a [Shuffle], chunk_bytes: usize) -> Self {
        SlotWriter {
            slot,
            chunk_bytes,
            current: Vec::new(),
            done: Vec::new(),
            count: 0,
            shuffles: slot
                .shuffles
                .iter()
                .map(|&i| ShuffleWriter::new(&shuffles[i]))
                .collect(),
        }
    }

    /// Appends one encoded element.
    #[inline]
    pub fn emit(&mut self, element: &[u8]) -> Result<(), Error> {
        self.count += 1;
        if self.slot.buffered {
            if self.current.capacity() == 0 {
                self.current
                    .reserve(self.chunk_bytes.min(1 << 16).max(element.len()));
            }
            self.current.extend_from_slice(element);
            if self.current.len() >= self.chunk_bytes {
                self.done.push(Arc::new(Chunk {
                    bytes: std::mem::take(&mut self.current),
                }));
            }
        }
        for s in &mut self.shuffles {
            s.add(element)?;
        }
        Ok(())
    }

    /// Publishes everything written.
    pub fn commit(mut self) -> Result<(), Error> {
        if !self.current.is_empty() {
            self.done.push(Arc::new(Chunk {
                bytes: std::mem::take(&mut self.current),
            }));
        }
        if !self.done.is_empty() {
            let mut chunks = self
                .slot
                .chunks
                .lock()
                .map_err(|_| Error::Internal("poisoned chunk list".into()))?;
            chunks.append(&mut self.done);
        }
        self.slot.elements.fetch_add(self.count, Ordering::Relaxed);
        for s in self.shuffles {
            s.commit()?;
        }
        Ok(())
    }
}
