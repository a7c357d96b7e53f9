"""Coders, as in ``apache_beam.coders``.

Oxbeam picks coders from element types (see :mod:`oxbeam.typehints`); the
built-in coder classes here name those choices where Beam's API takes a
coder (state specs, ``TestStream(coder=...)``, ``ReadFromText(coder=...)``).
Each maps to an element type and so to a Beam standard coder
(``VarIntCoder`` → ``beam:coder:varint:v1``, ...); ``PickleCoder`` /
``FastPrimitivesCoder`` carry any Python value.

A user's ``Coder`` subclass (``encode``/``decode``, as in Beam) is used where
it is named, and for every PCollection whose element type is a class it is
registered for (``coders.registry.register_coder(Player, PlayerCoder)``): its
bytes are what GroupByKey compares keys by. Such PCollections travel as
``oxbeam:coder:python_custom:v1`` (the pickled coder).
"""

import pickle
import struct

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
    "ToBytesCoder",
    "TimestampCoder",
    "CoderRegistry",
    "registry",
]


class Coder(object):
    """Base of coders: subclasses implement ``encode(value) -> bytes`` and
    ``decode(bytes) -> value``, as in Beam."""

    def encode(self, value):
        raise NotImplementedError("%s.encode" % type(self).__name__)

    def decode(self, encoded):
        raise NotImplementedError("%s.decode" % type(self).__name__)

    def _element_type(self):
        # A user's coder: PCollections of this type are encoded by it.
        from oxbeam import typehints

        return typehints._Coded(self)

    def is_deterministic(self):
        """Whether equal values always encode to equal bytes (needed for
        GroupByKey keys)."""
        return False

    def as_deterministic_coder(self, step_label, error_message=None):
        if self.is_deterministic():
            return self
        raise ValueError(error_message or "%r cannot be made deterministic for %r"
                         % (self, step_label))

    def estimate_size(self, value):
        return len(self.encode(value))

    def to_type_hint(self):
        from oxbeam import typehints

        return typehints.Any

    @classmethod
    def from_type_hint(cls, unused_typehint, unused_registry):
        return cls()

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash(type(self))

    def __repr__(self):
        return "%s()" % type(self).__name__


class CoderRegistry(object):
    """Coders for element types, as Beam's ``coders.registry``."""

    def __init__(self):
        self._coders = {}

    def register_coder(self, typehint_type, typehint_coder_class):
        if not isinstance(typehint_coder_class, type) or not issubclass(
                typehint_coder_class, Coder):
            raise TypeError("Coder registration requires a coder class object. "
                            "Received %r instead." % (typehint_coder_class,))
        self._coders[typehint_type] = typehint_coder_class

    def _registered(self, typehint_type):
        """The registered coder instance for a class, or None."""
        cls = self._coders.get(typehint_type)
        return cls.from_type_hint(typehint_type, self) if cls is not None else None

    def get_coder(self, typehint):
        from oxbeam import typehints

        coder = self._registered(typehint)
        if coder is not None:
            return coder
        t = typehints.normalize(typehint)
        simple = {int: VarIntCoder, str: StrUtf8Coder, bytes: BytesCoder, float: FloatCoder,
                  bool: BooleanCoder}
        if t in simple:
            return simple[t]()
        if isinstance(t, typehints._Coded):
            return t.coder
        if typehints.is_kv(t):
            return TupleCoder([self.get_coder(t.key), self.get_coder(t.value)])
        return PickleCoder()


def _varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class VarIntCoder(Coder):
    """``int`` as a varint (``beam:coder:varint:v1``)."""

    def _element_type(self):
        return int

    def encode(self, value):
        return _varint(value)

    def decode(self, encoded):
        n = shift = 0
        for b in encoded:
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return n - (1 << 64) if n >= 1 << 63 else n

    def is_deterministic(self):
        return True


class StrUtf8Coder(Coder):
    """``str`` as UTF-8 (``beam:coder:string_utf8:v1``)."""

    def _element_type(self):
        return str

    def encode(self, value):
        return value.encode("utf-8")

    def decode(self, encoded):
        return encoded.decode("utf-8")

    def is_deterministic(self):
        return True


class BytesCoder(Coder):
    """``bytes`` (``beam:coder:bytes:v1``)."""

    def _element_type(self):
        return bytes

    def encode(self, value):
        return bytes(value)

    def decode(self, encoded):
        return bytes(encoded)

    def is_deterministic(self):
        return True


class FloatCoder(Coder):
    """``float`` as a big-endian double (``beam:coder:double:v1``)."""

    def _element_type(self):
        return float

    def encode(self, value):
        return struct.pack(">d", value)

    def decode(self, encoded):
        return struct.unpack(">d", encoded)[0]

    def is_deterministic(self):
        return True


class BooleanCoder(Coder):
    """``bool`` (``beam:coder:bool:v1``)."""

    def _element_type(self):
        return bool

    def encode(self, value):
        return b"\x01" if value else b"\x00"

    def decode(self, encoded):
        return encoded != b"\x00"

    def is_deterministic(self):
        return True


class PickleCoder(Coder):
    """Any Python value (Oxbeam's Python value coder)."""

    def _element_type(self):
        from oxbeam import typehints

        return typehints.Any

    def encode(self, value):
        return pickle.dumps(value)

    def decode(self, encoded):
        return pickle.loads(encoded)


class FastPrimitivesCoder(PickleCoder):
    """Any Python value (Oxbeam's Python value coder)."""


class ToBytesCoder(Coder):
    """``bytes`` as they are, anything else as its ``str`` in UTF-8 (Beam's
    default coder of ``WriteToText``); it cannot decode."""

    def _element_type(self):
        return bytes

    def encode(self, value):
        return value if isinstance(value, bytes) else str(value).encode("utf-8")

    def decode(self, encoded):
        raise NotImplementedError("ToBytesCoder cannot be used for decoding.")

    def is_deterministic(self):
        return True


class TimestampCoder(Coder):
    """A ``Timestamp`` as its microseconds, big-endian 64-bit (Beam's
    encoding)."""

    def encode(self, value):
        return struct.pack(">q", value.micros)

    def decode(self, encoded):
        from oxbeam.utils.timestamp import Timestamp

        return Timestamp(micros=struct.unpack(">q", encoded)[0])

    def is_deterministic(self):
        return True


class TupleCoder(Coder):
    """Tuples of the component coders' types (a pair is a KV)."""

    def __init__(self, components):
        self._coders = tuple(components)

    def is_deterministic(self):
        return all(c.is_deterministic() for c in self._coders)

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


registry = CoderRegistry()
