"""``--runner=PortableRunner --job_endpoint=HOST:PORT``: an Oxbeam Python
pipeline submitted to ``oxbeam job-server`` over Beam's Job API (every
``B`` test also runs this way; these cover what only this path has)."""

import os

import pytest

import oxbeam as beam
from oxbeam.metrics import Metrics
from oxbeam.metrics.metric import MetricsFilter
from oxbeam.options.pipeline_options import PipelineOptions, PortableOptions
from oxbeam.testing.util import assert_that, equal_to

pytestmark = pytest.mark.skipif(not os.environ.get("OXBEAM_BIN"),
                                reason="needs OXBEAM_BIN (the oxbeam binary)")


def _options(endpoint, *extra):
    return PipelineOptions(["--runner=PortableRunner", "--job_endpoint=%s" % endpoint] + list(extra))


class _Count(beam.DoFn):
    def __init__(self):
        self.seen = Metrics.counter("oxbeam", "seen")
        self.sizes = Metrics.distribution("oxbeam", "sizes")

    def process(self, x):
        self.seen.inc()
        self.sizes.update(len(x))
        yield x


def test_wordcount_and_metrics_on_the_job_server(oxbeam_job_server):
    p = beam.Pipeline(options=_options(oxbeam_job_server, "--sdk_worker_parallelism=2"))
    counts = (p | beam.Create(["a b", "b c b"]) | beam.FlatMap(str.split) | beam.ParDo(_Count())
              | beam.combiners.Count.PerElement())
    assert_that(counts, equal_to([("a", 1), ("b", 3), ("c", 1)]))
    result = p.run()
    assert result.wait_until_finish() == "DONE"
    m = result.metrics().query(MetricsFilter().with_namespace("oxbeam"))
    assert [c.committed for c in m["counters"]] == [5]
    d = m["distributions"][0].committed
    assert (d.count, d.sum, d.min, d.max) == (5, 5, 1, 1)


def test_loopback_runs_user_code_in_this_process(oxbeam_job_server):
    # LOOPBACK: the job service starts its workers through a worker pool in
    # this process (a beam:env:external:v1 environment), so user functions
    # run here (as in Beam, they are copies: they were pickled).
    here = os.getpid()

    def note(x):
        return (os.getpid() == here, x * 10)

    p = beam.Pipeline(options=_options(oxbeam_job_server, "--environment_type=LOOPBACK",
                                       "--sdk_worker_parallelism=2"))
    out = p | beam.Create([1, 2, 3]) | beam.Map(note)
    assert_that(out, equal_to([(True, 10), (True, 20), (True, 30)]))
    assert p.run().wait_until_finish() == "DONE"


def test_loopback_user_exception_keeps_its_type_and_the_next_job_runs(oxbeam_job_server):
    def boom(x):
        raise ZeroDivisionError("none of %s" % x)

    p = beam.Pipeline(options=_options(oxbeam_job_server, "--environment_type=LOOPBACK"))
    p | beam.Create(["k"]) | "Boom" >> beam.Map(boom)
    with pytest.raises(ZeroDivisionError) as e:
        p.run()
    assert e.value.transform == "Boom" and e.value.element == "'k'"
    # The pool is gone with its job; the next LOOPBACK job gets its own, and
    # in-process runs format their errors as before.
    p = beam.Pipeline(options=_options(oxbeam_job_server, "--environment_type=LOOPBACK"))
    assert_that(p | beam.Create(["a", "b"]) | beam.Map(str.upper), equal_to(["A", "B"]))
    assert p.run().wait_until_finish() == "DONE"
    from oxbeam import _runtime

    assert _runtime.REMOTE is False


def test_user_exception_keeps_its_type_transform_and_element(oxbeam_job_server):
    def boom(x):
        raise KeyError("no %s" % x)

    p = beam.Pipeline(options=_options(oxbeam_job_server))
    p | beam.Create(["k"]) | "Boom" >> beam.Map(boom)
    with pytest.raises(KeyError) as e:
        p.run()
    assert e.value.transform == "Boom"
    assert e.value.element == "'k'"
    assert "no k" in str(e.value) and "Original traceback" in str(e.value)


def test_a_failed_assertion_fails_the_job(oxbeam_job_server):
    p = beam.Pipeline(options=_options(oxbeam_job_server))
    assert_that(p | beam.Create([1, 2]), equal_to([1, 3]))
    with pytest.raises(Exception, match="3"):
        p.run()


def test_bad_submissions_fail_clearly(oxbeam_job_server):
    p = beam.Pipeline(options=PipelineOptions(["--runner=PortableRunner"]))
    p | beam.Create([1])
    with pytest.raises(ValueError, match="--job_endpoint"):
        p.run()
    p = beam.Pipeline(options=_options(oxbeam_job_server, "--environment_type=DOCKER"))
    p | beam.Create([1])
    with pytest.raises(NotImplementedError, match="DOCKER"):
        p.run()
    # Nothing listens on port 1.
    p = beam.Pipeline(options=_options("127.0.0.1:1"))
    p | beam.Create([1])
    with pytest.raises(Exception, match="127.0.0.1:1"):
        p.run()
    o = _options(oxbeam_job_server, "--sdk_worker_parallelism=3")
    assert o.view_as(PortableOptions).sdk_worker_parallelism == 3
    assert o.view_as(PortableOptions).job_endpoint == oxbeam_job_server
