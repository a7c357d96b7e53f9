"""Text files: ``ReadFromText`` and ``WriteToText``, as in
``apache_beam.io.textio`` (lines split on ``\\n`` or ``\\r\\n``, UTF-8)."""

import gzip
import os

from oxbeam.io._filebased import _match, shard_name
from oxbeam.pvalue import AsList
from oxbeam.transforms.core import Create, DoFn, FlatMap, Map, Reshuffle
from oxbeam.transforms.ptransform import PTransform

__all__ = ["ReadFromText", "ReadFromTextWithFilename", "ReadAllFromText", "WriteToText"]


def _is_compressed(path, compression_type):
    """Gzip, explicitly or (AUTO, as Beam) by the ``.gz`` file name."""
    c = (compression_type or "auto").lower()
    return c == "gzip" or (c == "auto" and path.endswith(".gz"))


def _open(path, compression_type):
    if _is_compressed(path, compression_type):
        return gzip.open(path, "rb")
    if (compression_type or "auto").lower() not in ("auto", "uncompressed"):
        raise NotImplementedError("compression type %s" % compression_type)
    return open(path, "rb")


# Bytes of an uncompressed file read as one range (one element of the
# reading FlatMap); ranges are spread over workers. Small enough (~25 ms of
# wordcount) that a worker running out of work soon gets part of another's
# (a running element cannot be split).
_RANGE_BYTES = 512 << 10


class _SplitIntoRanges(object):
    """A file pattern to ``(path, start, end)`` byte ranges of its files
    (a compressed file is one range: it cannot be read from the middle)."""

    def __init__(self, compression_type, range_bytes=None):
        self.compression_type = compression_type
        self.range_bytes = range_bytes or _RANGE_BYTES

    def __call__(self, pattern):
        out = []
        for path in _match(pattern):
            size = os.path.getsize(path)
            if size == 0:
                continue
            if _is_compressed(path, self.compression_type):
                out.append((path, 0, -1))
                continue
            # Equal ranges of at most range_bytes: a short last range would
            # leave one worker idle while another reads a full one.
            n = -(-size // self.range_bytes)
            cuts = [i * size // n for i in range(n + 1)]
            out.extend((path, a, b) for a, b in zip(cuts, cuts[1:]))
        return out


class _ReadRange(object):
    """The lines starting in a byte range ``[start, end)`` of a file (as in
    Beam's text source: a line belongs to the range it starts in; ``end``
    -1 reads to the end)."""

    def __init__(self, strip, skip_header_lines, compression_type, with_filename=False):
        self.strip = strip
        self.skip = skip_header_lines
        self.compression_type = compression_type
        self.with_filename = with_filename

    def __call__(self, rng):
        path, start, end = rng
        with _open(path, self.compression_type) as f:
            if end < 0:
                data = f.read()
            else:
                if start > 0:
                    # The line running into the range belongs to the one before.
                    f.seek(start - 1)
                    f.readline()
                pos = f.tell()
                if pos >= end:
                    return []
                data = f.read(end - pos)
                if data and not data.endswith(b"\n"):
                    data += f.readline()  # the last line starts in the range
        if not data:
            return []
        data = data.decode("utf-8")
        lines = data.split("\n")
        if lines[-1] == "":
            lines.pop()
            keep_nl = True
        else:
            keep_nl = False
        if self.strip:
            if "\r" in data:
                lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
        else:
            n = len(lines)
            lines = [ln + "\n" if (i < n - 1 or keep_nl) else ln for i, ln in enumerate(lines)]
        if self.skip and start == 0:
            lines = lines[self.skip:]
        if self.with_filename:
            return [(path, ln) for ln in lines]
        return lines


class _ReadLines(PTransform):
    """File patterns to the lines of their files: patterns → byte ranges,
    redistributed → the lines of each range."""

    def __init__(self, strip, skip_header_lines, compression_type, with_filename=False):
        PTransform.__init__(self)
        self.split = _SplitIntoRanges(compression_type)
        self.read = _ReadRange(strip, skip_header_lines, compression_type, with_filename)

    def expand(self, patterns):
        from oxbeam import typehints

        line = typehints.Tuple[str, str] if self.read.with_filename else str
        return (
            patterns
            | "SplitIntoRanges" >> FlatMap(self.split)
            | "Reshuffle" >> Reshuffle()
            | "ReadRange" >> FlatMap(self.read).with_output_types(line)
        )


class ReadFromText(PTransform):
    """The lines of the files matching ``file_pattern``."""

    def __init__(self, file_pattern=None, min_bundle_size=0, compression_type="auto",
                 strip_trailing_newlines=True, coder=None, validate=True, skip_header_lines=0,
                 **kwargs):
        PTransform.__init__(self)
        self.coder = _custom(coder)
        self.pattern = file_pattern
        self.read = _ReadLines(strip_trailing_newlines, skip_header_lines, compression_type)
        if validate and not _match(file_pattern):
            raise IOError("No files found based on the file pattern %s" % file_pattern)

    def expand(self, pbegin):
        lines = (
            pbegin
            | "Create" >> Create([self.pattern])
            | "ReadLines" >> self.read
        )
        if self.coder is None:
            return lines
        return lines | "Decode" >> Map(_Decode(self.coder)).with_output_types(
            self.coder.to_type_hint())


def _custom(coder):
    """``coder`` unless it is None or the default (UTF-8 lines)."""
    from oxbeam.coders import Coder, StrUtf8Coder

    if coder is None or type(coder) is StrUtf8Coder:
        return None
    if not isinstance(coder, Coder):
        raise TypeError("coder must be an oxbeam.coders.Coder, got %r" % (coder,))
    return coder


class _Decode(object):
    """A line's bytes through a coder's ``decode`` (as Beam reads lines)."""

    def __init__(self, coder):
        self.coder = coder

    def __call__(self, line):
        return self.coder.decode(line.encode("utf-8", "surrogateescape"))


class _Encode(object):
    """An element through a coder's ``encode``, as the line's text."""

    def __init__(self, coder):
        self.coder = coder

    def __call__(self, value):
        return self.coder.encode(value).decode("utf-8", "surrogateescape")


class ReadFromTextWithFilename(ReadFromText):
    """``(file name, line)`` for each line of the files matching
    ``file_pattern``."""

    def __init__(self, file_pattern=None, min_bundle_size=0, compression_type="auto",
                 strip_trailing_newlines=True, coder=None, validate=True, skip_header_lines=0,
                 **kwargs):
        if _custom(coder) is not None:
            raise NotImplementedError("ReadFromTextWithFilename with a coder other than UTF-8")
        ReadFromText.__init__(self, file_pattern, min_bundle_size, compression_type,
                              strip_trailing_newlines, None, validate, skip_header_lines)
        self.read = _ReadLines(strip_trailing_newlines, skip_header_lines, compression_type,
                               with_filename=True)


class ReadAllFromText(PTransform):
    """The lines of the files matching each pattern of the input PCollection
    (``(file name, line)`` with ``with_filename=True``)."""

    def __init__(self, strip_trailing_newlines=True, compression_type="auto", skip_header_lines=0,
                 with_filename=False, **kwargs):
        PTransform.__init__(self)
        self.read = _ReadLines(strip_trailing_newlines, skip_header_lines, compression_type,
                               with_filename)

    def expand(self, pcoll):
        return pcoll | "ReadLines" >> self.read


def _mark_retraction(element, pane=DoFn.PaneInfoParam):
    line = element if isinstance(element, str) else str(element)
    return "-" + line if pane.is_retraction else line


class _WriteShards(object):
    def __init__(self, prefix, suffix, num_shards, template, header, newline, footer=None,
                 gzip_output=False, max_records_per_shard=None, max_bytes_per_shard=None):
        self.max_records = max_records_per_shard
        self.max_bytes = max_bytes_per_shard
        self.prefix = prefix
        self.suffix = suffix
        self.num_shards = num_shards
        self.template = template
        self.header = header
        self.newline = newline
        self.footer = footer
        self.gzip_output = gzip_output

    def _name(self, i, n):
        return shard_name(self.prefix, self.suffix, i, n, self.template)

    def _bounded_shards(self, lines):
        """Consecutive lines per shard, and at least ``num_shards`` shards:
        as Beam's writers, a shard is closed once it holds
        ``max_records_per_shard`` lines or ``max_bytes_per_shard`` bytes (so
        it may pass the byte bound by its last line)."""
        shards, records, size = [[]], 0, 0
        for line in lines:
            n = len(line.encode("utf-8", "surrogateescape")) + (1 if self.newline else 0)
            full = (self.max_records is not None and records >= self.max_records) or (
                self.max_bytes is not None and size >= self.max_bytes)
            if full:
                shards.append([])
                records, size = 0, 0
            shards[-1].append(line)
            records += 1
            size += n
        while len(shards) < (self.num_shards or 1):
            shards.append([])
        return shards

    def __call__(self, _, lines):
        lines = [line if isinstance(line, str) else str(line) for line in lines]
        if self.max_records is not None or self.max_bytes is not None:
            shards = self._bounded_shards(lines)
            n = len(shards)
        else:
            n = self.num_shards or 1
            shards = [[] for _ in range(n)]
            for i, line in enumerate(lines):
                shards[i % n].append(line)
        names = []
        d = os.path.dirname(self.prefix)
        if d:
            os.makedirs(d, exist_ok=True)
        for i, shard in enumerate(shards):
            name = self._name(i, n)
            tmp = name + ".oxbeam-tmp"
            try:
                if self.gzip_output:
                    f = gzip.open(tmp, "wt", encoding="utf-8", newline="",
                                  errors="surrogateescape")
                else:
                    f = open(tmp, "w", encoding="utf-8", newline="", errors="surrogateescape")
                with f:
                    if self.header is not None:
                        f.write(self.header + "\n")
                    if self.newline:
                        f.write("".join(s + "\n" for s in shard))
                    else:
                        f.write("".join(shard))
                    if self.footer is not None:
                        f.write(self.footer + "\n")
                os.replace(tmp, name)
            except BaseException:
                # E.g. KeyboardInterrupt when the job is cancelled: no
                # half-written file is left behind.
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise
            names.append(name)
        return names


class WriteToText(PTransform):
    """Writes elements (``str(element)``), one per line, to files named
    ``file_path_prefix + shard + file_name_suffix``."""

    def __init__(self, file_path_prefix, file_name_suffix="", append_trailing_newlines=True,
                 num_shards=0, shard_name_template=None, coder=None, compression_type="auto",
                 header=None, footer=None, *, max_records_per_shard=None, max_bytes_per_shard=None,
                 **kwargs):
        PTransform.__init__(self)
        for name, bound in [("max_records_per_shard", max_records_per_shard),
                            ("max_bytes_per_shard", max_bytes_per_shard)]:
            if bound is not None and int(bound) < 1:
                raise ValueError("%s=%r: expected a positive number" % (name, bound))
        self.coder = _custom(coder)
        c = (compression_type or "auto").lower()
        if c not in ("auto", "uncompressed", "gzip"):
            raise NotImplementedError("compression type %s for text output" % compression_type)
        gz = _is_compressed(file_name_suffix or "", c)
        self.fn = _WriteShards(file_path_prefix, file_name_suffix, num_shards,
                               shard_name_template, header, append_trailing_newlines, footer, gz,
                               max_records_per_shard, max_bytes_per_shard)

    def expand(self, pcoll):
        from oxbeam.transforms.core import WindowInto
        from oxbeam.transforms.trigger import AccumulationMode
        from oxbeam.window import GlobalWindows

        if pcoll.windowing.accumulation_mode == AccumulationMode.RETRACTING:
            # A retraction is written as its record prefixed by "-".
            pcoll = pcoll | "MarkRetractions" >> Map(_mark_retraction).with_output_types(str)
        if self.coder is not None:
            pcoll = pcoll | "Encode" >> Map(_Encode(self.coder)).with_output_types(str)
        if not pcoll.windowing.is_default():
            pcoll = pcoll | "Rewindow" >> WindowInto(GlobalWindows())
        return (
            pcoll.pipeline
            | "DoOnce" >> Create([None])
            | "WriteShards" >> FlatMap(self.fn, AsList(pcoll)).with_output_types(str)
        )
