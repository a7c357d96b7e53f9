//! A test executor interpreting a few test transform URNs, and descriptors
//! for it: `source -> fn -> sink` over `windowed_value(bytes, global)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use oxbeam_fn_api::{Bundle, BundleProcessor, Error, Executor, MetricKey, Result, UserCodeError};
use oxbeam_model::coders::{
    Context, WindowCoder, WindowedValueHeader, decode_windowed, encode_windowed_bytes,
};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::Timestamp;
use prost::Message;

/// Uppercases each value.
pub const UPPER: &str = "test:fn:upper:v1";
/// Fails on the value equal to the payload.
pub const FAIL_ON: &str = "test:fn:fail_on:v1";
/// Panics on every element.
pub const PANIC: &str = "test:fn:panic:v1";
/// Kills its own process with SIGKILL mid-bundle.
pub const SIGKILL: &str = "test:fn:sigkill:v1";
/// Appends `:<n>` to each value, n = the number of elements of side input `side`.
pub const SIDE_COUNT: &str = "test:fn:side_count:v1";
/// Passes values through unchanged (for throughput measurements).
pub const IDENTITY: &str = "test:fn:identity:v1";

pub const SOURCE: &str = "source";
pub const SINK: &str = "sink";

/// A descriptor `source -> fn(urn, payload) -> sink`; with `side`, the fn
/// reads iterable side input `side` from PCollection `side_pc`.
pub fn descriptor(urn: &str, payload: &[u8], side: bool) -> ProcessBundleDescriptor {
    let coder = |urn: &str, comps: &[&str]| pb::Coder {
        spec: Some(pb::FunctionSpec {
            urn: urn.into(),
            payload: Default::default(),
        }),
        component_coder_ids: comps.iter().map(|s| s.to_string()).collect(),
    };
    let c = urns::standard_coders::BYTES;
    let mut d = ProcessBundleDescriptor {
        id: format!("test-{urn}"),
        ..Default::default()
    };
    d.coders.insert("bytes".into(), coder(c, &[]));
    d.coders.insert(
        "gw".into(),
        coder(urns::standard_coders::GLOBAL_WINDOW, &[]),
    );
    d.coders.insert(
        "wv".into(),
        coder(urns::standard_coders::WINDOWED_VALUE, &["bytes", "gw"]),
    );
    d.windowing_strategies.insert(
        "ws".into(),
        pb::WindowingStrategy {
            window_fn: Some(pb::FunctionSpec {
                urn: urns::global_windows_payload::PROPERTIES.into(),
                payload: Default::default(),
            }),
            window_coder_id: "gw".into(),
            ..Default::default()
        },
    );
    for pc in ["in", "out", "side_pc"] {
        d.pcollections.insert(
            pc.into(),
            pb::PCollection {
                unique_name: pc.into(),
                coder_id: "bytes".into(),
                windowing_strategy_id: "ws".into(),
                ..Default::default()
            },
        );
    }
    let port = |u: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]| pb::PTransform {
        unique_name: u.into(),
        spec: Some(pb::FunctionSpec {
            urn: u.into(),
            payload: RemoteGrpcPort {
                api_service_descriptor: None,
                coder_id: "wv".into(),
            }
            .encode_to_vec()
            .into(),
        }),
        inputs: inputs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        outputs: outputs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..Default::default()
    };
    let r = urns::fn_api_transforms::runner::DATA_SOURCE;
    d.transforms
        .insert(SOURCE.into(), port(r, &[], &[("out", "in")]));
    d.transforms.insert(
        SINK.into(),
        port(
            urns::fn_api_transforms::runner::DATA_SINK,
            &[("in", "out")],
            &[],
        ),
    );
    let mut inputs = BTreeMap::from([("in".to_string(), "in".to_string())]);
    let (fn_urn, fn_payload) = if side {
        inputs.insert("side".into(), "side_pc".into());
        let pardo = pb::ParDoPayload {
            do_fn: Some(pb::FunctionSpec {
                urn: urn.into(),
                payload: payload.to_vec().into(),
            }),
            side_inputs: [(
                "side".to_string(),
                pb::SideInput {
                    access_pattern: Some(pb::FunctionSpec {
                        urn: urns::standard_side_input_types::ITERABLE.into(),
                        payload: Default::default(),
                    }),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        (
            urns::standard_p_transforms::primitives::PAR_DO.to_string(),
            pardo.encode_to_vec(),
        )
    } else {
        (urn.to_string(), payload.to_vec())
    };
    d.transforms.insert(
        "fn".into(),
        pb::PTransform {
            unique_name: "Fn".into(),
            spec: Some(pb::FunctionSpec {
                urn: fn_urn,
                payload: fn_payload.into(),
            }),
            inputs,
            outputs: [("out".to_string(), "out".to_string())].into(),
            ..Default::default()
        },
    );
    d
}

/// Nested windowed values (global window) of these byte strings.
pub fn elements<S: AsRef<[u8]>>(values: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    let header = WindowedValueHeader::global(Timestamp::from_millis(0));
    for v in values {
        encode_windowed_bytes(&header, v.as_ref(), Context::Nested, &mut out);
    }
    out
}

/// The values of nested windowed values (global window).
pub fn values(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let r = decode_windowed(&mut bytes, WindowCoder::Global, Context::Nested).unwrap();
        out.push(String::from_utf8_lossy(r.value).into_owned());
    }
    out
}

/// The user counter [`UPPER`] increments once per element.
pub fn upper_counter() -> MetricKey {
    MetricKey {
        transform: "fn".into(),
        namespace: "test".into(),
        name: "uppercased".into(),
    }
}

#[derive(Default)]
pub struct TestExecutor;

impl Executor for TestExecutor {
    fn name(&self) -> &str {
        "test"
    }

    fn create_processor(
        &self,
        d: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        let t = d
            .transforms
            .get("fn")
            .ok_or_else(|| Error::invalid("descriptor", "no transform fn"))?;
        let spec = t.spec.clone().unwrap_or_default();
        let (urn, payload) = if spec.urn == urns::standard_p_transforms::primitives::PAR_DO {
            let p = pb::ParDoPayload::decode(spec.payload.as_ref())
                .map_err(|e| Error::invalid("pardo", e))?;
            let f = p.do_fn.unwrap_or_default();
            (f.urn, f.payload.to_vec())
        } else {
            (spec.urn, spec.payload.to_vec())
        };
        if ![UPPER, FAIL_ON, PANIC, SIGKILL, SIDE_COUNT, IDENTITY].contains(&urn.as_str()) {
            return Err(Error::Unsupported {
                transform: "fn".into(),
                message: format!("unknown URN {urn}"),
            });
        }
        Ok(Box::new(TestProcessor {
            urn,
            payload,
            out: Vec::new(),
        }))
    }
}

struct TestProcessor {
    urn: String,
    payload: Vec<u8>,
    out: Vec<u8>,
}

impl BundleProcessor for TestProcessor {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        let side_count = if self.urn == SIDE_COUNT {
            values(bundle.side_inputs.side_input("fn", "side")?).len()
        } else {
            0
        };
        for &(source, mut data) in &bundle.inputs {
            assert_eq!(source, SOURCE);
            while !data.is_empty() {
                let r = decode_windowed(&mut data, WindowCoder::Global, Context::Nested)
                    .map_err(|e| Error::invalid("input", e))?;
                self.out.clear();
                let value: Vec<u8> = match self.urn.as_str() {
                    UPPER => {
                        bundle.metrics.inc_counter(upper_counter(), 1);
                        r.value.to_ascii_uppercase()
                    }
                    IDENTITY => r.value.to_vec(),
                    FAIL_ON if r.value == self.payload.as_slice() => {
                        return Err(Error::UserCode(UserCodeError {
                            transform: "Fn".into(),
                            message: format!("cannot handle {}", String::from_utf8_lossy(r.value)),
                            element: None,
                        }));
                    }
                    FAIL_ON => r.value.to_vec(),
                    PANIC => panic!("test panic on {}", String::from_utf8_lossy(r.value)),
                    SIGKILL => {
                        let _ = std::process::Command::new("kill")
                            .args(["-9", &std::process::id().to_string()])
                            .status();
                        std::thread::sleep(std::time::Duration::from_secs(30));
                        unreachable!("killed");
                    }
                    SIDE_COUNT => {
                        format!("{}:{side_count}", String::from_utf8_lossy(r.value)).into_bytes()
                    }
                    _ => unreachable!(),
                };
                encode_windowed_bytes(&r.header, &value, Context::Nested, &mut self.out);
                bundle.sink.emit(SINK, &self.out)?;
            }
        }
        Ok(())
    }
}
