"""Triggers and accumulation modes, as in ``apache_beam.transforms.trigger``.

A trigger says when a grouping emits a pane for a window; the runner
evaluates it (Oxbeam's runner-core trigger state machine, Beam semantics).
Here triggers are descriptions: each writes the standard ``Trigger`` proto
(in its proto3 JSON form) and knows its continuation trigger, the trigger
of a grouping's output (Beam's ``get_continuation_trigger``).

``AccumulationMode`` adds Oxbeam's ``RETRACTING``: each pane after the first
is preceded by a retraction of the previous pane of its window (see
``PaneInfo.is_retraction``).
"""

from oxbeam.utils.timestamp import Duration

__all__ = [
    "AccumulationMode",
    "TriggerFn",
    "DefaultTrigger",
    "AfterWatermark",
    "AfterProcessingTime",
    "AfterCount",
    "Repeatedly",
    "AfterAny",
    "AfterAll",
    "AfterEach",
    "OrFinally",
    "Always",
    "Never",
]


class AccumulationMode(object):
    """What a later pane of a window holds: only the new data (DISCARDING),
    everything so far (ACCUMULATING), or everything so far preceded by a
    retraction of the previous pane (RETRACTING, an Oxbeam extension).
    The values are those of Beam's ``AccumulationMode.Enum``."""

    DISCARDING = 1
    ACCUMULATING = 2
    RETRACTING = 3

    _NAMES = {1: "DISCARDING", 2: "ACCUMULATING", 3: "RETRACTING"}

    @staticmethod
    def _proto_name(mode):
        name = AccumulationMode._NAMES.get(mode)
        if name is None:
            raise ValueError("unknown accumulation mode %r" % (mode,))
        return name


class TriggerFn(object):
    """A trigger: when a grouping emits panes for a window."""

    def to_runner_api(self, unused_context=None):
        """The ``Trigger`` proto, as proto3 JSON (a dict)."""
        raise NotImplementedError

    def get_continuation_trigger(self):
        """The trigger of a grouping's output, preserving this one's intent."""
        raise NotImplementedError

    def has_ontime_pane(self):
        return False

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((type(self), repr(self)))

    def __repr__(self):
        return "%s()" % type(self).__name__


class DefaultTrigger(TriggerFn):
    """Fires when the watermark passes the end of the window, then for
    every late element."""

    def to_runner_api(self, unused_context=None):
        return {"default": {}}

    def get_continuation_trigger(self):
        return self

    def has_ontime_pane(self):
        return True


class AfterProcessingTime(TriggerFn):
    """Fires once, ``delay`` seconds of processing time after the first
    element of the pane."""

    def __init__(self, delay=0):
        self.delay = delay

    def __repr__(self):
        return "AfterProcessingTime(delay=%d)" % self.delay

    def to_runner_api(self, unused_context=None):
        millis = int(Duration.of(self.delay).micros // 1000)
        return {"afterProcessingTime": {"timestampTransforms": [{"delay": {"delayMillis": str(millis)}}]}}

    def get_continuation_trigger(self):
        return _AfterSynchronizedProcessingTime()


class _AfterSynchronizedProcessingTime(TriggerFn):
    """The continuation of ``AfterProcessingTime`` (runner internal)."""

    def to_runner_api(self, unused_context=None):
        return {"afterSynchronizedProcessingTime": {}}

    def get_continuation_trigger(self):
        return self


class Always(TriggerFn):
    """Fires for every element, never finishing."""

    def to_runner_api(self, unused_context=None):
        return {"always": {}}

    def get_continuation_trigger(self):
        return self


class _Never(TriggerFn):
    """Never fires; the window's data is emitted only when it closes."""

    def to_runner_api(self, unused_context=None):
        return {"never": {}}

    def get_continuation_trigger(self):
        return self


Never = _Never


class AfterWatermark(TriggerFn):
    """Fires once when the watermark passes the end of the window; with
    ``early``, also repeatedly before; with ``late``, repeatedly after (for
    late data). ``early``/``late`` are wrapped in ``Repeatedly``."""

    def __init__(self, early=None, late=None):
        self.early = self._wrap_if_not_repeatedly(early)
        self.late = self._wrap_if_not_repeatedly(late)

    @staticmethod
    def _wrap_if_not_repeatedly(trigger):
        if trigger and not isinstance(trigger, Repeatedly):
            return Repeatedly(trigger)
        return trigger

    def __repr__(self):
        q = []
        if self.early:
            q.append("early=%s" % self.early.underlying)
        if self.late:
            q.append("late=%s" % self.late.underlying)
        return "AfterWatermark(%s)" % ", ".join(q)

    def to_runner_api(self, unused_context=None):
        body = {}
        if self.early:
            body["earlyFirings"] = self.early.underlying.to_runner_api()
        if self.late:
            body["lateFirings"] = self.late.underlying.to_runner_api()
        return {"afterEndOfWindow": body}

    def get_continuation_trigger(self):
        return AfterWatermark(
            self.early.get_continuation_trigger() if self.early else None,
            self.late.get_continuation_trigger() if self.late else None,
        )

    def has_ontime_pane(self):
        return True


class AfterCount(TriggerFn):
    """Fires once the pane holds ``count`` elements."""

    def __init__(self, count):
        if not isinstance(count, int) or count < 1:
            raise ValueError("AfterCount needs a positive int count, got %r" % (count,))
        self.count = count

    def __repr__(self):
        return "AfterCount(%s)" % self.count

    def to_runner_api(self, unused_context=None):
        return {"elementCount": {"elementCount": self.count}}

    def get_continuation_trigger(self):
        return AfterCount(1)


class Repeatedly(TriggerFn):
    """Fires whenever ``underlying`` fires, re-arming it each time."""

    def __init__(self, underlying):
        if not isinstance(underlying, TriggerFn):
            raise TypeError("Repeatedly needs a trigger, got %r" % (underlying,))
        self.underlying = underlying

    def __repr__(self):
        return "Repeatedly(%s)" % self.underlying

    def to_runner_api(self, unused_context=None):
        return {"repeat": {"subtrigger": self.underlying.to_runner_api()}}

    def get_continuation_trigger(self):
        return Repeatedly(self.underlying.get_continuation_trigger())

    def has_ontime_pane(self):
        return self.underlying.has_ontime_pane()


class _ParallelTriggerFn(TriggerFn):
    _field = None

    def __init__(self, *triggers):
        for t in triggers:
            if not isinstance(t, TriggerFn):
                raise TypeError("%s needs triggers, got %r" % (type(self).__name__, t))
        self.triggers = triggers

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(str(t) for t in self.triggers))

    def to_runner_api(self, unused_context=None):
        return {self._field: {"subtriggers": [t.to_runner_api() for t in self.triggers]}}

    def get_continuation_trigger(self):
        return self.__class__(*(t.get_continuation_trigger() for t in self.triggers))

    def has_ontime_pane(self):
        return any(t.has_ontime_pane() for t in self.triggers)


class AfterAny(_ParallelTriggerFn):
    """Fires (and finishes) when any subtrigger does."""

    _field = "afterAny"


class AfterAll(_ParallelTriggerFn):
    """Fires (and finishes) when all subtriggers have."""

    _field = "afterAll"


class AfterEach(TriggerFn):
    """Runs its subtriggers one after another, firing with each in turn."""

    def __init__(self, *triggers):
        self.triggers = triggers

    def __repr__(self):
        return "AfterEach(%s)" % ", ".join(str(t) for t in self.triggers)

    def to_runner_api(self, unused_context=None):
        return {"afterEach": {"subtriggers": [t.to_runner_api() for t in self.triggers]}}

    def get_continuation_trigger(self):
        return Repeatedly(AfterAny(*(t.get_continuation_trigger() for t in self.triggers)))

    def has_ontime_pane(self):
        return any(t.has_ontime_pane() for t in self.triggers)


class OrFinally(AfterAny):
    """Fires like ``main``, but finishes for good as soon as ``finally_``
    fires."""

    def to_runner_api(self, unused_context=None):
        return {
            "orFinally": {
                "main": self.triggers[0].to_runner_api(),
                "finally": self.triggers[1].to_runner_api(),
            }
        }
