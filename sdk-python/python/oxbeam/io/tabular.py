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

from oxbeam.io._filebased import ReadFiles, WriteFiles
from oxbeam.pvalue import Row

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


def ReadFromCsv(path, *, splittable=True, filename_column=None, **kwargs):
    """The records of the CSV files matching ``path`` (a header line, then
    one record per line), as ``beam.Row``s."""
    return ReadFiles(path, _ReadCsvFile(filename_column, kwargs), "ReadFromCsv", validate=False)


def ReadFromJson(path, *, orient="records", lines=True, dtype=False, **kwargs):
    """The records of the JSON-lines files matching ``path`` (one object per
    line), as ``beam.Row``s."""
    if orient != "records" or not lines:
        raise NotImplementedError("ReadFromJson(orient=%r, lines=%r): Oxbeam reads JSON lines "
                                  "of records" % (orient, lines))
    return ReadFiles(path, _read_json_file, "ReadFromJson", validate=False)


def _fields(record):
    if isinstance(record, Row):
        return record.as_dict()
    if hasattr(record, "_asdict"):
        return dict(record._asdict())
    if isinstance(record, dict):
        return dict(record)
    raise TypeError("expected a Row, named tuple or dict record, got %r" % (record,))


class _WriteRendered(object):
    """Writes a shard's records as the text ``render`` makes of them."""

    def __init__(self, render):
        self.render = render

    def __call__(self, path, records):
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(self.render([_fields(r) for r in records]))


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


def WriteToCsv(path, num_shards=None, file_naming=None, **kwargs):
    """Writes records (Rows, named tuples or dicts) as CSV files with a
    header line; outputs the file names."""
    return WriteFiles(path, ".csv", num_shards, None, _WriteRendered(_render_csv), "WriteToCsv",
                      file_naming)


def WriteToJson(path, *, num_shards=None, file_naming=None, **kwargs):
    """Writes records as JSON lines; outputs the file names."""
    return WriteFiles(path, ".json", num_shards, None, _WriteRendered(_render_json),
                      "WriteToJson", file_naming)
