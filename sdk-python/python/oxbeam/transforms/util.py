"""Convenience transforms, as in ``apache_beam.transforms.util``: WithKeys,
Regex, ToString, Reify, BatchElements, GroupIntoBatches, LogElements, Tee,
WaitOn, RemoveDuplicates (and re-exports of Keys, Values, KvSwap, Distinct,
Reshuffle, CoGroupByKey). Each is built from the core transforms, with
Beam's semantics."""

import logging
import re

from oxbeam import pvalue
from oxbeam.transforms.core import (
    CoGroupByKey,
    Distinct,
    DoFn,
    FlatMap,
    GroupByKey,
    Keys,
    KvSwap,
    Map,
    ParDo,
    Reshuffle,
    Values,
)
from oxbeam.transforms.ptransform import PTransform, ptransform_fn
from oxbeam.utils.windowed_value import WindowedValue
from oxbeam.window import GlobalWindow, TimestampedValue

__all__ = [
    "BatchElements",
    "CoGroupByKey",
    "Distinct",
    "GroupIntoBatches",
    "Keys",
    "KvSwap",
    "LogElements",
    "Regex",
    "Reify",
    "RemoveDuplicates",
    "Reshuffle",
    "ReshufflePerKey",
    "Tee",
    "ToString",
    "Values",
    "WaitOn",
    "WithKeys",
]


@ptransform_fn
def WithKeys(pcoll, k, *args, **kwargs):
    """``(k(v), v)`` for a callable ``k`` (extra arguments, side inputs
    included, are passed on), ``(k, v)`` for any other ``k``."""
    if callable(k):
        return pcoll | Map(lambda v, *a, **kw: (k(v, *a, **kw), v), *args, **kwargs)
    return pcoll | Map(lambda v: (k, v))


def ReshufflePerKey():
    """Beam's Reshuffle of key-value pairs: the same pairs, redistributed."""
    return Reshuffle()


def RemoveDuplicates():
    """Beam's older name of :class:`Distinct`."""
    return Distinct()


class ToString(object):
    """Elements, iterables or key-value pairs to strings."""

    @staticmethod
    def Element():
        return "ElementToString" >> Map(str)

    @staticmethod
    def Iterables(delimiter=None):
        sep = "," if delimiter is None else delimiter
        return "IterablesToString" >> Map(lambda xs: sep.join(str(x) for x in xs))

    Kvs = Iterables


class Reify(object):
    """Makes an element's timestamp or window part of its value."""

    class Timestamp(PTransform):
        """Each element as a ``TimestampedValue`` of itself and its
        timestamp (taken as the output's timestamp: the values stay)."""

        def expand(self, pcoll):
            return pcoll | ParDo(_ReifyDoFn("timestamp"))

    class Window(PTransform):
        """Each element as ``(element, timestamp, window)``."""

        def expand(self, pcoll):
            return pcoll | ParDo(_ReifyDoFn("window"))

    class TimestampInValue(PTransform):
        """``(k, v)`` as ``(k, TimestampedValue(v, timestamp))``."""

        def expand(self, pcoll):
            return pcoll | ParDo(_ReifyDoFn("timestamp_in_value"))

    class WindowInValue(PTransform):
        """``(k, v)`` as ``(k, (v, timestamp, window))``."""

        def expand(self, pcoll):
            return pcoll | ParDo(_ReifyDoFn("window_in_value"))


class _ReifyDoFn(DoFn):
    def __init__(self, what):
        self.what = what

    def process(self, element, timestamp=DoFn.TimestampParam, window=DoFn.WindowParam):
        w = self.what
        if w == "timestamp":
            yield TimestampedValue(element, timestamp)
        elif w == "window":
            yield TimestampedValue((element, timestamp, window), timestamp)
        elif w == "timestamp_in_value":
            key, value = element
            yield (key, TimestampedValue(value, timestamp))
        else:
            key, value = element
            yield TimestampedValue((key, (value, timestamp, window)), timestamp)


def _compile(regex):
    return re.compile(regex) if isinstance(regex, str) else regex


class Regex(object):
    """Regular expressions over string elements (Python's ``re``)."""

    ALL = "__regex_all_groups"

    @staticmethod
    @ptransform_fn
    def matches(pcoll, regex, group=0):
        """``group`` of elements whose beginning matches."""
        r = _compile(regex)
        return pcoll | FlatMap(lambda s: [m.group(group)] if (m := r.match(s)) else [])

    @staticmethod
    @ptransform_fn
    def all_matches(pcoll, regex):
        """Every group (0 to the last) of elements whose beginning matches."""
        r = _compile(regex)

        def groups(s):
            m = r.match(s)
            return [[m.group(i) for i in range((m.lastindex or 0) + 1)]] if m else []

        return pcoll | FlatMap(groups)

    @staticmethod
    @ptransform_fn
    def matches_kv(pcoll, regex, keyGroup, valueGroup=0):
        """``(keyGroup, valueGroup)`` of elements whose beginning matches."""
        r = _compile(regex)
        return pcoll | FlatMap(
            lambda s: [(m.group(keyGroup), m.group(valueGroup))] if (m := r.match(s)) else []
        )

    @staticmethod
    @ptransform_fn
    def find(pcoll, regex, group=0):
        """``group`` of the first match anywhere in each element."""
        r = _compile(regex)
        return pcoll | FlatMap(lambda s: [m.group(group)] if (m := r.search(s)) else [])

    @staticmethod
    @ptransform_fn
    def find_all(pcoll, regex, group=0, outputEmpty=True):
        """A list per element of ``group`` of every match (``Regex.ALL``:
        ``(match, first group)`` pairs); empty matches dropped unless
        ``outputEmpty``."""
        r = _compile(regex)

        def all_of(s):
            ms = r.finditer(s)
            if group == Regex.ALL:
                return [[(m.group(), m.groups()[0]) for m in ms if outputEmpty or m.groups()[0]]]
            return [[m.group(group) for m in ms if outputEmpty or m.group(group)]]

        return pcoll | FlatMap(all_of)

    @staticmethod
    @ptransform_fn
    def find_kv(pcoll, regex, keyGroup, valueGroup=0):
        """``(keyGroup, valueGroup)`` of every match anywhere in each element."""
        r = _compile(regex)
        return pcoll | FlatMap(
            lambda s: [(m.group(keyGroup), m.group(valueGroup)) for m in r.finditer(s)]
        )

    @staticmethod
    @ptransform_fn
    def replace_all(pcoll, regex, replacement):
        r = _compile(regex)
        return pcoll | Map(lambda s: r.sub(replacement, s))

    @staticmethod
    @ptransform_fn
    def replace_first(pcoll, regex, replacement):
        r = _compile(regex)
        return pcoll | Map(lambda s: r.sub(replacement, s, 1))

    @staticmethod
    @ptransform_fn
    def split(pcoll, regex, outputEmpty=False):
        """Each element split on the regex, as a list (empty parts dropped
        unless ``outputEmpty``)."""
        r = _compile(regex)
        keep = bool(outputEmpty)
        return pcoll | FlatMap(lambda s: [[p for p in r.split(s) if keep or p]])


class BatchElements(PTransform):
    """Lists of consecutive elements of a bundle and window, of
    ``min_batch_size`` growing to ``max_batch_size`` elements (Beam sizes
    batches adaptively by timing them; here sizes double from the minimum,
    so ``min_batch_size == max_batch_size`` gives fixed batches). The other
    tuning arguments of Beam's BatchElements are accepted and ignored."""

    def __init__(self, min_batch_size=1, max_batch_size=10000, **kwargs):
        PTransform.__init__(self)
        if min_batch_size > max_batch_size:
            raise ValueError(
                "Minimum (%s) must not be greater than maximum (%s)" % (min_batch_size, max_batch_size)
            )
        self.min_batch_size = max(1, int(min_batch_size))
        self.max_batch_size = max(1, int(max_batch_size))

    def expand(self, pcoll):
        return pcoll | ParDo(_BatchDoFn(self.min_batch_size, self.max_batch_size))


class _BatchDoFn(DoFn):
    def __init__(self, lo, hi):
        self.lo = lo
        self.hi = hi

    def start_bundle(self):
        self.buffers = {}
        self.size = self.lo

    def process(self, element, window=DoFn.WindowParam):
        buf = self.buffers.setdefault(window, [])
        buf.append(element)
        if len(buf) >= self.size:
            del self.buffers[window]
            self.size = min(self.size * 2, self.hi)
            if isinstance(window, GlobalWindow):
                yield buf  # at the element's timestamp, as Beam's
            else:
                yield WindowedValue(buf, window.max_timestamp(), (window,))

    def finish_bundle(self):
        for window, buf in self.buffers.items():
            yield WindowedValue(buf, window.max_timestamp(), (window,))
        self.buffers = {}


class GroupIntoBatches(PTransform):
    """``(key, [values])`` batches of at most ``batch_size`` values of one
    key and window. Built on GroupByKey: batches come when the key's window
    fires (Beam's stateful version may emit full batches earlier;
    ``max_buffering_duration_secs`` is accepted and has no effect)."""

    def __init__(self, batch_size, max_buffering_duration_secs=None, clock=None):
        PTransform.__init__(self)
        if batch_size < 1:
            raise ValueError("batch_size must be a positive value")
        self.batch_size = int(batch_size)

    def expand(self, pcoll):
        n = self.batch_size

        def batches(kv):
            key, values = kv
            values = list(values)
            return [(key, values[i : i + n]) for i in range(0, len(values), n)]

        return pcoll | GroupByKey() | "Batch" >> FlatMap(batches)


class LogElements(PTransform):
    """Prints (or logs at ``level``) each element, optionally with its
    timestamp and window, and passes the elements on."""

    def __init__(self, label=None, prefix="", with_timestamp=False, with_window=False, level=None,
                 with_pane_info=False, use_epoch_time=False):
        PTransform.__init__(self, label)
        self.fn = _LogDoFn(prefix, with_timestamp, with_window, level)

    def expand(self, pcoll):
        return pcoll | ParDo(self.fn)


class _LogDoFn(DoFn):
    def __init__(self, prefix, with_timestamp, with_window, level):
        self.prefix = prefix
        self.with_timestamp = with_timestamp
        self.with_window = with_window
        self.level = level

    def process(self, element, timestamp=DoFn.TimestampParam, window=DoFn.WindowParam):
        text = self.prefix + str(element)
        if self.with_timestamp:
            text += ", timestamp=" + repr(float(timestamp))
        if self.with_window:
            text += ", window(start=%r, end=%r)" % (
                (None, None) if isinstance(window, GlobalWindow)
                else (float(window.start), float(window.end))
            )
        if self.level is None:
            print(text)
        else:
            logging.getLogger(__name__).log(self.level, text)
        yield element


class Tee(PTransform):
    """Applies each of ``consumers`` to the input and returns the input."""

    def __init__(self, *consumers):
        PTransform.__init__(self)
        self.consumers = consumers

    def expand(self, pcoll):
        for c in self.consumers:
            pcoll | c
        return pcoll


class WaitOn(PTransform):
    """The input, passed on only once every ``signals`` PCollection is
    complete (in the element's window)."""

    def __init__(self, *signals):
        PTransform.__init__(self)
        self.signals = signals

    def expand(self, pcoll):
        sides = [pvalue.AsList(s) for s in self.signals]
        return pcoll | "Wait" >> Map(lambda x, *done: x, *sides)
