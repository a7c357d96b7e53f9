"""``PTransform``: the base of every transform, as in
``apache_beam.transforms.ptransform``."""

from oxbeam import typehints

__all__ = ["PTransform", "ptransform_fn"]


class PTransform(object):
    """A transform from input PValues to output PValues.

    Subclasses implement ``expand(input)``; apply with ``pcoll | transform``
    or ``pcoll | "Label" >> transform``.
    """

    _output_type = None

    def __init__(self, label=None):
        self._label = label

    @property
    def label(self):
        return self._label or self.default_label()

    @label.setter
    def label(self, value):
        self._label = value

    def default_label(self):
        return self.__class__.__name__

    def with_output_types(self, type_hint):
        """Declares the element type of the output (picks its coder)."""
        self._output_type = typehints.normalize(type_hint)
        return self

    def with_input_types(self, *args, **kwargs):
        """Accepted for compatibility; Oxbeam does not check input types."""
        return self

    def expand(self, input_or_inputs):
        raise NotImplementedError

    def __ror__(self, left, label=None):
        from oxbeam.pipeline import Pipeline
        from oxbeam.pvalue import PBegin, PValue

        if isinstance(left, Pipeline):
            return left.apply(self, PBegin(left), label)
        if isinstance(left, PValue):
            return left.pipeline.apply(self, left, label)
        p = _pipeline_of(left) or getattr(self, "pipeline", None)
        if p is None:
            raise TypeError("Cannot apply %s to %r" % (self.label, left))
        return p.apply(self, left, label)

    def __rrshift__(self, label):
        return _NamedPTransform(self, label)

    def __or__(self, right):
        """``t1 | t2``: one composite applying ``t1`` then ``t2``."""
        if not isinstance(right, PTransform):
            return NotImplemented
        left = list(self.parts) if isinstance(self, _ChainedPTransform) else [self]
        return _ChainedPTransform(*(left + [right]))


def _pipeline_of(x):
    from oxbeam.pvalue import DoOutputsTuple, PValue

    if isinstance(x, PValue):
        return x.pipeline
    if isinstance(x, DoOutputsTuple):
        return x._pipeline
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        for v in x:
            p = _pipeline_of(v)
            if p is not None:
                return p
    return None


class _NamedPTransform(PTransform):
    def __init__(self, transform, label):
        PTransform.__init__(self, label)
        self.transform = transform

    def __ror__(self, left, label=None):
        return self.transform.__ror__(left, label or self._label)

    def expand(self, pvalue):
        raise RuntimeError("Should never be expanded directly.")


class _PTransformFnPTransform(PTransform):
    def __init__(self, fn, *args, **kwargs):
        PTransform.__init__(self)
        self._fn = fn
        self._args = args
        self._kwargs = kwargs

    def default_label(self):
        return self._fn.__name__

    def expand(self, pcoll):
        return self._fn(pcoll, *self._args, **self._kwargs)


def ptransform_fn(fn):
    """Decorates ``fn(pcoll, *args)`` into a PTransform factory."""

    def factory(*args, **kwargs):
        return _PTransformFnPTransform(fn, *args, **kwargs)

    factory.__name__ = fn.__name__
    return factory


class _ChainedPTransform(PTransform):
    """Transforms chained before being applied (``t1 | t2``)."""

    def __init__(self, *parts):
        PTransform.__init__(self)
        self.parts = parts

    def default_label(self):
        return " | ".join(p.label for p in self.parts)

    def expand(self, pvalueish):
        for part in self.parts:
            pvalueish = pvalueish | part
        return pvalueish
