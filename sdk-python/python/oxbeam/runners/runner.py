"""``PipelineResult`` and ``PipelineState``, as in ``apache_beam.runners.runner``."""

from oxbeam.metrics.metric import MetricResults

__all__ = ["PipelineResult", "PipelineState"]


class PipelineState(object):
    UNKNOWN = "UNKNOWN"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class PipelineResult(object):
    """A finished pipeline (Oxbeam's ``run()`` blocks until the end)."""

    def __init__(self, counters=(), distributions=(), gauges=(), string_sets=()):
        self._state = PipelineState.DONE
        self._metrics = MetricResults(counters, distributions, gauges, string_sets)

    @property
    def state(self):
        return self._state

    def wait_until_finish(self, duration=None):
        return self._state

    def cancel(self):
        return self._state

    def metrics(self):
        return self._metrics
