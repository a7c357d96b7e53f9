"""IO transforms, as in ``apache_beam.io`` (text files)."""

from oxbeam.io.textio import ReadFromText, ReadAllFromText, WriteToText  # noqa: F401
