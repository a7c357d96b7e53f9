"""Type hint decorators, as ``apache_beam.typehints.decorators``.

``@with_output_types(T)`` on a function gives the element type of what
``Map``/``FlatMap``/``Filter`` make with it (for ``FlatMap``, ``T`` may be
``Iterable[E]`` or ``E``); on a DoFn class, the element type of ``ParDo``'s
main output. ``@with_input_types`` is recorded and not checked. Element
types pick coders (see :mod:`oxbeam.typehints`).
"""

__all__ = ["with_input_types", "with_output_types"]

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
