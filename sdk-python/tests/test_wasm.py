"""Wasm UDFs from Python (``oxbeam.wasm``): real guest modules — the Rust
example guests built for wasm32-unknown-unknown during the run, and WAT
guests compiled in-process — with exact outputs, the same pipeline with
native Python functions giving identical results, and guest failures
surfacing as Python exceptions that name the transform and the trap."""

import collections
import json
import os
import pathlib
import shutil
import subprocess

import pytest

import oxbeam as beam
from oxbeam import _oxbeam
from oxbeam.testing.util import assert_that, equal_to
from oxbeam.wasm import (
    WasmCombineGlobally,
    WasmCombinePerKey,
    WasmDoFn,
    WasmFilter,
    WasmFlatMap,
    WasmMap,
)
from oxbeam.window import FixedWindows, TimestampedValue

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def guest():
    """``wasm-guest/examples/guest_udfs.rs`` built for wasm32-unknown-unknown."""
    cargo = os.environ.get("CARGO") or shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is needed to build the Rust Wasm guest")
    env = dict(
        os.environ,
        # Small modules: no debug info in the guest.
        CARGO_PROFILE_RELEASE_DEBUG="0",
        CARGO_PROFILE_RELEASE_STRIP="debuginfo",
    )
    r = subprocess.run(
        [cargo, "build", "-q", "-p", "oxbeam-wasm-guest", "--target", "wasm32-unknown-unknown",
         "--release", "--example", "guest_udfs"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert r.returncode == 0, (
        "building the Wasm guest failed (rustup target add wasm32-unknown-unknown?):\n" + r.stderr
    )
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    return (target / "wasm32-unknown-unknown/release/examples/guest_udfs.wasm").read_bytes()


# ABI v1 by hand (wasm/ABI.md): input arena at 1024, outputs at 128 KiB.
WAT = r"""
(module
  (memory (export "memory") 4)
  (func (export "oxbeam_abi_version") (result i32) i32.const 1)
  (func (export "oxbeam_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.le_u (local.get $n) (i32.const 130048))
      (then (i32.const 1024)) (else (i32.const 0))))
  ;; MAP: ASCII upper-case of each value.
  (func (export "upper") (param $len i32) (result i64)
    (local $count i32) (local $i i32) (local $in i32) (local $out i32)
    (local $n i32) (local $j i32) (local $c i32)
    (local.set $count (i32.load (i32.const 1024)))
    (local.set $in (i32.const 1032))
    (local.set $out (i32.const 131072))
    (block $done
      (loop $rec
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (i32.store (i32.const 1028) (local.get $i))
        (local.set $n (i32.load (local.get $in)))
        (i32.store (local.get $out) (local.get $n))
        (local.set $in (i32.add (local.get $in) (i32.const 4)))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (local.set $j (i32.const 0))
        (block $bdone
          (loop $byte
            (br_if $bdone (i32.ge_u (local.get $j) (local.get $n)))
            (local.set $c (i32.load8_u (i32.add (local.get $in) (local.get $j))))
            (if (i32.and (i32.ge_u (local.get $c) (i32.const 97))
                         (i32.le_u (local.get $c) (i32.const 122)))
              (then (local.set $c (i32.sub (local.get $c) (i32.const 32)))))
            (i32.store8 (i32.add (local.get $out) (local.get $j)) (local.get $c))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $byte)))
        (local.set $in (i32.add (local.get $in) (local.get $n)))
        (local.set $out (i32.add (local.get $out) (local.get $n)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rec)))
    (i64.or
      (i64.shl (i64.extend_i32_u (i32.sub (local.get $out) (i32.const 131072))) (i64.const 32))
      (i64.const 131072)))
  ;; Traps on the batch's second record.
  (func (export "trap") (param i32) (result i64)
    (i32.store (i32.const 1028) (i32.const 1))
    unreachable)
  ;; Never returns.
  (func (export "spin") (param i32) (result i64)
    (i32.store (i32.const 1028) (i32.const 0))
    (loop $l (br $l))
    (i64.const 0))
)
"""


def _run(build):
    p = beam.Pipeline()
    build(p)
    p.run()


def _ascii_upper(s):
    return s.encode().upper().decode()


WORDS = ["hello", "", "Wasm 1!", "ünïcode", "x" * 300]


def test_map_strings_exactly_and_as_native():
    expected = ["HELLO", "", "WASM 1!", "üNïCODE", "X" * 300]
    assert [_ascii_upper(w) for w in WORDS] == expected
    _run(lambda p: assert_that(p | beam.Create(WORDS) | beam.Map(_ascii_upper), equal_to(expected)))


def test_rust_guest_map_strings(guest):
    expected = ["HELLO", "", "WASM 1!", "üNïCODE", "X" * 300]
    _run(lambda p: assert_that(p | beam.Create(WORDS) | WasmMap(guest, "upper"), equal_to(expected)))


def test_wat_guest_compiled_in_process():
    module = _oxbeam.wat_to_wasm(WAT)
    assert module[:4] == b"\0asm"
    expected = ["HELLO", "", "WASM 1!", "üNïCODE", "X" * 300]
    _run(lambda p: assert_that(p | beam.Create(WORDS) | WasmMap(module, "upper"), equal_to(expected)))
    # WAT text is accepted directly, too.
    _run(lambda p: assert_that(p | beam.Create(["a"]) | WasmMap(WAT, "upper"), equal_to(["A"])))


def test_map_from_a_module_file(guest, tmp_path):
    path = tmp_path / "guest.wasm"
    path.write_bytes(guest)
    _run(lambda p: assert_that(p | beam.Create(["ab"]) | WasmMap(str(path), "upper"), equal_to(["AB"])))


def _lines():
    return ["the quick brown fox %d jumps over the lazy dog %d" % (i % 7, i % 13) for i in range(3000)]


def test_wordcount_native_and_wasm_agree(guest):
    counts = collections.Counter(
        w.upper() for line in _lines() for w in line.split() if len(w) >= 3
    )
    expected = sorted(counts.items())
    assert expected[:2] == [("BROWN", 3000), ("DOG", 3000)]

    def native(p):
        out = (p
               | beam.Create(_lines())
               | beam.FlatMap(str.split)
               | beam.Filter(lambda w: len(w) >= 3)
               | beam.Map(_ascii_upper)
               | beam.combiners.Count.PerElement())
        assert_that(out, equal_to(expected))

    _run(native)
    _run(lambda p: _wasm_wordcount(p, guest, expected))


def _wasm_wordcount(p, guest, expected):
    """Words of 3+ letters, upper-cased and counted, by the Rust guest."""
    out = (p
           | beam.Create(_lines())
           | "Split" >> WasmFlatMap(guest, "tokenize")
           | "Long" >> WasmFilter(guest, "min_len", config=(3).to_bytes(4, "little"))
           | "Upper" >> WasmMap(guest, "upper")
           | beam.combiners.Count.PerElement())
    assert_that(out, equal_to(expected))


def test_ints_floats_and_bytes_cross_as_their_coders_encoding(guest):
    ints = list(range(-300, 300)) + [2**61, -(2**61)]
    halves = [1.0, -3.5, 1e300, 0.1, 0.0]
    blobs = [b"ab", b"\xff\x00z", b""]
    _run(lambda p: assert_that(
        p | beam.Create(ints) | WasmMap(guest, "double_plus_one"),
        equal_to([2 * i + 1 for i in ints])))
    _run(lambda p: assert_that(
        p | beam.Create(ints) | beam.Map(lambda i: 2 * i + 1), equal_to([2 * i + 1 for i in ints])))
    _run(lambda p: assert_that(
        p | beam.Create(halves) | WasmMap(guest, "halve"), equal_to([x / 2 for x in halves])))
    _run(lambda p: assert_that(
        p | beam.Create(blobs) | WasmMap(guest, "upper"), equal_to([b"AB", b"\xff\x00Z", b""])))


def test_output_type_is_declared_or_the_inputs(guest):
    def build(p):
        # identity over strings, re-typed as bytes: the UTF-8 bytes.
        out = p | beam.Create(["é", "a"]) | WasmMap(guest, "identity", output_type=bytes)
        assert_that(out, equal_to(["é".encode(), b"a"]))
        out2 = (p | "More" >> beam.Create(["é"])
                | "Id2" >> WasmMap(guest, "identity").with_output_types(bytes))
        assert_that(out2, equal_to(["é".encode()]), label="check2")

    _run(build)


def test_unknown_input_type_must_be_declared(guest):
    p = beam.Pipeline()
    untyped = p | beam.Create(["a"]) | beam.Map(lambda s: s)
    with pytest.raises(TypeError, match="standard Beam coder"):
        untyped | WasmMap(guest, "upper")
    # Declared: the Python Map's output gets the string coder.
    p = beam.Pipeline()
    untyped = p | beam.Create(["a", "b"]) | beam.Map(lambda s: s + "x")
    assert_that(untyped | WasmMap(guest, "upper", input_type=str), equal_to(["AX", "BX"]))
    p.run()


def test_combine_per_key_native_and_wasm_agree(guest):
    data = [("k%d" % (i % 17), i) for i in range(5000)]
    sums = collections.defaultdict(int)
    for k, v in data:
        sums[k] += v
    expected = sorted(sums.items())
    _run(lambda p: assert_that(
        p | beam.Create(data) | beam.CombinePerKey(sum), equal_to(expected)))
    _run(lambda p: assert_that(
        p | beam.Create(data) | WasmCombinePerKey(guest, "sum"), equal_to(expected)))


def test_combine_per_key_min_max_count_mean(guest):
    data = [("a", 3), ("a", -2), ("b", 5), ("a", 4)]

    def build(p):
        pc = p | beam.Create(data)
        assert_that(pc | "Min" >> WasmCombinePerKey(guest, "min"),
                    equal_to([("a", -2), ("b", 5)]), label="min")
        assert_that(pc | "Max" >> WasmCombinePerKey(guest, "max"),
                    equal_to([("a", 4), ("b", 5)]), label="max")
        assert_that(pc | "Count" >> WasmCombinePerKey(guest, "count"),
                    equal_to([("a", 3), ("b", 1)]), label="count")
        assert_that(pc | "Mean" >> WasmCombinePerKey(guest, "mean", output_type=float),
                    equal_to([("a", 5 / 3), ("b", 5.0)]), label="mean")

    _run(build)


def test_combine_globally_with_and_without_defaults(guest):
    def build(p):
        nums = p | "Nums" >> beam.Create(list(range(1, 101)))
        assert_that(nums | "Sum" >> WasmCombineGlobally(guest, "sum"), equal_to([5050]), label="sum")
        assert_that(nums | "Native" >> beam.CombineGlobally(sum), equal_to([5050]), label="native")
        none = nums | "None" >> beam.Filter(lambda x: x > 1000).with_output_types(int)
        assert_that(none | "SumNone" >> WasmCombineGlobally(guest, "sum"), equal_to([0]),
                    label="default")
        assert_that(none | "NativeNone" >> beam.CombineGlobally(sum), equal_to([0]),
                    label="native default")
        assert_that(none | "NoDefault" >> WasmCombineGlobally(guest, "sum").without_defaults(),
                    equal_to([]), label="without defaults")
        words = p | "Words" >> beam.Create(["a", "bb", "a"])
        assert_that(words | "Count" >> WasmCombineGlobally(guest, "count", output_type=int),
                    equal_to([3]), label="count")

    _run(build)


def test_do_fn_sees_timestamps_and_windows(guest):
    def build(p):
        out = (p
               | beam.Create([("a", 1), ("b", 70)])
               | beam.Map(lambda kv: TimestampedValue(kv, kv[1])).with_output_types(
                   beam.typehints.KV[str, int])
               | beam.WindowInto(FixedWindows(60))
               | WasmDoFn(guest, "describe", output_type=beam.typehints.KV[str, str])
               | beam.Map(lambda kv, ts=beam.DoFn.TimestampParam: (kv[0], kv[1], ts.micros)))
        assert_that(out, equal_to([
            ("a", "1@[0,60000)", 1_001_000),
            ("b", "70@[60000,120000)", 70_001_000),
        ]))

    _run(build)


def test_trapping_guest_raises_naming_transform_and_trap(guest):
    p = beam.Pipeline()
    p | beam.Create(["a", "boom", "c"]) | "Explode" >> WasmMap(guest, "boom")
    with pytest.raises(beam.UserCodeError) as info:
        p.run()
    e = info.value
    msg = str(e)
    assert "Explode" in msg, msg
    assert "wasm trap" in msg and "unreachable" in msg, msg
    assert "guest panicked on purpose" in msg, msg
    assert e.transform == "Explode"
    assert e.element == "boom"


def test_wat_trap_and_deadline():
    module = _oxbeam.wat_to_wasm(WAT)
    p = beam.Pipeline()
    p | beam.Create(["x", "y"]) | "Trap" >> WasmMap(module, "trap")
    with pytest.raises(beam.UserCodeError) as info:
        p.run()
    assert "user code failed in transform 'Trap': wasm trap in trap" in str(info.value)
    assert info.value.element == "y"

    p = beam.Pipeline()
    p | beam.Create(["x"]) | "Spin" >> WasmMap(module, "spin", bundle_deadline_ms=200)
    with pytest.raises(beam.UserCodeError, match="deadline exceeded: spin ran past the bundle "
                                                 "deadline of 200 ms") as info:
        p.run()
    assert info.value.transform == "Spin"


def test_the_proto_names_the_wasm_environment_and_function(guest):
    p = beam.Pipeline()
    p | beam.Create(["a"]) | "Upper" >> WasmMap(guest, "upper", config=b"cfg")
    proto = p.to_runner_api_json()
    env = proto["components"]["environments"]["oxbeam-wasm"]
    assert env == {"urn": "oxbeam:env:wasm:v1"}
    t = proto["components"]["transforms"]["Upper"]
    assert t["environmentId"] == "oxbeam-wasm"
    assert t["spec"]["urn"] == "beam:transform:pardo:v1"
    pardo = json.loads(_oxbeam.decode_proto(
        "org.apache.beam.model.pipeline.v1.ParDoPayload",
        __import__("base64").b64decode(t["spec"]["payload"])))
    assert pardo["doFn"]["urn"] == "oxbeam:fn:wasm_do_fn:v1"
    payload = json.loads(_oxbeam.decode_proto(
        "oxbeam.model.v1.WasmFunctionPayload",
        __import__("base64").b64decode(pardo["doFn"]["payload"])))
    assert payload["exportName"] == "upper"
    assert payload["kind"] == "WASM_FUNCTION_KIND_MAP"
    assert payload["abiVersion"] == 1
    assert __import__("base64").b64decode(payload["config"]) == b"cfg"
    in_pc = proto["components"]["pcollections"][t["inputs"]["0"]]
    assert in_pc["coderId"] == "string_utf8"


def test_bad_modules_fail_clearly(guest):
    with pytest.raises(ValueError, match="not a WebAssembly module"):
        WasmMap(b"\x00\x01garbage", "f")
    p = beam.Pipeline()
    p | beam.Create(["a"]) | "Missing" >> WasmMap(guest, "no_such_export")
    with pytest.raises(beam.OxbeamError, match='export "no_such_export" is missing'):
        p.run()


@pytest.mark.skipif(not os.environ.get("OXBEAM_BIN"), reason="needs OXBEAM_BIN (the oxbeam binary)")
def test_wasm_stages_on_the_job_server(guest, oxbeam_job_server):
    # Submitted with --runner=PortableRunner: the Wasm stages run in the
    # Python workers the job server starts, next to the Python stages.
    from oxbeam.options.pipeline_options import PipelineOptions

    expected = sorted(collections.Counter(
        w.upper() for line in _lines() for w in line.split() if len(w) >= 3).items())
    p = beam.Pipeline(options=PipelineOptions(
        ["--runner=PortableRunner", "--job_endpoint=%s" % oxbeam_job_server]))
    _wasm_wordcount(p, guest, expected)
    p.run()


# A WASI preview 1 guest by hand: each output is two characters, the number
# of environment variables it sees and whether it may read the clock.
WASI_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 4)
  (func (export "oxbeam_abi_version") (result i32) i32.const 1)
  (func (export "oxbeam_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.le_u (local.get $n) (i32.const 130048))
      (then (i32.const 1024)) (else (i32.const 0))))
  (func (export "probe") (param $len i32) (result i64)
    (local $count i32) (local $i i32) (local $out i32) (local $clock i32)
    (drop (call $env_sizes (i32.const 0x100) (i32.const 0x104)))
    (local.set $clock
      (select (i32.const 121) (i32.const 110)
        (i32.eqz (call $clock (i32.const 0) (i64.const 1) (i32.const 0x108)))))
    (local.set $count (i32.load (i32.const 1024)))
    (local.set $out (i32.const 131072))
    (block $done
      (loop $rec
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (i32.store (local.get $out) (i32.const 2))
        (i32.store8 (i32.add (local.get $out) (i32.const 4))
          (i32.add (i32.const 48) (i32.load (i32.const 0x100))))
        (i32.store8 (i32.add (local.get $out) (i32.const 5)) (local.get $clock))
        (local.set $out (i32.add (local.get $out) (i32.const 6)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rec)))
    (i64.or
      (i64.shl (i64.extend_i32_u (i32.sub (local.get $out) (i32.const 131072))) (i64.const 32))
      (i64.const 131072)))
)
"""


def test_wasi_is_denied_by_default_and_granted_per_transform():
    _run(lambda p: assert_that(p | beam.Create(["a", "b"]) | WasmMap(WASI_WAT, "probe"),
                               equal_to(["0n", "0n"])))
    _run(lambda p: assert_that(
        p | beam.Create(["a"]) | WasmMap(WASI_WAT, "probe", env={"A": "1", "B": "2"}, clock=True),
        equal_to(["2y"])))
    with pytest.raises(TypeError, match="env must map variable names"):
        WasmMap(WASI_WAT, "probe", env={"A=B": "1"})
