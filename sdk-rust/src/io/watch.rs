//! [`WatchFiles`]: an unbounded source of the lines of new files.

use std::time::Duration;

use oxbeam_model::oxbeam::WatchFilesPayload;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use prost::Message;

use crate::pipeline::{MAIN_TAG, PBegin};
use crate::{PCollection, PTransform, WindowFn};

/// Watches a glob for new files and emits their lines (Beam's
/// `TextIO.read().watchForNewFiles`): every poll interval (default 1 s) it
/// matches the pattern, and reads each file it has not seen in this job
/// whole, once, one element per line (without `\n` / `\r\n`). Elements are
/// in the global window, timestamped with the processing time of the poll
/// that found their file; the watermark is the time of the last poll. The
/// job runs on the streaming engine (`oxbeam:transform:watch_files:v1`).
///
/// A poll reads a file as it is then: write files elsewhere and rename
/// them into the watched place. Unbounded unless
/// [`stop_after_idle`](Self::stop_after_idle) or
/// [`max_files`](Self::max_files) ends it; drain ends it too. A file that
/// is not UTF-8 or cannot be read fails the job, naming the file.
///
/// ```no_run
/// use std::time::Duration;
/// use oxbeam::io::WatchFiles;
/// # let p = oxbeam::Pipeline::default();
/// let lines = p.apply(
///     "Incoming",
///     WatchFiles::new("/data/incoming/*.csv").poll_interval(Duration::from_millis(200)),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct WatchFiles {
    payload: WatchFilesPayload,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl WatchFiles {
    /// Watches `pattern` (`*`, `?`, `[...]`, `**`).
    pub fn new(pattern: impl Into<String>) -> Self {
        WatchFiles {
            payload: WatchFilesPayload {
                pattern: pattern.into(),
                ..Default::default()
            },
        }
    }

    /// Time between two matches (at least 1 ms).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.payload.poll_interval_millis = millis(d);
        self
    }

    /// Bounded: ends once no new file appeared for `d` (Beam's
    /// `afterTimeSinceNewOutput`).
    pub fn stop_after_idle(mut self, d: Duration) -> Self {
        self.payload.stop_after_idle_millis = millis(d);
        self
    }

    /// Bounded: ends once `n` (at least 1) files were read.
    pub fn max_files(mut self, n: u64) -> Self {
        self.payload.max_files = n.max(1);
        self
    }
}

impl PTransform<PBegin> for WatchFiles {
    type Output = PCollection<String>;

    fn expand(self, input: &PBegin) -> PCollection<String> {
        let p = input.pipeline();
        let spec = pb::FunctionSpec {
            urn: urns::oxbeam_transforms::WATCH_FILES.to_string(),
            payload: self.payload.encode_to_vec().into(),
        };
        let id = p.add_transform("WatchFiles", Some(spec), Vec::new(), false);
        let out = p.add_output::<String>(&id, MAIN_TAG, WindowFn::Global);
        if self.payload.stop_after_idle_millis == 0 && self.payload.max_files == 0 {
            p.set_unbounded(out.id());
        }
        out
    }
}
