//! User metrics reported from DoFns and closures.

use oxbeam::metrics::{Counter, Distribution, Gauge};
use oxbeam::{DoFn, ParDo, ProcessContext};

use crate::common::pipeline;

#[derive(Clone)]
struct Measure {
    seen: Counter,
    sizes: Distribution,
    last: Gauge,
}

impl DoFn for Measure {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: &i64, ctx: &mut ProcessContext<'_, i64>) {
        ctx.output(*x);
        // Updates after an output still count for this transform.
        self.seen.inc(1);
        self.sizes.update(*x);
        self.last.set(7);
    }
}

#[test]
fn counters_distributions_and_gauges() {
    let p = pipeline();
    let evens = Counter::new("test", "evens");
    let e2 = evens.clone();
    p.create("Xs", 1..=100i64)
        .par_do(
            "Measure",
            ParDo::of(Measure {
                seen: Counter::new("test", "seen"),
                sizes: Distribution::new("test", "sizes"),
                last: Gauge::new("test", "last"),
            }),
        )
        .filter("Evens", move |x: &i64| {
            if x % 2 == 0 {
                e2.inc(1);
            }
            true
        });
    let result = p.run().unwrap();
    assert_eq!(result.counter("test", "seen"), 100);
    assert_eq!(result.counter("test", "evens"), 50);
    let d = result.distribution("test", "sizes").unwrap();
    assert_eq!((d.count, d.sum, d.min, d.max), (100, 5050, 1, 100));
    assert_eq!(result.gauge("test", "last"), Some(7));
    let seen_by: Vec<&str> = result
        .metrics
        .counters
        .keys()
        .filter(|k| k.name == "seen")
        .map(|k| k.transform.as_str())
        .collect();
    assert!(seen_by.iter().all(|t| *t == "Measure"), "{seen_by:?}");
    let evens_by: Vec<&str> = result
        .metrics
        .counters
        .keys()
        .filter(|k| k.name == "evens")
        .map(|k| k.transform.as_str())
        .collect();
    assert!(evens_by.iter().all(|t| *t == "Evens"), "{evens_by:?}");
}
