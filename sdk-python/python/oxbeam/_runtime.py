"""The Python side of the Python executor: runs one fused stage.

The Rust ``PythonExecutor`` builds a :class:`StageRunner` per stage and
thread from a plain description of the stage's transforms, then calls it once
per batch of decoded input elements. A batch is two parallel lists:
``values`` and ``metas``, where a meta is ``(timestamp_micros, window)`` and
consecutive elements usually share one meta object. Each operator turns a
batch into output batches with Python-level loops (``list(map(fn, values))``
for ``Map``), so the per-element cost is the user function call.

Data sinks are Rust objects (``_oxbeam.SinkBuffer``) that encode outputs.
"""

import inspect
import itertools
import pickle
import threading
import traceback
from collections import _count_elements
from operator import itemgetter, length_hint

from oxbeam._oxbeam import SumTable as _SumTable
from oxbeam._oxbeam import expand_outputs as _expand_outputs
from oxbeam._oxbeam import sum_into as _sum_into
from oxbeam.utils import _specials
from oxbeam.utils.timestamp import MIN_TIMESTAMP_MICROS, Timestamp
from oxbeam.utils.windowed_value import PANE_INFO_UNKNOWN, WindowedValue
from oxbeam.window import GlobalWindow, TimestampedValue, _from_runner_tuple

_MAX_REPR = 256
_GLOBAL = GlobalWindow()
_MISSING = object()
_first = itemgetter(0)
_PRECOMBINE_FLUSH_KEYS = 100000
# Largest batch an operator hands on when one batch in gives more out (a
# FlatMap's words of a batch of lines): small enough that the batch's
# objects are still in the core's cache when the next operator reads them
# (wordcount with 2 workers: 1.09 s at 4096, 0.96 s at 1024; a 1:1 chain
# of Maps is not affected: the executor decodes at most 2048 per batch).
_EMIT_BATCH = 1024
_second = itemgetter(1)
_none = itertools.repeat(None)


def batched(batch):
    """Marks an SDK-internal per-element helper (``Map(fn)``) with ``batch``,
    the same function over a whole list of values at C speed. Its outputs
    are never output wrappers (TaggedOutput, TimestampedValue, ...)."""

    def mark(fn):
        fn._oxbeam_batch = batch
        return fn

    return mark


def flat_batched(batch):
    """Marks an SDK-internal ``FlatMap(fn)`` helper with ``batch(values,
    metas) -> (values, metas)``, its whole-batch form (which may set output
    timestamps without making TimestampedValue wrappers)."""

    def mark(fn):
        fn._oxbeam_flat_batch = batch
        return fn

    return mark


def restore_batch(values, metas):
    """Reshuffle's ``RemoveRandomKeys``: ``(key, [(value, timestamp)])`` to
    the values at their timestamps."""
    ov = []
    om = []
    for kv, m in zip(values, metas):
        tail = m[1:]
        for v, ts in kv[1]:
            ov.append(v)
            om.append((ts.micros,) + tail)
    return ov, om


def _same_batch(values):
    return values


def key_with_none_batch(values):
    return list(zip(_none, values))


def pair_with_none_batch(values):
    return list(zip(values, _none))


def key_batch(values):
    return list(map(_first, values))


def value_batch(values):
    return list(map(_second, values))


def swap_batch(values):
    return list(zip(map(_second, values), map(_first, values)))


# Set in harness processes (``oxbeam.runners.worker``): user exceptions
# travel to the pipeline's process as text, with the exception pickled in.
REMOTE = False
_PICKLED_MARK = "\n[oxbeam pickled exception: "


def format_exception(exc):
    """The traceback text of ``exc`` (in a harness process, followed by the
    pickled exception and element, see :func:`split_remote_error`)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if REMOTE:
        import base64

        import cloudpickle

        ctx = getattr(exc, "_oxbeam_context", None) or (None, None)
        try:
            data = cloudpickle.dumps((exc.with_traceback(None), ctx[1]))
        except Exception:  # noqa: BLE001 - an unpicklable exception stays text
            return text
        text += _PICKLED_MARK + base64.b64encode(data).decode("ascii") + "]"
    return text


def split_remote_error(text):
    """``(traceback text, exception, element repr)`` of an error text made by
    :func:`format_exception` in a harness process; ``(text, None, None)``
    for other texts."""
    i = text.find(_PICKLED_MARK)
    if i < 0:
        return text, None, None
    j = text.find("]", i)
    try:
        import base64

        exc, element = pickle.loads(base64.b64decode(text[i + len(_PICKLED_MARK) : j]))
    except Exception:  # noqa: BLE001 - keep the text
        return text[:i], None, None
    return text[:i], exc, element


def _repr(v):
    try:
        r = repr(v)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the error
        r = "<unprintable %s>" % type(v).__name__
    if len(r) > _MAX_REPR:
        r = r[:_MAX_REPR] + "…"
    return r


def _annotate(exc, label, element=_MISSING):
    if getattr(exc, "_oxbeam_context", None) is None:
        try:
            exc._oxbeam_context = (label, None if element is _MISSING else _repr(element))
        except Exception:  # noqa: BLE001 - e.g. exceptions with __slots__
            pass


# ---------------------------------------------------------------------------
# Metrics: per-thread current transform, process-wide cells.


class _MetricsState(threading.local):
    label = ""


_current = _MetricsState()
_counters = {}
_distributions = {}
_gauges = {}
_string_sets = {}
_lock = threading.Lock()


def _inc_counter(namespace, name, n):
    key = (_current.label, namespace, name)
    _counters[key] = _counters.get(key, 0) + n


def _update_distribution(namespace, name, v):
    key = (_current.label, namespace, name)
    d = _distributions.get(key)
    v = int(v)
    if d is None:
        _distributions[key] = (1, v, v, v)
    else:
        _distributions[key] = (d[0] + 1, d[1] + v, min(d[2], v), max(d[3], v))


def _set_gauge(namespace, name, v):
    import time

    _gauges[(_current.label, namespace, name)] = (int(v), int(time.time() * 1000))


def _add_string(namespace, name, v):
    key = (_current.label, namespace, name)
    s = _string_sets.get(key)
    if s is None:
        s = _string_sets[key] = set()
    s.add(str(v))


def _take_metrics():
    """This thread's bundle metrics, as rows: counters, distributions,
    gauges ``(value, millis)`` and string sets."""
    with _lock:
        c = [(k[0], k[1], k[2], v) for k, v in _counters.items()]
        d = [(k[0], k[1], k[2]) + v for k, v in _distributions.items()]
        g = [(k[0], k[1], k[2]) + v for k, v in _gauges.items()]
        s = [(k[0], k[1], k[2], sorted(v)) for k, v in _string_sets.items()]
        _counters.clear()
        _distributions.clear()
        _gauges.clear()
        _string_sets.clear()
    return c, d, g, s


# ---------------------------------------------------------------------------
# What the SDK pickles into payloads.


class ViewSpec(object):
    """How a side input is presented: ``kind`` in singleton, iter, list,
    dict, multimap; the side PCollection's window fn maps windows."""

    def __init__(self, kind, window_fn, default=_MISSING):
        self.kind = kind
        self.window_fn = window_fn
        self.default = default


class SideArg(object):
    """Placeholder for side input ``index`` among a DoFn's extra arguments."""

    def __init__(self, index):
        self.index = index


class DoFnSpec(object):
    """The payload of a Python ParDo.

    ``kind`` is ``dofn`` (``fn`` is a DoFn), ``map``, ``flatmap``, ``filter``
    (``fn`` is a callable; ``star`` unpacks the element), ``create``
    (``values``) or ``partition`` (``fn`` is a PartitionFn-like callable
    ``(element, n, *args) -> index``).
    """

    def __init__(self, kind, fn, args=(), kwargs=None, views=(), star=False, values=None, n=0):
        self.kind = kind
        self.fn = fn
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.views = list(views)
        self.star = star
        self.values = values
        self.n = n


# ---------------------------------------------------------------------------
# Operators.


def _discard(values, metas):
    pass


def _fanout(receivers):
    fns = [r.process_batch for r in receivers]
    if not fns:
        return _discard
    if len(fns) == 1:
        return fns[0]

    def out(values, metas):
        for f in fns:
            f(values, metas)

    return out


class Op(object):
    """An operator: consumes batches, emits batches to ``self.outs[tag]``."""

    def __init__(self, spec):
        self.id = spec.get("id")
        self.label = spec.get("label", "")
        self.output_pcolls = dict(spec.get("outputs", {}))
        self.outs = {}

    def setup(self):
        pass

    def start_bundle(self, sides):
        pass

    def process_batch(self, values, metas):
        raise NotImplementedError

    def finish_bundle(self):
        pass

    def teardown(self):
        pass

    def out(self, tag=None):
        if tag is None:
            tag = next(iter(self.outs), None)
        return self.outs.get(tag, _discard)


class SinkOp(Op):
    def __init__(self, buffer):
        Op.__init__(self, {"label": "sink"})
        self.emit = buffer.emit_batch

    def process_batch(self, values, metas):
        if values:
            self.emit(values, metas)


def _params_of(fn):
    """``[(name, 'timestamp'|'window'|'pane')]`` for DoFn params in ``fn``'s signature."""
    from oxbeam.transforms.core import DoFn

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    out = []
    for name, p in sig.parameters.items():
        d = p.default
        if d is DoFn.TimestampParam:
            out.append((name, "timestamp"))
        elif d is DoFn.WindowParam:
            out.append((name, "window"))
        elif d is DoFn.PaneInfoParam:
            out.append((name, "pane"))
        elif isinstance(d, (DoFn.SetupContextParam, DoFn.BundleContextParam)):
            out.append((name, "context"))
    return out


def _context_params_of(fn, scope):
    """``[(name, param)]`` of ``fn``'s ``DoFn.<scope>ContextParam`` defaults."""
    from oxbeam.transforms.core import DoFn

    cls = DoFn.SetupContextParam if scope == "setup" else DoFn.BundleContextParam
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [(n, p.default) for n, p in sig.parameters.items() if isinstance(p.default, cls)]


class _Contexts(object):
    """Context managers entered for one scope (a DoFn's life or a bundle)."""

    def __init__(self):
        self.values = {}
        self._open = []

    def enter(self, params):
        for name, param in params:
            cm = param.create()
            self.values[name] = cm.__enter__()
            self._open.append(cm)

    def exit(self):
        while self._open:
            self._open.pop().__exit__(None, None, None)


def _param_value(kind, meta):
    if kind == "timestamp":
        return Timestamp(micros=meta[0])
    if kind == "window":
        return meta[1]
    return meta[2] if len(meta) > 2 else PANE_INFO_UNKNOWN


def _route_specials(values, metas, main_tag):
    """Splits outputs holding TaggedOutput / TimestampedValue / WindowedValue."""
    from oxbeam.pvalue import TaggedOutput

    routed = {}
    for v, m in zip(values, metas):
        tag = main_tag
        if type(v) is TaggedOutput:
            tag = v.tag
            v = v.value
        t = type(v)
        if t is TimestampedValue:
            m = (v.timestamp.micros,) + m[1:]
            v = v.value
        elif t is WindowedValue:
            r = routed.get(tag)
            if r is None:
                r = routed[tag] = ([], [])
            pane = v.pane_info
            for w in v.windows:
                r[0].append(v.value)
                if pane is PANE_INFO_UNKNOWN or pane == PANE_INFO_UNKNOWN:
                    r[1].append((v.timestamp.micros, w))
                else:
                    r[1].append((v.timestamp.micros, w, pane))
            continue
        r = routed.get(tag)
        if r is None:
            r = routed[tag] = ([], [])
        r[0].append(v)
        r[1].append(m)
    return routed


def _special_types():
    from oxbeam.pvalue import TaggedOutput

    return frozenset([TaggedOutput, TimestampedValue, WindowedValue])


class ParDoOp(Op):
    """Runs a Python DoFn, callable (Map, FlatMap, Filter) or Create."""

    def __init__(self, spec):
        Op.__init__(self, spec)
        self.fnspec = pickle.loads(spec["fn"])
        self.side_names = list(spec.get("side_inputs", ()))
        self.special = _special_types()
        s = self.fnspec
        self.dofn = s.fn if s.kind == "dofn" else None
        self.views = s.views
        self._side_src = [None] * len(self.views)
        self._side_groups = [None] * len(self.views)
        self._arg_cache = {}
        self._setup_ctx = _Contexts()
        self._bundle_ctx = _Contexts()
        self._bundle_params = []
        # Inputs per run of a FlatMap (see _flat_map); adapts to its fan-out.
        self._step = 16
        # Set when later plain Maps are fused into this one.
        self.chain = None
        self.chain_batch = None

    def _context_value(self, name):
        v = self._bundle_ctx.values
        return v[name] if name in v else self._setup_ctx.values[name]

    def setup(self):
        s = self.fnspec
        _current.label = self.label
        try:
            if self.dofn is not None:
                self.dofn.setup()
                self.fn = self.dofn.process
            else:
                self.fn = s.fn
            self.params = _params_of(self.fn) if s.kind != "create" else []
            if any(kind == "context" for _, kind in self.params):
                self._setup_ctx.enter(_context_params_of(self.fn, "setup"))
                self._bundle_params = _context_params_of(self.fn, "bundle")
        except Exception as e:
            _annotate(e, self.label)
            raise
        self.fast = (
            not self.params and not s.args and not s.kwargs and not self.views and not s.star
        )
        self.batch_fn = getattr(self.fn, "_oxbeam_batch", None) if self.fast else None
        self.flat_batch_fn = getattr(self.fn, "_oxbeam_flat_batch", None) if self.fast else None

    def start_bundle(self, sides):
        for i, name in enumerate(self.side_names):
            src = sides.get((self.id, name))
            if src is not self._side_src[i]:
                self._side_src[i] = src
                groups = {}
                if src is not None:
                    for v, m in zip(src[0], src[1]):
                        g = groups.get(m[1])
                        if g is None:
                            g = groups[m[1]] = []
                        g.append(v)
                self._side_groups[i] = groups
                self._arg_cache = {}
        if self._bundle_params:
            _current.label = self.label
            try:
                self._bundle_ctx.enter(self._bundle_params)
            except Exception as e:
                _annotate(e, self.label)
                raise
        if self.dofn is not None:
            _current.label = self.label
            try:
                self.dofn.start_bundle()
            except Exception as e:
                _annotate(e, self.label)
                raise

    def _view(self, i, window):
        vs = self.views[i]
        groups = self._side_groups[i] or {}
        side_window = _GLOBAL if window is _GLOBAL else vs.window_fn.side_window(window)
        items = groups.get(side_window, [])
        k = vs.kind
        if k == "singleton":
            if len(items) == 1:
                return items[0]
            if not items:
                if vs.default is _MISSING:
                    raise ValueError(
                        "PCollection of size 0 accessed as a singleton view with no default value"
                    )
                return vs.default
            raise ValueError(
                "PCollection of size %d with more than one element accessed as a singleton view."
                % len(items)
            )
        if k in ("iter", "list"):
            return list(items)
        if k == "dict":
            return dict(items)
        if k == "multimap":
            d = {}
            for kk, vv in items:
                d.setdefault(kk, []).append(vv)
            return d
        raise NotImplementedError("side input view %s" % k)

    def _args(self, window):
        r = self._arg_cache.get(window)
        if r is None:
            s = self.fnspec

            def sub(a):
                return self._view(a.index, window) if isinstance(a, SideArg) else a

            r = (
                tuple(sub(a) for a in s.args),
                {k: sub(v) for k, v in s.kwargs.items()},
            )
            self._arg_cache[window] = r
        return r

    def _call_each(self, values, metas):
        """Calls the function per element with extra args and params."""
        s = self.fnspec
        fn = self.fn
        star = s.star
        params = self.params
        results = []
        app = results.append
        last_m = None
        args, kwargs = (), {}
        n = 0
        try:
            for v, m in zip(values, metas):
                if m is not last_m:
                    last_m = m
                    args, kwargs = self._args(m[1])
                    if params:
                        kwargs = dict(kwargs)
                        for name, kind in params:
                            kwargs[name] = (self._context_value(name) if kind == "context"
                                            else _param_value(kind, m))
                if star:
                    app(fn(*v, *args, **kwargs))
                else:
                    app(fn(v, *args, **kwargs))
                n += 1
        except Exception as e:
            _annotate(e, self.label, values[n])
            raise
        return results

    def _map(self, values):
        if self.chain_batch is not None:
            try:
                return self.chain_batch(values)
            except Exception:  # noqa: BLE001 - re-run map by map to name the failing one
                pass
            for fn, label in self.chain:
                _current.label = label
                it = iter(values)
                try:
                    values = list(map(fn, it))
                except Exception as e:
                    _annotate(e, label, values[len(values) - length_hint(it) - 1])
                    raise
            _current.label = self.label
            return values
        if self.batch_fn is not None:
            try:
                return self.batch_fn(values)
            except Exception:  # noqa: BLE001 - the per-element path names the element
                pass
        it = iter(values)
        try:
            return list(map(self.fn, it))
        except Exception as e:
            _annotate(e, self.label, values[len(values) - length_hint(it) - 1])
            raise

    def _expand(self, results, values, metas):
        ov = []
        om = []
        failed = [0]
        if results.__class__ is not list:
            results = list(results)
        try:
            _expand_outputs(results, metas, ov, om, failed)
        except Exception as e:
            _annotate(e, self.label, values[failed[0]])
            raise
        return ov, om

    def _emit(self, ov, om):
        if not ov:
            return
        if len(ov) > _EMIT_BATCH:
            # One element's many outputs (a file's lines) go on in batches,
            # so downstream batches stay small.
            for i in range(0, len(ov), _EMIT_BATCH):
                self._emit(ov[i : i + _EMIT_BATCH], om[i : i + _EMIT_BATCH])
            return
        if (
            not _specials.created
            or self.batch_fn is not None
            or self.special.isdisjoint(map(type, ov))
        ):
            self.outs.get("None", _discard)(ov, om)
            return
        for tag, (vs, ms) in _route_specials(ov, om, "None").items():
            self.outs.get(tag, _discard)(vs, ms)

    def process_batch(self, values, metas):
        _current.label = self.label
        kind = self.fnspec.kind
        if kind == "create":
            self._create(metas[0] if metas else (MIN_TIMESTAMP_MICROS, _GLOBAL), len(values))
            return
        if self.flat_batch_fn is not None:
            self._emit(*self.flat_batch_fn(values, metas))
            return
        if kind not in ("map", "filter", "partition"):
            self._flat_map(values, metas)
            return
        results = self._map(values) if self.fast else self._call_each(values, metas)
        if kind == "map":
            self._emit(results, metas)
        elif kind == "filter":
            keep = [bool(r) for r in results]
            self._emit(
                list(itertools.compress(values, keep)), list(itertools.compress(metas, keep))
            )
        else:
            self._partition(values, metas, results)

    def _flat_map(self, values, metas):
        """A FlatMap's (or DoFn's) outputs, over runs of its input sized so
        that a run gives about ``_EMIT_BATCH`` outputs (as many as the last
        run's fan-out says): its outputs are then still in cache when the
        next operator reads them (wordcount's lines of ~12 words each: runs
        of ~85 lines, not a whole batch's 1024 lines' 12k words)."""
        n = len(values)
        step = self._step
        i = 0
        while i < n:
            if i == 0 and step >= n:
                vs, ms = values, metas
            else:
                vs, ms = values[i : i + step], metas[i : i + step]
            results = self._map(vs) if self.fast else self._call_each(vs, ms)
            ov, om = self._expand(results, vs, ms)
            self._emit(ov, om)
            i += len(vs)
            step = max(1, _EMIT_BATCH * len(vs) // len(ov)) if ov else 2 * _EMIT_BATCH
        self._step = step

    def _partition(self, values, metas, results):
        n = self.fnspec.n
        parts = [([], []) for _ in range(n)]
        for v, m, i in zip(values, metas, results):
            if not isinstance(i, int) or not 0 <= i < n:
                e = ValueError("PartitionFn specified out-of-bounds partition index: %r not in [0, %d)" % (i, n))
                _annotate(e, self.label, v)
                raise e
            parts[i][0].append(v)
            parts[i][1].append(m)
        for i, (vs, ms) in enumerate(parts):
            if vs:
                self.outs.get(str(i), _discard)(vs, ms)

    def _create(self, meta, times):
        vals = self.fnspec.values
        out = self.outs.get("None", _discard)
        step = 4096
        # Beam's Create emits through a DoFn, so TimestampedValues (and
        # WindowedValues) among the values set their element's timestamp
        # (and windows) rather than being elements themselves.
        special = _special_types().intersection(map(type, vals))
        for _ in range(times):
            for i in range(0, len(vals), step):
                chunk = vals[i : i + step]
                if special:
                    for vs, ms in _route_specials(chunk, [meta] * len(chunk), "None").values():
                        out(vs, ms)
                else:
                    out(chunk, [meta] * len(chunk))

    def finish_bundle(self):
        if self._bundle_params:
            _current.label = self.label
            try:
                self._bundle_ctx.exit()
            except Exception as e:
                _annotate(e, self.label)
                raise
        if self.dofn is None:
            return
        _current.label = self.label
        try:
            r = self.dofn.finish_bundle()
            ov, om = [], []
            if r is not None:
                for v in r:
                    if type(v) is WindowedValue:
                        ov.append(v)
                        om.append((v.timestamp.micros, _GLOBAL))
                    else:
                        ov.append(v)
                        om.append((MIN_TIMESTAMP_MICROS, _GLOBAL))
        except Exception as e:
            _annotate(e, self.label)
            raise
        self._emit(ov, om)

    def teardown(self):
        try:
            if self.dofn is not None:
                self.dofn.teardown()
        finally:
            self._setup_ctx.exit()


# ---------------------------------------------------------------------------
# Stateful DoFns: state cells and timers over the stage's Rust StateClient.

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


def _state_classes():
    from oxbeam.transforms import userstate as us

    class ValueState(us.ReadModifyWriteRuntimeState):
        __slots__ = ("_c", "_t", "_i")

        def __init__(self, client, t, i):
            self._c, self._t, self._i = client, t, i

        def read(self):
            vs = self._c.read(self._t, self._i)
            return vs[-1] if vs else None

        def write(self, value):
            self._c.write(self._t, self._i, [value])

        def clear(self):
            self._c.clear(self._t, self._i)

        def commit(self):
            pass

    class BagState(us.BagRuntimeState):
        __slots__ = ("_c", "_t", "_i")

        def __init__(self, client, t, i):
            self._c, self._t, self._i = client, t, i

        def read(self):
            return self._c.read(self._t, self._i)

        def add(self, value):
            self._c.append(self._t, self._i, value)

        def clear(self):
            self._c.clear(self._t, self._i)

        def commit(self):
            pass

    class SetState(us.SetRuntimeState):
        __slots__ = ("_c", "_t", "_i")

        def __init__(self, client, t, i):
            self._c, self._t, self._i = client, t, i

        def read(self):
            return set(self._c.read(self._t, self._i))

        def add(self, value):
            if value not in self._c.read(self._t, self._i):
                self._c.append(self._t, self._i, value)

        def clear(self):
            self._c.clear(self._t, self._i)

        def commit(self):
            pass

    class CombiningState(us.CombiningValueRuntimeState):
        __slots__ = ("_c", "_t", "_i", "_cf")

        def __init__(self, client, t, i, combine_fn):
            self._c, self._t, self._i, self._cf = client, t, i, combine_fn

        def read(self):
            cf = self._cf
            accs = self._c.read(self._t, self._i)
            if not accs:
                return cf.extract_output(cf.create_accumulator())
            if len(accs) == 1:
                return cf.extract_output(accs[0])
            acc = cf.merge_accumulators(accs)
            # Keep the bag short: one merged accumulator.
            self._c.write(self._t, self._i, [acc])
            return cf.extract_output(acc)

        def add(self, value):
            cf = self._cf
            self._c.append(self._t, self._i, cf.add_input(cf.create_accumulator(), value))

        def clear(self):
            self._c.clear(self._t, self._i)

        def commit(self):
            pass

    class OrderedListState(us.OrderedListRuntimeState):
        __slots__ = ("_c", "_t", "_i")

        def __init__(self, client, t, i):
            self._c, self._t, self._i = client, t, i

        def read(self):
            return self.read_range(None, None)

        def add(self, value):
            ts, v = value
            self._c.ordered_append(self._t, self._i, Timestamp.of(ts).micros, v)

        def read_range(self, min_timestamp, limit_timestamp):
            lo = _I64_MIN if min_timestamp is None else Timestamp.of(min_timestamp).micros
            hi = _I64_MAX if limit_timestamp is None else Timestamp.of(limit_timestamp).micros
            return [(Timestamp(micros=k), v) for k, v in self._c.ordered_read(self._t, self._i, lo, hi)]

        def clear(self):
            self._c.ordered_clear(self._t, self._i, _I64_MIN, _I64_MAX)

        def clear_range(self, min_timestamp, limit_timestamp):
            self._c.ordered_clear(
                self._t, self._i, Timestamp.of(min_timestamp).micros, Timestamp.of(limit_timestamp).micros
            )

        def commit(self):
            pass

    class MapState(us.MapRuntimeState):
        __slots__ = ("_c", "_t", "_i")

        def __init__(self, client, t, i):
            self._c, self._t, self._i = client, t, i

        def get(self, key, default=None):
            v = self._c.map_get(self._t, self._i, key)
            return default if v is None else v

        def put(self, key, value):
            self._c.map_put(self._t, self._i, key, value)

        def put_if_absent(self, key, value):
            """Puts ``value`` unless ``key`` has one; returns the value
            ``key`` had (``None`` if it had none)."""
            old = self._c.map_get(self._t, self._i, key)
            if old is None:
                self._c.map_put(self._t, self._i, key, value)
            return old

        def remove(self, key):
            self._c.map_remove(self._t, self._i, key)

        def contains(self, key):
            return self._c.map_get(self._t, self._i, key) is not None

        def keys(self):
            return list(self._c.map_keys(self._t, self._i))

        def values(self):
            return [v for _, v in self.items()]

        def items(self):
            c, t, i = self._c, self._t, self._i
            return [(k, c.map_get(t, i, k)) for k in c.map_keys(t, i)]

        def read(self):
            return dict(self.items())

        def clear(self):
            self._c.map_clear(self._t, self._i)

        def commit(self):
            pass

    return {
        us.ReadModifyWriteStateSpec: ValueState,
        us.BagStateSpec: BagState,
        us.SetStateSpec: SetState,
        us.CombiningValueStateSpec: CombiningState,
        us.OrderedListStateSpec: OrderedListState,
        us.MapStateSpec: MapState,
    }


class _Timer(object):
    """A timer of the current key and window (``DoFn.TimerParam``)."""

    __slots__ = ("_c", "_t", "_f", "_event", "_op")

    def __init__(self, client, t, f, event_time, op):
        self._c, self._t, self._f, self._event, self._op = client, t, f, event_time, op

    def set(self, timestamp, dynamic_timer_tag=""):
        fire = Timestamp.of(timestamp).micros
        # As Beam: event-time timers hold output at their fire time,
        # processing-time ones at the input element's timestamp.
        hold = fire if self._event else self._op._input_ts
        self._c.set_timer(self._t, self._f, dynamic_timer_tag, fire, hold)

    def clear(self, dynamic_timer_tag=""):
        self._c.clear_timer(self._t, self._f, dynamic_timer_tag)


class StatefulParDoOp(ParDoOp):
    """A DoFn with state and timers: per element (and fired timer), the
    key and window are made current in the stage's ``StateClient``, and
    results are materialized at once (state reads in generators must see
    the current key)."""

    def __init__(self, spec, client):
        ParDoOp.__init__(self, spec)
        self.client = client
        self.t = spec["stateful"]
        self.cells = dict(spec.get("state_cells", {}))
        self.families = dict(spec.get("timer_families", {}))
        self._input_ts = MIN_TIMESTAMP_MICROS

    def setup(self):
        ParDoOp.setup(self)
        from oxbeam.transforms import userstate as us
        from oxbeam.transforms.core import DoFn, _StateDoFnParam, _TimerDoFnParam

        classes = _state_classes()
        dofn = self.dofn
        states, timers = us.get_dofn_specs(dofn)
        self._states = {}
        for s in states:
            i = self.cells.get(s.name)
            if i is None:
                raise RuntimeError("state %s of %s is not in the transform's payload" % (s.name, self.label))
            cls = classes[type(s)]
            if type(s) is us.CombiningValueStateSpec:
                self._states[s.name] = cls(self.client, self.t, i, s.combine_fn)
            else:
                self._states[s.name] = cls(self.client, self.t, i)
        self._timers = {}
        self._callbacks = {}
        for tspec in timers:
            f = self.families.get(tspec.name)
            if f is None:
                raise RuntimeError("timer %s of %s is not in the transform's payload" % (tspec.name, self.label))
            self._timers[tspec.name] = _Timer(
                self.client, self.t, f, tspec.time_domain == us.TimeDomain.WATERMARK, self
            )
            cb = tspec._attached_callback
            if cb is not None:
                self._callbacks[tspec.name] = getattr(dofn, cb.__name__)
        for name in dir(dofn):
            try:
                m = getattr(dofn, name, None)
            except Exception:  # noqa: BLE001 - e.g. a property that raises
                continue
            fam = getattr(m, "_oxbeam_on_timer", None)
            if fam is not None and fam not in self._callbacks:
                self._callbacks[fam] = m

        def plan(fn):
            try:
                params = inspect.signature(fn).parameters.values()
            except (TypeError, ValueError):
                return []
            out = []
            for p in params:
                d = p.default
                if isinstance(d, _StateDoFnParam):
                    out.append((p.name, "obj", self._states[d.state_spec.name]))
                elif isinstance(d, _TimerDoFnParam):
                    out.append((p.name, "obj", self._timers[d.timer_spec.name]))
                elif d is DoFn.TimestampParam:
                    out.append((p.name, "timestamp", None))
                elif d is DoFn.WindowParam:
                    out.append((p.name, "window", None))
                elif d is DoFn.PaneInfoParam:
                    out.append((p.name, "pane", None))
                elif d is DoFn.KeyParam:
                    out.append((p.name, "key", None))
                elif d is DoFn.DynamicTimerTagParam:
                    out.append((p.name, "tag", None))
            return out

        self._process_plan = plan(self.fn)
        self._timer_plans = {fam: plan(cb) for fam, cb in self._callbacks.items()}

    @staticmethod
    def _kwargs(base, plan, ts_micros, meta, key, tag):
        kw = dict(base)
        for name, kind, obj in plan:
            if kind == "obj":
                kw[name] = obj
            elif kind == "timestamp":
                kw[name] = Timestamp(micros=ts_micros)
            elif kind == "window":
                kw[name] = meta[1]
            elif kind == "pane":
                kw[name] = meta[2] if len(meta) > 2 else PANE_INFO_UNKNOWN
            elif kind == "key":
                kw[name] = key
            else:
                kw[name] = tag
        return kw

    def _collect(self, r, meta, ov, om):
        if r is None:
            return
        r = list(r)
        ov.extend(r)
        om.extend([meta] * len(r))

    def process_batch(self, values, metas):
        _current.label = self.label
        fn = self.fn
        plan = self._process_plan
        set_current = self.client.set_current
        t = self.t
        ov, om = [], []
        v = None
        try:
            for v, m in zip(values, metas):
                key = v[0]
                set_current(t, key, m[1])
                self._input_ts = m[0]
                args, kwargs = self._args(m[1])
                kw = self._kwargs(kwargs, plan, m[0], m, key, "")
                self._collect(fn(v, *args, **kw), m, ov, om)
        except Exception as e:
            _annotate(e, self.label, v)
            raise
        self._emit(ov, om)

    def fire(self, family, fired):
        """Runs the ``on_timer`` callback of ``family`` for each fired timer
        ``(key bytes, key, tag, window, fire micros, hold micros, pane)``."""
        _current.label = self.label
        cb = self._callbacks.get(family)
        if cb is None:
            raise RuntimeError("timer family %s of %s has no on_timer callback" % (family, self.label))
        plan = self._timer_plans[family]
        set_current = self.client.set_current_encoded
        t = self.t
        ov, om = [], []
        key = None
        try:
            for key_bytes, key, tag, window, fire, hold, pane in fired:
                set_current(t, key_bytes, window)
                self._input_ts = hold
                meta = (hold, window)
                args, kwargs = self._args(window)
                kw = self._kwargs(kwargs, plan, fire, meta, key, tag)
                self._collect(cb(*args, **kw), meta, ov, om)
        except Exception as e:
            _annotate(e, self.label, key)
            raise
        self._emit(ov, om)


class WindowIntoOp(Op):
    def __init__(self, spec):
        Op.__init__(self, spec)
        self.window_fn = _from_runner_tuple(spec["window_fn"])

    def process_batch(self, values, metas):
        wf = self.window_fn
        out = self.out()
        if wf.__class__.__name__ == "GlobalWindows":
            out(values, [(m[0], _GLOBAL) for m in metas])
            return
        ov, om = [], []
        assign = wf.assign_micros
        for v, m in zip(values, metas):
            ts = m[0]
            for w in assign(ts):
                ov.append(v)
                om.append((ts, w))
        out(ov, om)


def _fast_kind(cf):
    return getattr(cf, "_oxbeam_fast", None)


class CombineOp(Op):
    """The combine components, for a Python CombineFn."""

    def __init__(self, spec, phase):
        Op.__init__(self, spec)
        self.cf = pickle.loads(spec["fn"])
        self.phase = phase
        self.fastk = _fast_kind(self.cf)
        self.tables = {}
        self.first_meta = {}
        # sum's precombine: per window, a Rust table of the plain pairs
        # (str/int keys, int/float values) until a pair is not; then None,
        # and the window's dict goes on (see _sum_all).
        self.sum_tables = {}
        # Precombine of values without their key (all None): see StageRunner.
        self.keyless = False

    def setup(self):
        _current.label = self.label
        setup = getattr(self.cf, "setup", None)
        if setup is not None:
            setup()

    def teardown(self):
        td = getattr(self.cf, "teardown", None)
        if td is not None:
            td()

    def process_batch(self, values, metas):
        _current.label = self.label
        try:
            getattr(self, "_" + self.phase)(values, metas)
        except Exception as e:
            _annotate(e, self.label, getattr(self, "_element", _MISSING))
            raise

    # -- precombine: (k, v) -> (k, acc) per (key, window) in the bundle --
    def _precombine(self, values, metas):
        if not values:
            return
        m0 = metas[0]
        if metas.count(m0) == len(metas):
            self._add_all(m0, values)
        else:
            by_meta = {}
            for v, m in zip(values, metas):
                by_meta.setdefault(m, []).append(v)
            for m, vs in by_meta.items():
                self._add_all(m, vs)

    def _add_all(self, meta, values):
        w = meta[1]
        t = self.tables.get(w)
        if t is None:
            t = self.tables[w] = {}
            self.first_meta[w] = meta
        f = self.fastk
        get = t.get
        self._element = _MISSING
        if self.keyless:
            self._add_all_keyless(t, values)
        elif f == "sum":
            self._sum_all(w, t, values)
        elif f == "count":
            self._sum_all(w, t, values, count=True)
        elif f == "min":
            for k, v in values:
                a = get(k, _MISSING)
                t[k] = v if a is _MISSING or v < a else a
        elif f == "max":
            for k, v in values:
                a = get(k, _MISSING)
                t[k] = v if a is _MISSING or v > a else a
        else:
            cf = self.cf
            create, add = cf.create_accumulator, cf.add_input
            for kv in values:
                self._element = kv
                k, v = kv
                a = get(k, _MISSING)
                if a is _MISSING:
                    a = create()
                t[k] = add(a, v)
        st = self.sum_tables.get(w)
        if len(t) + (0 if st is None else len(st)) > _PRECOMBINE_FLUSH_KEYS:
            self._flush()

    def _sum_all(self, w, t, values, count=False):
        """``t[k] = t.get(k, 0) + v`` for each pair (``+ 1`` with ``count``),
        as Python does it; the plain pairs in a Rust table (no Python object
        per key) while every pair of the window has been one."""
        if values.__class__ is not list:
            values = list(values)
        st = self.sum_tables.get(w, _MISSING)
        if st is _MISSING:
            st = self.sum_tables[w] = _SumTable()
        if st is not None:
            done = st.add(values, count)
            if done == len(values):
                return
            # A pair the table does not take: the window goes on in its
            # dict from here, with the sums so far.
            st.drain_into(t)
            self.sum_tables[w] = None
            values = values[done:]
        if count:
            _count_elements(t, map(_first, values))
            return
        done = _sum_into(t, values)
        get = t.get
        for k, v in itertools.islice(values, done, None):
            t[k] = get(k, 0) + v

    def _add_all_keyless(self, t, values):
        f = self.fastk
        a = t.get(None, _MISSING)
        if f == "count":
            t[None] = (0 if a is _MISSING else a) + len(values)
        elif f == "sum":
            t[None] = (0 if a is _MISSING else a) + sum(values)
        elif f == "min":
            v = min(values)
            t[None] = v if a is _MISSING or v < a else a
        elif f == "max":
            v = max(values)
            t[None] = v if a is _MISSING or v > a else a
        else:
            cf = self.cf
            add = cf.add_input
            if a is _MISSING:
                a = cf.create_accumulator()
            for v in values:
                self._element = (None, v)
                a = add(a, v)
            t[None] = a

    def _flush(self):
        out = self.out()
        compact = getattr(self.cf, "compact", None) if self.fastk is None else None
        for w, t in self.tables.items():
            if compact is not None:
                items = [(k, compact(a)) for k, a in t.items()]
            else:
                items = list(t.items())
            st = self.sum_tables.get(w)
            if st is not None:
                items += st.take_items()
            out(items, [self.first_meta[w]] * len(items))
        self.tables = {}
        self.first_meta = {}
        self.sum_tables = {}

    def finish_bundle(self):
        if self.phase == "precombine" and self.tables:
            _current.label = self.label
            self._flush()

    def _merge(self, accs):
        f = self.fastk
        if f == "sum" or f == "count":
            return sum(accs)
        if f == "min":
            return min(accs)
        if f == "max":
            return max(accs)
        return self.cf.merge_accumulators(accs)

    def _extract(self, acc):
        if self.fastk is not None:
            return acc
        return self.cf.extract_output(acc)

    def _merge_accumulators(self, values, metas):
        out = []
        for kv in values:
            self._element = kv
            out.append((kv[0], self._merge(kv[1])))
        self.out()(out, metas)

    def _extract_outputs(self, values, metas):
        out = []
        for kv in values:
            self._element = kv
            out.append((kv[0], self._extract(kv[1])))
        self.out()(out, metas)

    def _grouped_values(self, values, metas):
        f = self.fastk
        cf = self.cf
        out = []
        for kv in values:
            self._element = kv
            k, vs = kv
            if f == "sum":
                r = sum(vs)
            elif f == "count":
                r = len(vs)
            elif f == "min":
                r = min(vs)
            elif f == "max":
                r = max(vs)
            else:
                r = cf.extract_output(cf.add_inputs(cf.create_accumulator(), vs))
            out.append((k, r))
        self.out()(out, metas)

    def _convert(self, values, metas):
        cf = self.cf
        out = []
        for kv in values:
            self._element = kv
            if self.fastk == "count":
                out.append((kv[0], 1))
            elif self.fastk is not None:
                out.append(kv)
            else:
                out.append((kv[0], cf.add_input(cf.create_accumulator(), kv[1])))
        self.out()(out, metas)


_PHASE_KEYS = {
    "COMBINE_PER_KEY_PRECOMBINE": "precombine",
    "COMBINE_PER_KEY_MERGE_ACCUMULATORS": "merge_accumulators",
    "COMBINE_PER_KEY_EXTRACT_OUTPUTS": "extract_outputs",
    "COMBINE_GROUPED_VALUES": "grouped_values",
    "COMBINE_PER_KEY_CONVERT_TO_ACCUMULATORS": "convert",
}


_BUILTIN_CALLABLES = (
    type(len), type(str.upper), type("".upper), type(dict.__dict__["fromkeys"]),
)


_PLAIN_VALUES = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset)


def _plain(v):
    """A builtin function or type, or an immutable value of a builtin type."""
    if isinstance(v, _BUILTIN_CALLABLES):
        return True
    if isinstance(v, type):
        return v.__module__ == "builtins"
    return type(v) in _PLAIN_VALUES


def _leaf_code(code, globs, depth=0):
    """Whether a code object calls nothing that could update a metric: it
    names no global but builtins and plain values, and no ``Metrics``."""
    if depth > 4:
        return False
    for name in code.co_names:
        if name in ("Metrics", "metrics", "_current"):
            return False
        if name in globs and not _plain(globs[name]):
            return False
    for c in code.co_consts:
        if hasattr(c, "co_names") and not _leaf_code(c, globs, depth + 1):
            return False
    return True


def _is_leaf_fn(fn):
    """Whether ``fn`` can run inside another transform's call without its
    own label: a builtin, or a Python function whose code and closure call
    only builtins (so no user metric can be counted under the wrong step)."""
    if isinstance(fn, _BUILTIN_CALLABLES):
        return True
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__self__", None) is not None:
        return False
    for cell in fn.__closure__ or ():
        try:
            v = cell.cell_contents
        except ValueError:
            return False
        if not _plain(v):
            return False
    return _leaf_code(code, getattr(fn, "__globals__", {}))


def _chain_batch(fns):
    """``[fn(…f1(f0(x))) for x in values]`` as one comprehension (no Python
    frame per function call beyond the functions' own)."""
    names = ["f%d" % i for i in range(len(fns))]
    expr = "x"
    for n in names:
        expr = "%s(%s)" % (n, expr)
    return eval("lambda values: [%s for x in values]" % expr, dict(zip(names, fns)))


def _fusable_map(op):
    return (type(op) is ParDoOp and op.fnspec.kind == "map" and op.dofn is None
            and getattr(op, "fast", False) and op.batch_fn is None
            and op.flat_batch_fn is None and list(op.output_pcolls) == ["None"]
            and _is_leaf_fn(op.fn))


class StageRunner(object):
    """Runs bundles of one fused stage (built by the Rust executor)."""

    def __init__(self, spec):
        from oxbeam._oxbeam import URNS

        pardo = URNS["standard_p_transforms::primitives::PAR_DO"]
        window_into = URNS["standard_p_transforms::primitives::ASSIGN_WINDOWS"]
        phases = {
            URNS["standard_p_transforms::combine_components::" + k]: v
            for k, v in _PHASE_KEYS.items()
        }
        ops = []
        consumers = {}
        self.stateful = {}
        for t in spec["transforms"]:
            urn = t["urn"]
            if urn == pardo and "stateful" in t:
                op = StatefulParDoOp(t, spec["state"])
                self.stateful[t["stateful"]] = op
            elif urn == pardo:
                op = ParDoOp(t)
            elif urn == window_into:
                op = WindowIntoOp(t)
            elif urn in phases:
                op = CombineOp(t, phases[urn])
            else:
                raise NotImplementedError("transform %s (%s)" % (t["label"], urn))
            op.input = t["input"]
            ops.append(op)
            consumers.setdefault(t["input"], []).append(op)
        for sink_id, (pcoll, buffer) in spec["sinks"].items():
            consumers.setdefault(pcoll, []).append(SinkOp(buffer))
        for op in ops:
            for tag, pcoll in op.output_pcolls.items():
                op.outs[tag] = _fanout(consumers.get(pcoll, []))
        self.sources = {sid: _fanout(consumers.get(p, [])) for sid, p in spec["sources"].items()}
        # Topological order: producers before consumers.
        producer = {}
        for op in ops:
            for p in op.output_pcolls.values():
                producer[p] = op
        order, seen = [], set()

        def visit(op):
            if id(op) in seen:
                return
            seen.add(id(op))
            up = producer.get(op.input)
            if up is not None:
                visit(up)
            order.append(op)

        for op in ops:
            visit(op)
        self.ops = order
        for op in self.ops:
            op.setup()
        # CombineGlobally's KeyWithVoid feeding its lifted precombine: the
        # precombine takes the values as they are, no (None, value) pairs.
        for op in ops:
            if type(op) is ParDoOp and op.batch_fn is key_with_none_batch:
                cs = [consumers.get(p, []) for p in op.output_pcolls.values()]
                if len(cs) == 1 and len(cs[0]) == 1 and type(cs[0][0]) is CombineOp:
                    if cs[0][0].phase == "precombine":
                        op.batch_fn = _same_batch
                        cs[0][0].keyless = True
        self._fuse_map_chains(consumers)

    def _fuse_map_chains(self, consumers):
        """Runs consecutive Maps of plain functions (``Map(lambda x: x + 1)``
        ...) as one comprehension per batch: ``f2(f1(f0(x)))`` per element,
        with no list between them. Only functions that call builtins alone
        are fused (their user metrics, if any, would need their own step);
        an exception re-runs the batch map by map to name the transform and
        the element."""
        absorbed = set()
        for op in self.ops:
            if id(op) in absorbed or not _fusable_map(op):
                continue
            chain = [op]
            while True:
                (pc,) = chain[-1].output_pcolls.values()
                nxt = consumers.get(pc, [])
                if len(nxt) != 1 or not _fusable_map(nxt[0]):
                    break
                chain.append(nxt[0])
            if len(chain) < 2:
                continue
            for later in chain[1:]:
                absorbed.add(id(later))
            op.chain = [(o.fn, o.label) for o in chain]
            op.chain_batch = _chain_batch([o.fn for o in chain])
            op.outs = chain[-1].outs
            op.output_pcolls = chain[-1].output_pcolls
        if absorbed:
            self.ops = [op for op in self.ops if id(op) not in absorbed]

    def start_bundle(self, sides):
        for op in self.ops:
            op.start_bundle(sides)

    def process(self, source_id, values, metas):
        self.sources[source_id](values, metas)

    def fire_timers(self, t, family, fired):
        self.stateful[t].fire(family, fired)

    def finish_bundle(self):
        for op in self.ops:
            op.finish_bundle()
        return _take_metrics()

    def teardown(self):
        for op in self.ops:
            try:
                op.teardown()
            except Exception:  # noqa: BLE001 - teardown is best effort, like Beam
                traceback.print_exc()
