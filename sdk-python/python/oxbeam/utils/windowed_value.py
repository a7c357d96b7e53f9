"""``WindowedValue`` and ``PaneInfo``, as in ``apache_beam.utils.windowed_value``.

A ``PaneInfo`` says which trigger firing produced an element (``DoFn.PaneInfoParam``).
Oxbeam adds ``is_retraction``: with accumulation mode RETRACTING, the
element retracts the previous pane of its window (bit ``0x80`` of the
encoded pane byte).
"""

from oxbeam.utils.timestamp import Timestamp
from oxbeam.utils import _specials

__all__ = ["WindowedValue", "PaneInfo", "PaneInfoTiming", "PANE_INFO_UNKNOWN"]


class PaneInfoTiming(object):
    """When a pane fired relative to the watermark passing the window's end."""

    EARLY = 0
    ON_TIME = 1
    LATE = 2
    UNKNOWN = 3

    _NAMES = ("EARLY", "ON_TIME", "LATE", "UNKNOWN")

    @classmethod
    def to_string(cls, value):
        return cls._NAMES[value]

    @classmethod
    def from_string(cls, value):
        return cls._NAMES.index(value)


class PaneInfo(object):
    """Which firing of a trigger produced an element: first/last pane of
    its window, timing (``PaneInfoTiming``), index among all firings,
    index among non-speculative firings, and (Oxbeam) ``is_retraction``."""

    __slots__ = ("_is_first", "_is_last", "_timing", "_index", "_nonspeculative_index", "_is_retraction")

    def __init__(self, is_first, is_last, timing, index, nonspeculative_index, is_retraction=False):
        self._is_first = bool(is_first)
        self._is_last = bool(is_last)
        self._timing = timing
        self._index = index
        self._nonspeculative_index = nonspeculative_index
        self._is_retraction = bool(is_retraction)

    @property
    def is_first(self):
        return self._is_first

    @property
    def is_last(self):
        return self._is_last

    @property
    def timing(self):
        return self._timing

    @property
    def index(self):
        return self._index

    @property
    def nonspeculative_index(self):
        return self._nonspeculative_index

    @property
    def is_retraction(self):
        """Whether the element retracts an earlier pane (Oxbeam, RETRACTING mode)."""
        return self._is_retraction

    @property
    def encoded_byte(self):
        b = int(self._is_first) | (int(self._is_last) << 1) | (self._timing << 2)
        return b | 0x80 if self._is_retraction else b

    def _wire(self):
        return (self._is_first, self._is_last, self._timing, self._index, self._nonspeculative_index,
                self._is_retraction)

    def __repr__(self):
        return "PaneInfo(first: %r, last: %r, timing: %s, index: %d, nonspeculative_index: %d%s)" % (
            self._is_first,
            self._is_last,
            PaneInfoTiming.to_string(self._timing),
            self._index,
            self._nonspeculative_index,
            ", retraction" if self._is_retraction else "",
        )

    def __eq__(self, other):
        return isinstance(other, PaneInfo) and self._wire() == other._wire()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self._wire())

    def __reduce__(self):
        return (PaneInfo, self._wire())


PANE_INFO_UNKNOWN = PaneInfo(True, True, PaneInfoTiming.UNKNOWN, 0, 0)


def _pane(is_first, is_last, timing, index, nonspeculative_index, is_retraction):
    """Called by the Rust codec for panes other than ``PANE_INFO_UNKNOWN``."""
    return PaneInfo(is_first, is_last, timing, index, nonspeculative_index, is_retraction)


class WindowedValue(object):
    """A value, its timestamp, the windows it is in, and its pane."""

    __slots__ = ("value", "timestamp", "windows", "pane_info")

    def __new__(cls, *args, **kwargs):
        return _specials.note_created(cls)

    def __init__(self, value, timestamp, windows, pane_info=PANE_INFO_UNKNOWN):
        self.value = value
        self.timestamp = Timestamp.of(timestamp)
        self.windows = tuple(windows)
        self.pane_info = pane_info if pane_info is not None else PANE_INFO_UNKNOWN

    def __repr__(self):
        return "WindowedValue(%r, %r, %r, %r)" % (self.value, self.timestamp, self.windows, self.pane_info)

    def __eq__(self, other):
        return (
            isinstance(other, WindowedValue)
            and (self.value, self.timestamp, self.windows, self.pane_info)
            == (other.value, other.timestamp, other.windows, other.pane_info)
        )

    def __hash__(self):
        return hash((self.value, self.timestamp, self.windows))
