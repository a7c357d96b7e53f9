"""Oxbeam: Apache Beam's Python API on Oxbeam's Rust engine.

Write pipelines exactly as with ``apache_beam`` — only the import changes::

    import oxbeam as beam
    from oxbeam.testing.util import assert_that, equal_to

    with beam.Pipeline() as p:
        counts = (p | beam.Create(["a", "b", "a"])
                    | beam.combiners.Count.PerElement())
        assert_that(counts, equal_to([("a", 2), ("b", 1)]))

The pipeline becomes a Beam ``Pipeline`` proto; Oxbeam's local runner
(Rust) plans it, runs GroupByKey, Flatten and Impulse itself, and runs
Python user code in this process, one Python call per batch of elements.
Unsupported Beam features raise ``NotImplementedError`` naming the feature.
"""

from oxbeam import coders, io, metrics, pvalue, typehints, window  # noqa: F401
from oxbeam._oxbeam import (  # noqa: F401
    ExecutionError,
    InternalError,
    OxbeamError,
    PipelineError,
    UserCodeError,
)
from oxbeam.pipeline import Pipeline  # noqa: F401
from oxbeam.transforms import combiners, core, ptransform, stats, trigger, userstate, util  # noqa: F401
from oxbeam.transforms.core import *  # noqa: F401,F403
from oxbeam.transforms.ptransform import PTransform, ptransform_fn  # noqa: F401
from oxbeam.transforms.util import *  # noqa: F401,F403
from oxbeam.transforms.stats import ApproximateQuantiles, ApproximateUnique  # noqa: F401
from oxbeam.pvalue import PCollection, Row, TaggedOutput  # noqa: F401
from oxbeam.transforms.userstate import TimeDomain  # noqa: F401
from oxbeam import wasm  # noqa: F401,E402 - Wasm UDFs: oxbeam.wasm.WasmMap, ...

__version__ = "0.1.0"
