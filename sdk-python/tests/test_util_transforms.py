"""Beam's convenience transforms (``apache_beam.transforms.util``, GroupBy,
Select, Row, Latest, TupleCombineFn): the same pipelines on apache-beam and
Oxbeam (in process and multi-processing), exact outputs."""

import pytest


def test_with_keys_constant_callable_and_side_input(B):
    beam = B.beam
    with B.pipeline() as p:
        xs = p | beam.Create([1, 2, 3])
        k = p | "K" >> beam.Create([10])
        B.assert_that(xs | "Const" >> beam.WithKeys("a"), B.equal_to([("a", 1), ("a", 2), ("a", 3)]),
                      label="const")
        B.assert_that(xs | "Fn" >> beam.WithKeys(lambda x: x % 2), B.equal_to([(1, 1), (0, 2), (1, 3)]),
                      label="fn")
        B.assert_that(
            xs | "Side" >> beam.WithKeys(lambda x, m: x * m, beam.pvalue.AsSingleton(k)),
            B.equal_to([(10, 1), (20, 2), (30, 3)]),
            label="side",
        )


def test_regex_family(B):
    beam = B.beam
    lines = ["a1 b22 c333", "x", "k:v k2:v2", "no digits"]
    with B.pipeline() as p:
        s = p | beam.Create(lines)
        B.assert_that(s | "m" >> beam.Regex.matches(r"([a-z])(\d+)", 2), B.equal_to(["1"]), label="m")
        B.assert_that(s | "am" >> beam.Regex.all_matches(r"([a-z]):(\w)"), B.equal_to([["k:v", "k", "v"]]),
                      label="am")
        B.assert_that(s | "mkv" >> beam.Regex.matches_kv(r"(\w):(\w+)", 1, 2), B.equal_to([("k", "v")]),
                      label="mkv")
        B.assert_that(s | "f" >> beam.Regex.find(r"\d+"), B.equal_to(["1", "2"]), label="f")
        B.assert_that(
            s | "fa" >> beam.Regex.find_all(r"\d+", outputEmpty=False),
            B.equal_to([["1", "22", "333"], [], ["2", "2"], []]),
            label="fa",
        )
        B.assert_that(s | "fkv" >> beam.Regex.find_kv(r"(\w+):(\w+)", 1, 2),
                      B.equal_to([("k", "v"), ("k2", "v2")]), label="fkv")
        B.assert_that(s | "ra" >> beam.Regex.replace_all(r"\d", "#"),
                      B.equal_to(["a# b## c###", "x", "k:v k#:v#", "no digits"]), label="ra")
        B.assert_that(s | "rf" >> beam.Regex.replace_first(r"\d", "#"),
                      B.equal_to(["a# b22 c333", "x", "k:v k#:v2", "no digits"]), label="rf")
        B.assert_that(s | "sp" >> beam.Regex.split(r"\s+"),
                      B.equal_to([["a1", "b22", "c333"], ["x"], ["k:v", "k2:v2"], ["no", "digits"]]),
                      label="sp")


def test_to_string_and_remove_duplicates(B):
    beam = B.beam
    with B.pipeline() as p:
        kvs = p | beam.Create([("a", 1), ("b", 2), ("a", 1)])
        B.assert_that(kvs | beam.ToString.Kvs(), B.equal_to(["a,1", "b,2", "a,1"]), label="kvs")
        B.assert_that(kvs | "e" >> beam.ToString.Element(), B.equal_to(["('a', 1)", "('b', 2)", "('a', 1)"]),
                      label="el")
        B.assert_that(kvs | "it" >> beam.ToString.Iterables("-"), B.equal_to(["a-1", "b-2", "a-1"]),
                      label="it")
        B.assert_that(kvs | beam.RemoveDuplicates(), B.equal_to([("a", 1), ("b", 2)]), label="dedup")


def test_reify_window_and_timestamp_in_value(B):
    beam = B.beam
    window = B.beam.window
    with B.pipeline() as p:
        kvs = (p | beam.Create([("a", 5), ("b", 12)])
               | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
               | beam.WindowInto(window.FixedWindows(10)))
        out = (kvs | beam.Reify.WindowInValue()
               | beam.Map(lambda kv: (kv[0], kv[1][0], float(kv[1][1]), float(kv[1][2].start))))
        B.assert_that(out, B.equal_to([("a", 5, 5.0, 0.0), ("b", 12, 12.0, 10.0)]), label="wiv")
        ts = (kvs | beam.Reify.TimestampInValue()
              | "ts" >> beam.Map(lambda kv: (kv[0], kv[1].value, float(kv[1].timestamp))))
        B.assert_that(ts, B.equal_to([("a", 5, 5.0), ("b", 12, 12.0)]), label="tiv")
        same = kvs | beam.Reify.Timestamp()
        B.assert_that(same, B.equal_to([("a", 5), ("b", 12)]), label="ts")


def test_batch_elements_with_fixed_size_and_group_into_batches(B):
    beam = B.beam
    with B.pipeline() as p:
        xs = p | beam.Create(list(range(10)))
        batches = xs | beam.BatchElements(min_batch_size=4, max_batch_size=4)
        B.assert_that(batches | "all" >> beam.FlatMap(lambda b: b), B.equal_to(list(range(10))), label="all")
        B.assert_that(batches | "sizes" >> beam.Map(lambda b: len(b) <= 4) | "ok" >> beam.Distinct(),
                      B.equal_to([True]), label="sizes")
        kv = p | "kv" >> beam.Create([("k", i) for i in range(5)] + [("j", 9)])
        grouped = (kv | beam.GroupIntoBatches(2)
                   | beam.Map(lambda kvb: (kvb[0], len(kvb[1]), sum(kvb[1]))))
        B.assert_that(grouped | "totals" >> beam.Map(lambda t: (t[0], t[2])) | beam.CombinePerKey(sum),
                      B.equal_to([("k", 10), ("j", 9)]), label="gib-sum")
        B.assert_that(grouped | "sz" >> beam.Map(lambda t: t[1] <= 2) | "ok2" >> beam.Distinct(),
                      B.equal_to([True]), label="gib-size")


def test_group_by_fields_and_aggregate(B):
    beam = B.beam
    rows = [beam.Row(team="red", player="a", score=3), beam.Row(team="blue", player="b", score=5),
            beam.Row(team="red", player="c", score=4)]
    with B.pipeline() as p:
        rs = p | beam.Create(rows)
        by_team = (rs | beam.GroupBy("team")
                   | beam.Map(lambda kv: (kv[0], sorted(r.player for r in kv[1]))))
        B.assert_that(by_team, B.equal_to([("red", ["a", "c"]), ("blue", ["b"])]), label="by")
        agg = (rs | "agg" >> beam.GroupBy("team").aggregate_field("score", sum, "total")
               .aggregate_field("score", max, "best")
               | "tuple" >> beam.Map(lambda r: (r.team, r.total, r.best)))
        B.assert_that(agg, B.equal_to([("red", 7, 4), ("blue", 5, 5)]), label="agg")
        two = (rs | "two" >> beam.GroupBy("team", big=lambda r: r.score > 3)
               | "keys" >> beam.Map(lambda kv: (kv[0].team, kv[0].big, len(list(kv[1])))))
        B.assert_that(two, B.equal_to([("red", False, 1), ("red", True, 1), ("blue", True, 1)]),
                      label="two")
        sel = rs | beam.Select("player", double=lambda r: r.score * 2)
        B.assert_that(sel, B.equal_to([beam.Row(player="a", double=6), beam.Row(player="b", double=10),
                                       beam.Row(player="c", double=8)]), label="select")


def test_latest_and_tuple_combine(B):
    beam = B.beam
    window = B.beam.window
    with B.pipeline() as p:
        kvs = (p | beam.Create([("a", 1, 30), ("a", 2, 10), ("b", 3, 20)])
               | beam.Map(lambda t: window.TimestampedValue((t[0], t[1]), t[2])))
        B.assert_that(kvs | beam.combiners.Latest.PerKey(), B.equal_to([("a", 1), ("b", 3)]), label="pk")
        B.assert_that(kvs | beam.combiners.Latest.Globally(), B.equal_to([("a", 1)]), label="g")
        pairs = p | "pairs" >> beam.Create([(1, 5), (2, 7), (3, 1)])
        tc = pairs | beam.CombineGlobally(beam.combiners.TupleCombineFn(sum, max))
        B.assert_that(tc, B.equal_to([(6, 7)]), label="tuple")


def test_tee_and_wait_on(B):
    beam = B.beam
    with B.pipeline() as p:
        xs = p | beam.Create([1, 2])
        side = []
        out = xs | beam.Tee(beam.Map(lambda x: side.append(x)))
        B.assert_that(out, B.equal_to([1, 2]), label="tee")
        signal = p | "sig" >> beam.Create(["done"])
        B.assert_that(xs | beam.WaitOn(signal), B.equal_to([1, 2]), label="wait")


def test_row_behaves_like_beams(ox):
    Row = ox.beam.Row
    r = Row(a=1, b="x")
    assert (r.a, r.b, list(r), r.as_dict()) == (1, "x", [1, "x"], {"a": 1, "b": "x"})
    assert r == Row(a=1, b="x") and r != Row(b="x", a=1) and hash(r) == hash(Row(a=1, b="x"))
    assert repr(r) == "Row(a=1, b='x')"
    import pickle

    assert pickle.loads(pickle.dumps(r)) == r


def test_batch_elements_rejects_min_over_max(ox):
    with pytest.raises(ValueError, match="Minimum"):
        ox.beam.BatchElements(min_batch_size=5, max_batch_size=2)


def test_assert_that_twice_without_labels(B):
    beam = B.beam
    with B.pipeline() as p:
        xs = p | beam.Create([1, 2])
        B.assert_that(xs, B.equal_to([1, 2]))
        B.assert_that(xs | beam.Map(lambda x: x * 10), B.equal_to([10, 20]))


def test_fixed_size_samples(B):
    beam = B.beam
    with B.pipeline() as p:
        xs = p | beam.Create(list(range(100)))
        sample = xs | beam.combiners.Sample.FixedSizeGlobally(5)

        def five_distinct_inputs(samples):
            (s,) = samples
            assert len(s) == 5 and len(set(s)) == 5 and set(s) <= set(range(100)), s

        B.assert_that(sample, five_distinct_inputs, label="global")
        kv = p | "kv" >> beam.Create([("a", i) for i in range(10)] + [("b", 1), ("b", 2)])
        per_key = (kv | beam.combiners.Sample.FixedSizePerKey(3)
                   | beam.Map(lambda kv: (kv[0], len(kv[1]), set(kv[1]) <= set(range(10)))))
        B.assert_that(per_key, B.equal_to([("a", 3, True), ("b", 2, True)]), label="per_key")
        empty = (p | "none" >> beam.Create([]) | "s0" >> beam.combiners.Sample.FixedSizeGlobally(3))
        B.assert_that(empty, B.equal_to([[]]), label="empty")


def test_transforms_chained_before_they_are_applied(B):
    beam = B.beam
    double_then_inc = beam.Map(lambda x: x * 2) | "Inc" >> beam.Map(lambda x: x + 1)
    with B.pipeline() as p:
        out = p | beam.Create([1, 2]) | "Chain" >> double_then_inc
        B.assert_that(out, B.equal_to([3, 5]))


def test_write_to_text_footer_and_gzip(B, tmp_path):
    import glob
    import gzip

    beam = B.beam
    prefix = str(tmp_path / B.name / "out")
    with B.pipeline() as p:
        lines = p | beam.Create(["b", "a"])
        lines | "Plain" >> beam.io.WriteToText(prefix, header="H", footer="F", shard_name_template="")
        lines | "Gz" >> beam.io.WriteToText(prefix + "z", file_name_suffix=".gz", shard_name_template="")
    with open(prefix) as f:
        plain = f.read().splitlines()
    assert plain[0] == "H" and plain[-1] == "F" and sorted(plain[1:-1]) == ["a", "b"]
    (gz,) = glob.glob(prefix + "z*")
    with gzip.open(gz, "rt") as f:
        assert sorted(f.read().splitlines()) == ["a", "b"]


def test_combine_fns_with_side_input_arguments(B):
    beam = B.beam
    with B.pipeline() as p:
        values = p | beam.Create([1, 2, 3, 4, 5, 6, 7])
        divisor = p | "Divisor" >> beam.Create([2])
        best = values | "Max" >> beam.CombineGlobally(
            lambda vals, d: max(v for v in vals if v % d == 0), beam.pvalue.AsSingleton(divisor)
        ).without_defaults()
        B.assert_that(best, B.equal_to([6]), label="global")
        kvs = p | "kvs" >> beam.Create([("a", 1), ("a", 4), ("b", 3)])
        # A callable may be applied to partial results again: max is.
        floor = kvs | beam.CombinePerKey(lambda vs, lo: max(max(vs), lo), beam.pvalue.AsSingleton(divisor))
        B.assert_that(floor, B.equal_to([("a", 4), ("b", 3)]), label="per_key")
        grouped = kvs | beam.GroupByKey() | beam.CombineValues(lambda vs, hi: min(min(vs), hi), 2)
        B.assert_that(grouped, B.equal_to([("a", 1), ("b", 2)]), label="values")


def test_combine_globally_default_with_side_input_arguments(ox):
    # apache-beam 2.77 passes the AsSingleton object itself to the default's
    # CombineFn here (a TypeError); Oxbeam passes the side input's value.
    beam = ox.beam
    with beam.Pipeline() as p:
        divisor = p | "Divisor" >> beam.Create([2])
        empty = (p | "none" >> beam.Create([]) | "Sum" >> beam.CombineGlobally(
            lambda vals, m: sum(vals) + m, beam.pvalue.AsSingleton(divisor)))
        ox.assert_that(empty, ox.equal_to([2]))


def test_flatten_of_no_pcollections_is_empty(B):
    beam = B.beam
    with B.pipeline() as p:
        empty = () | beam.Flatten(pipeline=p)
        B.assert_that(empty, B.is_empty())


def _beam_unique_estimate(values, size):
    """Beam's own estimator, run directly (the expected value)."""
    stats = pytest.importorskip("apache_beam.transforms.stats")
    coders = pytest.importorskip("apache_beam.coders")
    fn = stats.ApproximateUniqueCombineFn(size, coders.FastPrimitivesCoder())
    acc = fn.create_accumulator()
    for v in values:
        acc = fn.add_input(acc, v)
    return fn.extract_output(acc)


def test_approximate_unique(B):
    beam = B.beam
    ints = [(i * 7919) % 1000 for i in range(3000)]  # 1000 distinct, each 3 times
    words = ["w%d" % (i % 300) for i in range(900)] + [("t", i % 50) for i in range(100)]
    with B.pipeline() as p:
        g = p | "Ints" >> beam.Create(ints) | "G" >> beam.ApproximateUnique.Globally(size=16)
        B.assert_that(g, B.equal_to([_beam_unique_estimate(ints, 16)]), label="globally")
        small = p | "Few" >> beam.Create([1, 2, 2, 3]) | "S" >> beam.ApproximateUnique.Globally(
            size=16)
        B.assert_that(small, B.equal_to([3]), label="exact")
        kv = (p | "Words" >> beam.Create(words)
              | beam.Map(lambda w: (type(w).__name__, w))
              | "K" >> beam.ApproximateUnique.PerKey(error=0.3))
        B.assert_that(kv, B.equal_to([
            ("str", _beam_unique_estimate(words[:900], 45)),
            ("tuple", _beam_unique_estimate(words[900:], 45))]), label="perkey")
    with pytest.raises(ValueError, match="Either size or error"):
        beam.ApproximateUnique.Globally(size=16, error=0.1)
    with pytest.raises(ValueError, match="size >= 16"):
        beam.ApproximateUnique.Globally(size=3)


def _negate(x):
    return -x


def test_approximate_quantiles(B):
    beam = B.beam
    with B.pipeline() as p:
        xs = p | beam.Create(list(range(101)))
        B.assert_that(xs | "Q5" >> beam.ApproximateQuantiles.Globally(5),
                      B.equal_to([[0, 25, 50, 75, 100]]), label="q5")
        B.assert_that(xs | "Rev" >> beam.ApproximateQuantiles.Globally(3, reverse=True),
                      B.equal_to([[100, 50, 0]]), label="reverse")
        B.assert_that(xs | "Key" >> beam.ApproximateQuantiles.Globally(3, key=_negate),
                      B.equal_to([[100, 50, 0]]), label="key")
        w = p | "W" >> beam.Create([(i, 1 if i < 10 else 1e-5) for i in range(101)])
        B.assert_that(w | "Weighted" >> beam.ApproximateQuantiles.Globally(5, weighted=True),
                      B.equal_to([[0, 2, 4, 7, 100]]), label="weighted")
        b = p | "B" >> beam.Create([list(range(i, min(i + 10, 101))) for i in range(0, 101, 10)])
        B.assert_that(b | "Batched" >> beam.ApproximateQuantiles.Globally(5, input_batched=True),
                      B.equal_to([[0, 25, 50, 75, 100]]), label="batched")
        kv = p | "KV" >> beam.Create([("a", i) for i in range(10)] + [("b", 4), ("b", 1)])
        B.assert_that(kv | "PerKey" >> beam.ApproximateQuantiles.PerKey(3),
                      B.equal_to([("a", [0, 4, 9]), ("b", [1, 1, 4])]), label="perkey")


class _Logged(object):
    """A context manager that logs enter/exit lines to a file."""

    def __init__(self, path, name):
        self.path, self.name = path, name

    def __enter__(self):
        with open(self.path, "a") as f:
            f.write("enter %s\n" % self.name)
        return self.name

    def __exit__(self, *exc):
        with open(self.path, "a") as f:
            f.write("exit %s\n" % self.name)


def test_setup_and_bundle_context_params(B, tmp_path):
    beam = B.beam
    log = str(tmp_path / "log")
    setup = beam.DoFn.SetupContextParam(_Logged, args=(log, "setup"))
    bundle = beam.DoFn.BundleContextParam(_Logged, args=(log, "bundle"))

    class Tag(beam.DoFn):
        def process(self, x, s=setup, b=bundle):
            yield "%s/%s/%s" % (x, s, b)

    with B.pipeline() as p:
        xs = p | beam.Create(["a", "b"])
        B.assert_that(xs | "Map" >> beam.Map(lambda x, s=setup, b=bundle: "%s/%s/%s" % (x, s, b)),
                      B.equal_to(["a/setup/bundle", "b/setup/bundle"]), label="map")
        B.assert_that(xs | beam.ParDo(Tag()), B.equal_to(["a/setup/bundle", "b/setup/bundle"]),
                      label="dofn")
    with open(log) as f:
        lines = f.read().split()
    events = [" ".join(lines[i:i + 2]) for i in range(0, len(lines), 2)]
    for name in ("setup", "bundle"):
        assert events.count("enter " + name) >= 2, events
    # Bundle contexts are exited at the end of each bundle; setup contexts at
    # teardown (best effort in Beam, always here).
    assert events.count("enter bundle") == events.count("exit bundle"), events
    if B.name == "oxbeam":
        assert events.count("enter setup") == events.count("exit setup"), events


def test_names_beam_exports_from_its_submodules(B, tmp_path):
    # Where Beam's own examples and tests import them from.
    import importlib

    beam = B.beam
    transforms = importlib.import_module(B.name + ".transforms")
    util = importlib.import_module(B.name + ".testing.util")
    hints = importlib.import_module(B.name + ".typehints")
    opts = importlib.import_module(B.name + ".options.pipeline_options")

    class Args(opts.PipelineOptions):
        @classmethod
        def _add_argparse_args(cls, parser):
            parser.add_value_provider_argument("--prefix", default="p")

    prefix = B.options.PipelineOptions(["--prefix=w"]).view_as(Args).prefix
    assert isinstance(prefix, opts.ValueProvider) and prefix.get() == "w"
    assert opts.StaticValueProvider(str, "v").get() == "v"
    assert transforms.BatchElements and transforms.TimeDomain.WATERMARK
    out = str(tmp_path / "out")
    with B.pipeline() as p:
        xs = p | beam.Create([("a", 1.0), ("b", 3.0)])
        shuffled = (xs | beam.transforms.util.ReshufflePerKey()
                    | beam.Map(lambda kv: kv).with_output_types(hints.Sequence[hints.Any]))
        # 3.0 * 0.1 is 0.30000000000000004.
        B.assert_that(shuffled | "Tenth" >> beam.MapTuple(lambda k, v: (k, v * 0.1)),
                      util.equal_to_approx([("a", 0.1), ("b", 0.3)]), label="approx")
        xs | beam.MapTuple(lambda k, v: "%s %s" % (k, v)) | beam.io.WriteToText(out)
    with util.open_shards(out + "*") as f:
        assert sorted(f.read().splitlines()) == ["a 1.0", "b 3.0"]
