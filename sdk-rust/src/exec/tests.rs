//! The executor on hand-made descriptors and bundles, without a runner.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use oxbeam_fn_api::{Bundle, Error, Executor, Metrics, NoSideInputs, SideInputs};
use oxbeam_model::coders::{WindowCoder, WindowedValueHeader, Windows};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};
use prost::Message;

use crate::coder::{Coder, CoderSpec, Element};
use crate::combiners::Sum;
use crate::{DoFn, NativeExecutor, ParDo, Pipeline, ProcessContext, SideInput, WindowFn};

/// A descriptor with `transforms` of `p`, a data source feeding `input` and
/// a data sink reading each of `outputs`.
fn descriptor(
    p: &Pipeline,
    transforms: &[&str],
    input: &str,
    outputs: &[&str],
) -> ProcessBundleDescriptor {
    let proto = p.to_proto();
    let c = proto.components.unwrap();
    let mut d = ProcessBundleDescriptor {
        id: "stage-1".into(),
        pcollections: c.pcollections.clone(),
        windowing_strategies: c.windowing_strategies.clone(),
        coders: c.coders.clone(),
        environments: c.environments.clone(),
        ..Default::default()
    };
    for t in transforms {
        d.transforms.insert(t.to_string(), c.transforms[*t].clone());
    }
    let port = |pcoll: &str, d: &mut ProcessBundleDescriptor| {
        let pc = &c.pcollections[pcoll];
        let ws = &c.windowing_strategies[&pc.windowing_strategy_id];
        let id = format!("wv_{pcoll}");
        d.coders.insert(
            id.clone(),
            pb::Coder {
                spec: Some(pb::FunctionSpec {
                    urn: urns::standard_coders::WINDOWED_VALUE.into(),
                    payload: Default::default(),
                }),
                component_coder_ids: vec![pc.coder_id.clone(), ws.window_coder_id.clone()],
            },
        );
        RemoteGrpcPort {
            api_service_descriptor: None,
            coder_id: id,
        }
        .encode_to_vec()
    };
    let payload = port(input, &mut d);
    d.transforms.insert(
        "source".into(),
        pb::PTransform {
            unique_name: "source".into(),
            spec: Some(pb::FunctionSpec {
                urn: urns::fn_api_transforms::runner::DATA_SOURCE.into(),
                payload: payload.into(),
            }),
            outputs: BTreeMap::from([("out".to_string(), input.to_string())]),
            ..Default::default()
        },
    );
    for o in outputs {
        let payload = port(o, &mut d);
        d.transforms.insert(
            format!("sink:{o}"),
            pb::PTransform {
                unique_name: format!("sink:{o}"),
                spec: Some(pb::FunctionSpec {
                    urn: urns::fn_api_transforms::runner::DATA_SINK.into(),
                    payload: payload.into(),
                }),
                inputs: BTreeMap::from([("in".to_string(), o.to_string())]),
                ..Default::default()
            },
        );
    }
    d
}

fn encode<T: Element>(values: &[(T, i64, BoundedWindow)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (v, ts, w) in values {
        WindowedValueHeader {
            timestamp: Timestamp::from_millis(*ts),
            windows: Windows::one(*w),
            pane: PaneInfo::NO_FIRING,
        }
        .encode(&mut out);
        T::Coder::default().encode(v, &mut out);
    }
    out
}

fn decode<T: Element>(bytes: &[u8], wc: WindowCoder) -> Vec<(T, i64, BoundedWindow)> {
    let mut input = bytes;
    let mut out = Vec::new();
    while !input.is_empty() {
        let h = WindowedValueHeader::decode(&mut input, wc).unwrap();
        let v = T::Coder::default().decode(&mut input).unwrap();
        for w in h.windows.iter() {
            out.push((v.clone(), h.timestamp.millis(), *w));
        }
    }
    out
}

/// Runs one bundle; returns the bytes emitted per sink.
fn run(
    d: ProcessBundleDescriptor,
    p: &Pipeline,
    input: &[u8],
    sides: &dyn SideInputs,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let exec = NativeExecutor::new(p.registry());
    let mut proc = exec.create_processor(Arc::new(d))?;
    let mut emitted: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut sink = |t: &str, e: &[u8]| -> oxbeam_fn_api::Result<()> {
        emitted
            .entry(t.to_string())
            .or_default()
            .extend_from_slice(e);
        Ok(())
    };
    let mut metrics = Metrics::default();
    proc.process_bundle(&mut Bundle::new(
        vec![("source", input)],
        &mut sink,
        sides,
        &mut metrics,
    ))?;
    proc.teardown();
    Ok(emitted)
}

const G: BoundedWindow = BoundedWindow::Global;

#[test]
fn fused_maps_between_source_and_sinks() {
    let p = Pipeline::default();
    let xs = p.create("Xs", vec![0i64]);
    let a = xs.map("Inc", |x: &i64| x + 1);
    let b = a.map("Show", |x: &i64| format!("#{x}"));
    let c = a.filter("Odd", |x: &i64| x % 2 == 1);
    let d = descriptor(&p, &["Inc", "Show", "Odd"], xs.id(), &[b.id(), c.id()]);
    let out = run(d, &p, &encode(&[(1i64, 5, G), (2, 6, G)]), &NoSideInputs).unwrap();
    assert_eq!(
        decode::<String>(&out[&format!("sink:{}", b.id())], WindowCoder::Global),
        vec![("#2".to_string(), 5, G), ("#3".to_string(), 6, G)]
    );
    assert_eq!(
        decode::<i64>(&out[&format!("sink:{}", c.id())], WindowCoder::Global),
        vec![(3, 6, G)]
    );
}

fn iw(a: i64, b: i64) -> BoundedWindow {
    BoundedWindow::Interval {
        start: Timestamp::from_millis(a),
        end: Timestamp::from_millis(b),
    }
}

#[test]
fn window_into_assigns_sliding_windows() {
    let p = Pipeline::default();
    let xs = p.create("Xs", vec![0i64]);
    let w = xs.window_into(
        "Slide",
        WindowFn::sliding(Duration::from_millis(10), Duration::from_millis(5)),
    );
    let d = descriptor(&p, &["Slide"], xs.id(), &[w.id()]);
    let out = run(d, &p, &encode(&[(7i64, 7, G)]), &NoSideInputs).unwrap();
    let mut got = decode::<i64>(&out[&format!("sink:{}", w.id())], WindowCoder::Interval);
    got.sort_by_key(|x| x.2);
    assert_eq!(got, vec![(7, 7, iw(0, 10)), (7, 7, iw(5, 15))]);
}

#[test]
fn combine_phases() {
    let p = Pipeline::default();
    let kvs = p.create("Kvs", vec![("k".to_string(), 0i64)]);
    let _ = kvs.apply("Sum", Sum::per_key());
    let proto = p.to_proto();
    let c = proto.components.unwrap();
    let combine = &c.transforms["Sum/CombinePerKey"];
    let payload = combine.spec.as_ref().unwrap().payload.clone();
    // Synthesize the lifted phases the planner would, reusing the payload.
    let phase = |urn: &str, input: &str, output: &str| pb::PTransform {
        unique_name: format!("Sum/{urn}"),
        spec: Some(pb::FunctionSpec {
            urn: urn.into(),
            payload: payload.clone(),
        }),
        inputs: BTreeMap::from([("in".to_string(), input.to_string())]),
        outputs: BTreeMap::from([("out".to_string(), output.to_string())]),
        environment_id: crate::NATIVE_ENVIRONMENT_ID.into(),
        ..Default::default()
    };
    let cc = urns::standard_p_transforms::combine_components::COMBINE_PER_KEY_PRECOMBINE;
    // A PCollection of the precombine's output type, (String, i64), to sink.
    let pre = kvs.map("SameType", |kv: &(String, i64)| kv.clone());
    let mut d = descriptor(&p, &[], kvs.id(), &[pre.id()]);
    d.transforms
        .insert("pre".into(), phase(cc, kvs.id(), pre.id()));
    // Runs of one key fold with one lookup each; a key seen again after
    // another joins its earlier accumulator.
    let input = encode(&[
        (("a".to_string(), 1i64), 1, G),
        (("a".to_string(), 4), 1, G),
        (("b".to_string(), 10), 2, G),
        (("b".to_string(), 5), 2, G),
        (("a".to_string(), 2), 3, G),
    ]);
    let out = run(d, &p, &input, &NoSideInputs).unwrap();
    let mut got = decode::<(String, i64)>(&out[&format!("sink:{}", pre.id())], WindowCoder::Global);
    got.sort();
    let max = G.max_timestamp().millis();
    assert_eq!(
        got,
        vec![
            (("a".to_string(), 7), max, G),
            (("b".to_string(), 15), max, G)
        ]
    );

    // The registry entry also builds the post-shuffle phases.
    let entry = match p.registry().get_fn("Sum/CombinePerKey").as_deref() {
        Some(crate::registry::NativeFn::Combine(e)) => e.clone(),
        _ => panic!("combine entry missing"),
    };
    let cc = urns::standard_p_transforms::combine_components::COMBINE_PER_KEY_MERGE_ACCUMULATORS;
    let (i, o) = entry.types(cc).unwrap();
    assert_eq!(i.type_name(), std::any::type_name::<(String, Vec<i64>)>());
    assert_eq!(o.type_name(), std::any::type_name::<(String, i64)>());
    assert!(entry.types("beam:transform:unknown:v1").is_none());
}

#[derive(Clone)]
struct AddSide(SideInput<i64>);

impl DoFn for AddSide {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: &i64, ctx: &mut ProcessContext<'_, i64>) {
        let s = ctx.side_input(&self.0);
        ctx.output(x + *s);
    }
}

struct OneSide(Vec<u8>);

impl SideInputs for OneSide {
    fn side_input(&self, _: &str, _: &str) -> oxbeam_fn_api::Result<&[u8]> {
        Ok(&self.0)
    }
}

#[test]
fn side_inputs_and_user_code_errors() {
    let p = Pipeline::default();
    let xs = p.create("Xs", vec![0i64]);
    let side = p.create("Side", vec![0i64]).as_singleton();
    let ys = xs.par_do(
        "AddSide",
        ParDo::of(AddSide(side.clone())).with_side_input(&side),
    );
    let d = descriptor(&p, &["AddSide"], xs.id(), &[ys.id()]);
    let out = run(
        d.clone(),
        &p,
        &encode(&[(1i64, 0, G)]),
        &OneSide(encode(&[(100i64, 0, G)])),
    )
    .unwrap();
    assert_eq!(
        decode::<i64>(&out[&format!("sink:{}", ys.id())], WindowCoder::Global),
        vec![(101, 0, G)]
    );

    // Two elements for a singleton: the DoFn fails, naming itself and the element.
    let err = run(
        d,
        &p,
        &encode(&[(1i64, 0, G)]),
        &OneSide(encode(&[(1i64, 0, G), (2, 0, G)])),
    )
    .unwrap_err();
    match err {
        Error::UserCode(u) => {
            assert_eq!(u.transform, "AddSide");
            assert!(u.message.contains("2 elements"), "{}", u.message);
            assert_eq!(u.element.as_deref(), Some("1"));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn bad_descriptors_are_errors_not_panics() {
    let p = Pipeline::default();
    let xs = p.create("Xs", vec![0i64]);
    let ys = xs.map("Inc", |x: &i64| x + 1);
    let mut d = descriptor(&p, &["Inc"], xs.id(), &[ys.id()]);
    // Bad bytes in a bundle.
    let err = run(d.clone(), &p, &[1, 2, 3], &NoSideInputs).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    // A function this binary never registered.
    let other = Pipeline::default();
    let err = run(d.clone(), &other, &[], &NoSideInputs).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    // An unknown URN.
    d.transforms
        .get_mut("Inc")
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .urn = "beam:transform:mystery:v1".into();
    let err = run(d, &p, &[], &NoSideInputs).unwrap_err();
    assert!(err.to_string().contains("mystery"), "{err}");
    let _ = CoderSpec::new(urns::standard_coders::BYTES, vec![]);
}

/// Consecutive Maps that keep the element type map one batch in place and
/// hand it on: values change, metadata (timestamps) stays with its
/// value, across batch boundaries, through a Filter and a type change; a
/// panic names the Map it happened in and its element.
#[test]
fn same_type_maps_keep_metadata_and_report_panics() {
    let p = Pipeline::default();
    let xs = p.create("Xs", vec![0i64]);
    let a = xs.map("Double", |x: i64| x * 2);
    let b = a.map("Inc", |x: &i64| x + 1);
    let c = b.filter("NotTens", |x: &i64| x % 10 != 1);
    let d = c.map("Show", |x: i64| format!("#{x}"));
    let e = d.map("Shout", |mut s: String| {
        assert!(s != "#7", "no 7");
        s.push('!');
        s
    });
    let f = e.map("Check", |s: &String| {
        assert!(s != "#205!", "no 205");
        s.clone()
    });
    let desc = descriptor(
        &p,
        &["Double", "Inc", "NotTens", "Show", "Shout", "Check"],
        xs.id(),
        &[f.id()],
    );
    let n = 250i64;
    let input: Vec<(i64, i64, BoundedWindow)> = (0..n)
        .filter(|i| ![3, 102].contains(i))
        .map(|i| (i, 1000 + i, G))
        .collect();
    let out = run(desc.clone(), &p, &encode(&input), &NoSideInputs).unwrap();
    let expected: Vec<(String, i64, BoundedWindow)> = (0..n)
        .filter(|i| ![3, 102].contains(i) && (2 * i + 1) % 10 != 1)
        .map(|i| (format!("#{}!", 2 * i + 1), 1000 + i, G))
        .collect();
    assert_eq!(
        decode::<String>(&out[&format!("sink:{}", f.id())], WindowCoder::Global),
        expected
    );

    let fails = |x: i64| {
        let input = encode(&[(1i64, 0, G), (x, 0, G)]);
        match run(desc.clone(), &p, &input, &NoSideInputs) {
            Err(Error::UserCode(u)) => (u.transform, u.message, u.element),
            other => panic!("unexpected {other:?}"),
        }
    };
    let (transform, message, element) = fails(3);
    assert_eq!((transform.as_str(), message.as_str()), ("Shout", "no 7"));
    assert_eq!(element.as_deref(), Some(super::MOVED_ELEMENT));
    let (transform, message, element) = fails(102);
    assert_eq!((transform.as_str(), message.as_str()), ("Check", "no 205"));
    assert_eq!(element.as_deref(), Some("\"#205!\""));
}
