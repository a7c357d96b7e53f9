"""Splittable DoFns (RestrictionParam, OffsetRange trackers, self-checkpoints,
bundle finalizers), BoundedSource/Read, Sink/Write, and Beam API details
(options declared with ``_add_argparse_args``, value providers, transforms
applied to plain values, FlattenWith, PipelineVisitor, PTransform subclasses
that skip ``__init__``): the same pipelines on apache-beam and Oxbeam, exact
outputs."""

import importlib
import os

import pytest


def _sdf_classes(B):
    beam = B.beam
    rt = importlib.import_module(B.name + ".io.restriction_trackers")
    core = importlib.import_module(B.name + ".transforms.core")

    class CountProvider(core.RestrictionProvider):
        def initial_restriction(self, element):
            return rt.OffsetRange(0, element[1])

        def create_tracker(self, restriction):
            return rt.OffsetRestrictionTracker(restriction)

        def split(self, element, restriction):
            # Parts of 3 offsets, spread over workers.
            return restriction.split(3)

        def restriction_size(self, element, restriction):
            return restriction.size()

    class Expand(beam.DoFn):
        """(name, n) -> name-0 .. name-(n-1), one claimed offset each."""

        def process(self, element, tracker=beam.DoFn.RestrictionParam(CountProvider())):
            r = tracker.current_restriction()
            for i in range(r.start, r.stop):
                if not tracker.try_claim(i):
                    return
                yield "%s-%d" % (element[0], i)

    class CheckpointEvery2(beam.DoFn, core.RestrictionProvider):
        """The DoFn is its own provider; it defers after every 2 offsets."""

        def initial_restriction(self, element):
            return rt.OffsetRange(0, element)

        def create_tracker(self, restriction):
            return rt.OffsetRestrictionTracker(restriction)

        def restriction_size(self, element, restriction):
            return restriction.size()

        def process(self, element, tracker=beam.DoFn.RestrictionParam()):
            r = tracker.current_restriction()
            pos = r.start
            claimed = 0
            while tracker.try_claim(pos):
                yield (element, pos)
                pos += 1
                claimed += 1
                if claimed == 2:
                    tracker.defer_remainder()
                    return

    return CountProvider, Expand, CheckpointEvery2


def test_splittable_dofn_claims_every_offset_once(B):
    beam = B.beam
    _, Expand, CheckpointEvery2 = _sdf_classes(B)
    with B.pipeline() as p:
        out = p | beam.Create([("a", 7), ("b", 0), ("c", 4)]) | beam.ParDo(Expand())
        B.assert_that(out, B.equal_to(["a-%d" % i for i in range(7)] + ["c-%d" % i for i in range(4)]),
                      label="split")
        ck = p | "Ck" >> beam.Create([5, 1]) | "Defer" >> beam.ParDo(CheckpointEvery2())
        B.assert_that(ck, B.equal_to([(5, i) for i in range(5)] + [(1, 0)]), label="checkpoint")


def test_offset_range_and_tracker_api(B):
    rt = importlib.import_module(B.name + ".io.restriction_trackers")
    r = rt.OffsetRange(0, 10)
    assert [(s.start, s.stop) for s in r.split(3)] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [(s.start, s.stop) for s in r.split(4)] == [(0, 4), (4, 8), (8, 10)]
    assert [(s.start, s.stop) for s in r.split(4, 5)] == [(0, 5), (5, 10)]
    t = rt.OffsetRestrictionTracker(rt.OffsetRange(2, 8))
    assert t.try_claim(2) and t.try_claim(3)
    primary, residual = t.try_split(0.5)
    assert (primary.start, primary.stop, residual.start, residual.stop) == (2, 5, 5, 8)
    assert t.try_claim(4) and not t.try_claim(5)
    t.check_done()
    with pytest.raises(ValueError, match="strictly increase"):
        t.try_claim(4)
    t2 = rt.OffsetRestrictionTracker(rt.OffsetRange(0, 3))
    t2.try_claim(0)
    with pytest.raises(ValueError, match="not done"):
        t2.check_done()
    assert t2.try_split(0) == (rt.OffsetRange(0, 1), rt.OffsetRange(1, 3))
    assert t2.try_split(0) is None  # already checkpointed


def _source_classes(B):
    iobase = importlib.import_module(B.name + ".io.iobase")
    rtk = importlib.import_module(B.name + ".io.range_trackers")

    class CountingSource(iobase.BoundedSource):
        def __init__(self, count):
            self.records_read = 0
            self._count = count

        def estimate_size(self):
            return self._count

        def get_range_tracker(self, start_position, stop_position):
            if start_position is None:
                start_position = 0
            if stop_position is None:
                stop_position = self._count
            return rtk.OffsetRangeTracker(start_position, stop_position)

        def read(self, range_tracker):
            for i in range(range_tracker.start_position(), range_tracker.stop_position()):
                if not range_tracker.try_claim(i):
                    return
                yield i * i

        def split(self, desired_bundle_size, start_position=None, stop_position=None):
            start = 0 if start_position is None else start_position
            stop = self._count if stop_position is None else stop_position
            bundle_start = start
            while bundle_start < stop:
                bundle_stop = min(stop, bundle_start + max(desired_bundle_size, 7))
                yield iobase.SourceBundle(bundle_stop - bundle_start, self, bundle_start,
                                          bundle_stop)
                bundle_start = bundle_stop

    class ListSink(iobase.Sink):
        """Writes each bundle to a file; finalizing lists them in order."""

        def __init__(self, directory):
            self.directory = directory

        def initialize_write(self):
            return os.path.join(self.directory, "part")

        def open_writer(self, init_result, uid):
            return ListWriter(init_result + "-" + uid)

        def pre_finalize(self, init_result, writer_results):
            return [len(list(writer_results))]

        def finalize_write(self, init_result, writer_results, pre_finalize_result):
            writer_results = list(writer_results)
            assert pre_finalize_result == len(writer_results)
            total = []
            for path in writer_results:
                with open(path) as f:
                    total.extend(int(x) for x in f.read().split())
            yield " ".join(str(x) for x in sorted(total))

    class ListWriter(iobase.Writer):
        def __init__(self, path):
            self.path = path
            self.f = open(path, "w")

        def write(self, value):
            self.f.write("%d\n" % value)

        def close(self):
            self.f.close()
            return self.path

    return CountingSource, ListSink


def test_bounded_source_read_and_sink_write(B, tmp_path):
    beam = B.beam
    iobase = importlib.import_module(B.name + ".io.iobase")
    CountingSource, ListSink = _source_classes(B)
    with B.pipeline() as p:
        squares = p | iobase.Read(CountingSource(30))
        B.assert_that(squares, B.equal_to([i * i for i in range(30)]), label="read")
        written = p | "Nums" >> beam.Create([5, 3, 9, 1]) | iobase.Write(ListSink(str(tmp_path)))
        B.assert_that(written, B.equal_to(["1 3 5 9"]), label="write")


def test_options_declared_by_subclasses_and_value_providers(B):
    opts = B.options

    class MyOptions(opts.PipelineOptions):
        @classmethod
        def _add_argparse_args(cls, parser):
            parser.add_argument("--input-file", default="in.txt")
            parser.add_argument("--count", type=int, default=3)
            parser.add_argument("--verbose", action="store_true")
            parser.add_value_provider_argument("--table", type=str, default="t0")

    o = opts.PipelineOptions(["--count=7", "--verbose", "--table", "t9"]).view_as(MyOptions)
    assert (o.input_file, o.count, o.verbose) == ("in.txt", 7, True)
    assert o.table.get() == "t9" and o.table.is_accessible()
    d = opts.PipelineOptions([]).view_as(MyOptions)
    assert (d.count, d.verbose, d.table.get()) == (3, False, "t0")
    assert opts.PipelineOptions(["--count=2"]).get_all_options()["count"] == 2


def test_transform_applied_to_plain_values(B):
    beam = B.beam
    assert sorted([3, 1, 2] | beam.Map(lambda x: x * 10)) == [10, 20, 30]
    assert sorted(["a b", "c"] | beam.FlatMap(str.split)) == ["a", "b", "c"]

    class Split(beam.DoFn):
        def process(self, x):
            if x % 2:
                yield beam.pvalue.TaggedOutput("odd", x)
            else:
                yield x

    out = [1, 2, 3, 4] | beam.ParDo(Split()).with_outputs("odd", main="even")
    assert sorted(out.even) == [2, 4] and sorted(out.odd) == [1, 3]
    assert sorted(out["odd"]) == [1, 3]


def test_flatten_with_and_transforms_without_init(B):
    beam = B.beam

    class Double(beam.PTransform):
        def __init__(self, factor):  # no PTransform.__init__, as Beam allows
            self.factor = factor

        def expand(self, pcoll):
            return pcoll | beam.Map(lambda x: x * self.factor)

    with B.pipeline() as p:
        a = p | "A" >> beam.Create([1, 2])
        b = p | "B" >> beam.Create([10])
        out = a | beam.FlattenWith(b, beam.Create([100])) | Double(2)
        B.assert_that(out, B.equal_to([2, 4, 20, 200]))


def test_pipeline_visitor(B):
    beam = B.beam
    pipeline = importlib.import_module(B.name + ".pipeline")

    class Labels(pipeline.PipelineVisitor):
        def __init__(self):
            self.leaves = []
            self.composites = []

        def visit_transform(self, node):
            self.leaves.append(node.full_label)

        def enter_composite_transform(self, node):
            if node.full_label:
                self.composites.append(node.full_label)

    p = beam.Pipeline()
    _ = p | "Make" >> beam.Create([1]) | "Twice" >> beam.Map(lambda x: 2 * x)
    v = Labels()
    p.visit(v)
    assert "Twice" in v.leaves
    assert any(label.startswith("Make") for label in v.leaves + v.composites)


def test_assert_that_reify_windows_and_equal_to_per_window(B):
    beam = B.beam
    util = importlib.import_module(B.name + ".testing.util")
    window = importlib.import_module(B.name + ".transforms.window")
    with B.pipeline() as p:
        xs = (p
              | beam.Create([1, 2, 12])
              | beam.Map(lambda x: window.TimestampedValue(x, x))
              | beam.WindowInto(window.FixedWindows(10)))
        util.assert_that(xs, util.equal_to_per_window({
            window.IntervalWindow(0, 10): [1, 2],
            window.IntervalWindow(10, 20): [12]}), label="per_window")
        util.assert_that(
            xs | "Vals" >> beam.Map(lambda x: x * 2),
            lambda actual: util.equal_to([(2, 1, 0), (4, 2, 0), (24, 12, 10)])(
                [(wv.value, int(wv.timestamp), int(wv.windows[0].start)) for wv in actual]),
            reify_windows=True, label="reified")
    assert util.contains_in_any_order([1, 2, 2]) == [2, 1, 2]
    assert util.contains_in_any_order([1, 2]) != [1, 2, 2]


def test_fileio_match_read_and_write(B, tmp_path):
    beam = B.beam
    fileio = importlib.import_module(B.name + ".io.fileio")
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("alpha\nbeta\n")
    (src / "b.txt").write_text("gamma\n")
    out = tmp_path / "out"
    with B.pipeline() as p:
        files = (p
                 | fileio.MatchFiles(str(src / "*.txt"))
                 | fileio.ReadMatches())
        contents = files | beam.Map(lambda f: (os.path.basename(f.metadata.path), f.read_utf8()))
        B.assert_that(contents, B.equal_to([("a.txt", "alpha\nbeta\n"), ("b.txt", "gamma\n")]),
                      label="read")
        lines = files | beam.FlatMap(lambda f: f.read_utf8().split())
        _ = lines | fileio.WriteToFiles(
            str(out), destination=lambda w: "long" if len(w) > 4 else "short",
            file_naming=fileio.destination_prefix_naming(".txt"))
        empty = p | "NoMatch" >> fileio.MatchFiles(str(src / "*.csv"))
        B.assert_that(empty, B.equal_to([]), label="empty")
    got = {}
    for name in os.listdir(str(out)):
        if name.startswith("."):
            continue
        prefix = name.split("-")[0]
        with open(os.path.join(str(out), name)) as f:
            got.setdefault(prefix, []).extend(f.read().split())
    assert {k: sorted(v) for k, v in got.items()} == {
        "long": ["alpha", "gamma"], "short": ["beta"]}


def test_periodic_impulse(B):
    beam = B.beam
    ps = importlib.import_module(B.name + ".transforms.periodicsequence")
    ts = B.ts
    start = ts.Timestamp.of(int(ts.Timestamp.now().micros // 1000000) - 60)
    base = start.micros / 1e6
    with B.pipeline() as p:
        ticks = (p
                 | "Ticks" >> ps.PeriodicImpulse(start, start + 2, 0.5)
                 | "Rel" >> beam.Map(lambda x: round(x - base, 3)))
        B.assert_that(ticks, B.equal_to([0.0, 0.5, 1.0, 1.5]), label="ticks")
        data = (p
                | "Data" >> ps.PeriodicImpulse(start, start + 3, 1.0, data=["a", "b", "c"])
                | "Stamp" >> beam.Map(lambda v, t=beam.DoFn.TimestampParam: (v, int(t.micros / 1e6 - base))))
        B.assert_that(data, B.equal_to([("a", 0), ("b", 1), ("c", 2)]), label="data")
        windowed = (p
                    | "W" >> ps.PeriodicImpulse(start, start + 2, 1.0, apply_windowing=True)
                    | "Win" >> beam.Map(lambda x, w=beam.DoFn.WindowParam: int(w.end.micros / 1e6 - base)))
        B.assert_that(windowed, B.equal_to([1, 2]), label="windows")


def test_csv_and_json_records(ox, tmp_path):
    beam = ox.beam
    (tmp_path / "a.csv").write_text("name,n,score,ok,note\nann,3,1.5,True,x\nbob,4,2,False,\n")
    (tmp_path / "b.jsonl").write_text('{"k": "a", "v": 1}\n\n{"k": "b", "v": [1, 2]}\n')
    out = str(tmp_path / "out")
    with ox.pipeline() as p:
        rows = p | beam.io.ReadFromCsv(str(tmp_path / "*.csv"))
        ox.assert_that(rows, ox.equal_to([
            beam.Row(name="ann", n=3, score=1.5, ok=True, note="x"),
            beam.Row(name="bob", n=4, score=2.0, ok=False, note=None)]), label="csv")
        recs = p | beam.io.ReadFromJson(str(tmp_path / "*.jsonl"))
        ox.assert_that(recs | beam.Map(lambda r: (r.k, r.v)),
                       ox.equal_to([("a", 1), ("b", [1, 2])]), label="json")
        names = rows | beam.io.WriteToCsv(out)
        ox.assert_that(names, ox.equal_to([out + "-00000-of-00001.csv"]), label="written")
        _ = recs | beam.io.WriteToJson(out)
    with open(out + "-00000-of-00001.csv") as f:
        assert sorted(f.read().splitlines()) == sorted([
            "name,n,score,ok,note", "ann,3,1.5,True,x", "bob,4,2.0,False,"])
    with open(out + "-00000-of-00001.json") as f:
        assert sorted(f.read().splitlines()) == ['{"k": "a", "v": 1}', '{"k": "b", "v": [1, 2]}']


AVRO_SCHEMA = {
    "type": "record", "name": "Score",
    "fields": [{"name": "user", "type": "string"}, {"name": "points", "type": "long"}],
}


def test_avro_write_then_read(B, tmp_path):
    beam = B.beam
    avroio = importlib.import_module(B.name + ".io.avroio")
    records = [{"user": "u%d" % i, "points": i * 10} for i in range(50)]
    prefix = str(tmp_path / "scores")
    with B.pipeline() as p:
        _ = p | beam.Create(records) | avroio.WriteToAvro(prefix, AVRO_SCHEMA, num_shards=2,
                                                           file_name_suffix=".avro")
    assert sorted(os.listdir(str(tmp_path))) == [
        "scores-00000-of-00002.avro", "scores-00001-of-00002.avro"]
    with B.pipeline() as p:
        got = p | avroio.ReadFromAvro(prefix + "*")
        B.assert_that(got | beam.Map(lambda r: (r["user"], r["points"])),
                      B.equal_to([(r["user"], r["points"]) for r in records]))


def test_parquet_write_then_read(B, tmp_path):
    pa = pytest.importorskip("pyarrow")
    beam = B.beam
    parquetio = importlib.import_module(B.name + ".io.parquetio")
    schema = pa.schema([("name", pa.string()), ("n", pa.int64()), ("x", pa.float64())])
    rows = [{"name": "r%d" % i, "n": i, "x": i / 4} for i in range(30)]
    prefix = str(tmp_path / "rows")
    with B.pipeline() as p:
        _ = p | beam.Create(rows) | parquetio.WriteToParquet(prefix, schema,
                                                              file_name_suffix=".parquet")
    with B.pipeline() as p:
        got = p | parquetio.ReadFromParquet(prefix + "*")
        B.assert_that(got | beam.Map(lambda r: (r["name"], r["n"], r["x"])),
                      B.equal_to([(r["name"], r["n"], r["x"]) for r in rows]), label="all")
        names = p | "Cols" >> parquetio.ReadFromParquet(prefix + "*", columns=["name"])
        B.assert_that(names, B.equal_to([{"name": r["name"]} for r in rows]), label="cols")
