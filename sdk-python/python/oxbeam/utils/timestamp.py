"""Event-time timestamps and durations, as in ``apache_beam.utils.timestamp``.

Both are kept in microseconds; the runner carries milliseconds, like Beam.
"""

import datetime
import functools
import time
import typing

__all__ = ["Timestamp", "Duration", "MIN_TIMESTAMP", "MAX_TIMESTAMP", "TIME_GRANULARITY"]


def _to_micros(seconds=0, micros=0):
    return int(seconds * 1000000) + int(micros)


@functools.total_ordering
class Timestamp(object):
    """A point in event time, with microsecond granularity."""

    __slots__ = ("micros",)

    def __init__(self, seconds=0, micros=0):
        self.micros = _to_micros(seconds, micros)

    @staticmethod
    def of(seconds):
        """A ``Timestamp`` from seconds (int, float) or a ``Timestamp``."""
        if isinstance(seconds, Timestamp):
            return seconds
        if isinstance(seconds, Duration):
            raise TypeError("Can't interpret %r as Timestamp." % seconds)
        return Timestamp(seconds)

    @staticmethod
    def now():
        return Timestamp(seconds=time.time())

    @staticmethod
    def from_utc_datetime(dt):
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        delta = dt - epoch
        return Timestamp(micros=(delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds)

    @staticmethod
    def from_rfc3339(s):
        return Timestamp.from_utc_datetime(datetime.datetime.fromisoformat(s.replace("Z", "+00:00")))

    def seconds(self):
        return self.micros / 1000000.0

    def to_utc_datetime(self):
        return datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=self.micros)

    def to_rfc3339(self):
        return self.to_utc_datetime().isoformat() + "Z"

    def __repr__(self):
        if self.micros == MIN_TIMESTAMP_MICROS:
            return "Timestamp(MIN_WINDOW_START)"
        if self.micros == MAX_TIMESTAMP_MICROS:
            return "Timestamp(MAX_WINDOW_END)"
        int_part, frac_part = divmod(abs(self.micros), 1000000)
        sign = "-" if self.micros < 0 else ""
        if frac_part:
            return "Timestamp(%s%d.%06d)" % (sign, int_part, frac_part)
        return "Timestamp(%s%d)" % (sign, int_part)

    def __str__(self):
        return self.__repr__()

    def __float__(self):
        return self.micros / 1000000.0

    def __int__(self):
        return self.micros // 1000000

    def __eq__(self, other):
        if isinstance(other, Duration):
            return NotImplemented
        try:
            other = Timestamp.of(other)
        except TypeError:
            return NotImplemented
        return self.micros == other.micros

    def __lt__(self, other):
        if isinstance(other, Duration):
            return NotImplemented
        return self.micros < Timestamp.of(other).micros

    def __hash__(self):
        return hash(self.micros)

    def __add__(self, other):
        other = Duration.of(other)
        return Timestamp(micros=self.micros + other.micros)

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, Timestamp):
            return Duration(micros=self.micros - other.micros)
        other = Duration.of(other)
        return Timestamp(micros=self.micros - other.micros)

    def __mod__(self, other):
        other = Duration.of(other)
        return Duration(micros=self.micros % other.micros)

    def __reduce__(self):
        return (Timestamp, (0, self.micros))


@functools.total_ordering
class Duration(object):
    """A span of event time, with microsecond granularity."""

    __slots__ = ("micros",)

    def __init__(self, seconds=0, micros=0):
        self.micros = _to_micros(seconds, micros)

    @staticmethod
    def of(seconds):
        if isinstance(seconds, Timestamp):
            raise TypeError("Can't interpret %r as Duration." % seconds)
        if isinstance(seconds, Duration):
            return seconds
        return Duration(seconds)

    def seconds(self):
        return self.micros / 1000000.0

    def __repr__(self):
        int_part, frac_part = divmod(abs(self.micros), 1000000)
        sign = "-" if self.micros < 0 else ""
        if frac_part:
            return "Duration(%s%d.%06d)" % (sign, int_part, frac_part)
        return "Duration(%s%d)" % (sign, int_part)

    def __float__(self):
        return self.micros / 1000000.0

    def __eq__(self, other):
        if isinstance(other, Timestamp):
            return NotImplemented
        try:
            return self.micros == Duration.of(other).micros
        except TypeError:
            return NotImplemented

    def __lt__(self, other):
        return self.micros < Duration.of(other).micros

    def __hash__(self):
        return hash(self.micros)

    def __neg__(self):
        return Duration(micros=-self.micros)

    def __add__(self, other):
        if isinstance(other, Timestamp):
            return other + self
        return Duration(micros=self.micros + Duration.of(other).micros)

    __radd__ = __add__

    def __sub__(self, other):
        return Duration(micros=self.micros - Duration.of(other).micros)

    def __mul__(self, other):
        return Duration(micros=self.micros * other)

    __rmul__ = __mul__

    def __mod__(self, other):
        return Duration(micros=self.micros % Duration.of(other).micros)

    def __reduce__(self):
        return (Duration, (0, self.micros))


# Beam's bounds (milliseconds in the model, here in microseconds).
MIN_TIMESTAMP_MICROS = -9223372036854775 * 1000
MAX_TIMESTAMP_MICROS = 9223372036854775 * 1000
MIN_TIMESTAMP = Timestamp(micros=MIN_TIMESTAMP_MICROS)
MAX_TIMESTAMP = Timestamp(micros=MAX_TIMESTAMP_MICROS)
TIME_GRANULARITY = Duration(micros=1)


# Type aliases of Beam's ``apache_beam.utils.timestamp``.
TimestampTypes = typing.Union[int, float, Timestamp]
DurationTypes = typing.Union[int, float, Duration]
