"""``assert_that`` and matchers, as in ``apache_beam.testing.util``."""

import collections
import glob
import io
import math
import numbers
import tempfile
import typing

from oxbeam.pvalue import AsList
from oxbeam.transforms.core import Create, DoFn, Map, ParDo, WindowInto
from oxbeam.transforms.ptransform import PTransform
from oxbeam.window import GlobalWindows

__all__ = ["assert_that", "equal_to", "is_empty", "is_not_empty", "BeamAssertException",
           "row_namedtuple_equals_fn", "equal_to_per_window", "TestWindowedValue",
           "contains_in_any_order", "equal_to_approx", "open_shards"]


class BeamAssertException(AssertionError):
    """A pipeline assertion failed."""


def _remove(items, x):
    for i, y in enumerate(items):
        if y == x:
            del items[i]
            return True
    return False


class TestWindowedValue(typing.NamedTuple):
    """An element with its timestamp, windows and pane, as ``assert_that(...,
    reify_windows=True)`` passes them to the matcher."""

    value: typing.Any
    timestamp: typing.Any
    windows: list
    pane_info: typing.Any = None


def contains_in_any_order(iterable):
    """An object equal to any iterable with the same items, counted."""

    class InAnyOrder(object):
        def __init__(self, items):
            self._counter = collections.Counter(items)

        def __eq__(self, other):
            return self._counter == collections.Counter(other)

        def __hash__(self):
            return hash(frozenset(self._counter.items()))

        def __repr__(self):
            return "InAnyOrder(%s)" % self._counter

    return InAnyOrder(iterable)


class _EqualToPerWindowMatcher(object):
    def __init__(self, expected_window_to_elements):
        self._expected = expected_window_to_elements

    def __call__(self, actual):
        expected = {w: list(v) for w, v in self._expected.items()}
        for wv in actual:
            if not isinstance(wv, TestWindowedValue):
                raise BeamAssertException(
                    "Failed assert: Received element %s is not of type TestWindowedValue. Did "
                    "you forget to set reify_windows=True on the assertion?" % (wv,))
            w = wv.windows[0]
            if w not in expected:
                raise BeamAssertException(
                    "Failed assert: window %s not found in any expected windows %s"
                    % (w, list(expected)))
            try:
                expected[w].remove(wv.value)
            except ValueError:
                raise BeamAssertException("Failed assert: element %s not found in window %s:%s"
                                          % (wv.value, w, expected[w])) from None
        for w, rest in expected.items():
            if rest:
                raise BeamAssertException(
                    "Failed assert: unmatched elements %s in window %s" % (rest, w))


def equal_to_per_window(expected_window_to_elements):
    """Matches reified elements (``assert_that(..., reify_windows=True)``)
    with the expected elements of each window: ``{window: [elements]}``."""
    return _EqualToPerWindowMatcher(expected_window_to_elements)


def _is_named_tuple(x):
    return isinstance(x, tuple) and hasattr(x, "_fields") and hasattr(x, "_asdict")


def _fields_of(x):
    from oxbeam.pvalue import Row

    if isinstance(x, Row):
        return x.as_dict()
    if _is_named_tuple(x):
        return x._asdict()
    return None


def row_namedtuple_equals_fn(expected, actual, fallback_equals_fn=None):
    """Equality that takes a ``Row`` and a named tuple with the same fields
    and values as equal (Beam's default for :func:`equal_to`)."""
    if fallback_equals_fn is None:
        fallback_equals_fn = lambda e, a: e == a  # noqa: E731
    e, a = _fields_of(expected), _fields_of(actual)
    if e is None or a is None:
        return fallback_equals_fn(expected, actual)
    return len(e) == len(a) and all(
        k in a and row_namedtuple_equals_fn(v, a[k]) for k, v in e.items())


def equal_to(expected, equals_fn=None):
    """Matches a PCollection with exactly the elements of ``expected``, in any
    order (a ``Row`` equals a named tuple of the same fields)."""
    expected = list(expected)

    def _equal(actual):
        actual = list(actual)
        try:
            if sorted(expected) == sorted(actual):
                return
        except TypeError:
            pass
        unexpected = []
        missing = list(expected)
        for a in actual:
            if equals_fn is not None or _fields_of(a) is not None:
                eq = equals_fn or row_namedtuple_equals_fn
                hit = next((i for i, e in enumerate(missing) if eq(e, a)), None)
                if hit is None:
                    unexpected.append(a)
                else:
                    del missing[hit]
            elif not _remove(missing, a):
                unexpected.append(a)
        if unexpected or missing:
            msg = "Failed assert: %r == %r" % (expected, actual)
            if unexpected:
                msg += ", unexpected elements %r" % unexpected
            if missing:
                msg += ", missing elements %r" % missing
            raise BeamAssertException(msg)

    return _equal


def _close(expected, actual, rel_tol, abs_tol):
    """Numbers compare with ``math.isclose``, inside lists and tuples too."""
    if isinstance(expected, numbers.Real) and isinstance(actual, numbers.Real):
        return math.isclose(expected, actual, rel_tol=rel_tol, abs_tol=abs_tol)
    if isinstance(expected, (list, tuple)) and type(actual) is type(expected):
        return len(expected) == len(actual) and all(
            _close(e, a, rel_tol, abs_tol) for e, a in zip(expected, actual))
    return expected == actual


def equal_to_approx(expected, rel_tol=1e-09, abs_tol=0.0):
    """As :func:`equal_to`, with real numbers (also in lists and tuples)
    equal when ``math.isclose(expected, actual, rel_tol, abs_tol)``."""
    return equal_to(expected, equals_fn=lambda e, a: _close(e, a, rel_tol, abs_tol))


def open_shards(glob_pattern, mode="rt", encoding="utf-8"):
    """The files matching ``glob_pattern`` (e.g. a sink's
    ``out-*-of-*`` shards), concatenated, open for reading."""
    with tempfile.NamedTemporaryFile(delete=False) as joined:
        for shard in sorted(glob.glob(glob_pattern)):
            with open(shard, "rb") as f:
                joined.write(f.read())
    return io.open(joined.name, mode, encoding=None if "b" in mode else encoding)


def is_empty():
    def _empty(actual):
        actual = list(actual)
        if actual:
            raise BeamAssertException("Failed assert: [] == %r" % actual)

    return _empty


def is_not_empty():
    def _nonempty(actual):
        if not list(actual):
            raise BeamAssertException("Failed assert: pcol is empty")

    return _nonempty


class _ReifyTimestampWindow(DoFn):
    def process(self, element, timestamp=DoFn.TimestampParam, window=DoFn.WindowParam,
                pane_info=DoFn.PaneInfoParam):
        return [TestWindowedValue(element, timestamp, [window], pane_info)]


class _Check(object):
    def __init__(self, matcher):
        self.matcher = matcher

    def __call__(self, _, actual):
        self.matcher(actual)


class _AssertThat(PTransform):
    def __init__(self, matcher, use_global_window, reify_windows=False):
        PTransform.__init__(self)
        self.matcher = matcher
        self.use_global_window = use_global_window
        self.reify_windows = reify_windows

    def expand(self, pcoll):
        if self.reify_windows:
            pcoll = pcoll | "ReifyTimestampWindow" >> ParDo(_ReifyTimestampWindow())
        if self.use_global_window and not pcoll.windowing.is_default():
            pcoll = pcoll | "WindowInto" >> WindowInto(GlobalWindows())
        return (
            pcoll.pipeline
            | "DoOnce" >> Create([None])
            | "Match" >> Map(_Check(self.matcher), AsList(pcoll))
        )


def assert_that(actual, matcher, label="assert_that", reify_windows=False, use_global_window=True):
    """Checks, when the pipeline runs, that ``matcher(all elements)`` passes
    (with ``reify_windows``, each element as a :class:`TestWindowedValue`)."""
    if isinstance(matcher, _EqualToPerWindowMatcher):
        reify_windows = True
        use_global_window = True

    # As Beam's: a label in use gets a number (tests often assert twice).
    used = actual.pipeline.applied_labels
    if label in used:
        n = 2
        while "%s_%d" % (label, n) in used:
            n += 1
        label = "%s_%d" % (label, n)
    actual | label >> _AssertThat(matcher, use_global_window, reify_windows)
