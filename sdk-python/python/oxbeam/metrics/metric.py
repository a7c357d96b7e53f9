"""``Metrics.counter`` / ``Metrics.distribution`` inside DoFns, and the
results a finished pipeline reports (``result.metrics().query()``)."""

from oxbeam import _runtime

__all__ = ["Metrics", "MetricsFilter", "MetricResults", "MetricResult", "MetricKey", "MetricName",
           "DistributionResult", "GaugeResult"]


def _namespace(ns):
    if isinstance(ns, type):
        return "%s.%s" % (ns.__module__, ns.__name__)
    if not isinstance(ns, str):
        raise ValueError("Metric namespace must be a non-empty string or a class")
    return ns


class Counter(object):
    def __init__(self, namespace, name):
        self.namespace = namespace
        self.name = name

    def inc(self, n=1):
        _runtime._inc_counter(self.namespace, self.name, n)

    def dec(self, n=1):
        self.inc(-n)


class Distribution(object):
    def __init__(self, namespace, name):
        self.namespace = namespace
        self.name = name

    def update(self, value):
        _runtime._update_distribution(self.namespace, self.name, value)


class Gauge(object):
    """The latest value set (by time) is reported."""

    def __init__(self, namespace, name):
        self.namespace = namespace
        self.name = name

    def set(self, value):
        _runtime._set_gauge(self.namespace, self.name, value)


class StringSet(object):
    """The set of strings added is reported."""

    def __init__(self, namespace, name):
        self.namespace = namespace
        self.name = name

    def add(self, value):
        _runtime._add_string(self.namespace, self.name, value)


class Metrics(object):
    """Creates metrics reported from inside DoFns."""

    @staticmethod
    def get_namespace(namespace):
        return _namespace(namespace)

    @staticmethod
    def counter(namespace, name):
        return Counter(_namespace(namespace), name)

    @staticmethod
    def distribution(namespace, name):
        return Distribution(_namespace(namespace), name)

    @staticmethod
    def gauge(namespace, name):
        return Gauge(_namespace(namespace), name)

    @staticmethod
    def string_set(namespace, name):
        return StringSet(_namespace(namespace), name)


class MetricName(object):
    def __init__(self, namespace, name):
        self.namespace = namespace
        self.name = name

    def __repr__(self):
        return "MetricName(namespace=%s, name=%s)" % (self.namespace, self.name)

    def __eq__(self, o):
        return isinstance(o, MetricName) and (self.namespace, self.name) == (o.namespace, o.name)

    def __hash__(self):
        return hash((self.namespace, self.name))


class MetricKey(object):
    def __init__(self, step, metric, labels=None):
        self.step = step
        self.metric = metric
        self.labels = labels or {}

    def __repr__(self):
        return "MetricKey(step=%s, metric=%s)" % (self.step, self.metric)


class DistributionResult(object):
    def __init__(self, count, sum, min, max):  # noqa: A002 - Beam's names
        self.count = count
        self.sum = sum
        self.min = min
        self.max = max

    @property
    def mean(self):
        return None if self.count == 0 else self.sum / self.count

    def __eq__(self, o):
        return isinstance(o, DistributionResult) and (self.count, self.sum, self.min, self.max) == (
            o.count, o.sum, o.min, o.max)

    def __repr__(self):
        return "DistributionResult(sum=%s, count=%s, min=%s, max=%s, mean=%s)" % (
            self.sum, self.count, self.min, self.max, self.mean)


class GaugeResult(object):
    """A gauge's value and when it was set (``Timestamp``)."""

    def __init__(self, value, timestamp_millis):
        from oxbeam.utils.timestamp import Timestamp

        self.value = value
        self.timestamp = Timestamp(micros=timestamp_millis * 1000)

    def __eq__(self, o):
        return isinstance(o, GaugeResult) and (self.value, self.timestamp) == (o.value, o.timestamp)

    def __repr__(self):
        return "GaugeResult(value=%s, timestamp=%s)" % (self.value, self.timestamp)


class MetricResult(object):
    def __init__(self, key, committed, attempted):
        self.key = key
        self.committed = committed
        self.attempted = attempted

    @property
    def result(self):
        return self.committed

    def __repr__(self):
        return "MetricResult(key=%s, committed=%s, attempted=%s)" % (
            self.key, self.committed, self.attempted)


class MetricsFilter(object):
    """Selects metrics by name, namespace and step (transform label)."""

    def __init__(self):
        self.names = set()
        self.namespaces = set()
        self.steps = set()

    def with_name(self, name):
        self.names.add(name)
        return self

    def with_names(self, names):
        self.names.update(names)
        return self

    def with_namespace(self, namespace):
        self.namespaces.add(_namespace(namespace))
        return self

    def with_namespaces(self, namespaces):
        for n in namespaces:
            self.with_namespace(n)
        return self

    def with_step(self, step):
        self.steps.add(step)
        return self

    def _matches(self, key):
        if self.names and key.metric.name not in self.names:
            return False
        if self.namespaces and key.metric.namespace not in self.namespaces:
            return False
        if self.steps:
            parts = key.step.split("/")
            ok = False
            for s in self.steps:
                sp = s.split("/")
                for i in range(len(parts) - len(sp) + 1):
                    if parts[i:i + len(sp)] == sp:
                        ok = True
            if not ok:
                return False
        return True


class MetricResults(object):
    """Metrics of a finished pipeline."""

    COUNTERS = "counters"
    DISTRIBUTIONS = "distributions"
    GAUGES = "gauges"
    STRINGSETS = "string_sets"

    def __init__(self, counters, distributions, gauges=(), string_sets=()):
        self._counters = [
            MetricResult(MetricKey(t, MetricName(ns, n)), v, v) for t, ns, n, v in counters
        ]
        self._dists = [
            MetricResult(MetricKey(t, MetricName(ns, n)), DistributionResult(c, s, mn, mx),
                         DistributionResult(c, s, mn, mx))
            for t, ns, n, c, s, mn, mx in distributions
        ]
        self._gauges = [
            MetricResult(MetricKey(t, MetricName(ns, n)), GaugeResult(v, ts), GaugeResult(v, ts))
            for t, ns, n, v, ts in gauges
        ]
        self._string_sets = [
            MetricResult(MetricKey(t, MetricName(ns, n)), set(vs), set(vs)) for t, ns, n, vs in string_sets
        ]

    def query(self, filter=None):  # noqa: A002 - Beam's name
        f = filter or MetricsFilter()
        return {
            self.COUNTERS: [r for r in self._counters if f._matches(r.key)],
            self.DISTRIBUTIONS: [r for r in self._dists if f._matches(r.key)],
            self.GAUGES: [r for r in self._gauges if f._matches(r.key)],
            self.STRINGSETS: [r for r in self._string_sets if f._matches(r.key)],
        }
