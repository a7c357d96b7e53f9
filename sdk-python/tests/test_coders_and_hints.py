"""Custom coders (``coders.registry``, ``ReadFromText``/``WriteToText``
``coder=``), ``with_output_types`` decorators, ``TestPipeline``,
``FileSystems`` and ``CombineGlobally.as_singleton_view``: the same
pipelines on apache-beam and Oxbeam, exact outputs."""

import importlib
import itertools
import json
import os

import pytest

_ids = itertools.count()


class Player(object):
    """A key whose identity is its name: ``tag`` differs between equal
    players and is not encoded."""

    def __init__(self, name, tag=None):
        self.name = name
        self.tag = next(_ids) if tag is None else tag


def _player_coder(coders):
    class PlayerCoder(coders.Coder):
        def encode(self, o):
            return b"x:" + o.name.encode("utf-8")

        def decode(self, s):
            s = s.decode("utf-8")
            assert s.startswith("x:")
            return Player(s[2:], tag="decoded")

        def is_deterministic(self):
            return True

    return PlayerCoder


def test_registered_coder_groups_keys_by_its_bytes(B):
    beam = B.beam
    coders = importlib.import_module(B.name + ".coders")
    decorators = importlib.import_module(B.name + ".typehints.decorators")
    coders.registry.register_coder(Player, _player_coder(coders))

    @decorators.with_output_types(tuple[Player, int])
    def parse(line):
        name, points = line.split(",")
        return Player(name), int(points)

    with B.pipeline() as p:
        totals = (
            p
            | beam.Create(["ann,3", "bob,4", "ann,5", "cy,1", "bob,1"])
            | beam.Map(parse)
            | beam.CombinePerKey(sum)
            # A key comes out of PlayerCoder.decode: its tag says so.
            | beam.Map(lambda kv: (kv[0].name, kv[0].tag, kv[1]))
        )
        B.assert_that(totals, B.equal_to([("ann", "decoded", 8), ("bob", "decoded", 5),
                                          ("cy", "decoded", 1)]))


def test_output_type_hints_on_functions_and_dofn_classes(B):
    beam = B.beam
    typehints = importlib.import_module(B.name + ".typehints")
    coders = importlib.import_module(B.name + ".coders")
    coders.registry.register_coder(Player, _player_coder(coders))

    @typehints.with_output_types(typehints.Iterable[typehints.KV[Player, int]])
    def explode(line):
        for name in line.split():
            yield Player(name), 1

    @typehints.with_output_types(typehints.KV[Player, int])
    class Double(beam.DoFn):
        def process(self, kv):
            yield kv[0], kv[1] * 2

    with B.pipeline() as p:
        out = (
            p
            | beam.Create(["a b", "a"])
            | beam.FlatMap(explode)
            | beam.ParDo(Double())
            | beam.GroupByKey()
            | beam.Map(lambda kv: (kv[0].name, kv[0].tag, sorted(kv[1])))
        )
        B.assert_that(out, B.equal_to([("a", "decoded", [2, 2]), ("b", "decoded", [2])]))


def _json_coder(coders):
    class JsonCoder(coders.Coder):
        def encode(self, x):
            return json.dumps(x, sort_keys=True).encode("utf-8")

        def decode(self, x):
            return json.loads(x)

    return JsonCoder


def test_text_io_with_a_coder(B, tmp_path):
    beam = B.beam
    coders = importlib.import_module(B.name + ".coders")
    textio = importlib.import_module(B.name + ".io.textio")
    JsonCoder = _json_coder(coders)
    src = tmp_path / "in.json"
    src.write_text('{"team": "red", "points": 3}\n{"team": "blue", "points": 4}\n'
                   '{"team": "red", "points": 2}\n')
    out = str(tmp_path / "out")
    with B.pipeline() as p:
        _ = (
            p
            | textio.ReadFromText(str(src), coder=JsonCoder())
            | beam.Map(lambda r: (r["team"], r["points"]))
            | beam.CombinePerKey(sum)
            | beam.Map(lambda kv: {"team": kv[0], "total": kv[1]})
            | textio.WriteToText(out, coder=JsonCoder(), shard_name_template="")
        )
    with open(out) as f:
        lines = sorted(f.read().splitlines())
    assert lines == ['{"team": "blue", "total": 4}', '{"team": "red", "total": 5}']


def test_built_in_coders_encode_and_decode(B):
    coders = importlib.import_module(B.name + ".coders")
    cases = [
        (coders.VarIntCoder(), 300, b"\xac\x02"),
        (coders.VarIntCoder(), -1, b"\xff" * 9 + b"\x01"),
        (coders.StrUtf8Coder(), "hé", "hé".encode("utf-8")),
        (coders.BytesCoder(), b"\x00\x01", b"\x00\x01"),
        (coders.FloatCoder(), 0.5, b"\x3f\xe0" + b"\x00" * 6),
        (coders.BooleanCoder(), True, b"\x01"),
    ]
    for coder, value, encoded in cases:
        assert coder.encode(value) == encoded, coder
        assert coder.decode(encoded) == value, coder
        assert coder.is_deterministic()
    assert coders.PickleCoder().decode(coders.PickleCoder().encode({"a": [1]})) == {"a": [1]}
    assert not coders.PickleCoder().is_deterministic()
    assert isinstance(coders.registry.get_coder(int), coders.VarIntCoder)
    assert isinstance(coders.registry.get_coder(str), coders.StrUtf8Coder)


def test_composite_coders_encode_as_beams(B):
    # Byte for byte Beam's encodings (written out here), so a user's coder
    # built from them reads what Beam wrote.
    coders = importlib.import_module(B.name + ".coders")
    ts = importlib.import_module(B.name + ".utils.timestamp")
    cases = [
        # Components nested (strings length-prefixed), the last one outer.
        (coders.TupleCoder([coders.VarIntCoder(), coders.StrUtf8Coder()]), (1, "ab"), b"\x01ab"),
        (coders.TupleCoder([coders.StrUtf8Coder(), coders.VarIntCoder()]), ("ab", 1), b"\x02ab\x01"),
        # A 32-bit count, then each element nested.
        (coders.IterableCoder(coders.StrUtf8Coder()), ["a", "bc"], b"\x00\x00\x00\x02\x01a\x02bc"),
        (coders.ListCoder(coders.VarIntCoder()), [300], b"\x00\x00\x00\x01\xac\x02"),
        (coders.NullableCoder(coders.StrUtf8Coder()), None, b"\x00"),
        (coders.NullableCoder(coders.StrUtf8Coder()), "z", b"\x01z"),
        (coders.MapCoder(coders.StrUtf8Coder(), coders.VarIntCoder()), {"k": 2},
         b"\x00\x00\x00\x01\x01k\x02"),
        (coders.SinglePrecisionFloatCoder(), 1.5, b"\x3f\xc0\x00\x00"),
        # Milliseconds with the sign bit flipped.
        (coders.TupleCoder([coders.TimestampCoder(), coders.StrUtf8Coder()]),
         (ts.Timestamp(5), "red"), b"\x80\x00\x00\x00\x00\x00\x13\x88red"),
        (coders.TupleCoder([coders.ListCoder(coders.NullableCoder(coders.VarIntCoder())),
                            coders.BooleanCoder()]),
         ([None, 3], True), b"\x00\x00\x00\x02\x00\x01\x03\x01"),
    ]
    for coder, value, encoded in cases:
        assert coder.encode(value) == encoded, (coder, value)
        decoded = coder.decode(encoded)
        assert (list(decoded) if isinstance(value, list) else decoded) == value, (coder, decoded)


def test_as_singleton_view_of_a_global_combine(B):
    beam = B.beam
    with B.pipeline() as p:
        scores = p | beam.Create([("a", 10), ("b", 2), ("c", 6)])
        mean = (
            scores
            | beam.Values()
            | beam.CombineGlobally(beam.combiners.MeanCombineFn()).as_singleton_view()
        )
        above = scores | beam.Filter(lambda kv, m: kv[1] > m, mean)
        B.assert_that(above, B.equal_to([("a", 10)]))


@pytest.mark.parametrize("sdk", ["apache_beam", "oxbeam"])
def test_test_pipeline_options_and_blocking_run(sdk, tmp_path):
    tp = importlib.import_module(sdk + ".testing.test_pipeline")
    util = importlib.import_module(sdk + ".testing.util")
    beam = importlib.import_module(sdk)
    argv = ["--test-pipeline-options=--temp_location=%s --job_name=j1 --streaming_flag" % tmp_path]
    p = tp.TestPipeline(argv=argv)
    assert p.get_option("temp_location") == str(tmp_path)
    assert p.get_option("job_name") == "j1"
    assert p.get_option("streaming_flag", bool_option=True) is True
    assert p.get_option("missing") is None
    assert p.get_full_options_as_args(output="o", on=True) == [
        "--temp_location=%s" % tmp_path, "--job_name=j1", "--streaming_flag", "--output=o", "--on"]
    with tp.TestPipeline(argv=[]) as p:
        util.assert_that(p | beam.Create([1, 2]) | beam.Map(lambda x: x * 3),
                         util.equal_to([3, 6]))


@pytest.mark.parametrize("sdk", ["apache_beam", "oxbeam"])
def test_filesystems_and_test_utils(sdk, tmp_path):
    fs = importlib.import_module(sdk + ".io.filesystems").FileSystems
    tu = importlib.import_module(sdk + ".testing.test_utils")
    a = tu.create_file(os.path.join(str(tmp_path), "d", "a.txt"), "one\ntwo\n")
    with fs.create(os.path.join(str(tmp_path), "d", "b.txt.gz")) as f:
        f.write(b"three\n")
    matched = fs.match([os.path.join(str(tmp_path), "d", "*")])[0].metadata_list
    assert sorted(os.path.basename(m.path) for m in matched) == ["a.txt", "b.txt.gz"]
    assert {os.path.basename(m.path): m.size_in_bytes for m in matched}["a.txt"] == 8
    with fs.open(os.path.join(str(tmp_path), "d", "b.txt.gz")) as f:
        assert f.read() == b"three\n"
    assert tu.read_files_from_pattern(os.path.join(str(tmp_path), "d", "*.txt")) == "one\ntwo"
    assert fs.exists(a)
    fs.delete([a])
    assert not fs.exists(a)
    assert tu.compute_hash(["b", "a"]) == tu.compute_hash(["a", "b"])


def test_a_coder_whose_encode_does_not_return_bytes_is_named(ox):
    beam = ox.beam
    from oxbeam import coders

    class Bad(coders.Coder):
        def encode(self, v):
            return "not bytes"

        def decode(self, b):
            return b

    class Thing(object):
        pass

    coders.registry.register_coder(Thing, Bad)
    with pytest.raises(Exception, match="Bad.encode\\(\\) returned str, not bytes"):
        with ox.pipeline() as p:
            _ = (p
                 | beam.Create([1])
                 | beam.Map(lambda _: (Thing(), 1)).with_output_types(
                     beam.typehints.KV[Thing, int])
                 | beam.GroupByKey())


def test_declared_input_types_are_checked_at_construction(B):
    beam = B.beam
    typehints = importlib.import_module(B.name + ".typehints")
    p = beam.Pipeline()
    numbers = p | beam.Create(["1", "2", "3"])
    with pytest.raises(typehints.TypeCheckError):
        numbers | "Evens" >> beam.Filter(lambda x: x % 2 == 0).with_input_types(int)

    @typehints.with_input_types(int)
    class FilterEvens(beam.DoFn):
        def process(self, element):
            if element % 2 == 0:
                yield element

    with pytest.raises(typehints.TypeCheckError):
        numbers | "EvensFn" >> beam.ParDo(FilterEvens())
    pairs = p | "Pairs" >> beam.Create([("a", 1)])
    with pytest.raises(typehints.TypeCheckError):
        pairs | "Ints" >> beam.Map(lambda kv: kv).with_input_types(typehints.Tuple[int, int])
    # Consistent or unknown types pass.
    ints = p | "Ints2" >> beam.Create([1, 2])
    _ = ints | "AsFloat" >> beam.Map(lambda x: x / 2).with_input_types(float)
    _ = numbers | "AnyOk" >> beam.Map(lambda x: x).with_input_types(typehints.Any)
    _ = pairs | "KvOk" >> beam.Map(lambda kv: kv).with_input_types(typehints.Tuple[str, int])


def test_annotations_typevar_composites_and_runtime_checks(B):
    # Beam's typehints rules beyond decorators: element-parameter
    # annotations of DoFn.process, of Map functions and of composites'
    # expand(pcoll: PCollection[T]); TypeVar-bound hints of PTransform
    # classes; --no_pipeline_type_check; --runtime_type_check.
    from typing import Iterable, TypeVar

    beam = B.beam
    typehints = importlib.import_module(B.name + ".typehints")
    PCollection = importlib.import_module(B.name + ".pvalue").PCollection
    PipelineOptions = B.options.PipelineOptions

    class Evens(beam.DoFn):
        def process(self, element: int) -> Iterable[int]:
            if element % 2 == 0:
                yield element

    def to_id(element: int) -> str:
        return "id_%d" % element

    class IntToStr(beam.PTransform):
        def expand(self, pcoll: PCollection[int]) -> PCollection[str]:
            return pcoll | beam.Map(str)

    T = TypeVar("T")

    @typehints.with_input_types(T)
    @typehints.with_output_types(tuple[int, T])
    class WithLength(beam.PTransform):
        def expand(self, pcoll):
            return pcoll | beam.Map(lambda x: (len(x), x))

    p = beam.Pipeline()
    strings = p | beam.Create(["1", "2"])
    for label, bad in [("ParDo", lambda: strings | "a" >> beam.ParDo(Evens())),
                       ("Map", lambda: strings | "b" >> beam.Map(to_id)),
                       ("composite", lambda: strings | "c" >> IntToStr())]:
        with pytest.raises(typehints.TypeCheckError):
            bad()
            pytest.fail(label)
    with_lens = strings | "d" >> WithLength()
    assert with_lens.element_type == typehints.Tuple[int, str]
    with pytest.raises(typehints.TypeCheckError):
        with_lens | "e" >> beam.Map(lambda x: x).with_input_types(tuple[int, int])
    # Unchecked when asked.
    q = beam.Pipeline(options=PipelineOptions(pipeline_type_check=False))
    _ = q | beam.Create(["1"]) | beam.Map(to_id)

    # Annotated transforms on the right types run (here on ints, and the
    # composite's output coded as KV<int, str>).
    with B.pipeline() as p:
        ints = p | "Ints" >> beam.Create([1, 2, 3, 4])
        ids = ints | beam.ParDo(Evens()) | beam.Map(to_id)
        B.assert_that(ids, B.equal_to(["id_2", "id_4"]), label="ids")
        lens = ints | IntToStr() | WithLength() | beam.GroupByKey() | beam.MapTuple(
            lambda k, vs: (k, sorted(vs)))
        B.assert_that(lens, B.equal_to([(1, ["1", "2", "3", "4"])]), label="lens")

    # --runtime_type_check: outputs are checked against declared types.
    with pytest.raises(Exception, match="According to type-hint"):
        r = beam.Pipeline(options=PipelineOptions(runtime_type_check=True))
        _ = r | beam.Create(["a"]) | beam.Map(lambda x: 3).with_output_types(str)
        r.run().wait_until_finish()
    with beam.Pipeline(options=PipelineOptions(runtime_type_check=True)) as r:
        out = (r | beam.Create([1, 2])
               | beam.FlatMap(lambda x: [x, x]).with_output_types(int)
               | beam.Map(lambda x: (x, str(x))).with_output_types(typehints.Tuple[int, str]))
        B.assert_that(out, B.equal_to([(1, "1"), (1, "1"), (2, "2"), (2, "2")]))
