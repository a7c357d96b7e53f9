"""Utilities mirroring ``apache_beam.utils``."""
