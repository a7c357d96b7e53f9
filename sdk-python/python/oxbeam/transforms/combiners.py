"""Standard combiners, as in ``apache_beam.transforms.combiners``."""

import heapq

from oxbeam import _runtime, typehints
from oxbeam._runtime import batched as _batched
from oxbeam.transforms import core  # noqa: F401  (Beam's combiners.core)
from oxbeam.transforms.core import CombineFn, CombineGlobally, CombinePerKey, DoFn, Map
from oxbeam.transforms.ptransform import PTransform

__all__ = [
    "SingleInputTupleCombineFn",
    "Count",
    "Mean",
    "Top",
    "ToList",
    "ToDict",
    "ToSet",
    "Sample",
    "CountCombineFn",
    "MeanCombineFn",
    "TopCombineFn",
    "ToListCombineFn",
    "ToDictCombineFn",
    "ToSetCombineFn",
]


class CountCombineFn(CombineFn):
    """The number of inputs."""

    _oxbeam_fast = "count"

    def create_accumulator(self):
        return 0

    def add_input(self, accumulator, element):
        return accumulator + 1

    def add_inputs(self, accumulator, elements):
        return accumulator + len(list(elements))

    def merge_accumulators(self, accumulators):
        return sum(accumulators)

    def extract_output(self, accumulator):
        return accumulator

    def output_type(self):
        return int


@_batched(_runtime.pair_with_none_batch)
def _pair_with_none(x):
    return (x, None)


class Count(object):
    """Counts: ``Globally()``, ``PerKey()``, ``PerElement()``."""

    class Globally(CombineGlobally):
        def __init__(self):
            CombineGlobally.__init__(self, CountCombineFn())

    class PerKey(CombinePerKey):
        def __init__(self):
            CombinePerKey.__init__(self, CountCombineFn())

    class PerElement(PTransform):
        def expand(self, pcoll):
            return (
                pcoll
                | "PairWithVoid" >> Map(_pair_with_none).with_output_types(
                    typehints.KV[pcoll.element_type, typehints.Any]
                )
                | "CombinePerKey(CountCombineFn)" >> CombinePerKey(CountCombineFn())
            )


class MeanCombineFn(CombineFn):
    """The arithmetic mean (NaN of no inputs)."""

    def create_accumulator(self):
        return (0, 0)

    def add_input(self, acc, element):
        return (acc[0] + element, acc[1] + 1)

    def add_inputs(self, acc, elements):
        s, n = acc
        for e in elements:
            s += e
            n += 1
        return (s, n)

    def merge_accumulators(self, accumulators):
        s = n = 0
        for a, b in accumulators:
            s += a
            n += b
        return (s, n)

    def extract_output(self, acc):
        s, n = acc
        if n == 0:
            return float("NaN")
        return s / float(n)

    def output_type(self):
        return float


class Mean(object):
    """Means: ``Globally()``, ``PerKey()``."""

    class Globally(CombineGlobally):
        def __init__(self):
            CombineGlobally.__init__(self, MeanCombineFn())

    class PerKey(CombinePerKey):
        def __init__(self):
            CombinePerKey.__init__(self, MeanCombineFn())


class _Keyed(object):
    """Orders by ``key(element)``; ties keep insertion order out of it."""

    __slots__ = ("k", "v")

    def __init__(self, k, v):
        self.k = k
        self.v = v

    def __lt__(self, other):
        return self.k < other.k


class TopCombineFn(CombineFn):
    """The ``n`` largest inputs (by ``key``), largest first; ``reverse``
    gives the smallest, smallest first."""

    def __init__(self, n, key=None, reverse=False):
        self._n = n
        self._key = key
        self._reverse = reverse

    def _sort_key(self, e):
        k = self._key(e) if self._key is not None else e
        return k

    def create_accumulator(self):
        return []

    def add_input(self, acc, element):
        acc.append(element)
        if len(acc) > 2 * self._n + 16:
            acc[:] = self._top(acc)
        return acc

    def _top(self, items):
        if self._reverse:
            return heapq.nsmallest(self._n, items, key=self._sort_key)
        return heapq.nlargest(self._n, items, key=self._sort_key)

    def merge_accumulators(self, accumulators):
        merged = []
        for a in accumulators:
            merged.extend(a)
        return self._top(merged)

    def compact(self, acc):
        return self._top(acc)

    def extract_output(self, acc):
        return self._top(acc)


class Top(object):
    """The largest or smallest elements: ``Of``, ``Largest``, ``Smallest``,
    ``PerKey``, ``LargestPerKey``, ``SmallestPerKey``."""

    class Of(CombineGlobally):
        def __init__(self, n, key=None, reverse=False):
            CombineGlobally.__init__(self, TopCombineFn(n, key, reverse))

        def default_label(self):
            return "Top(%d)" % self.fn._n

    class PerKey(CombinePerKey):
        def __init__(self, n, key=None, reverse=False):
            CombinePerKey.__init__(self, TopCombineFn(n, key, reverse))

        def default_label(self):
            return "TopPerKey(%d)" % self.fn._n

    @staticmethod
    def Largest(n):
        return Top.Of(n)

    @staticmethod
    def Smallest(n):
        return Top.Of(n, reverse=True)

    @staticmethod
    def LargestPerKey(n):
        return Top.PerKey(n)

    @staticmethod
    def SmallestPerKey(n):
        return Top.PerKey(n, reverse=True)


class ToListCombineFn(CombineFn):
    """All inputs, as a list."""

    def create_accumulator(self):
        return []

    def add_input(self, acc, element):
        acc.append(element)
        return acc

    def merge_accumulators(self, accumulators):
        out = []
        for a in accumulators:
            out.extend(a)
        return out

    def extract_output(self, acc):
        return acc


class ToList(CombineGlobally):
    """One list of all elements."""

    def __init__(self):
        CombineGlobally.__init__(self, ToListCombineFn())


class ToDictCombineFn(CombineFn):
    """A dict of ``(key, value)`` inputs."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, element):
        k, v = element
        acc[k] = v
        return acc

    def merge_accumulators(self, accumulators):
        out = {}
        for a in accumulators:
            out.update(a)
        return out

    def extract_output(self, acc):
        return acc


class ToDict(CombineGlobally):
    """One dict of all ``(key, value)`` elements."""

    def __init__(self):
        CombineGlobally.__init__(self, ToDictCombineFn())


class ToSetCombineFn(CombineFn):
    """A set of the inputs."""

    def create_accumulator(self):
        return set()

    def add_input(self, acc, element):
        acc.add(element)
        return acc

    def merge_accumulators(self, accumulators):
        out = set()
        for a in accumulators:
            out |= a
        return out

    def extract_output(self, acc):
        return acc


class ToSet(CombineGlobally):
    """One set of all elements."""

    def __init__(self):
        CombineGlobally.__init__(self, ToSetCombineFn())


class Sample(object):
    """Uniform samples of ``n`` elements (all of them when there are fewer):
    ``FixedSizeGlobally(n)`` (one list), ``FixedSizePerKey(n)``
    (``(key, list)``)."""

    class FixedSizeGlobally(CombineGlobally):
        def __init__(self, n):
            CombineGlobally.__init__(self, SampleCombineFn(n))

        def default_label(self):
            return "FixedSizeGlobally(%d)" % self.fn._n

    class FixedSizePerKey(CombinePerKey):
        def __init__(self, n):
            CombinePerKey.__init__(self, SampleCombineFn(n))

        def default_label(self):
            return "FixedSizePerKey(%d)" % self.fn._n


def _priority(entry):
    return entry[0]


class SampleCombineFn(CombineFn):
    """Keeps the ``n`` inputs with the largest random priorities: a uniform
    sample that merges (each input gets its priority once)."""

    def __init__(self, n):
        CombineFn.__init__(self)
        if n < 0:
            raise ValueError("sample size must be non-negative, got %r" % (n,))
        self._n = n

    def create_accumulator(self):
        return []

    def _prune(self, entries):
        return heapq.nlargest(self._n, entries, key=_priority)

    def add_input(self, accumulator, element):
        import random

        accumulator.append((random.random(), element))
        if len(accumulator) > 2 * self._n + 16:
            accumulator[:] = self._prune(accumulator)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = []
        for a in accumulators:
            merged.extend(a)
        return self._prune(merged)

    def compact(self, accumulator):
        return self._prune(accumulator)

    def extract_output(self, accumulator):
        return [e for _, e in self._prune(accumulator)]


class TupleCombineFn(CombineFn):
    """Combines tuples position by position, one CombineFn (or callable such
    as ``sum``) per position; outputs a tuple of their outputs."""

    def __init__(self, *combiners, **kwargs):
        CombineFn.__init__(self)
        self._combiners = [CombineFn.maybe_from_callable(c) for c in combiners]

    def setup(self, *args, **kwargs):
        for c in self._combiners:
            c.setup(*args, **kwargs)

    def create_accumulator(self, *args, **kwargs):
        return [c.create_accumulator() for c in self._combiners]

    def add_input(self, accumulator, element, *args, **kwargs):
        return [c.add_input(a, e) for c, a, e in zip(self._combiners, accumulator, element)]

    def merge_accumulators(self, accumulators, *args, **kwargs):
        return [c.merge_accumulators(list(a)) for c, a in zip(self._combiners, zip(*accumulators))]

    def compact(self, accumulator, *args, **kwargs):
        return [c.compact(a) for c, a in zip(self._combiners, accumulator)]

    def extract_output(self, accumulator, *args, **kwargs):
        return tuple(c.extract_output(a) for c, a in zip(self._combiners, accumulator))

    def teardown(self, *args, **kwargs):
        for c in reversed(self._combiners):
            c.teardown(*args, **kwargs)


class SingleInputTupleCombineFn(TupleCombineFn):
    """Combines each input with every one of several CombineFns (or
    callables); outputs a tuple of their outputs."""

    def add_input(self, accumulator, element, *args, **kwargs):
        return [c.add_input(a, element) for c, a in zip(self._combiners, accumulator)]


class Latest(object):
    """The element with the latest timestamp: ``Globally()``, ``PerKey()``."""

    class Globally(PTransform):
        has_defaults = True

        def without_defaults(self):
            self.has_defaults = False
            return self

        def expand(self, pcoll):
            combine = CombineGlobally(LatestCombineFn())
            return (
                pcoll
                | "AddTimestamp" >> Map(_with_timestamp)
                | (combine if self.has_defaults else combine.without_defaults())
            )

    class PerKey(PTransform):
        def expand(self, pcoll):
            return (
                pcoll
                | "AddTimestamp" >> Map(_value_with_timestamp)
                | CombinePerKey(LatestCombineFn())
            )


def _with_timestamp(v, timestamp=DoFn.TimestampParam):
    return (v, timestamp)


def _value_with_timestamp(kv, timestamp=DoFn.TimestampParam):
    return (kv[0], (kv[1], timestamp))


class LatestCombineFn(CombineFn):
    """Keeps the ``(value, timestamp)`` with the latest timestamp."""

    def create_accumulator(self):
        return (None, None)

    def add_input(self, accumulator, element):
        return element if accumulator[1] is None or element[1] > accumulator[1] else accumulator

    def merge_accumulators(self, accumulators):
        best = (None, None)
        for a in accumulators:
            if a[1] is not None and (best[1] is None or a[1] > best[1]):
                best = a
        return best

    def extract_output(self, accumulator):
        return accumulator[0]
