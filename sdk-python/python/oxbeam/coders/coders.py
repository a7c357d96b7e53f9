"""The coder classes, as ``apache_beam.coders.coders``."""

from oxbeam.coders import *  # noqa: F401,F403
from oxbeam.coders import __all__  # noqa: F401
