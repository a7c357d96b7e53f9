"""Side inputs and windowing: same output on Beam and Oxbeam."""


def test_as_singleton(B):
    beam = B.beam
    with B.pipeline() as p:
        total = p | "T" >> beam.Create([10])
        out = p | beam.Create([1, 2]) | beam.Map(lambda x, t: x + t, beam.pvalue.AsSingleton(total))
        B.assert_that(out, B.equal_to([11, 12]))


def test_as_singleton_default(B):
    beam = B.beam
    with B.pipeline() as p:
        empty = p | "E" >> beam.Create([])
        out = p | beam.Create([1]) | beam.Map(lambda x, t: (x, t), beam.pvalue.AsSingleton(empty, default_value=-1))
        B.assert_that(out, B.equal_to([(1, -1)]))


def test_as_singleton_of_combine_globally(B):
    beam = B.beam
    with B.pipeline() as p:
        nums = p | beam.Create([1, 2, 3, 4])
        total = nums | beam.CombineGlobally(sum)
        out = nums | beam.Map(lambda x, t: x / t, beam.pvalue.AsSingleton(total))
        B.assert_that(out, B.equal_to([0.1, 0.2, 0.3, 0.4]))


def test_as_list_and_as_iter(B):
    beam = B.beam
    with B.pipeline() as p:
        side = p | "S" >> beam.Create([3, 1, 2])
        main = p | beam.Create(["x"])
        out = main | beam.Map(lambda x, l, it: (x, sorted(l), sum(it)),
                              beam.pvalue.AsList(side), beam.pvalue.AsIter(side))
        B.assert_that(out, B.equal_to([("x", [1, 2, 3], 6)]))


def test_as_dict(B):
    beam = B.beam
    with B.pipeline() as p:
        names = p | "N" >> beam.Create([(1, "one"), (2, "two")])
        out = p | beam.Create([1, 2, 3]) | beam.Map(lambda k, d: d.get(k, "?"), beam.pvalue.AsDict(names))
        B.assert_that(out, B.equal_to(["one", "two", "?"]))


def test_side_input_kwarg_in_dofn(B):
    beam = B.beam

    class Join(beam.DoFn):
        def process(self, element, lookup):
            yield "%s=%s" % (element, lookup[element])

    with B.pipeline() as p:
        lookup = p | "L" >> beam.Create([("a", 1), ("b", 2)])
        out = p | beam.Create(["a", "b"]) | beam.ParDo(Join(), lookup=beam.pvalue.AsDict(lookup))
        B.assert_that(out, B.equal_to(["a=1", "b=2"]))


def test_fixed_windows_group(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p | beam.Create([("k", 1), ("k", 2), ("k", 11), ("j", 12)])
            | beam.Map(lambda kv: beam.window.TimestampedValue(kv, kv[1]))
            | beam.WindowInto(beam.window.FixedWindows(10))
            | beam.CombinePerKey(sum)
        )
        B.assert_that(out, B.equal_to([("k", 3), ("k", 11), ("j", 12)]))


def test_fixed_windows_with_window_param_after_gbk(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p | beam.Create([1, 2, 11])
            | beam.Map(lambda x: beam.window.TimestampedValue(("k", x), x))
            | beam.WindowInto(beam.window.FixedWindows(10))
            | beam.GroupByKey()
            | beam.Map(lambda kv, w=beam.DoFn.WindowParam: (float(w.start), sorted(kv[1])))
        )
        B.assert_that(out, B.equal_to([(0.0, [1, 2]), (10.0, [11])]))


def test_sliding_windows(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p | beam.Create([1, 6])
            | beam.Map(lambda x: beam.window.TimestampedValue(x, x))
            | beam.WindowInto(beam.window.SlidingWindows(10, 5))
            | beam.combiners.Count.Globally().without_defaults()
        )
        # Windows [-5,5): 1; [0,10): 1,6; [5,15): 6.
        B.assert_that(out, B.equal_to([1, 2, 1]))


def test_sessions(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p | beam.Create([("u", 1), ("u", 2), ("u", 20), ("v", 3)])
            | beam.Map(lambda kv: beam.window.TimestampedValue(kv, kv[1]))
            | beam.WindowInto(beam.window.Sessions(5))
            | beam.GroupByKey()
            | beam.Map(lambda kv, w=beam.DoFn.WindowParam: (kv[0], sorted(kv[1]), float(w.start), float(w.end)))
        )
        B.assert_that(out, B.equal_to([("u", [1, 2], 1.0, 7.0), ("u", [20], 20.0, 25.0), ("v", [3], 3.0, 8.0)]))


def test_sessions_combine(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p | beam.Create([("u", 1), ("u", 3), ("u", 30)])
            | beam.Map(lambda kv: beam.window.TimestampedValue(kv, kv[1]))
            | beam.WindowInto(beam.window.Sessions(10))
            | beam.CombinePerKey(sum)
        )
        B.assert_that(out, B.equal_to([("u", 4), ("u", 30)]))


def test_global_windows_rewindow(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p | beam.Create([1, 2, 15])
            | beam.Map(lambda x: beam.window.TimestampedValue(x, x))
            | "Fixed" >> beam.WindowInto(beam.window.FixedWindows(10))
            | "Global" >> beam.WindowInto(beam.window.GlobalWindows())
            | beam.CombineGlobally(sum)
        )
        B.assert_that(out, B.equal_to([18]))


def test_timestamped_value_from_flatmap(B):
    beam = B.beam
    with B.pipeline() as p:
        out = (
            p | beam.Create([3])
            | beam.FlatMap(lambda n: [beam.window.TimestampedValue(i, i * 60) for i in range(n)])
            | beam.WindowInto(beam.window.FixedWindows(120))
            | beam.combiners.Count.Globally().without_defaults()
        )
        B.assert_that(out, B.equal_to([2, 1]))


def test_create_of_timestamped_values_into_sliding_windows(B):
    # Create's TimestampedValues set their elements' timestamps (Beam's
    # Create emits them through a DoFn), also straight into a runner-side
    # GroupByKey or combine.
    import typing

    beam = B.beam
    TV = beam.window.TimestampedValue
    kv = typing.Tuple[str, int]
    with B.pipeline() as p:
        out = (
            p | beam.Create([TV(("k", 1), 5), TV(("k", 2), 12)]).with_output_types(kv)
            | beam.WindowInto(beam.window.SlidingWindows(10, 5))
            | beam.CombinePerKey(sum)
            | beam.Map(lambda kv, w=beam.DoFn.WindowParam: (kv, int(w.start)))
        )
        B.assert_that(out, B.equal_to([(("k", 1), 0), (("k", 3), 5), (("k", 2), 10)]))
        grouped = (
            p | "C2" >> beam.Create([TV(("a", 1), 1), TV(("a", 2), 25)]).with_output_types(kv)
            | "F2" >> beam.WindowInto(beam.window.FixedWindows(20))
            | beam.GroupByKey()
            | beam.MapTuple(lambda k, vs: (k, sorted(vs)))
        )
        B.assert_that(grouped, B.equal_to([("a", [1]), ("a", [2])]), label="Grouped")


def test_windowed_side_input(B):
    beam = B.beam
    with B.pipeline() as p:
        def stamp(x):
            return beam.window.TimestampedValue(x, x)

        side = (p | "S" >> beam.Create([1, 12]) | "TS" >> beam.Map(stamp)
                | "WS" >> beam.WindowInto(beam.window.FixedWindows(10)))
        main = (p | beam.Create([5, 15]) | "TM" >> beam.Map(stamp)
                | "WM" >> beam.WindowInto(beam.window.FixedWindows(10)))
        out = main | beam.Map(lambda x, s: (x, s), beam.pvalue.AsList(side))
        B.assert_that(out, B.equal_to([(5, [1]), (15, [12])]))
