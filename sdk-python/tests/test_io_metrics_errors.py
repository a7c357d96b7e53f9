"""Text IO, metrics, options, errors and the emitted proto."""

import glob
import json
import os

import pytest


def _read_all(prefix):
    lines = []
    for f in sorted(glob.glob(prefix + "*")):
        with open(f) as fh:
            lines.extend(fh.read().splitlines())
    return sorted(lines)


def test_read_from_text(B, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("line one\r\nline two\n\nlast")
    with B.pipeline() as p:
        out = p | B.beam.io.ReadFromText(str(path))
        B.assert_that(out, B.equal_to(["line one", "line two", "", "last"]))


def test_read_from_text_glob_and_header(B, tmp_path):
    (tmp_path / "a.csv").write_text("h\n1\n2\n")
    (tmp_path / "b.csv").write_text("h\n3\n")
    with B.pipeline() as p:
        out = p | B.beam.io.ReadFromText(str(tmp_path / "*.csv"), skip_header_lines=1)
        B.assert_that(out, B.equal_to(["1", "2", "3"]))


def test_read_from_text_with_filename(B, tmp_path):
    (tmp_path / "a.txt").write_text("h\n1\n2\n")
    (tmp_path / "b.txt").write_text("h\n3")
    a, b = str(tmp_path / "a.txt"), str(tmp_path / "b.txt")
    with B.pipeline() as p:
        out = p | B.beam.io.ReadFromTextWithFilename(str(tmp_path / "*.txt"), skip_header_lines=1)
        B.assert_that(out, B.equal_to([(a, "1"), (a, "2"), (b, "3")]))
        every = (p | "Patterns" >> B.beam.Create([a, b])
                 | B.beam.io.ReadAllFromText(with_filename=True))
        B.assert_that(every, B.equal_to([(a, "h"), (a, "1"), (a, "2"), (b, "h"), (b, "3")]),
                      label="All")


def test_write_to_text(B, tmp_path):
    prefix = str(tmp_path / B.name / "out")
    with B.pipeline() as p:
        p | B.beam.Create(["b", "a", "c"]) | B.beam.io.WriteToText(prefix, file_name_suffix=".txt")
    assert _read_all(prefix) == ["a", "b", "c"]
    assert all(f.endswith(".txt") for f in glob.glob(prefix + "*"))


def test_write_to_text_single_shard_name(B, tmp_path):
    prefix = str(tmp_path / B.name / "out")
    with B.pipeline() as p:
        p | B.beam.Create([1, 2]) | B.beam.io.WriteToText(prefix, num_shards=1, shard_name_template="")
    with open(prefix) as f:
        assert sorted(f.read().splitlines()) == ["1", "2"]


def test_read_missing_file_fails_at_construction(B, tmp_path):
    with pytest.raises(IOError):
        B.beam.io.ReadFromText(str(tmp_path / "nope*.txt"))


def test_counter_and_distribution(B):
    beam = B.beam

    class Count(beam.DoFn):
        def __init__(self):
            self.seen = beam.metrics.Metrics.counter("ns", "seen")
            self.sizes = beam.metrics.Metrics.distribution("ns", "sizes")

        def process(self, element):
            self.seen.inc()
            self.sizes.update(len(element))
            yield element

    p = B.pipeline()
    p | beam.Create(["a", "bb", "cccc"]) | "Counting" >> beam.ParDo(Count())
    result = p.run()
    result.wait_until_finish()
    q = result.metrics().query(beam.metrics.MetricsFilter().with_name("seen"))
    assert [c.committed for c in q["counters"]] == [3]
    assert q["counters"][0].key.metric.namespace == "ns"
    assert "Counting" in q["counters"][0].key.step
    d = result.metrics().query(beam.metrics.MetricsFilter().with_name("sizes"))["distributions"]
    assert [(x.committed.count, x.committed.sum, x.committed.min, x.committed.max) for x in d] == [(3, 7, 1, 4)]


def test_counter_in_map(B):
    beam = B.beam
    c = beam.metrics.Metrics.counter("m", "odd")

    def f(x):
        if x % 2:
            c.inc(x)
        return x

    p = B.pipeline()
    p | beam.Create([1, 2, 3]) | beam.Map(f)
    r = p.run()
    r.wait_until_finish()
    assert [x.committed for x in r.metrics().query()["counters"] if x.key.metric.name == "odd"] == [4]


def test_user_exception_carries_label_element_traceback(B):
    beam = B.beam

    def boom(x):
        if x == 3:
            raise ValueError("bad element %d" % x)
        return x

    with pytest.raises(ValueError) as info:
        with B.pipeline() as p:
            p | beam.Create([1, 2, 3]) | "Explode" >> beam.Map(boom)
    msg = str(info.value)
    assert "bad element 3" in msg
    assert "Explode" in msg
    if B.name == "oxbeam":
        assert info.value.transform == "Explode"
        assert info.value.element == "3"
        assert "Traceback" in info.value.traceback_text and "boom" in info.value.traceback_text


def test_exception_in_dofn_setup(ox):
    beam = ox.beam

    class Bad(beam.DoFn):
        def setup(self):
            raise RuntimeError("no setup for you")

        def process(self, x):
            yield x

    with pytest.raises(RuntimeError, match="no setup for you"):
        with beam.Pipeline() as p:
            p | beam.Create([1]) | beam.ParDo(Bad())


def test_exception_in_combine_fn(ox):
    beam = ox.beam

    class Bad(beam.CombineFn):
        def create_accumulator(self):
            return 0

        def add_input(self, a, x):
            return a + 1 / x

        def merge_accumulators(self, accs):
            return sum(accs)

        def extract_output(self, a):
            return a

    with pytest.raises(ZeroDivisionError) as info:
        with beam.Pipeline() as p:
            p | beam.Create([("k", 1), ("k", 0)]) | "C" >> beam.CombinePerKey(Bad())
    assert "C/" in info.value.transform
    assert info.value.element == "('k', 0)"


def test_type_mismatch_with_declared_output_type(ox):
    beam = ox.beam
    with pytest.raises(ValueError, match="does not match the PCollection's coder"):
        with beam.Pipeline() as p:
            out = p | beam.Create([1]) | beam.Map(lambda x: "str").with_output_types(int)
            ox.assert_that(out, ox.equal_to(["str"]))


def test_singleton_with_many_elements_fails(B):
    beam = B.beam
    with pytest.raises(Exception, match="more than one element"):
        with B.pipeline() as p:
            side = p | "S" >> beam.Create([1, 2])
            p | beam.Create([0]) | beam.Map(lambda x, s: s, beam.pvalue.AsSingleton(side))


def test_duplicate_label_is_rejected(B):
    beam = B.beam
    p = B.pipeline()
    p | "Same" >> beam.Create([1])
    with pytest.raises(RuntimeError, match="already exists"):
        p | "Same" >> beam.Create([2])


def test_unsupported_features_raise_not_implemented(ox):
    beam = ox.beam
    with pytest.raises(TypeError, match="trigger"):
        beam.WindowInto(beam.window.FixedWindows(10), trigger=object())
    with pytest.raises(NotImplementedError, match="runner"):
        beam.Pipeline(options=ox.options.PipelineOptions(["--runner=DataflowRunner"])).run()
    with pytest.raises(TypeError, match="coder must be an oxbeam.coders.Coder"):
        beam.io.WriteToText("out", coder=object())


def test_pipeline_options(ox):
    o = ox.options.PipelineOptions(["--runner=DirectRunner", "--direct_num_workers", "2", "--flag"])
    assert o.view_as(ox.options.StandardOptions).runner == "DirectRunner"
    assert o.view_as(ox.options.DirectOptions).direct_num_workers == 2
    o.view_as(ox.options.SetupOptions).save_main_session = True
    assert o.view_as(ox.options.SetupOptions).save_main_session is True
    assert o.get_all_options()["flag"] is True


@pytest.mark.parametrize("workers", ["1", "2"])
def test_direct_num_workers(ox, workers):
    beam = ox.beam
    opts = ox.options.PipelineOptions(["--direct_num_workers=" + workers])
    with beam.Pipeline(options=opts) as p:
        out = p | beam.Create(list(range(1000))) | beam.Reshuffle() | beam.Map(lambda x: x % 10) | beam.combiners.Count.PerElement()
        ox.assert_that(out, ox.equal_to([(i, 100) for i in range(10)]))


def test_run_returns_done(B):
    p = B.pipeline()
    p | B.beam.Create([1])
    assert p.run().wait_until_finish() == "DONE"


def test_proto_shape_decodes_with_beam(ox):
    """The emitted proto is a Beam Pipeline: apache_beam's classes parse it."""
    beam_runner_api_pb2 = pytest.importorskip(
        "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.beam_runner_api_pb2")
    beam = ox.beam
    p = beam.Pipeline()
    (p | beam.Create(["a", "b"]) | beam.Map(lambda w: (w, 1)) | "Sum" >> beam.CombinePerKey(sum)
     | beam.WindowInto(beam.window.FixedWindows(60)))
    proto = beam_runner_api_pb2.Pipeline.FromString(p.to_runner_api_bytes())
    t = proto.components.transforms
    assert t["Sum"].spec.urn == "beam:transform:combine_per_key:v1"
    assert [t[s].spec.urn for s in t["Sum"].subtransforms] == [
        "beam:transform:group_by_key:v1", "beam:transform:combine_grouped_values:v1"]
    assert t["Create/Impulse"].spec.urn == "beam:transform:impulse:v1"
    assert t["Create/Create"].spec.urn == "beam:transform:pardo:v1"
    pardo = beam_runner_api_pb2.ParDoPayload.FromString(t["Create/Create"].spec.payload)
    assert pardo.do_fn.urn == "oxbeam:fn:python_do_fn:v1"
    assert proto.components.environments["python"].urn == "oxbeam:env:python:v1"
    coders = proto.components.coders
    create_out = proto.components.pcollections[t["Create/Create"].outputs["None"]]
    assert coders[create_out.coder_id].spec.urn == "beam:coder:string_utf8:v1"
    kv = proto.components.pcollections[t["Sum"].inputs["0"]]
    kv_coder = coders[kv.coder_id]
    assert kv_coder.spec.urn == "beam:coder:kv:v1"
    assert [coders[c].spec.urn for c in kv_coder.component_coder_ids] == [
        "beam:coder:length_prefix:v1", "beam:coder:length_prefix:v1"]
    ws = {w.window_fn.urn for w in proto.components.windowing_strategies.values()}
    assert ws == {"beam:window_fn:global_windows:v1", "beam:window_fn:fixed_windows:v1"}


def test_encode_decode_proto_roundtrip(ox):
    from oxbeam import _oxbeam

    msg = {"doFn": {"urn": "x", "payload": "AAE="}}
    b = _oxbeam.encode_proto("org.apache.beam.model.pipeline.v1.ParDoPayload", json.dumps(msg))
    assert json.loads(_oxbeam.decode_proto("org.apache.beam.model.pipeline.v1.ParDoPayload", b)) == msg
    with pytest.raises(ValueError):
        _oxbeam.encode_proto("no.such.Message", "{}")


def test_encode_proto_takes_blobs_beside_the_json(ox):
    """Long bytes fields travel as blobs: a field naming blob i gets its bytes."""
    import base64

    from oxbeam import _oxbeam

    def ref(i):
        return base64.b64encode(_oxbeam.BLOB_MARKER + str(i).encode()).decode()

    blobs = [b"first", bytes(range(256)) * 40]
    msg = {"doFn": {"urn": "x", "payload": ref(1)}, "sideInputs": {"s": {"viewFn": {"urn": "v", "payload": ref(0)}}}}
    b = _oxbeam.encode_proto("org.apache.beam.model.pipeline.v1.ParDoPayload", json.dumps(msg), blobs)
    got = json.loads(_oxbeam.decode_proto("org.apache.beam.model.pipeline.v1.ParDoPayload", b))
    assert base64.b64decode(got["doFn"]["payload"]) == blobs[1]
    assert base64.b64decode(got["sideInputs"]["s"]["viewFn"]["payload"]) == b"first"
    with pytest.raises(ValueError, match=r'ParDoPayload: blob reference "7" names none of 2 blobs'):
        msg["doFn"]["payload"] = ref(7)
        _oxbeam.encode_proto("org.apache.beam.model.pipeline.v1.ParDoPayload", json.dumps(msg), blobs)


def test_large_payloads_encode_the_same_through_blobs(ox):
    """A large Create (8 MB of pickled values) crosses to Rust as a blob; the
    bytes are those of the self-contained JSON form."""
    from oxbeam import _oxbeam
    from oxbeam.pipeline import _BLOB_MIN

    beam = ox.beam
    p = beam.Pipeline()
    # A list (a range would stay three numbers).
    p | beam.Create(list(range(300_000))) | beam.Map(lambda x: x + 1)
    text = json.dumps(p.to_runner_api_json())
    assert base64_of(_oxbeam.BLOB_MARKER)[:8] not in text
    decode = lambda b: json.loads(_oxbeam.decode_proto("org.apache.beam.model.pipeline.v1.Pipeline", b))
    via_json = decode(_oxbeam.encode_proto("org.apache.beam.model.pipeline.v1.Pipeline", text))
    via_blobs = decode(p.to_runner_api_bytes())
    chunk = via_blobs["components"]["transforms"]["Create/Values"]["spec"]["payload"]
    assert len(chunk) > 4 * 300_000 > _BLOB_MIN
    assert via_blobs == via_json


def base64_of(b):
    import base64

    return base64.b64encode(b).decode()


def test_one_worker_unless_asked(ox, monkeypatch):
    """As Beam's DirectRunner: --direct_num_workers defaults to 1; 0 is all cores."""
    from oxbeam import _oxbeam

    seen = []
    real = _oxbeam.run_pipeline

    def spy(proto, opts):
        seen.append(opts["parallelism"])
        return real(proto, opts)

    monkeypatch.setattr(_oxbeam, "run_pipeline", spy)
    beam = ox.beam
    for args in ([], ["--direct_num_workers=0"], ["--direct_num_workers=3"]):
        with beam.Pipeline(options=ox.options.PipelineOptions(args)) as p:
            ox.assert_that(p | beam.Create([1, 2]) | beam.Map(lambda x: x * 2), ox.equal_to([2, 4]))
    assert seen == [1, os.cpu_count(), 3]
    with pytest.raises(ValueError, match="--direct_num_workers=-1: expected 0"):
        beam.Pipeline(options=ox.options.PipelineOptions(["--direct_num_workers=-1"])).run()


def test_invalid_pipeline_bytes(ox):
    from oxbeam import _oxbeam

    with pytest.raises(_oxbeam.PipelineError):
        _oxbeam.run_pipeline(b"\xff\xff\xff")


def test_gauge_and_string_set(B):
    beam = B.beam

    class Observe(beam.DoFn):
        def __init__(self):
            self.last = beam.metrics.Metrics.gauge("ns", "last")
            self.seen = beam.metrics.Metrics.string_set("ns", "seen")

        def process(self, element):
            self.last.set(len(element))
            self.seen.add(element)
            yield element

    p = B.pipeline()
    p | beam.Create(["a", "bb", "a"]) | "Observe" >> beam.ParDo(Observe())
    result = p.run()
    result.wait_until_finish()
    q = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("ns"))
    (gauge,) = q["gauges"]
    assert gauge.key.metric.name == "last" and gauge.committed.value in (1, 2)
    (strings,) = q["string_sets"]
    assert strings.committed == {"a", "bb"}
    assert "Observe" in strings.key.step


def test_write_to_text_bounded_shards(B, tmp_path):
    words = ["w%d" % i for i in range(5)]
    by_records = str(tmp_path / B.name / "records")
    by_bytes = str(tmp_path / B.name / "bytes")
    with B.pipeline() as p:
        lines = p | B.beam.Create(words)
        lines | "Records" >> B.beam.io.WriteToText(by_records, max_records_per_shard=2)
        lines | "Bytes" >> B.beam.io.WriteToText(by_bytes, max_bytes_per_shard=7)
    files = sorted(glob.glob(by_records + "*"))
    assert len(files) == 3 and all(f.endswith("-of-00003") for f in files), files
    assert sorted(len(open(f).read().splitlines()) for f in files) == [1, 2, 2]
    assert _read_all(by_records) == words
    # A shard closes once it holds 7 bytes: three 3-byte lines, then two.
    files = glob.glob(by_bytes + "*")
    assert sorted(os.path.getsize(f) for f in files) == [6, 9], files
    assert _read_all(by_bytes) == words
