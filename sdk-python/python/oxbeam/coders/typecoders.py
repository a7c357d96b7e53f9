"""The coder registry, as ``apache_beam.coders.typecoders``."""

from oxbeam.coders import CoderRegistry, registry  # noqa: F401

__all__ = ["CoderRegistry", "registry"]
