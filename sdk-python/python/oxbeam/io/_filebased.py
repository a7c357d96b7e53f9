"""Reading and writing whole files of records, shared by the Avro and
Parquet IOs: match the pattern, spread the files over workers, read each;
write all records once, sharded round robin, each shard under a temporary
name first."""

import glob
import os

from oxbeam.pvalue import AsList
from oxbeam.transforms.core import Create, FlatMap, Reshuffle
from oxbeam.transforms.ptransform import PTransform


def _match(pattern):
    """The files a glob (or a plain path) names, sorted."""
    files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else (
        [pattern] if os.path.exists(pattern) else [])
    return [f for f in files if os.path.isfile(f)]


def shard_name(prefix, suffix, i, n, template):
    """``prefix + template + suffix`` with ``S``/``N`` runs as shard index and
    count (Beam's ``-SSSSS-of-NNNNN`` by default)."""
    out = "-SSSSS-of-NNNNN" if template is None else template
    for ch, val in (("S", i), ("N", n)):
        start = out.find(ch)
        if start < 0:
            continue
        end = start
        while end < len(out) and out[end] == ch:
            end += 1
        out = out[:start] + str(val).zfill(end - start) + out[end:]
    return prefix + out + suffix


class ReadFiles(PTransform):
    """The records ``read_file(path)`` yields for each file matching
    ``pattern``."""

    def __init__(self, pattern, read_file, name, validate=True):
        PTransform.__init__(self)
        if validate and not _match(pattern):
            raise IOError("No files found based on the file pattern %s" % pattern)
        self.pattern = pattern
        self.read_file = read_file
        self.name = name

    def default_label(self):
        return self.name

    def expand(self, pbegin):
        return (pbegin
                | "Pattern" >> Create([self.pattern])
                | "Match" >> FlatMap(_match)
                | "Reshuffle" >> Reshuffle()
                | "ReadFiles" >> FlatMap(self.read_file))


class _WriteAll(object):
    def __init__(self, prefix, suffix, num_shards, template, write_file, file_naming=None):
        self.prefix = prefix
        self.suffix = suffix
        self.num_shards = num_shards
        self.template = template
        self.write_file = write_file
        self.file_naming = file_naming

    def _name(self, i, n):
        if self.file_naming is None:
            return shard_name(self.prefix, self.suffix, i, n, self.template)
        from oxbeam.window import GlobalWindow

        return os.path.join(os.path.dirname(self.prefix),
                            self.file_naming(GlobalWindow(), None, i, n, None, None))

    def __call__(self, _, records):
        n = self.num_shards or 1
        shards = [[] for _ in range(n)]
        for i, r in enumerate(records):
            shards[i % n].append(r)
        d = os.path.dirname(self.prefix)
        if d:
            os.makedirs(d, exist_ok=True)
        names = []
        for i, shard in enumerate(shards):
            name = self._name(i, n)
            tmp = name + ".oxbeam-tmp"
            try:
                self.write_file(tmp, shard)
                os.replace(tmp, name)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            names.append(name)
        return names


class WriteFiles(PTransform):
    """Writes all records with ``write_file(path, records)`` per shard;
    outputs the file names."""

    def __init__(self, prefix, suffix, num_shards, template, write_file, name, file_naming=None):
        PTransform.__init__(self)
        self.fn = _WriteAll(prefix, suffix, num_shards, template, write_file, file_naming)
        self.name = name

    def default_label(self):
        return self.name

    def expand(self, pcoll):
        from oxbeam.transforms.core import WindowInto
        from oxbeam.window import GlobalWindows

        if not pcoll.windowing.is_default():
            pcoll = pcoll | "Rewindow" >> WindowInto(GlobalWindows())
        return (pcoll.pipeline
                | "DoOnce" >> Create([None])
                | "WriteFiles" >> FlatMap(self.fn, AsList(pcoll)).with_output_types(str))
