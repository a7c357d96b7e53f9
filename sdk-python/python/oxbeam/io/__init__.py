"""IO transforms, as in ``apache_beam.io`` (text files, ``Read`` of a
``BoundedSource``, ``Write`` to a ``Sink``, file systems, restriction
trackers of splittable DoFns), and Oxbeam's streaming sources and sink
(:mod:`oxbeam.io.streams`: Generate, Redis Streams, WatchFiles)."""

from oxbeam.io import fileio, filesystems, iobase, range_trackers, restriction_trackers  # noqa: F401
from oxbeam.io import watermark_estimators  # noqa: F401
from oxbeam.io.iobase import Read, Sink, Write, Writer  # noqa: F401
from oxbeam.io.range_trackers import OffsetRangeTracker, UnsplittableRangeTracker  # noqa: F401

from oxbeam.io.textio import (  # noqa: F401
    ReadAllFromText,
    ReadFromText,
    ReadFromTextWithFilename,
    WriteToText,
)
from oxbeam.io.tabular import ReadFromCsv, ReadFromJson, WriteToCsv, WriteToJson  # noqa: F401
from oxbeam.io.avroio import ReadFromAvro, WriteToAvro  # noqa: F401
from oxbeam.io.parquetio import ReadFromParquet, WriteToParquet  # noqa: F401
from oxbeam.io.streams import Generate, ReadFromRedisStream, WatchFiles, WriteToRedisStream  # noqa: F401
