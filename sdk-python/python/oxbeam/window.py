"""Windows and window functions, as in ``apache_beam.transforms.window``.

``GlobalWindows``, ``FixedWindows``, ``SlidingWindows`` and ``Sessions``
are Beam's standard window fns: the pipeline carries them as standard
payloads, and the runner merges session windows in its GroupByKey.
"""

from oxbeam.utils.timestamp import (  # noqa: F401 - MAX_TIMESTAMP: Beam's window module has it
    MAX_TIMESTAMP,
    MAX_TIMESTAMP_MICROS,
    MIN_TIMESTAMP,
    MIN_TIMESTAMP_MICROS,
    Duration,
    Timestamp,
)
from oxbeam.utils import _specials

__all__ = [
    "BoundedWindow",
    "GlobalWindow",
    "IntervalWindow",
    "WindowFn",
    "NonMergingWindowFn",
    "GlobalWindows",
    "FixedWindows",
    "SlidingWindows",
    "Sessions",
    "TimestampedValue",
    "TimestampCombiner",
    "Windowing",
]

_GLOBAL_MAX_MICROS = MAX_TIMESTAMP_MICROS - 24 * 3600 * 1000 * 1000


class BoundedWindow(object):
    """A window of event time."""

    def max_timestamp(self):
        raise NotImplementedError


class GlobalWindow(BoundedWindow):
    """The window spanning all time (a singleton)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super(GlobalWindow, cls).__new__(cls)
        return cls._instance

    def max_timestamp(self):
        return Timestamp(micros=_GLOBAL_MAX_MICROS)

    @property
    def start(self):
        return MIN_TIMESTAMP

    @property
    def end(self):
        return Timestamp(micros=_GLOBAL_MAX_MICROS)

    def __repr__(self):
        return "GlobalWindow"

    def __eq__(self, other):
        return isinstance(other, GlobalWindow)

    def __hash__(self):
        return hash(GlobalWindow)

    def __reduce__(self):
        return (GlobalWindow, ())


class IntervalWindow(BoundedWindow):
    """The half-open interval ``[start, end)``."""

    __slots__ = ("_s", "_e")

    def __init__(self, start, end):
        self._s = Timestamp.of(start).micros
        self._e = Timestamp.of(end).micros

    @classmethod
    def _from_micros(cls, s, e):
        w = cls.__new__(cls)
        w._s = s
        w._e = e
        return w

    def _micros(self):
        return (self._s, self._e)

    @property
    def start(self):
        return Timestamp(micros=self._s)

    @property
    def end(self):
        return Timestamp(micros=self._e)

    def max_timestamp(self):
        return Timestamp(micros=self._e - 1)

    def intersects(self, other):
        return other._s < self._e and self._s < other._e

    def union(self, other):
        return IntervalWindow._from_micros(min(self._s, other._s), max(self._e, other._e))

    def __eq__(self, other):
        return isinstance(other, IntervalWindow) and self._s == other._s and self._e == other._e

    def __lt__(self, other):
        return (self._e, self._s) < (other._e, other._s)

    def __hash__(self):
        return hash((self._s, self._e))

    def __repr__(self):
        return "[%s, %s)" % (float(self.start), float(self.end))

    def __reduce__(self):
        return (IntervalWindow._from_micros, (self._s, self._e))


class TimestampedValue(object):
    """A value with an event timestamp; DoFns output it to set timestamps."""

    __slots__ = ("value", "timestamp")

    def __new__(cls, *args, **kwargs):
        return _specials.note_created(cls)

    def __init__(self, value, timestamp):
        self.value = value
        self.timestamp = Timestamp.of(timestamp)

    def __eq__(self, other):
        return (
            isinstance(other, TimestampedValue)
            and self.value == other.value
            and self.timestamp == other.timestamp
        )

    def __hash__(self):
        return hash((self.value, self.timestamp))

    def __repr__(self):
        return "TimestampedValue(%r, %r)" % (self.value, self.timestamp)


class TimestampCombiner(object):
    """Output time of grouped values: the end of the window (default), or
    the earliest / latest input timestamp of the pane. The values are the
    names of Beam's ``OutputTime.Enum``."""

    OUTPUT_AT_EOW = "END_OF_WINDOW"
    OUTPUT_AT_EARLIEST = "EARLIEST_IN_PANE"
    OUTPUT_AT_LATEST = "LATEST_IN_PANE"

    _ALL = ("END_OF_WINDOW", "EARLIEST_IN_PANE", "LATEST_IN_PANE")
    # Beam's enum values (apache_beam passes these ints).
    _FROM_INT = {1: "END_OF_WINDOW", 2: "LATEST_IN_PANE", 3: "EARLIEST_IN_PANE"}

    @staticmethod
    def _normalize(tc):
        if tc is None:
            return TimestampCombiner.OUTPUT_AT_EOW
        if isinstance(tc, int) and tc in TimestampCombiner._FROM_INT:
            return TimestampCombiner._FROM_INT[tc]
        if tc in TimestampCombiner._ALL:
            return tc
        if tc == "OUTPUT_AT_EARLIEST_TRANSFORMED":
            raise NotImplementedError("TimestampCombiner.OUTPUT_AT_EARLIEST_TRANSFORMED")
        raise ValueError("unknown timestamp combiner %r" % (tc,))


class Windowing(object):
    """A windowing strategy: the window fn, and when and how groupings emit
    panes (trigger, accumulation mode, timestamp combiner, allowed lateness
    in seconds), as ``apache_beam.transforms.core.Windowing``."""

    def __init__(self, windowfn, triggerfn=None, accumulation_mode=None, timestamp_combiner=None,
                 allowed_lateness=0, environment_id=None):
        from oxbeam.transforms.trigger import AccumulationMode, DefaultTrigger, TriggerFn

        if triggerfn is None:
            triggerfn = DefaultTrigger()
        if not isinstance(triggerfn, TriggerFn):
            raise TypeError("trigger must be a trigger of oxbeam.transforms.trigger, got %r" % (triggerfn,))
        if accumulation_mode is None:
            if triggerfn == DefaultTrigger():
                accumulation_mode = AccumulationMode.DISCARDING
            else:
                raise ValueError("accumulation_mode must be provided for non-trivial triggers")
        AccumulationMode._proto_name(accumulation_mode)
        self.windowfn = windowfn
        self.triggerfn = triggerfn
        self.accumulation_mode = accumulation_mode
        self.timestamp_combiner = TimestampCombiner._normalize(timestamp_combiner)
        self.allowed_lateness = Duration.of(allowed_lateness)
        if self.allowed_lateness.micros < 0:
            raise ValueError("allowed_lateness must not be negative")
        self.environment_id = environment_id

    def is_default(self):
        from oxbeam.transforms.trigger import AccumulationMode, DefaultTrigger

        return (
            isinstance(self.windowfn, GlobalWindows)
            and self.triggerfn == DefaultTrigger()
            and self.accumulation_mode == AccumulationMode.DISCARDING
            and self.timestamp_combiner == TimestampCombiner.OUTPUT_AT_EOW
            and self.allowed_lateness.micros == 0
        )

    def _key(self):
        return (self.windowfn, repr(self.triggerfn), self.accumulation_mode, self.timestamp_combiner,
                self.allowed_lateness.micros)

    def __eq__(self, other):
        return isinstance(other, Windowing) and self._key() == other._key()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return "Windowing(%s, %s, %s, %s, %s)" % (
            self.windowfn, self.triggerfn, self.accumulation_mode, self.timestamp_combiner,
            self.allowed_lateness)

    def _continuation(self):
        """The windowing of a grouping's output: the continuation trigger."""
        return Windowing(self.windowfn, self.triggerfn.get_continuation_trigger(), self.accumulation_mode,
                         self.timestamp_combiner, self.allowed_lateness, self.environment_id)


def _as_windowing(w):
    if w is None or isinstance(w, Windowing):
        return w
    return Windowing(w)


def _ms(x):
    return int(Duration.of(x).micros // 1000)


def _duration_json(micros):
    return "%.6fs" % (micros / 1e6)


def _timestamp_json(micros):
    import datetime

    dt = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=micros)
    return dt.isoformat() + ("Z" if dt.microsecond else ".000000Z")


class WindowFn(object):
    """Assigns elements to windows."""

    merging = False

    def assign_micros(self, micros):
        """Windows of an element at ``micros``."""
        raise NotImplementedError

    def side_window(self, main_window):
        """The window of this (side input) fn that a main input window reads."""
        ws = self.assign_micros(main_window.max_timestamp().micros)
        return ws[-1]

    def _proto(self):
        raise NotImplementedError("custom WindowFn %s" % type(self).__name__)

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.__dict__.items()))))


class NonMergingWindowFn(WindowFn):
    pass


class GlobalWindows(NonMergingWindowFn):
    """Every element in the single global window."""

    def assign_micros(self, micros):
        return [GlobalWindow()]

    def side_window(self, main_window):
        return GlobalWindow()

    @staticmethod
    def windowed_value(value, timestamp=MIN_TIMESTAMP):
        from oxbeam.utils.windowed_value import WindowedValue

        return WindowedValue(value, timestamp, (GlobalWindow(),))

    def _proto(self):
        return ("global_windows_payload::PROPERTIES", None, None)

    def __repr__(self):
        return "GlobalWindows()"


class FixedWindows(NonMergingWindowFn):
    """Windows of ``size`` seconds, aligned at ``offset``."""

    def __init__(self, size, offset=0):
        self.size = Duration.of(size).micros
        self.offset = Timestamp.of(offset).micros % self.size if self.size else 0
        if self.size <= 0:
            raise ValueError("The size parameter must be strictly positive.")

    def assign_micros(self, micros):
        start = micros - (micros - self.offset) % self.size
        return [IntervalWindow._from_micros(start, start + self.size)]

    def _proto(self):
        return (
            "fixed_windows_payload::PROPERTIES",
            "org.apache.beam.model.pipeline.v1.FixedWindowsPayload",
            {"size": _duration_json(self.size), "offset": _timestamp_json(self.offset)},
        )

    def __repr__(self):
        return "FixedWindows(%s)" % (self.size / 1e6)


class SlidingWindows(NonMergingWindowFn):
    """Windows of ``size`` seconds starting every ``period`` seconds."""

    def __init__(self, size, period, offset=0):
        self.size = Duration.of(size).micros
        self.period = Duration.of(period).micros
        self.offset = Timestamp.of(offset).micros % self.period
        if self.size <= 0 or self.period <= 0:
            raise ValueError("The size and period parameters must be strictly positive.")

    def assign_micros(self, micros):
        last = micros - (micros - self.offset) % self.period
        out = []
        s = last
        while s > micros - self.size:
            out.append(IntervalWindow._from_micros(s, s + self.size))
            s -= self.period
        return out

    def side_window(self, main_window):
        return self.assign_micros(main_window.max_timestamp().micros)[0]

    def _proto(self):
        return (
            "sliding_windows_payload::PROPERTIES",
            "org.apache.beam.model.pipeline.v1.SlidingWindowsPayload",
            {
                "size": _duration_json(self.size),
                "period": _duration_json(self.period),
                "offset": _timestamp_json(self.offset),
            },
        )


class Sessions(WindowFn):
    """Per-key sessions: windows that merge when closer than ``gap_size``."""

    merging = True

    def __init__(self, gap_size):
        self.gap_size = Duration.of(gap_size).micros
        if self.gap_size <= 0:
            raise ValueError("The size parameter must be strictly positive.")

    def assign_micros(self, micros):
        return [IntervalWindow._from_micros(micros, micros + self.gap_size)]

    def side_window(self, main_window):
        raise NotImplementedError("Sessions windows as side inputs")

    def _proto(self):
        return (
            "session_windows_payload::PROPERTIES",
            "org.apache.beam.model.pipeline.v1.SessionWindowsPayload",
            {"gapSize": _duration_json(self.gap_size)},
        )


def _from_runner_tuple(t):
    """The window fn of the runner's ``(kind, millis...)`` description."""
    kind = t[0]
    if kind == "global":
        return GlobalWindows()
    if kind == "fixed":
        return FixedWindows(Duration(micros=t[1] * 1000), Timestamp(micros=t[2] * 1000))
    if kind == "sliding":
        return SlidingWindows(
            Duration(micros=t[1] * 1000), Duration(micros=t[2] * 1000), Timestamp(micros=t[3] * 1000)
        )
    if kind == "sessions":
        return Sessions(Duration(micros=t[1] * 1000))
    raise NotImplementedError("window fn %r" % (t,))


# Beam defines these in ``apache_beam.transforms.window``, which their type
# names show (``type(window)``); ``oxbeam.transforms.window`` exports them.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__ == __name__:
        _obj.__module__ = "oxbeam.transforms.window"
del _name, _obj
