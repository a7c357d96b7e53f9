"""Transforms, as in ``apache_beam.transforms``."""

from oxbeam.transforms import combiners, stats, timeutil, trigger, userstate, window  # noqa: F401
from oxbeam.transforms.stats import ApproximateQuantiles, ApproximateUnique  # noqa: F401
from oxbeam.transforms.core import *  # noqa: F401,F403
from oxbeam.transforms.ptransform import PTransform, ptransform_fn  # noqa: F401
from oxbeam.transforms.userstate import TimeDomain  # noqa: F401
from oxbeam.transforms.util import (  # noqa: F401
    BatchElements,
    GroupIntoBatches,
    LogElements,
    Regex,
    Reify,
    RemoveDuplicates,
    Tee,
    ToString,
    WaitOn,
    WithKeys,
)
