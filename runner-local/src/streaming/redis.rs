//! Redis Streams as a replayable source and an exactly-once sink
//! (`oxbeam:transform:redis_read:v1`, `oxbeam:transform:redis_write:v1`).
//!
//! The engine reads one batch from each source (XREAD after the source's
//! offset) only when the pipeline is quiescent: nothing queued, no bundle
//! in flight. Everything the batch causes runs to completion, and the sinks
//! buffer what reaches them. At the next quiescent point, before reading
//! the next batch, [`RedisIo::commit`] writes per server one `MULTI/EXEC`
//! holding the buffered XADDs of every sink on that server and a SET of the
//! checkpoint key of every source on that server. A restarted job resumes
//! each source after the id in its checkpoint key, so every result of an
//! entry is written once, in entry order: a crash before EXEC loses only
//! uncommitted writes whose entries are read again. What this does not
//! cover (state of windows and groupings, other sinks, several servers) is
//! written down in `docs/design/streaming.md` §4.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use oxbeam_model::coders::WindowedValueHeader;
use oxbeam_model::coders::wire::write_length_prefixed;
use oxbeam_model::window::Timestamp;
use oxbeam_runner_core::coder::read_varint;
use oxbeam_runner_core::{
    Coder, ExecutionPlan, RedisReadStep, RedisStart, RedisWriteStep, WindowCoderKind,
    WindowedHeader,
};
use redis::{Connection, Value};

use super::{Engine, Op, Queued};
use crate::Error;
use crate::job::{BEFORE_TIME, END_OF_TIME, Watermark};

/// How long connecting to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much longer than its BLOCK time a reply may take.
const REPLY_SLACK: Duration = Duration::from_secs(30);

/// Elements a sink buffers before writing when no Redis source shares
/// its job (nothing to commit atomically with).
const MAX_UNCOUPLED_BUFFER: usize = 10_000;

/// A Redis stream id `<ms>-<seq>`; orders as the server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn parse(s: &str) -> Option<StreamId> {
        let (ms, seq) = s.split_once('-')?;
        if ms.starts_with('+') || seq.starts_with('+') {
            return None;
        }
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The entry's event time: its milliseconds (clamped below Beam's
    /// max timestamp).
    pub fn timestamp(self) -> i64 {
        let max = Timestamp::MAX.millis() - 1;
        i64::try_from(self.ms).map_or(max, |ms| ms.min(max))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

fn external(what: &str, url: &str, message: impl std::fmt::Display) -> Error {
    Error::External {
        transform: what.to_string(),
        address: url.to_string(),
        message: message.to_string(),
    }
}

fn connect(what: &str, url: &str, read_timeout: Duration) -> Result<Connection, Error> {
    let client = redis::Client::open(url).map_err(|e| external(what, url, e))?;
    let conn = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| external(what, url, format!("cannot connect: {e}")))?;
    conn.set_read_timeout(Some(read_timeout))
        .map_err(|e| external(what, url, e))?;
    Ok(conn)
}

fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// One entry of an XREAD reply: its id and the value of field `data`.
type Entry = (StreamId, Vec<u8>);

/// Parses the XREAD reply for one stream (RESP2: `[[key, [[id, [f, v,
/// ...]], ...]]]`, or nil when nothing came).
fn parse_xread(reply: Value, stream: &str) -> Result<Vec<Entry>, String> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(a) => a,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        other => return Err(format!("unexpected XREAD reply {other:?}")),
    };
    let mut out = Vec::new();
    for s in streams {
        let Value::Array(mut kv) = s else {
            return Err("unexpected XREAD reply: a stream is not [key, entries]".into());
        };
        if kv.len() != 2 {
            return Err("unexpected XREAD reply: a stream is not [key, entries]".into());
        }
        let Value::Array(entries) = kv.pop().unwrap_or(Value::Nil) else {
            return Err("unexpected XREAD reply: entries are not an array".into());
        };
        for e in entries {
            let Value::Array(parts) = e else {
                return Err("unexpected XREAD reply: an entry is not [id, fields]".into());
            };
            let [id, fields] = <[Value; 2]>::try_from(parts)
                .map_err(|_| "unexpected XREAD reply: an entry is not [id, fields]".to_string())?;
            let id_text = text(&id).map(String::from_utf8_lossy).unwrap_or_default();
            let id = StreamId::parse(&id_text)
                .ok_or_else(|| format!("entry id {id_text:?} of stream {stream:?} is malformed"))?;
            let fields = match fields {
                Value::Array(f) => f,
                Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => return Err(format!("entry {id} of stream {stream:?} has no field list")),
            };
            let mut data = None;
            let mut names = Vec::new();
            for pair in fields.chunks(2) {
                let name = text(&pair[0]).unwrap_or_default();
                if name == b"data" {
                    data = pair.get(1).and_then(text).map(<[u8]>::to_vec);
                } else {
                    names.push(String::from_utf8_lossy(name).into_owned());
                }
            }
            let Some(data) = data else {
                return Err(format!(
                    "entry {id} of stream {stream:?} has no field \"data\" (fields: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            };
            out.push((id, data));
        }
    }
    Ok(out)
}

/// A Redis stream source: reads batches after its offset.
pub(crate) struct RedisSource {
    /// Index of its step in the plan.
    pub step: usize,
    read: RedisReadStep,
    /// `Redis stream source '<name>'`, for errors.
    what: String,
    conn: Option<Connection>,
    /// The last entry read (or where reading starts); `None` before start.
    position: Option<StreamId>,
    /// The offset its checkpoint key holds.
    committed: Option<StreamId>,
    /// Entries read in this run.
    count: u64,
    done: bool,
    buf: Vec<u8>,
}

impl RedisSource {
    pub fn new(step: usize, read: &RedisReadStep) -> Self {
        RedisSource {
            step,
            what: format!("Redis stream source '{}'", read.unique_name),
            read: read.clone(),
            conn: None,
            position: None,
            committed: None,
            count: 0,
            done: false,
            buf: Vec::new(),
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        external(&self.what, &self.read.spec.url, message)
    }

    /// Connects, and finds where to start: after the checkpoint's id, or
    /// at the configured start.
    fn start(&mut self) -> Result<(), Error> {
        let spec = &self.read.spec;
        let block = Duration::from_millis(spec.block_ms);
        let mut conn = connect(&self.what, &spec.url, block + REPLY_SLACK)?;
        let saved: Option<String> = match &spec.checkpoint_key {
            Some(k) => redis::cmd("GET")
                .arg(k)
                .query(&mut conn)
                .map_err(|e| self.err(format!("reading checkpoint key {k:?}: {e}")))?,
            None => None,
        };
        let position = match saved {
            Some(s) => {
                let id = StreamId::parse(&s).ok_or_else(|| {
                    self.err(format!(
                        "checkpoint key {:?} holds {s:?}, not a stream id",
                        spec.checkpoint_key.as_deref().unwrap_or_default()
                    ))
                })?;
                self.committed = Some(id);
                id
            }
            None => match &spec.start {
                RedisStart::Beginning => StreamId { ms: 0, seq: 0 },
                RedisStart::AfterId(s) => StreamId::parse(s)
                    .ok_or_else(|| self.err(format!("start id {s:?} is not a stream id")))?,
                RedisStart::Latest => {
                    // The newest entry's id (any fields); none: from 0-0.
                    let last: Vec<(String, Value)> = redis::cmd("XREVRANGE")
                        .arg(&spec.stream)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query(&mut conn)
                        .map_err(|e| self.err(format!("stream {:?}: {e}", spec.stream)))?;
                    match last.first() {
                        Some((id, _)) => StreamId::parse(id).ok_or_else(|| {
                            self.err(format!("stream {:?} has entry id {id:?}", spec.stream))
                        })?,
                        None => StreamId { ms: 0, seq: 0 },
                    }
                }
            },
        };
        self.position = Some(position);
        self.conn = Some(conn);
        Ok(())
    }

    /// Drain: read nothing more.
    pub fn stop(&mut self) {
        self.done = true;
    }

    /// The lowest event time an entry not yet read can have: the
    /// milliseconds of the last id read (ids only grow); +∞ once done.
    pub fn watermark(&self) -> Watermark {
        if self.done {
            return END_OF_TIME;
        }
        self.position.map_or(BEFORE_TIME, StreamId::timestamp)
    }

    /// The checkpoint to write, if the offset moved since the last commit.
    fn uncommitted(&self) -> Option<(&str, StreamId)> {
        let key = self.read.spec.checkpoint_key.as_deref()?;
        let p = self.position?;
        (self.committed != Some(p)).then_some((key, p))
    }

    /// Reads the next batch (waiting up to the block time for one) and
    /// emits each entry as a windowed `KV<id, data>`. Returns how many.
    ///
    /// # Errors
    /// [`Error::External`] when the server fails or an entry is malformed;
    /// what `emit` returns.
    pub fn read_batch(
        &mut self,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        if self.done {
            return Ok(0);
        }
        if self.conn.is_none() {
            self.start()?;
        }
        let spec = &self.read.spec;
        let mut count = spec.batch_size.max(1);
        if let Some(max) = spec.max_entries {
            count = count.min(max.saturating_sub(self.count));
            if count == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let position = self.position.unwrap_or(StreamId { ms: 0, seq: 0 });
        let (Some(conn), stream) = (self.conn.as_mut(), &spec.stream) else {
            return Err(Error::Internal("Redis source without a connection".into()));
        };
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(spec.block_ms.max(1))
            .arg("STREAMS")
            .arg(stream)
            .arg(position.to_string())
            .query(conn)
            .map_err(|e| external(&self.what, &spec.url, format!("XREAD {stream:?}: {e}")))?;
        let entries = parse_xread(reply, stream).map_err(|e| external(&self.what, &spec.url, e))?;
        if entries.is_empty() && spec.stop_at_end {
            self.done = true;
        }
        for (id, data) in &entries {
            self.buf.clear();
            WindowedValueHeader::global(Timestamp::from_millis(id.timestamp()))
                .encode(&mut self.buf);
            write_length_prefixed(&mut self.buf, id.to_string().as_bytes());
            write_length_prefixed(&mut self.buf, data);
            emit(&self.buf)?;
            self.position = Some(*id);
        }
        self.count += entries.len() as u64;
        if spec.max_entries.is_some_and(|m| self.count >= m) {
            self.done = true;
        }
        Ok(entries.len())
    }
}

/// A Redis stream sink: buffers its input until the engine commits.
pub(crate) struct RedisSink {
    /// Index of its step in the plan.
    pub step: usize,
    write: RedisWriteStep,
    what: String,
    window_coder: Coder,
    /// The `data` of each element not yet written.
    pending: Vec<Vec<u8>>,
}

impl RedisSink {
    pub fn new(step: usize, write: &RedisWriteStep, plan: &ExecutionPlan) -> Result<Self, Error> {
        let input = write.inputs.first().and_then(|p| plan.pcollection(p));
        let input = input.ok_or_else(|| {
            Error::Internal(format!("Redis sink '{}' has no input", write.unique_name))
        })?;
        Ok(RedisSink {
            step,
            what: format!("Redis stream sink '{}'", write.unique_name),
            write: write.clone(),
            window_coder: match input.windowing.window_coder {
                WindowCoderKind::Global => Coder::GlobalWindow,
                WindowCoderKind::Interval => Coder::IntervalWindow,
                WindowCoderKind::Other => {
                    return Err(Error::Plan(format!(
                        "Redis stream sink '{}' cannot read elements in custom windows: window its input into the global window first",
                        write.unique_name
                    )));
                }
            },
            pending: Vec::new(),
        })
    }

    /// Buffers every element of `bytes` (nested windowed bytes or strings).
    ///
    /// # Errors
    /// If the bytes do not decode.
    pub fn buffer(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Execution(oxbeam_fn_api::Error::invalid(
                format!("input element of {}", self.what),
                e,
            ))
        };
        let mut input = bytes;
        while !input.is_empty() {
            let h = WindowedHeader::parse(&input, &self.window_coder).map_err(|e| bad(&e))?;
            let mut rest = h.value;
            let n = read_varint(&mut rest).map_err(|e| bad(&e))?;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= rest.len())
                .ok_or_else(|| bad(&format!("length {n} exceeds the {} bytes left", rest.len())))?;
            let (value, after) = rest.split_at(n);
            self.pending.push(value.to_vec());
            input = after;
        }
        Ok(())
    }
}

/// The Redis sources and sinks of one job, and their commits.
#[derive(Default)]
pub(crate) struct RedisIo {
    pub sources: Vec<RedisSource>,
    pub sinks: Vec<RedisSink>,
    /// One connection per server for commits, by url.
    conns: BTreeMap<String, Connection>,
    /// The engine state (see `checkpoint`) as last committed or restored.
    state_committed: Option<Vec<u8>>,
    /// Whether the engine state was looked for at start.
    pub state_loaded: bool,
    /// When a job with engine state commits next (`None`: at once).
    next_state_commit: Option<Instant>,
}

/// Shortest time between two commits of a job with engine state: each
/// commit writes the whole state, so commits (and the sinks' output) are
/// spaced by at least this, and by ten times the last commit's duration.
const MIN_STATE_COMMIT_INTERVAL: Duration = Duration::from_millis(50);

/// The key of the engine state next to checkpoint key `key`.
fn state_key(key: &str) -> String {
    format!("{key}:state")
}

impl RedisIo {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.sinks.is_empty()
    }

    /// The source of step `step`, if it is one.
    pub fn source(&self, step: usize) -> Option<&RedisSource> {
        self.sources.iter().find(|s| s.step == step)
    }

    /// Buffers input of the sink of step `step`; a sink with no source to
    /// commit with writes once it holds [`MAX_UNCOUPLED_BUFFER`] elements.
    pub fn buffer(&mut self, step: usize, bytes: &[u8]) -> Result<(), Error> {
        let sink = self
            .sinks
            .iter_mut()
            .find(|s| s.step == step)
            .ok_or_else(|| Error::Internal(format!("step {step} is not a Redis sink")))?;
        sink.buffer(bytes)?;
        if self.sources.is_empty() && sink.pending.len() >= MAX_UNCOUPLED_BUFFER {
            self.commit(None)?;
        }
        Ok(())
    }

    /// The source whose checkpoint key the engine state goes with: the
    /// first with a checkpoint key.
    fn state_source(&self) -> Option<&RedisSource> {
        self.sources
            .iter()
            .find(|s| s.read.spec.checkpoint_key.is_some())
    }

    /// The engine state saved next to the state source's checkpoint (see
    /// `checkpoint`), read once its source started.
    ///
    /// # Errors
    /// [`Error::External`] naming the source and server.
    pub fn load_state(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let Some(i) = self
            .sources
            .iter()
            .position(|s| s.read.spec.checkpoint_key.is_some())
        else {
            return Ok(None);
        };
        let source = &mut self.sources[i];
        let key = state_key(
            source
                .read
                .spec
                .checkpoint_key
                .as_deref()
                .unwrap_or_default(),
        );
        let Some(conn) = source.conn.as_mut() else {
            return Ok(None);
        };
        let saved: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query(conn)
            .map_err(|e| source.err(format!("reading engine state key {key:?}: {e}")))?;
        self.state_committed.clone_from(&saved);
        Ok(saved)
    }

    /// An error about the engine state saved with the state source.
    pub fn state_error(&self, message: impl std::fmt::Display) -> Error {
        match self.state_source() {
            Some(s) => s.err(format!(
                "engine state key {:?}: {message}",
                state_key(s.read.spec.checkpoint_key.as_deref().unwrap_or_default())
            )),
            None => Error::Internal(message.to_string()),
        }
    }

    /// Drain: every source stops reading.
    pub fn stop(&mut self) {
        for s in &mut self.sources {
            s.stop();
        }
    }

    /// Writes what the sinks buffered and the sources' new offsets: per
    /// server, one MULTI/EXEC with the XADDs of its sinks and the SETs of
    /// the checkpoint keys of its sources; sources on a server with no sink
    /// are checkpointed after every sink's transaction succeeded. `state`,
    /// the engine's (GroupByKeys, user state, timers), goes with the first
    /// source that has a checkpoint key, as `<checkpoint key>:state`, when
    /// it changed; empty `state` deletes that key.
    ///
    /// # Errors
    /// [`Error::External`] naming the sink (or source) and server.
    pub fn commit(&mut self, state: Option<&[u8]>) -> Result<(), Error> {
        let state = state
            .filter(|s| self.state_committed.as_deref() != Some(*s))
            .and_then(|s| {
                let source = self.state_source()?;
                let key = state_key(source.read.spec.checkpoint_key.as_deref()?);
                Some((source.read.spec.url.clone(), key, s))
            });
        let mut urls: Vec<String> = Vec::new();
        if let Some((url, ..)) = &state {
            urls.push(url.clone());
        }
        for s in &self.sinks {
            if !s.pending.is_empty() && !urls.contains(&s.write.spec.url) {
                urls.push(s.write.spec.url.clone());
            }
        }
        for s in &self.sources {
            if s.uncommitted().is_some() && !urls.contains(&s.read.spec.url) {
                urls.push(s.read.spec.url.clone());
            }
        }
        // Servers with sinks first: offsets move only after results are in.
        urls.sort_by_key(|u| !self.sinks.iter().any(|s| &s.write.spec.url == u));
        for url in urls {
            let sinks: Vec<usize> = (0..self.sinks.len())
                .filter(|&i| {
                    self.sinks[i].write.spec.url == url && !self.sinks[i].pending.is_empty()
                })
                .collect();
            let sources: Vec<usize> = (0..self.sources.len())
                .filter(|&i| {
                    self.sources[i].read.spec.url == url && self.sources[i].uncommitted().is_some()
                })
                .collect();
            let state_here = state.as_ref().filter(|(u, ..)| *u == url);
            let what = match (sinks.first(), sources.first()) {
                (Some(&i), _) => self.sinks[i].what.clone(),
                (None, Some(&i)) => self.sources[i].what.clone(),
                (None, None) => match self.state_source() {
                    Some(s) if state_here.is_some() => s.what.clone(),
                    _ => continue,
                },
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            for &i in &sinks {
                let s = &self.sinks[i];
                for data in &s.pending {
                    pipe.cmd("XADD")
                        .arg(&s.write.spec.stream)
                        .arg("*")
                        .arg("data")
                        .arg(data.as_slice())
                        .ignore();
                }
            }
            let mut offsets = Vec::new();
            for &i in &sources {
                if let Some((key, id)) = self.sources[i].uncommitted() {
                    pipe.cmd("SET").arg(key).arg(id.to_string()).ignore();
                    offsets.push((i, id));
                }
            }
            match state_here {
                Some((_, key, [])) => {
                    pipe.cmd("DEL").arg(key).ignore();
                }
                Some((_, key, bytes)) => {
                    pipe.cmd("SET").arg(key).arg(*bytes).ignore();
                }
                None => {}
            }
            if !self.conns.contains_key(&url) {
                let c = connect(&what, &url, REPLY_SLACK)?;
                self.conns.insert(url.clone(), c);
            }
            let Some(conn) = self.conns.get_mut(&url) else {
                continue;
            };
            if let Err(e) = pipe.query::<()>(conn) {
                self.conns.remove(&url);
                return Err(external(&what, &url, format!("commit (MULTI/EXEC): {e}")));
            }
            for &i in &sinks {
                self.sinks[i].pending.clear();
            }
            for (i, id) in offsets {
                self.sources[i].committed = Some(id);
            }
            if let Some((.., bytes)) = state_here {
                self.state_committed = Some(bytes.to_vec());
            }
        }
        Ok(())
    }
}

impl Engine<'_, '_> {
    /// The Redis sources and sinks of `plan`'s steps (built with the
    /// engine).
    pub(super) fn redis_io(plan: &ExecutionPlan) -> Result<RedisIo, Error> {
        use oxbeam_runner_core::Step;
        let mut io = RedisIo::default();
        for (i, step) in plan.steps().iter().enumerate() {
            match step {
                Step::RedisRead(r) => io.sources.push(RedisSource::new(i, r)),
                Step::RedisWrite(w) => io.sinks.push(RedisSink::new(i, w, plan)?),
                _ => {}
            }
        }
        Ok(io)
    }

    /// The output watermark of Redis step `step` at input watermark
    /// `in_wm`: a source's own, a sink's input watermark.
    pub(super) fn redis_watermark(&mut self, step: usize, in_wm: Watermark) {
        let wm = self
            .redis
            .source(step)
            .map_or(in_wm, RedisSource::watermark);
        self.set_output_wm(step, wm);
    }

    /// At a quiescent point (nothing queued or in flight): commits the
    /// sinks' buffered output with the sources' offsets, then reads the
    /// next batch of every source. Returns whether a source read or waited
    /// for entries: the XREAD wait is the coordinator's sleep, so it loops
    /// again at once.
    ///
    /// # Errors
    /// [`Error::External`] from the servers; routing errors.
    pub(super) fn poll_redis(&mut self) -> Result<bool, Error> {
        if self.redis.is_empty() || self.in_flight > 0 {
            return Ok(false);
        }
        // A queue waiting for its stage's side inputs cannot be taken
        // before sources advance.
        let waits =
            |i: usize, q: &VecDeque<Queued>| q.front().is_none_or(|q| !self.side_ready(i, q));
        let quiescent = self.ops.iter().enumerate().all(|(i, o)| match o {
            Op::Stage(s) => {
                waits(i, &s.queue)
                    && s.in_flight.is_empty()
                    && s.keyed
                        .iter()
                        .flatten()
                        .all(|p| waits(i, &p.queue) && p.busy.is_none())
            }
            _ => true,
        });
        if !quiescent {
            return Ok(false);
        }
        if self.draining {
            self.redis.stop();
        }
        // Started sources have a position: a new one (no checkpoint yet,
        // e.g. "latest") is checkpointed by this commit, before any read.
        for s in &mut self.redis.sources {
            if s.conn.is_none() && !s.done {
                s.start()?;
            }
        }
        let keeps_state = self.keeps_state();
        if !self.redis.state_loaded {
            // A restarted job: its GroupByKeys and stateful stages go on
            // from the state committed with the offsets it resumes after.
            self.redis.state_loaded = true;
            if keeps_state && let Some(bytes) = self.redis.load_state()? {
                self.restore_state(&bytes)
                    .map_err(|m| self.redis.state_error(m))?;
            }
        }
        // Input a stage holds while it waits for side inputs is read but
        // not processed: the offsets wait for it.
        // (The pipeline is quiescent: a queue that is not empty waits.)
        let holding = self.ops.iter().any(|o| match o {
            Op::Stage(s) => {
                !s.queue.is_empty() || s.keyed.iter().flatten().any(|p| !p.queue.is_empty())
            }
            _ => false,
        });
        // A finished job (drained, or its sources ended) has fired every
        // window and expired all state: a restart from its state would
        // start at the end of time and drop all new input as late, so its
        // state is deleted with the last offsets; a restart begins anew
        // after them.
        let finished = self.out_wm.iter().all(|&w| w == END_OF_TIME);
        let due = !keeps_state
            || finished
            || self
                .redis
                .next_state_commit
                .is_none_or(|t| Instant::now() >= t);
        if !holding && due {
            let started = Instant::now();
            let state = match (keeps_state, finished) {
                (false, _) => None,
                (true, true) => Some(Vec::new()),
                (true, false) => Some(self.snapshot_state()?),
            };
            self.redis.commit(state.as_deref())?;
            if keeps_state {
                // Batches read meanwhile are committed together later: a
                // crash replays them all, so results stay exactly once.
                let spacing = (started.elapsed() * 10).max(MIN_STATE_COMMIT_INTERVAL);
                self.redis.next_state_commit = Some(Instant::now() + spacing);
            }
        }
        let mut read = false;
        for k in 0..self.redis.sources.len() {
            read |= !self.redis.sources[k].done;
            let step = self.redis.sources[k].step;
            let output = self.redis.sources[k].read.output.clone();
            let mut w = self.job.writer(&output)?;
            let n = self.redis.sources[k].read_batch(&mut |e| w.emit(e))?;
            w.commit()?;
            if n > 0 {
                self.collect(step)?;
            }
            let wm = self.redis.sources[k].watermark();
            self.set_output_wm(step, wm);
        }
        Ok(read)
    }
}

#[cfg(test)]
#[path = "../../tests/support/redis_server.rs"]
pub(crate) mod redis_server;

#[cfg(test)]
mod tests {
    use oxbeam_model::coders::WindowCoder;
    use oxbeam_model::coders::wire::read_length_prefixed;
    use oxbeam_runner_core::{RedisReadSpec, RedisWriteSpec};

    use super::redis_server::RedisServer;
    use super::*;

    fn read_step(url: &str, stream: &str, ckpt: Option<&str>) -> RedisReadStep {
        RedisReadStep {
            transform: "t1".into(),
            unique_name: "Read".into(),
            output: "p1".into(),
            spec: RedisReadSpec {
                url: url.into(),
                stream: stream.into(),
                start: RedisStart::Beginning,
                checkpoint_key: ckpt.map(str::to_string),
                batch_size: 3,
                block_ms: 10,
                max_entries: None,
                stop_at_end: true,
            },
        }
    }

    fn sink(url: &str, stream: &str) -> RedisSink {
        RedisSink {
            step: 1,
            write: RedisWriteStep {
                transform: "t2".into(),
                unique_name: "Write".into(),
                inputs: vec!["p2".into()],
                spec: RedisWriteSpec {
                    url: url.into(),
                    stream: stream.into(),
                },
            },
            what: "Redis stream sink 'Write'".into(),
            window_coder: Coder::GlobalWindow,
            pending: Vec::new(),
        }
    }

    /// `(id, data, timestamp)` of every element of one batch.
    fn batch(s: &mut RedisSource) -> Vec<(String, Vec<u8>, i64)> {
        let mut out = Vec::new();
        s.read_batch(&mut |e| {
            let mut input = e;
            let h = WindowedValueHeader::decode(&mut input, WindowCoder::Global).unwrap();
            let id = read_length_prefixed(&mut input).unwrap().to_vec();
            let data = read_length_prefixed(&mut input).unwrap().to_vec();
            out.push((String::from_utf8(id).unwrap(), data, h.timestamp.millis()));
            Ok(())
        })
        .unwrap();
        out
    }

    fn xadd(c: &mut Connection, stream: &str, id: &str, data: &str) {
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg(id)
            .arg("data")
            .arg(data)
            .query(c)
            .unwrap();
    }

    fn stream_data(c: &mut Connection, stream: &str) -> Vec<String> {
        let v: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query(c)
            .unwrap();
        parse_xread(
            Value::Array(vec![Value::Array(vec![Value::Nil, v])]),
            stream,
        )
        .unwrap()
        .into_iter()
        .map(|(_, d)| String::from_utf8(d).unwrap())
        .collect()
    }

    #[test]
    fn source_reads_batches_with_timestamps_and_watermark() {
        let server = RedisServer::start();
        let mut c = server.connection();
        for i in 1..=5 {
            xadd(&mut c, "in", &format!("{}-0", 1000 * i), &format!("v{i}"));
        }
        let mut s = RedisSource::new(0, &read_step(&server.url(), "in", None));
        assert_eq!(s.watermark(), BEFORE_TIME);
        let first = batch(&mut s);
        assert_eq!(
            first,
            [
                ("1000-0".to_string(), b"v1".to_vec(), 1000),
                ("2000-0".to_string(), b"v2".to_vec(), 2000),
                ("3000-0".to_string(), b"v3".to_vec(), 3000),
            ]
        );
        assert_eq!(s.watermark(), 3000);
        assert_eq!(batch(&mut s).len(), 2);
        assert_eq!(s.watermark(), 5000);
        // Caught up with stop_at_end: done.
        assert!(batch(&mut s).is_empty());
        assert_eq!(s.watermark(), END_OF_TIME);
    }

    #[test]
    fn commit_writes_outputs_and_offset_atomically_and_restart_resumes() {
        let server = RedisServer::start();
        let mut c = server.connection();
        for i in 1..=4 {
            xadd(&mut c, "in", &format!("{i}-0"), &format!("v{i}"));
        }
        let url = server.url();
        let mut io = RedisIo::default();
        io.sources
            .push(RedisSource::new(0, &read_step(&url, "in", Some("ckpt"))));
        io.sinks.push(sink(&url, "out"));
        let got = batch(&mut io.sources[0]);
        assert_eq!(got.len(), 3);
        let mut elems = Vec::new();
        for (_, data, _) in &got {
            WindowedValueHeader::global(Timestamp::from_millis(0)).encode(&mut elems);
            write_length_prefixed(&mut elems, &[data.as_slice(), b"!"].concat());
        }
        io.sinks[0].buffer(&elems).unwrap();
        // Nothing is visible before the commit.
        assert!(stream_data(&mut c, "out").is_empty());
        io.commit(None).unwrap();
        assert_eq!(stream_data(&mut c, "out"), ["v1!", "v2!", "v3!"]);
        let ckpt: String = redis::cmd("GET").arg("ckpt").query(&mut c).unwrap();
        assert_eq!(ckpt, "3-0");
        // A second commit with nothing new writes nothing.
        io.commit(None).unwrap();
        assert_eq!(stream_data(&mut c, "out").len(), 3);
        // Read the 4th but "crash" before committing: a new source resumes
        // after the checkpoint and sees it again.
        assert_eq!(batch(&mut io.sources[0]).len(), 1);
        let mut again = RedisSource::new(0, &read_step(&url, "in", Some("ckpt")));
        let resumed = batch(&mut again);
        assert_eq!(
            resumed,
            [("4-0".to_string(), b"v4".to_vec(), 4)],
            "resumes after the checkpoint"
        );
        assert_eq!(again.watermark(), 4);
    }

    #[test]
    fn malformed_entries_and_unreachable_servers_name_transform_and_address() {
        let server = RedisServer::start();
        let mut c = server.connection();
        let _: String = redis::cmd("XADD")
            .arg("in")
            .arg("5-1")
            .arg("body")
            .arg("x")
            .query(&mut c)
            .unwrap();
        let url = server.url();
        let mut s = RedisSource::new(0, &read_step(&url, "in", None));
        let err = s.read_batch(&mut |_| Ok(())).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "Redis stream source 'Read' at {url}: entry 5-1 of stream \"in\" has no field \"data\" (fields: body)"
            )
        );
        let _: () = redis::cmd("SET").arg("str").arg("x").query(&mut c).unwrap();
        let mut s = RedisSource::new(0, &read_step(&url, "str", None));
        let err = s.read_batch(&mut |_| Ok(())).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "Redis stream source 'Read' at {url}: XREAD \"str\": \"WRONGTYPE\": Operation against a key holding the wrong kind of value"
            )
        );
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = format!("redis://127.0.0.1:{port}/");
        let mut s = RedisSource::new(0, &read_step(&dead, "in", None));
        let err = s.read_batch(&mut |_| Ok(())).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "Redis stream source 'Read' at {dead}: cannot connect: "
            )),
            "{err}"
        );
        let mut io = RedisIo::default();
        io.sinks.push(sink(&dead, "out"));
        let mut e = Vec::new();
        WindowedValueHeader::global(Timestamp::from_millis(0)).encode(&mut e);
        write_length_prefixed(&mut e, b"x");
        io.sinks[0].buffer(&e).unwrap();
        let err = io.commit(None).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "Redis stream sink 'Write' at {dead}: cannot connect: "
            )),
            "{err}"
        );
    }

    #[test]
    fn a_new_source_checkpoints_its_start_before_reading() {
        let server = RedisServer::start();
        let mut c = server.connection();
        xadd(&mut c, "in", "7-0", "old");
        let mut step = read_step(&server.url(), "in", Some("ckpt"));
        step.spec.start = RedisStart::Latest;
        let mut io = RedisIo::default();
        io.sources.push(RedisSource::new(0, &step));
        io.sources[0].start().unwrap();
        io.commit(None).unwrap();
        let ckpt: String = redis::cmd("GET").arg("ckpt").query(&mut c).unwrap();
        assert_eq!(ckpt, "7-0");
        // A restart resumes there, not at the then latest entry.
        xadd(&mut c, "in", "8-0", "new");
        let mut again = RedisSource::new(0, &step);
        assert_eq!(batch(&mut again), [("8-0".to_string(), b"new".to_vec(), 8)]);
    }

    #[test]
    fn latest_starts_after_the_last_entry() {
        let server = RedisServer::start();
        let mut c = server.connection();
        xadd(&mut c, "in", "7-0", "old");
        let mut step = read_step(&server.url(), "in", None);
        step.spec.start = RedisStart::Latest;
        step.spec.stop_at_end = false;
        step.spec.max_entries = Some(1);
        let mut s = RedisSource::new(0, &step);
        assert!(batch(&mut s).is_empty());
        assert_eq!(s.watermark(), 7);
        xadd(&mut c, "in", "8-0", "new");
        assert_eq!(batch(&mut s), [("8-0".to_string(), b"new".to_vec(), 8)]);
        // max_entries reached.
        assert_eq!(s.watermark(), END_OF_TIME);
    }
}
