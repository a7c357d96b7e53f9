//! [`Generate`]: a synthetic source of keyed sequence numbers with event
//! timestamps, unbounded or of a fixed size, for streaming pipelines,
//! benchmarks and tests.

use std::time::Duration;

use oxbeam_model::oxbeam::GeneratePayload;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::Timestamp;
use prost::Message;

use crate::pipeline::{MAIN_TAG, PBegin, PCollection, PTransform};
use crate::window::WindowFn;

/// A source of `(key, seq)` pairs: element `seq` (from 0) has a seeded
/// pseudo-random key below [`keys`](Self::keys), and event timestamp
/// `start + seq / rate - skew - jitter`, jitter being a seeded random lag
/// up to [`max_out_of_orderness`](Self::max_out_of_orderness). Elements come
/// at `rate` per second of processing time; the source's watermark trails
/// the next element by skew plus out-of-orderness.
///
/// Runs as the runner primitive `oxbeam:transform:generate:v1` (payload
/// `GeneratePayload`), on runners with a streaming engine.
///
/// ```
/// use std::time::Duration;
/// use oxbeam::io::Generate;
/// let p = oxbeam::Pipeline::default();
/// let events = p.apply(
///     "Events",
///     Generate::unbounded()
///         .rate_per_second(10_000)
///         .keys(100)
///         .max_out_of_orderness(Duration::from_millis(50)),
/// );
/// # let _ = events;
/// ```
#[derive(Debug, Clone)]
pub struct Generate {
    payload: GeneratePayload,
}

impl Generate {
    /// An endless source (drain or cancel the job to end it); 1000
    /// elements per second over 1 key by default.
    pub fn unbounded() -> Self {
        Generate {
            payload: GeneratePayload {
                rate_per_second: 1000,
                num_elements: 0,
                key_count: 1,
                ..GeneratePayload::default()
            },
        }
    }

    /// Exactly `n` elements (a bounded source), as fast as possible unless
    /// a rate is set.
    pub fn elements(n: u64) -> Self {
        let mut g = Self::unbounded();
        g.payload.num_elements = n.max(1);
        g.payload.rate_per_second = 0;
        g
    }

    /// Elements per second of processing time; 0: as fast as possible
    /// (event timestamps 1 ms apart).
    pub fn rate_per_second(mut self, rate: u64) -> Self {
        self.payload.rate_per_second = rate;
        self
    }

    /// Number of distinct keys (at least 1).
    pub fn keys(mut self, n: u64) -> Self {
        self.payload.key_count = n.max(1);
        self
    }

    /// How far event time lags behind the generator's clock.
    pub fn event_time_skew(mut self, skew: Duration) -> Self {
        self.payload.event_time_skew_millis = millis(skew);
        self
    }

    /// The largest extra random lag of one element (how out of order they
    /// come; the watermark stays this far behind).
    pub fn max_out_of_orderness(mut self, d: Duration) -> Self {
        self.payload.max_out_of_orderness_millis = millis(d);
        self
    }

    /// Seed of keys and jitter: the same seed gives the same elements.
    pub fn seed(mut self, seed: u64) -> Self {
        self.payload.seed = seed;
        self
    }

    /// Event time of element 0 (default: the wall clock when the source
    /// starts). Set it for reproducible timestamps.
    pub fn starting_at(mut self, t: Timestamp) -> Self {
        self.payload.start_timestamp_millis = Some(t.millis());
        self
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PTransform<PBegin> for Generate {
    type Output = PCollection<(u64, u64)>;

    fn expand(self, input: &PBegin) -> PCollection<(u64, u64)> {
        let p = input.pipeline();
        let spec = pb::FunctionSpec {
            urn: urns::oxbeam_transforms::GENERATE.to_string(),
            payload: self.payload.encode_to_vec().into(),
        };
        let id = p.add_transform("Generate", Some(spec), Vec::new(), false);
        let out = p.add_output::<(u64, u64)>(&id, MAIN_TAG, WindowFn::Global);
        if self.payload.num_elements == 0 {
            p.set_unbounded(out.id());
        }
        out
    }
}
