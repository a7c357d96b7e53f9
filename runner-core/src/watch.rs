//! The file-watching source `oxbeam:transform:watch_files:v1`
//! ([`WatchFilesStep`], payload `WatchFilesPayload`): a runner-executed
//! step that matches a glob every poll interval and emits the lines of each
//! new file (Beam's `TextIO.read().watchForNewFiles`).

use oxbeam_model::oxbeam::WatchFilesPayload;
use prost::Message;

use crate::graph::{Graph, Transform};
use crate::{Coder, Error, Result};

/// Poll interval when the payload gives none.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1000;

/// The settings of a file-watching source (`WatchFilesPayload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFilesSpec {
    /// The glob of the files to read.
    pub pattern: String,
    /// Time between two matches, in ms.
    pub poll_interval_ms: u64,
    /// End once no new file appeared for this long (ms); `None`: never.
    pub stop_after_idle_ms: Option<u64>,
    /// End after this many files; `None`: no limit.
    pub max_files: Option<u64>,
}

impl WatchFilesSpec {
    /// Decodes a `WatchFilesPayload`; `what` names the transform in errors.
    pub(crate) fn decode(what: &str, payload: &[u8]) -> Result<Self> {
        let p = WatchFilesPayload::decode(payload)
            .map_err(|e| Error::plan(what, format!("malformed WatchFilesPayload: {e}")))?;
        Ok(WatchFilesSpec {
            pattern: p.pattern,
            poll_interval_ms: match p.poll_interval_millis {
                0 => DEFAULT_POLL_INTERVAL_MS,
                ms => ms,
            },
            stop_after_idle_ms: (p.stop_after_idle_millis > 0).then_some(p.stop_after_idle_millis),
            max_files: (p.max_files > 0).then_some(p.max_files),
        })
    }

    /// Whether the source ends by itself.
    pub fn is_bounded(&self) -> bool {
        self.stop_after_idle_ms.is_some() || self.max_files.is_some()
    }
}

/// Runner-executed source emitting the lines (string_utf8) of new files.
#[derive(Debug, Clone)]
pub struct WatchFilesStep {
    /// Transform id.
    pub transform: String,
    /// Transform name.
    pub unique_name: String,
    /// The PCollection it emits into.
    pub output: String,
    /// What to watch.
    pub spec: WatchFilesSpec,
}

/// Checks a file-watching source: no inputs, one output of coder
/// `string_utf8`, a pattern that is a valid glob.
pub(crate) fn check(g: &Graph, t: &Transform, spec: &WatchFilesSpec) -> Result<()> {
    if !t.inputs.is_empty() || t.outputs.len() != 1 {
        return Err(Error::plan(
            t.describe(),
            "a file-watching source must have no inputs and one output",
        ));
    }
    if spec.pattern.is_empty() {
        return Err(Error::plan(
            t.describe(),
            "its WatchFilesPayload has no pattern",
        ));
    }
    if let Err(e) = glob::Pattern::new(&spec.pattern) {
        return Err(Error::plan(
            t.describe(),
            format!("pattern {:?} is not a glob: {e}", spec.pattern),
        ));
    }
    let out = t.outputs.values().next().map_or("", String::as_str);
    let coder = crate::redis::coder_of(g, t, out)?;
    if coder != Coder::StringUtf8 {
        return Err(Error::plan(
            t.describe(),
            format!("its output must be string_utf8 lines, not {coder:?}"),
        ));
    }
    Ok(())
}
