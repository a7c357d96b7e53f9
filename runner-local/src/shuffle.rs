//! GroupByKey: a hash-partitioned shuffle keyed by (encoded key, encoded
//! window), fed incrementally by producing bundles, emitted per partition
//! once the input watermark reaches +∞.
//!
//! Producers parse each element's windowed-value header in place, split the
//! key off with the key coder's `skip`, and append one record per window to
//! a bundle-local buffer per partition; the buffers move (no copy) into the
//! partitions when the bundle commits. Above the memory budget the largest
//! partition is sorted and spilled to a temp file as a run; emission sorts
//! (or merges runs) and writes one `KV<key, Iterable<value>>` per group.
//!
//! Record layout: `varint klen, key, varint wlen, window, i64 BE timestamp,
//! varint vlen, value`.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use oxbeam_model::coders::wire;
use oxbeam_model::urns::beam_constants::constants;
use oxbeam_model::window::{BoundedWindow, Timestamp};
use oxbeam_runner_core::coder::{
    Context, read_interval_window, read_varint, write_interval_window, write_varint,
};
use oxbeam_runner_core::gabw::{FiredPane, GroupAlsoByWindow};
use oxbeam_runner_core::{
    Coder, GroupByKeyStep, OutputTime, WindowCoderKind, WindowedHeader, WindowingStrategy,
};

use crate::Error;
use crate::data::SlotWriter;

pub(crate) fn global_window_max() -> i64 {
    constants::GLOBAL_WINDOW_MAX_TIMESTAMP_MILLIS
        .parse()
        .unwrap_or(i64::MAX / 1000 - 86_400_000)
}

#[derive(Default)]
struct Partition {
    blocks: Vec<Vec<u8>>,
    bytes: u64,
    runs: Vec<File>,
}

/// The shuffle of one GroupByKey step.
pub(crate) struct Shuffle {
    pub transform: String,
    key_coder: Coder,
    window_coder: Coder,
    merging: bool,
    output_time: OutputTime,
    /// The encoded pane of each grouped output of the one-pane fast path
    /// ([`WindowingStrategy::batch_pane`]).
    pane: Vec<u8>,
    /// Set when the strategy needs Beam's trigger machinery (a non-default
    /// trigger or accumulating panes): groups then go through
    /// [`GroupAlsoByWindow`] instead of the one-pane fast path.
    triggered: Option<WindowingStrategy>,
    /// For merging window fns the runner does not know: the SDK merges.
    merger: Option<Arc<dyn WindowMerger>>,
    partitions: Vec<Mutex<Partition>>,
    partition_bytes: Vec<AtomicU64>,
    in_memory: AtomicU64,
    budget: u64,
    /// Runs spilled so far (for tests and reports).
    pub spilled_runs: AtomicU64,
}

fn internal(msg: impl Into<String>) -> Error {
    Error::Internal(msg.into())
}

impl Shuffle {
    pub fn new(step: &GroupByKeyStep, partitions: usize, budget: u64) -> Self {
        let partitions = partitions.max(1);
        let windowing = step.windowing.for_batch();
        Shuffle {
            transform: step.unique_name.clone(),
            key_coder: step.key_coder.clone(),
            window_coder: match step.windowing.window_coder {
                WindowCoderKind::Global => Coder::GlobalWindow,
                _ => Coder::IntervalWindow,
            },
            merging: step.windowing.merging,
            output_time: step.windowing.output_time,
            pane: {
                let mut pane = Vec::new();
                wire::write_pane(&mut pane, &windowing.batch_pane());
                pane
            },
            triggered: (!windowing.is_simple_batch_grouping()).then_some(windowing),
            merger: None,
            partitions: (0..partitions)
                .map(|_| Mutex::new(Partition::default()))
                .collect(),
            partition_bytes: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            in_memory: AtomicU64::new(0),
            budget,
            spilled_runs: AtomicU64::new(0),
        }
    }

    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// Has `merger` merge each key's windows (a window fn the runner does
    /// not know); groups are then formed per merged window.
    pub fn with_merger(mut self, merger: Arc<dyn WindowMerger>) -> Self {
        self.merger = Some(merger);
        self
    }

    fn bad_input(&self, e: impl std::fmt::Display) -> Error {
        Error::Execution(oxbeam_fn_api::Error::invalid(
            format!("input element of GroupByKey '{}'", self.transform),
            e,
        ))
    }

    /// Spills the largest partitions until the in-memory data fits the budget.
    fn enforce_budget(&self) -> Result<(), Error> {
        while self.in_memory.load(Ordering::Relaxed) > self.budget {
            let (largest, bytes) = self
                .partition_bytes
                .iter()
                .enumerate()
                .map(|(i, b)| (i, b.load(Ordering::Relaxed)))
                .max_by_key(|(_, b)| *b)
                .unwrap_or((0, 0));
            if bytes == 0 {
                return Ok(());
            }
            let mut p = self.partitions[largest]
                .lock()
                .map_err(|_| internal("poisoned partition"))?;
            let blocks = std::mem::take(&mut p.blocks);
            let freed = std::mem::take(&mut p.bytes);
            self.partition_bytes[largest].store(0, Ordering::Relaxed);
            self.in_memory.fetch_sub(freed, Ordering::Relaxed);
            if blocks.is_empty() {
                continue;
            }
            let run = write_run(&blocks)?;
            p.runs.push(run);
            self.spilled_runs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Emits every group of partition `index` into `out`.
    pub fn emit_partition(&self, index: usize, out: &mut SlotWriter<'_>) -> Result<(), Error> {
        let (blocks, runs) = {
            let mut p = self.partitions[index]
                .lock()
                .map_err(|_| internal("poisoned partition"))?;
            let bytes = std::mem::take(&mut p.bytes);
            self.in_memory.fetch_sub(bytes, Ordering::Relaxed);
            self.partition_bytes[index].store(0, Ordering::Relaxed);
            (std::mem::take(&mut p.blocks), std::mem::take(&mut p.runs))
        };
        if let Some(strategy) = &self.triggered {
            let mut grouper =
                TriggeredGrouper::new(strategy, &self.transform, self.merger.clone())?;
            if runs.is_empty() {
                for e in sorted_index(&blocks)? {
                    grouper.push(&record_at(&blocks, e)?, out)?;
                }
            } else {
                let mut runs = runs;
                if !blocks.is_empty() {
                    runs.push(write_run(&blocks)?);
                }
                drop(blocks);
                merge_runs(runs, |r| grouper.push(r, out))?;
            }
            return grouper.flush(out);
        }
        let mut grouper = Grouper::new(self.merging, self.output_time, &self.pane);
        grouper.merger = self.merger.clone();
        if runs.is_empty() {
            for e in sorted_index(&blocks)? {
                grouper.push(&record_at(&blocks, e)?, out)?;
            }
        } else {
            let mut runs = runs;
            if !blocks.is_empty() {
                runs.push(write_run(&blocks)?);
            }
            drop(blocks);
            merge_runs(runs, |r| grouper.push(r, out))?;
        }
        grouper.finish(out)
    }
}

/// Merges one key's windows for a grouping (see
/// `oxbeam_runner_core::merge_windows`).
pub(crate) trait WindowMerger: Send + Sync {
    /// Every window of `windows` mapped to the window it merges into.
    fn merge(
        &self,
        key: &[u8],
        windows: &[(i64, i64)],
    ) -> Result<oxbeam_runner_core::merge_windows::WindowMap, Error>;
}

/// One record, borrowed.
pub(crate) struct Rec<'a> {
    raw: &'a [u8],
    key: &'a [u8],
    window: &'a [u8],
    ts: i64,
    value: &'a [u8],
}

fn parse_record<'a>(input: &mut &'a [u8]) -> Result<Rec<'a>, Error> {
    let start = *input;
    fn take<'b>(input: &mut &'b [u8]) -> Result<&'b [u8], Error> {
        let n = read_varint(input).map_err(|_| internal("corrupt shuffle record"))? as usize;
        if n > input.len() {
            return Err(internal("corrupt shuffle record"));
        }
        let (h, rest) = input.split_at(n);
        *input = rest;
        Ok(h)
    }
    let mut rest: &'a [u8] = input;
    let key = take(&mut rest)?;
    let window = take(&mut rest)?;
    let (ts, r) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| internal("corrupt shuffle record"))?;
    rest = r;
    let value = take(&mut rest)?;
    let raw = &start[..start.len() - rest.len()];
    *input = rest;
    Ok(Rec {
        raw,
        key,
        window,
        ts: i64::from_be_bytes(*ts),
        value,
    })
}

fn write_record(buf: &mut Vec<u8>, key: &[u8], window: &[u8], ts: i64, value: &[u8]) {
    write_varint(buf, key.len() as u64);
    buf.extend_from_slice(key);
    write_varint(buf, window.len() as u64);
    buf.extend_from_slice(window);
    buf.extend_from_slice(&ts.to_be_bytes());
    write_varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// Where a record starts: `(hash of its key, block, offset)`.
type IndexEntry = (u64, u32, u32);

fn record_at(blocks: &[Vec<u8>], (_, block, offset): IndexEntry) -> Result<Rec<'_>, Error> {
    let b = blocks
        .get(block as usize)
        .ok_or_else(|| internal("bad shuffle index"))?;
    parse_record(
        &mut b
            .get(offset as usize..)
            .ok_or_else(|| internal("bad shuffle index"))?,
    )
}

/// The records of `blocks` in shuffle order: by key hash, then key, then
/// window. Equal keys are adjacent (what grouping and session merging need).
///
/// Records are first grouped by (key, window) in a hash table, so only the
/// groups are sorted; records then follow their group by a counting sort.
/// The index costs 16 bytes per record however large the records are.
fn sorted_index(blocks: &[Vec<u8>]) -> Result<Vec<IndexEntry>, Error> {
    struct Group<'a> {
        hash: u64,
        key: &'a [u8],
        window: &'a [u8],
        count: u32,
    }
    let mut table: HashMap<(&[u8], &[u8]), u32, BuildHasherDefault<FastHasher>> =
        HashMap::default();
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut records: Vec<(u32, u32, u32)> = Vec::new();
    for (b, block) in blocks.iter().enumerate() {
        let mut input = &block[..];
        while !input.is_empty() {
            let offset = block.len() - input.len();
            let r = parse_record(&mut input)?;
            let g = *table.entry((r.key, r.window)).or_insert_with(|| {
                groups.push(Group {
                    hash: hash(r.key),
                    key: r.key,
                    window: r.window,
                    count: 0,
                });
                (groups.len() - 1) as u32
            });
            groups[g as usize].count += 1;
            records.push((g, b as u32, offset as u32));
        }
    }
    drop(table);
    let mut order: Vec<u32> = (0..groups.len() as u32).collect();
    order.sort_unstable_by(|&x, &y| {
        let (a, b) = (&groups[x as usize], &groups[y as usize]);
        a.hash
            .cmp(&b.hash)
            .then_with(|| (a.key, a.window).cmp(&(b.key, b.window)))
    });
    // Start position of each group in the output.
    let mut start = vec![0usize; groups.len()];
    let mut at = 0;
    for &g in &order {
        start[g as usize] = at;
        at += groups[g as usize].count as usize;
    }
    let mut index: Vec<IndexEntry> = vec![(0, 0, 0); records.len()];
    for (g, b, o) in records {
        let slot = &mut start[g as usize];
        index[*slot] = (groups[g as usize].hash, b, o);
        *slot += 1;
    }
    Ok(index)
}

/// A fast non-cryptographic hasher for the grouping table (keys come from
/// the pipeline, not an adversary).
#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = (self.0.rotate_left(5) ^ hash(bytes)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// Shuffle order of two records (see [`sorted_index`]).
fn order(a: &Rec<'_>, b: &Rec<'_>) -> std::cmp::Ordering {
    hash(a.key)
        .cmp(&hash(b.key))
        .then_with(|| (a.key, a.window).cmp(&(b.key, b.window)))
}

fn io(e: std::io::Error) -> Error {
    Error::Spill(e)
}

/// Sorts the records of `blocks` and writes them to a temp file, each
/// framed by its u32 LE length.
fn write_run(blocks: &[Vec<u8>]) -> Result<File, Error> {
    let file = tempfile::tempfile().map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    for e in sorted_index(blocks)? {
        let r = record_at(blocks, e)?;
        w.write_all(&(r.raw.len() as u32).to_le_bytes())
            .map_err(io)?;
        w.write_all(r.raw).map_err(io)?;
    }
    let mut file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(file)
}

struct RunReader {
    reader: BufReader<File>,
    buf: Vec<u8>,
    live: bool,
}

impl RunReader {
    fn advance(&mut self) -> Result<(), Error> {
        let mut len = [0u8; 4];
        match self.reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.live = false;
                return Ok(());
            }
            Err(e) => return Err(io(e)),
        }
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.reader.read_exact(&mut self.buf).map_err(io)?;
        Ok(())
    }

    fn current(&self) -> Result<Rec<'_>, Error> {
        parse_record(&mut &self.buf[..])
    }
}

/// Merges sorted runs, calling `f` on each record in shuffle order.
fn merge_runs(
    runs: Vec<File>,
    mut f: impl FnMut(&Rec<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut readers: Vec<RunReader> = runs
        .into_iter()
        .map(|file| RunReader {
            reader: BufReader::with_capacity(1 << 16, file),
            buf: Vec::new(),
            live: true,
        })
        .collect();
    for r in &mut readers {
        r.advance()?;
    }
    loop {
        let mut best: Option<usize> = None;
        for i in 0..readers.len() {
            if !readers[i].live {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let (x, y) = (readers[i].current()?, readers[b].current()?);
                    if order(&x, &y).is_lt() {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        let Some(b) = best else { return Ok(()) };
        f(&readers[b].current()?)?;
        readers[b].advance()?;
    }
}

/// Per-bundle writer into a shuffle: one buffer per partition.
pub(crate) struct ShuffleWriter<'a> {
    shuffle: &'a Shuffle,
    parts: Vec<Vec<u8>>,
    /// Buffers that reached [`MAX_BLOCK`], by partition, waiting for commit.
    full: Vec<(usize, Vec<u8>)>,
}

/// Largest block of records: offsets in the sort index are `u32`.
const MAX_BLOCK: usize = 1 << 28;

#[inline]
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    h ^ (h >> 32)
}

impl<'a> ShuffleWriter<'a> {
    pub fn new(shuffle: &'a Shuffle) -> Self {
        ShuffleWriter {
            shuffle,
            parts: vec![Vec::new(); shuffle.partitions.len()],
            full: Vec::new(),
        }
    }

    /// Adds one windowed `KV` element: one record per window.
    #[inline]
    pub fn add(&mut self, element: &[u8]) -> Result<(), Error> {
        let s = self.shuffle;
        let h = WindowedHeader::parse(&element, &s.window_coder).map_err(|e| s.bad_input(e))?;
        let mut rest = h.value;
        s.key_coder
            .skip(&mut rest, Context::Nested)
            .map_err(|e| s.bad_input(e))?;
        let key = &h.value[..h.value.len() - rest.len()];
        let value = rest;
        let p = (hash(key) % self.parts.len() as u64) as usize;
        if self.parts[p].len() > MAX_BLOCK {
            let full = std::mem::take(&mut self.parts[p]);
            self.full.push((p, full));
        }
        let buf = &mut self.parts[p];
        match s.window_coder {
            Coder::GlobalWindow => {
                for _ in 0..h.window_count {
                    write_record(buf, key, &[], h.timestamp, value);
                }
            }
            _ => {
                let mut windows = h.windows;
                for _ in 0..h.window_count {
                    let before = windows;
                    read_interval_window(&mut windows).map_err(|e| s.bad_input(e))?;
                    let w = &before[..before.len() - windows.len()];
                    write_record(buf, key, w, h.timestamp, value);
                }
            }
        }
        Ok(())
    }

    /// Hands the buffers to the partitions, spilling if over budget.
    pub fn commit(self) -> Result<(), Error> {
        let s = self.shuffle;
        let mut added = 0;
        let blocks = self.parts.into_iter().enumerate().chain(self.full);
        for (i, buf) in blocks {
            if buf.is_empty() {
                continue;
            }
            let n = buf.len() as u64;
            let mut p = s.partitions[i]
                .lock()
                .map_err(|_| internal("poisoned partition"))?;
            p.bytes += n;
            p.blocks.push(buf);
            s.partition_bytes[i].fetch_add(n, Ordering::Relaxed);
            added += n;
        }
        if s.in_memory.fetch_add(added, Ordering::Relaxed) + added > s.budget {
            s.enforce_budget()?;
        }
        Ok(())
    }
}

/// Builds grouped output elements from records in shuffle order (equal
/// keys adjacent, and equal windows adjacent within a key).
struct Grouper<'a> {
    merging: bool,
    output_time: OutputTime,
    pane: &'a [u8],
    global_max: i64,
    elem: Vec<u8>,
    open: bool,
    key: Vec<u8>,
    window: Vec<u8>,
    count: u32,
    count_pos: usize,
    min_ts: i64,
    max_ts: i64,
    /// Sessions: (start, end, ts, value offset, value len) of the current key.
    session: Vec<(i64, i64, i64, usize, usize)>,
    session_values: Vec<u8>,
    /// Merges windows instead of the sessions rule.
    merger: Option<Arc<dyn WindowMerger>>,
}

impl<'a> Grouper<'a> {
    fn new(merging: bool, output_time: OutputTime, pane: &'a [u8]) -> Self {
        Grouper {
            merging,
            output_time,
            pane,
            global_max: global_window_max(),
            elem: Vec::new(),
            open: false,
            key: Vec::new(),
            window: Vec::new(),
            count: 0,
            count_pos: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            session: Vec::new(),
            session_values: Vec::new(),
            merger: None,
        }
    }

    fn push(&mut self, r: &Rec<'_>, out: &mut SlotWriter<'_>) -> Result<(), Error> {
        if self.merging {
            if !self.open || r.key != self.key.as_slice() {
                self.flush_sessions(out)?;
                self.key.clear();
                self.key.extend_from_slice(r.key);
                self.open = true;
            }
            let (start, end) =
                read_interval_window(&mut &r.window[..]).map_err(|e| internal(e.0))?;
            let off = self.session_values.len();
            self.session_values.extend_from_slice(r.value);
            self.session.push((start, end, r.ts, off, r.value.len()));
            return Ok(());
        }
        if !(self.open && r.key == self.key.as_slice() && r.window == self.window.as_slice()) {
            self.flush(out)?;
            self.key.clear();
            self.key.extend_from_slice(r.key);
            self.window.clear();
            self.window.extend_from_slice(r.window);
            self.start_group(r.window);
        }
        self.add_value(r.ts, r.value);
        Ok(())
    }

    fn start_group(&mut self, window: &[u8]) {
        self.open = true;
        self.elem.clear();
        self.elem.extend_from_slice(&[0; 8]);
        self.elem.extend_from_slice(&1i32.to_be_bytes());
        self.elem.extend_from_slice(window);
        self.elem.extend_from_slice(self.pane);
        self.elem.extend_from_slice(&self.key);
        self.count_pos = self.elem.len();
        self.elem.extend_from_slice(&[0; 4]);
        self.count = 0;
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
    }

    #[inline]
    fn add_value(&mut self, ts: i64, value: &[u8]) {
        self.elem.extend_from_slice(value);
        self.count += 1;
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
    }

    fn end_group(&mut self, window_max: i64, out: &mut SlotWriter<'_>) -> Result<(), Error> {
        let ts = match self.output_time {
            OutputTime::EndOfWindow => window_max,
            OutputTime::EarliestInPane => self.min_ts,
            OutputTime::LatestInPane => self.max_ts,
        };
        self.elem[..8].copy_from_slice(&((ts as u64) ^ (1u64 << 63)).to_be_bytes());
        let c = self.count_pos;
        self.elem[c..c + 4].copy_from_slice(&(self.count as i32).to_be_bytes());
        out.emit(&self.elem)
    }

    fn flush(&mut self, out: &mut SlotWriter<'_>) -> Result<(), Error> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let window_max = if self.window.is_empty() {
            self.global_max
        } else {
            let (_, end) =
                read_interval_window(&mut &self.window[..]).map_err(|e| internal(e.0))?;
            end.saturating_sub(1)
        };
        self.end_group(window_max, out)
    }

    /// Merges the current key's session windows and emits one group per
    /// merged window.
    fn flush_sessions(&mut self, out: &mut SlotWriter<'_>) -> Result<(), Error> {
        if !self.open || self.session.is_empty() {
            return Ok(());
        }
        let mut recs = std::mem::take(&mut self.session);
        let values = std::mem::take(&mut self.session_values);
        if let Some(merger) = &self.merger {
            let mut windows: Vec<(i64, i64)> = recs.iter().map(|r| (r.0, r.1)).collect();
            windows.sort_unstable();
            windows.dedup();
            let merged = merger.merge(&self.key, &windows)?;
            for r in recs.iter_mut() {
                if let Some(&(start, end)) = merged.get(&(r.0, r.1)) {
                    (r.0, r.1) = (start, end);
                }
            }
        }
        recs.sort_by_key(|r| (r.0, r.1));
        let mut i = 0;
        let mut window = Vec::new();
        while i < recs.len() {
            let (start, mut end) = (recs[i].0, recs[i].1);
            let mut j = i + 1;
            if self.merger.is_some() {
                // Windows are merged already: group equal ones.
                while j < recs.len() && (recs[j].0, recs[j].1) == (start, end) {
                    j += 1;
                }
            } else {
                while j < recs.len() && recs[j].0 < end {
                    end = end.max(recs[j].1);
                    j += 1;
                }
            }
            window.clear();
            write_interval_window(&mut window, start, end);
            self.start_group(&window);
            for r in &recs[i..j] {
                self.add_value(r.2, &values[r.3..r.3 + r.4]);
            }
            self.open = false;
            self.end_group(end.saturating_sub(1), out)?;
            i = j;
        }
        recs.clear();
        self.session = recs;
        let mut values = values;
        values.clear();
        self.session_values = values;
        Ok(())
    }

    fn finish(&mut self, out: &mut SlotWriter<'_>) -> Result<(), Error> {
        if self.merging {
            self.flush_sessions(out)
        } else {
            self.flush(out)
        }
    }
}

/// Groups records in shuffle order through [`GroupAlsoByWindow`], one key
/// at a time: all of a key's elements, then the watermark (and processing
/// time) to +∞, as Beam's batch runners do; panes are emitted in the same
/// encoding as the fast path's groups.
struct TriggeredGrouper<'s> {
    strategy: &'s WindowingStrategy,
    transform: &'s str,
    /// For a merging window fn of the SDK: merges each key's windows.
    merger: Option<Arc<dyn WindowMerger>>,
    gabw: GroupAlsoByWindow,
    open: bool,
    key: Vec<u8>,
    panes: Vec<FiredPane>,
    elem: Vec<u8>,
}

impl<'s> TriggeredGrouper<'s> {
    fn new(
        strategy: &'s WindowingStrategy,
        transform: &'s str,
        merger: Option<Arc<dyn WindowMerger>>,
    ) -> Result<Self, Error> {
        Ok(TriggeredGrouper {
            strategy,
            transform,
            gabw: Self::fresh(strategy, transform, merger.is_some())?,
            merger,
            open: false,
            key: Vec::new(),
            panes: Vec::new(),
            elem: Vec::new(),
        })
    }

    fn fresh(
        strategy: &WindowingStrategy,
        transform: &str,
        sdk_merging: bool,
    ) -> Result<GroupAlsoByWindow, Error> {
        if sdk_merging {
            GroupAlsoByWindow::with_sdk_merging(strategy)
        } else {
            GroupAlsoByWindow::new(strategy)
        }
        .map_err(|e| internal(format!("GroupByKey '{transform}': {e}")))
    }

    fn push(&mut self, r: &Rec<'_>, out: &mut SlotWriter<'_>) -> Result<(), Error> {
        if self.open && r.key != self.key.as_slice() {
            self.flush(out)?;
        }
        if !self.open {
            self.key.clear();
            self.key.extend_from_slice(r.key);
            self.open = true;
        }
        let window = if r.window.is_empty() {
            BoundedWindow::Global
        } else {
            let (start, end) =
                read_interval_window(&mut &r.window[..]).map_err(|e| internal(e.0))?;
            BoundedWindow::Interval {
                start: Timestamp::from_millis(start),
                end: Timestamp::from_millis(end),
            }
        };
        let ts = Timestamp::from_millis(r.ts);
        match &self.merger {
            Some(m) => self
                .gabw
                .process_merging(r.key, window, ts, r.value, |ws| m.merge(r.key, ws)),
            None => {
                self.gabw.process(r.key, window, ts, r.value);
                Ok(())
            }
        }
    }

    /// Fires and emits everything of the current key.
    fn flush(&mut self, out: &mut SlotWriter<'_>) -> Result<(), Error> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        self.gabw
            .advance(Timestamp::MAX, Timestamp::MAX, &mut self.panes);
        for p in self.panes.drain(..) {
            self.elem.clear();
            p.encode(&self.strategy.window_coder, &mut self.elem);
            out.emit(&self.elem)?;
        }
        // At +∞ nothing is left; the next key starts from a new clock.
        self.gabw = Self::fresh(self.strategy, self.transform, self.merger.is_some())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"k", b"w", -5, b"value");
        write_record(&mut buf, b"", b"", 7, b"");
        let mut input = &buf[..];
        let a = parse_record(&mut input).unwrap();
        assert_eq!(
            (a.key, a.window, a.ts, a.value),
            (&b"k"[..], &b"w"[..], -5, &b"value"[..])
        );
        let b = parse_record(&mut input).unwrap();
        assert_eq!((b.key, b.ts, b.value.len()), (&b""[..], 7, 0));
        assert!(input.is_empty());
    }
}
