//! The streaming engine's sources: a TestStream's script and the generator.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oxbeam_model::coders::WindowedValueHeader;
use oxbeam_model::coders::wire::write_varint_u64;
use oxbeam_model::window::Timestamp;
use oxbeam_runner_core::{GenerateSpec, TestStreamEvent, TestStreamStep};

use super::to_watermark;
use crate::Error;
use crate::job::{BEFORE_TIME, END_OF_TIME, Watermark};

/// Most elements a generator emits per poll, so the coordinator keeps
/// routing and dispatching while it runs flat out.
const MAX_PER_POLL: u64 = 20_000;

/// Receives a TestStream's elements: `(output tag, encoded element)`.
pub(crate) type EmitTagged<'a> = dyn FnMut(&str, &[u8]) -> Result<(), Error> + 'a;

/// A TestStream's script, replayed one event at a time.
pub(crate) struct TestStreamScript {
    events: Vec<TestStreamEvent>,
    next: usize,
    /// Per output tag.
    watermarks: BTreeMap<String, Watermark>,
    finished: bool,
    buf: Vec<u8>,
}

impl TestStreamScript {
    pub fn new(step: &TestStreamStep) -> Self {
        TestStreamScript {
            events: step.events.clone(),
            next: 0,
            watermarks: step
                .outputs
                .keys()
                .map(|t| (t.clone(), BEFORE_TIME))
                .collect(),
            finished: false,
            buf: Vec::new(),
        }
    }

    /// The watermark of each output tag.
    pub fn watermarks(&self) -> Vec<(String, Watermark)> {
        self.watermarks
            .iter()
            .map(|(t, w)| (t.clone(), *w))
            .collect()
    }

    /// Drain: skip the remaining events; every watermark goes to +∞.
    pub fn stop(&mut self) {
        self.finished = true;
        for w in self.watermarks.values_mut() {
            *w = END_OF_TIME;
        }
    }

    /// Applies the next event, emitting its elements with `emit(tag,
    /// element)`. After the last event, moves every watermark to +∞.
    /// Returns how far processing time advances, or `None` once finished.
    ///
    /// # Errors
    /// What `emit` returns.
    pub fn apply_next(&mut self, emit: &mut EmitTagged<'_>) -> Result<Option<i64>, Error> {
        if self.finished {
            return Ok(None);
        }
        let Some(event) = self.events.get(self.next) else {
            self.stop();
            return Ok(Some(0));
        };
        self.next += 1;
        match event {
            TestStreamEvent::AddElements { tag, elements } => {
                for e in elements {
                    self.buf.clear();
                    WindowedValueHeader::global(Timestamp::from_millis(e.timestamp_ms))
                        .encode(&mut self.buf);
                    self.buf.extend_from_slice(&e.encoded);
                    emit(tag, &self.buf)?;
                }
                Ok(Some(0))
            }
            TestStreamEvent::AdvanceWatermark { tag, to_ms } => {
                let w = self.watermarks.entry(tag.clone()).or_insert(BEFORE_TIME);
                *w = (*w).max(to_watermark(*to_ms));
                Ok(Some(0))
            }
            TestStreamEvent::AdvanceProcessingTime { by_ms } => Ok(Some((*by_ms).max(0))),
        }
    }
}

/// The generator source (`oxbeam:transform:generate:v1`; formulas in
/// `GeneratePayload`'s docs).
pub(crate) struct Generator {
    spec: GenerateSpec,
    next: u64,
    /// When it started, and the event time of element 0.
    start: Option<(Instant, i64)>,
    stopped: bool,
    buf: Vec<u8>,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Generator {
    pub fn new(spec: &GenerateSpec) -> Self {
        Generator {
            spec: spec.clone(),
            next: 0,
            start: None,
            stopped: false,
            buf: Vec::new(),
        }
    }

    fn exhausted(&self) -> bool {
        self.stopped || self.spec.num_elements.is_some_and(|n| self.next >= n)
    }

    /// Drain: emit nothing more.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Event time of element `i` before skew and jitter.
    fn base(&self, origin: i64, i: u64) -> i64 {
        let offset = match self.spec.rate_per_second {
            0 => i128::from(i),
            r => i128::from(i) * 1000 / i128::from(r),
        };
        (i128::from(origin) + offset).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The lowest timestamp an element not yet emitted can have.
    pub fn watermark(&self) -> Watermark {
        if self.exhausted() {
            return END_OF_TIME;
        }
        match self.start {
            None => BEFORE_TIME,
            Some((_, origin)) => self
                .base(origin, self.next)
                .saturating_sub(self.spec.event_time_skew_ms)
                .saturating_sub(self.spec.max_out_of_orderness_ms),
        }
    }

    /// How long until the next element is due (`None` when none will be).
    pub fn next_due(&self) -> Option<Duration> {
        if self.exhausted() {
            return None;
        }
        match (self.start, self.spec.rate_per_second) {
            (None, _) | (_, 0) => Some(Duration::ZERO),
            (Some((started, _)), r) => {
                let at = Duration::from_micros(
                    (u128::from(self.next) * 1_000_000 / u128::from(r)).min(u128::from(u64::MAX))
                        as u64,
                );
                Some(at.saturating_sub(started.elapsed()))
            }
        }
    }

    /// Emits the elements due by now. Returns how many.
    ///
    /// # Errors
    /// What `emit` returns.
    pub fn emit_due(
        &mut self,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        if self.exhausted() {
            return Ok(0);
        }
        let (started, origin) =
            *self
                .start
                .get_or_insert_with(|| match self.spec.start_timestamp_ms {
                    Some(t) => (Instant::now(), t),
                    None => wall_clock_start(),
                });
        let mut due = match self.spec.rate_per_second {
            0 => self.next + MAX_PER_POLL,
            r => (started.elapsed().as_micros() * u128::from(r) / 1_000_000)
                .min(u128::from(u64::MAX)) as u64,
        };
        due = due.min(self.next + MAX_PER_POLL);
        if let Some(n) = self.spec.num_elements {
            due = due.min(n);
        }
        let s = &self.spec;
        let first = self.next;
        for i in first..due {
            let h = mix(s.seed ^ mix(i));
            let key = h % s.key_count.max(1);
            let jitter = match s.max_out_of_orderness_ms {
                0 => 0,
                m => (mix(h) % (m as u64 + 1)) as i64,
            };
            let ts = self
                .base(origin, i)
                .saturating_sub(s.event_time_skew_ms)
                .saturating_sub(jitter);
            self.buf.clear();
            WindowedValueHeader::global(Timestamp::from_millis(ts)).encode(&mut self.buf);
            write_varint_u64(&mut self.buf, key);
            write_varint_u64(&mut self.buf, i);
            emit(&self.buf)?;
        }
        self.next = due.max(first);
        Ok(self.next - first)
    }
}

/// The start of a generator on the wall clock: the current millisecond and
/// the instant it began, so that element `i` is due exactly at its event
/// time `origin + i·1000/rate` (event time is the wall clock of arrival).
fn wall_clock_start() -> (Instant, i64) {
    let now = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let into_ms = Duration::from_micros(u64::from(wall.subsec_micros() % 1000));
    (
        now.checked_sub(into_ms).unwrap_or(now),
        wall.as_millis() as i64,
    )
}

#[cfg(test)]
mod tests {
    use oxbeam_model::coders::WindowedValueHeader;
    use oxbeam_model::coders::wire::read_varint_u64;
    use oxbeam_model::coders::{WindowCoder, Windows};
    use oxbeam_runner_core::TimestampedElement;

    use super::*;

    fn spec(n: Option<u64>) -> GenerateSpec {
        GenerateSpec {
            rate_per_second: 0,
            num_elements: n,
            key_count: 3,
            event_time_skew_ms: 3,
            max_out_of_orderness_ms: 4,
            seed: 1,
            start_timestamp_ms: Some(1_000),
        }
    }

    /// `(key, seq, timestamp)` of each element emitted.
    fn emit(g: &mut Generator) -> Vec<(u64, u64, i64)> {
        let mut out = Vec::new();
        g.emit_due(&mut |e| {
            let mut input = e;
            let h = WindowedValueHeader::decode(&mut input, WindowCoder::Global).unwrap();
            assert_eq!(h.windows, Windows::GLOBAL);
            let key = read_varint_u64(&mut input).unwrap();
            let seq = read_varint_u64(&mut input).unwrap();
            out.push((key, seq, h.timestamp.millis()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn generator_timestamps_and_watermark() {
        let mut g = Generator::new(&spec(Some(30_000)));
        assert_eq!(g.watermark(), BEFORE_TIME);
        let first = emit(&mut g);
        assert_eq!(first.len() as u64, MAX_PER_POLL);
        for &(key, seq, ts) in &first {
            assert!(key < 3);
            let base = 1_000 + seq as i64;
            assert!((base - 7..=base - 3).contains(&ts), "{seq} at {ts}");
        }
        // The next element's earliest possible timestamp.
        assert_eq!(g.watermark(), 1_000 + MAX_PER_POLL as i64 - 3 - 4);
        let rest = emit(&mut g);
        assert_eq!(rest.len(), 10_000);
        assert_eq!(rest.last().map(|e| e.1), Some(29_999));
        assert_eq!(g.watermark(), END_OF_TIME);
        assert!(emit(&mut g).is_empty());
    }

    #[test]
    fn a_stopped_generator_is_done() {
        let mut g = Generator::new(&spec(None));
        assert_eq!(emit(&mut g).len() as u64, MAX_PER_POLL);
        assert!(g.watermark() < END_OF_TIME);
        g.stop();
        assert_eq!(g.watermark(), END_OF_TIME);
        assert!(emit(&mut g).is_empty());
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn test_stream_script_applies_events_in_order() {
        let step = TestStreamStep {
            transform: "t".into(),
            unique_name: "Events".into(),
            coder: oxbeam_runner_core::Coder::Varint,
            outputs: [("out".to_string(), "t.out".to_string())].into(),
            events: vec![
                TestStreamEvent::AddElements {
                    tag: "out".into(),
                    elements: vec![TimestampedElement {
                        encoded: vec![7],
                        timestamp_ms: 5,
                    }],
                },
                TestStreamEvent::AdvanceProcessingTime { by_ms: 30 },
                TestStreamEvent::AdvanceWatermark {
                    tag: "out".into(),
                    to_ms: 10,
                },
            ],
        };
        let mut s = TestStreamScript::new(&step);
        let mut emitted = Vec::new();
        let mut emit = |tag: &str, e: &[u8]| {
            emitted.push((tag.to_string(), e.to_vec()));
            Ok(())
        };
        assert_eq!(s.apply_next(&mut emit).unwrap(), Some(0));
        assert_eq!(s.apply_next(&mut emit).unwrap(), Some(30));
        assert_eq!(s.watermarks(), [("out".to_string(), BEFORE_TIME)]);
        assert_eq!(s.apply_next(&mut emit).unwrap(), Some(0));
        assert_eq!(s.watermarks(), [("out".to_string(), 10)]);
        // After the last event: +∞, then nothing.
        assert_eq!(s.apply_next(&mut emit).unwrap(), Some(0));
        assert_eq!(s.watermarks(), [("out".to_string(), END_OF_TIME)]);
        assert_eq!(s.apply_next(&mut emit).unwrap(), None);
        let mut want = Vec::new();
        WindowedValueHeader::global(Timestamp::from_millis(5)).encode(&mut want);
        want.push(7);
        assert_eq!(emitted, [("out".to_string(), want)]);
    }
}
