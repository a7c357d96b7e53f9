//! [`TestStream`]: a scripted unbounded source for testing event-time
//! behavior (windows, triggers, late data) deterministically.
//!
//! The script is a list of events: add elements (with event timestamps),
//! advance the watermark, advance processing time. The pipeline proto gets
//! Beam's standard `beam:transform:teststream:v1` with a `TestStreamPayload`,
//! so any Beam runner that supports TestStream runs it. Oxbeam's local runner
//! applies one event at a time and lets the pipeline settle before the
//! next; processing time is a synthetic clock moved only by the script.
//!
//! ```
//! use std::time::Duration;
//! use oxbeam::test_stream::{TestStream, TimestampedValue};
//! use oxbeam::{Pipeline, Timestamp, WindowFn};
//! let p = Pipeline::default();
//! let words = p.apply(
//!     "Words",
//!     TestStream::<String>::new()
//!         .add_elements(vec![TimestampedValue::new("a".to_string(), Timestamp::from_millis(1))])
//!         .advance_watermark_to(Timestamp::from_millis(10))
//!         .advance_processing_time(Duration::from_secs(5))
//!         .add_elements(vec![TimestampedValue::new("late".to_string(), Timestamp::from_millis(2))])
//!         .advance_watermark_to_infinity(),
//! );
//! let counts = words
//!     .window_into("Window", WindowFn::fixed(Duration::from_millis(10)))
//!     .count_per_element("Count");
//! # let _ = counts;
//! // p.run()? fires [0,10) with "a" when the watermark passes 10; "late" is dropped.
//! ```

use std::marker::PhantomData;
use std::time::Duration;

use oxbeam_model::coders::{Coder as ModelCoder, Context};
use oxbeam_model::pipeline as pb;
use oxbeam_model::pipeline::test_stream_payload::{Event, TimestampedElement, event};
use oxbeam_model::urns;
use oxbeam_model::window::Timestamp;
use prost::Message;

use crate::coder::{Coder, CoderSpec, Element};
use crate::pipeline::{MAIN_TAG, PBegin, PCollection, PTransform};
use crate::window::WindowFn;

/// A value with its event timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct TimestampedValue<T> {
    /// The element.
    pub value: T,
    /// Its event time.
    pub timestamp: Timestamp,
}

impl<T> TimestampedValue<T> {
    /// `value` at event time `timestamp`.
    pub fn new(value: T, timestamp: Timestamp) -> Self {
        TimestampedValue { value, timestamp }
    }
}

enum Step<T> {
    Elements(Vec<TimestampedValue<T>>),
    Watermark(Timestamp),
    ProcessingTime(Duration),
}

/// A scripted source of `T` elements (see the [module docs](self)). Apply it
/// to a pipeline with [`Pipeline::apply`](crate::Pipeline::apply); its
/// output is unbounded and in the global window.
pub struct TestStream<T> {
    steps: Vec<Step<T>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Element> Default for TestStream<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> TestStream<T> {
    /// An empty script.
    pub fn new() -> Self {
        TestStream {
            steps: Vec::new(),
            _t: PhantomData,
        }
    }

    /// Emits `elements` (in one bundle), each at its timestamp.
    pub fn add_elements(mut self, elements: Vec<TimestampedValue<T>>) -> Self {
        self.steps.push(Step::Elements(elements));
        self
    }

    /// Advances the watermark to `t`: windows ending at or before `t` are
    /// complete; later elements before `t` are late.
    pub fn advance_watermark_to(mut self, t: Timestamp) -> Self {
        self.steps.push(Step::Watermark(t));
        self
    }

    /// Advances the synthetic processing-time clock by `d` (millisecond
    /// precision), firing processing-time triggers that come due.
    pub fn advance_processing_time(mut self, d: Duration) -> Self {
        self.steps.push(Step::ProcessingTime(d));
        self
    }

    /// Advances the watermark to +∞: every window fires. (A runner does it
    /// after the last event anyway.)
    pub fn advance_watermark_to_infinity(self) -> Self {
        self.advance_watermark_to(Timestamp::MAX)
    }

    /// The `TestStreamPayload` of this script, its elements encoded with
    /// `coder_id` (the Beam coder of `T`) in the outer context, as Beam SDKs
    /// write them.
    fn payload(&self, coder_id: String) -> pb::TestStreamPayload {
        let coder = T::Coder::default();
        let model = model_coder(&coder.spec());
        let mut nested = Vec::new();
        let events = self
            .steps
            .iter()
            .map(|s| {
                let e = match s {
                    Step::Elements(items) => event::Event::ElementEvent(event::AddElements {
                        elements: items
                            .iter()
                            .map(|tv| {
                                nested.clear();
                                coder.encode(&tv.value, &mut nested);
                                TimestampedElement {
                                    encoded_element: outer(model.as_ref(), &nested).into(),
                                    timestamp: tv.timestamp.millis(),
                                }
                            })
                            .collect(),
                        tag: String::new(),
                    }),
                    Step::Watermark(t) => event::Event::WatermarkEvent(event::AdvanceWatermark {
                        new_watermark: t.millis(),
                        tag: String::new(),
                    }),
                    Step::ProcessingTime(d) => {
                        event::Event::ProcessingTimeEvent(event::AdvanceProcessingTime {
                            advance_duration: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                        })
                    }
                };
                Event { event: Some(e) }
            })
            .collect();
        pb::TestStreamPayload {
            coder_id,
            events,
            endpoint: None,
        }
    }
}

/// The model coder of `spec`, to re-encode values in the outer context;
/// `None` if the model cannot build it (the nested bytes are used as is).
fn model_coder(spec: &CoderSpec) -> Option<ModelCoder> {
    let components = spec
        .components
        .iter()
        .map(model_coder)
        .collect::<Option<Vec<_>>>()?;
    ModelCoder::from_parts(spec.urn, &spec.payload, components).ok()
}

/// `nested` (one value) in the outer context.
fn outer(coder: Option<&ModelCoder>, nested: &[u8]) -> Vec<u8> {
    let Some(coder) = coder else {
        return nested.to_vec();
    };
    let mut input = nested;
    let mut out = Vec::with_capacity(nested.len());
    match coder.decode(&mut input, Context::Nested) {
        Ok(v) if coder.encode(&v, &mut out, Context::Outer).is_ok() => out,
        _ => nested.to_vec(),
    }
}

impl<T: Element> PTransform<PBegin> for TestStream<T> {
    type Output = PCollection<T>;

    fn expand(self, input: &PBegin) -> PCollection<T> {
        let p = input.pipeline();
        let coder_id = p.coder_id(&T::Coder::default().spec());
        let spec = pb::FunctionSpec {
            urn: urns::standard_p_transforms::primitives::TEST_STREAM.to_string(),
            payload: self.payload(coder_id).encode_to_vec().into(),
        };
        let id = p.add_transform("TestStream", Some(spec), Vec::new(), false);
        let out = p.add_output::<T>(&id, MAIN_TAG, WindowFn::Global);
        p.set_unbounded(out.id());
        out
    }
}
