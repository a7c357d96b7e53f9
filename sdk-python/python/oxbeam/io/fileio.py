"""Files as elements, as ``apache_beam.io.fileio``: ``MatchFiles`` /
``MatchAll`` (patterns → ``FileMetadata``), ``ReadMatches`` (→
``ReadableFile``), and ``WriteToFiles`` (records → files per destination
and window, through a ``FileSink``; ``TextSink`` by default).

``WriteToFiles`` writes each (destination, window) to one file — or to
``shards`` files, round robin, when ``shards`` is given — under ``path``,
named by ``file_naming`` (Beam's ``default_file_naming('output')``:
``output-<start>-<end>-SSSSS-of-NNNNN``), written to a temporary name first
and moved into place; it outputs a :class:`FileResult` per file.
"""

import collections
import os
import uuid

from oxbeam.io.filesystem import CompressionTypes, FileMetadata
from oxbeam.io.filesystems import FileSystems
from oxbeam.transforms.core import Create, DoFn, GroupByKey, ParDo
from oxbeam.transforms.ptransform import PTransform

__all__ = [
    "EmptyMatchTreatment", "MatchFiles", "MatchAll", "ReadableFile", "ReadMatches",
    "FileSink", "TextSink", "WriteToFiles", "FileResult", "default_file_naming",
    "destination_prefix_naming", "single_file_naming", "prefix_naming",
]


class EmptyMatchTreatment(object):
    """Whether a pattern may match no file."""

    ALLOW = "ALLOW"
    DISALLOW = "DISALLOW"
    ALLOW_IF_WILDCARD = "ALLOW_IF_WILDCARD"

    @staticmethod
    def allow_empty_match(pattern, setting):
        if setting == EmptyMatchTreatment.ALLOW:
            return True
        if setting == EmptyMatchTreatment.ALLOW_IF_WILDCARD and "*" in pattern:
            return True
        if setting == EmptyMatchTreatment.DISALLOW:
            return False
        raise ValueError(setting)


class _MatchAllFn(DoFn):
    def __init__(self, empty_match_treatment):
        self._empty_match_treatment = empty_match_treatment

    def process(self, file_pattern):
        result = FileSystems.match([file_pattern])[0]
        if not result.metadata_list and not EmptyMatchTreatment.allow_empty_match(
                file_pattern, self._empty_match_treatment):
            raise IOError("Empty match for pattern %s. Disallowed." % file_pattern)
        return result.metadata_list


class MatchFiles(PTransform):
    """The files matching one pattern, as ``FileMetadata``."""

    def __init__(self, file_pattern, empty_match_treatment=EmptyMatchTreatment.ALLOW_IF_WILDCARD):
        PTransform.__init__(self)
        self._file_pattern = file_pattern
        self._empty_match_treatment = empty_match_treatment

    def expand(self, pcoll):
        return (pcoll.pipeline
                | Create([self._file_pattern])
                | MatchAll(empty_match_treatment=self._empty_match_treatment))


class MatchAll(PTransform):
    """The files matching each pattern of the input, as ``FileMetadata``."""

    def __init__(self, empty_match_treatment=EmptyMatchTreatment.ALLOW):
        PTransform.__init__(self)
        self._empty_match_treatment = empty_match_treatment

    def expand(self, pcoll):
        return pcoll | ParDo(_MatchAllFn(self._empty_match_treatment))


class ReadableFile(object):
    """A matched file: its ``metadata``, ``open()``, ``read()``,
    ``read_utf8()``."""

    def __init__(self, metadata, compression=None):
        self.metadata = metadata
        self._compression = compression

    def open(self, mime_type="text/plain", compression_type=None):
        compression = compression_type or self._compression or CompressionTypes.AUTO
        return FileSystems.open(self.metadata.path, mime_type=mime_type,
                                compression_type=compression)

    def read(self, mime_type="application/octet-stream"):
        with self.open(mime_type) as f:
            return f.read()

    def read_utf8(self):
        with self.open() as f:
            return f.read().decode("utf-8")


class _ReadMatchesFn(DoFn):
    def __init__(self, compression, skip_directories):
        self._compression = compression
        self._skip_directories = skip_directories

    def process(self, file_metadata):
        metadata = (FileMetadata(file_metadata, 0) if isinstance(file_metadata, str)
                    else file_metadata)
        if metadata.path.endswith("/") or metadata.path.endswith("\\"):
            if self._skip_directories:
                return
            raise IOError("Directories are not allowed in ReadMatches transform. Found %s."
                          % metadata.path)
        yield ReadableFile(metadata, self._compression)


class ReadMatches(PTransform):
    """Each matched file (or path) as a :class:`ReadableFile`."""

    def __init__(self, compression=None, skip_directories=True):
        PTransform.__init__(self)
        self._compression = compression
        self._skip_directories = skip_directories

    def expand(self, pcoll):
        return pcoll | ParDo(_ReadMatchesFn(self._compression, self._skip_directories))


class FileSink(object):
    """How records are written to a file: ``open(fh)``, ``write(record)``,
    ``flush()`` (the file handle is closed by ``WriteToFiles``)."""

    def create_metadata(self, destination, full_file_name):
        return None

    def open(self, fh):
        raise NotImplementedError

    def write(self, record):
        raise NotImplementedError

    def flush(self):
        raise NotImplementedError


class TextSink(FileSink):
    """Each record as a UTF-8 line."""

    def open(self, fh):
        self._fh = fh

    def write(self, record):
        self._fh.write(record.encode("utf8"))
        self._fh.write(b"\n")

    def flush(self):
        self._fh.flush()


_TEMPLATE = "{prefix}-{start}-{end}-{pane}-{shard:05d}-of-{total_shards:05d}{suffix}{compression}"


def _format_shard(window, pane, shard_index, total_shards, compression, prefix, suffix):
    from oxbeam.window import GlobalWindow

    kwargs = {"prefix": prefix, "start": "", "end": "", "pane": "", "shard": 0,
              "total_shards": 0, "suffix": suffix or "",
              "compression": ".%s" % compression if compression else ""}
    if total_shards is not None and shard_index is not None:
        kwargs["shard"] = int(shard_index)
        kwargs["total_shards"] = int(total_shards)
    if window != GlobalWindow():
        kwargs["start"] = window.start.to_utc_datetime().isoformat()
        kwargs["end"] = window.end.to_utc_datetime().isoformat()
    fmt = _TEMPLATE
    if shard_index is None:
        fmt = fmt.replace("-{shard:05d}", "")
    if total_shards is None:
        fmt = fmt.replace("-of-{total_shards:05d}", "")
    for name, value in kwargs.items():
        if value in (None, ""):
            fmt = fmt.replace("-{%s}" % name, "")
    return fmt.format(**kwargs)


def default_file_naming(prefix, suffix=None):
    def _inner(window, pane, shard_index, total_shards, compression, destination):
        return _format_shard(window, pane, shard_index, total_shards, compression, prefix,
                             suffix)

    return _inner


def prefix_naming(prefix):
    return default_file_naming(prefix)


def destination_prefix_naming(suffix=None):
    def _inner(window, pane, shard_index, total_shards, compression, destination):
        return _format_shard(window, pane, shard_index, total_shards, compression,
                             str(destination), suffix)

    return _inner


def single_file_naming(prefix, suffix=None):
    def _inner(window, pane, shard_index, total_shards, compression, destination):
        assert shard_index in (0, None), shard_index
        assert total_shards in (1, None), total_shards
        return _format_shard(window, pane, None, None, compression, prefix, suffix)

    return _inner


_FileResult = collections.namedtuple(
    "FileResult", ["file_name", "shard_index", "total_shards", "window", "pane", "destination"])


class FileResult(_FileResult):
    """A file ``WriteToFiles`` wrote."""


class _KeyByDestination(DoFn):
    def __init__(self, destination_fn, shards):
        self.destination_fn = destination_fn
        self.shards = shards

    def start_bundle(self):
        self._counter = 0

    def process(self, record):
        shard = self._counter % self.shards if self.shards else 0
        self._counter += 1
        yield (self.destination_fn(record), shard), record


class _WriteGroup(DoFn):
    def __init__(self, path, file_naming_fn, sink_fn, shards):
        self.path = path
        self.file_naming_fn = file_naming_fn
        self.sink_fn = sink_fn
        self.shards = shards

    def process(self, kv, w=DoFn.WindowParam, pane=DoFn.PaneInfoParam):
        (destination, shard), records = kv
        path = self.path.get() if hasattr(self.path, "get") else self.path
        total = self.shards or 1
        name = self.file_naming_fn(w, pane, shard, total, None, destination)
        final = os.path.join(path, name)
        tmp = os.path.join(path, ".temp-%s-%s" % (uuid.uuid4().hex, name))
        sink = self.sink_fn(destination)
        try:
            with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
                sink.open(fh)
                for r in records:
                    sink.write(r)
                sink.flush()
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        yield FileResult(final, shard, total, w, pane, destination)


class WriteToFiles(PTransform):
    """Writes records to files under ``path``: per destination (``destination``
    — a value or a function of the record) and window, through ``sink`` (a
    ``FileSink`` class, instance, or a function of the destination)."""

    def __init__(self, path, file_naming=None, destination=None, temp_directory=None, sink=None,
                 shards=None, output_fn=None, max_writers_per_bundle=20):
        PTransform.__init__(self)
        self.path = path
        self.file_naming_fn = file_naming or default_file_naming("output")
        if callable(destination):
            self.destination_fn = destination
        else:
            self.destination_fn = _Const(destination)
        if isinstance(sink, type) and issubclass(sink, FileSink):
            self.sink_fn = _New(sink)
        elif isinstance(sink, FileSink):
            self.sink_fn = _New(type(sink))
        elif callable(sink):
            self.sink_fn = sink
        else:
            self.sink_fn = _New(TextSink)
        self.shards = shards

    def expand(self, pcoll):
        path = self.path.get() if hasattr(self.path, "get") else self.path
        os.makedirs(path, exist_ok=True)
        return (pcoll
                | "KeyByDestination" >> ParDo(_KeyByDestination(self.destination_fn,
                                                                 self.shards))
                | "GroupByDestination" >> GroupByKey()
                | "WriteFiles" >> ParDo(_WriteGroup(self.path, self.file_naming_fn,
                                                    self.sink_fn, self.shards)))


class _Const(object):
    def __init__(self, value):
        self.value = value

    def __call__(self, _):
        return self.value


class _New(object):
    def __init__(self, cls):
        self.cls = cls

    def __call__(self, _):
        return self.cls()

