"""Approximate statistics, as ``apache_beam.transforms.stats``:
``ApproximateUnique`` and ``ApproximateQuantiles`` (``Globally``/``PerKey``).

``ApproximateUnique`` is Beam's estimator: the ``size`` largest 64-bit
hashes of the elements' encodings (Beam's ``FastPrimitivesCoder`` bytes,
hashed with MD5 as Beam does without ``mmh3``) extrapolated over the hash
space, so it gives Beam's estimate for the same elements.

``ApproximateQuantiles`` keeps the (weighted) elements and picks the
quantiles with Beam's interpolation, so up to ``max_num_elements`` per
accumulator the result is exact and equals Beam's; beyond that, sorted
halves are collapsed (every other element, twice the weight), keeping
memory bounded as Beam's Munro-Paterson buffers do.
"""

import hashlib
import heapq
import math
import pickle
import struct

from oxbeam.coders import _varint as _varint_bytes
from oxbeam.transforms.core import CombineFn, CombineGlobally, CombinePerKey
from oxbeam.transforms.ptransform import PTransform

__all__ = ["ApproximateUnique", "ApproximateQuantiles"]


def _varint(n, out):
    out += _varint_bytes(n)


def _fast_primitives(v, out, nested=False):
    """Beam Python's ``FastPrimitivesCoder`` encoding of ``v`` (pickle for
    types it does not encode directly)."""
    t = type(v)
    if v is None:
        out.append(0)
    elif t is int and -(1 << 63) <= v < (1 << 63):
        out.append(1)
        _varint(v, out)
    elif t is float:
        out.append(2)
        out += struct.pack(">d", v)
    elif t is bytes or t is str:
        b = v if t is bytes else v.encode("utf-8")
        out.append(3 if t is bytes else 4)
        if nested:
            _varint(len(b), out)
        out += b
    elif t is list or t is tuple:
        out.append(5 if t is list else 6)
        _varint(len(v), out)
        for e in v:
            _fast_primitives(e, out, True)
    elif t is bool:
        out.append(9)
        out.append(1 if v else 0)
    else:
        b = pickle.dumps(v)
        out.append(0xFF)
        if nested:
            _varint(len(b), out)
        out += b


def _hash(element):
    out = bytearray()
    _fast_primitives(element, out)
    return int(hashlib.md5(bytes(out)).hexdigest()[:16], 16)


class _LargestUnique(object):
    """The ``sample_size`` largest distinct hashes seen."""

    _HASH_SPACE_SIZE = 2.0 ** 64

    def __init__(self, sample_size):
        self._sample_size = sample_size
        self._min_hash = 2.0 ** 64
        self._sample_heap = []
        self._sample_set = set()

    def add(self, h):
        if len(self._sample_heap) >= self._sample_size and h < self._min_hash:
            return
        if h not in self._sample_set:
            self._sample_set.add(h)
            heapq.heappush(self._sample_heap, h)
            if len(self._sample_heap) > self._sample_size:
                self._sample_set.remove(heapq.heappop(self._sample_heap))
                self._min_hash = self._sample_heap[0]
            elif h < self._min_hash:
                self._min_hash = h

    def get_estimate(self):
        if len(self._sample_heap) < self._sample_size:
            return len(self._sample_heap)
        space = self._HASH_SPACE_SIZE - 1.0 * self._min_hash
        est = (math.log1p(-self._sample_size / space) / math.log1p(-1 / space)
               * self._HASH_SPACE_SIZE / space)
        return round(est)


class ApproximateUniqueCombineFn(CombineFn):
    """Estimates the number of distinct elements."""

    def __init__(self, sample_size, coder=None):
        self._sample_size = sample_size

    def create_accumulator(self, *args, **kwargs):
        return _LargestUnique(self._sample_size)

    def add_input(self, accumulator, element, *args, **kwargs):
        accumulator.add(_hash(element))
        return accumulator

    def merge_accumulators(self, accumulators, *args, **kwargs):
        merged = self.create_accumulator()
        for a in accumulators:
            for h in a._sample_heap:
                merged.add(h)
        return merged

    def extract_output(self, accumulator, *args, **kwargs):
        return accumulator.get_estimate()


class ApproximateUnique(object):
    """Estimated number of distinct elements: ``Globally(size=|error=)`` or
    ``PerKey(size=|error=)`` (``size`` ≥ 16; ``error`` in [0.01, 0.5])."""

    @staticmethod
    def parse_input_params(size=None, error=None):
        if size is not None and error is not None:
            raise ValueError("Either size or error should be set. "
                             "Received {size = %s, error = %s}." % (size, error))
        if size is None and error is None:
            raise ValueError("Either size or error should be set. Received {}.")
        if size is not None:
            if not isinstance(size, int) or size < 16:
                raise ValueError(
                    "ApproximateUnique needs a size >= 16 for an error <= 0.50. In general, "
                    "the estimation error is about 2 / sqrt(sample_size). "
                    "Received {size = %s}." % size)
            return size
        if error < 0.01 or error > 0.5:
            raise ValueError("ApproximateUnique needs an estimation error between 0.01 and "
                             "0.50. Received {error = %s}." % error)
        return math.ceil(4.0 / math.pow(error, 2.0))

    class Globally(PTransform):
        def __init__(self, size=None, error=None):
            PTransform.__init__(self)
            self._sample_size = ApproximateUnique.parse_input_params(size, error)

        def expand(self, pcoll):
            return pcoll | "CountGlobalUniqueValues" >> CombineGlobally(
                ApproximateUniqueCombineFn(self._sample_size))

    class PerKey(PTransform):
        def __init__(self, size=None, error=None):
            PTransform.__init__(self)
            self._sample_size = ApproximateUnique.parse_input_params(size, error)

        def expand(self, pcoll):
            return pcoll | "CountPerKeyUniqueValues" >> CombinePerKey(
                ApproximateUniqueCombineFn(self._sample_size))


class _Quantiles(object):
    """Accumulator: ``(element, weight)`` pairs, collapsed past ``cap``."""

    __slots__ = ("items",)

    def __init__(self):
        self.items = []


class ApproximateQuantilesCombineFn(CombineFn):
    """``num_quantiles`` elements: the minimum, evenly spaced (by weight)
    intermediate elements, and the maximum."""

    _MAX_NUM_ELEMENTS = 1000000

    def __init__(self, num_quantiles, key=None, reverse=False, weighted=False,
                 input_batched=False, max_num_elements=None):
        if num_quantiles < 2:
            raise ValueError("Quantiles must have at least two elements (the min and max); "
                             "got %r" % num_quantiles)
        self._num_quantiles = num_quantiles
        self._key = key
        self._reverse = reverse
        self._weighted = weighted
        self._input_batched = input_batched
        self._cap = max_num_elements or self._MAX_NUM_ELEMENTS

    def _sort_key(self, item):
        return self._key(item[0]) if self._key else item[0]

    def _collapse(self, acc):
        if len(acc.items) <= self._cap:
            return
        acc.items.sort(key=self._sort_key, reverse=self._reverse)
        # Pairs of neighbours become one element of their total weight.
        items = acc.items
        acc.items = [(items[i][0], items[i][1] + (items[i + 1][1] if i + 1 < len(items) else 0))
                     for i in range(0, len(items), 2)]

    def create_accumulator(self, *args, **kwargs):
        return _Quantiles()

    def add_input(self, accumulator, element, *args, **kwargs):
        if self._input_batched:
            if self._weighted:
                values, weights = element
                accumulator.items.extend(zip(values, weights))
            else:
                accumulator.items.extend((v, 1) for v in element)
        elif self._weighted:
            accumulator.items.append((element[0], element[1]))
        else:
            accumulator.items.append((element, 1))
        self._collapse(accumulator)
        return accumulator

    def merge_accumulators(self, accumulators, *args, **kwargs):
        merged = self.create_accumulator()
        for a in accumulators:
            merged.items.extend(a.items)
        self._collapse(merged)
        return merged

    def extract_output(self, accumulator, *args, **kwargs):
        items = sorted((i for i in accumulator.items if i[1] > 0 or not self._weighted),
                       key=self._sort_key, reverse=self._reverse)
        if not items:
            return []
        total = sum(w for _, w in items)
        n = self._num_quantiles
        step = total / (n - 1)
        offset = (total - 1) / (n - 1)
        count = n - 2
        if len({w for _, w in items}) == 1:
            # Equal weights: indices evenly spread over the sorted elements.
            w = items[0][1]
            max_idx = len(items) - 1
            mids = [items[min(int((j * step + offset) / w), max_idx)][0] for j in range(count)]
        else:
            mids = []
            it = iter(items)
            current = next(it)
            acc = current[1]
            for j in range(count):
                target = j * step + offset
                try:
                    while acc <= target:
                        current = next(it)
                        acc += current[1]
                except StopIteration:
                    pass
                mids.append(current[0])
        return [items[0][0]] + mids + [items[-1][0]]


class ApproximateQuantiles(object):
    """``Globally(num_quantiles, key=None, reverse=False, weighted=False,
    input_batched=False)`` and ``PerKey(...)``: the minimum, ``num_quantiles
    - 2`` evenly spaced elements and the maximum, as a list."""

    class Globally(PTransform):
        def __init__(self, num_quantiles, key=None, reverse=False, weighted=False,
                     input_batched=False):
            PTransform.__init__(self)
            self._fn = ApproximateQuantilesCombineFn(num_quantiles, key, reverse, weighted,
                                                     input_batched)

        def expand(self, pcoll):
            return pcoll | "ApproximateQuantilesCombineGlobally" >> CombineGlobally(self._fn)

    class PerKey(PTransform):
        def __init__(self, num_quantiles, key=None, reverse=False, weighted=False,
                     input_batched=False):
            PTransform.__init__(self)
            self._fn = ApproximateQuantilesCombineFn(num_quantiles, key, reverse, weighted,
                                                     input_batched)

        def expand(self, pcoll):
            return pcoll | "ApproximateQuantilesCombinePerKey" >> CombinePerKey(self._fn)
