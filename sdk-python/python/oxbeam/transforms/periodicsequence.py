"""``PeriodicImpulse`` and ``PeriodicSequence``, as
``apache_beam.transforms.periodicsequence``: elements at fixed intervals of
processing time, from a splittable DoFn that claims one index per output
and self-checkpoints until the next one is due.

Oxbeam's Python SDK hands a restriction's outputs on when its ``process``
call returns, so a sequence's elements arrive as each wait ends; a
sequence with no end (``stop_timestamp=MAX_TIMESTAMP``) never completes.
"""

import enum
import math
import time
import warnings

from oxbeam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from oxbeam.io.watermark_estimators import ManualWatermarkEstimator
from oxbeam.transforms.core import Create, DoFn, Impulse, Map, ParDo, RestrictionProvider
from oxbeam.transforms.ptransform import PTransform
from oxbeam.transforms.window import FixedWindows, TimestampedValue
from oxbeam.transforms.core import WindowInto
from oxbeam.utils.timestamp import MAX_TIMESTAMP, Duration, Timestamp

__all__ = ["PeriodicImpulse", "PeriodicSequence", "RebaseMode",
           "ImpulseSeqGenDoFn", "ImpulseSeqGenRestrictionProvider"]


def _seconds(t):
    return t.micros / 1e6 if isinstance(t, (Timestamp, Duration)) else float(t)


class ImpulseSeqGenRestrictionProvider(RestrictionProvider):
    """The output indices of ``(start, stop, interval)``: ``[0, n)``."""

    def initial_restriction(self, element):
        start, end, interval = element
        start, end, interval = _seconds(start), _seconds(end), _seconds(interval)
        if interval <= 0:
            raise ValueError("interval must be positive, got %r" % interval)
        total = max(0, math.ceil((end - start) / interval))
        if end >= MAX_TIMESTAMP.micros / 1e6:
            total = float("inf")
        return OffsetRange(0, total)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, unused_element, restriction):
        return restriction.size()

    def split(self, element, restriction):
        yield restriction


class ImpulseSeqGenDoFn(DoFn):
    """Outputs the timestamps (or ``data`` items) of ``(start, stop,
    interval)`` when each is due in processing time."""

    def __init__(self, data=None):
        self._data = data
        assert data is None or len(data) > 0
        self._len = len(data) if data is not None else 0
        self._is_pre_timestamped = (data is not None and isinstance(data[0], tuple)
                                    and isinstance(data[0][0], Timestamp))

    def _get_output(self, index, current_output_timestamp):
        if self._data is None:
            return TimestampedValue(current_output_timestamp, current_output_timestamp)
        if self._is_pre_timestamped:
            event_time, value = self._data[index % self._len]
            return TimestampedValue(value, event_time)
        return TimestampedValue(self._data[index % self._len], current_output_timestamp)

    def process(self, element,
                restriction_tracker=DoFn.RestrictionParam(ImpulseSeqGenRestrictionProvider()),
                watermark_estimator=DoFn.WatermarkEstimatorParam(
                    ManualWatermarkEstimator.default_provider())):
        start, _, interval = element
        start, interval = _seconds(start), _seconds(interval)
        index = restriction_tracker.current_restriction().start
        while True:
            due = start + interval * index
            if due > time.time():
                restriction_tracker.defer_remainder(Timestamp(due))
                break
            if not restriction_tracker.try_claim(index):
                break
            out = self._get_output(index, due)
            current = watermark_estimator.current_watermark()
            if current is None or out.timestamp > current:
                watermark_estimator.set_watermark(out.timestamp)
            yield out
            index += 1


class PeriodicSequence(PTransform):
    """For each input ``(start, stop, interval)``, its timestamps at their
    processing time."""

    def expand(self, pcoll):
        return (pcoll
                | "GenSequence" >> ParDo(ImpulseSeqGenDoFn())
                | "MapToTimestamped" >> Map(lambda tt: TimestampedValue(tt, tt)))


class RebaseMode(enum.Enum):
    """How start and stop move to the time the pipeline runs."""
    REBASE_NONE = 0
    REBASE_ALL = 1
    REBASE_START = 2


class _Rebased(object):
    def __init__(self, mode, start, stop, interval):
        self.mode, self.start, self.stop, self.interval = mode, start, stop, interval

    def __call__(self, _):
        now = Timestamp.now()
        if self.mode == RebaseMode.REBASE_ALL:
            return [now, now + (Timestamp.of(self.stop) - Timestamp.of(self.start)),
                    self.interval]
        return [now, self.stop, self.interval]


class PeriodicImpulse(PTransform):
    """Elements every ``fire_interval`` seconds of processing time from
    ``start_timestamp`` to ``stop_timestamp``: the timestamps themselves, or
    the items of ``data`` (``(Timestamp, value)`` items keep their
    timestamps); ``apply_windowing`` puts each in a fixed window of the
    interval."""

    def __init__(self, start_timestamp=None, stop_timestamp=MAX_TIMESTAMP, fire_interval=360.0,
                 apply_windowing=False, data=None, rebase=RebaseMode.REBASE_NONE):
        PTransform.__init__(self)
        self.start_ts = Timestamp.now() if start_timestamp is None else start_timestamp
        self.stop_ts = stop_timestamp
        self.interval = fire_interval
        self.apply_windowing = apply_windowing
        self.data = data
        self.rebase = rebase
        if self.data:
            self._validate_and_adjust_duration()

    def _validate_and_adjust_duration(self):
        data_duration = (len(self.data) - 1) * Duration(self.interval)
        pre_timestamped = isinstance(self.data[0], tuple) and isinstance(
            self.data[0][0], Timestamp)
        start_ts = Timestamp.of(self.start_ts)
        stop_ts = Timestamp.of(self.stop_ts)
        if stop_ts == MAX_TIMESTAMP:
            self.stop_ts = start_ts + data_duration + Duration(self.interval)
            stop_ts = self.stop_ts
        if data_duration + Duration(self.interval) < stop_ts - start_ts:
            message = ("The number of elements in the provided data sequence is not enough to "
                       "span the full impulse duration.")
            if pre_timestamped:
                raise ValueError(message + " Please either provide more data or decrease "
                                 "`stop_timestamp`.")
            warnings.warn(message + " The data sequence will be repeated.")

    def expand(self, pbegin):
        if self.rebase in (RebaseMode.REBASE_ALL, RebaseMode.REBASE_START):
            impulse = pbegin | "Impulse" >> Impulse() | "Rebase" >> Map(
                _Rebased(self.rebase, self.start_ts, self.stop_ts, self.interval))
        else:
            impulse = pbegin | "ImpulseElement" >> Create(
                [(self.start_ts, self.stop_ts, self.interval)])
        result = impulse | "GenSequence" >> ParDo(ImpulseSeqGenDoFn(self.data))
        if self.apply_windowing:
            result = result | "ApplyWindowing" >> WindowInto(FixedWindows(self.interval))
        return result
