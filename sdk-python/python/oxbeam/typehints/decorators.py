"""Type hint decorators, as ``apache_beam.typehints.decorators``.

``@with_output_types(T)`` on a function gives the element type of what
``Map``/``FlatMap``/``Filter`` make with it (for ``FlatMap``, ``T`` may be
``Iterable[E]`` or ``E``); on a DoFn class, the element type of ``ParDo``'s
main output. ``@with_input_types`` is recorded and not checked. Element
types pick coders (see :mod:`oxbeam.typehints`).
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
    instance or class), or None."""
    for obj in (fn, type(fn)):
        hints = getattr(obj, _INPUT, None)
        if hints is not None:
            return hints[0][0] if hints[0] else None
    return None


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
