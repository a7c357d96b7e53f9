"""Oxbeam's streaming sources and sink, as runner primitives (the Rust SDK's
``oxbeam::io::Generate``, ``oxbeam::io::redis`` and
``oxbeam::io::WatchFiles``):

- :class:`Generate`: a synthetic source of ``(key, seq)`` pairs with event
  timestamps, unbounded or of a fixed size, at a fixed rate: for streaming
  pipelines, benchmarks and tests.
- :class:`ReadFromRedisStream` / :class:`WriteToRedisStream`: Redis Streams
  as a durable, replayable unbounded source and a sink. With a checkpoint
  key, a restarted job resumes after the last entry whose results were
  committed; the writes, and the state of GroupByKeys and stateful DoFns,
  commit with the source's offsets (exactly once).
- :class:`WatchFiles`: the lines of files matching a glob as they appear.

The runner runs them in its streaming engine (``oxbeam:transform:generate:v1``,
``oxbeam:transform:redis_read:v1``, ``oxbeam:transform:redis_write:v1``,
``oxbeam:transform:watch_files:v1``).
"""

import json

from oxbeam import typehints
from oxbeam.transforms.ptransform import PTransform
from oxbeam.window import GlobalWindows

__all__ = ["Generate", "ReadFromRedisStream", "WatchFiles", "WriteToRedisStream"]


def _millis(seconds, what):
    if seconds is None:
        return 0
    if seconds < 0:
        raise ValueError("%s must not be negative, got %r" % (what, seconds))
    return int(round(seconds * 1000))


def _payload(message, fields):
    def build(_builder):
        from oxbeam import _oxbeam

        return _oxbeam.encode_proto(message, json.dumps(fields))

    return build


def _source(pbegin, urn_key, message, fields, element_type, unbounded):
    from oxbeam.transforms.core import _node

    node = _node(pbegin.pipeline)
    node.primitive = (urn_key, _payload(message, fields), False)
    pc = node._add_output("None", element_type, GlobalWindows())
    if unbounded:
        pc.is_bounded = False
    return pc


class Generate(PTransform):
    """Emits ``(key, seq)`` pairs of ints: element ``seq`` (from 0) has a
    seeded pseudo-random key below ``keys`` and event timestamp ``start +
    seq / rate - skew - jitter``, the jitter a seeded random lag up to
    ``max_out_of_orderness`` seconds. Elements come at ``rate`` per second
    of processing time (0: as fast as possible); the watermark trails the
    next element by skew plus out-of-orderness. Unbounded unless
    ``num_elements`` is given.

    >>> import oxbeam as beam
    >>> from oxbeam.io.streams import Generate
    >>> p = beam.Pipeline()
    >>> events = p | Generate(rate=1000, keys=10, num_elements=5000)
    """

    def __init__(self, rate=0, keys=1, num_elements=None, event_time_skew=0.0,
                 max_out_of_orderness=0.0, seed=0, start_timestamp=None):
        PTransform.__init__(self)
        if num_elements is not None and num_elements <= 0:
            raise ValueError("num_elements must be positive, got %r" % (num_elements,))
        if keys < 1:
            raise ValueError("keys must be at least 1, got %r" % (keys,))
        if rate < 0:
            raise ValueError("rate must not be negative, got %r" % (rate,))
        self._fields = {
            "ratePerSecond": str(int(rate)),
            "numElements": str(int(num_elements or 0)),
            "keyCount": str(int(keys)),
            "eventTimeSkewMillis": str(_millis(event_time_skew, "event_time_skew")),
            "maxOutOfOrdernessMillis": str(_millis(max_out_of_orderness, "max_out_of_orderness")),
            "seed": str(int(seed)),
        }
        if start_timestamp is not None:
            self._fields["startTimestampMillis"] = str(int(round(float(start_timestamp) * 1000)))
        self._bounded = num_elements is not None

    def expand(self, pbegin):
        return _source(pbegin, "oxbeam_transforms::GENERATE", "oxbeam.model.v1.GeneratePayload",
                       self._fields, typehints.KV[int, int], not self._bounded)


class ReadFromRedisStream(PTransform):
    """Reads the Redis stream ``stream`` at ``url`` (``redis://host:port/``):
    entry ``<ms>-<seq>`` becomes ``(entry id, value of its field "data")`` (a
    ``str`` and ``bytes``) with event timestamp ``<ms>``, in the global
    window; the watermark is the ``<ms>`` of the last entry read.

    ``checkpoint_key``: a Redis key keeping the id of the last entry whose
    results are committed; a restarted job resumes after it. Start from
    the beginning (default), ``from_latest=True``, or ``after_id``.
    ``max_entries`` or ``stop_at_end=True`` make the read bounded.
    """

    def __init__(self, url, stream, checkpoint_key=None, from_latest=False, after_id=None,
                 batch_size=None, block=None, max_entries=None, stop_at_end=False):
        PTransform.__init__(self)
        if from_latest and after_id is not None:
            raise ValueError("give at most one of from_latest and after_id")
        start = "REDIS_START_POSITION_BEGINNING"
        if from_latest:
            start = "REDIS_START_POSITION_LATEST"
        elif after_id is not None:
            start = "REDIS_START_POSITION_AFTER_ID"
        self._fields = {
            "url": str(url),
            "stream": str(stream),
            "start": start,
            "startId": str(after_id or ""),
            "checkpointKey": str(checkpoint_key or ""),
            "batchSize": str(int(batch_size or 0)),
            "blockMillis": str(_millis(block, "block")),
            "maxEntries": str(int(max_entries or 0)),
            "stopAtEnd": bool(stop_at_end),
        }
        self._bounded = bool(max_entries) or stop_at_end

    def expand(self, pbegin):
        return _source(pbegin, "oxbeam_transforms::REDIS_READ", "oxbeam.model.v1.RedisReadPayload",
                       self._fields, typehints.KV[str, bytes], not self._bounded)


class WriteToRedisStream(PTransform):
    """Appends each element (``bytes`` or ``str``) to the Redis stream
    ``stream`` at ``url`` as an entry with the single field ``data``. Writes
    are committed in one ``MULTI/EXEC`` with the offsets of the
    :class:`ReadFromRedisStream` reads on the same server."""

    def __init__(self, url, stream):
        PTransform.__init__(self)
        self._fields = {"url": str(url), "stream": str(stream)}

    def expand(self, pcoll):
        from oxbeam.transforms.core import _node

        if pcoll.element_type not in (bytes, str):
            raise TypeError(
                "WriteToRedisStream writes bytes or str elements; the input's element type is %r "
                "(map the elements to bytes or str first, with .with_output_types(bytes))"
                % (pcoll.element_type,))
        node = _node(pcoll.pipeline)
        node.primitive = ("oxbeam_transforms::REDIS_WRITE",
                          _payload("oxbeam.model.v1.RedisWritePayload", self._fields), False)
        return None


class WatchFiles(PTransform):
    """The lines of files matching ``pattern`` as they appear (Beam Java's
    ``TextIO.read().watchForNewFiles``; Beam Python's
    ``fileio.MatchContinuously`` followed by reading): every
    ``poll_interval`` seconds the glob is matched and each file not seen
    before in this job is read whole, once, one ``str`` element per line
    (without the line terminator). Elements are in the global window,
    timestamped with the processing time of the poll that found their file;
    the watermark is the time of the last poll. Write files elsewhere and
    rename them into the watched place, so a poll never reads half a file.

    Unbounded unless ``stop_after_idle`` (seconds without a new file) or
    ``max_files`` ends it; the pipeline runs on the streaming engine. A file
    that is not UTF-8 or cannot be read fails the job, naming the file.
    """

    def __init__(self, pattern, poll_interval=1.0, stop_after_idle=None, max_files=None):
        PTransform.__init__(self)
        if not pattern:
            raise ValueError("WatchFiles needs a file pattern")
        if max_files is not None and max_files < 1:
            raise ValueError("max_files must be at least 1, got %r" % (max_files,))
        interval = _millis(poll_interval, "poll_interval")
        idle = _millis(stop_after_idle, "stop_after_idle")
        self._fields = {
            "pattern": str(pattern),
            "pollIntervalMillis": str(max(interval, 1)),
            "stopAfterIdleMillis": str(max(idle, 1) if stop_after_idle is not None else 0),
            "maxFiles": str(int(max_files or 0)),
        }
        self._bounded = stop_after_idle is not None or max_files is not None

    def expand(self, pbegin):
        return _source(pbegin, "oxbeam_transforms::WATCH_FILES", "oxbeam.model.v1.WatchFilesPayload",
                       self._fields, str, not self._bounded)
