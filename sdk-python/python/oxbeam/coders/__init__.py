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

Every coder here encodes and decodes byte for byte as Beam's does, in both
contexts (nested: a component of ``TupleCoder``, ``IterableCoder``,
``ListCoder``, ``NullableCoder``, ``MapCoder``), so a custom coder built
from them reads what Beam wrote.
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
    "ListCoder",
    "NullableCoder",
    "MapCoder",
    "SinglePrecisionFloatCoder",
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

    # Nested context (a component of a tuple, list or map), as Beam encodes
    # it: a length prefix unless the coder's bytes delimit themselves.
    def _encode_nested(self, value, out):
        data = self.encode(value)
        out += _varint(len(data))
        out += data

    def _decode_nested(self, data, pos):
        """The value at ``data[pos:]`` and the position after it."""
        n, pos = _read_varint(data, pos)
        if pos + n > len(data):
            raise ValueError("%r: a nested value of %d bytes runs past the end" % (self, n))
        return self.decode(data[pos:pos + n]), pos + n

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


def _read_varint(data, pos):
    n = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def _fixed(size):
    """Nested coding of a coder whose values all take ``size`` bytes."""

    def encode_nested(self, value, out):
        out += self.encode(value)

    def decode_nested(self, data, pos):
        if pos + size > len(data):
            raise ValueError("%r: truncated value" % (self,))
        return self.decode(bytes(data[pos:pos + size])), pos + size

    return encode_nested, decode_nested


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

    def _encode_nested(self, value, out):
        out += _varint(value)

    def _decode_nested(self, data, pos):
        n, pos = _read_varint(data, pos)
        return (n - (1 << 64) if n >= 1 << 63 else n), pos

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

    _encode_nested, _decode_nested = _fixed(8)

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

    _encode_nested, _decode_nested = _fixed(1)

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
    """A ``Timestamp`` as Beam (and Java's ``InstantCoder``) encode it: its
    milliseconds, big-endian 64-bit with the sign bit flipped (so the bytes
    sort as the times do)."""

    def encode(self, value):
        millis = value.micros // 1000
        return struct.pack(">Q", (millis + (1 << 63)) & ((1 << 64) - 1))

    def decode(self, encoded):
        from oxbeam.utils.timestamp import Timestamp

        return Timestamp(micros=(struct.unpack(">Q", encoded)[0] - (1 << 63)) * 1000)

    _encode_nested, _decode_nested = _fixed(8)

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

    def coders(self):
        return self._coders

    def _check(self, value):
        if len(value) != len(self._coders):
            raise ValueError("%r cannot encode %r: %d components, not %d"
                             % (self, value, len(value), len(self._coders)))

    def encode(self, value):
        # Beam: every component nested but the last, which is in the
        # tuple's own context.
        self._check(value)
        out = bytearray()
        for c, v in zip(self._coders[:-1], value):
            c._encode_nested(v, out)
        if self._coders:
            out += self._coders[-1].encode(value[-1])
        return bytes(out)

    def decode(self, encoded):
        values, pos = [], 0
        for c in self._coders[:-1]:
            v, pos = c._decode_nested(encoded, pos)
            values.append(v)
        if self._coders:
            values.append(self._coders[-1].decode(bytes(encoded[pos:])))
        return tuple(values)

    def _encode_nested(self, value, out):
        self._check(value)
        for c, v in zip(self._coders, value):
            c._encode_nested(v, out)

    def _decode_nested(self, data, pos):
        values = []
        for c in self._coders:
            v, pos = c._decode_nested(data, pos)
            values.append(v)
        return tuple(values), pos

    def __eq__(self, other):
        return type(self) is type(other) and self._coders == other._coders

    def __hash__(self):
        return hash((type(self), self._coders))

    def __repr__(self):
        return "TupleCoder[%s]" % ", ".join(repr(c) for c in self._coders)


class _SameInBothContexts(Coder):
    """A coder whose outer encoding is its nested one (Beam's iterables and
    maps): subclasses write ``_encode_nested`` and ``_decode_nested``."""

    def encode(self, value):
        out = bytearray()
        self._encode_nested(value, out)
        return bytes(out)

    def decode(self, encoded):
        value, pos = self._decode_nested(encoded, 0)
        if pos != len(encoded):
            raise ValueError("%r: %d bytes after the value" % (self, len(encoded) - pos))
        return value


class IterableCoder(_SameInBothContexts):
    """Lists of the element coder's type: Beam's encoding, a 32-bit
    big-endian count, then each element nested (the same in both
    contexts)."""

    def __init__(self, elem_coder):
        self._elem_coder = elem_coder

    def _element_type(self):
        from oxbeam import typehints

        return typehints.iterable_of(self._elem_coder._element_type())

    def is_deterministic(self):
        return self._elem_coder.is_deterministic()

    def _encode_nested(self, value, out):
        items = list(value)
        out += struct.pack(">i", len(items))
        for v in items:
            self._elem_coder._encode_nested(v, out)

    def _decode_nested(self, data, pos):
        if pos + 4 > len(data):
            raise ValueError("%r: truncated count" % (self,))
        (n,), pos = struct.unpack(">i", bytes(data[pos:pos + 4])), pos + 4
        if n < 0:
            raise ValueError("%r: negative count %d" % (self, n))
        items = []
        for _ in range(n):
            v, pos = self._elem_coder._decode_nested(data, pos)
            items.append(v)
        return items, pos

    def __eq__(self, other):
        return type(self) is type(other) and self._elem_coder == other._elem_coder

    def __hash__(self):
        return hash((type(self), self._elem_coder))

    def __repr__(self):
        return "%s[%r]" % (type(self).__name__, self._elem_coder)


class ListCoder(IterableCoder):
    """Lists, encoded as :class:`IterableCoder` encodes them."""


class NullableCoder(Coder):
    """``None`` or a value of the inner coder: a byte 0, or a byte 1 then
    the value (Beam's encoding)."""

    def __init__(self, value_coder):
        self._value_coder = value_coder

    def _element_type(self):
        from oxbeam import typehints

        return typehints.Any

    def is_deterministic(self):
        return self._value_coder.is_deterministic()

    def encode(self, value):
        if value is None:
            return b"\x00"
        return b"\x01" + self._value_coder.encode(value)

    def decode(self, encoded):
        if encoded[:1] == b"\x00":
            return None
        if encoded[:1] != b"\x01":
            raise ValueError("%r: bad null flag %r" % (self, bytes(encoded[:1])))
        return self._value_coder.decode(bytes(encoded[1:]))

    def _encode_nested(self, value, out):
        if value is None:
            out += b"\x00"
        else:
            out += b"\x01"
            self._value_coder._encode_nested(value, out)

    def _decode_nested(self, data, pos):
        flag = data[pos:pos + 1]
        if flag == b"\x00":
            return None, pos + 1
        if flag != b"\x01":
            raise ValueError("%r: bad null flag %r" % (self, bytes(flag)))
        return self._value_coder._decode_nested(data, pos + 1)

    def __eq__(self, other):
        return type(self) is type(other) and self._value_coder == other._value_coder

    def __hash__(self):
        return hash((type(self), self._value_coder))

    def __repr__(self):
        return "NullableCoder[%r]" % (self._value_coder,)


class MapCoder(_SameInBothContexts):
    """Dicts: a 32-bit big-endian size, then each key and value nested
    (Beam's encoding). Not deterministic (entry order)."""

    def __init__(self, key_coder, value_coder):
        self._key_coder = key_coder
        self._value_coder = value_coder

    def _element_type(self):
        from oxbeam import typehints

        return typehints.Any

    def _encode_nested(self, value, out):
        out += struct.pack(">i", len(value))
        for k, v in value.items():
            self._key_coder._encode_nested(k, out)
            self._value_coder._encode_nested(v, out)

    def _decode_nested(self, data, pos):
        if pos + 4 > len(data):
            raise ValueError("%r: truncated size" % (self,))
        (n,), pos = struct.unpack(">i", bytes(data[pos:pos + 4])), pos + 4
        out = {}
        for _ in range(max(n, 0)):
            k, pos = self._key_coder._decode_nested(data, pos)
            out[k], pos = self._value_coder._decode_nested(data, pos)
        return out, pos

    def __eq__(self, other):
        return (type(self) is type(other) and self._key_coder == other._key_coder
                and self._value_coder == other._value_coder)

    def __hash__(self):
        return hash((type(self), self._key_coder, self._value_coder))

    def __repr__(self):
        return "MapCoder[%r, %r]" % (self._key_coder, self._value_coder)


class SinglePrecisionFloatCoder(Coder):
    """``float`` as a big-endian 32-bit float (precision lost, as in
    Beam)."""

    def _element_type(self):
        from oxbeam import typehints

        return typehints.Any

    def encode(self, value):
        return struct.pack(">f", value)

    def decode(self, encoded):
        return struct.unpack(">f", encoded)[0]

    _encode_nested, _decode_nested = _fixed(4)

    def is_deterministic(self):
        return True


def _element_type_of(coder):
    """The Oxbeam element type standing for ``coder``."""
    if not isinstance(coder, Coder):
        raise TypeError("expected a coder of oxbeam.coders, got %r" % (coder,))
    return coder._element_type()


registry = CoderRegistry()
