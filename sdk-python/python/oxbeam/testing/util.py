"""``assert_that`` and matchers, as in ``apache_beam.testing.util``."""

from oxbeam.pvalue import AsList
from oxbeam.transforms.core import Create, Map, WindowInto
from oxbeam.transforms.ptransform import PTransform
from oxbeam.window import GlobalWindows

__all__ = ["assert_that", "equal_to", "is_empty", "is_not_empty", "BeamAssertException",
           "row_namedtuple_equals_fn"]


class BeamAssertException(AssertionError):
    """A pipeline assertion failed."""


def _remove(items, x):
    for i, y in enumerate(items):
        if y == x:
            del items[i]
            return True
    return False


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


class _Check(object):
    def __init__(self, matcher):
        self.matcher = matcher

    def __call__(self, _, actual):
        self.matcher(actual)


class _AssertThat(PTransform):
    def __init__(self, matcher, use_global_window):
        PTransform.__init__(self)
        self.matcher = matcher
        self.use_global_window = use_global_window

    def expand(self, pcoll):
        if self.use_global_window and not pcoll.windowing.is_default():
            pcoll = pcoll | "WindowInto" >> WindowInto(GlobalWindows())
        return (
            pcoll.pipeline
            | "DoOnce" >> Create([None])
            | "Match" >> Map(_Check(self.matcher), AsList(pcoll))
        )


def assert_that(actual, matcher, label="assert_that", reify_windows=False, use_global_window=True):
    """Checks, when the pipeline runs, that ``matcher(all elements)`` passes."""
    if reify_windows:
        raise NotImplementedError("assert_that(reify_windows=True)")
    # As Beam's: a label in use gets a number (tests often assert twice).
    used = actual.pipeline.applied_labels
    if label in used:
        n = 2
        while "%s_%d" % (label, n) in used:
            n += 1
        label = "%s_%d" % (label, n)
    actual | label >> _AssertThat(matcher, use_global_window)
