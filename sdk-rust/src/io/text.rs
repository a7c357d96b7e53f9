//! Text files: [`ReadFromText`] and [`WriteToText`].

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dofn::{DoFn, ProcessContext};
use crate::pipeline::{PBegin, PCollection, PTransform};
use crate::sdf::{
    OffsetRange, OffsetRangeTracker, ProcessContinuation, SplittableDoFn, SplittableParDo, Tracked,
};
use crate::transforms::pardo::ParDo;
use crate::view::SideInput;
use crate::window::WindowFn;

/// Bounds of the adaptive read split size (see [`split_bytes`]).
const MIN_SPLIT_BYTES: u64 = 1 << 20;
const MAX_SPLIT_BYTES: u64 = 64 << 20;
/// Read ranges per worker the split size aims for, so that workers stay busy
/// when ranges differ in cost.
const SPLITS_PER_WORKER: u64 = 4;

/// Reads lines of the files matching a glob, one element per line (line
/// terminators `\n` and `\r\n` removed; invalid UTF-8 replaced).
///
/// Files are read by a splittable DoFn (see [`crate::sdf`]) in byte ranges
/// spread over workers: about [`SPLITS_PER_WORKER`] ranges per worker over
/// all matched bytes, each between 1 MiB and 64 MiB (or the size set by
/// [`with_split_bytes`](Self::with_split_bytes)). As in Beam's TextIO, a
/// range reads the lines that *start* inside it (each line is claimed at
/// its start offset), so a line straddling a boundary is read once, by the
/// range where it starts; and a range being read can be split by the
/// runner, which hands its unread tail to an idle worker.
///
/// A glob matching no file fails the job.
#[derive(Clone, Debug)]
pub struct ReadFromText {
    pattern: String,
    split_bytes: Option<u64>,
}

impl ReadFromText {
    /// Reads the files matching `pattern` (e.g. `data/*.txt`).
    pub fn new(pattern: impl Into<String>) -> Self {
        ReadFromText {
            pattern: pattern.into(),
            split_bytes: None,
        }
    }

    /// Reads in ranges of `bytes` (at least 1) instead of the adaptive size.
    pub fn with_split_bytes(mut self, bytes: u64) -> Self {
        self.split_bytes = Some(bytes.max(1));
        self
    }
}

/// The split size for `total` bytes read by `parallelism` workers: about
/// [`SPLITS_PER_WORKER`] ranges per worker, within 1 MiB..=64 MiB.
pub(crate) fn split_bytes(total: u64, parallelism: usize) -> u64 {
    let ranges = SPLITS_PER_WORKER * parallelism.max(1) as u64;
    total
        .div_ceil(ranges)
        .clamp(MIN_SPLIT_BYTES, MAX_SPLIT_BYTES)
}

/// The files matching `pattern` with their sizes.
fn expand_glob(pattern: &str) -> Vec<(String, u64)> {
    let paths = match glob::glob(pattern) {
        Ok(p) => p,
        Err(e) => panic!("invalid file pattern {pattern:?}: {e}"),
    };
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.unwrap_or_else(|e| panic!("cannot read a match of {pattern:?}: {e}"));
        if !path.is_file() {
            continue;
        }
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
            .len();
        files.push((path.to_string_lossy().into_owned(), len));
    }
    assert!(!files.is_empty(), "no files match {pattern:?}");
    files
}

/// Bytes read from the file at a time.
const READ_CHUNK: usize = 256 << 10;

/// The lines starting in `[start, end)` of a file, read lazily in chunks.
struct SplitLines {
    path: String,
    file: File,
    /// `buf[lo..hi]` is unread data; `pos` is the file offset of `buf[lo]`.
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    pos: u64,
    end: u64,
    eof: bool,
}

impl SplitLines {
    fn open(path: &str, start: u64, end: u64) -> Self {
        let mut file = File::open(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        // A line starts at 0 or after a `\n`: the line containing byte
        // `start - 1` belongs to the previous range, so skip through its end.
        let first = start.saturating_sub(1);
        if first > 0 {
            file.seek(SeekFrom::Start(first))
                .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        }
        let mut s = SplitLines {
            path: path.to_string(),
            file,
            // Small ranges (tests, tiny files) need no full chunk; the
            // buffer grows for lines longer than it.
            buf: vec![0; READ_CHUNK.min((end.saturating_sub(first) as usize).max(64))],
            lo: 0,
            hi: 0,
            pos: first,
            end,
            eof: false,
        };
        if start > 0 {
            s.next_line();
        }
        s
    }

    /// Reads more data after `buf[lo..hi]`; false at end of file.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        if self.lo > 0 {
            self.buf.copy_within(self.lo..self.hi, 0);
            self.hi -= self.lo;
            self.lo = 0;
        }
        if self.hi == self.buf.len() {
            // A line longer than the buffer.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.file.read(&mut self.buf[self.hi..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("cannot read {}: {e}", self.path),
            }
        };
        self.hi += n;
        self.eof = n == 0;
        n > 0
    }

    /// The next line as `buf[a..b]` (terminator removed), if any.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        let mut scanned = 0;
        loop {
            let from = self.lo + scanned;
            if let Some(i) = memchr::memchr(b'\n', &self.buf[from..self.hi]) {
                let (a, nl) = (self.lo, from + i);
                self.lo = nl + 1;
                self.pos += (nl + 1 - a) as u64;
                let b = if nl > a && self.buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                return Some((a, b));
            }
            scanned = self.hi - self.lo;
            if !self.fill() {
                // The last line, without a terminator.
                if self.lo == self.hi {
                    return None;
                }
                let (a, b) = (self.lo, self.hi);
                self.pos += (b - a) as u64;
                self.lo = self.hi;
                return Some((a, b));
            }
        }
    }
}

impl SplitLines {
    /// The next line, whatever the range's end.
    #[inline]
    fn read_line(&mut self) -> Option<String> {
        let (a, b) = self.next_line()?;
        let line = &self.buf[a..b];
        Some(match std::str::from_utf8(line) {
            Ok(s) => s.to_string(),
            Err(_) => String::from_utf8_lossy(line).into_owned(),
        })
    }
}

impl Iterator for SplitLines {
    type Item = String;

    #[inline]
    fn next(&mut self) -> Option<String> {
        if self.pos >= self.end {
            return None;
        }
        self.read_line()
    }
}

/// Reads a file's lines as a splittable DoFn: the element is `(path,
/// (length, split size))`, the restriction a byte range, split up front
/// into ranges of the split size; each line is claimed at the offset where
/// it starts, so a range reads the lines starting in it, and the runner
/// can split a range while it is read (dynamic work rebalancing).
#[derive(Clone)]
struct ReadLines;

impl SplittableDoFn for ReadLines {
    type In = (String, (i64, i64));
    type Out = String;
    type Tracker = OffsetRangeTracker;

    fn initial_restriction(&self, (_, (len, _)): &(String, (i64, i64))) -> OffsetRange {
        OffsetRange::new(0, *len)
    }

    fn split_restriction(
        &self,
        (_, (_, split)): &(String, (i64, i64)),
        r: &OffsetRange,
    ) -> Vec<OffsetRange> {
        r.split(*split)
    }

    fn new_tracker(&self, r: OffsetRange) -> OffsetRangeTracker {
        OffsetRangeTracker::new(r)
    }

    fn process(
        &mut self,
        (path, _): &(String, (i64, i64)),
        tracker: &mut Tracked<'_, OffsetRangeTracker>,
        ctx: &mut ProcessContext<'_, String>,
    ) -> ProcessContinuation {
        let start = tracker.current_restriction().start.max(0) as u64;
        read_claimed(path, start, |at| tracker.try_claim(at), |l| ctx.output(l));
        ProcessContinuation::Stop
    }
}

/// Reads the lines of `path` that start at or after `start`, each once
/// `claim` accepts its start offset, until `claim` refuses one. At the end
/// of the file it claims the file's length (which a range of the file
/// refuses: the range is done).
fn read_claimed(
    path: &str,
    start: u64,
    mut claim: impl FnMut(i64) -> bool,
    mut emit: impl FnMut(String),
) {
    let mut lines = SplitLines::open(path, start, u64::MAX);
    while claim(lines.pos as i64) {
        match lines.read_line() {
            Some(line) => emit(line),
            None => break,
        }
    }
}

impl PTransform<PBegin> for ReadFromText {
    type Output = PCollection<String>;
    fn expand(self, input: &PBegin) -> PCollection<String> {
        let ReadFromText {
            pattern,
            split_bytes: fixed,
        } = self;
        let parallelism = input.pipeline().options().parallelism.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        input
            .pipeline()
            .impulse("Impulse")
            .flat_map("ExpandGlob", move |_: &Vec<u8>| {
                let files = expand_glob(&pattern);
                let total = files.iter().map(|(_, len)| len).sum();
                let split = fixed.unwrap_or_else(|| split_bytes(total, parallelism));
                files
                    .into_iter()
                    .map(move |(path, len)| (path, (len as i64, split as i64)))
                    .collect::<Vec<_>>()
            })
            .par_do_splittable("ReadLines", SplittableParDo::of(ReadLines))
    }
}

/// Writes strings as lines of `<prefix>-SSSSS-of-NNNNN<suffix>` files.
///
/// The output is the list of files written (one element per file).
#[derive(Clone, Debug)]
pub struct WriteToText {
    prefix: String,
    suffix: String,
    num_shards: usize,
}

impl WriteToText {
    /// Writes to files named from `prefix` (a path, e.g. `out/counts`), one shard.
    pub fn new(prefix: impl Into<String>) -> Self {
        WriteToText {
            prefix: prefix.into(),
            suffix: String::new(),
            num_shards: 1,
        }
    }

    /// Writes `n` shards (at least 1).
    pub fn with_num_shards(mut self, n: usize) -> Self {
        self.num_shards = n.max(1);
        self
    }

    /// Appends `suffix` (e.g. `.txt`) to file names.
    pub fn with_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }
}

/// The name of shard `index` of `num_shards`: `<prefix>-SSSSS-of-NNNNN<suffix>`.
pub fn shard_name(prefix: &str, index: usize, num_shards: usize, suffix: &str) -> String {
    format!("{prefix}-{index:05}-of-{num_shards:05}{suffix}")
}

fn temp_name(final_name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = Path::new(final_name);
    let base = path
        .file_name()
        .map_or_else(|| "out".into(), |f| f.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let nonce = format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    path.with_file_name(format!(".{base}.oxbeam-tmp-{nonce}"))
}

fn write_shard(
    prefix: &str,
    suffix: &str,
    shard: i64,
    num_shards: usize,
    lines: &[String],
) -> String {
    let final_name = shard_name(prefix, shard as usize, num_shards, suffix);
    let tmp = temp_name(&final_name);
    if let Some(dir) = tmp.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create directory {}: {e}", dir.display()));
    }
    let file =
        File::create(&tmp).unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
    let mut w = BufWriter::with_capacity(1 << 16, file);
    for l in lines {
        w.write_all(l.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    }
    w.flush()
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    tmp.to_string_lossy().into_owned()
}

fn finalize(prefix: &str, suffix: &str, num_shards: usize, temps: &[(i64, String)]) -> Vec<String> {
    let mut by_shard: Vec<Option<&str>> = vec![None; num_shards];
    for (shard, tmp) in temps {
        let slot = &mut by_shard[*shard as usize];
        match slot {
            // A retried bundle wrote the shard twice: keep one.
            Some(_) => {
                let _ = std::fs::remove_file(tmp);
            }
            None => *slot = Some(tmp),
        }
    }
    let mut out = Vec::with_capacity(num_shards);
    for (i, tmp) in by_shard.into_iter().enumerate() {
        let final_name = shard_name(prefix, i, num_shards, suffix);
        match tmp {
            Some(t) => std::fs::rename(t, &final_name)
                .unwrap_or_else(|e| panic!("cannot rename {t} to {final_name}: {e}")),
            None => {
                if let Some(dir) = Path::new(&final_name)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir).unwrap_or_else(|e| {
                        panic!("cannot create directory {}: {e}", dir.display())
                    });
                }
                File::create(&final_name)
                    .unwrap_or_else(|e| panic!("cannot create {final_name}: {e}"));
            }
        }
        out.push(final_name);
    }
    out
}

impl PTransform<PCollection<String>> for WriteToText {
    type Output = PCollection<String>;
    fn expand(self, input: &PCollection<String>) -> PCollection<String> {
        let WriteToText {
            prefix,
            suffix,
            num_shards,
        } = self;
        let mut lines = input.clone();
        if input.window_fn() != WindowFn::Global {
            lines = lines.window_into("GlobalWindow", WindowFn::Global);
        }
        let mut next: u64 = 0;
        let n = num_shards as u64;
        let (p1, s1) = (prefix.clone(), suffix.clone());
        lines
            .owned_map("AssignShards", move |l: String| {
                // Round robin, each processor starting at its own offset.
                if next == 0 {
                    next = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(1, |d| d.subsec_nanos() as u64 | 1);
                }
                next = next.wrapping_add(1);
                ((next % n) as i64, l)
            })
            .group_by_key("GroupByShard")
            .map(
                "WriteTempFiles",
                move |(shard, lines): &(i64, Vec<String>)| {
                    (*shard, write_shard(&p1, &s1, *shard, num_shards, lines))
                },
            )
            .apply(
                "Finalize",
                Finalize {
                    prefix,
                    suffix,
                    num_shards,
                },
            )
    }
}

/// Renames every temporary shard into place once all are written (they are
/// a side input, so this runs after the last write, even for no input).
struct Finalize {
    prefix: String,
    suffix: String,
    num_shards: usize,
}

#[derive(Clone)]
struct FinalizeFn {
    temps: SideInput<Vec<(i64, String)>>,
    prefix: String,
    suffix: String,
    num_shards: usize,
}

impl DoFn for FinalizeFn {
    type In = Vec<u8>;
    type Out = String;
    fn process(&mut self, _: &Vec<u8>, ctx: &mut ProcessContext<'_, String>) {
        let temps = ctx.side_input(&self.temps);
        for f in finalize(&self.prefix, &self.suffix, self.num_shards, &temps) {
            ctx.output(f);
        }
    }
}

impl PTransform<PCollection<(i64, String)>> for Finalize {
    type Output = PCollection<String>;
    fn expand(self, written: &PCollection<(i64, String)>) -> PCollection<String> {
        let temps = written.as_list();
        let f = FinalizeFn {
            temps: temps.clone(),
            prefix: self.prefix,
            suffix: self.suffix,
            num_shards: self.num_shards,
        };
        written
            .pipeline()
            .impulse("Trigger")
            .par_do("Rename", ParDo::of(f).with_side_input(&temps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdf::RestrictionTracker;

    /// Lines as Beam's TextIO defines them: split at `\n`, a `\r` before it
    /// removed, a last line without terminator kept.
    fn reference(content: &[u8]) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut rest = content;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let l = &rest[..i];
                    let l = l.strip_suffix(b"\r").unwrap_or(l);
                    lines.push(String::from_utf8_lossy(l).into_owned());
                    rest = &rest[i + 1..];
                }
                None => {
                    lines.push(String::from_utf8_lossy(rest).into_owned());
                    rest = &[];
                }
            }
        }
        lines
    }

    /// The lines of `path` read as `ReadFromText` reads them: in ranges
    /// of `split` bytes, each claiming line starts with an offset tracker
    /// and, if `split_after` is set, split by the runner after that many
    /// claims (half of the rest handed off and read as a range of its own).
    fn read_in_splits(path: &str, len: u64, split: u64, split_after: Option<usize>) -> Vec<String> {
        let mut ranges: Vec<OffsetRange> = OffsetRange::new(0, len as i64).split(split as i64);
        let mut out = Vec::new();
        while let Some(r) = (!ranges.is_empty()).then(|| ranges.remove(0)) {
            let mut t = OffsetRangeTracker::new(r);
            let mut claims = 0;
            let mut handed = None;
            read_claimed(
                path,
                r.start as u64,
                |at| {
                    let ok = t.try_claim(at);
                    claims += 1;
                    if ok && Some(claims) == split_after {
                        handed = t.try_split(0.5).map(|(_, residual)| residual);
                    }
                    ok
                },
                |l| out.push(l),
            );
            assert_eq!(t.check_done(), Ok(()), "range {r:?}");
            ranges.extend(handed);
        }
        out
    }

    #[test]
    fn every_line_is_read_once_whatever_the_split() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"\n\n\n",
            b"a",
            b"a\n",
            b"alpha\nbeta\ngamma",
            b"alpha\r\nbeta\r\n\r\ngamma\r\n",
            b"\r\n\r\nx\r",
            b"one\n\ntwo\n\n\nthree\n",
            b"caf\xc3\xa9\nbad \xff byte\n",
            b"a somewhat longer line that straddles many small ranges\nshort\n",
        ];
        for (i, content) in cases.iter().enumerate() {
            let path = dir.path().join(format!("case{i}.txt"));
            std::fs::write(&path, content).unwrap();
            let path = path.to_string_lossy().into_owned();
            let expected = reference(content);
            let len = content.len() as u64;
            for split in 1..=len + 1 {
                for split_after in [None, Some(1), Some(2)] {
                    let mut got = read_in_splits(&path, len, split, split_after);
                    let mut want = expected.clone();
                    if split_after.is_some() {
                        // Handed-off ranges are read last.
                        got.sort();
                        want.sort();
                    }
                    assert_eq!(
                        got,
                        want,
                        "case {i} ({:?}) in ranges of {split} bytes, split after {split_after:?}",
                        String::from_utf8_lossy(content)
                    );
                }
            }
        }
    }

    #[test]
    fn lines_longer_than_the_read_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.txt");
        let long = "x".repeat(READ_CHUNK * 2 + 17);
        let content = format!("a\n{long}\r\nb\n{long}");
        std::fs::write(&path, &content).unwrap();
        let path = path.to_string_lossy().into_owned();
        let len = content.len() as u64;
        for split in [1000, READ_CHUNK as u64 - 1, READ_CHUNK as u64 * 3, len] {
            assert_eq!(
                read_in_splits(&path, len, split, None),
                vec!["a".to_string(), long.clone(), "b".to_string(), long.clone()],
                "ranges of {split} bytes"
            );
        }
    }

    #[test]
    fn split_size_adapts_to_input_and_workers() {
        const MIB: u64 = 1 << 20;
        // Small inputs: one 1 MiB range.
        assert_eq!(split_bytes(1000, 2), MIB);
        // 60 MB over 2 workers: 8 ranges.
        let s = split_bytes(60_000_000, 2);
        assert_eq!(60_000_000u64.div_ceil(s), 8);
        // Huge inputs: capped at 64 MiB.
        assert_eq!(split_bytes(100 << 30, 2), 64 * MIB);
        assert_eq!(split_bytes(0, 0), MIB);
    }
}
