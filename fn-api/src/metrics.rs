use std::collections::BTreeMap;

/// Identifies a user metric: the transform reporting it, and its namespace
/// and name as the user gave them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    /// Unique name of the reporting transform.
    pub transform: String,
    /// User-chosen namespace.
    pub namespace: String,
    /// User-chosen name.
    pub name: String,
}

/// Sum, count, min and max of the values reported to a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistributionData {
    /// Number of values.
    pub count: i64,
    /// Sum of values.
    pub sum: i64,
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
}

impl DistributionData {
    /// A distribution holding one value.
    pub fn single(v: i64) -> Self {
        DistributionData {
            count: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

    /// Folds `other` into `self`.
    pub fn merge(&mut self, other: &DistributionData) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// Metrics of a bundle (or, merged, of a job).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// User counters.
    pub counters: BTreeMap<MetricKey, i64>,
    /// User distributions.
    pub distributions: BTreeMap<MetricKey, DistributionData>,
    /// User gauges: the latest value, with the millisecond timestamp it was set.
    pub gauges: BTreeMap<MetricKey, (i64, i64)>,
    /// Elements produced per PCollection id.
    pub element_counts: BTreeMap<String, u64>,
}

impl Metrics {
    /// Adds `delta` to a counter.
    pub fn inc_counter(&mut self, key: MetricKey, delta: i64) {
        *self.counters.entry(key).or_default() += delta;
    }

    /// Records `value` in a distribution.
    pub fn update_distribution(&mut self, key: MetricKey, value: i64) {
        self.distributions
            .entry(key)
            .and_modify(|d| d.merge(&DistributionData::single(value)))
            .or_insert_with(|| DistributionData::single(value));
    }

    /// Sets a gauge, keeping the value with the latest timestamp.
    pub fn set_gauge(&mut self, key: MetricKey, value: i64, timestamp_millis: i64) {
        let slot = self.gauges.entry(key).or_insert((value, timestamp_millis));
        if timestamp_millis >= slot.1 {
            *slot = (value, timestamp_millis);
        }
    }

    /// Folds another bundle's metrics into these.
    pub fn merge(&mut self, other: &Metrics) {
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        for (k, d) in &other.distributions {
            self.distributions
                .entry(k.clone())
                .and_modify(|m| m.merge(d))
                .or_insert(*d);
        }
        for (k, (v, t)) in &other.gauges {
            self.set_gauge(k.clone(), *v, *t);
        }
        for (k, n) in &other.element_counts {
            *self.element_counts.entry(k.clone()).or_default() += n;
        }
    }
}
