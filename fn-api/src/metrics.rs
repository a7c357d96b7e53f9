use oxbeam_model::coders::wire;
use oxbeam_model::pipeline::MonitoringInfo;

use crate::bounded_trie::BoundedTrie;
use std::collections::{BTreeMap, BTreeSet};

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
    /// User string sets: every distinct string reported.
    pub string_sets: BTreeMap<MetricKey, BTreeSet<String>>,
    /// User bounded tries (Beam's `Metrics.bounded_trie`, lineage).
    pub bounded_tries: BTreeMap<MetricKey, BoundedTrie>,
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
        for (k, set) in &other.string_sets {
            self.string_sets
                .entry(k.clone())
                .or_default()
                .extend(set.iter().cloned());
        }
        for (k, t) in &other.bounded_tries {
            self.merge_bounded_trie(k.clone(), t);
        }
        for (k, n) in &other.element_counts {
            *self.element_counts.entry(k.clone()).or_default() += n;
        }
    }

    /// Folds a bundle's bounded trie into the one of `key`.
    pub fn merge_bounded_trie(&mut self, key: MetricKey, trie: &BoundedTrie) {
        match self.bounded_tries.get_mut(&key) {
            Some(t) => t.merge(trie),
            None => {
                self.bounded_tries.insert(key, trie.clone());
            }
        }
    }
}

/// A string set's payload: a Beam iterable (big-endian 4-byte count) of
/// length-prefixed UTF-8 strings.
fn decode_string_set(mut p: &[u8]) -> Option<BTreeSet<String>> {
    let (count, rest) = p.split_first_chunk::<4>()?;
    p = rest;
    let mut out = BTreeSet::new();
    for _ in 0..u32::from_be_bytes(*count) {
        let len = usize::try_from(wire::read_varint_u64(&mut p).ok()?).ok()?;
        let (s, rest) = (p.get(..len)?, p.get(len..)?);
        out.insert(std::str::from_utf8(s).ok()?.to_string());
        p = rest;
    }
    Some(out)
}

fn encode_string_set(set: &BTreeSet<String>) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&u32::try_from(set.len()).unwrap_or(u32::MAX).to_be_bytes());
    for s in set {
        wire::write_varint_u64(&mut p, s.len() as u64);
        p.extend_from_slice(s.as_bytes());
    }
    p
}

/// Label names of Beam's `MonitoringInfo`s (from the `label_props`
/// options of `MonitoringInfo.MonitoringInfoLabels`).
mod labels {
    pub const PTRANSFORM: &str = "PTRANSFORM";
    pub const PCOLLECTION: &str = "PCOLLECTION";
    pub const NAMESPACE: &str = "NAMESPACE";
    pub const NAME: &str = "NAME";
}

impl Metrics {
    /// Folds the user metrics and element counts of Beam `MonitoringInfo`s
    /// (as an SDK harness reports them in a `ProcessBundleResponse`) into
    /// these. Metrics of other kinds, and malformed payloads, are skipped.
    pub fn merge_monitoring_infos(&mut self, infos: &[MonitoringInfo]) {
        use oxbeam_model::urns::monitoring_info_specs as spec;
        for info in infos {
            let label = |l: &str| info.labels.get(l).cloned().unwrap_or_default();
            let key = || MetricKey {
                transform: label(labels::PTRANSFORM),
                namespace: label(labels::NAMESPACE),
                name: label(labels::NAME),
            };
            let mut p: &[u8] = info.payload.as_ref();
            match info.urn.as_str() {
                spec::USER_SUM_INT64 => {
                    if let Ok(v) = wire::read_varint_i64(&mut p) {
                        self.inc_counter(key(), v);
                    }
                }
                spec::USER_DISTRIBUTION_INT64 => {
                    let mut read = || wire::read_varint_i64(&mut p);
                    if let (Ok(count), Ok(sum), Ok(min), Ok(max)) = (read(), read(), read(), read())
                    {
                        let d = DistributionData {
                            count,
                            sum,
                            min,
                            max,
                        };
                        self.distributions
                            .entry(key())
                            .and_modify(|m| m.merge(&d))
                            .or_insert(d);
                    }
                }
                spec::USER_LATEST_INT64 => {
                    let mut read = || wire::read_varint_i64(&mut p);
                    if let (Ok(ts), Ok(v)) = (read(), read()) {
                        self.set_gauge(key(), v, ts);
                    }
                }
                spec::USER_SET_STRING => {
                    if let Some(set) = decode_string_set(p) {
                        self.string_sets.entry(key()).or_default().extend(set);
                    }
                }
                spec::USER_BOUNDED_TRIE => {
                    if let Some(trie) = BoundedTrie::decode(p) {
                        self.merge_bounded_trie(key(), &trie);
                    }
                }
                spec::ELEMENT_COUNT => {
                    // The runner counts elements itself, per PCollection.
                }
                _ => {}
            }
        }
    }

    /// These metrics as Beam `MonitoringInfo`s, as a job server reports
    /// them to SDK clients (`GetJobMetrics`): user counters, distributions,
    /// gauges, string sets and bounded tries (`beam:metric:user:*`), and
    /// element counts.
    pub fn to_monitoring_infos(&self) -> Vec<MonitoringInfo> {
        use oxbeam_model::urns::monitoring_info_specs as spec;
        use oxbeam_model::urns::monitoring_info_type_urns as ty;
        let user = |urn: &str, ty: &str, k: &MetricKey, payload: Vec<u8>| MonitoringInfo {
            urn: urn.to_string(),
            r#type: ty.to_string(),
            payload: payload.into(),
            labels: [
                (labels::PTRANSFORM, &k.transform),
                (labels::NAMESPACE, &k.namespace),
                (labels::NAME, &k.name),
            ]
            .into_iter()
            .map(|(l, v)| (l.to_string(), v.clone()))
            .collect(),
            start_time: None,
        };
        let mut out = Vec::new();
        for (k, v) in &self.counters {
            let mut p = Vec::new();
            wire::write_varint_i64(&mut p, *v);
            out.push(user(spec::USER_SUM_INT64, ty::SUM_INT64_TYPE, k, p));
        }
        for (k, d) in &self.distributions {
            let mut p = Vec::new();
            for v in [d.count, d.sum, d.min, d.max] {
                wire::write_varint_i64(&mut p, v);
            }
            out.push(user(
                spec::USER_DISTRIBUTION_INT64,
                ty::DISTRIBUTION_INT64_TYPE,
                k,
                p,
            ));
        }
        for (k, (v, ts)) in &self.gauges {
            let mut p = Vec::new();
            wire::write_varint_i64(&mut p, *ts);
            wire::write_varint_i64(&mut p, *v);
            out.push(user(spec::USER_LATEST_INT64, ty::LATEST_INT64_TYPE, k, p));
        }
        for (k, set) in &self.string_sets {
            out.push(user(
                spec::USER_SET_STRING,
                ty::SET_STRING_TYPE,
                k,
                encode_string_set(set),
            ));
        }
        for (k, trie) in &self.bounded_tries {
            out.push(user(
                spec::USER_BOUNDED_TRIE,
                ty::BOUNDED_TRIE_TYPE,
                k,
                trie.encode(),
            ));
        }
        for (pcollection, n) in &self.element_counts {
            let mut p = Vec::new();
            wire::write_varint_i64(&mut p, i64::try_from(*n).unwrap_or(i64::MAX));
            out.push(MonitoringInfo {
                urn: spec::ELEMENT_COUNT.to_string(),
                r#type: ty::SUM_INT64_TYPE.to_string(),
                payload: p.into(),
                labels: [(labels::PCOLLECTION.to_string(), pcollection.clone())]
                    .into_iter()
                    .collect(),
                start_time: None,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_infos_round_trip() {
        let key = |n: &str| MetricKey {
            transform: "Map".into(),
            namespace: "ns".into(),
            name: n.into(),
        };
        let mut m = Metrics::default();
        m.inc_counter(key("c"), -7);
        m.update_distribution(key("d"), 3);
        m.update_distribution(key("d"), 300);
        m.set_gauge(key("g"), 42, 1_700_000_000_000);
        m.string_sets
            .insert(key("s"), ["a".to_string(), "zzz".to_string()].into());
        let mut trie = BoundedTrie::default();
        trie.add(&["gs:".to_string(), "bucket".to_string()]);
        m.bounded_tries.insert(key("t"), trie);
        let mut back = Metrics::default();
        back.merge_monitoring_infos(&m.to_monitoring_infos());
        assert_eq!(back, m);
    }

    #[test]
    fn string_sets_decode_as_beam_python_encodes_them() {
        // `monitoring_infos.user_set_string('ns', 'n', {'a', 'zzz'}).payload`
        // in apache-beam 2.77.
        let payload = b"\x00\x00\x00\x02\x03zzz\x01a";
        let set = decode_string_set(payload).unwrap();
        assert_eq!(set, ["a".to_string(), "zzz".to_string()].into());
        assert!(decode_string_set(b"\x00\x00\x00\x02\x03zz").is_none());
    }
}
