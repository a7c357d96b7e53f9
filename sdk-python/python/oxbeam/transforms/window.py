"""Alias of :mod:`oxbeam.window` (``apache_beam.transforms.window``)."""

from oxbeam.window import *  # noqa: F401,F403
