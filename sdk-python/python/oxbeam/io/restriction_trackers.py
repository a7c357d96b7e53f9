"""Restrictions and trackers of splittable DoFns, as
``apache_beam.io.restriction_trackers``."""

from oxbeam.io.iobase import RestrictionProgress, RestrictionTracker

__all__ = ["OffsetRange", "OffsetRestrictionTracker", "UnsplittableRestrictionTracker"]


class OffsetRange(object):
    """The half-open range of offsets ``[start, stop)``."""

    def __init__(self, start, stop):
        if start > stop:
            raise ValueError("Start offset must be not be larger than the stop offset. "
                             "Received %d and %d respectively." % (start, stop))
        self.start = start
        self.stop = stop

    def __eq__(self, other):
        return isinstance(other, OffsetRange) and (self.start, self.stop) == (
            other.start, other.stop)

    def __hash__(self):
        return hash((type(self), self.start, self.stop))

    def __repr__(self):
        return "OffsetRange(start=%s, stop=%s)" % (self.start, self.stop)

    def split(self, desired_num_offsets_per_split, min_num_offsets_per_split=1):
        """Consecutive ranges of about ``desired_num_offsets_per_split``
        offsets (no small range at the end: a remainder below a quarter of
        the desired size or the minimum joins the last one)."""
        current = self.start
        size = max(desired_num_offsets_per_split, min_num_offsets_per_split)
        while current < self.stop:
            end = min(current + size, self.stop)
            remaining = self.stop - end
            if (remaining < desired_num_offsets_per_split // 4
                    or remaining < min_num_offsets_per_split):
                end = self.stop
            yield OffsetRange(current, end)
            current = end

    def split_at(self, split_pos):
        return OffsetRange(self.start, split_pos), OffsetRange(split_pos, self.stop)

    def new_tracker(self):
        return OffsetRestrictionTracker(self)

    def size(self):
        return self.stop - self.start


class OffsetRestrictionTracker(RestrictionTracker):
    """Claims offsets of an :class:`OffsetRange` in increasing order."""

    def __init__(self, offset_range):
        if not isinstance(offset_range, OffsetRange):
            raise TypeError("OffsetRestrictionTracker needs an OffsetRange, got %r"
                            % (offset_range,))
        self._range = offset_range
        self._current_position = None
        self._last_claim_attempt = None
        self._checkpointed = False

    def check_done(self):
        if (self._range.start != self._range.stop and (
                self._last_claim_attempt is None
                or self._last_claim_attempt < self._range.stop - 1)):
            raise ValueError(
                "OffsetRestrictionTracker is not done since work in range [%s, %s) has not "
                "been claimed." % (
                    self._last_claim_attempt if self._last_claim_attempt is not None
                    else self._range.start, self._range.stop))

    def current_restriction(self):
        return self._range

    def current_progress(self):
        if self._current_position is None:
            fraction = 0.0
        elif self._range.stop == self._range.start:
            fraction = 1.0
        else:
            fraction = float(self._current_position - self._range.start) / (
                self._range.stop - self._range.start)
        return RestrictionProgress(fraction=fraction)

    def start_position(self):
        return self._range.start

    def stop_position(self):
        return self._range.stop

    def try_claim(self, position):
        if self._last_claim_attempt is not None and position <= self._last_claim_attempt:
            raise ValueError(
                "Positions claimed should strictly increase. Trying to claim position %d "
                "while last claim attempt was %d." % (position, self._last_claim_attempt))
        self._last_claim_attempt = position
        if position < self._range.start:
            raise ValueError("Position to be claimed cannot be smaller than the start "
                             "position of the range. Tried to claim position %r for the "
                             "range [%r, %r)" % (position, self._range.start, self._range.stop))
        if self._range.start <= position < self._range.stop:
            self._current_position = position
            return True
        return False

    def try_split(self, fraction_of_remainder):
        if not self._checkpointed:
            if self._last_claim_attempt is None:
                cur = self._range.start - 1
            else:
                cur = self._last_claim_attempt
            split_point = cur + int(max(1, (self._range.stop - cur) * fraction_of_remainder))
            if split_point < self._range.stop:
                if fraction_of_remainder == 0:
                    self._checkpointed = True
                self._range, residual = self._range.split_at(split_point)
                return self._range, residual
        return None

    def is_bounded(self):
        return True


class UnsplittableRestrictionTracker(RestrictionTracker):
    """Wraps a tracker so that it is never split (only checkpointed)."""

    def __init__(self, underlying_tracker):
        self._underlying_tracker = underlying_tracker

    def try_claim(self, position):
        return self._underlying_tracker.try_claim(position)

    def current_restriction(self):
        return self._underlying_tracker.current_restriction()

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder == 0:
            return self._underlying_tracker.try_split(0)
        return None

    def check_done(self):
        return self._underlying_tracker.check_done()

    def current_progress(self):
        return self._underlying_tracker.current_progress()

    def is_bounded(self):
        return self._underlying_tracker.is_bounded()
