"""PCollections, tagged outputs and side-input views, as in
``apache_beam.pvalue``."""

__all__ = [
    "PValue",
    "PBegin",
    "PDone",
    "PCollection",
    "TaggedOutput",
    "DoOutputsTuple",
    "AsSideInput",
    "AsSingleton",
    "AsIter",
    "AsList",
    "AsDict",
    "AsMultiMap",
    "Row",
]


from oxbeam.utils import _specials


class PValue(object):
    """Something a transform can be applied to."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def __or__(self, ptransform):
        return self.pipeline.apply(ptransform, self)


class PDone(PValue):
    """The output of transforms that produce no PCollection."""


class PBegin(PValue):
    """The input of root transforms (``p | Create(...)``)."""


class PCollection(PValue):
    """A distributed collection of elements.

    ``element_type`` is Oxbeam's type description (see
    :mod:`oxbeam.typehints`); it picks the coder.
    """

    def __class_getitem__(cls, element_type):
        # ``PCollection[int]`` in annotations (``expand(self, pcoll:
        # PCollection[int])``), as Beam's generic PCollection.
        import types

        return types.GenericAlias(cls, element_type)

    def __init__(self, pipeline, producer=None, tag=None, element_type=None, windowing=None):
        PValue.__init__(self, pipeline)
        from oxbeam import typehints
        from oxbeam.window import GlobalWindows, _as_windowing

        self.producer = producer
        self.tag = tag
        self.element_type = typehints.Any if element_type is None else element_type
        # A Windowing (window fn, trigger, ...), as in Beam.
        self.windowing = _as_windowing(windowing if windowing is not None else GlobalWindows())
        self.id = pipeline._new_pcollection_id()
        self.is_bounded = True

    def __repr__(self):
        label = self.producer.full_label if self.producer is not None else "?"
        return "<PCollection[%s.%s] at 0x%x>" % (label, self.tag, id(self))

    def __reduce__(self):
        raise TypeError("A PCollection cannot be pickled; pass it as a side input instead")


class TaggedOutput(object):
    """A value for the additional output ``tag`` of a DoFn."""

    __slots__ = ("tag", "value")

    def __new__(cls, *args, **kwargs):
        return _specials.note_created(cls)

    def __init__(self, tag, value):
        if not isinstance(tag, str):
            raise TypeError("Attempting to create a TaggedOutput with non-string tag %r" % (tag,))
        self.tag = tag
        self.value = value

    def __repr__(self):
        return "TaggedOutput(%r, %r)" % (self.tag, self.value)


class DoOutputsTuple(object):
    """The outputs of ``ParDo(...).with_outputs(...)``: by tag (attribute or
    item), iterable (main output first, then the declared tags)."""

    def __init__(self, pipeline, node, tags, main_tag):
        self._pipeline = pipeline
        self._node = node
        self._tags = list(tags)
        self._main_tag = main_tag
        self._pcolls = {}

    def __iter__(self):
        yield self[None]
        for t in self._tags:
            yield self[t]

    def __getattr__(self, tag):
        if tag.startswith("_"):
            raise AttributeError(tag)
        return self[tag]

    def __getitem__(self, tag):
        if isinstance(tag, int) and tag not in self._tags:
            tag = ([None] + self._tags)[tag]
        if tag == self._main_tag:
            tag = None
        key = "None" if tag is None else str(tag)
        pc = self._pcolls.get(key)
        if pc is None:
            pc = self._node._add_output(key)
            self._pcolls[key] = pc
        return pc


class AsSideInput(object):
    """Marks a PCollection as a side input of a DoFn."""

    _kind = None

    def __init__(self, pcoll):
        self.pvalue = pcoll

    def _view_spec(self):
        from oxbeam._runtime import ViewSpec

        return ViewSpec(self._kind, self.pvalue.windowing.windowfn)


class AsSingleton(AsSideInput):
    """The single element of the PCollection (or ``default_value``)."""

    _kind = "singleton"
    _NO_DEFAULT = object()

    def __init__(self, pcoll, default_value=_NO_DEFAULT):
        AsSideInput.__init__(self, pcoll)
        self.default_value = default_value

    def _view_spec(self):
        from oxbeam._runtime import _MISSING, ViewSpec

        d = _MISSING if self.default_value is AsSingleton._NO_DEFAULT else self.default_value
        return ViewSpec("singleton", self.pvalue.windowing.windowfn, d)


class AsIter(AsSideInput):
    """All elements, as an iterable."""

    _kind = "iter"


class AsList(AsSideInput):
    """All elements, as a list."""

    _kind = "list"


class AsDict(AsSideInput):
    """A dict of the PCollection's ``(key, value)`` pairs."""

    _kind = "dict"


class AsMultiMap(AsSideInput):
    """A dict from each key to the list of its values."""

    _kind = "multimap"


class Row(object):
    """A record with named fields (``Row(name="a", count=3)``), as
    ``apache_beam.Row``: attribute access, equality and hashing by fields
    and values in order, iteration over the values, ``as_dict()``."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def as_dict(self):
        return dict(self.__dict__)

    def __iter__(self):
        return iter(list(self.__dict__.values()))

    def __repr__(self):
        return "Row(%s)" % ", ".join("%s=%r" % kv for kv in self.__dict__.items())

    def __eq__(self, other):
        return type(self) is type(other) and list(self.__dict__.items()) == list(other.__dict__.items())

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(tuple(self.__dict__.items()))

    def __reduce__(self):
        return _make_row, (tuple(self.__dict__.items()),)


def _make_row(items):
    return Row(**dict(items))
