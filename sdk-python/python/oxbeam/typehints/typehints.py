"""Type constraint classes, as ``apache_beam.typehints.typehints`` (the
forms Oxbeam's element types take)."""

from oxbeam.typehints import KV, Any, Iterable, List, Tuple, _Iter, _KV  # noqa: F401

# ``isinstance(hint, TupleConstraint)`` holds for Oxbeam's 2-tuple (KV) type.
TupleConstraint = _KV
IterableTypeConstraint = _Iter
ListConstraint = _Iter
