"""User state and timers, as in ``apache_beam.transforms.userstate``.

A stateful DoFn declares state cells and timers as default arguments of
``process`` (and of its ``@on_timer`` callbacks)::

    class Count(beam.DoFn):
        COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())

        def process(self, element, count=beam.DoFn.StateParam(COUNT)):
            n = (count.read() or 0) + 1
            count.write(n)
            yield element[0], n

Its input must be keyed ``(key, value)`` pairs; state and timers are per
key and window. The ParDo's payload declares them with Beam's spec messages
(``StateSpec``, ``TimerFamilySpec``) exactly as Beam Python writes them, and
the runner partitions the input by key. Value, combining and set state are
bags on the wire (as in Beam Python); ordered lists are Beam ordered-list
state keyed by microseconds. ``MapStateSpec`` is Oxbeam's (Beam 2.77's
Python SDK has none; it follows Beam Java's ``MapState``): Beam's multimap
user state on the wire, one value per key.
"""

__all__ = [
    "StateSpec",
    "ReadModifyWriteStateSpec",
    "BagStateSpec",
    "SetStateSpec",
    "CombiningValueStateSpec",
    "OrderedListStateSpec",
    "MapStateSpec",
    "TimerSpec",
    "on_timer",
    "get_dofn_specs",
    "is_stateful_dofn",
    "validate_stateful_dofn",
    "RuntimeState",
    "ReadModifyWriteRuntimeState",
    "AccumulatingRuntimeState",
    "BagRuntimeState",
    "SetRuntimeState",
    "CombiningValueRuntimeState",
    "OrderedListRuntimeState",
    "MapRuntimeState",
    "BaseTimer",
    "RuntimeTimer",
]

import inspect

from oxbeam.coders import Coder
from oxbeam.transforms.timeutil import TimeDomain


class StateSpec(object):
    """A user state cell of a DoFn: a name unique in the DoFn and a coder."""

    _protocol = "standard_user_state_types::BAG"

    def __init__(self, name, coder):
        if not isinstance(name, str):
            raise TypeError("name is not a string")
        if not isinstance(coder, Coder):
            raise TypeError("coder is not of type Coder")
        self.name = name
        self.coder = coder

    def __repr__(self):
        return "%s(%s)" % (self.__class__.__name__, self.name)

    def _spec_json(self, b):
        """The ``StateSpec`` message (proto3 JSON) for proto builder ``b``."""
        raise NotImplementedError

    def to_runner_api(self, b):
        from oxbeam.coders import _element_type_of

        msg = self._spec_json(b, b.coder(_element_type_of(self.coder)))
        msg["protocol"] = {"urn": b.urn(self._protocol)}
        return msg


class ReadModifyWriteStateSpec(StateSpec):
    """A single value, read and replaced as a whole (ValueState)."""

    def _spec_json(self, b, coder_id):
        return {"readModifyWriteSpec": {"coderId": coder_id}}


class BagStateSpec(StateSpec):
    """An unordered collection, appended to and read in full."""

    def _spec_json(self, b, coder_id):
        return {"bagSpec": {"elementCoderId": coder_id}}


class SetStateSpec(StateSpec):
    """A set of distinct values."""

    def _spec_json(self, b, coder_id):
        return {"setSpec": {"elementCoderId": coder_id}}


class CombiningValueStateSpec(StateSpec):
    """Values folded by a CombineFn: ``CombiningValueStateSpec(name,
    combine_fn)`` or ``(name, coder, combine_fn)``; ``coder`` is the
    accumulator's (default: any Python value)."""

    def __init__(self, name, coder=None, combine_fn=None):
        from oxbeam.coders import PickleCoder
        from oxbeam.transforms.core import CombineFn

        if combine_fn is None:
            if coder is None:
                raise ValueError("combine_fn must be provided")
            coder, combine_fn = None, coder
        self.combine_fn = CombineFn.maybe_from_callable(combine_fn)
        if coder is None:
            coder = PickleCoder()
        StateSpec.__init__(self, name, coder)

    def _spec_json(self, b, coder_id):
        from oxbeam.transforms.core import _pickle

        return {
            "combiningSpec": {
                "accumulatorCoderId": coder_id,
                "combineFn": {"urn": b.urn("oxbeam_python::COMBINE_FN"), "payload": b.bytes_field(_pickle(self.combine_fn))},
            }
        }


class OrderedListStateSpec(StateSpec):
    """Values ordered by timestamp, readable and clearable by time range."""

    _protocol = "standard_user_state_types::ORDERED_LIST"

    def _spec_json(self, b, coder_id):
        return {"orderedListSpec": {"elementCoderId": coder_id}}


class MapStateSpec(StateSpec):
    """Values by key (Oxbeam's; Beam Java's ``MapState``):
    ``MapStateSpec(name, key_coder, value_coder)``. At runtime: ``get(key,
    default=None)``, ``put(key, value)``, ``put_if_absent(key, value)``,
    ``remove(key)``, ``contains(key)``, ``keys()``, ``values()``,
    ``items()``, ``read()`` (a dict) and ``clear()``, per key and window of
    the element."""

    _protocol = "standard_user_state_types::MULTIMAP"

    def __init__(self, name, key_coder, value_coder):
        if not isinstance(key_coder, Coder):
            raise TypeError("key_coder is not of type Coder")
        StateSpec.__init__(self, name, value_coder)
        self.key_coder = key_coder

    def to_runner_api(self, b):
        from oxbeam.coders import _element_type_of

        return {
            "mapSpec": {
                "keyCoderId": b.coder(_element_type_of(self.key_coder)),
                "valueCoderId": b.coder(_element_type_of(self.coder)),
            },
            "protocol": {"urn": b.urn(self._protocol)},
        }


class TimerSpec(object):
    """A timer of a DoFn: ``TimerSpec(name, TimeDomain.WATERMARK)`` fires
    when the watermark passes it, ``TimeDomain.REAL_TIME`` when processing
    time does. Its family id is ``"ts-" + name``, as in Beam."""

    prefix = "ts-"

    def __init__(self, name, time_domain):
        self.name = self.prefix + name
        if time_domain not in (TimeDomain.WATERMARK, TimeDomain.REAL_TIME):
            raise ValueError("Unsupported TimeDomain: %r." % (time_domain,))
        self.time_domain = time_domain
        self._attached_callback = None

    def __repr__(self):
        return "%s(%s)" % (self.__class__.__name__, self.name)

    def to_runner_api(self, b, timer_coder_id):
        return {"timeDomain": TimeDomain.to_runner_api(self.time_domain), "timerFamilyCoderId": timer_coder_id}


def on_timer(timer_spec):
    """Decorates the DoFn method called when a timer of ``timer_spec`` fires."""
    if not isinstance(timer_spec, TimerSpec):
        raise ValueError("@on_timer decorator expected TimerSpec.")

    def _inner(method):
        if not callable(method):
            raise ValueError("@on_timer decorator expected callable.")
        if timer_spec._attached_callback:
            raise ValueError("Multiple on_timer callbacks registered for %r." % timer_spec)
        timer_spec._attached_callback = method
        method._oxbeam_on_timer = timer_spec.name
        return method

    return _inner


def _method_params(fn):
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []


def get_dofn_specs(dofn):
    """The state specs and timer specs a DoFn's methods declare."""
    from oxbeam.transforms.core import _StateDoFnParam, _TimerDoFnParam

    states, timers = {}, {}
    for name in dir(dofn):
        if name.startswith("__"):
            continue
        try:
            m = getattr(dofn, name, None)
        except Exception:  # noqa: BLE001 - e.g. a property that raises
            continue
        if not inspect.ismethod(m):
            continue
        for p in _method_params(m):
            d = p.default
            if isinstance(d, _StateDoFnParam):
                states.setdefault(id(d.state_spec), d.state_spec)
            elif isinstance(d, _TimerDoFnParam):
                timers.setdefault(id(d.timer_spec), d.timer_spec)
    return set(states.values()), set(timers.values())


def is_stateful_dofn(dofn):
    """Whether ``dofn`` uses state or timers."""
    s, t = get_dofn_specs(dofn)
    return bool(s or t)


def validate_stateful_dofn(dofn):
    """Checks unique names and an ``on_timer`` callback for every timer."""
    states, timers = get_dofn_specs(dofn)
    if len(states) != len({s.name for s in states}):
        raise ValueError("DoFn %r has multiple StateSpecs with the same name: %s." % (dofn, states))
    if len(timers) != len({t.name for t in timers}):
        raise ValueError("DoFn %r has multiple TimerSpecs with the same name: %s." % (dofn, timers))
    for t in timers:
        cb = t._attached_callback
        if not cb:
            raise ValueError("DoFn %r has a TimerSpec without an associated on_timer callback: %s." % (dofn, t))
        bound = getattr(dofn, cb.__name__, None)
        if getattr(bound, "__func__", None) is not cb:
            raise ValueError(
                "The on_timer callback for %s is not the specified .%s method for DoFn %r "
                "(perhaps it was overwritten?)." % (t, cb.__name__, dofn)
            )


class BaseTimer(object):
    """A timer as user code sees it."""

    def clear(self, dynamic_timer_tag=""):
        raise NotImplementedError

    def set(self, timestamp, dynamic_timer_tag=""):
        raise NotImplementedError


RuntimeTimer = BaseTimer


class RuntimeState(object):
    """A state cell as user code sees it."""

    def prefetch(self):
        pass

    def finalize(self):
        pass


class ReadModifyWriteRuntimeState(RuntimeState):
    """``read()`` (None when empty), ``write(value)``, ``clear()``."""


class AccumulatingRuntimeState(RuntimeState):
    """``read()``, ``add(value)``, ``clear()``."""


class BagRuntimeState(AccumulatingRuntimeState):
    """Bag state: ``read()`` gives every added value."""


class SetRuntimeState(AccumulatingRuntimeState):
    """Set state: ``read()`` gives the distinct added values."""


class CombiningValueRuntimeState(AccumulatingRuntimeState):
    """Combining state: ``read()`` gives the combined output."""


class MapRuntimeState(RuntimeState):
    """Map state (see :class:`MapStateSpec`)."""


class OrderedListRuntimeState(AccumulatingRuntimeState):
    """Ordered list: ``add((timestamp, value))``, ``read()``,
    ``read_range(min, limit)``, ``clear_range(min, limit)``."""
