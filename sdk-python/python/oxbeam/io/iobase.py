"""Sources, sinks and restriction trackers, as ``apache_beam.io.iobase``.

- Splittable DoFns use :class:`RestrictionTracker` (see
  :mod:`oxbeam.io.restriction_trackers`) and :class:`WatermarkEstimator`.
- :class:`BoundedSource` + :class:`Read`: a source is split into bundles of
  about 64 MiB (``estimate_size``/``split``), the bundles are spread over
  workers (Reshuffle) and each is read through its range tracker.
- :class:`Sink` + :class:`Write`: ``initialize_write`` once, a
  :class:`Writer` per bundle (``open_writer``/``write``/``close``), then
  ``pre_finalize`` and ``finalize_write`` over all writer results.
"""

import uuid

from oxbeam.pvalue import AsList, AsSingleton
from oxbeam.transforms.core import Create, DoFn, FlatMap, Impulse, Map, ParDo, Reshuffle
from oxbeam.transforms.ptransform import PTransform
from oxbeam.utils.windowed_value import WindowedValue

__all__ = [
    "BoundedSource", "RangeTracker", "SourceBundle", "Read", "Sink", "Writer", "Write",
    "RestrictionTracker", "RestrictionProgress", "WatermarkEstimator",
]

DEFAULT_DESIRED_BUNDLE_SIZE = 64 * 1024 * 1024


class RestrictionProgress(object):
    """Progress of a restriction: a fraction, or completed/remaining work."""

    def __init__(self, **kwargs):
        self._fraction = kwargs.pop("fraction", None)
        self._completed = kwargs.pop("completed", None)
        self._remaining = kwargs.pop("remaining", None)
        if kwargs:
            raise ValueError("Unexpected arguments: %s" % list(kwargs))

    @property
    def completed_work(self):
        if self._completed is not None:
            return self._completed
        if self._fraction is not None:
            return self._fraction
        return 0

    @property
    def remaining_work(self):
        if self._remaining is not None:
            return self._remaining
        if self._fraction is not None:
            return 1 - self._fraction
        return 0

    @property
    def fraction_completed(self):
        if self._fraction is not None:
            return self._fraction
        total = self.completed_work + self.remaining_work
        return float(self.completed_work) / total if total else 0


class RestrictionTracker(object):
    """Claims the positions of one restriction of a splittable DoFn."""

    def current_restriction(self):
        raise NotImplementedError

    def current_progress(self):
        raise NotImplementedError

    def check_done(self):
        raise NotImplementedError

    def try_split(self, fraction_of_remainder):
        raise NotImplementedError

    def try_claim(self, position):
        raise NotImplementedError

    def is_bounded(self):
        raise NotImplementedError


class WatermarkEstimator(object):
    """Tracks the output watermark of a splittable DoFn's restriction."""

    def get_estimator_state(self):
        raise NotImplementedError

    def current_watermark(self):
        raise NotImplementedError

    def observe_timestamp(self, timestamp):
        raise NotImplementedError


class RangeTracker(object):
    """Claims split points of a :class:`BoundedSource`'s range (the legacy
    source API; see :mod:`oxbeam.io.range_trackers`)."""

    def start_position(self):
        raise NotImplementedError

    def stop_position(self):
        raise NotImplementedError

    def try_claim(self, position):
        raise NotImplementedError

    def try_split(self, position):
        raise NotImplementedError

    def fraction_consumed(self):
        raise NotImplementedError

    def set_current_position(self, position):
        raise NotImplementedError

    def position_at_fraction(self, fraction):
        raise NotImplementedError

    def split_points(self):
        return (0, 0)


class SourceBundle(object):
    """A part of a split source: ``(weight, source, start_position,
    stop_position)``."""

    __slots__ = ("weight", "source", "start_position", "stop_position")

    def __init__(self, weight, source, start_position, stop_position):
        self.weight = weight
        self.source = source
        self.start_position = start_position
        self.stop_position = stop_position

    def __iter__(self):
        return iter((self.weight, self.source, self.start_position, self.stop_position))

    def __repr__(self):
        return "SourceBundle(%r, %r, %r, %r)" % tuple(self)


class BoundedSource(object):
    """A finite source: ``estimate_size``, ``split``, ``get_range_tracker``
    and ``read(range_tracker)``."""

    def estimate_size(self):
        raise NotImplementedError

    def split(self, desired_bundle_size, start_position=None, stop_position=None):
        raise NotImplementedError

    def get_range_tracker(self, start_position, stop_position):
        raise NotImplementedError

    def read(self, range_tracker):
        raise NotImplementedError

    def default_output_coder(self):
        from oxbeam.coders import PickleCoder

        return PickleCoder()

    def is_bounded(self):
        return True


class _SplitSource(object):
    def __init__(self, source):
        self.source = source

    def __call__(self, _):
        size = None
        try:
            size = self.source.estimate_size()
        except NotImplementedError:
            pass
        desired = DEFAULT_DESIRED_BUNDLE_SIZE
        if size:
            # At least a few bundles to spread over workers.
            desired = max(1, min(desired, size // 16 or 1))
        return [tuple(b) for b in self.source.split(desired)]


def _read_bundle(bundle):
    _, source, start, stop = bundle
    return source.read(source.get_range_tracker(start, stop))


class Read(PTransform):
    """Reads a :class:`BoundedSource`."""

    def __init__(self, source):
        PTransform.__init__(self)
        if not isinstance(source, BoundedSource):
            raise NotImplementedError(
                "Read of %r: Oxbeam's Python SDK reads BoundedSource subclasses (unbounded "
                "sources: write a splittable DoFn)" % (source,))
        self.source = source

    def default_label(self):
        return "Read(%s)" % type(self.source).__name__

    def expand(self, pbegin):
        return (
            pbegin
            | "Impulse" >> Impulse()
            | "Split" >> FlatMap(_SplitSource(self.source))
            | "Reshuffle" >> Reshuffle()
            | "ReadSplits" >> FlatMap(_read_bundle)
        )


class Sink(object):
    """A sink of the legacy write API (see :class:`Write`)."""

    def initialize_write(self):
        raise NotImplementedError

    def open_writer(self, init_result, uid):
        raise NotImplementedError

    def pre_finalize(self, init_result, writer_results):
        raise NotImplementedError

    def finalize_write(self, init_result, writer_results, pre_finalize_result):
        raise NotImplementedError


class Writer(object):
    """Writes one bundle's elements for a :class:`Sink`."""

    def write(self, value):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError


class _WriteBundles(DoFn):
    def __init__(self, sink):
        self.sink = sink

    def start_bundle(self):
        self.writer = None

    def process(self, element, init_result):
        if self.writer is None:
            self.writer = self.sink.open_writer(init_result, str(uuid.uuid4()))
        self.writer.write(element)

    def finish_bundle(self):
        if self.writer is not None:
            from oxbeam.window import GlobalWindow

            result = self.writer.close()
            self.writer = None
            w = GlobalWindow()
            yield WindowedValue(result, w.max_timestamp(), [w])


def _pre_finalize(_, sink, init_result, writer_results):
    # As Beam: what pre_finalize returns is iterated; its one value goes to
    # finalize_write.
    return sink.pre_finalize(init_result, writer_results)


def _finalize(_, sink, init_result, writer_results, pre_finalize_result):
    from oxbeam.transforms.window import TimestampedValue
    from oxbeam.utils.timestamp import MAX_TIMESTAMP

    writer_results = list(writer_results)
    if not writer_results and not getattr(sink, "skip_if_empty", False):
        # At least one shard, as Beam writes.
        writer = sink.open_writer(init_result, str(uuid.uuid4()))
        writer_results.append(writer.close())
    out = sink.finalize_write(init_result, writer_results, pre_finalize_result)
    return [TimestampedValue(v, MAX_TIMESTAMP) for v in out] if out else []


class Write(PTransform):
    """Writes a PCollection with a :class:`Sink`."""

    def __init__(self, sink):
        PTransform.__init__(self)
        if not isinstance(sink, Sink):
            raise TypeError("Write needs an iobase.Sink, got %r" % (sink,))
        self.sink = sink

    def default_label(self):
        return "Write(%s)" % type(self.sink).__name__

    def expand(self, pcoll):
        from oxbeam.transforms.core import WindowInto
        from oxbeam.window import GlobalWindows

        p = pcoll.pipeline
        init = p | "InitializeWrite" >> Create([None]) | "Init" >> Map(
            _initialize, self.sink)
        if not pcoll.windowing.is_default():
            pcoll = pcoll | "Rewindow" >> WindowInto(GlobalWindows())
        results = pcoll | "WriteBundles" >> ParDo(_WriteBundles(self.sink), AsSingleton(init))
        once = p | "DoOnce" >> Create([None])
        pre = once | "PreFinalize" >> FlatMap(
            _pre_finalize, self.sink, AsSingleton(init), AsList(results))
        return once | "FinalizeWrite" >> FlatMap(
            _finalize, self.sink, AsSingleton(init), AsList(results), AsSingleton(pre))


def _initialize(_, sink):
    return sink.initialize_write()
