"""IO transforms, as in ``apache_beam.io`` (text files), and Oxbeam's
streaming sources and sink (:mod:`oxbeam.io.streams`: Generate, Redis
Streams)."""

from oxbeam.io.textio import ReadFromText, ReadAllFromText, WriteToText  # noqa: F401
from oxbeam.io.streams import Generate, ReadFromRedisStream, WriteToRedisStream  # noqa: F401
