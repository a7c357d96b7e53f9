//! Redis Streams IO as runner-executed steps: the source
//! `oxbeam:transform:redis_read:v1` ([`RedisReadStep`]) and the sink
//! `oxbeam:transform:redis_write:v1` ([`RedisWriteStep`]). Engines that run
//! them commit a sink's writes together with the offsets of the sources on
//! the same server (see `docs/design/streaming.md` §4).

use crate::graph::{Graph, Transform};
use crate::{Coder, Error, Result};

/// Where a Redis stream source starts when its checkpoint key holds no
/// offset yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisStart {
    /// The first entry of the stream.
    Beginning,
    /// Entries added after the source starts.
    Latest,
    /// Entries after this id (exclusive), `<ms>-<seq>`.
    AfterId(String),
}

/// The settings of a Redis stream source (`RedisReadPayload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisReadSpec {
    /// Server address (`redis://host:port/db`).
    pub url: String,
    /// The stream's key.
    pub stream: String,
    /// Where to start without a checkpoint.
    pub start: RedisStart,
    /// Key holding the id of the last entry whose results are committed;
    /// `None`: no checkpoint.
    pub checkpoint_key: Option<String>,
    /// Most entries per XREAD (one batch, committed together).
    pub batch_size: u64,
    /// How long one XREAD waits for new entries, in ms.
    pub block_ms: u64,
    /// Stop after this many entries in one run.
    pub max_entries: Option<u64>,
    /// Stop once an XREAD finds no new entry.
    pub stop_at_end: bool,
}

impl RedisReadSpec {
    /// Whether the source ends by itself.
    pub fn is_bounded(&self) -> bool {
        self.max_entries.is_some() || self.stop_at_end
    }
}

/// Runner-executed source reading a Redis stream into
/// `KV<string entry id, bytes data>`.
#[derive(Debug, Clone)]
pub struct RedisReadStep {
    /// Transform id.
    pub transform: String,
    /// Transform name.
    pub unique_name: String,
    /// The PCollection it emits into.
    pub output: String,
    /// What to read.
    pub spec: RedisReadSpec,
}

/// The settings of a Redis stream sink (`RedisWritePayload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisWriteSpec {
    /// Server address (`redis://host:port/db`).
    pub url: String,
    /// The stream's key.
    pub stream: String,
}

/// Runner-executed sink appending each element (bytes or string) to a
/// Redis stream as the field `data`.
#[derive(Debug, Clone)]
pub struct RedisWriteStep {
    /// Transform id.
    pub transform: String,
    /// Transform name.
    pub unique_name: String,
    /// The materialized PCollections whose union it writes (one, or the
    /// inputs of a Flatten it reads).
    pub inputs: Vec<String>,
    /// Where to write.
    pub spec: RedisWriteSpec,
}

/// Whether `id` is a complete Redis stream id `<ms>-<seq>`.
pub fn is_stream_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        ms.parse::<u64>().is_ok()
            && seq.parse::<u64>().is_ok()
            && !ms.starts_with('+')
            && !seq.starts_with('+')
    })
}

fn check_url(t: &Transform, url: &str) -> Result<()> {
    if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
        return Err(Error::plan(
            t.describe(),
            format!("Redis url {url:?} must start with redis:// or redis+unix://"),
        ));
    }
    Ok(())
}

pub(crate) fn coder_of(g: &Graph, t: &Transform, pcollection: &str) -> Result<Coder> {
    g.pcollections
        .get(pcollection)
        .map(|p| p.coder_id.as_str())
        .ok_or_else(|| Error::plan(t.describe(), format!("unknown PCollection {pcollection}")))
        .and_then(|id| {
            crate::coder::build_coder(id, &g.coders).map_err(|e| Error::plan(t.describe(), e))
        })
}

/// Checks a Redis source: no inputs, one output of coder
/// `KV<string_utf8, bytes>`, a url, a stream and a valid start id.
pub(crate) fn check_read(g: &Graph, t: &Transform, spec: &RedisReadSpec) -> Result<()> {
    if !t.inputs.is_empty() || t.outputs.len() != 1 {
        return Err(Error::plan(
            t.describe(),
            "a Redis stream source must have no inputs and one output",
        ));
    }
    check_url(t, &spec.url)?;
    if spec.stream.is_empty() {
        return Err(Error::plan(
            t.describe(),
            "its RedisReadPayload has no stream",
        ));
    }
    if let RedisStart::AfterId(id) = &spec.start {
        if !is_stream_id(id) {
            return Err(Error::plan(
                t.describe(),
                format!("start id {id:?} is not a Redis stream id <ms>-<seq>"),
            ));
        }
    }
    let out = t.outputs.values().next().map_or("", String::as_str);
    let coder = coder_of(g, t, out)?;
    let ok = match &coder {
        Coder::Kv { key, value } => {
            matches!(**key, Coder::StringUtf8 | Coder::Bytes)
                && matches!(**value, Coder::Bytes | Coder::StringUtf8)
        }
        _ => false,
    };
    if !ok {
        return Err(Error::plan(
            t.describe(),
            format!("its output must be KV<string_utf8, bytes>, not {coder:?}"),
        ));
    }
    Ok(())
}

/// Checks a Redis sink: one input of coder bytes or string_utf8, no
/// outputs, a url and a stream.
pub(crate) fn check_write(g: &Graph, t: &Transform, spec: &RedisWriteSpec) -> Result<()> {
    if t.inputs.len() != 1 || !t.outputs.is_empty() {
        return Err(Error::plan(
            t.describe(),
            "a Redis stream sink must have one input and no outputs",
        ));
    }
    check_url(t, &spec.url)?;
    if spec.stream.is_empty() {
        return Err(Error::plan(
            t.describe(),
            "its RedisWritePayload has no stream",
        ));
    }
    let input = t.inputs.values().next().map_or("", String::as_str);
    let coder = coder_of(g, t, input)?;
    if !matches!(coder, Coder::Bytes | Coder::StringUtf8) {
        return Err(Error::plan(
            t.describe(),
            format!("its input must be bytes or string_utf8, not {coder:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids() {
        assert!(is_stream_id("0-0"));
        assert!(is_stream_id("1700000000000-12"));
        assert!(!is_stream_id("12"));
        assert!(!is_stream_id("$"));
        assert!(!is_stream_id("1-x"));
        assert!(!is_stream_id("+1-2"));
    }
}
