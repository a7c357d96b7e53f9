"""Test helpers, as ``apache_beam.testing.test_utils`` (files and hashes)."""

import hashlib
import os
import shutil
import tempfile

from oxbeam.io.filesystems import FileSystems

__all__ = ["TempDir", "compute_hash", "create_file", "read_files_from_pattern", "delete_files"]

DEFAULT_HASHING_ALG = "sha1"


class TempDir(object):
    """A temporary directory, removed on exit (a context manager)."""

    def __init__(self):
        self._tempdir = tempfile.mkdtemp()

    def __enter__(self):
        return self

    def __exit__(self, *args):
        if os.path.exists(self._tempdir):
            shutil.rmtree(self._tempdir)

    def get_path(self):
        return self._tempdir

    def create_temp_file(self, suffix="", lines=None):
        """A new file in the directory holding ``lines`` (bytes) as given."""
        with tempfile.NamedTemporaryFile(delete=False, dir=self._tempdir, suffix=suffix) as f:
            for line in lines or ():
                f.write(line)
            return f.name


def compute_hash(content, hashing_alg=DEFAULT_HASHING_ALG):
    """A hash of a list of values, independent of their order (their
    ``str`` forms, sorted)."""
    content = sorted(x if isinstance(x, bytes) else str(x).encode("utf-8") for x in content)
    m = hashlib.new(hashing_alg)
    for elem in content:
        m.update(elem)
    return m.hexdigest()


def create_file(path, contents):
    """Writes ``contents`` (str) to ``path``; returns the path."""
    with FileSystems.create(path) as f:
        f.write(contents.encode("utf-8"))
    return path


def read_files_from_pattern(file_pattern):
    """The stripped contents of the files matching a pattern, joined by
    newlines."""
    output = []
    for metadata in FileSystems.match([file_pattern])[0].metadata_list:
        with FileSystems.open(metadata.path) as f:
            output.append(f.read().decode("utf-8").strip())
    return "\n".join(output)


def delete_files(file_paths):
    """Deletes files (a glob each)."""
    if not file_paths:
        raise RuntimeError("Clean up failed. Invalid file path: %s." % file_paths)
    for pattern in file_paths:
        FileSystems.delete([m.path for m in FileSystems.match([pattern])[0].metadata_list])
