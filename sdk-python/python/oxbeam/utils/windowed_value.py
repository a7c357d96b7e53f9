"""``WindowedValue``: a value with its timestamp and windows (for
``finish_bundle`` outputs), as in ``apache_beam.utils.windowed_value``."""

from oxbeam.utils.timestamp import Timestamp

__all__ = ["WindowedValue"]


class WindowedValue(object):
    """A value, its timestamp and the windows it is in."""

    __slots__ = ("value", "timestamp", "windows")

    def __init__(self, value, timestamp, windows, pane_info=None):
        self.value = value
        self.timestamp = Timestamp.of(timestamp)
        self.windows = tuple(windows)

    def __repr__(self):
        return "WindowedValue(%r, %r, %r)" % (self.value, self.timestamp, self.windows)

    def __eq__(self, other):
        return (
            isinstance(other, WindowedValue)
            and (self.value, self.timestamp, self.windows)
            == (other.value, other.timestamp, other.windows)
        )
