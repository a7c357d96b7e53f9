"""Avro files, as ``apache_beam.io.avroio`` (with ``fastavro``, which
apache-beam also uses): ``ReadFromAvro`` yields each record as a dict (or a
``beam.Row`` with ``as_rows=True``); ``WriteToAvro`` writes dicts with a
schema, to ``<prefix>-SSSSS-of-NNNNN<suffix>``."""

from oxbeam.io._filebased import ReadFiles, WriteFiles
from oxbeam.pvalue import Row

__all__ = ["ReadFromAvro", "WriteToAvro"]


def _fastavro():
    try:
        import fastavro
    except ImportError:
        raise ImportError("Avro IO needs the fastavro package (pip install fastavro)") from None
    return fastavro


class _ReadAvroFile(object):
    def __init__(self, as_rows):
        self.as_rows = as_rows

    def __call__(self, path):
        with open(path, "rb") as f:
            records = list(_fastavro().reader(f))
        return [Row(**r) for r in records] if self.as_rows else records


def ReadFromAvro(file_pattern=None, min_bundle_size=0, validate=True, use_fastavro=True,
                 as_rows=False):
    """The records of the Avro files matching ``file_pattern``."""
    return ReadFiles(file_pattern, _ReadAvroFile(as_rows), "ReadFromAvro", validate)


class _WriteAvroFile(object):
    def __init__(self, schema, codec):
        self.schema = schema
        self.codec = codec

    def __call__(self, path, records):
        fastavro = _fastavro()
        schema = fastavro.parse_schema(self.schema)
        with open(path, "wb") as f:
            fastavro.writer(f, schema, [_as_dict(r) for r in records], codec=self.codec)


def _as_dict(r):
    if isinstance(r, Row):
        return r.as_dict()
    if hasattr(r, "_asdict"):
        return dict(r._asdict())
    return r


def WriteToAvro(file_path_prefix, schema, codec="deflate", file_name_suffix="", num_shards=0,
                shard_name_template=None, mime_type="application/x-avro", use_fastavro=True):
    """Writes records (dicts, Rows or named tuples) as Avro files with
    ``schema`` (a dict, as fastavro takes); outputs the file names."""
    if not isinstance(schema, dict):
        raise TypeError("WriteToAvro: schema must be an Avro schema dict (fastavro), got %r"
                        % (schema,))
    return WriteFiles(file_path_prefix, file_name_suffix, num_shards, shard_name_template,
                      _WriteAvroFile(schema, codec), "WriteToAvro")
