"""Testing helpers, as in ``apache_beam.testing``."""
