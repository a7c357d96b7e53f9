"""Pipelines run on both Beam's DirectRunner and Oxbeam. Each builder takes
a Pipeline, applies transforms, and asserts its exact output with
assert_that / equal_to. Module-level functions only: harness processes
unpickle them by reference (this directory is on their PYTHONPATH)."""

import os
import tempfile

import apache_beam as beam
from apache_beam import window
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.restriction_trackers import OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue

WORDS = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'the', 'lazy', 'dog', 'the', 'end']


def counts(words):
    out = {}
    for w in words:
        out[w] = out.get(w, 0) + 1
    return sorted(out.items())


def map_(p):
    assert_that(p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2), equal_to([2, 4, 6]))


def flat_map(p):
    assert_that(p | beam.Create(['a b', 'c']) | beam.FlatMap(str.split), equal_to(['a', 'b', 'c']))


def filter_(p):
    assert_that(p | beam.Create(range(10)) | beam.Filter(lambda x: x % 3 == 0), equal_to([0, 3, 6, 9]))


class Bundled(beam.DoFn):
    def start_bundle(self):
        self.n = 0

    def process(self, x):
        self.n += 1
        yield x + 100

    def finish_bundle(self):
        pass


def dofn_lifecycle(p):
    assert_that(p | beam.Create([1, 2]) | beam.ParDo(Bundled()), equal_to([101, 102]))


class EvenOdd(beam.DoFn):
    def process(self, x):
        yield beam.pvalue.TaggedOutput('even' if x % 2 == 0 else 'odd', x)


def tagged_outputs(p):
    r = p | beam.Create(range(6)) | beam.ParDo(EvenOdd()).with_outputs('even', 'odd')
    assert_that(r.even, equal_to([0, 2, 4]), label='Even')
    assert_that(r.odd, equal_to([1, 3, 5]), label='Odd')


def group_by_key(p):
    r = (p | beam.Create([('a', 1), ('b', 2), ('a', 3)]) | beam.GroupByKey()
         | beam.MapTuple(lambda k, vs: (k, sorted(vs))))
    assert_that(r, equal_to([('a', [1, 3]), ('b', [2])]))


def combine_per_key(p):
    r = p | beam.Create([('a', 1), ('b', 2), ('a', 3)]) | beam.CombinePerKey(sum)
    assert_that(r, equal_to([('a', 4), ('b', 2)]))


def combine_globally(p):
    assert_that(p | beam.Create(range(101)) | beam.CombineGlobally(sum), equal_to([5050]))


def combine_globally_empty(p):
    assert_that(p | beam.Create([]) | beam.CombineGlobally(sum), equal_to([0]))


def mean_globally(p):
    assert_that(p | beam.Create([1, 2, 3, 4]) | beam.combiners.Mean.Globally(), equal_to([2.5]))


def mean_per_key(p):
    r = p | beam.Create([('a', 1), ('a', 2), ('b', 5)]) | beam.combiners.Mean.PerKey()
    assert_that(r, equal_to([('a', 1.5), ('b', 5.0)]))


def count_per_element(p):
    assert_that(p | beam.Create(WORDS) | beam.combiners.Count.PerElement(), equal_to(counts(WORDS)))


def count_globally(p):
    assert_that(p | beam.Create(WORDS) | beam.combiners.Count.Globally(), equal_to([len(WORDS)]))


def count_per_key(p):
    r = p | beam.Create([('a', 1), ('a', 2), ('b', 5)]) | beam.combiners.Count.PerKey()
    assert_that(r, equal_to([('a', 2), ('b', 1)]))


def distinct(p):
    assert_that(p | beam.Create(WORDS) | beam.Distinct(), equal_to(sorted(set(WORDS))))


def co_group_by_key(p):
    emails = p | 'E' >> beam.Create([('amy', 'a@x'), ('bob', 'b@x'), ('amy', 'a2@x')])
    phones = p | 'P' >> beam.Create([('amy', '111'), ('carl', '333')])
    r = ({'emails': emails, 'phones': phones} | beam.CoGroupByKey()
         | beam.MapTuple(lambda k, v: (k, sorted(v['emails']), sorted(v['phones']))))
    assert_that(r, equal_to([('amy', ['a2@x', 'a@x'], ['111']), ('bob', ['b@x'], []),
                             ('carl', [], ['333'])]))


def flatten(p):
    a = p | 'A' >> beam.Create([1, 2])
    b = p | 'B' >> beam.Create([3])
    c = p | 'C' >> beam.Create(['x'])
    assert_that((a, b, c) | beam.Flatten(), equal_to([1, 2, 3, 'x']))


def flatten_then_group(p):
    a = p | 'A' >> beam.Create([('k', 1)])
    b = p | 'B' >> beam.Create([('k', 2)]) | beam.Map(lambda kv: kv)
    r = (a, b) | beam.Flatten() | beam.GroupByKey() | beam.MapTuple(lambda k, v: (k, sorted(v)))
    assert_that(r, equal_to([('k', [1, 2])]))


def partition(p):
    parts = p | beam.Create(range(10)) | beam.Partition(lambda x, n: x % n, 3)
    assert_that(parts[0], equal_to([0, 3, 6, 9]), label='P0')
    assert_that(parts[2], equal_to([2, 5, 8]), label='P2')


def side_singleton(p):
    total = p | 'Total' >> beam.Create([10])
    r = p | beam.Create([1, 2]) | beam.Map(lambda x, t: x + t, beam.pvalue.AsSingleton(total))
    assert_that(r, equal_to([11, 12]))


def side_list(p):
    side = p | 'Side' >> beam.Create([1, 2, 3])
    r = p | beam.Create(['a']) | beam.Map(lambda x, s: (x, sorted(s)), beam.pvalue.AsList(side))
    assert_that(r, equal_to([('a', [1, 2, 3])]))


def side_iter(p):
    side = p | 'Side' >> beam.Create([1, 2, 3])
    r = p | beam.Create([10]) | beam.Map(lambda x, s: x + sum(s), beam.pvalue.AsIter(side))
    assert_that(r, equal_to([16]))


def side_dict(p):
    side = p | 'Side' >> beam.Create([('a', 1), ('b', 2)])
    r = p | beam.Create(['a', 'b']) | beam.Map(lambda x, d: d[x], beam.pvalue.AsDict(side))
    assert_that(r, equal_to([1, 2]))


def side_multimap(p):
    side = p | 'Side' >> beam.Create([('a', 1), ('a', 2)])
    r = p | beam.Create(['a', 'z']) | beam.Map(lambda x, m: (x, sorted(m[x])), beam.pvalue.AsMultiMap(side))
    assert_that(r, equal_to([('a', [1, 2]), ('z', [])]))


def side_computed(p):
    # The side input is the result of a combine, so it waits for a shuffle.
    mean = p | 'Nums' >> beam.Create([1, 2, 3, 6]) | beam.combiners.Mean.Globally()
    r = p | beam.Create([1, 6]) | beam.Filter(lambda x, m: x > m, beam.pvalue.AsSingleton(mean))
    assert_that(r, equal_to([6]))


def reshuffle(p):
    assert_that(p | beam.Create(range(20)) | beam.Reshuffle() | beam.Map(lambda x: x + 1),
                equal_to(list(range(1, 21))))


def grouped_values_in_input_order(p):
    # Beam's own tests compare grouped values as lists: the runner's
    # Reshuffle (in Create) and GroupByKey keep the input's order.
    assert_that(p | beam.Create([(1, 1), (1, 2), (1, 3), (1, 4), (2, 5), (1, 6)])
                | beam.GroupByKey(),
                equal_to([(1, [1, 2, 3, 4, 6]), (2, [5])]))


def reshuffle_keeps_metadata(p):
    """Reshuffle keeps each element's timestamp, window and pane."""
    from apache_beam.testing.util import TestWindowedValue
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp
    from apache_beam.utils.windowed_value import PaneInfo, PaneInfoTiming, WindowedValue

    g = [GlobalWindow()]
    on_time = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)
    late = PaneInfo(False, False, PaneInfoTiming.LATE, 2, 1)
    unknown = PaneInfo(True, True, PaneInfoTiming.UNKNOWN, 0, 0)
    values = [('x', MIN_TIMESTAMP, unknown), ('y', Timestamp(5), on_time),
              ('z', Timestamp(41), late)]
    out = (p | beam.Create([WindowedValue(v, t, g, pane) for v, t, pane in values])
           | beam.Reshuffle())
    assert_that(out, equal_to([TestWindowedValue(v, t, g, pane) for v, t, pane in values]),
                reify_windows=True)


def reshuffle_before_2_65(p):
    """With --update_compatibility_version=2.64.0 (test_pipelines runs it so),
    Beam Python's Reshuffle expansion of that version runs: timestamps and
    windows kept, panes not."""
    from apache_beam.testing.util import TestWindowedValue
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import Timestamp
    from apache_beam.utils.windowed_value import (PANE_INFO_UNKNOWN, PaneInfo, PaneInfoTiming,
                                                  WindowedValue)

    g = [GlobalWindow()]
    late = PaneInfo(False, False, PaneInfoTiming.LATE, 2, 1)
    on_time = PaneInfo(True, True, PaneInfoTiming.ON_TIME, 0, 0)
    values = [('y', Timestamp(5), on_time), ('z', Timestamp(41), late)]
    out = (p | beam.Create([WindowedValue(v, t, g, pane) for v, t, pane in values])
           | beam.Reshuffle())
    assert_that(out, equal_to([TestWindowedValue(v, t, g, PANE_INFO_UNKNOWN)
                               for v, t, _ in values]), reify_windows=True)


def keys_values_swap(p):
    kvs = p | beam.Create([('a', 1), ('b', 2)])
    assert_that(kvs | beam.Keys(), equal_to(['a', 'b']), label='Keys')
    assert_that(kvs | beam.Values(), equal_to([1, 2]), label='Values')
    assert_that(kvs | beam.KvSwap(), equal_to([(1, 'a'), (2, 'b')]), label='Swap')


def top_largest(p):
    assert_that(p | beam.Create([5, 1, 9, 3, 7]) | beam.combiners.Top.Largest(2), equal_to([[9, 7]]))


def to_list(p):
    r = p | beam.Create([3, 1, 2]) | beam.combiners.ToList() | beam.Map(sorted)
    assert_that(r, equal_to([[1, 2, 3]]))


def to_dict(p):
    r = p | beam.Create([('a', 1), ('b', 2)]) | beam.combiners.ToDict()
    assert_that(r, equal_to([{'a': 1, 'b': 2}]))


def with_keys(p):
    assert_that(p | beam.Create(['ab', 'c']) | beam.WithKeys(len), equal_to([(2, 'ab'), (1, 'c')]))


def map_tuple(p):
    r = p | beam.Create([(1, 2), (3, 4)]) | beam.MapTuple(lambda a, b: a * b)
    assert_that(r, equal_to([2, 12]))


def unicode_and_bytes(p):
    assert_that(p | 'S' >> beam.Create(['héllo', '日本', '']) | 'U' >> beam.Map(str.upper),
                equal_to(['HÉLLO', '日本', '']), label='Str')
    assert_that(p | 'B' >> beam.Create([b'\x00\xff', b'']) | 'L' >> beam.Map(len),
                equal_to([2, 0]), label='Bytes')


def floats_and_none(p):
    r = p | beam.Create([1.5, -0.25, None]) | beam.Map(lambda x: x if x is None else x * 2)
    assert_that(r, equal_to([3.0, -0.5, None]))


class Point(object):
    """A type only Python knows: pickled, opaque (length-prefixed) to the runner."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, o):
        return (self.x, self.y) == (o.x, o.y)

    def __hash__(self):
        return hash((self.x, self.y))

    def __getstate__(self):
        return {'x': self.x, 'y': self.y}

    def __setstate__(self, state):
        self.x, self.y = state['x'], state['y']

    def __repr__(self):
        return 'Point(%d, %d)' % (self.x, self.y)


def opaque_keys(p):
    r = (p | beam.Create([(Point(1, 2), 1), (Point(1, 2), 2), (Point(0, 0), 5)])
         | beam.CombinePerKey(sum))
    assert_that(r, equal_to([(Point(1, 2), 3), (Point(0, 0), 5)]))


def tuple_keys(p):
    r = p | beam.Create([(('a', 1), 'x'), (('a', 1), 'y')]) | beam.GroupByKey() | beam.MapTuple(
        lambda k, v: (k, sorted(v)))
    assert_that(r, equal_to([(('a', 1), ['x', 'y'])]))


def empty(p):
    assert_that(p | beam.Create([]) | beam.Map(lambda x: x), equal_to([]))


def stamped(p, items, label='Create'):
    return (p | label >> beam.Create(items)
            | 'Stamp' + label >> beam.Map(lambda x: TimestampedValue(x, x[1])))


def fixed_windows(p):
    r = (stamped(p, [('a', 1), ('a', 5), ('a', 12), ('b', 14)])
         | beam.WindowInto(window.FixedWindows(10))
         | beam.Map(lambda kv: (kv[0], 1)) | beam.CombinePerKey(sum)
         | beam.ParDo(WithWindow()))
    assert_that(r, equal_to([('a', 2, 0, 10), ('a', 1, 10, 20), ('b', 1, 10, 20)]))


class WithWindow(beam.DoFn):
    def process(self, kv, w=beam.DoFn.WindowParam):
        yield kv + (int(w.start), int(w.end))


def sliding_windows(p):
    r = (stamped(p, [('a', 1), ('a', 7)])
         | beam.WindowInto(window.SlidingWindows(10, 5))
         | beam.Map(lambda kv: (kv[0], 1)) | beam.CombinePerKey(sum)
         | beam.ParDo(WithWindow()))
    assert_that(r, equal_to([('a', 1, -5, 5), ('a', 2, 0, 10), ('a', 1, 5, 15)]))


def session_windows(p):
    r = (stamped(p, [('a', 1), ('a', 3), ('a', 20), ('b', 2)])
         | beam.WindowInto(window.Sessions(5))
         | beam.GroupByKey()
         | beam.MapTuple(lambda k, vs: (k, sorted(vs)))
         | beam.ParDo(WithWindow()))
    assert_that(r, equal_to([('a', [1, 3], 1, 8), ('a', [20], 20, 25), ('b', [2], 2, 7)]))


def session_to_list(p):
    # Lifted over merging windows, one accumulator per element merged in
    # order: the lists keep the input's order (Beam's unlifted
    # CombineValuesDoFn adds values into three accumulators by turns, which
    # would give [1, 4, 2, 3]).
    r = (stamped(p, [('a', 1), ('a', 2), ('a', 3), ('a', 4), ('a', 10), ('a', 11)])
         | beam.WindowInto(window.Sessions(2))
         | beam.Map(lambda kv: kv[1])
         | beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults())
    assert_that(r, equal_to([[1, 2, 3, 4], [10, 11]]))


def multi_fired_side_input(p):
    # A side input whose window fired more than once holds every pane (as
    # Beam's sideinputs_test expects of runners): here an early pane with
    # the sum and the on-time pane, empty in DISCARDING mode, with 0.
    side = (stamped(p, [('k', 1), ('k', 2)], 'S')
            | 'WS' >> beam.WindowInto(
                window.FixedWindows(10),
                trigger=beam.transforms.trigger.AfterWatermark(
                    early=beam.transforms.trigger.AfterCount(1)),
                accumulation_mode=beam.transforms.trigger.AccumulationMode.DISCARDING)
            | beam.CombinePerKey(sum)
            | beam.Values())
    main = stamped(p, [('m', 5)], 'M') | 'WM' >> beam.WindowInto(window.FixedWindows(10))
    r = main | beam.Map(lambda kv, s: (kv[1], sorted(s)), beam.pvalue.AsList(side))
    assert_that(r, equal_to([(5, [0, 3])]))


def window_then_global(p):
    r = (stamped(p, [('a', 1), ('a', 15)])
         | 'Fixed' >> beam.WindowInto(window.FixedWindows(10))
         | 'Global' >> beam.WindowInto(window.GlobalWindows())
         | beam.Map(lambda kv: (kv[0], 1)) | beam.CombinePerKey(sum))
    assert_that(r, equal_to([('a', 2)]))


def windowed_side_input(p):
    side = stamped(p, [('s', 1), ('s', 11)], 'S') | 'WS' >> beam.WindowInto(window.FixedWindows(10))
    main = stamped(p, [('m', 2), ('m', 12)], 'M') | 'WM' >> beam.WindowInto(window.FixedWindows(10))
    r = main | beam.Map(lambda kv, s: (kv[1], sorted(x[1] for x in s)), beam.pvalue.AsList(side))
    assert_that(r, equal_to([(2, [1]), (12, [11])]))


def timestamps_survive(p):
    r = stamped(p, [('a', 3)]) | beam.Map(lambda kv, ts=beam.DoFn.TimestampParam: int(ts))
    assert_that(r, equal_to([3]))


# Files the pipelines read and write live under one directory removed when the
# test process exits (the pipelines run after the functions that build them return).
_SCRATCH = tempfile.TemporaryDirectory(prefix='oxbeam-pytest-')


def _scratch_dir():
    return tempfile.mkdtemp(dir=_SCRATCH.name)


def _text_file(lines):
    d = _scratch_dir()
    path = os.path.join(d, 'input.txt')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


TEXT = ['%d %s' % (i, w) for i, w in enumerate(WORDS * 30)]


def read_from_text(p):
    path = _text_file(TEXT)
    assert_that(p | beam.io.ReadFromText(path), equal_to(TEXT))


def read_text_wordcount(p):
    path = _text_file(TEXT)
    r = (p | beam.io.ReadFromText(path) | beam.Map(lambda l: l.split()[1])
         | beam.combiners.Count.PerElement())
    assert_that(r, equal_to([(w, n * 30) for w, n in counts(WORDS)]))


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()


def write_then_read_text(p):
    # WriteToText outputs the names of the files it wrote (how many is the
    # runner's choice); their lines are exactly the input.
    d = _scratch_dir()
    written = p | beam.Create(['x', 'y', 'z']) | beam.io.WriteToText(os.path.join(d, 'out'))
    assert_that(written | beam.FlatMap(_lines), equal_to(['x', 'y', 'z']))


class CountTo(beam.DoFn, RestrictionProvider):
    """A user splittable DoFn: emits 0..n-1 for each n, over an OffsetRange."""

    def initial_restriction(self, n):
        return OffsetRange(0, n)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, n, restriction):
        return restriction.size()

    def process(self, n, tracker=beam.DoFn.RestrictionParam()):
        pos = tracker.current_restriction().start
        while tracker.try_claim(pos):
            yield (n, pos)
            pos += 1


def splittable_dofn(p):
    r = p | beam.Create([3, 1]) | beam.ParDo(CountTo())
    assert_that(r, equal_to([(3, 0), (3, 1), (3, 2), (1, 0)]))


class CountFrom(CountTo):
    """CountTo shifted by a side input: Beam Python reads the DoFn's side
    inputs in every component of the splittable DoFn (pair with
    restriction, split and size, process), each under its own transform."""

    def process(self, n, base, tracker=beam.DoFn.RestrictionParam()):
        pos = tracker.current_restriction().start
        while tracker.try_claim(pos):
            yield (n, base + pos)
            pos += 1


def splittable_dofn_with_side_input(p):
    base = p | 'Base' >> beam.Create([100])
    r = p | beam.Create([3, 1]) | beam.ParDo(CountFrom(), beam.pvalue.AsSingleton(base))
    assert_that(r, equal_to([(3, 100), (3, 101), (3, 102), (1, 100)]))


class Counted(beam.DoFn):
    def __init__(self):
        self.seen = Metrics.counter('oxbeam', 'seen')
        self.sizes = Metrics.distribution('oxbeam', 'sizes')
        self.parities = Metrics.string_set('oxbeam', 'parities')
        self.paths = Metrics.bounded_trie('oxbeam', 'paths')

    def process(self, x):
        self.seen.inc()
        self.sizes.update(x)
        self.parities.add('odd' if x % 2 else 'even')
        self.paths.add(('n', 'small' if x < 10 else 'large', str(x)))
        yield x


def with_metrics(p):
    assert_that(p | beam.Create([1, 5, 10]) | beam.ParDo(Counted()), equal_to([1, 5, 10]))


def larger_input(p):
    r = (p | beam.Create(range(20000)) | beam.Map(lambda x: (x % 7, x))
         | beam.CombinePerKey(sum))
    assert_that(r, equal_to([(k, sum(x for x in range(20000) if x % 7 == k)) for k in range(7)]))


def chained_groups(p):
    r = (p | beam.Create(WORDS) | beam.Map(lambda w: (w, 1)) | 'G1' >> beam.GroupByKey()
         | beam.MapTuple(lambda w, ones: (len(ones), w)) | 'G2' >> beam.GroupByKey()
         | beam.MapTuple(lambda n, ws: (n, sorted(ws))))
    assert_that(r, equal_to([(3, ['the']), (1, sorted(set(WORDS) - {'the'}))]))


def regex_and_strings(p):
    r = p | beam.Create(['a1b22', 'c333']) | beam.Regex.find_all(r'\d+')
    assert_that(r, equal_to([['1', '22'], ['333']]))


def schema_group_by(p):
    # beam.Row fields of no declared type are Beam Python's `pythonsdk_any`
    # logical type: pickled inside the row, so the row is opaque to runners.
    rows = p | beam.Create([('a', 1, 'x'), ('b', 2, 'y'), ('a', 3, 'z')]) | beam.Map(
        lambda t: beam.Row(key=t[0], value=t[1], sign=t[2]))
    r = (rows | beam.GroupBy('key').aggregate_field('value', sum, 'total')
         | beam.Map(lambda row: (row.key, row.total)))
    assert_that(r, equal_to([('a', 4), ('b', 2)]))


ALL = {f.__name__.rstrip('_'): f for f in [
    map_, flat_map, filter_, dofn_lifecycle, tagged_outputs, group_by_key, combine_per_key,
    combine_globally, combine_globally_empty, mean_globally, mean_per_key, count_per_element,
    count_globally, count_per_key, distinct, co_group_by_key, flatten, flatten_then_group,
    partition, side_singleton, side_list, side_iter, side_dict, side_multimap, side_computed,
    reshuffle, grouped_values_in_input_order, reshuffle_keeps_metadata, keys_values_swap, top_largest, to_list, to_dict, with_keys, map_tuple,
    unicode_and_bytes, floats_and_none, opaque_keys, tuple_keys, empty, fixed_windows,
    sliding_windows, session_windows, session_to_list, multi_fired_side_input, window_then_global, windowed_side_input,
    timestamps_survive, read_from_text, read_text_wordcount, write_then_read_text,
    splittable_dofn, splittable_dofn_with_side_input, with_metrics, larger_input, chained_groups, regex_and_strings,
    schema_group_by,
]}
