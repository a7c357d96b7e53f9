//! Text files: [`ReadFromText`] and [`WriteToText`].

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dofn::{DoFn, ProcessContext};
use crate::pipeline::{PBegin, PCollection, PTransform};
use crate::transforms::pardo::ParDo;
use crate::view::SideInput;
use crate::window::WindowFn;

/// Bytes per read split.
const SPLIT_BYTES: u64 = 64 << 20;

/// Reads lines of the files matching a glob, one element per line (line
/// terminators `\n` and `\r\n` removed; invalid UTF-8 replaced).
///
/// A glob matching no file fails the job.
#[derive(Clone, Debug)]
pub struct ReadFromText {
    pattern: String,
}

impl ReadFromText {
    /// Reads the files matching `pattern` (e.g. `data/*.txt`).
    pub fn new(pattern: impl Into<String>) -> Self {
        ReadFromText {
            pattern: pattern.into(),
        }
    }
}

fn expand_glob(pattern: &str) -> Vec<(String, (i64, i64))> {
    let paths = match glob::glob(pattern) {
        Ok(p) => p,
        Err(e) => panic!("invalid file pattern {pattern:?}: {e}"),
    };
    let mut splits = Vec::new();
    let mut matched = 0;
    for entry in paths {
        let path = entry.unwrap_or_else(|e| panic!("cannot read a match of {pattern:?}: {e}"));
        if !path.is_file() {
            continue;
        }
        matched += 1;
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
            .len();
        let name = path.to_string_lossy().into_owned();
        let mut start = 0;
        while start < len {
            let end = (start + SPLIT_BYTES).min(len);
            splits.push((name.clone(), (start as i64, end as i64)));
            start = end;
        }
    }
    assert!(matched > 0, "no files match {pattern:?}");
    splits
}

/// The lines starting in `[start, end)` of a file, read lazily.
struct SplitLines {
    path: String,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
}

impl SplitLines {
    fn open(path: &str, start: u64, end: u64) -> Self {
        let fail = |e: std::io::Error| -> ! { panic!("cannot read {path}: {e}") };
        let mut file = File::open(path).unwrap_or_else(|e| fail(e));
        let mut buf = Vec::new();
        let mut pos = start;
        let reader = if start > 0 {
            // The line containing byte `start - 1` belongs to the previous split.
            file.seek(SeekFrom::Start(start - 1))
                .unwrap_or_else(|e| fail(e));
            let mut reader = BufReader::with_capacity(1 << 16, file);
            let n = reader
                .read_until(b'\n', &mut buf)
                .unwrap_or_else(|e| fail(e));
            pos = start - 1 + n as u64;
            reader
        } else {
            BufReader::with_capacity(1 << 16, file)
        };
        SplitLines {
            path: path.to_string(),
            reader,
            pos,
            end,
            buf,
        }
    }
}

impl Iterator for SplitLines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.pos >= self.end {
            return None;
        }
        self.buf.clear();
        let n = match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(n) => n,
            Err(e) => panic!("cannot read {}: {e}", self.path),
        };
        if n == 0 {
            return None;
        }
        self.pos += n as u64;
        let mut line = &self.buf[..];
        if let Some(l) = line.strip_suffix(b"\n") {
            line = l.strip_suffix(b"\r").unwrap_or(l);
        }
        Some(match std::str::from_utf8(line) {
            Ok(s) => s.to_string(),
            Err(_) => String::from_utf8_lossy(line).into_owned(),
        })
    }
}

impl PTransform<PBegin> for ReadFromText {
    type Output = PCollection<String>;
    fn expand(self, input: &PBegin) -> PCollection<String> {
        let pattern = self.pattern;
        input
            .pipeline()
            .impulse("Impulse")
            .flat_map("ExpandGlob", move |_: &Vec<u8>| expand_glob(&pattern))
            .reshuffle("Reshuffle")
            .flat_map(
                "ReadLines",
                |(path, (start, end)): &(String, (i64, i64))| {
                    SplitLines::open(path, (*start).max(0) as u64, (*end).max(0) as u64)
                },
            )
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
            .owned_pardo("AssignShards", move |wv| {
                // Round robin, each processor starting at its own offset.
                if next == 0 {
                    next = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(1, |d| d.subsec_nanos() as u64 | 1);
                }
                next = next.wrapping_add(1);
                Some(wv.map(|l| ((next % n) as i64, l)))
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
