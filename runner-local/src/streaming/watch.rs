//! The file-watching source (`oxbeam:transform:watch_files:v1`, see
//! `WatchFilesPayload`): matches a glob every poll interval and emits the
//! lines of each file it has not seen, timestamped with the poll's
//! processing time; its watermark is the time of its last poll.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oxbeam_model::coders::WindowedValueHeader;
use oxbeam_model::coders::wire::write_length_prefixed;
use oxbeam_model::window::Timestamp;
use oxbeam_runner_core::{WatchFilesSpec, WatchFilesStep};

use crate::Error;
use crate::job::{BEFORE_TIME, END_OF_TIME, Watermark};

pub(crate) struct FileWatcher {
    spec: WatchFilesSpec,
    /// `file-watching source '<name>'`, for errors.
    what: String,
    seen: HashSet<PathBuf>,
    files: u64,
    next_poll: Option<Instant>,
    /// When a new file last appeared (or the first poll).
    last_new: Option<Instant>,
    /// Processing time (ms) of the last poll.
    polled_at: Option<i64>,
    done: bool,
    buf: Vec<u8>,
}

impl FileWatcher {
    pub fn new(step: &WatchFilesStep) -> Self {
        FileWatcher {
            spec: step.spec.clone(),
            what: format!("file-watching source '{}'", step.unique_name),
            seen: HashSet::new(),
            files: 0,
            next_poll: None,
            last_new: None,
            polled_at: None,
            done: false,
            buf: Vec::new(),
        }
    }

    /// Drain: read nothing more.
    pub fn stop(&mut self) {
        self.done = true;
    }

    /// The time of its last poll (a file found later is timestamped
    /// later); +∞ once it ended.
    pub fn watermark(&self) -> Watermark {
        if self.done {
            return END_OF_TIME;
        }
        self.polled_at.map_or(BEFORE_TIME, |t| t as Watermark)
    }

    /// How long until the next match (`None` once it ended).
    pub fn next_due(&self) -> Option<Duration> {
        if self.done {
            return None;
        }
        Some(self.next_poll.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        }))
    }

    fn err(&self, path: &std::path::Path, message: impl std::fmt::Display) -> Error {
        Error::External {
            transform: self.what.clone(),
            address: path.display().to_string(),
            message: message.to_string(),
        }
    }

    /// If a match is due: emits the lines of every new file (in path
    /// order) at processing time `now_ms`, and ends the source when its
    /// file limit or idle time is reached. Returns the lines emitted.
    ///
    /// # Errors
    /// [`Error::External`] naming the file when it cannot be read or is
    /// not UTF-8; what `emit` returns.
    pub fn poll(
        &mut self,
        now_ms: i64,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        if self.done || self.next_due().is_some_and(|d| !d.is_zero()) {
            return Ok(0);
        }
        let now = Instant::now();
        self.next_poll = Some(now + Duration::from_millis(self.spec.poll_interval_ms));
        let last_new = *self.last_new.get_or_insert(now);
        // Unreadable directory entries are skipped: the next poll retries.
        let mut new: Vec<PathBuf> = glob::glob(&self.spec.pattern)
            .map_err(|e| self.err(self.spec.pattern.as_ref(), e))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file() && !self.seen.contains(p))
            .collect();
        new.sort();
        if let Some(max) = self.spec.max_files {
            new.truncate(max.saturating_sub(self.files) as usize);
        }
        let header = WindowedValueHeader::global(Timestamp::from_millis(now_ms));
        let mut lines = 0;
        for path in new {
            let data = std::fs::read(&path).map_err(|e| self.err(&path, e))?;
            let text = std::str::from_utf8(&data).map_err(|e| {
                let line = data[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                self.err(&path, format!("line {line} is not UTF-8"))
            })?;
            for line in text.lines() {
                self.buf.clear();
                header.encode(&mut self.buf);
                write_length_prefixed(&mut self.buf, line.as_bytes());
                emit(&self.buf)?;
                lines += 1;
            }
            self.seen.insert(path);
            self.files += 1;
            self.last_new = Some(now);
        }
        self.polled_at = Some(self.polled_at.map_or(now_ms, |t| t.max(now_ms)));
        let idle = self.spec.stop_after_idle_ms.is_some_and(|ms| {
            self.last_new == Some(last_new)
                && now.duration_since(last_new) >= Duration::from_millis(ms)
        });
        if idle || self.spec.max_files.is_some_and(|m| self.files >= m) {
            self.done = true;
        }
        Ok(lines)
    }
}
