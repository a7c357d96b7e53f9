"""CSV and JSON-lines files as records, as Beam's ``ReadFromCsv``,
``WriteToCsv``, ``ReadFromJson`` and ``WriteToJson`` (which Beam builds on
pandas; Oxbeam reads and writes them with the standard library).

Read records are ``beam.Row``s. CSV columns get pandas' default types: a
column whose values all parse as integers holds ``int``s, else as numbers
``float``s, else ``True``/``False`` ``bool``s, else ``str``s (empty cells
are ``None``); JSON values keep their JSON types. Written records are
``Row``s, named tuples or dicts; a file is named
``<path>-SSSSS-of-NNNNN.csv`` (``.json``) unless ``file_naming`` says
otherwise.
"""

import csv
import io
import json
import os

from oxbeam.io.textio import _match
from oxbeam.pvalue import AsList, Row
from oxbeam.transforms.core import Create, FlatMap, Reshuffle
from oxbeam.transforms.ptransform import PTransform

__all__ = ["ReadFromCsv", "WriteToCsv", "ReadFromJson", "WriteToJson"]


def _column_type(values):
    present = [v for v in values if v != ""]
    for conv in (int, float):
        try:
            for v in present:
                conv(v)
            return conv
        except ValueError:
            continue
    if present and all(v in ("True", "False") for v in present):
        return lambda v: v == "True"
    return str


class _ReadCsvFile(object):
    def __init__(self, filename_column, options):
        self.filename_column = filename_column
        self.options = options

    def __call__(self, path):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter=self.options.get("sep", ","),
                                   quotechar=self.options.get("quotechar", '"')))
        if not rows:
            return []
        header, body = rows[0], rows[1:]
        convs = [_column_type([r[i] if i < len(r) else "" for r in body])
                 for i in range(len(header))]
        out = []
        for r in body:
            if not r:
                continue
            fields = {}
            for i, name in enumerate(header):
                v = r[i] if i < len(r) else ""
                fields[name] = None if v == "" else convs[i](v)
            if self.filename_column:
                fields[self.filename_column] = path
            out.append(Row(**fields))
        return out


def _read_json_file(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(Row(**json.loads(line)))
    return out


class _ReadTabular(PTransform):
    def __init__(self, path, read_file, name):
        PTransform.__init__(self)
        self.path = path
        self.read_file = read_file
        self.name = name

    def default_label(self):
        return self.name

    def expand(self, pbegin):
        return (pbegin
                | "Pattern" >> Create([self.path])
                | "Match" >> FlatMap(_match)
                | "Reshuffle" >> Reshuffle()
                | "ReadFiles" >> FlatMap(self.read_file))


def ReadFromCsv(path, *, splittable=True, filename_column=None, **kwargs):
    """The records of the CSV files matching ``path`` (a header line, then
    one record per line), as ``beam.Row``s."""
    return _ReadTabular(path, _ReadCsvFile(filename_column, kwargs), "ReadFromCsv")


def ReadFromJson(path, *, orient="records", lines=True, dtype=False, **kwargs):
    """The records of the JSON-lines files matching ``path`` (one object per
    line), as ``beam.Row``s."""
    if orient != "records" or not lines:
        raise NotImplementedError("ReadFromJson(orient=%r, lines=%r): Oxbeam reads JSON lines "
                                  "of records" % (orient, lines))
    return _ReadTabular(path, _read_json_file, "ReadFromJson")


def _fields(record):
    if isinstance(record, Row):
        return record.as_dict()
    if hasattr(record, "_asdict"):
        return dict(record._asdict())
    if isinstance(record, dict):
        return dict(record)
    raise TypeError("expected a Row, named tuple or dict record, got %r" % (record,))


class _WriteFiles(object):
    def __init__(self, path, suffix, num_shards, file_naming, render):
        self.path = path
        self.suffix = suffix
        self.num_shards = num_shards
        self.file_naming = file_naming
        self.render = render

    def __call__(self, _, records):
        from oxbeam.window import GlobalWindow

        n = self.num_shards or 1
        shards = [[] for _ in range(n)]
        for i, r in enumerate(records):
            shards[i % n].append(_fields(r))
        names = []
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        for i, shard in enumerate(shards):
            if self.file_naming is not None:
                name = os.path.join(d, self.file_naming(GlobalWindow(), None, i, n, None, None))
            else:
                name = "%s-%05d-of-%05d%s" % (self.path, i, n, self.suffix)
            tmp = name + ".oxbeam-tmp"
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                f.write(self.render(shard))
            os.replace(tmp, name)
            names.append(name)
        return names


def _render_csv(records):
    buf = io.StringIO()
    if records:
        w = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        w.writeheader()
        for r in records:
            w.writerow(r)
    return buf.getvalue()


def _render_json(records):
    return "".join(json.dumps(r) + "\n" for r in records)


class _WriteTabular(PTransform):
    def __init__(self, fn, name):
        PTransform.__init__(self)
        self.fn = fn
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


def WriteToCsv(path, num_shards=None, file_naming=None, **kwargs):
    """Writes records (Rows, named tuples or dicts) as CSV files with a
    header line; outputs the file names."""
    return _WriteTabular(_WriteFiles(path, ".csv", num_shards, file_naming, _render_csv),
                         "WriteToCsv")


def WriteToJson(path, *, num_shards=None, file_naming=None, **kwargs):
    """Writes records as JSON lines; outputs the file names."""
    return _WriteTabular(_WriteFiles(path, ".json", num_shards, file_naming, _render_json),
                         "WriteToJson")
