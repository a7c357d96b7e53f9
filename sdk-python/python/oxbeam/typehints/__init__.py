"""Element types, as far as coders need them (a small subset of
``apache_beam.typehints``).

A type is one of: :data:`Any`, ``int``, ``str``, ``bytes``, ``float``,
``bool``, ``KV[K, V]`` (a 2-tuple), ``Iterable[T]``, or a user's class.
Known types get Beam's standard coders, a class with a coder in
``oxbeam.coders.registry`` gets that coder; everything else travels with
Oxbeam's Python ``any`` coder.

``with_input_types`` / ``with_output_types`` decorate functions and DoFn
classes, as in Beam (see :mod:`oxbeam.typehints.decorators`).
"""

import typing

__all__ = ["Any", "KV", "Tuple", "Iterable", "List", "Sequence", "Collection", "Dict", "Set",
           "FrozenSet", "Optional", "Union",
           "Iterator", "Generator", "normalize", "with_input_types", "with_output_types",
           "TypeCheckError"]


class _AnyType(object):
    def __repr__(self):
        return "Any"

    def __reduce__(self):
        return "Any"


Any = _AnyType()


class _KV(object):
    __slots__ = ("key", "value")

    def __init__(self, key, value):
        self.key = key
        self.value = value

    def __eq__(self, o):
        return isinstance(o, _KV) and (self.key, self.value) == (o.key, o.value)

    def __hash__(self):
        return hash((_KV, self.key, self.value))

    def __repr__(self):
        return "KV[%r, %r]" % (self.key, self.value)


class _Iter(object):
    __slots__ = ("element",)

    def __init__(self, element):
        self.element = element

    def __eq__(self, o):
        return isinstance(o, _Iter) and self.element == o.element

    def __hash__(self):
        return hash((_Iter, self.element))

    def __repr__(self):
        return "Iterable[%r]" % (self.element,)


class _Coded(object):
    """Elements encoded by a given coder object (a user's Coder subclass)."""
    __slots__ = ("coder",)

    def __init__(self, coder):
        self.coder = coder

    def __eq__(self, o):
        return isinstance(o, _Coded) and self.coder == o.coder

    def __hash__(self):
        return hash((_Coded, type(self.coder)))

    def __repr__(self):
        return "Coded[%r]" % (self.coder,)


class _Subscriptable(object):
    def __init__(self, make):
        self._make = make

    def __getitem__(self, params):
        return self._make(params)


KV = _Subscriptable(lambda p: _KV(normalize(p[0]), normalize(p[1])))
Tuple = _Subscriptable(
    lambda p: _KV(normalize(p[0]), normalize(p[1])) if isinstance(p, tuple) and len(p) == 2 else Any
)
Iterable = _Subscriptable(lambda p: _Iter(normalize(p)))
List = Iterable
Iterator = Iterable
Generator = _Subscriptable(lambda p: _Iter(normalize(p[0] if isinstance(p, tuple) else p)))
Sequence = Iterable
Collection = Iterable
Set = _Subscriptable(lambda p: Any)
FrozenSet = Set
Dict = _Subscriptable(lambda p: Any)
Optional = _Subscriptable(lambda p: Any)
Union = _Subscriptable(lambda p: Any)

_SIMPLE = (int, str, bytes, float, bool)


def normalize(t):
    """Oxbeam's form of a type hint (Python types, ``typing`` hints, Beam-like hints)."""
    if t is None or t is Any or t is typing.Any:
        return Any
    if isinstance(t, (_KV, _Iter, _Coded)) or t in _SIMPLE:
        return t
    if isinstance(t, type) and t.__module__ not in ("builtins", "typing", "collections.abc"):
        # A user's class: its registered coder, if any, is looked up when
        # the pipeline is encoded (registration may come after the hint).
        return t
    origin = getattr(t, "__origin__", None)
    args = getattr(t, "__args__", ()) or ()
    if origin is tuple and len(args) == 2 and args[1] is not Ellipsis:
        return _KV(normalize(args[0]), normalize(args[1]))
    if origin in (list, typing.List) or getattr(origin, "__name__", "") in ("Iterable", "Iterator"):
        return _Iter(normalize(args[0])) if args else _Iter(Any)
    try:
        import collections.abc as abc

        if origin in (abc.Iterable, abc.Iterator) and args:
            return _Iter(normalize(args[0]))
    except ImportError:  # pragma: no cover
        pass
    return Any


def infer(values):
    """The most precise type of all ``values`` (for Create)."""
    if not values:
        return Any
    if type(values) is range:
        ends = (values[0], values[-1])
        return int if -(1 << 63) <= min(ends) and max(ends) < (1 << 63) else Any
    types = set(map(type, values))
    if len(types) != 1:
        return Any
    t0 = types.pop()
    if t0 is int:
        if -(1 << 63) <= min(values) and max(values) < (1 << 63):
            return int
        return Any
    if t0 in (str, bytes, float, bool):
        return t0
    if t0 is tuple and set(map(len, values)) == {2}:
        return _KV(infer([v[0] for v in values]), infer([v[1] for v in values]))
    return Any


def kv_parts(t):
    """``(K, V)`` of a KV type, ``(Any, Any)`` otherwise."""
    if isinstance(t, _KV):
        return t.key, t.value
    return Any, Any


def is_kv(t):
    return isinstance(t, _KV)


def iterable_of(t):
    return _Iter(t)


from oxbeam.typehints.decorators import (  # noqa: E402
    TypeCheckError,
    with_input_types,
    with_output_types,
)
