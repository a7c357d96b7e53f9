"""Type hint decorators, as ``apache_beam.typehints.decorators``.

``@with_output_types(T)`` on a function gives the element type of what
``Map``/``FlatMap``/``Filter`` make with it (for ``FlatMap``, ``T`` may be
``Iterable[E]`` or ``E``); on a DoFn class, the element type of ``ParDo``'s
main output. Element types pick coders (see :mod:`oxbeam.typehints`).

Input hints — ``@with_input_types``, ``.with_input_types(...)``, or, as in
Beam, the annotation of the element parameter (``def process(self,
element: int)``, ``def f(x: int)``, ``def expand(self, pcoll:
PCollection[int])``) — are checked when the transform is applied (unless
``--no_pipeline_type_check``): a plainly different type raises
:class:`TypeCheckError`. With ``--runtime_type_check``, each output of a
Map/FlatMap/ParDo with a declared output type is checked as it is made.
"""

__all__ = ["with_input_types", "with_output_types", "TypeCheckError"]


class TypeCheckError(Exception):
    """A transform's declared input type does not fit its input."""

_OUTPUT = "_oxbeam_output_type"
_INPUT = "_oxbeam_input_types"


def with_output_types(*return_type_hint, **kwargs):
    """Declares the element type a function or DoFn class outputs."""
    if len(return_type_hint) != 1 or kwargs:
        raise ValueError("with_output_types takes exactly one positional type hint")
    hint = return_type_hint[0]

    def annotate(f):
        setattr(f, _OUTPUT, hint)
        return f

    return annotate


def with_input_types(*positional_hints, **keyword_hints):
    """Declares the input types of a function or DoFn class (recorded only)."""

    def annotate(f):
        setattr(f, _INPUT, (positional_hints, keyword_hints))
        return f

    return annotate


def output_type_of(fn):
    """The output hint declared on ``fn`` (a function, DoFn instance or
    class), or None."""
    for obj in (fn, type(fn)):
        hint = getattr(obj, _OUTPUT, None)
        if hint is not None:
            return hint
    return None


def input_type_of(fn):
    """The first positional input hint declared on ``fn`` (a function, DoFn
    instance or class) by ``@with_input_types`` or, failing that, by the
    annotation of its element parameter; or None."""
    for obj in (fn, type(fn)):
        hints = getattr(obj, _INPUT, None)
        if hints is not None:
            return hints[0][0] if hints[0] else None
    return _annotated_input(fn)


def _annotated_input(fn):
    """The annotation of the element parameter of ``fn`` (a DoFn's
    ``process``, or a callable's first parameter), or None."""
    import inspect

    from oxbeam.transforms.core import DoFn

    is_dofn = isinstance(fn, DoFn) or (isinstance(fn, type) and issubclass(fn, DoFn))
    target = fn.process if is_dofn else fn
    if not callable(target):
        return None
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if is_dofn and isinstance(fn, type) and params:
        params = params[1:]  # self
    if not params or params[0].annotation is inspect.Parameter.empty:
        return None
    hint = params[0].annotation
    if isinstance(hint, str):
        try:
            import typing

            hint = typing.get_type_hints(target).get(params[0].name)
        except Exception:  # noqa: BLE001 - an unresolvable annotation is no hint
            return None
    return hint


def pcollection_input_of(transform):
    """The element type a composite's ``expand(self, pcoll: PCollection[T])``
    annotation declares, or None."""
    import inspect

    expand = getattr(type(transform), "expand", None)
    if expand is None:
        return None
    try:
        params = list(inspect.signature(expand).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    if not params:
        return None
    hint = params[0].annotation
    from oxbeam.pvalue import PCollection

    if getattr(hint, "__origin__", None) is PCollection and getattr(hint, "__args__", None):
        return hint.__args__[0]
    return None


def _bind(hint, bindings):
    """``hint`` normalized, with its ``TypeVar``s replaced by their
    bindings (unbound ones become ``Any``)."""
    import typing

    from oxbeam import typehints

    if isinstance(hint, typing.TypeVar):
        return bindings.get(hint, typehints.Any)
    origin = getattr(hint, "__origin__", None)
    args = getattr(hint, "__args__", ()) or ()
    if origin is tuple and len(args) == 2 and args[1] is not Ellipsis:
        return typehints._KV(_bind(args[0], bindings), _bind(args[1], bindings))
    if args and any(isinstance(a, typing.TypeVar) for a in args):
        if origin in (list, typing.List) or getattr(origin, "__name__", "") in ("Iterable", "Iterator"):
            return typehints._Iter(_bind(args[0], bindings))
    return typehints.normalize(hint)


def composite_hints(transform, pcoll):
    """For a PTransform class decorated with ``@with_input_types`` /
    ``@with_output_types``: raises :class:`TypeCheckError` if its declared
    input does not fit ``pcoll``, and returns its declared output element
    type with ``TypeVar``s bound from the input (``@with_input_types(T)``,
    ``@with_output_types(tuple[int, T])`` on ``str`` elements gives
    ``Tuple[int, str]``), or None."""
    import typing

    cls = type(transform)
    inputs = getattr(cls, _INPUT, None)
    declared_in = inputs[0][0] if inputs and inputs[0] else None
    bindings = {}
    if declared_in is not None and pcoll is not None:
        if isinstance(declared_in, typing.TypeVar):
            bindings[declared_in] = pcoll.element_type
        else:
            check_input(transform.label, declared_in, pcoll)
    declared_out = getattr(cls, _OUTPUT, None)
    if declared_out is None:
        return None
    return _bind(declared_out, bindings)


def _fits(value, hint):
    """Whether ``value`` fits the (normalized) hint: scalars by type (an
    int fits float, a bool fits int), KVs as 2-tuples part by part,
    iterables element by element, user classes by isinstance."""
    from oxbeam import typehints

    if hint is typehints.Any:
        return True
    if hint in _SCALARS:
        # PEP 484's numeric tower: an int is a float.
        return isinstance(value, (int, float) if hint is float else hint)
    if typehints.is_kv(hint):
        return (isinstance(value, tuple) and len(value) == 2
                and _fits(value[0], hint.key) and _fits(value[1], hint.value))
    if isinstance(hint, typehints._Iter):
        try:
            return all(_fits(v, hint.element) for v in value)
        except TypeError:
            return False
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


class _CheckedOutputs(object):
    """``fn`` with each output checked against ``hint`` (``--runtime_type_check``):
    one output (Map), or each of the iterable it returns (FlatMap)."""

    def __init__(self, fn, hint, label, many):
        import inspect

        self.fn, self.hint, self.label, self.many = fn, hint, label, many
        try:
            # DoFn parameters (``w=DoFn.WindowParam``) are found by signature.
            self.__signature__ = inspect.signature(fn)
        except (TypeError, ValueError):
            pass

    def _check(self, value):
        if _fits(value, self.hint):
            return value
        raise TypeCheckError(
            "Runtime type violation detected within %s: According to type-hint expected output "
            "should be of type %s. Instead, received '%r', an instance of type %s."
            % (self.label, getattr(self.hint, "__name__", self.hint), value, type(value)))

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        if not self.many:
            return self._check(out)
        if out is None:
            return out
        return [self._check(v) for v in out]


def checked_outputs(fn, hint, label, many):
    """``fn`` wrapped to check its outputs against ``hint`` as they are made."""
    return _CheckedOutputs(fn, hint, label, many)


# Element types whose (in)consistency is certain: builtin scalars.
_SCALARS = (int, float, str, bytes, bool)


def _consistent(actual, declared):
    """False only when both are known scalar (or KV of scalar) types that
    cannot hold each other's values (``int`` fits ``float``, ``bool`` fits
    ``int``); anything involving ``Any`` or user classes is consistent."""
    from oxbeam import typehints

    if declared in _SCALARS and actual in _SCALARS:
        if declared is actual or issubclass(actual, declared):
            return True
        return declared is float and actual in (int, bool)
    if typehints.is_kv(declared) and typehints.is_kv(actual):
        return (_consistent(actual.key, declared.key)
                and _consistent(actual.value, declared.value))
    if (typehints.is_kv(declared) and actual in _SCALARS) or (
            declared in _SCALARS and typehints.is_kv(actual)):
        return False
    return True


def check_input(label, hint, pcoll):
    """Raises :class:`TypeCheckError` if ``hint`` plainly does not fit the
    element type of ``pcoll``."""
    from oxbeam import typehints

    if hint is None:
        return
    declared = typehints.normalize(hint)
    actual = typehints.normalize(pcoll.element_type)
    if not _consistent(actual, declared):
        raise TypeCheckError(
            "Type hint violation for '%s': requires %r but got %r for element"
            % (label, getattr(declared, "__name__", declared), getattr(actual, "__name__", actual)))
