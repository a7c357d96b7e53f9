"""The core transforms, as in ``apache_beam.transforms.core`` and
``apache_beam.transforms.util``: ParDo and its shorthands, grouping,
combining, flattening, partitioning and windowing."""

import operator
import os
import random

import cloudpickle

from oxbeam import typehints
from oxbeam import _runtime
from oxbeam._runtime import DoFnSpec, SideArg
from oxbeam._runtime import batched as _batched
from oxbeam.pvalue import AsSideInput, DoOutputsTuple, PBegin, PCollection, TaggedOutput
from oxbeam.transforms.ptransform import PTransform
from oxbeam.window import GlobalWindows, TimestampedValue, WindowFn, Windowing

__all__ = [
    "DoFn",
    "ParDo",
    "Map",
    "MapTuple",
    "FlatMap",
    "FlatMapTuple",
    "Filter",
    "Create",
    "Impulse",
    "GroupByKey",
    "CombineFn",
    "CombinePerKey",
    "CombineGlobally",
    "CombineValues",
    "Flatten",
    "Partition",
    "PartitionFn",
    "WindowInto",
    "Windowing",
    "Keys",
    "Values",
    "KvSwap",
    "Reshuffle",
    "Distinct",
    "CoGroupByKey",
    "GroupBy",
    "Select",
    "RestrictionProvider",
    "WatermarkEstimatorProvider",
    "FlattenWith",
]


def _label_of(fn):
    if hasattr(fn, "__name__") and fn.__name__ == "<lambda>":
        code = getattr(fn, "__code__", None)
        if code is not None:
            return "<lambda at %s:%s>" % (os.path.basename(code.co_filename), code.co_firstlineno)
    if hasattr(fn, "__name__"):
        return fn.__name__
    return type(fn).__name__


def _node(pipeline):
    return pipeline._current()


def _pickle(obj):
    return cloudpickle.dumps(obj, protocol=4)


class _Param(object):
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name

    def __reduce__(self):
        # Unpickled DoFns must see the very same marker objects.
        return (_param, (self.name,))


def _param(name):
    return getattr(DoFn, name)


class _StateDoFnParam(object):
    """``DoFn.StateParam(spec)``: the state cell of ``spec``."""

    def __init__(self, state_spec):
        from oxbeam.transforms.userstate import StateSpec

        if not isinstance(state_spec, StateSpec):
            raise ValueError("DoFn.StateParam expected StateSpec object.")
        self.state_spec = state_spec
        self.param_id = "StateParam(%s)" % state_spec.name

    def __repr__(self):
        return self.param_id


class _TimerDoFnParam(object):
    """``DoFn.TimerParam(spec)``: the timer of ``spec``."""

    def __init__(self, timer_spec):
        from oxbeam.transforms.userstate import TimerSpec

        if not isinstance(timer_spec, TimerSpec):
            raise ValueError("DoFn.TimerParam expected TimerSpec object.")
        self.timer_spec = timer_spec
        self.param_id = "TimerParam(%s)" % timer_spec.name

    def __repr__(self):
        return self.param_id


class _ParamFactory(_Param):
    def __init__(self, name, cls):
        _Param.__init__(self, name)
        self.cls = cls

    def __call__(self, spec):
        return self.cls(spec)


class _ContextParam(object):
    """A context manager's value as a DoFn argument: ``constructor(*args,
    **kwargs)`` is entered once per scope and its ``__enter__`` result is
    passed."""

    def __init__(self, context_manager_constructor, args=(), kwargs=None, *, name=None):
        if not callable(context_manager_constructor):
            raise TypeError("%s expects a callable returning a context manager, got %r"
                            % (type(self).__name__.strip("_"), context_manager_constructor))
        self.context_manager_constructor = context_manager_constructor
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.param_id = name or "%s(%s)" % (type(self).__name__.strip("_"),
                                             _label_of(context_manager_constructor))

    def create(self):
        return self.context_manager_constructor(*self.args, **self.kwargs)

    def __repr__(self):
        return self.param_id


class _BundleContextParam(_ContextParam):
    """``DoFn.BundleContextParam(cm)``: entered at the start of each bundle,
    exited at its end."""


class _SetupContextParam(_ContextParam):
    """``DoFn.SetupContextParam(cm)``: entered when the DoFn is set up,
    exited at teardown."""


class _RestrictionDoFnParam(object):
    """``DoFn.RestrictionParam(provider)``: the restriction tracker of a
    splittable DoFn (the DoFn itself provides restrictions if no provider
    is given)."""

    def __init__(self, restriction_provider=None):
        self.restriction_provider = restriction_provider
        self.param_id = "RestrictionParam(%s)" % type(restriction_provider).__name__

    def __repr__(self):
        return self.param_id


class _WatermarkEstimatorParam(object):
    """``DoFn.WatermarkEstimatorParam(provider)``: the restriction's
    watermark estimator."""

    def __init__(self, watermark_estimator_provider=None):
        self.watermark_estimator_provider = watermark_estimator_provider
        self.param_id = "WatermarkEstimatorParam(%s)" % type(
            watermark_estimator_provider).__name__

    def __repr__(self):
        return self.param_id


class _BundleFinalizerParam(object):
    """``DoFn.BundleFinalizerParam``: ``register(callback)`` runs the
    callback once the bundle's output is committed."""

    def __init__(self):
        self._callbacks = []

    def register(self, callback):
        self._callbacks.append(callback)

    def finalize_bundle(self):
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb()


class RestrictionProvider(object):
    """Restrictions of a splittable DoFn's elements, as Beam's: override
    ``initial_restriction`` and ``create_tracker``; ``split`` (default: the
    restriction as is) divides work up front."""

    def initial_restriction(self, element):
        raise NotImplementedError

    def create_tracker(self, restriction):
        raise NotImplementedError

    def split(self, element, restriction):
        yield restriction

    def restriction_size(self, element, restriction):
        raise NotImplementedError

    def restriction_coder(self):
        from oxbeam.coders import PickleCoder

        return PickleCoder()

    def split_and_size(self, element, restriction):
        for part in self.split(element, restriction):
            yield part, 1

    def truncate(self, element, restriction):
        if self.create_tracker(restriction).is_bounded():
            return restriction
        return None


class WatermarkEstimatorProvider(object):
    """Watermark estimators of a splittable DoFn's restrictions."""

    def initial_estimator_state(self, element, restriction):
        raise NotImplementedError

    def create_watermark_estimator(self, estimator_state):
        raise NotImplementedError

    def estimator_state_coder(self):
        from oxbeam.coders import PickleCoder

        return PickleCoder()


class DoFn(object):
    """A function applied to each element by ``ParDo``.

    Override ``process(self, element, *args, **kwargs)`` (return or yield
    outputs); optionally ``setup``, ``start_bundle``, ``finish_bundle``
    (yield ``WindowedValue``s) and ``teardown``. Default arguments
    ``DoFn.TimestampParam`` / ``DoFn.WindowParam`` / ``DoFn.PaneInfoParam``
    receive the element's timestamp, window and pane. Stateful DoFns (over
    ``(key, value)`` input) also take ``DoFn.StateParam(spec)``,
    ``DoFn.TimerParam(spec)`` and ``DoFn.KeyParam``, and define
    ``@userstate.on_timer(spec)`` callbacks (which may take
    ``DoFn.DynamicTimerTagParam``); see :mod:`oxbeam.transforms.userstate`.
    ``DoFn.SetupContextParam(cm)`` / ``DoFn.BundleContextParam(cm)`` pass the
    value of a context manager entered per DoFn instance / per bundle (also
    in ``Map``/``FlatMap``/``Filter`` callables).
    """

    TimestampParam = _Param("TimestampParam")
    WindowParam = _Param("WindowParam")
    PaneInfoParam = _Param("PaneInfoParam")
    StateParam = _ParamFactory("StateParam", _StateDoFnParam)
    TimerParam = _ParamFactory("TimerParam", _TimerDoFnParam)
    ElementParam = _Param("ElementParam")
    SideInputParam = _Param("SideInputParam")
    KeyParam = _Param("KeyParam")
    DynamicTimerTagParam = _Param("DynamicTimerTagParam")
    BundleContextParam = _BundleContextParam
    SetupContextParam = _SetupContextParam
    RestrictionParam = _RestrictionDoFnParam
    WatermarkEstimatorParam = _WatermarkEstimatorParam
    BundleFinalizerParam = _BundleFinalizerParam

    @staticmethod
    def unbounded_per_element():
        """Marks ``process`` of a splittable DoFn as unbounded per element."""

        def wrapper(process_fn):
            process_fn.unbounded_per_element = True
            return process_fn

        return wrapper

    def default_label(self):
        return self.__class__.__name__

    def setup(self):
        pass

    def start_bundle(self):
        pass

    def process(self, element, *args, **kwargs):
        raise NotImplementedError

    def finish_bundle(self):
        pass

    def teardown(self):
        pass


def _type_options(pipeline):
    from oxbeam.options.pipeline_options import TypeOptions

    options = getattr(pipeline, "options", None)
    if options is None:
        return TypeOptions()
    return options.view_as(TypeOptions)


class _DoFnTransform(PTransform):
    """Shared by ParDo, Map, FlatMap, Filter and Partition."""

    _kind = "dofn"
    _star = False

    def __init__(self, fn, *args, **kwargs):
        PTransform.__init__(self)
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self._tags = None
        self._main_tag = None

    def with_outputs(self, *tags, **main_kw):
        """Also returns the outputs ``tags`` (values yielded as
        ``TaggedOutput(tag, value)``), as a ``DoOutputsTuple``."""
        self._tags = list(tags)
        self._main_tag = main_kw.get("main")
        return self

    def with_exception_handling(self, main_tag=None, dead_letter_tag="bad", *, exc_class=Exception,
                                partial=False, use_subprocess=False, threshold=1,
                                threshold_windowing=None, timeout=None, error_handler=None,
                                on_failure_callback=None, allow_unsafe_userstate_in_process=False):
        """Beam's dead-letter output: an element whose function raises
        ``exc_class`` goes to output ``dead_letter_tag`` as ``(element,
        (exception type, repr(exception), traceback lines))`` instead of
        failing the pipeline; the rest go to ``main_tag`` (default
        ``'good'``). ``good, bad = pcoll | ...with_exception_handling()``.
        Unless ``partial``, a failing element's earlier outputs are dropped."""
        for name, value, default in [("use_subprocess", use_subprocess, False),
                                     ("timeout", timeout, None),
                                     ("error_handler", error_handler, None),
                                     ("threshold_windowing", threshold_windowing, None)]:
            if value != default:
                raise NotImplementedError("with_exception_handling(%s=...)" % name)
        if threshold != 1:
            raise NotImplementedError("with_exception_handling(threshold=%r)" % (threshold,))
        if self._stateful() is not None or _restriction_provider_of(self) is not None:
            raise NotImplementedError("with_exception_handling of a stateful or splittable DoFn")
        wrapper = _exception_handling_dofn(self, dead_letter_tag, exc_class, partial,
                                           on_failure_callback)
        handled = ParDo(wrapper, *self.args, **self.kwargs).with_outputs(
            dead_letter_tag, main=main_tag or self._main_tag or "good")
        handled._output_type = self._output_type
        if getattr(self, "_label", None):
            handled._label = self._label
        return handled

    def _spec(self, pcoll, node):
        views = []
        side_pcolls = []

        def sub(a):
            if isinstance(a, AsSideInput):
                views.append(a._view_spec())
                side_pcolls.append(a.pvalue)
                return SideArg(len(views) - 1)
            return a

        args = tuple(sub(a) for a in self.args)
        kwargs = {k: sub(v) for k, v in self.kwargs.items()}
        node.side_inputs = side_pcolls
        fn = self.fn
        if self._kind in ("map", "flatmap") and _type_options(pcoll.pipeline).runtime_type_check:
            hint = self._output_element_type(pcoll)
            if hint is not None and hint is not typehints.Any:
                from oxbeam.typehints.decorators import checked_outputs

                fn = checked_outputs(fn, hint, self.label, self._kind == "flatmap")
        return DoFnSpec(self._kind, fn, args, kwargs, views, star=self._star)

    def _output_element_type(self, pcoll):
        if self._output_type is not None:
            return self._output_type
        # A hint from @with_output_types on the function or DoFn class.
        from oxbeam.typehints.decorators import output_type_of

        hint = output_type_of(self.fn)
        if hint is None:
            return None
        t = typehints.normalize(hint)
        if self._kind == "flatmap" and isinstance(t, typehints._Iter):
            t = t.element
        return t

    def _stateful(self):
        """``(state specs, timer specs)`` sorted by name, for stateful DoFns."""
        if self._kind != "dofn":
            return None
        from oxbeam.transforms.userstate import get_dofn_specs, validate_stateful_dofn

        states, timers = get_dofn_specs(self.fn)
        if not states and not timers:
            return None
        validate_stateful_dofn(self.fn)
        return (sorted(states, key=lambda s: s.name), sorted(timers, key=lambda t: t.name))

    def expand(self, pcoll):
        if not isinstance(pcoll, PCollection):
            raise TypeError("%s must be applied to a PCollection, got %r" % (self.label, pcoll))
        from oxbeam.typehints.decorators import check_input, input_type_of

        if _type_options(pcoll.pipeline).pipeline_type_check:
            hints = getattr(self, "_input_hints", None)
            check_input(self.label, hints[0][0] if hints and hints[0] else input_type_of(self.fn),
                        pcoll)
        node = _node(pcoll.pipeline)
        stateful = self._stateful()
        if stateful is not None:
            try:
                _coerce_kv(pcoll)
            except TypeError:
                raise TypeError(
                    "%s uses state or timers, so its input must be (key, value) pairs; got elements of "
                    "type %r" % (self.label, pcoll.element_type)
                ) from None
        spec = self._spec(pcoll, node)
        _set_pardo(node, spec, stateful, pcoll)
        main = node._add_output("None", self._output_element_type(pcoll), pcoll.windowing)
        if self._tags is None:
            return main
        out = DoOutputsTuple(pcoll.pipeline, node, self._tags, self._main_tag)
        out._pcolls["None"] = main
        for t in self._tags:
            out[t]
        return out


def _restriction_provider_of(t):
    return _restriction_provider(t.fn) if isinstance(t.fn, DoFn) else None


class _ExceptionHandlingDoFn(DoFn):
    """Runs a ParDo's DoFn or a Map/FlatMap/Filter function per element; an
    exception of ``exc_class`` becomes a dead-letter output (Beam's
    ``with_exception_handling``)."""

    def __init__(self, kind, fn, star, dead_letter_tag, exc_class, partial, on_failure_callback):
        self.kind = kind
        self.fn = fn
        self.star = star
        self.dead_letter_tag = dead_letter_tag
        self.exc_class = exc_class
        self.partial = partial
        self.on_failure_callback = on_failure_callback

    def default_label(self):
        return self.fn.default_label() if self.kind == "dofn" else _label_of(self.fn)

    def setup(self):
        if self.kind == "dofn":
            self.fn.setup()

    def start_bundle(self):
        if self.kind == "dofn":
            self.fn.start_bundle()

    def finish_bundle(self):
        if self.kind == "dofn":
            return self.fn.finish_bundle()

    def teardown(self):
        if self.kind == "dofn":
            self.fn.teardown()

    def _outputs(self, element, args, kwargs):
        if self.kind == "dofn":
            return self.fn.process(element, *args, **kwargs)
        call_args = (tuple(element) + args) if self.star else ((element,) + args)
        result = self.fn(*call_args, **kwargs)
        if self.kind == "map":
            return [result]
        if self.kind == "filter":
            return [element] if result else []
        return result

    def _handle(self, element, args, kwargs):
        import sys
        import traceback

        try:
            result = self._outputs(element, args, kwargs)
            if result is None:
                return
            if not self.partial:
                # Nothing goes out until the element has no error.
                result = list(result)
            yield from result
        except self.exc_class as exn:
            if self.on_failure_callback is not None:
                try:
                    self.on_failure_callback(exn, element)
                except Exception:  # noqa: BLE001 - as Beam: logged, not raised
                    import logging

                    logging.warning("on_failure_callback failed", exc_info=True)
            yield TaggedOutput(self.dead_letter_tag, (
                element, (type(exn), repr(exn), traceback.format_exception(*sys.exc_info()))))


def _exception_handling_dofn(t, dead_letter_tag, exc_class, partial, on_failure_callback):
    """An :class:`_ExceptionHandlingDoFn` for transform ``t`` whose
    ``process`` declares the same DoFn parameters (TimestampParam, ...) as
    the wrapped function, so the runner fills them in (a class per wrapped
    signature: the runner reads parameters from ``process``)."""
    import inspect

    inner = t.fn.process if t._kind == "dofn" else t.fn
    # The parameters the runner fills in, as it finds them in ``inner``.
    filled = {name for name, _ in _runtime._params_of(inner)}
    params = []
    if filled:
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                  for name, p in inspect.signature(inner).parameters.items() if name in filled]

    def process(self, element, *args, **kwargs):
        return self._handle(element, args, kwargs)

    self_ = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    elem = inspect.Parameter("element", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    rest = inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL)
    process.__signature__ = inspect.Signature([self_, elem, rest] + params)
    cls = type("ExceptionHandling", (_ExceptionHandlingDoFn,), {"process": process})
    kind = t._kind if t._kind in ("dofn", "map", "flatmap", "filter") else None
    if kind is None:
        raise NotImplementedError("with_exception_handling of %s" % type(t).__name__)
    return cls(kind, t.fn, t._star, dead_letter_tag, exc_class, partial, on_failure_callback)


def _set_pardo(node, spec, stateful=None, pcoll=None):
    def payload(b):
        side = {
            "side%d" % i: {"accessPattern": {"urn": b.urn("standard_side_input_types::ITERABLE")}}
            for i in range(len(node.side_inputs))
        }
        msg = {
            "doFn": {
                "urn": b.urn("oxbeam_python::DO_FN"),
                "payload": b.bytes_field(_pickle(spec)),
            }
        }
        if side:
            msg["sideInputs"] = side
        if stateful is not None:
            states, timers = stateful
            if states:
                msg["stateSpecs"] = {s.name: s.to_runner_api(b) for s in states}
            if timers:
                k, _ = typehints.kv_parts(pcoll.element_type)
                key_coder = b.coder(k)
                window_coder = b.window_coder(pcoll.windowing.windowfn)
                timer_coder = "timer(%s,%s)" % (key_coder, window_coder)
                b.coders[timer_coder] = {
                    "spec": {"urn": b.urn("standard_coders::TIMER")},
                    "componentCoderIds": [key_coder, window_coder],
                }
                msg["timerFamilySpecs"] = {t.name: t.to_runner_api(b, timer_coder) for t in timers}
            b.requirements.add(b.urn("standard_requirements::REQUIRES_STATEFUL_PROCESSING"))
        return b.encode("org.apache.beam.model.pipeline.v1.ParDoPayload", msg)

    node.primitive = ("standard_p_transforms::primitives::PAR_DO", payload, True)


def _b64(b):
    import base64

    return base64.b64encode(b).decode("ascii")


class ParDo(_DoFnTransform):
    """Applies a :class:`DoFn` to every element."""

    def __init__(self, fn, *args, **kwargs):
        if not isinstance(fn, DoFn):
            raise TypeError("ParDo must be called with a DoFn instance, got %r" % (fn,))
        _check_unsupported_params(fn)
        from oxbeam.transforms.userstate import validate_stateful_dofn

        validate_stateful_dofn(fn)
        _DoFnTransform.__init__(self, fn, *args, **kwargs)

    def default_label(self):
        return "ParDo(%s)" % self.fn.default_label()

    def expand(self, pcoll):
        provider = _restriction_provider(self.fn)
        if provider is None:
            return _DoFnTransform.expand(self, pcoll)
        return _expand_splittable(self, pcoll, provider)


def _restriction_provider(dofn):
    """The restriction provider of a splittable DoFn, or None."""
    import inspect

    try:
        params = inspect.signature(dofn.process).parameters.values()
    except (TypeError, ValueError):
        return None
    for p in params:
        if isinstance(p.default, _RestrictionDoFnParam):
            provider = p.default.restriction_provider or dofn
            if not callable(getattr(provider, "create_tracker", None)):
                raise ValueError("%s: DoFn.RestrictionParam needs a RestrictionProvider (or the "
                                 "DoFn must define initial_restriction and create_tracker)"
                                 % type(dofn).__name__)
            return provider
    return None


class _PairWithRestriction(object):
    def __init__(self, provider):
        self.provider = provider

    def __call__(self, element):
        return element, self.provider.initial_restriction(element)


class _SplitRestriction(object):
    def __init__(self, provider):
        self.provider = provider

    def __call__(self, pair):
        element, restriction = pair
        return [(element, r) for r in self.provider.split(element, restriction)]


def _expand_splittable(pardo, pcoll, provider):
    """A splittable DoFn as Beam expands one: pair each element with its
    initial restriction, split it, spread the parts over workers, then
    process each part with a tracker (see :class:`_ProcessRestrictions`)."""
    if pardo._stateful() is not None:
        raise NotImplementedError("splittable DoFns with state or timers")
    parts = (
        pcoll
        | "PairWithRestriction" >> Map(_PairWithRestriction(provider)).with_output_types(
            typehints.Any)
        | "SplitRestriction" >> FlatMap(_SplitRestriction(provider)).with_output_types(
            typehints.Any)
        | "Reshuffle" >> Reshuffle()
    )
    inner = ParDo(_ProcessRestrictions(pardo.fn, provider), *pardo.args, **pardo.kwargs)
    inner._output_type = pardo._output_element_type(pcoll)
    if pardo._tags is not None:
        inner = inner.with_outputs(*pardo._tags, main=pardo._main_tag)
    return parts | "Process" >> inner


class _TrackerView(object):
    """What a splittable DoFn's ``process`` gets as its tracker: Beam's
    ``RestrictionTrackerView`` (claim, read, defer the remainder)."""

    def __init__(self, tracker):
        self._tracker = tracker
        self.deferred = False
        self.resume_delay = None

    def current_restriction(self):
        return self._tracker.current_restriction()

    def try_claim(self, position):
        return self._tracker.try_claim(position)

    def defer_remainder(self, deferred_time=None):
        self.deferred = True
        self.resume_delay = deferred_time

    def current_progress(self):
        return self._tracker.current_progress()

    def is_bounded(self):
        return self._tracker.is_bounded()


def _resume_after(delay):
    """Sleeps until a self-checkpoint's remainder is due."""
    import time

    from oxbeam.utils.timestamp import Duration, Timestamp

    if delay is None:
        return
    if isinstance(delay, Timestamp):
        seconds = delay.micros / 1e6 - time.time()
    elif isinstance(delay, Duration):
        seconds = delay.micros / 1e6
    else:
        seconds = float(delay)
    if seconds > 0:
        time.sleep(seconds)


class _ProcessRestrictions(DoFn):
    """Runs a splittable DoFn over ``(element, restriction)`` pairs: each
    restriction is processed with a fresh tracker until it is done; a
    self-checkpoint (``defer_remainder``) resumes the remainder after its
    delay, in the same worker. Outputs of a restriction go on when its
    ``process`` call returns."""

    def __init__(self, fn, provider):
        self.fn = fn
        self.provider = provider

    def default_label(self):
        return self.fn.default_label()

    def setup(self):
        import inspect

        self.fn.setup()
        self._plan = []
        for name, p in inspect.signature(self.fn.process).parameters.items():
            d = p.default
            if isinstance(d, _RestrictionDoFnParam):
                self._plan.append((name, "tracker"))
            elif isinstance(d, _WatermarkEstimatorParam):
                self._plan.append((name, "estimator", d.watermark_estimator_provider or self.fn))
            elif d is DoFn.BundleFinalizerParam:
                self._plan.append((name, "finalizer"))
            elif d is DoFn.TimestampParam:
                self._plan.append((name, "timestamp"))
            elif d is DoFn.WindowParam:
                self._plan.append((name, "window"))
            elif d is DoFn.PaneInfoParam:
                self._plan.append((name, "pane"))
        self._finalizer = _BundleFinalizerParam()

    def start_bundle(self):
        self.fn.start_bundle()

    def process(self, pair, *args, _ox_ts=DoFn.TimestampParam, _ox_window=DoFn.WindowParam,
                _ox_pane=DoFn.PaneInfoParam, **kwargs):
        element, restriction = pair
        estimators = {}
        out = []
        while restriction is not None:
            tracker = self.provider.create_tracker(restriction)
            view = _TrackerView(tracker)
            kw = dict(kwargs)
            for entry in self._plan:
                name, kind = entry[0], entry[1]
                if kind == "tracker":
                    kw[name] = view
                elif kind == "estimator":
                    est = estimators.get(name)
                    if est is None:
                        wp = entry[2]
                        est = estimators[name] = wp.create_watermark_estimator(
                            wp.initial_estimator_state(element, restriction))
                    kw[name] = est
                elif kind == "finalizer":
                    kw[name] = self._finalizer
                elif kind == "timestamp":
                    kw[name] = _ox_ts
                elif kind == "window":
                    kw[name] = _ox_window
                else:
                    kw[name] = _ox_pane
            result = self.fn.process(element, *args, **kw)
            if result is not None:
                out.extend(result)
            if view.deferred:
                split = tracker.try_split(0)
                restriction = split[1] if split is not None else None
                if restriction is not None:
                    _resume_after(view.resume_delay)
            else:
                tracker.check_done()
                restriction = None
        return out

    def finish_bundle(self):
        out = self.fn.finish_bundle()
        out = list(out) if out is not None else []
        self._finalizer.finalize_bundle()
        return out

    def teardown(self):
        self.fn.teardown()


def _check_unsupported_params(dofn):
    import inspect

    try:
        sig = inspect.signature(dofn.process)
    except (TypeError, ValueError):
        return
    for p in sig.parameters.values():
        d = p.default
        if d is DoFn.StateParam or d is DoFn.TimerParam:
            raise TypeError("%s needs a spec: DoFn.%s(spec)" % (p.name, d.name))
    if hasattr(dofn, "process_batch"):
        raise NotImplementedError("batched DoFns (process_batch)")


class Map(_DoFnTransform):
    """``fn(element, *args, **kwargs)`` for every element."""

    _kind = "map"

    def __init__(self, fn, *args, **kwargs):
        if not callable(fn):
            raise TypeError("Map can be used only with callable objects. Received %r instead." % (fn,))
        _DoFnTransform.__init__(self, fn, *args, **kwargs)

    def default_label(self):
        return "Map(%s)" % _label_of(self.fn)


class MapTuple(Map):
    """``fn(*element, *args, **kwargs)`` for every element."""

    _star = True

    def default_label(self):
        return "MapTuple(%s)" % _label_of(self.fn)


class FlatMap(_DoFnTransform):
    """Every element of the iterable ``fn(element, *args, **kwargs)``."""

    _kind = "flatmap"

    def __init__(self, fn=None, *args, **kwargs):
        if fn is None:
            fn = _identity
        if not callable(fn):
            raise TypeError("FlatMap can be used only with callable objects. Received %r instead." % (fn,))
        _DoFnTransform.__init__(self, fn, *args, **kwargs)

    def default_label(self):
        return "FlatMap(%s)" % _label_of(self.fn)


class FlatMapTuple(FlatMap):
    """Every element of ``fn(*element, *args, **kwargs)``."""

    _star = True

    def default_label(self):
        return "FlatMapTuple(%s)" % _label_of(self.fn)


def _identity(x):
    return x


class Filter(_DoFnTransform):
    """The elements for which ``fn(element, *args, **kwargs)`` is true."""

    _kind = "filter"

    def __init__(self, fn, *args, **kwargs):
        if not callable(fn):
            raise TypeError("Filter can be used only with callable objects. Received %r instead." % (fn,))
        _DoFnTransform.__init__(self, fn, *args, **kwargs)

    def default_label(self):
        return "Filter(%s)" % _label_of(self.fn)

    def _output_element_type(self, pcoll):
        return pcoll.element_type


class PartitionFn(object):
    """Chooses the partition of an element: override ``partition_for``."""

    def partition_for(self, element, num_partitions, *args, **kwargs):
        raise NotImplementedError


class _PartitionCall(object):
    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def __call__(self, element, *args, **kwargs):
        if isinstance(self.fn, PartitionFn):
            return self.fn.partition_for(element, self.n, *args, **kwargs)
        return self.fn(element, self.n, *args, **kwargs)


class Partition(_DoFnTransform):
    """Splits a PCollection into ``n`` by ``fn(element, n, *args)``."""

    _kind = "partition"

    def __init__(self, fn, n, *args, **kwargs):
        _DoFnTransform.__init__(self, _PartitionCall(fn, n), *args, **kwargs)
        self.n = n
        self._orig = fn

    def default_label(self):
        return "Partition(%s)" % _label_of(self._orig)

    def expand(self, pcoll):
        node = _node(pcoll.pipeline)
        spec = self._spec(pcoll, node)
        spec.n = self.n
        _set_pardo(node, spec)
        return tuple(
            node._add_output(str(i), pcoll.element_type, pcoll.windowing) for i in range(self.n)
        )


class Impulse(PTransform):
    """One empty ``bytes`` element in the global window."""

    def expand(self, pbegin):
        node = _node(pbegin.pipeline)
        node.primitive = ("standard_p_transforms::primitives::IMPULSE", None, False)
        return node._add_output("out", bytes, GlobalWindows())


class Create(PTransform):
    """A PCollection of the given values (a dict gives its items)."""

    def __init__(self, values, reshuffle=True):
        PTransform.__init__(self)
        if isinstance(values, (str, bytes)):
            raise TypeError("PTransform Create: Refusing to treat string as an iterable. (string=%r)" % (values,))
        if isinstance(values, dict):
            values = values.items()
        # A range stays one (a million ints: no list to build, type at once).
        self.values = values if type(values) is range else list(values)
        self.reshuffle = reshuffle

    def default_label(self):
        return "Create"

    def expand(self, pbegin):
        if not isinstance(pbegin, PBegin):
            raise TypeError("Create must be applied to a pipeline, got %r" % (pbegin,))
        imp = pbegin | "Impulse" >> Impulse()
        t = self._output_type if self._output_type is not None else typehints.infer(self.values)
        if not self.reshuffle or len(self.values) <= _CREATE_CHUNK:
            return imp | "Create" >> _CreateValues(list(self.values)).with_output_types(t)
        # Large inputs, as the Rust SDK's Create: chunk numbers, redistributed,
        # each read as its slice of the values — so the chunks' downstream
        # work spreads over workers (and over harness processes).
        chunks = (len(self.values) + _CREATE_CHUNK - 1) // _CREATE_CHUNK
        return (
            imp
            | "Chunks" >> _CreateValues(list(range(chunks))).with_output_types(int)
            | "Reshuffle" >> Reshuffle()
            | "Values" >> FlatMap(_CreateChunk(self.values, _CREATE_CHUNK, t)).with_output_types(t)
        )


# Values per chunk of a large Create.
_CREATE_CHUNK = 4096


class _CreateChunk(object):
    """Chunk ``i`` of a large Create's values (64-bit ints and floats kept
    as an ``array``: they pickle and unpickle as one block of bytes)."""

    def __init__(self, values, size, element_type=None):
        import array

        code = {int: "q", float: "d"}.get(element_type)
        if type(values) is range:
            self.values = values  # pickles as three numbers
        else:
            self.values = array.array(code, values) if code else values
        self.size = size

    def __call__(self, i):
        chunk = self.values[i * self.size : (i + 1) * self.size]
        return chunk if type(chunk) is list else list(chunk)


class _CreateValues(PTransform):
    def __init__(self, values):
        PTransform.__init__(self)
        self.values = values

    def expand(self, pcoll):
        node = _node(pcoll.pipeline)
        _set_pardo(node, DoFnSpec("create", None, values=self.values))
        return node._add_output("None", self._output_type, pcoll.windowing)


def _coerce_kv(pcoll):
    """Makes an ``Any`` PCollection use a KV coder (GroupByKey needs one)."""
    if typehints.is_kv(pcoll.element_type):
        return
    if pcoll.element_type is not typehints.Any:
        raise TypeError(
            "Input to GroupByKey must be a PCollection with elements compatible with KV[A, B]; "
            "got %r" % (pcoll.element_type,)
        )
    pcoll.element_type = typehints.KV[typehints.Any, typehints.Any]
    prod = pcoll.producer
    if prod is not None and prod.primitive and prod.primitive[0].endswith("FLATTEN"):
        for i in prod.inputs:
            _coerce_kv(i)


class GroupByKey(PTransform):
    """Groups ``(key, value)`` pairs by key (and window) into ``(key, [values])``."""

    def expand(self, pcoll):
        _coerce_kv(pcoll)
        node = _node(pcoll.pipeline)
        node.primitive = ("standard_p_transforms::primitives::GROUP_BY_KEY", None, False)
        k, v = typehints.kv_parts(pcoll.element_type)
        # As in Beam: the output continues the input's trigger.
        return node._add_output("None", typehints.KV[k, typehints.iterable_of(v)],
                                pcoll.windowing._continuation())


class CombineFn(object):
    """Combines values associatively: accumulators are created, fed inputs,
    merged, and turned into the output."""

    def setup(self, *args, **kwargs):
        pass

    def create_accumulator(self, *args, **kwargs):
        raise NotImplementedError

    def add_input(self, mutable_accumulator, element, *args, **kwargs):
        raise NotImplementedError

    def add_inputs(self, mutable_accumulator, elements, *args, **kwargs):
        for e in elements:
            mutable_accumulator = self.add_input(mutable_accumulator, e, *args, **kwargs)
        return mutable_accumulator

    def merge_accumulators(self, accumulators, *args, **kwargs):
        raise NotImplementedError

    def compact(self, accumulator, *args, **kwargs):
        return accumulator

    def extract_output(self, accumulator, *args, **kwargs):
        raise NotImplementedError

    def teardown(self, *args, **kwargs):
        pass

    def apply(self, elements, *args, **kwargs):
        return self.extract_output(self.add_inputs(self.create_accumulator(), elements))

    def default_label(self):
        return self.__class__.__name__

    @staticmethod
    def from_callable(fn):
        """A CombineFn applying ``fn`` (e.g. ``sum``) to a list of values and
        accumulators, as Beam's ``CombineFn.from_callable``."""
        return CallableWrapperCombineFn(fn)

    @staticmethod
    def maybe_from_callable(fn, has_side_inputs=False):
        if isinstance(fn, CombineFn):
            return fn
        if callable(fn):
            return CallableWrapperCombineFn(fn)
        raise TypeError("Expected a CombineFn or callable, got %r" % (fn,))

    def output_type(self):
        return typehints.Any


class CallableWrapperCombineFn(CombineFn):
    """A CombineFn from ``fn(iterable) -> value`` (e.g. ``sum``, ``max``)."""

    _BUFFER = 1000

    def __init__(self, fn, buffer_size=_BUFFER):
        self._fn = fn
        self._buffer_size = buffer_size
        if fn is sum:
            self._oxbeam_fast = "sum"
        elif fn is min:
            self._oxbeam_fast = "min"
        elif fn is max:
            self._oxbeam_fast = "max"

    def default_label(self):
        return "CallableWrapperCombineFn(%s)" % _label_of(self._fn)

    def create_accumulator(self, *args, **kwargs):
        return []

    def add_input(self, accumulator, element, *args, **kwargs):
        accumulator.append(element)
        if len(accumulator) > self._buffer_size:
            accumulator = [self._fn(accumulator, *args, **kwargs)]
        return accumulator

    def add_inputs(self, accumulator, elements, *args, **kwargs):
        accumulator.extend(elements)
        if len(accumulator) > self._buffer_size:
            accumulator = [self._fn(accumulator, *args, **kwargs)]
        return accumulator

    def merge_accumulators(self, accumulators, *args, **kwargs):
        merged = []
        for a in accumulators:
            merged.extend(a)
        return [self._fn(merged, *args, **kwargs)] if merged else []

    def compact(self, accumulator, *args, **kwargs):
        return [self._fn(accumulator, *args, **kwargs)] if len(accumulator) > 1 else accumulator

    def extract_output(self, accumulator, *args, **kwargs):
        return self._fn(accumulator, *args, **kwargs)


def _combine_payload(cf):
    def payload(b):
        msg = {
            "combineFn": {"urn": b.urn("oxbeam_python::COMBINE_FN"), "payload": b.bytes_field(_pickle(cf))},
            "accumulatorCoderId": b.coder(typehints.Any),
        }
        return b.encode("org.apache.beam.model.pipeline.v1.CombinePayload", msg)

    return payload


def _combine_output_type(cf, explicit):
    if explicit is not None:
        return explicit
    return typehints.normalize(cf.output_type()) if hasattr(cf, "output_type") else typehints.Any


class CombinePerKey(PTransform):
    """Combines the values of each key with a CombineFn (or a callable such
    as ``sum``); lifted before the shuffle by the runner."""

    def __init__(self, fn, *args, **kwargs):
        PTransform.__init__(self)
        self.fn = CombineFn.maybe_from_callable(fn)
        self._orig = fn
        self.args = args
        self.kwargs = kwargs

    def with_hot_key_fanout(self, fanout):
        """Beam's spreading of hot keys over intermediate combines: each
        bundle's values are pre-combined per key before the shuffle anyway
        (combiner lifting), so this changes nothing here."""
        if not callable(fanout) and int(fanout) < 1:
            raise ValueError("with_hot_key_fanout(%r): expected a positive fanout" % (fanout,))
        return self

    def default_label(self):
        return "CombinePerKey(%s)" % (
            _label_of(self._orig) if not isinstance(self._orig, CombineFn) else self._orig.default_label()
        )

    def expand(self, pcoll):
        _coerce_kv(pcoll)
        k, _ = typehints.kv_parts(pcoll.element_type)
        out_t = typehints.KV[k, _combine_output_type(self.fn, self._output_type)]
        if self.args or self.kwargs:
            # Extra arguments (side inputs among them) reach the CombineFn's
            # methods in a ParDo after the grouping: not lifted, as in Beam.
            return (
                pcoll
                | "GroupByKey" >> GroupByKey()
                | "Combine" >> ParDo(_CombineWithArgs(self.fn), *self.args, **self.kwargs)
                .with_output_types(out_t)
            )
        node = _node(pcoll.pipeline)
        node.primitive = ("standard_p_transforms::composites::COMBINE_PER_KEY", _combine_payload(self.fn), False)
        grouped = pcoll | "GroupByKey" >> GroupByKey()
        return grouped | "Combine" >> _CombineGroupedValues(self.fn).with_output_types(out_t)


class _CombineWithArgs(DoFn):
    """``(key, values)`` to ``(key, combined)``; extra arguments, if any,
    are passed to every CombineFn method."""

    def __init__(self, cf):
        self.cf = cf

    def setup(self):
        self.cf.setup()

    def process(self, kv, *args, **kwargs):
        cf = self.cf
        acc = cf.add_inputs(cf.create_accumulator(*args, **kwargs), kv[1], *args, **kwargs)
        yield (kv[0], cf.extract_output(acc, *args, **kwargs))

    def teardown(self):
        self.cf.teardown()


class _CombineGroupedValues(PTransform):
    def __init__(self, fn):
        PTransform.__init__(self)
        self.fn = fn

    def expand(self, pcoll):
        node = _node(pcoll.pipeline)
        node.primitive = (
            "standard_p_transforms::combine_components::COMBINE_GROUPED_VALUES",
            _combine_payload(self.fn),
            True,
        )
        return node._add_output("None", self._output_type, pcoll.windowing)


class _InjectDefault(object):
    def __init__(self, cf):
        self.cf = cf

    def __call__(self, _, combined, *args, **kwargs):
        if combined:
            return combined
        cf = self.cf
        return [cf.extract_output(cf.create_accumulator(*args, **kwargs), *args, **kwargs)]


class CombineGlobally(PTransform):
    """Combines all elements (per window) into one value; in the global
    window an empty input gives the CombineFn's empty result."""

    def __init__(self, fn, *args, **kwargs):
        PTransform.__init__(self)
        self.fn = CombineFn.maybe_from_callable(fn)
        self._orig = fn
        self.args = args
        self.kwargs = kwargs
        self.has_defaults = True

    def default_label(self):
        return "CombineGlobally(%s)" % (
            _label_of(self._orig) if not isinstance(self._orig, CombineFn) else self._orig.default_label()
        )

    def without_defaults(self):
        self.has_defaults = False
        return self

    def with_fanout(self, fanout):
        """Beam's intermediate pre-combining for a large global combine: the
        runner already pre-combines every bundle (combiner lifting) and
        merges the accumulators, so this changes nothing here."""
        if int(fanout) < 1:
            raise ValueError("with_fanout(%r): expected a positive fanout" % (fanout,))
        return self

    def as_singleton_view(self):
        """A transform whose result is the combined value as a singleton
        side input (``pvalue.AsSingleton``), as in Beam."""
        return _CombineGloballyAsSingletonView(self)

    def expand(self, pcoll):
        from oxbeam.pvalue import AsList

        out_t = _combine_output_type(self.fn, self._output_type)
        keyed = pcoll | "KeyWithVoid" >> Map(_key_with_none).with_output_types(
            typehints.KV[typehints.Any, pcoll.element_type]
        )
        combined = (
            keyed
            | "CombinePerKey" >> CombinePerKey(self.fn, *self.args, **self.kwargs).with_output_types(out_t)
            | "UnKey" >> Map(_value).with_output_types(out_t)
        )
        # The default is injected for the global window with the default
        # trigger only: under a trigger, panes replace the single result.
        if not self.has_defaults or not pcoll.windowing.is_default():
            return combined
        return (
            pcoll.pipeline
            | "DoOnce" >> Create([None])
            | "InjectDefault" >> FlatMap(
                _InjectDefault(self.fn), AsList(combined), *self.args, **self.kwargs
            ).with_output_types(out_t)
        )


class _CombineGloballyAsSingletonView(PTransform):
    def __init__(self, combine):
        PTransform.__init__(self)
        self.combine = combine

    def default_label(self):
        return self.combine.default_label()

    def expand(self, pcoll):
        from oxbeam.pvalue import AsSingleton

        return AsSingleton(pcoll | "CombineValues" >> self.combine)


@_batched(_runtime.key_with_none_batch)
def _key_with_none(v):
    return (None, v)


@_batched(_runtime.key_batch)
def _key(kv):
    return kv[0]


@_batched(_runtime.value_batch)
def _value(kv):
    return kv[1]


@_batched(_runtime.swap_batch)
def _swap(kv):
    return (kv[1], kv[0])


class CombineValues(PTransform):
    """Combines each ``(key, iterable)``'s values into ``(key, result)``."""

    def __init__(self, fn, *args, **kwargs):
        PTransform.__init__(self)
        self.fn = CombineFn.maybe_from_callable(fn)
        self._orig = fn
        self.args = args
        self.kwargs = kwargs

    def default_label(self):
        return "CombineValues(%s)" % (
            _label_of(self._orig) if not isinstance(self._orig, CombineFn) else self._orig.default_label()
        )

    def expand(self, pcoll):
        k, _ = typehints.kv_parts(pcoll.element_type)
        out_t = typehints.KV[k, _combine_output_type(self.fn, self._output_type)]
        return pcoll | "Combine" >> ParDo(
            _CombineWithArgs(self.fn), *self.args, **self.kwargs
        ).with_output_types(out_t)


class FlattenWith(PTransform):
    """``pcoll | FlattenWith(*others)``: the union of ``pcoll`` and others
    (PCollections, or root transforms applied to the pipeline)."""

    def __init__(self, *others):
        PTransform.__init__(self)
        self._others = others

    def expand(self, pcoll):
        pcolls = [pcoll]
        for i, other in enumerate(self._others):
            if isinstance(other, PCollection):
                pcolls.append(other)
            elif isinstance(other, PTransform):
                pcolls.append(pcoll.pipeline | ("Other%d" % i) >> other)
            else:
                raise TypeError("FlattenWith takes PCollections or root PTransforms, got %r"
                                % (other,))
        return tuple(pcolls) | Flatten()


class Flatten(PTransform):
    """The union of several PCollections (all with the same windowing)."""

    def __init__(self, **kwargs):
        PTransform.__init__(self)
        self.pipeline = kwargs.pop("pipeline", None)
        if kwargs:
            raise ValueError("Unexpected keyword arguments: %s" % list(kwargs))

    def expand(self, pcolls):
        if isinstance(pcolls, PCollection):
            pcolls = [pcolls]
        pcolls = list(pcolls.values()) if isinstance(pcolls, dict) else list(pcolls)
        if not pcolls:
            if self.pipeline is None:
                raise ValueError("Flatten of zero PCollections needs Flatten(pipeline=p)")
            return self.pipeline | "Empty" >> Create([])
        for pc in pcolls:
            if not isinstance(pc, PCollection):
                raise TypeError("Flatten inputs must be PCollections, got %r" % (pc,))
        windowing = pcolls[0].windowing
        for pc in pcolls[1:]:
            if pc.windowing != windowing:
                raise ValueError("Inputs to Flatten have incompatible windows: %r and %r" % (windowing, pc.windowing))
        types = {repr(pc.element_type) for pc in pcolls}
        if len(types) == 1:
            t = pcolls[0].element_type
        else:
            # The runner unions encoded bytes: re-encode inputs to one coder.
            t = typehints.Any
            pcolls = [
                pc if pc.element_type is typehints.Any
                else pc | ("ToAny%d" % i) >> Map(_identity).with_output_types(typehints.Any)
                for i, pc in enumerate(pcolls)
            ]
        pipeline = pcolls[0].pipeline
        return pipeline.apply(_FlattenPrimitive(t, windowing), tuple(pcolls), "Flatten")


class _FlattenPrimitive(PTransform):
    def __init__(self, t, windowing):
        PTransform.__init__(self)
        self.t = t
        self.windowing = windowing

    def expand(self, pcolls):
        node = _node(pcolls[0].pipeline)
        node.primitive = ("standard_p_transforms::primitives::FLATTEN", None, False)
        return node._add_output("None", self.t, self.windowing)


class WindowInto(PTransform):
    """Assigns every element to windows of ``windowfn`` and sets the
    windowing strategy of the output: ``trigger`` (a
    :class:`~oxbeam.transforms.trigger.TriggerFn`), ``accumulation_mode``
    (required with a non-default trigger), ``timestamp_combiner`` and
    ``allowed_lateness`` (seconds). ``windowfn`` may be a ``Windowing``,
    whose settings the other arguments override."""

    def __init__(self, windowfn, trigger=None, accumulation_mode=None, timestamp_combiner=None,
                 allowed_lateness=0):
        PTransform.__init__(self)
        if isinstance(windowfn, Windowing):
            w = windowfn
            windowfn = w.windowfn
            trigger = trigger or w.triggerfn
            accumulation_mode = accumulation_mode or w.accumulation_mode
            timestamp_combiner = timestamp_combiner or w.timestamp_combiner
        if not isinstance(windowfn, WindowFn):
            raise TypeError("WindowInto needs a WindowFn, got %r" % (windowfn,))
        windowfn._proto()
        self.windowing = Windowing(windowfn, trigger, accumulation_mode, timestamp_combiner, allowed_lateness)
        self.windowfn = windowfn

    def get_windowing(self, unused_inputs=None):
        return self.windowing

    def expand(self, pcoll):
        node = _node(pcoll.pipeline)
        wf = self.windowfn

        def payload(b):
            from oxbeam import _oxbeam
            import json

            return _oxbeam.encode_proto(
                "org.apache.beam.model.pipeline.v1.WindowIntoPayload",
                json.dumps({"windowFn": b.window_fn_spec(wf)}),
            )

        node.primitive = ("standard_p_transforms::primitives::ASSIGN_WINDOWS", payload, True)
        return node._add_output("None", pcoll.element_type, self.windowing)


class Keys(PTransform):
    """The keys of ``(key, value)`` pairs."""

    def expand(self, pcoll):
        k, _ = typehints.kv_parts(pcoll.element_type)
        return pcoll | "Keys" >> Map(_key).with_output_types(k)


class Values(PTransform):
    """The values of ``(key, value)`` pairs."""

    def expand(self, pcoll):
        _, v = typehints.kv_parts(pcoll.element_type)
        return pcoll | "Values" >> Map(_value).with_output_types(v)


class KvSwap(PTransform):
    """``(key, value)`` → ``(value, key)``."""

    def expand(self, pcoll):
        k, v = typehints.kv_parts(pcoll.element_type)
        return pcoll | "KvSwap" >> Map(_swap).with_output_types(typehints.KV[v, k])


class _AddRandomKey(DoFn):
    def __init__(self, n):
        self.n = n

    def process(self, element, timestamp=DoFn.TimestampParam):
        return [(random.randrange(self.n), (element, timestamp))]


@_runtime.flat_batched(_runtime.restore_batch)
def _restore(kv):
    return [TimestampedValue(v, ts) for v, ts in kv[1]]


class Reshuffle(PTransform):
    """Redistributes elements (a fusion break); keeps timestamps and windows."""

    def __init__(self, num_buckets=None):
        PTransform.__init__(self)
        self.num_buckets = num_buckets or 1024

    def expand(self, pcoll):
        node = _node(pcoll.pipeline)
        node.primitive = ("standard_p_transforms::composites::RESHUFFLE", None, False)
        keyed = pcoll | "AddRandomKeys" >> ParDo(_AddRandomKey(self.num_buckets))
        saved = pcoll.windowing
        if not saved.is_default() or not pcoll.is_bounded:
            # As Beam's Reshuffle: pass every element on at once, whatever
            # the trigger, and never drop late data; the grouping keeps the
            # windows, the output gets the input's windowing back.
            from oxbeam.transforms.trigger import AccumulationMode, Always

            keyed.windowing = Windowing(saved.windowfn, Always(), AccumulationMode.DISCARDING,
                                        allowed_lateness=_RESHUFFLE_LATENESS_SECONDS)
        out = (
            keyed
            | "GroupByKey" >> GroupByKey()
            | "RemoveRandomKeys" >> FlatMap(_restore).with_output_types(pcoll.element_type)
        )
        out.windowing = saved
        return out


# Allowed lateness of Reshuffle's grouping: late data is never dropped in
# practice (ten years), without overflowing window expiry times.
_RESHUFFLE_LATENESS_SECONDS = 10 * 365 * 24 * 3600



class Distinct(PTransform):
    """Each distinct element once."""

    def expand(self, pcoll):
        from oxbeam.transforms.combiners import CountCombineFn

        return (
            pcoll
            | "ToPairs" >> Map(_key_with_none_swapped).with_output_types(
                typehints.KV[pcoll.element_type, typehints.Any]
            )
            | "Group" >> CombinePerKey(CountCombineFn())
            | "Distinct" >> Keys()
        )


@_batched(_runtime.pair_with_none_batch)
def _key_with_none_swapped(v):
    return (v, None)


class _Tag(object):
    def __init__(self, i):
        self.i = i

    def __call__(self, kv):
        return (kv[0], (self.i, kv[1]))


class _Ungroup(object):
    def __init__(self, tags, is_dict):
        self.tags = tags
        self.is_dict = is_dict

    def __call__(self, kv):
        lists = [[] for _ in self.tags]
        for i, v in kv[1]:
            lists[i].append(v)
        if not self.is_dict:
            return (kv[0], tuple(lists))
        return (kv[0], dict(zip(self.tags, lists)))


class CoGroupByKey(PTransform):
    """Joins several keyed PCollections: ``{tag: pcoll}`` gives
    ``(key, {tag: [values]})``, a tuple of PCollections gives
    ``(key, ([values], ...))``."""

    def __init__(self, **kwargs):
        PTransform.__init__(self)
        self.pipeline = kwargs.pop("pipeline", None)

    def expand(self, pcolls):
        if isinstance(pcolls, dict):
            tags = list(pcolls.keys())
            items = list(pcolls.values())
        else:
            items = list(pcolls)
            tags = list(range(len(items)))
        kv_any = typehints.KV[typehints.Any, typehints.Any]
        tagged = [
            pc | ("Tag[%s]" % t) >> Map(_Tag(i)).with_output_types(kv_any)
            for i, (t, pc) in enumerate(zip(tags, items))
        ]
        return (
            tuple(tagged)
            | "Flatten" >> Flatten()
            | "GroupByKey" >> GroupByKey()
            | "MapTuple" >> Map(_Ungroup(tags, isinstance(pcolls, dict))).with_output_types(kv_any)
        )


def _field_getter(expr):
    """A callable for a GroupBy/Select field: an attribute name or a callable."""
    if isinstance(expr, str):
        return operator.attrgetter(expr)
    if callable(expr):
        return expr
    raise TypeError("field expressions must be attribute names or callables, got %r" % (expr,))


_NAMED_TUPLES = {}


def _named_tuple(type_name, fields):
    """A namedtuple class per (name, fields), picklable by value."""
    key = (type_name, tuple(fields))
    cls = _NAMED_TUPLES.get(key)
    if cls is None:
        import collections

        cls = _NAMED_TUPLES[key] = collections.namedtuple(type_name, fields)
        cls.__reduce__ = lambda self: (_make_named_tuple, (type_name, tuple(fields), tuple(self)))
    return cls


def _make_named_tuple(type_name, fields, values):
    return _named_tuple(type_name, fields)(*values)


class _KeyOf(object):
    """The grouping key of an element: one field's value, or a named tuple."""

    def __init__(self, fields, as_tuple):
        self.names = tuple(n for n, _ in fields)
        self.exprs = [e for _, e in fields]
        self.as_tuple = as_tuple

    def __call__(self, v):
        if not self.as_tuple:
            return self.exprs[0](v)
        return _named_tuple("Key", self.names)(*(e(v) for e in self.exprs))


class GroupBy(PTransform):
    """Groups by key expressions, as ``apache_beam.GroupBy``: each argument
    is an attribute name or a callable; one positional argument gives
    ``(key, [elements])``, several (or keyword arguments) a named-tuple key.
    ``aggregate_field(field, combine_fn, dest)`` turns it into an
    aggregation whose outputs are named tuples of the key fields and the
    aggregates."""

    def __init__(self, *fields, **kwargs):
        PTransform.__init__(self)
        if len(fields) == 1 and not kwargs:
            name = fields[0] if isinstance(fields[0], str) else "key"
            self._fields = [(name, _field_getter(fields[0]))]
            self._as_tuple = False
        else:
            self._fields = [
                (f if isinstance(f, str) else "key%d" % i, _field_getter(f)) for i, f in enumerate(fields)
            ] + [(n, _field_getter(e)) for n, e in kwargs.items()]
            self._as_tuple = True

    def force_tuple_keys(self, value=True):
        import copy

        g = copy.copy(self)
        g._as_tuple = value or len(self._fields) > 1
        return g

    def aggregate_field(self, field, combine_fn, dest):
        return _GroupAndAggregate(self, []).aggregate_field(field, combine_fn, dest)

    def default_label(self):
        return "GroupBy(%s)" % ", ".join(n for n, _ in self._fields)

    def expand(self, pcoll):
        key_of = _KeyOf(self._fields, self._as_tuple)
        return pcoll | "KeyBy" >> Map(lambda v: (key_of(v), v)) | GroupByKey()


class _GroupAndAggregate(PTransform):
    def __init__(self, grouping, aggregations):
        PTransform.__init__(self)
        self._grouping = grouping
        self._aggregations = aggregations

    def aggregate_field(self, field, combine_fn, dest):
        return _GroupAndAggregate(
            self._grouping, self._aggregations + [(_field_getter(field), combine_fn, dest)]
        )

    def default_label(self):
        return "GroupBy(%s).Aggregate(%s)" % (
            ", ".join(n for n, _ in self._grouping._fields),
            ", ".join(d for _, _, d in self._aggregations),
        )

    def expand(self, pcoll):
        from oxbeam.transforms.combiners import TupleCombineFn

        key_of = _KeyOf(self._grouping._fields, True)
        exprs = [e for e, _, _ in self._aggregations]
        names = key_of.names + tuple(d for _, _, d in self._aggregations)
        return (
            pcoll
            | "KeyAndValues" >> Map(lambda v: (key_of(v), [e(v) for e in exprs]))
            | CombinePerKey(TupleCombineFn(*[c for _, c, _ in self._aggregations]))
            | "ToResult" >> Map(lambda kv: _named_tuple("Result", names)(*(tuple(kv[0]) + tuple(kv[1]))))
        )


class Select(PTransform):
    """Each element as a ``Row`` of the given fields, as ``apache_beam.Select``:
    positional arguments are attribute names (or callables, named
    ``argNN``), keyword arguments name their expressions."""

    def __init__(self, *args, **kwargs):
        PTransform.__init__(self)
        self._fields = [
            (a if isinstance(a, str) else "arg%02d" % i, _field_getter(a)) for i, a in enumerate(args)
        ] + [(n, _field_getter(e)) for n, e in kwargs.items()]

    def expand(self, pcoll):
        from oxbeam.pvalue import Row

        fields = self._fields
        return pcoll | "ToRow" >> Map(lambda v: Row(**{n: e(v) for n, e in fields}))
