"""File metadata and compression types, as ``apache_beam.io.filesystem``
(the local file system only)."""

__all__ = ["CompressionTypes", "FileMetadata", "MatchResult"]


class CompressionTypes(object):
    """Compression of a file, as Beam names it."""
    AUTO = "auto"
    BZIP2 = "bzip2"
    DEFLATE = "deflate"
    GZIP = "gzip"
    UNCOMPRESSED = "uncompressed"

    @classmethod
    def is_valid_compression_type(cls, compression_type):
        return compression_type in (cls.AUTO, cls.BZIP2, cls.DEFLATE, cls.GZIP,
                                    cls.UNCOMPRESSED)

    @classmethod
    def detect_compression_type(cls, file_path):
        """The compression a file's extension implies."""
        for ext, kind in ((".gz", cls.GZIP), (".bz2", cls.BZIP2), (".deflate", cls.DEFLATE)):
            if file_path.lower().endswith(ext):
                return kind
        return cls.UNCOMPRESSED


class FileMetadata(object):
    """A file's path, size and modification time."""

    def __init__(self, path, size_in_bytes, last_updated_in_seconds=0.0):
        self.path = path
        self.size_in_bytes = size_in_bytes
        self.last_updated_in_seconds = last_updated_in_seconds

    def __eq__(self, other):
        return isinstance(other, FileMetadata) and (
            self.path, self.size_in_bytes, self.last_updated_in_seconds) == (
            other.path, other.size_in_bytes, other.last_updated_in_seconds)

    def __hash__(self):
        return hash((self.path, self.size_in_bytes, self.last_updated_in_seconds))

    def __repr__(self):
        return "FileMetadata(%s, %s, %s)" % (
            self.path, self.size_in_bytes, self.last_updated_in_seconds)


class MatchResult(object):
    """The files one pattern matched."""

    def __init__(self, pattern, metadata_list):
        self.pattern = pattern
        self.metadata_list = metadata_list
