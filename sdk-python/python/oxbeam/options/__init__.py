"""Pipeline options, as in ``apache_beam.options``."""
