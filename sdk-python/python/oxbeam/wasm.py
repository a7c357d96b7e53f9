"""WebAssembly user functions: sandboxed, portable UDFs in Python pipelines.

A Wasm transform names an export of a WebAssembly module written against
Oxbeam's Wasm ABI (``wasm/ABI.md``): built from Rust with the
``oxbeam-wasm-guest`` crate, or from any language that can export the ABI's
handful of functions (WAT, C, ...). The module runs in Oxbeam's Wasm executor
(wasmtime), not in Python: no Python call per element or batch, no access to
files or network, no clock or environment unless granted, a memory cap (64 MiB
by default) and a deadline per bundle::

    import oxbeam as beam
    from oxbeam.wasm import WasmFilter, WasmFlatMap, WasmMap

    guest = "target/wasm32-unknown-unknown/release/examples/guest_udfs.wasm"
    with beam.Pipeline() as p:
        words = (p
                 | beam.Create(["the quick brown fox"])
                 | WasmFlatMap(guest, "tokenize")
                 | WasmFilter(guest, "min_len", config=(3).to_bytes(4, "little"))
                 | WasmMap(guest, "upper"))

(build that module with ``cargo build -p oxbeam-wasm-guest --target
wasm32-unknown-unknown --release --example guest_udfs``).

Transforms (``module`` is the ``.wasm`` bytes, a path to a ``.wasm`` file, or
WebAssembly text; ``export`` the function's name):

========================== ===================================================
``WasmMap``                one output per element (timestamp, windows kept)
``WasmFlatMap``            zero or more outputs per element
``WasmFilter``             keeps the elements the function accepts
``WasmDoFn``               sees key, value, timestamp and window; sets output
                           timestamps
``WasmCombinePerKey``      a Wasm CombineFn per key (lifted before the shuffle)
``WasmCombineGlobally``    a Wasm CombineFn over the whole collection (per
                           window); the empty global window gives the fn's
                           result for no input
========================== ===================================================

**Element types.** Values cross into the guest as their Beam coder's
encoding (outer context): raw UTF-8 for ``str``, raw bytes for ``bytes``, a
varint for ``int``, a big-endian IEEE double for ``float``, one byte for
``bool``; a ``(key, value)`` pair is the key's nested encoding then the
value's. So the input and output element types must have standard coders:
``str``, ``bytes``, ``int``, ``float``, ``bool`` and ``KV`` / ``Iterable`` of
them. The input type is the input PCollection's (``Create`` infers it; declare
it on a Python producer with ``.with_output_types(str)``, or on the Wasm
transform with ``input_type=`` / ``.with_input_types()``); the output type
defaults to the input's, set it with ``output_type=`` or
``.with_output_types()``.

**Options** of every transform: ``config`` (bytes handed to the module's
``oxbeam_configure`` once per instance), ``max_memory_bytes``,
``bundle_deadline_ms`` and ``fuel_per_bundle`` (0: the executor's defaults;
fuel makes the budget deterministic).

**WASI.** Modules built for ``wasm32-wasip1`` import WASI preview 1
functions; the host provides them deny by default: no files, no network, an
empty environment, and clocks and random bytes answering ``ENOTCAPABLE``.
Grant per transform with ``env={"NAME": "value"}``, ``clock=True`` and
``random=True``. What the guest writes to standard output and error goes to
the runner's standard error and into the transform's error messages.

**Errors.** A guest that traps, panics, returns an error, runs past its
deadline, exceeds its memory cap or returns malformed output fails the
pipeline with :class:`oxbeam.UserCodeError`, whose message and ``transform``
attribute name the transform, and whose message shows the trap and the
element.
"""

import base64
import os

from oxbeam import typehints
from oxbeam.pvalue import AsList, PCollection
from oxbeam.transforms.core import Create, FlatMap, GroupByKey
from oxbeam.transforms.ptransform import PTransform
from oxbeam.window import GlobalWindows

__all__ = [
    "ENVIRONMENT_ID",
    "WasmMap",
    "WasmFlatMap",
    "WasmFilter",
    "WasmDoFn",
    "WasmCombinePerKey",
    "WasmCombineGlobally",
]

#: Id of the Wasm environment in the pipeline proto (URN ``oxbeam:env:wasm:v1``).
ENVIRONMENT_ID = "oxbeam-wasm"

_SIMPLE = (int, str, bytes, float, bool)


def _module_bytes(module):
    """The binary module for ``module``: bytes, a path, or WebAssembly text."""
    from oxbeam import _oxbeam

    if isinstance(module, (bytes, bytearray, memoryview)):
        data = bytes(module)
    elif isinstance(module, (str, os.PathLike)):
        text = str(module)
        if text.lstrip().startswith("("):
            return _oxbeam.wat_to_wasm(text)
        with open(module, "rb") as f:
            data = f.read()
    else:
        raise TypeError("a Wasm module is bytes, a file path or WAT text, got %r" % (module,))
    if data[:4] == b"\0asm":
        return data
    try:
        return _oxbeam.wat_to_wasm(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError("not a WebAssembly module (binary or text): %s" % e) from None


def _is_standard(t):
    if t in _SIMPLE:
        return True
    if typehints.is_kv(t):
        return _is_standard(t.key) and _is_standard(t.value)
    if isinstance(t, typehints._Iter):
        return _is_standard(t.element)
    return False


def _require_standard(t, what, label):
    if not _is_standard(t):
        raise TypeError(
            "%s: the %s element type must have a standard Beam coder (str, bytes, int, "
            "float, bool, or KV/Iterable of them) because values cross into Wasm in their "
            "coder's encoding; got %r. Declare it with .with_output_types(...) on the "
            "producing transform, or input_type=/output_type= here." % (label, what, t)
        )


def _b64(b):
    return base64.b64encode(b).decode("ascii")


class _WasmFunction(object):
    """One export of a module, its config and limits: a ``WasmFunctionPayload``."""

    def __init__(self, module, export, config, max_memory_bytes, bundle_deadline_ms,
                 fuel_per_bundle, env=None, clock=False, random=False):
        if not isinstance(export, str) or not export:
            raise TypeError("the export name must be a non-empty str, got %r" % (export,))
        if not isinstance(config, (bytes, bytearray, memoryview)):
            raise TypeError("config must be bytes, got %r" % (config,))
        self.module = _module_bytes(module)
        self.export = export
        self.config = bytes(config)
        self.limits = {
            "maxMemoryBytes": str(int(max_memory_bytes)),
            "bundleDeadlineMillis": str(int(bundle_deadline_ms)),
            "fuelPerBundle": str(int(fuel_per_bundle)),
        }
        env = dict(env or {})
        for k, v in env.items():
            if not isinstance(k, str) or not isinstance(v, str) or not k or "=" in k:
                raise TypeError("env must map variable names (str, no '=') to str values, "
                                "got %r: %r" % (k, v))
        self.grants = {}
        if env:
            self.grants["env"] = ["%s=%s" % kv for kv in sorted(env.items())]
        if clock:
            self.grants["clock"] = True
        if random:
            self.grants["random"] = True

    def spec(self, b, urn_key, kind):
        """The ``FunctionSpec`` (proto3 JSON) of this function as ``kind``."""
        b.environments[ENVIRONMENT_ID] = {"urn": b.urn("wasm_functions::ENVIRONMENT")}
        payload = {
            "moduleBytes": b.bytes_field(self.module),
            "exportName": self.export,
            "kind": "WASM_FUNCTION_KIND_" + kind,
            "config": _b64(self.config),
            "display": "wasm:" + self.export,
            "abiVersion": 1,
        }
        if any(v != "0" for v in self.limits.values()):
            payload["limits"] = self.limits
        if self.grants:
            payload["grants"] = self.grants
        encoded = b.encode("oxbeam.model.v1.WasmFunctionPayload", payload)
        return {"urn": b.urn(urn_key), "payload": b.bytes_field(encoded)}


def _par_do_payload(fn, kind):
    def payload(b):
        msg = {"doFn": fn.spec(b, "wasm_functions::DO_FN", kind)}
        return b.encode("org.apache.beam.model.pipeline.v1.ParDoPayload", msg)

    return payload


def _combine_payload(fn, accumulator_type):
    def payload(b):
        msg = {
            "combineFn": fn.spec(b, "wasm_functions::COMBINE_FN", "COMBINE"),
            "accumulatorCoderId": b.coder(accumulator_type),
        }
        return b.encode("org.apache.beam.model.pipeline.v1.CombinePayload", msg)

    return payload


class _WasmTransform(PTransform):
    """Shared by the Wasm transforms: the function, and declared types."""

    def __init__(self, module, export, config=b"", output_type=None, input_type=None,
                 max_memory_bytes=0, bundle_deadline_ms=0, fuel_per_bundle=0, env=None,
                 clock=False, random=False):
        PTransform.__init__(self)
        self._fn = _WasmFunction(module, export, config, max_memory_bytes, bundle_deadline_ms,
                                 fuel_per_bundle, env, clock, random)
        self._input_type = None if input_type is None else typehints.normalize(input_type)
        if output_type is not None:
            self._output_type = typehints.normalize(output_type)

    def default_label(self):
        return "%s(%s)" % (type(self).__name__, self._fn.export)

    def with_input_types(self, input_type, *args, **kwargs):
        """Declares the input element type (needed when the input
        PCollection's type is unknown)."""
        self._input_type = typehints.normalize(input_type)
        return self

    def _input(self, pcoll):
        """The input PCollection's element type, checked; an unknown (Any)
        type becomes the declared one, so its producer encodes it with the
        standard coder the guest expects."""
        if not isinstance(pcoll, PCollection):
            raise TypeError("%s must be applied to a PCollection, got %r" % (self.label, pcoll))
        t = pcoll.element_type
        declared = self._input_type
        if declared is not None:
            _require_standard(declared, "input", self.label)
            if t is typehints.Any:
                pcoll.element_type = declared
                return declared
            if t != declared:
                raise TypeError(
                    "%s: declared input type %r, but the input PCollection has %r"
                    % (self.label, declared, t)
                )
        _require_standard(t, "input", self.label)
        return t


class _WasmParDo(_WasmTransform):
    _kind = None

    def _output_for(self, in_t):
        return self._output_type if self._output_type is not None else in_t

    def expand(self, pcoll):
        in_t = self._input(pcoll)
        out_t = self._output_for(in_t)
        _require_standard(out_t, "output", self.label)
        node = pcoll.pipeline._current()
        node.primitive = (
            "standard_p_transforms::primitives::PAR_DO",
            _par_do_payload(self._fn, self._kind),
            ENVIRONMENT_ID,
        )
        return node._add_output("None", out_t, pcoll.windowing)


class WasmMap(_WasmParDo):
    """One output per element from the Wasm export ``export`` (ABI kind
    ``MAP``); timestamp, windows and pane are kept.

    ``WasmMap(module, export, config=b"", output_type=None, input_type=None,
    max_memory_bytes=0, bundle_deadline_ms=0, fuel_per_bundle=0)``.
    """

    _kind = "MAP"


class WasmFlatMap(_WasmParDo):
    """Zero or more outputs per element (ABI kind ``FLAT_MAP``), each with the
    element's timestamp and windows. Arguments as :class:`WasmMap`."""

    _kind = "FLAT_MAP"


class WasmFilter(_WasmParDo):
    """The elements the export accepts (ABI kind ``FILTER``), unchanged (the
    output type is the input's). Arguments as :class:`WasmMap`."""

    _kind = "FILTER"

    def _output_for(self, in_t):
        return in_t


class WasmDoFn(_WasmParDo):
    """A DoFn (ABI kind ``DO_FN``): the export sees each element's key (for
    ``KV`` inputs), value, timestamp and window, once per window, and emits
    outputs with their timestamps. Arguments as :class:`WasmMap`."""

    _kind = "DO_FN"


class _WasmCombineGroupedValues(_WasmTransform):
    """``(key, [values])`` → ``(key, result)`` in Wasm."""

    def __init__(self, fn, accumulator_type):
        PTransform.__init__(self)
        self._fn = fn
        self._input_type = None
        self._accumulator_type = accumulator_type

    def expand(self, pcoll):
        node = pcoll.pipeline._current()
        node.primitive = (
            "standard_p_transforms::combine_components::COMBINE_GROUPED_VALUES",
            _combine_payload(self._fn, self._accumulator_type),
            ENVIRONMENT_ID,
        )
        return node._add_output("None", self._output_type, pcoll.windowing)


class WasmCombinePerKey(_WasmTransform):
    """Combines the values of each key (and window) with a Wasm CombineFn
    (ABI kind ``COMBINE``: create / add inputs / merge accumulators /
    extract output): ``(key, value)`` → ``(key, result)``. The runner lifts
    it before the shuffle, so only accumulators are shuffled.

    ``output_type`` is the result's type (default: the value type);
    ``accumulator_type`` the type whose coder carries accumulators between
    phases (default ``bytes``: the guest's accumulator encoding as is). Other
    arguments as :class:`WasmMap`.
    """

    def __init__(self, module, export, config=b"", output_type=None, input_type=None,
                 accumulator_type=bytes, **limits):
        _WasmTransform.__init__(self, module, export, config, output_type, input_type, **limits)
        self._accumulator_type = typehints.normalize(accumulator_type)

    def expand(self, pcoll):
        in_t = self._input(pcoll)
        if not typehints.is_kv(in_t):
            raise TypeError("%s: the input must be (key, value) pairs, got %r" % (self.label, in_t))
        out_t = self._output_type if self._output_type is not None else in_t.value
        _require_standard(out_t, "output", self.label)
        _require_standard(self._accumulator_type, "accumulator", self.label)
        node = pcoll.pipeline._current()
        node.primitive = (
            "standard_p_transforms::composites::COMBINE_PER_KEY",
            _combine_payload(self._fn, self._accumulator_type),
            False,
        )
        grouped = pcoll | "GroupByKey" >> GroupByKey()
        combine = _WasmCombineGroupedValues(self._fn, self._accumulator_type)
        return grouped | "Combine" >> combine.with_output_types(typehints.KV[in_t.key, out_t])


# Keys values with b"" and back, in Wasm: a kv<bytes, V> in the outer context
# is the key's nested encoding (one 0x00 byte for b"") then V's outer encoding.
_KEYING_WAT = r"""
(module
  (memory (export "memory") 2)
  (global $cap (mut i32) (i32.const 0))
  (func (export "oxbeam_abi_version") (result i32) i32.const 1)
  ;; Input arena at 64 KiB; outputs after it (at most 1.25x the input).
  (func (export "oxbeam_alloc") (param $n i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.add (i32.const 2)
      (i32.shr_u (i32.mul (local.get $n) (i32.const 3)) (i32.const 16))))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
        (then (return (i32.const 0))))))
    (global.set $cap (local.get $n))
    (i32.const 65536))
  (func $pack (param $out i32) (param $start i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (i32.sub (local.get $out) (local.get $start))) (i64.const 32))
            (i64.extend_i32_u (local.get $start))))
  ;; MAP v -> kv(b"", v)
  (func (export "key_with_empty") (param $len i32) (result i64)
    (local $count i32) (local $i i32) (local $in i32) (local $out i32) (local $n i32) (local $start i32)
    (local.set $count (i32.load (i32.const 65536)))
    (local.set $in (i32.const 65544))
    (local.set $start (i32.add (i32.const 65536) (global.get $cap)))
    (local.set $out (local.get $start))
    (block $done (loop $rec
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (i32.store (i32.const 65540) (local.get $i))
      (local.set $n (i32.load (local.get $in)))
      (i32.store (local.get $out) (i32.add (local.get $n) (i32.const 1)))
      (i32.store8 (i32.add (local.get $out) (i32.const 4)) (i32.const 0))
      (memory.copy (i32.add (local.get $out) (i32.const 5))
                   (i32.add (local.get $in) (i32.const 4)) (local.get $n))
      (local.set $in (i32.add (local.get $in) (i32.add (local.get $n) (i32.const 4))))
      (local.set $out (i32.add (local.get $out) (i32.add (local.get $n) (i32.const 5))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $rec)))
    (call $pack (local.get $out) (local.get $start)))
  ;; MAP kv(b"", v) -> v
  (func (export "drop_empty_key") (param $len i32) (result i64)
    (local $count i32) (local $i i32) (local $in i32) (local $out i32) (local $n i32) (local $start i32)
    (local.set $count (i32.load (i32.const 65536)))
    (local.set $in (i32.const 65544))
    (local.set $start (i32.add (i32.const 65536) (global.get $cap)))
    (local.set $out (local.get $start))
    (block $done (loop $rec
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (i32.store (i32.const 65540) (local.get $i))
      (local.set $n (i32.load (local.get $in)))
      (if (i32.or (i32.eqz (local.get $n))
                  (i32.load8_u (i32.add (local.get $in) (i32.const 4))))
        (then unreachable))
      (i32.store (local.get $out) (i32.sub (local.get $n) (i32.const 1)))
      (memory.copy (i32.add (local.get $out) (i32.const 4))
                   (i32.add (local.get $in) (i32.const 5)) (i32.sub (local.get $n) (i32.const 1)))
      (local.set $in (i32.add (local.get $in) (i32.add (local.get $n) (i32.const 4))))
      (local.set $out (i32.add (local.get $out) (i32.add (local.get $n) (i32.const 3))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $rec)))
    (call $pack (local.get $out) (local.get $start)))
)
"""

_keying_module = None


def _keying():
    global _keying_module
    if _keying_module is None:
        from oxbeam import _oxbeam

        _keying_module = _oxbeam.wat_to_wasm(_KEYING_WAT)
    return _keying_module


def _pick_default(_, combined, default):
    return combined if combined else default


class WasmCombineGlobally(_WasmTransform):
    """Combines all elements (per window) into one value with a Wasm
    CombineFn (ABI kind ``COMBINE``). In the global window an empty input
    gives the CombineFn's result for no input (``extract(create())``), as in
    Beam; :meth:`without_defaults` drops that. Arguments as
    :class:`WasmCombinePerKey`.
    """

    def __init__(self, module, export, config=b"", output_type=None, input_type=None,
                 accumulator_type=bytes, **limits):
        _WasmTransform.__init__(self, module, export, config, output_type, input_type, **limits)
        self._accumulator_type = typehints.normalize(accumulator_type)
        self._limits = limits
        self.has_defaults = True

    def without_defaults(self):
        """No output for an empty input."""
        self.has_defaults = False
        return self

    def expand(self, pcoll):
        in_t = self._input(pcoll)
        out_t = self._output_type if self._output_type is not None else in_t
        _require_standard(out_t, "output", self.label)
        keyed_t = typehints.KV[bytes, in_t]
        per_key = WasmCombinePerKey(
            self._fn.module, self._fn.export, self._fn.config, out_t,
            accumulator_type=self._accumulator_type, **self._limits
        )
        combined = (
            pcoll
            | "KeyWithEmpty" >> WasmMap(_keying(), "key_with_empty", output_type=keyed_t)
            | "CombinePerKey" >> per_key
            | "DropKey" >> WasmMap(_keying(), "drop_empty_key", output_type=out_t)
        )
        window_fn = getattr(pcoll.windowing, "windowfn", pcoll.windowing)
        if not self.has_defaults or not isinstance(window_fn, GlobalWindows):
            return combined
        # The result for no input: the fn over one empty group.
        p = pcoll.pipeline
        default = (
            p
            | "EmptyGroup" >> Create([(b"", [])]).with_output_types(
                typehints.KV[bytes, typehints.iterable_of(in_t)])
            | "CombineEmptyGroup" >> _WasmCombineGroupedValues(
                self._fn, self._accumulator_type).with_output_types(typehints.KV[bytes, out_t])
            | "DropDefaultKey" >> WasmMap(_keying(), "drop_empty_key", output_type=out_t)
        )
        return (
            p
            | "DoOnce" >> Create([None])
            | "InjectDefault" >> FlatMap(_pick_default, AsList(combined), AsList(default))
            .with_output_types(out_t)
        )
