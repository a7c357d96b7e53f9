//! TestStreams whose events come from a TestStream service
//! (`TestStreamPayload.endpoint`, Beam's interactive API): before a job
//! runs, the job server reads every event from the service and puts them
//! inline into the payload, so the runner replays them like any other.
//!
//! The service speaks microseconds where inline events speak milliseconds:
//! Beam's interactive cache writes `Timestamp.micros` into the events it
//! serves and Beam's DirectRunner, the service's one reader, reads them as
//! microseconds. So the events are scaled as they are inlined, and a
//! pipeline gives the same timestamps here as there.

use std::time::Duration;

use oxbeam_model::interactive::EventsRequest;
use oxbeam_model::interactive::test_stream_service_client::TestStreamServiceClient;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_p_transforms::primitives::TEST_STREAM;
use prost::Message;

/// How long connecting to a TestStream service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading all of a service's events may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// `pipeline` with the events of every TestStream that names a service
/// read from it and inlined, or `None` when no TestStream names one.
///
/// # Errors
/// A message naming the transform and the endpoint when a payload does
/// not decode, or the service cannot be reached or fails.
pub fn inline_service_events(pipeline: &pb::Pipeline) -> Result<Option<pb::Pipeline>, String> {
    let Some(components) = &pipeline.components else {
        return Ok(None);
    };
    let mut fetched = Vec::new();
    for (id, t) in &components.transforms {
        let Some(spec) = t.spec.as_ref().filter(|s| s.urn == TEST_STREAM) else {
            continue;
        };
        let what = || format!("TestStream '{}' (id {id})", t.unique_name);
        let payload = pb::TestStreamPayload::decode(spec.payload.as_ref())
            .map_err(|e| format!("{}: malformed TestStreamPayload: {e}", what()))?;
        let Some(url) = payload
            .endpoint
            .as_ref()
            .map(|e| e.url.clone())
            .filter(|u| !u.is_empty())
        else {
            continue;
        };
        let outputs: Vec<String> = t.outputs.values().cloned().collect();
        let events = read_events(&url, outputs).map_err(|e| {
            format!(
                "{}: reading its events from the TestStream service at {url}: {e}",
                what()
            )
        })?;
        fetched.push((
            id.clone(),
            pb::TestStreamPayload {
                events: events.into_iter().map(micros_to_millis).collect(),
                endpoint: None,
                ..payload
            },
        ));
    }
    if fetched.is_empty() {
        return Ok(None);
    }
    let mut out = pipeline.clone();
    let transforms = &mut out
        .components
        .get_or_insert_with(Default::default)
        .transforms;
    for (id, payload) in fetched {
        if let Some(spec) = transforms.get_mut(&id).and_then(|t| t.spec.as_mut()) {
            spec.payload = payload.encode_to_vec().into();
        }
    }
    Ok(Some(out))
}

/// `pipeline` as the planner can check it before the events are read: its
/// TestStreams that name a service, with no events and no endpoint.
pub(crate) fn for_planning(pipeline: &pb::Pipeline) -> std::borrow::Cow<'_, pb::Pipeline> {
    let names_a_service = |t: &pb::PTransform| {
        t.spec.as_ref().is_some_and(|s| {
            s.urn == TEST_STREAM
                && pb::TestStreamPayload::decode(s.payload.as_ref())
                    .is_ok_and(|p| p.endpoint.is_some_and(|e| !e.url.is_empty()))
        })
    };
    let Some(components) = &pipeline.components else {
        return std::borrow::Cow::Borrowed(pipeline);
    };
    if !components.transforms.values().any(names_a_service) {
        return std::borrow::Cow::Borrowed(pipeline);
    }
    let mut out = pipeline.clone();
    for t in out
        .components
        .get_or_insert_with(Default::default)
        .transforms
        .values_mut()
    {
        if names_a_service(t)
            && let Some(spec) = t.spec.as_mut()
            && let Ok(mut p) = pb::TestStreamPayload::decode(spec.payload.as_ref())
        {
            p.endpoint = None;
            spec.payload = p.encode_to_vec().into();
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A served event (microseconds) as an inline one (milliseconds), rounded
/// down as Beam's `micros // 1000` rounds.
fn micros_to_millis(mut e: pb::test_stream_payload::Event) -> pb::test_stream_payload::Event {
    use pb::test_stream_payload::event::Event as E;
    let millis = |micros: i64| micros.div_euclid(1000);
    match &mut e.event {
        Some(E::WatermarkEvent(w)) => w.new_watermark = millis(w.new_watermark),
        Some(E::ProcessingTimeEvent(p)) => p.advance_duration = millis(p.advance_duration),
        Some(E::ElementEvent(a)) => {
            for el in &mut a.elements {
                el.timestamp = millis(el.timestamp);
            }
        }
        None => {}
    }
    e
}

/// Every event the service at `url` streams for `output_ids`.
fn read_events(
    url: &str,
    output_ids: Vec<String>,
) -> Result<Vec<pb::test_stream_payload::Event>, String> {
    let uri = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a client runtime: {e}"))?;
    runtime.block_on(async move {
        let endpoint = tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| format!("not an endpoint: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut client =
            TestStreamServiceClient::new(channel).max_decoding_message_size(usize::MAX);
        let read = async {
            let mut stream = client
                .events(EventsRequest { output_ids })
                .await
                .map_err(|s| format!("Events failed: {}", s.message()))?
                .into_inner();
            let mut events = Vec::new();
            while let Some(e) = stream.message().await.map_err(|s| {
                format!(
                    "Events failed after {} events: {}",
                    events.len(),
                    s.message()
                )
            })? {
                events.push(e);
            }
            Ok(events)
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| format!("no end of its events after {READ_TIMEOUT:?}"))?
    })
}
