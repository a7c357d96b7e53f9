"""Create, Map, FlatMap, Filter, ParDo/DoFn: same output on Beam and Oxbeam."""

import pytest


def test_create_ints(B):
    with B.pipeline() as p:
        B.assert_that(p | B.beam.Create([3, 1, 2]), B.equal_to([1, 2, 3]))


def test_create_mixed_types(B):
    values = [1, "a", b"b", 2.5, True, None, (1, 2), [3, 4], {"k": 1}, 2 ** 70]
    with B.pipeline() as p:
        B.assert_that(p | B.beam.Create(values), B.equal_to(values))


def test_create_dict_gives_items(B):
    with B.pipeline() as p:
        B.assert_that(p | B.beam.Create({"a": 1, "b": 2}), B.equal_to([("a", 1), ("b", 2)]))


@pytest.mark.parametrize("r", [range(-20000, 20000, 3), range(10, 0, -1), range(0),
                               range(2**63 - 5000, 2**63 - 1)])
def test_create_range(B, r):
    # Create keeps a range as one (large ones in chunks of it).
    with B.pipeline() as p:
        B.assert_that(p | B.beam.Create(r), B.equal_to(list(r)))


def test_create_empty(B):
    with B.pipeline() as p:
        B.assert_that(p | B.beam.Create([]), B.is_empty())


def test_map(B):
    with B.pipeline() as p:
        out = p | B.beam.Create([1, 2, 3]) | B.beam.Map(lambda x: x * 10)
        B.assert_that(out, B.equal_to([10, 20, 30]))


def test_map_extra_args_and_kwargs(B):
    def f(x, a, b=0):
        return x * a + b

    with B.pipeline() as p:
        out = p | B.beam.Create([1, 2]) | B.beam.Map(f, 3, b=1)
        B.assert_that(out, B.equal_to([4, 7]))


def test_map_tuple(B):
    with B.pipeline() as p:
        out = p | B.beam.Create([(1, 2), (3, 4)]) | B.beam.MapTuple(lambda a, b: a + b)
        B.assert_that(out, B.equal_to([3, 7]))


def test_chain_of_maps(B):
    with B.pipeline() as p:
        pc = p | B.beam.Create(list(range(100)))
        for i in range(10):
            pc = pc | ("Add%d" % i) >> B.beam.Map(lambda x: x + 1)
        B.assert_that(pc, B.equal_to(list(range(10, 110))))


def test_flat_map(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(["a b", "c", ""]) | B.beam.FlatMap(str.split)
        B.assert_that(out, B.equal_to(["a", "b", "c"]))


def test_flat_map_generator(B):
    def gen(n):
        for i in range(n):
            yield (n, i)

    with B.pipeline() as p:
        out = p | B.beam.Create([1, 2]) | B.beam.FlatMap(gen)
        B.assert_that(out, B.equal_to([(1, 0), (2, 0), (2, 1)]))


def test_flat_map_of_every_kind_of_result_keeps_each_output_with_its_element(B):
    # Lists, None (no output), tuples, strings (their characters), dicts
    # (their keys), generators; each output keeps its input's timestamp
    # and window.
    def outputs(x):
        return {0: [x, x], 1: None, 2: (x,), 3: "ab", 4: {x: 1}, 5: iter(range(x)), 6: []}[x % 7]

    with B.pipeline() as p:
        out = (
            p
            | B.beam.Create(list(range(14)))
            | "Stamp" >> B.beam.Map(lambda x: B.beam.window.TimestampedValue(x, x * 10))
            | B.beam.WindowInto(B.beam.window.FixedWindows(50))
            | B.beam.FlatMap(outputs)
            | "WithWindow" >> B.beam.Map(
                lambda v, w=B.beam.DoFn.WindowParam: (v, int(w.start))
            )
        )
        B.assert_that(out, B.equal_to(
            [(0, 0), (0, 0), (2, 0), ("a", 0), ("b", 0), (4, 0), (0, 50), (1, 50), (2, 50),
             (3, 50), (4, 50), (7, 50), (7, 50), (9, 50), ("a", 100), ("b", 100), (11, 100)]
            + [(i, 100) for i in range(12)]))


def test_flat_map_result_that_is_not_iterable_names_its_element(ox):
    beam = ox.beam
    with pytest.raises(TypeError, match="not iterable") as info:
        with beam.Pipeline() as p:
            p | beam.Create([[1], [2], 3, [4]]) | "Spread" >> beam.FlatMap(lambda x: x)
    assert info.value.transform == "Spread"
    assert info.value.element == "3"


def test_flat_map_tuple(B):
    with B.pipeline() as p:
        out = p | B.beam.Create([("a", 2), ("b", 1)]) | B.beam.FlatMapTuple(lambda k, n: [k] * n)
        B.assert_that(out, B.equal_to(["a", "a", "b"]))


def test_filter(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(list(range(10))) | B.beam.Filter(lambda x: x % 3 == 0)
        B.assert_that(out, B.equal_to([0, 3, 6, 9]))


def test_filter_with_arg(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(list(range(10))) | B.beam.Filter(lambda x, lim: x > lim, 6)
        B.assert_that(out, B.equal_to([7, 8, 9]))


def test_large_create_and_map(B):
    n = 20000
    with B.pipeline() as p:
        out = p | B.beam.Create(list(range(n))) | B.beam.Map(lambda x: x % 7) | B.beam.combiners.Count.PerElement()
        expected = [(k, len([x for x in range(n) if x % 7 == k])) for k in range(7)]
        B.assert_that(out, B.equal_to(expected))


def test_pardo_dofn(B):
    class Split(B.beam.DoFn):
        def process(self, element):
            for w in element.split():
                yield w.upper()

    with B.pipeline() as p:
        out = p | B.beam.Create(["a b", "c"]) | B.beam.ParDo(Split())
        B.assert_that(out, B.equal_to(["A", "B", "C"]))


def test_pardo_returns_list(B):
    class Twice(B.beam.DoFn):
        def process(self, element):
            return [element, element]

    with B.pipeline() as p:
        out = p | B.beam.Create([1, 2]) | B.beam.ParDo(Twice())
        B.assert_that(out, B.equal_to([1, 1, 2, 2]))


def test_pardo_extra_args(B):
    class Scale(B.beam.DoFn):
        def process(self, element, factor, offset=0):
            yield element * factor + offset

    with B.pipeline() as p:
        out = p | B.beam.Create([1, 2]) | B.beam.ParDo(Scale(), 5, offset=1)
        B.assert_that(out, B.equal_to([6, 11]))


def test_dofn_lifecycle(B):
    beam = B.beam
    wv = B.wv

    class Lifecycle(beam.DoFn):
        def setup(self):
            self.prefix = "set"

        def start_bundle(self):
            self.seen = []

        def process(self, element):
            self.seen.append(element)
            yield "%s:%s" % (self.prefix, element)

        def finish_bundle(self):
            yield wv.WindowedValue(
                "total:%d" % sum(self.seen), beam.window.GlobalWindow().max_timestamp(),
                [beam.window.GlobalWindow()])

        def teardown(self):
            self.prefix = None

    with B.pipeline() as p:
        out = p | beam.Create([1, 2, 3]) | beam.ParDo(Lifecycle())
        B.assert_that(out, B.equal_to(["set:1", "set:2", "set:3", "total:6"]))


def test_tagged_outputs(B):
    beam = B.beam

    class Route(beam.DoFn):
        def process(self, element):
            if element % 2:
                yield beam.pvalue.TaggedOutput("odd", element)
            else:
                yield element

    with B.pipeline() as p:
        res = p | beam.Create(list(range(6))) | beam.ParDo(Route()).with_outputs("odd", main="even")
        B.assert_that(res.even, B.equal_to([0, 2, 4]), label="even")
        B.assert_that(res.odd, B.equal_to([1, 3, 5]), label="odd")
        B.assert_that(res["odd"], B.equal_to([1, 3, 5]), label="odd_item")


def test_tagged_outputs_unpacking(B):
    beam = B.beam

    def route(x):
        if x < 0:
            yield beam.pvalue.TaggedOutput("neg", x)
        else:
            yield x

    with B.pipeline() as p:
        pos, neg = p | beam.Create([-2, -1, 0, 3]) | beam.FlatMap(route).with_outputs("neg", main="pos")
        B.assert_that(pos, B.equal_to([0, 3]), label="pos")
        B.assert_that(neg, B.equal_to([-2, -1]), label="neg")


def test_timestamp_param(B):
    beam = B.beam

    class WithTs(beam.DoFn):
        def process(self, element, ts=beam.DoFn.TimestampParam):
            yield (element, float(ts))

    with B.pipeline() as p:
        out = (
            p
            | beam.Create([1, 2])
            | beam.Map(lambda x: beam.window.TimestampedValue(x, x * 10))
            | beam.ParDo(WithTs())
        )
        B.assert_that(out, B.equal_to([(1, 10.0), (2, 20.0)]))


def test_window_param_in_map(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p
            | beam.Create([1, 7, 12])
            | beam.Map(lambda x: beam.window.TimestampedValue(x, x))
            | beam.WindowInto(beam.window.FixedWindows(5))
            | beam.Map(lambda x, w=beam.DoFn.WindowParam: (x, float(w.start), float(w.end)))
        )
        B.assert_that(out, B.equal_to([(1, 0.0, 5.0), (7, 5.0, 10.0), (12, 10.0, 15.0)]))


def test_with_output_types_str(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(["x", "y"]) | B.beam.Map(lambda s: s + "!").with_output_types(str)
        B.assert_that(out, B.equal_to(["x!", "y!"]))


def test_custom_objects_roundtrip(B):
    import fractions

    with B.pipeline() as p:
        out = p | B.beam.Create([1, 2]) | B.beam.Map(lambda x: fractions.Fraction(x, 3))
        B.assert_that(out, B.equal_to([fractions.Fraction(1, 3), fractions.Fraction(2, 3)]))


def test_unicode_strings(B):
    with B.pipeline() as p:
        out = p | B.beam.Create(["héllo", "日本", ""]) | B.beam.Map(lambda s: s[::-1])
        B.assert_that(out, B.equal_to(["olléh", "本日", ""]))


def test_chained_plain_maps_run_fused_with_exact_errors_and_metrics(ox):
    """Consecutive Maps of builtin-only functions run as one comprehension;
    an error still names the Map and element that failed, and a Map that
    counts a metric keeps it under its own step."""
    beam = ox.beam
    from oxbeam.metrics import Metrics
    from oxbeam.metrics.metric import MetricsFilter

    def counted(x):
        Metrics.counter("ns", "seen").inc()
        return x

    p = ox.pipeline()
    out = (p
           | beam.Create(list(range(100)))
           | "A" >> beam.Map(lambda x: x + 1)
           | "B" >> beam.Map(lambda x: x * 2)
           | "C" >> beam.Map(counted)
           | "D" >> beam.Map(str))
    ox.assert_that(out, ox.equal_to([str((i + 1) * 2) for i in range(100)]))
    result = p.run()
    counters = result.metrics().query(MetricsFilter().with_name("seen"))["counters"]
    assert [(c.key.step, c.committed) for c in counters] == [("C", 100)]

    with pytest.raises(ZeroDivisionError) as e:
        with ox.pipeline() as p:
            _ = (p
                 | beam.Create([1, 2, 0, 4])
                 | "Inc" >> beam.Map(lambda x: x + 1)
                 | "Dec" >> beam.Map(lambda x: x - 1)
                 | "Invert" >> beam.Map(lambda x: 1 / x))
    assert e.value.transform == "Invert"
    assert "0" in repr(e.value.element)


def _bad_record(b):
    """A dead-letter record as ``(element, exception type name, repr)``."""
    element, (exc_type, exc_repr, tb) = b
    assert isinstance(tb, list) and any("Traceback" in line for line in tb)
    return (element, exc_type.__name__, exc_repr)


def _tens_but_two(x):
    if x == 2:
        raise ValueError("two")
    return x * 10


def test_map_with_exception_handling(B):
    beam = B.beam
    with B.pipeline() as p:
        good, bad = p | beam.Create([1, 2, 3]) | beam.Map(_tens_but_two).with_exception_handling()
        B.assert_that(good, B.equal_to([10, 30]))
        B.assert_that(bad | beam.Map(_bad_record), B.equal_to([(2, "ValueError", "ValueError('two')")]),
                      label="Bad")


def test_pardo_with_exception_handling_tags_and_partial(B):
    beam = B.beam

    class D(beam.DoFn):
        def process(self, x):
            yield ("first", x)
            if x < 0:
                raise KeyError(x)
            yield ("second", x)

    with B.pipeline() as p:
        r = p | "CreateA" >> beam.Create([5, -1]) | "Whole" >> beam.ParDo(D()).with_exception_handling(
            main_tag="ok", dead_letter_tag="dead")
        # Not partial: the failing element's first output is dropped.
        B.assert_that(r.ok, B.equal_to([("first", 5), ("second", 5)]))
        B.assert_that(r.dead | "BadA" >> beam.Map(_bad_record),
                      B.equal_to([(-1, "KeyError", "KeyError(-1)")]), label="DeadA")
        ok, dead = (p | "CreateB" >> beam.Create([5, -1])
                    | "Partial" >> beam.ParDo(D()).with_exception_handling(partial=True))
        B.assert_that(ok, B.equal_to([("first", 5), ("second", 5), ("first", -1)]), label="OkB")
        B.assert_that(dead | "BadB" >> beam.Map(lambda b: b[0]), B.equal_to([-1]), label="DeadB")


def test_exception_handling_only_catches_exc_class(B):
    beam = B.beam
    with pytest.raises(Exception, match="two"):
        with B.pipeline() as p:
            p | beam.Create([2]) | beam.Map(_tens_but_two).with_exception_handling(
                exc_class=KeyError)


def test_resource_hints_are_accepted(B):
    beam = B.beam
    with B.pipeline() as p:
        out = p | beam.Create([1]) | beam.Map(lambda x: x + 1).with_resource_hints(min_ram="1GB")
        B.assert_that(out, B.equal_to([2]))
