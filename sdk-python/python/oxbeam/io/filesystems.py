"""``FileSystems``, as ``apache_beam.io.filesystems``: the local file system
(plain paths and ``file://`` URLs); other schemes raise ``ValueError``."""

import bz2
import glob
import gzip
import os
import shutil
import zlib

from oxbeam.io.filesystem import CompressionTypes, FileMetadata, MatchResult

__all__ = ["FileSystems"]


def _local(path):
    if path.startswith("file://"):
        return path[len("file://"):]
    if "://" in path:
        raise ValueError(
            "Unable to get filesystem from specified path: Oxbeam reads the local file "
            "system only. Path specified: %s" % path)
    return path


def _compression(path, compression_type):
    if compression_type in (None, CompressionTypes.AUTO):
        return CompressionTypes.detect_compression_type(path)
    return compression_type


class _Deflate(object):
    """A raw-deflate (zlib stream) file, read whole."""

    def __init__(self, path):
        with open(path, "rb") as f:
            data = zlib.decompress(f.read())
        import io

        self._buf = io.BytesIO(data)

    def __getattr__(self, name):
        return getattr(self._buf, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._buf.close()


def _open(local, kind, mode):
    """``local`` opened in binary ``mode`` through the ``kind`` of
    compression."""
    if kind == CompressionTypes.GZIP:
        return gzip.open(local, mode)
    if kind == CompressionTypes.BZIP2:
        return bz2.open(local, mode)
    if kind == CompressionTypes.DEFLATE:
        if mode != "rb":
            raise NotImplementedError("writing deflate files")
        return _Deflate(local)
    return open(local, mode)


class FileSystems(object):
    """Static file operations on the local file system."""

    @staticmethod
    def get_scheme(path):
        return path.split("://", 1)[0] if "://" in path else None

    @staticmethod
    def join(basepath, *paths):
        return os.path.join(basepath, *paths)

    @staticmethod
    def split(path):
        return os.path.split(path)

    @staticmethod
    def mkdirs(path):
        os.makedirs(_local(path))

    @staticmethod
    def exists(path):
        return os.path.exists(_local(path))

    @staticmethod
    def match(patterns, limits=None):
        """One :class:`MatchResult` per pattern (a glob or a path)."""
        if limits is None:
            limits = [None] * len(patterns)
        results = []
        for pattern, limit in zip(patterns, limits):
            local = _local(pattern)
            paths = sorted(p for p in glob.glob(local, recursive=True) if os.path.isfile(p))
            if limit is not None:
                paths = paths[:limit]
            results.append(MatchResult(pattern, [
                FileMetadata(p, os.path.getsize(p), os.path.getmtime(p)) for p in paths]))
        return results

    @staticmethod
    def open(path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        """A binary reader of ``path``, decompressed as its type says."""
        local = _local(path)
        return _open(local, _compression(local, compression_type), "rb")

    @staticmethod
    def create(path, mime_type="application/octet-stream",
               compression_type=CompressionTypes.AUTO):
        """A binary writer of ``path`` (parent directories made)."""
        local = _local(path)
        d = os.path.dirname(local)
        if d:
            os.makedirs(d, exist_ok=True)
        return _open(local, _compression(local, compression_type), "wb")

    @staticmethod
    def copy(source_file_names, destination_file_names):
        for s, d in zip(source_file_names, destination_file_names):
            shutil.copy(_local(s), _local(d))

    @staticmethod
    def rename(source_file_names, destination_file_names):
        for s, d in zip(source_file_names, destination_file_names):
            os.replace(_local(s), _local(d))

    @staticmethod
    def delete(paths):
        for p in paths:
            local = _local(p)
            if os.path.isdir(local):
                shutil.rmtree(local)
            else:
                os.remove(local)

    @staticmethod
    def last_updated(path):
        return os.path.getmtime(_local(path))

    @staticmethod
    def checksum(path):
        return str(os.path.getsize(_local(path)))
