"""Range trackers of the legacy source API, as ``apache_beam.io.range_trackers``."""

import threading

from oxbeam.io.iobase import RangeTracker

__all__ = ["OffsetRangeTracker", "UnsplittableRangeTracker"]


class OffsetRangeTracker(RangeTracker):
    """Split points at increasing integer offsets in ``[start, end)``."""

    OFFSET_INFINITY = float("inf")

    def __init__(self, start, end):
        if start is None:
            raise ValueError("Start offset must not be 'None'")
        if end is None:
            raise ValueError("End offset must not be 'None'")
        self._start_offset = start
        self._stop_offset = end
        self._last_record_start = -1
        self._last_attempted_record_start = -1
        self._offset_of_last_split_point = -1
        self._lock = threading.Lock()
        self._split_points_seen = 0
        self._split_points_unclaimed_callback = None

    def start_position(self):
        return self._start_offset

    def stop_position(self):
        return self._stop_offset

    @property
    def last_record_start(self):
        return self._last_record_start

    @property
    def last_attempted_record_start(self):
        return self._last_attempted_record_start

    def _validate_record_start(self, record_start, split_point):
        if not self._lock.locked():
            raise ValueError("This function should only be called under the lock")
        if split_point and self._offset_of_last_split_point != -1 and (
                record_start == self._offset_of_last_split_point):
            raise ValueError(
                "Record at a split point has same offset as the previous split point: "
                "%d" % record_start)
        if not split_point and self._last_record_start == -1:
            raise ValueError(
                "The first record [starting at %d] must be at a split point" % record_start)

    def try_claim(self, record_start):
        with self._lock:
            if record_start <= self._last_attempted_record_start:
                raise ValueError(
                    "Trying to return a record [starting at %d] which is before the last-"
                    "returned record [starting at %d]"
                    % (record_start, self._last_attempted_record_start))
            self._validate_record_start(record_start, True)
            self._last_attempted_record_start = record_start
            if record_start >= self.stop_position():
                return False
            self._offset_of_last_split_point = record_start
            self._last_record_start = record_start
            self._split_points_seen += 1
            return True

    def set_current_position(self, record_start):
        with self._lock:
            self._validate_record_start(record_start, False)
            self._last_record_start = record_start

    def try_split(self, split_offset):
        with self._lock:
            if self._stop_offset == OffsetRangeTracker.OFFSET_INFINITY:
                return None
            if self._last_record_start != -1 and split_offset <= self._last_record_start:
                return None
            if split_offset >= self.stop_position() or split_offset <= self._start_offset:
                return None
            self._stop_offset = split_offset
            split_fraction = (float(split_offset - self._start_offset)
                              / (self._stop_offset - self._start_offset)
                              if self._stop_offset != self._start_offset else 0)
            return self._stop_offset, split_fraction

    def fraction_consumed(self):
        with self._lock:
            if self._last_record_start == -1:
                return 0.0
            if self._stop_offset == self._start_offset:
                return 1.0
            return min(1.0, float(self._last_record_start - self._start_offset)
                       / (self._stop_offset - self._start_offset))

    def position_at_fraction(self, fraction):
        if self._stop_offset == OffsetRangeTracker.OFFSET_INFINITY:
            raise Exception("get_position_for_fraction_consumed is not applicable for an "
                            "unbounded range")
        return int(self._start_offset + fraction * (self._stop_offset - self._start_offset))

    def split_points(self):
        with self._lock:
            consumed = 0 if self._split_points_seen == 0 else self._split_points_seen - 1
            return consumed, -1

    def set_split_points_unclaimed_callback(self, callback):
        self._split_points_unclaimed_callback = callback


class UnsplittableRangeTracker(RangeTracker):
    """A range tracker that never splits."""

    def __init__(self, range_tracker):
        self._range_tracker = range_tracker

    def start_position(self):
        return self._range_tracker.start_position()

    def stop_position(self):
        return self._range_tracker.stop_position()

    def position_at_fraction(self, fraction):
        return self._range_tracker.position_at_fraction(fraction)

    def try_claim(self, position):
        return self._range_tracker.try_claim(position)

    def try_split(self, position):
        return None

    def set_current_position(self, position):
        self._range_tracker.set_current_position(position)

    def fraction_consumed(self):
        return self._range_tracker.fraction_consumed()

    def split_points(self):
        return (0, 1)
