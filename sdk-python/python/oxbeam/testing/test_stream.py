"""``TestStream``: a scripted unbounded source, as in
``apache_beam.testing.test_stream``.

The script — elements with event timestamps, watermark advances and
processing-time advances — becomes a ``beam:transform:teststream:v1``
transform with a ``TestStreamPayload`` (elements encoded with the output's
coder). Oxbeam's runner executes it as a primitive on its streaming engine:
each event is applied and the pipeline quiesces before the next; processing
time is a synthetic clock moved only by ``advance_processing_time``; after
the last event the watermark goes to +∞.
"""

from oxbeam import typehints
from oxbeam.transforms.ptransform import PTransform
from oxbeam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp
from oxbeam.utils.windowed_value import WindowedValue
from oxbeam.window import GlobalWindows, TimestampedValue

__all__ = ["TestStream", "Event", "ElementEvent", "WatermarkEvent", "ProcessingTimeEvent"]


class Event(object):
    """One step of a TestStream script."""

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self), repr(self.__dict__)))


class ElementEvent(Event):
    """Emits ``timestamped_values`` on output ``tag``."""

    def __init__(self, timestamped_values, tag=None):
        self.timestamped_values = list(timestamped_values)
        self.tag = tag

    def __repr__(self):
        return "ElementEvent(%r, tag=%r)" % (self.timestamped_values, self.tag)


class WatermarkEvent(Event):
    """Moves the watermark of output ``tag`` to ``new_watermark``."""

    def __init__(self, new_watermark, tag=None):
        self.new_watermark = Timestamp.of(new_watermark)
        self.tag = tag

    def __repr__(self):
        return "WatermarkEvent(%r, tag=%r)" % (self.new_watermark, self.tag)


class ProcessingTimeEvent(Event):
    """Advances the synthetic processing-time clock by ``advance_by`` seconds."""

    def __init__(self, advance_by):
        self.advance_by = Duration.of(advance_by)

    def __repr__(self):
        return "ProcessingTimeEvent(%r)" % (self.advance_by,)


def _tag_name(tag):
    return "None" if tag is None else tag


class TestStream(PTransform):
    """A scripted stream for tests: build it with ``add_elements``,
    ``advance_watermark_to``, ``advance_watermark_to_infinity`` and
    ``advance_processing_time`` (each returns the TestStream), then apply
    it to the pipeline. With ``output_tags`` (or tagged events) it returns
    a dict of PCollections by tag. ``coder`` picks the element coder (by
    default, from the elements' types)."""

    __test__ = False  # not a pytest test class

    def __init__(self, coder=None, events=None, output_tags=None, endpoint=None):
        PTransform.__init__(self)
        if endpoint is not None:
            raise NotImplementedError("TestStream events from a TestStream service (endpoint)")
        self.coder = coder
        self._events = list(events or [])
        self.output_tags = set(output_tags) if output_tags else set()
        self.current_watermark = MIN_TIMESTAMP
        for e in self._events:
            if getattr(e, "tag", None) is not None:
                self.output_tags.add(e.tag)

    @property
    def _events_list(self):
        return self._events

    def _add(self, event):
        self._events.append(event)
        return self

    def add_elements(self, elements, tag=None, event_timestamp=None):
        """Emits ``elements``: ``TimestampedValue``s at their timestamps,
        other values at ``event_timestamp`` (default: the current watermark)."""
        if tag is not None:
            self.output_tags.add(tag)
        tvs = []
        for e in elements:
            if isinstance(e, TimestampedValue):
                tvs.append(e)
            elif isinstance(e, WindowedValue):
                tvs.append(TimestampedValue(e.value, e.timestamp))
            else:
                if event_timestamp is None:
                    event_timestamp = self.current_watermark
                tvs.append(TimestampedValue(e, event_timestamp))
        return self._add(ElementEvent(tvs, tag))

    def advance_watermark_to(self, new_watermark, tag=None):
        """Moves the watermark (of output ``tag``) to ``new_watermark``."""
        if tag is not None:
            self.output_tags.add(tag)
        self.current_watermark = Timestamp.of(new_watermark)
        return self._add(WatermarkEvent(new_watermark, tag))

    def advance_watermark_to_infinity(self, tag=None):
        """Moves the watermark (of output ``tag``) to the end of time."""
        return self.advance_watermark_to(MAX_TIMESTAMP, tag)

    def advance_processing_time(self, advance_by):
        """Advances processing time by ``advance_by`` seconds."""
        return self._add(ProcessingTimeEvent(advance_by))

    def _element_type(self):
        if self._output_type is not None:
            return self._output_type
        if self.coder is not None:
            from oxbeam.coders import _element_type_of

            return _element_type_of(self.coder)
        values = [tv.value for e in self._events if isinstance(e, ElementEvent) for tv in e.timestamped_values]
        return typehints.infer(values)

    def expand(self, pbegin):
        node = pbegin.pipeline._current()
        t = self._element_type()
        events = list(self._events)

        def payload(b):
            import base64
            import json

            from oxbeam import _oxbeam

            cid = b.coder(t)
            comps = _oxbeam.encode_proto(
                "org.apache.beam.model.pipeline.v1.Components", json.dumps({"coders": b.coders})
            )
            out = []
            for e in events:
                if isinstance(e, ElementEvent):
                    encoded = _oxbeam.encode_values(comps, cid, [tv.value for tv in e.timestamped_values])
                    out.append({
                        "elementEvent": {
                            "elements": [
                                {"encodedElement": base64.b64encode(x).decode("ascii"),
                                 "timestamp": str(tv.timestamp.micros // 1000)}
                                for x, tv in zip(encoded, e.timestamped_values)
                            ],
                            "tag": _tag_name(e.tag),
                        }
                    })
                elif isinstance(e, WatermarkEvent):
                    out.append({"watermarkEvent": {"newWatermark": str(e.new_watermark.micros // 1000),
                                                   "tag": _tag_name(e.tag)}})
                else:
                    out.append({"processingTimeEvent": {"advanceDuration": str(e.advance_by.micros // 1000)}})
            return _oxbeam.encode_proto(
                "org.apache.beam.model.pipeline.v1.TestStreamPayload",
                json.dumps({"coderId": cid, "events": out}),
            )

        node.primitive = ("standard_p_transforms::primitives::TEST_STREAM", payload, False)
        tags = self.output_tags or {None}
        outs = {}
        for tag in sorted(tags, key=lambda x: (x is not None, x or "")):
            pc = node._add_output(_tag_name(tag), t, GlobalWindows())
            pc.is_bounded = False
            outs[tag] = pc
        if len(outs) == 1 and None in outs:
            return outs[None]
        return outs
