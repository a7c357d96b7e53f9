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
    # Subclasses that do not call ``PTransform.__init__`` (Beam allows it).
    _label = None
    pipeline = None

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

    def with_resource_hints(self, **hints):
        """Beam's resource hints (``min_ram``, ``accelerator``, ...): recorded;
        a local runner has one kind of worker, so they change nothing."""
        self._resource_hints = dict(getattr(self, "_resource_hints", {}), **hints)
        return self

    def get_resource_hints(self):
        return dict(getattr(self, "_resource_hints", {}))

    def with_input_types(self, *args, **kwargs):
        """Declares the input's element type: applying the transform to a
        PCollection of a plainly different type (``str`` elements into
        ``with_input_types(int)``) raises ``typehints.TypeCheckError``."""
        self._input_hints = (args, kwargs)
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
            if isinstance(left, (list, tuple, set, frozenset, range, dict)) or (
                    hasattr(left, "__iter__") and not isinstance(left, (str, bytes))):
                return _apply_to_values(self, left, label)
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


# Outputs of transforms applied to plain values, by run id (filled in this
# process by the collecting DoFn while the run lasts).
_MATERIALIZED = {}


class _Collect(object):
    def __init__(self, key):
        self.key = key

    def __call__(self, values):
        _MATERIALIZED.setdefault(self.key, []).extend(values)


def _apply_to_values(transform, values, label):
    """``[1, 2] | transform``: as Beam, runs the transform over the values
    in a local pipeline and returns its output as a list (a dict or tuple of
    lists for several outputs)."""
    import uuid

    from oxbeam.pipeline import Pipeline
    from oxbeam.pvalue import DoOutputsTuple, PCollection
    from oxbeam.transforms.core import Create, Map

    if isinstance(values, dict):
        values = list(values.items())
    p = Pipeline()
    result = p.apply(transform, p | "CreateInput" >> Create(list(values)), label)
    keys = {}

    def collect(pc, name):
        key = uuid.uuid4().hex
        keys[name] = key
        from oxbeam.transforms.core import GroupByKey, WindowInto
        from oxbeam.window import GlobalWindows

        _ = (pc
             | "Rewindow%s" % name >> WindowInto(GlobalWindows())
             | "Key%s" % name >> Map(lambda v: (None, v))
             | "Group%s" % name >> GroupByKey()
             | "Collect%s" % name >> Map(lambda kv, c=_Collect(key): c(list(kv[1]))))

    if isinstance(result, PCollection):
        collect(result, "")
    elif isinstance(result, DoOutputsTuple):
        outs = {t: result[t] for t in result._tags}
        outs[None] = result[None]
        for t, pc in outs.items():
            collect(pc, str(t))
    elif isinstance(result, (tuple, list)):
        for i, pc in enumerate(result):
            collect(pc, str(i))
    else:
        p.run()
        return result
    try:
        p.run()
        got = {name: _MATERIALIZED.pop(key, []) for name, key in keys.items()}
    finally:
        for key in keys.values():
            _MATERIALIZED.pop(key, None)
    if isinstance(result, PCollection):
        return got[""]
    if isinstance(result, DoOutputsTuple):
        return _MaterializedOutputs(
            {(None if t == "None" else t): v for t, v in got.items()}, result._tags,
            getattr(result, "_main_tag", None))
    return tuple(got[str(i)] for i in range(len(result)))


class _MaterializedOutputs(object):
    """The outputs of a multi-output ParDo applied to values: lists by tag
    (``out.tag``, ``out["tag"]``, ``out[None]`` for the main output)."""

    def __init__(self, by_tag, tags, main_tag=None):
        self._by_tag = by_tag
        self._tags = list(tags)
        self._main_tag = main_tag

    def __getattr__(self, tag):
        if tag.startswith("_"):
            raise AttributeError(tag)
        return self[tag]

    def __getitem__(self, tag):
        if isinstance(tag, int):
            tag = ([None] + self._tags)[tag]
        if tag is not None and tag == self._main_tag:
            tag = None
        return self._by_tag[tag]

    def __iter__(self):
        return iter([self._by_tag[None]] + [self._by_tag[t] for t in self._tags])


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
