//! Redis Streams: [`ReadFromRedisStream`], a durable, replayable unbounded
//! source, and [`WriteToRedisStream`], a sink whose writes commit together
//! with the source's offsets, so a restarted job writes every result
//! exactly once (`docs/design/streaming.md` §4).
//!
//! Both are runner primitives (`oxbeam:transform:redis_read:v1` and
//! `oxbeam:transform:redis_write:v1`, payloads `RedisReadPayload` and
//! `RedisWritePayload`), run by runners with a streaming engine.

use std::time::Duration;

use oxbeam_model::oxbeam::{RedisReadPayload, RedisStartPosition, RedisWritePayload};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use prost::Message;

use crate::pipeline::{MAIN_TAG, PBegin, PCollection, PTransform};
use crate::window::WindowFn;

/// Reads a Redis stream: entry `<ms>-<seq>` becomes `(entry id, value of
/// its field "data")` with event timestamp `<ms>`, in the global window.
/// The source's watermark is the `<ms>` of the last entry read. An entry
/// without a `data` field fails the job with an error naming the transform
/// and the server.
///
/// With a [checkpoint key](Self::checkpoint_key), the id of the last entry
/// whose results are committed is kept in Redis, and a restarted job
/// resumes after it; with a [`WriteToRedisStream`] on the same server, the
/// results of a stateless pipeline are written exactly once.
///
/// ```
/// use oxbeam::io::redis::{ReadFromRedisStream, WriteToRedisStream};
/// let p = oxbeam::Pipeline::default();
/// let entries = p.apply(
///     "Read",
///     ReadFromRedisStream::new("redis://127.0.0.1:6379/", "events")
///         .checkpoint_key("events:upper:offset"),
/// );
/// let upper = entries.map("Upper", |(_id, data): &(String, Vec<u8>)| data.to_ascii_uppercase());
/// upper.apply("Write", WriteToRedisStream::new("redis://127.0.0.1:6379/", "events:upper"));
/// ```
#[derive(Debug, Clone)]
pub struct ReadFromRedisStream {
    payload: RedisReadPayload,
}

impl ReadFromRedisStream {
    /// Reads stream `stream` of the server at `url` (`redis://host:port/db`)
    /// from its first entry, without end and without checkpoint.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        ReadFromRedisStream {
            payload: RedisReadPayload {
                url: url.into(),
                stream: stream.into(),
                ..RedisReadPayload::default()
            },
        }
    }

    /// Keeps the offset (the id of the last entry whose results are
    /// committed) in this key, and resumes after it when the job restarts.
    pub fn checkpoint_key(mut self, key: impl Into<String>) -> Self {
        self.payload.checkpoint_key = key.into();
        self
    }

    /// Without a checkpoint: start with entries added after the source
    /// starts.
    pub fn from_latest(mut self) -> Self {
        self.payload.start = RedisStartPosition::Latest as i32;
        self
    }

    /// Without a checkpoint: start after entry `id` (`<ms>-<seq>`).
    pub fn after_id(mut self, id: impl Into<String>) -> Self {
        self.payload.start = RedisStartPosition::AfterId as i32;
        self.payload.start_id = id.into();
        self
    }

    /// Most entries per read (default 1000); the results of one batch are
    /// committed together.
    pub fn batch_size(mut self, n: u64) -> Self {
        self.payload.batch_size = n.max(1);
        self
    }

    /// How long one read waits for new entries (default 100 ms).
    pub fn block(mut self, d: Duration) -> Self {
        self.payload.block_millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        self
    }

    /// Bounded: stop after `n` entries in this run.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.payload.max_entries = n.max(1);
        self
    }

    /// Bounded: stop once a read finds no new entry (the job then ends).
    pub fn stop_at_end(mut self) -> Self {
        self.payload.stop_at_end = true;
        self
    }
}

impl PTransform<PBegin> for ReadFromRedisStream {
    type Output = PCollection<(String, Vec<u8>)>;

    fn expand(self, input: &PBegin) -> PCollection<(String, Vec<u8>)> {
        let p = input.pipeline();
        let spec = pb::FunctionSpec {
            urn: urns::oxbeam_transforms::REDIS_READ.to_string(),
            payload: self.payload.encode_to_vec().into(),
        };
        let id = p.add_transform("ReadFromRedisStream", Some(spec), Vec::new(), false);
        let out = p.add_output::<(String, Vec<u8>)>(&id, MAIN_TAG, WindowFn::Global);
        if self.payload.max_entries == 0 && !self.payload.stop_at_end {
            p.set_unbounded(out.id());
        }
        out
    }
}

/// Appends each element to a Redis stream as an entry with the single
/// field `data` (`XADD <stream> * data <element>`), for `PCollection`s of
/// `Vec<u8>` or `String`. Writes are buffered and committed in one
/// `MULTI/EXEC` with the offsets of the [`ReadFromRedisStream`]s on the
/// same server.
#[derive(Debug, Clone)]
pub struct WriteToRedisStream {
    payload: RedisWritePayload,
}

impl WriteToRedisStream {
    /// Writes to stream `stream` of the server at `url`.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        WriteToRedisStream {
            payload: RedisWritePayload {
                url: url.into(),
                stream: stream.into(),
            },
        }
    }

    fn add(self, input_id: &str, p: &crate::Pipeline) {
        let spec = pb::FunctionSpec {
            urn: urns::oxbeam_transforms::REDIS_WRITE.to_string(),
            payload: self.payload.encode_to_vec().into(),
        };
        p.add_transform(
            "WriteToRedisStream",
            Some(spec),
            vec![("in".to_string(), input_id.to_string())],
            false,
        );
    }
}

impl PTransform<PCollection<Vec<u8>>> for WriteToRedisStream {
    type Output = ();

    fn expand(self, input: &PCollection<Vec<u8>>) {
        self.add(input.id(), input.pipeline());
    }
}

impl PTransform<PCollection<String>> for WriteToRedisStream {
    type Output = ();

    fn expand(self, input: &PCollection<String>) {
        self.add(input.id(), input.pipeline());
    }
}
