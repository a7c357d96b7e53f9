"""Watermark estimators of splittable DoFns, as
``apache_beam.io.watermark_estimators``.

Oxbeam's Python SDK runs splittable DoFns to completion per restriction (a
self-checkpoint resumes after its delay in the same worker), so estimators
keep their state for the DoFn to read; they do not hold the pipeline's
watermark."""

import time

from oxbeam.io.iobase import WatermarkEstimator
from oxbeam.utils.timestamp import Timestamp

__all__ = ["ManualWatermarkEstimator", "MonotonicWatermarkEstimator",
           "WalltimeWatermarkEstimator"]


class _Provider(object):
    def __init__(self, cls):
        self.cls = cls

    def initial_estimator_state(self, element, restriction):
        return None

    def create_watermark_estimator(self, estimator_state):
        return self.cls(estimator_state)


class MonotonicWatermarkEstimator(WatermarkEstimator):
    """The largest timestamp observed."""

    def __init__(self, timestamp):
        self._watermark = timestamp
        self._last_observed_timestamp = timestamp

    def observe_timestamp(self, timestamp):
        if self._last_observed_timestamp is None or timestamp > self._last_observed_timestamp:
            self._last_observed_timestamp = timestamp

    def current_watermark(self):
        if self._last_observed_timestamp is not None and (
                self._watermark is None or self._last_observed_timestamp >= self._watermark):
            self._watermark = self._last_observed_timestamp
        return self._watermark

    def get_estimator_state(self):
        return self._watermark

    @staticmethod
    def default_provider():
        return _Provider(MonotonicWatermarkEstimator)


class WalltimeWatermarkEstimator(WatermarkEstimator):
    """The wall clock."""

    def __init__(self, timestamp=None):
        self._timestamp = timestamp or Timestamp.now()

    def observe_timestamp(self, timestamp):
        pass

    def current_watermark(self):
        self._timestamp = max(self._timestamp, Timestamp.of(time.time()))
        return self._timestamp

    def get_estimator_state(self):
        return self._timestamp

    @staticmethod
    def default_provider():
        return _Provider(WalltimeWatermarkEstimator)


class ManualWatermarkEstimator(WatermarkEstimator):
    """What the DoFn sets with ``set_watermark``."""

    def __init__(self, watermark):
        self._watermark = watermark

    def observe_timestamp(self, timestamp):
        pass

    def current_watermark(self):
        return self._watermark

    def get_estimator_state(self):
        return self._watermark

    def set_watermark(self, timestamp):
        if not isinstance(timestamp, Timestamp):
            raise ValueError("set_watermark expects a Timestamp as input")
        if self._watermark and self._watermark > timestamp:
            raise ValueError("Watermark must be monotonically increasing. Provided watermark "
                             "%s is less than current watermark %s" % (timestamp, self._watermark))
        self._watermark = timestamp

    @staticmethod
    def default_provider():
        return _Provider(ManualWatermarkEstimator)
