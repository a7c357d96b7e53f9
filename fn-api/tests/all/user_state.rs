//! User state and timers across the Fn API: a `GrpcExecutor` driving
//! `serve_harness` (in a thread of this process, over gRPC and over the
//! in-memory transport) whose executor counts
//! elements per key in bag state and sets a timer per key; the runner side
//! serves the state from a `UserState` and collects the timers.

use std::collections::HashMap;
use std::sync::Arc;

use oxbeam_fn_api::{
    Bundle, BundleProcessor, Error, Executor, FnServer, HarnessConfig, InMemoryHarness, Metrics,
    NoSideInputs, OutputSink, Result, UserState, UserStateKey, UserStateKind, serve_harness,
};
use oxbeam_model::coders::{Context, WindowCoder, decode_windowed, wire};
use oxbeam_model::fn_execution::ProcessBundleDescriptor;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::{PaneInfo, Timestamp};
use prost::Message;

use crate::testing::{SINK, SOURCE, descriptor, elements, values};

/// Per element (its value is its key): appends one byte to bag `count` of
/// the key and sets timer `flush` of the key at 100 + count. A fired timer
/// outputs `key:count@fire`.
const COUNT_AND_FLUSH: &str = "test:fn:count_and_flush:v1";

struct StatefulExecutor;

impl Executor for StatefulExecutor {
    fn name(&self) -> &str {
        "stateful-test"
    }

    fn create_processor(
        &self,
        _: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        Ok(Box::new(Counter))
    }
}

struct Counter;

fn bag(key: &[u8]) -> UserStateKey<'_> {
    UserStateKey {
        transform: "fn",
        state_id: "count",
        window: b"",
        key,
        kind: UserStateKind::Bag,
    }
}

impl BundleProcessor for Counter {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        for (_, mut input) in bundle.inputs.clone() {
            while !input.is_empty() {
                let e = decode_windowed(&mut input, WindowCoder::Global, Context::Nested)
                    .map_err(|e| Error::invalid("input", e))?;
                let mut key = Vec::new();
                wire::write_length_prefixed(&mut key, e.value);
                let mut count = Vec::new();
                bundle.state.get(&bag(&key), &mut count)?;
                bundle.state.append(&bag(&key), &[1])?;
                let mut timer = key.clone();
                wire::write_length_prefixed(&mut timer, b"");
                wire::write_i32_be(&mut timer, 1);
                wire::write_bool(&mut timer, false);
                let fire = Timestamp::from_millis(100 + count.len() as i64 + 1);
                wire::write_timestamp(&mut timer, fire);
                wire::write_timestamp(&mut timer, fire);
                wire::write_pane(&mut timer, &PaneInfo::NO_FIRING);
                bundle.sink.emit_timer("fn", "flush", &timer)?;
            }
        }
        for (transform, family, mut timers) in bundle.timers.clone() {
            assert_eq!((transform, family), ("fn", "flush"));
            while !timers.is_empty() {
                let start = timers;
                let k = wire::read_length_prefixed(&mut timers).unwrap();
                let key = start[..start.len() - timers.len()].to_vec();
                let tag = wire::read_str(&mut timers).unwrap();
                assert_eq!(tag, "");
                assert_eq!(wire::read_i32_be(&mut timers).unwrap(), 1);
                assert!(!wire::read_bool(&mut timers).unwrap());
                let fire = wire::read_timestamp(&mut timers).unwrap();
                let _hold = wire::read_timestamp(&mut timers).unwrap();
                let _pane = wire::read_pane(&mut timers).unwrap();
                let mut count = Vec::new();
                bundle.state.get(&bag(&key), &mut count)?;
                let out = format!(
                    "{}:{}@{}",
                    String::from_utf8_lossy(k),
                    count.len(),
                    fire.millis()
                );
                bundle.sink.emit(SINK, &elements(&[out]))?;
            }
        }
        Ok(())
    }
}

/// The `source -> fn -> sink` descriptor with `fn` a stateful ParDo.
fn stateful_descriptor() -> ProcessBundleDescriptor {
    let mut d = descriptor(COUNT_AND_FLUSH, b"", false);
    d.coders.insert(
        "timer".into(),
        pb::Coder {
            spec: Some(pb::FunctionSpec {
                urn: urns::standard_coders::TIMER.into(),
                payload: Default::default(),
            }),
            component_coder_ids: vec!["bytes".into(), "gw".into()],
        },
    );
    let pardo = pb::ParDoPayload {
        do_fn: Some(pb::FunctionSpec {
            urn: COUNT_AND_FLUSH.into(),
            payload: Default::default(),
        }),
        state_specs: [(
            "count".to_string(),
            pb::StateSpec {
                spec: Some(pb::state_spec::Spec::BagSpec(pb::BagStateSpec {
                    element_coder_id: "bytes".into(),
                })),
                protocol: None,
            },
        )]
        .into(),
        timer_family_specs: [(
            "flush".to_string(),
            pb::TimerFamilySpec {
                time_domain: pb::time_domain::Enum::EventTime as i32,
                timer_family_coder_id: "timer".into(),
            },
        )]
        .into(),
        ..Default::default()
    };
    let t = d.transforms.get_mut("fn").unwrap();
    t.spec = Some(pb::FunctionSpec {
        urn: urns::standard_p_transforms::primitives::PAR_DO.into(),
        payload: pardo.encode_to_vec().into(),
    });
    d
}

/// Bags by (state id, key).
#[derive(Default)]
struct Bags(HashMap<(String, Vec<u8>), Vec<u8>>);

impl UserState for Bags {
    fn get(&mut self, key: &UserStateKey<'_>, out: &mut Vec<u8>) -> Result<()> {
        assert_eq!((key.transform, key.kind), ("fn", UserStateKind::Bag));
        if let Some(v) = self.0.get(&(key.state_id.to_string(), key.key.to_vec())) {
            out.extend_from_slice(v);
        }
        Ok(())
    }
    fn append(&mut self, key: &UserStateKey<'_>, data: &[u8]) -> Result<()> {
        self.0
            .entry((key.state_id.to_string(), key.key.to_vec()))
            .or_default()
            .extend_from_slice(data);
        Ok(())
    }
    fn clear(&mut self, key: &UserStateKey<'_>) -> Result<()> {
        self.0.remove(&(key.state_id.to_string(), key.key.to_vec()));
        Ok(())
    }
}

/// Collects outputs and timers.
#[derive(Default)]
struct Collect {
    out: Vec<u8>,
    timers: Vec<(String, String, Vec<u8>)>,
}

impl OutputSink for Collect {
    fn emit(&mut self, sink: &str, element: &[u8]) -> Result<()> {
        assert_eq!(sink, SINK);
        self.out.extend_from_slice(element);
        Ok(())
    }
    fn emit_timer(&mut self, transform: &str, family: &str, timer: &[u8]) -> Result<()> {
        self.timers
            .push((transform.to_string(), family.to_string(), timer.to_vec()));
        Ok(())
    }
}

#[test]
fn user_state_and_timers_cross_the_fn_api_both_ways() {
    let server = FnServer::start().unwrap();
    let url = server.url().to_string();
    let harness = std::thread::spawn(move || {
        serve_harness(
            HarnessConfig {
                control_endpoint: url,
                id: "stateful".into(),
            },
            Arc::new(StatefulExecutor),
        )
    });
    let executor = server.executor("stateful");
    counts_and_flushes(&executor);
    drop(executor);
    drop(server);
    let _ = harness.join();
}

/// The same bundles over the in-memory transport: the harness is a thread
/// of this process whose channels are wired to the server's services.
#[test]
fn user_state_and_timers_cross_the_in_memory_transport() {
    let harness = InMemoryHarness::start(Arc::new(StatefulExecutor)).unwrap();
    assert!(harness.name().contains("in-memory"), "{}", harness.name());
    counts_and_flushes(&harness);
}

fn counts_and_flushes(executor: &dyn Executor) {
    let mut p = executor
        .create_processor(Arc::new(stateful_descriptor()))
        .unwrap();
    let mut state = Bags::default();
    let mut metrics = Metrics::default();

    // Elements: state is written, timers come back.
    let input = elements(&["a", "b", "a"]);
    let mut sink = Collect::default();
    p.process_bundle(
        &mut Bundle::new(
            vec![(SOURCE, &input)],
            &mut sink,
            &NoSideInputs,
            &mut metrics,
        )
        .with_state(&mut state),
    )
    .unwrap();
    assert!(sink.out.is_empty());
    assert_eq!(state.0[&("count".to_string(), b"\x01a".to_vec())], [1, 1]);
    assert_eq!(state.0[&("count".to_string(), b"\x01b".to_vec())], [1]);
    let timers: Vec<u8> = sink
        .timers
        .iter()
        .inspect(|(t, f, _)| assert_eq!((t.as_str(), f.as_str()), ("fn", "flush")))
        .flat_map(|(_, _, b)| b.clone())
        .collect();
    // Three timers: a at 101, b at 101, a at 102.
    let mut rest = &timers[..];
    let mut set = Vec::new();
    while !rest.is_empty() {
        let k = wire::read_length_prefixed(&mut rest).unwrap().to_vec();
        wire::read_str(&mut rest).unwrap();
        wire::read_i32_be(&mut rest).unwrap();
        wire::read_bool(&mut rest).unwrap();
        let fire = wire::read_timestamp(&mut rest).unwrap();
        wire::read_timestamp(&mut rest).unwrap();
        wire::read_pane(&mut rest).unwrap();
        set.push((String::from_utf8(k).unwrap(), fire.millis()));
    }
    assert_eq!(
        set,
        vec![
            ("a".to_string(), 101),
            ("b".to_string(), 101),
            ("a".to_string(), 102)
        ]
    );

    // Timers only: each reads the key's state and outputs.
    let mut sink = Collect::default();
    p.process_bundle(
        &mut Bundle::new(vec![], &mut sink, &NoSideInputs, &mut metrics)
            .with_state(&mut state)
            .with_timers(vec![("fn", "flush", &timers)]),
    )
    .unwrap();
    assert_eq!(values(&sink.out), ["a:2@101", "b:1@101", "a:2@102"]);
    assert!(sink.timers.is_empty());
}
