//! User metrics: counters, distributions and gauges, reported from user code.
//!
//! Create a metric once (e.g. as a field of your DoFn) and update it from
//! `process`, `finish_bundle` or any closure the executor calls. Updates go to
//! a per-thread cell (no lock, no allocation after the first update of a
//! metric in a bundle) and are attributed to the transform running the code.
//! The runner merges them over bundles into
//! [`PipelineResult::metrics`](crate::PipelineResult).
//!
//! ```
//! use oxbeam::metrics::Counter;
//! let words = Counter::new("wordcount", "words");
//! words.inc(1); // outside a pipeline: ignored
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oxbeam_fn_api::{DistributionData, MetricKey, Metrics};

use crate::exec::hash::FxBuildHasher;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Debug)]
struct MetricName {
    id: u64,
    namespace: Arc<str>,
    name: Arc<str>,
}

impl MetricName {
    fn new(namespace: &str, name: &str) -> Self {
        MetricName {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// A sum of `i64` increments.
#[derive(Clone, Debug)]
pub struct Counter(MetricName);

/// Count, sum, min and max of reported `i64` values.
#[derive(Clone, Debug)]
pub struct Distribution(MetricName);

/// The latest reported `i64` value.
#[derive(Clone, Debug)]
pub struct Gauge(MetricName);

impl Counter {
    /// A counter named `name` in `namespace`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Counter(MetricName::new(namespace, name))
    }

    /// Adds `n`.
    #[inline]
    pub fn inc(&self, n: i64) {
        with_cells(|c, t| {
            c.counters
                .entry((t, self.0.id))
                .or_insert_with(|| (self.0.clone(), 0))
                .1 += n;
        });
    }
}

impl Distribution {
    /// A distribution named `name` in `namespace`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Distribution(MetricName::new(namespace, name))
    }

    /// Records `value`.
    #[inline]
    pub fn update(&self, value: i64) {
        with_cells(|c, t| {
            c.distributions
                .entry((t, self.0.id))
                .and_modify(|(_, d)| d.merge(&DistributionData::single(value)))
                .or_insert_with(|| (self.0.clone(), DistributionData::single(value)));
        });
    }
}

impl Gauge {
    /// A gauge named `name` in `namespace`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Gauge(MetricName::new(namespace, name))
    }

    /// Sets the current value.
    #[inline]
    pub fn set(&self, value: i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        with_cells(|c, t| {
            c.gauges
                .insert((t, self.0.id), (self.0.clone(), value, now));
        });
    }
}

type Key = (u32, u64);

#[derive(Default)]
struct Cells {
    counters: HashMap<Key, (MetricName, i64), FxBuildHasher>,
    distributions: HashMap<Key, (MetricName, DistributionData), FxBuildHasher>,
    gauges: HashMap<Key, (MetricName, i64, i64), FxBuildHasher>,
}

const NO_TRANSFORM: u32 = u32::MAX;

thread_local! {
    static CURRENT: Cell<u32> = const { Cell::new(NO_TRANSFORM) };
    static CELLS: RefCell<Cells> = RefCell::new(Cells::default());
}

fn with_cells(f: impl FnOnce(&mut Cells, u32)) {
    let t = CURRENT.with(Cell::get);
    if t == NO_TRANSFORM {
        return;
    }
    CELLS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            f(&mut c, t);
        }
    });
}

/// Attributes metric updates on this thread to transform `index` (of the
/// processor running a bundle here).
#[inline]
pub(crate) fn set_current_transform(index: u32) {
    CURRENT.with(|c| c.set(index));
}

/// Starts a bundle on this thread: forgets stale cells.
pub(crate) fn begin_bundle() {
    CELLS.with(|c| *c.borrow_mut() = Cells::default());
}

/// Ends a bundle: moves this thread's cells into `out`, naming transforms by
/// their index in `transforms`.
pub(crate) fn end_bundle(transforms: &[Arc<str>], out: &mut Metrics) {
    CURRENT.with(|c| c.set(NO_TRANSFORM));
    let cells = CELLS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let key = |t: u32, n: &MetricName| MetricKey {
        transform: transforms
            .get(t as usize)
            .map_or_else(String::new, |s| s.to_string()),
        namespace: n.namespace.to_string(),
        name: n.name.to_string(),
    };
    for ((t, _), (n, v)) in cells.counters {
        out.inc_counter(key(t, &n), v);
    }
    for ((t, _), (n, d)) in cells.distributions {
        let k = key(t, &n);
        out.distributions
            .entry(k)
            .and_modify(|m| m.merge(&d))
            .or_insert(d);
    }
    for ((t, _), (n, v, at)) in cells.gauges {
        out.set_gauge(key(t, &n), v, at);
    }
}
