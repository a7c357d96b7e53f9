"""Parquet files, as ``apache_beam.io.parquetio`` (with ``pyarrow``, which
apache-beam also uses): ``ReadFromParquet`` yields each row as a dict (or a
``beam.Row`` with ``as_rows=True``), optionally only ``columns``;
``WriteToParquet`` writes dict rows with a ``pyarrow`` schema, to
``<prefix>-SSSSS-of-NNNNN<suffix>``."""

from oxbeam.io._filebased import ReadFiles, WriteFiles
from oxbeam.pvalue import Row

__all__ = ["ReadFromParquet", "WriteToParquet"]


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("Parquet IO needs the pyarrow package (pip install pyarrow)") from None
    return pq


class _ReadParquetFile(object):
    def __init__(self, columns, as_rows):
        self.columns = columns
        self.as_rows = as_rows

    def __call__(self, path):
        rows = _pq().read_table(path, columns=self.columns).to_pylist()
        return [Row(**r) for r in rows] if self.as_rows else rows


def ReadFromParquet(file_pattern=None, min_bundle_size=0, validate=True, columns=None,
                    as_rows=False):
    """The rows of the Parquet files matching ``file_pattern``."""
    return ReadFiles(file_pattern, _ReadParquetFile(columns, as_rows), "ReadFromParquet",
                     validate)


class _WriteParquetFile(object):
    def __init__(self, schema, codec, row_group_size):
        self.schema = schema
        self.codec = codec
        self.row_group_size = row_group_size

    def __call__(self, path, records):
        import pyarrow as pa

        rows = [r.as_dict() if isinstance(r, Row) else
                (dict(r._asdict()) if hasattr(r, "_asdict") else r) for r in records]
        table = pa.Table.from_pylist(rows, schema=self.schema)
        _pq().write_table(table, path, compression=self.codec,
                          row_group_size=self.row_group_size)


def WriteToParquet(file_path_prefix, schema=None, row_group_buffer_size=64 * 1024 * 1024,
                   record_batch_size=1000, codec="none", use_deprecated_int96_timestamps=False,
                   use_compliant_nested_type=False, file_name_suffix="", num_shards=0,
                   shard_name_template=None, mime_type="application/x-parquet"):
    """Writes dict rows as Parquet files with ``schema`` (a
    ``pyarrow.Schema``); outputs the file names."""
    if schema is None:
        raise TypeError("WriteToParquet needs a pyarrow schema")
    return WriteFiles(file_path_prefix, file_name_suffix, num_shards, shard_name_template,
                      _WriteParquetFile(schema, codec, None), "WriteToParquet")
