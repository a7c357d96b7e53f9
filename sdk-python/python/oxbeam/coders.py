"""Coders, as in ``apache_beam.coders``.

Oxbeam picks coders from element types (see :mod:`oxbeam.typehints`); the
coder classes here name those choices where Beam's API takes a coder (state
specs, ``TestStream(coder=...)``). Each maps to an element type and so to a
Beam standard coder (``VarIntCoder`` → ``beam:coder:varint:v1``, ...);
``PickleCoder`` / ``FastPrimitivesCoder`` carry any Python value. Custom
``Coder`` subclasses are not supported.
"""

__all__ = [
    "Coder",
    "VarIntCoder",
    "StrUtf8Coder",
    "BytesCoder",
    "FloatCoder",
    "BooleanCoder",
    "PickleCoder",
    "FastPrimitivesCoder",
    "TupleCoder",
    "IterableCoder",
]


class Coder(object):
    """Base of coders. Oxbeam supports the built-in coders of this module only."""

    def __init__(self, *args, **kwargs):
        if type(self) is Coder or type(self).__module__ != __name__:
            raise NotImplementedError("custom coders")

    def _element_type(self):
        raise NotImplementedError("custom coders")

    def is_deterministic(self):
        return True

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash(type(self))

    def __repr__(self):
        return "%s()" % type(self).__name__


class VarIntCoder(Coder):
    """``int`` as a varint (``beam:coder:varint:v1``)."""

    def _element_type(self):
        return int


class StrUtf8Coder(Coder):
    """``str`` as UTF-8 (``beam:coder:string_utf8:v1``)."""

    def _element_type(self):
        return str


class BytesCoder(Coder):
    """``bytes`` (``beam:coder:bytes:v1``)."""

    def _element_type(self):
        return bytes


class FloatCoder(Coder):
    """``float`` as a big-endian double (``beam:coder:double:v1``)."""

    def _element_type(self):
        return float


class BooleanCoder(Coder):
    """``bool`` (``beam:coder:bool:v1``)."""

    def _element_type(self):
        return bool


class PickleCoder(Coder):
    """Any Python value (Oxbeam's Python value coder)."""

    def _element_type(self):
        from oxbeam import typehints

        return typehints.Any

    def is_deterministic(self):
        return False


class FastPrimitivesCoder(PickleCoder):
    """Any Python value (Oxbeam's Python value coder)."""


class TupleCoder(Coder):
    """Tuples of the component coders' types (a pair is a KV)."""

    def __init__(self, components):
        self._coders = tuple(components)

    def _element_type(self):
        from oxbeam import typehints

        if len(self._coders) == 2:
            return typehints.KV[self._coders[0]._element_type(), self._coders[1]._element_type()]
        return typehints.Any

    def coder_impl(self):
        raise NotImplementedError("TupleCoder.coder_impl")

    def __repr__(self):
        return "TupleCoder[%s]" % ", ".join(repr(c) for c in self._coders)


class IterableCoder(Coder):
    """Lists of the element coder's type."""

    def __init__(self, elem_coder):
        self._elem_coder = elem_coder

    def _element_type(self):
        from oxbeam import typehints

        return typehints.iterable_of(self._elem_coder._element_type())


def _element_type_of(coder):
    """The Oxbeam element type standing for ``coder``."""
    if not isinstance(coder, Coder):
        raise TypeError("expected a coder of oxbeam.coders, got %r" % (coder,))
    return coder._element_type()
