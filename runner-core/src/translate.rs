//! The only module that touches protobuf types: Pipeline proto → [`Graph`],
//! and a planned stage → Beam `ProcessBundleDescriptor`.

use std::collections::{BTreeMap, BTreeSet};

use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::{self, standard_coders};
use prost::Message;

use crate::coder::CoderSpec;
use crate::error::{Error, Result};
use crate::graph::{Environment, Graph, Kind, PCollection, TestStreamSpec, Transform};
use crate::plan::{GenerateSpec, TestStreamEvent, TimestampedElement};
use crate::trigger::Trigger;
use crate::windowing::{
    AccumulationMode, ClosingBehavior, OnTimeBehavior, OutputTime, PaneRules, WindowCoderKind,
    WindowFn, WindowingStrategy,
};

use urns::standard_p_transforms::{combine_components as cc, composites, primitives as prim};

/// Decodes a serialized `Pipeline` proto.
///
/// # Errors
/// [`Error::Plan`] if the bytes are not a Pipeline.
pub fn decode_pipeline(bytes: &[u8]) -> Result<pb::Pipeline> {
    pb::Pipeline::decode(bytes)
        .map_err(|e| Error::plan("pipeline proto", format!("does not decode: {e}")))
}

/// Builds the graph of leaf transforms reachable from the pipeline's roots.
/// `reshuffle_in_runner`: Beam's Reshuffle composites become runner-side
/// identities ([`crate::PlanOptions::reshuffle_in_runner`]); otherwise
/// their expansions run.
pub(crate) fn to_graph(p: &pb::Pipeline, reshuffle_in_runner: bool) -> Result<Graph> {
    let empty = pb::Components::default();
    let comps = p.components.as_ref().unwrap_or(&empty);
    let mut g = Graph {
        requirements: p.requirements.clone(),
        ..Graph::default()
    };

    for (id, c) in &comps.coders {
        let spec = c.spec.clone().unwrap_or_default();
        g.coders.insert(
            id.clone(),
            CoderSpec {
                urn: spec.urn,
                payload: spec.payload.to_vec(),
                components: c.component_coder_ids.clone(),
            },
        );
    }
    for (id, pc) in &comps.pcollections {
        g.pcollections.insert(
            id.clone(),
            PCollection {
                unique_name: pc.unique_name.clone(),
                coder_id: pc.coder_id.clone(),
                windowing_strategy_id: pc.windowing_strategy_id.clone(),
                is_bounded: pc.is_bounded,
            },
        );
    }
    for (id, ws) in &comps.windowing_strategies {
        let mut strategy = windowing_strategy(id, ws, &g.coders)?;
        if comps
            .environments
            .get(&ws.environment_id)
            .is_some_and(is_python_sdk)
        {
            strategy.pane_rules = PaneRules::Python;
        }
        g.windowing_strategies.insert(id.clone(), strategy);
        g.raw_windowing_strategies
            .insert(id.clone(), ws.encode_to_vec());
    }
    for (id, env) in &comps.environments {
        g.environments.insert(
            id.clone(),
            Environment {
                urn: env.urn.clone(),
                raw: env.encode_to_vec(),
            },
        );
    }

    // The runner reads every element's bytes (shuffle, side inputs, data
    // ports), so coders it does not know travel length-prefixed, in the
    // runner and in the descriptors sent to harnesses alike.
    let pcollection_ids: Vec<String> = g.pcollections.keys().cloned().collect();
    for id in pcollection_ids {
        let coder_id = g.pcollections[&id].coder_id.clone();
        let wrapped = g.length_prefix_unknown(&coder_id);
        if let Some(pc) = g.pcollections.get_mut(&id) {
            pc.coder_id = wrapped;
        }
    }

    let mut visiting = BTreeSet::new();
    for root in &p.root_transform_ids {
        for t in expand(root, comps, &mut visiting, reshuffle_in_runner)? {
            if g.transforms.contains_key(&t.id) {
                return Err(Error::plan(
                    t.describe(),
                    "is reachable twice from the pipeline roots",
                ));
            }
            g.order.push(t.id.clone());
            g.transforms.insert(t.id.clone(), t);
        }
    }
    fit_test_stream_outputs(&mut g);
    expand_splittable_dofns(&mut g)?;
    transcode_flatten_inputs(&mut g);
    Ok(g)
}

/// A TestStream's elements are encoded with its payload's coder, which Beam
/// Python lets differ from its output's coder: `FastPrimitivesCoder` events
/// into a `KV` PCollection, or `StrUtf8Coder` events into a PCollection of
/// pickled objects. Events of Beam Python's default coder are re-encoded
/// into the output's coder when the runner can write it (keeping a keyed
/// output keyed for the stateful DoFns downstream); otherwise the output
/// takes the payload's coder, so consumers decode the events as written.
fn fit_test_stream_outputs(g: &mut Graph) {
    let ids: Vec<String> = g
        .transforms
        .iter()
        .filter(|(_, t)| matches!(t.kind, Kind::TestStream(_)))
        .map(|(id, _)| id.clone())
        .collect();
    for id in ids {
        let Kind::TestStream(spec) = &g.transforms[&id].kind else {
            continue;
        };
        if !g.coders.contains_key(&spec.coder_id) {
            continue; // reported by validation
        }
        let outputs: Vec<String> = g.transforms[&id].outputs.values().cloned().collect();
        match recode_test_stream(g, spec, &outputs) {
            Some((coder_id, recoded)) => {
                if let Some(Transform {
                    kind: Kind::TestStream(spec),
                    ..
                }) = g.transforms.get_mut(&id)
                {
                    spec.coder_id = coder_id;
                    for (event, bytes) in spec
                        .events
                        .iter_mut()
                        .filter_map(|e| match e {
                            TestStreamEvent::AddElements { elements, .. } => Some(elements),
                            _ => None,
                        })
                        .flatten()
                        .zip(recoded)
                    {
                        event.encoded = bytes;
                    }
                }
            }
            None => {
                let wrapped = g.length_prefix_unknown(&spec.coder_id.clone());
                for pc_id in outputs {
                    if let Some(pc) = g.pcollections.get_mut(&pc_id) {
                        pc.coder_id = wrapped.clone();
                    }
                }
            }
        }
    }
}

/// The TestStream's elements (in event order) re-encoded from Beam Python's
/// `FastPrimitivesCoder` into its outputs' coder, with that coder's id; `None`
/// if the payload has another coder, the outputs differ in coder, or an
/// element does not fit.
fn recode_test_stream(
    g: &Graph,
    spec: &TestStreamSpec,
    outputs: &[String],
) -> Option<(String, Vec<Vec<u8>>)> {
    let payload_coder = crate::coder::build_coder(&spec.coder_id, &g.coders).ok()?;
    if !crate::fast_primitives::is_fast_primitives(&payload_coder) {
        return None;
    }
    let mut coder_ids = outputs
        .iter()
        .filter_map(|pc| g.pcollections.get(pc))
        .map(|pc| &pc.coder_id);
    let coder_id = coder_ids.next()?;
    if coder_ids.any(|c| c != coder_id) {
        return None;
    }
    let coder = crate::coder::build_coder(coder_id, &g.coders).ok()?;
    let mut recoded = Vec::new();
    for e in &spec.events {
        if let TestStreamEvent::AddElements { elements, .. } = e {
            for el in elements {
                recoded.push(crate::fast_primitives::recode_element(&el.encoded, &coder).ok()?);
            }
        }
    }
    Some((coder_id.clone(), recoded))
}

/// URN of the identity DoFn Beam's SDK harnesses run to re-encode a
/// PCollection with another coder (Beam Python's `IDENTITY_DOFN_URN`; it is
/// not in the standard protos).
pub(crate) const IDENTITY_DOFN_URN: &str = "beam:dofn:identity:0.1";

/// Beam's `fix_flatten_coders`: a Flatten input whose coder differs from
/// the output's (Beam Python's CoGroupByKey does this) is re-encoded by an
/// identity transform in a Beam SDK harness environment, so the runner can
/// union the bytes. Without such an environment validation reports the
/// mismatch.
fn transcode_flatten_inputs(g: &mut Graph) {
    use urns::standard_environments::environments as env;
    let harness_env = |g: &Graph, id: &str| {
        g.environments
            .get(id)
            .is_some_and(|e| matches!(e.urn.as_str(), env::PROCESS | env::EXTERNAL | env::DOCKER))
    };
    let producers: BTreeMap<String, String> = g
        .producers()
        .into_iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let flattens: Vec<String> = g
        .order
        .iter()
        .filter(|id| {
            g.transforms
                .get(*id)
                .is_some_and(|t| t.kind == Kind::Flatten)
        })
        .cloned()
        .collect();
    for id in flattens {
        let t = g.transforms[&id].clone();
        let Some(out) = t.outputs.values().next() else {
            continue;
        };
        let Some(out_coder) = g.pcollections.get(out).map(|p| p.coder_id.clone()) else {
            continue;
        };
        let same = |g: &Graph, c: &str| {
            c == out_coder
                || crate::coder::build_coder(c, &g.coders).ok()
                    == crate::coder::build_coder(&out_coder, &g.coders).ok()
        };
        // The environment of the transcoders: the first Beam harness
        // environment among the Flatten's input producers, else the only
        // one of the pipeline.
        let from_producers = t.inputs.values().find_map(|p| {
            let prod = g.transforms.get(producers.get(p)?)?;
            harness_env(g, &prod.environment_id).then(|| prod.environment_id.clone())
        });
        let candidates: Vec<&String> = g
            .environments
            .keys()
            .filter(|e| harness_env(g, e))
            .collect();
        let Some(environment) = from_producers.or_else(|| match candidates.as_slice() {
            [only] => Some((*only).clone()),
            _ => None,
        }) else {
            continue;
        };
        for (local, input) in &t.inputs {
            let Some(pc) = g.pcollections.get(input).cloned() else {
                continue;
            };
            if same(g, &pc.coder_id) {
                continue;
            }
            let transcoded = g.fresh_id(&format!("{input}/transcoded"));
            g.pcollections.insert(
                transcoded.clone(),
                PCollection {
                    unique_name: format!("{}/transcoded", pc.unique_name),
                    coder_id: out_coder.clone(),
                    ..pc
                },
            );
            let tid = g.fresh_id(&format!("{id}/Transcode/{local}"));
            g.transforms.insert(
                tid.clone(),
                Transform {
                    id: tid.clone(),
                    unique_name: format!("{}/Transcode/{local}", t.unique_name),
                    kind: Kind::Extension,
                    urn: IDENTITY_DOFN_URN.to_string(),
                    payload: vec![],
                    inputs: BTreeMap::from([("in".to_string(), input.clone())]),
                    outputs: BTreeMap::from([("out".to_string(), transcoded.clone())]),
                    environment_id: environment.clone(),
                },
            );
            let at = g.order.iter().position(|o| *o == id).unwrap_or(0);
            g.order.insert(at, tid);
            if let Some(f) = g.transforms.get_mut(&id) {
                f.inputs.insert(local.clone(), transcoded);
            }
        }
    }
}

/// Replaces each splittable ParDo by Beam's three SDF components (as Beam's
/// `expand_sdf` does): pair each element with its initial restriction,
/// split and size the restrictions, then process the sized element and
/// restriction pairs. The harness runs them as ordinary DoFns; the process
/// component starts a stage (fusion), so the runner can split a running
/// bundle of it (dynamic work rebalancing), between restrictions and, where
/// the harness supports it, inside one.
fn expand_splittable_dofns(g: &mut Graph) -> Result<()> {
    use urns::standard_p_transforms::splittable_par_do_components as sdf;
    let splittable: Vec<String> = g
        .order
        .iter()
        .filter(|id| {
            matches!(
                g.transforms.get(*id).map(|t| &t.kind),
                Some(Kind::ParDo {
                    splittable: true,
                    ..
                })
            )
        })
        .cloned()
        .collect();
    for id in splittable {
        let t = g.transforms[&id].clone();
        let Kind::ParDo { side_inputs, .. } = &t.kind else {
            continue;
        };
        let payload = pb::ParDoPayload::decode(t.payload.as_slice())
            .map_err(|e| Error::plan(t.describe(), format!("malformed ParDoPayload: {e}")))?;
        let mains: Vec<(&String, &String)> = t
            .inputs
            .iter()
            .filter(|(local, _)| !side_inputs.contains(*local))
            .collect();
        let [(main_tag, main_pc)] = mains.as_slice() else {
            return Err(Error::plan(
                t.describe(),
                format!(
                    "a splittable DoFn must have exactly one main input, not {}",
                    mains.len()
                ),
            ));
        };
        let (main_tag, main_pc) = ((*main_tag).clone(), (*main_pc).clone());
        let Some(main) = g.pcollections.get(&main_pc).cloned() else {
            return Err(Error::plan(
                t.describe(),
                format!("uses PCollection '{main_pc}', which is not in the pipeline"),
            ));
        };
        if !g.coders.contains_key(&payload.restriction_coder_id) {
            return Err(Error::plan(
                t.describe(),
                format!(
                    "names restriction coder '{}', which is not in the pipeline",
                    payload.restriction_coder_id
                ),
            ));
        }
        let restriction = g.length_prefix_unknown(&payload.restriction_coder_id);
        let kv = |components: Vec<String>| CoderSpec {
            urn: standard_coders::KV.to_string(),
            payload: vec![],
            components,
        };
        let paired_coder = g.add_coder(
            &format!("{}/paired", main.coder_id),
            kv(vec![main.coder_id.clone(), restriction]),
        );
        let double = g.add_coder(
            "doubles_coder",
            CoderSpec {
                urn: standard_coders::DOUBLE.to_string(),
                payload: vec![],
                components: vec![],
            },
        );
        let sized_coder = g.add_coder(
            &format!("{}/sized", main.coder_id),
            kv(vec![paired_coder.clone(), double]),
        );
        let mut new_pcollection = |suffix: &str, coder_id: String| {
            let pid = g.fresh_id(&format!("{main_pc}_{suffix}"));
            g.pcollections.insert(
                pid.clone(),
                PCollection {
                    unique_name: format!("{}_{suffix}", main.unique_name),
                    coder_id,
                    ..main.clone()
                },
            );
            pid
        };
        let paired = new_pcollection("paired", paired_coder);
        let split = new_pcollection("split", sized_coder);
        let component = |g: &Graph, suffix: &str, urn: &str, input: &str, outputs| {
            let mut c = t.clone();
            c.id = g.fresh_id(&format!("{id}/{suffix}"));
            c.unique_name = format!("{}/{suffix}", t.unique_name);
            c.urn = urn.to_string();
            c.kind = Kind::ParDo {
                side_inputs: side_inputs.clone(),
                stateful: false,
                splittable: false,
            };
            c.inputs.insert(main_tag.clone(), input.to_string());
            if let Some(o) = outputs {
                c.outputs = o;
            }
            c
        };
        let out = |p: &str| Some(BTreeMap::from([("out".to_string(), p.to_string())]));
        let pair = component(
            g,
            "PairWithRestriction",
            sdf::PAIR_WITH_RESTRICTION,
            &main_pc,
            out(&paired),
        );
        g.transforms.insert(pair.id.clone(), pair.clone());
        let split_t = component(
            g,
            "SplitAndSizeRestrictions",
            sdf::SPLIT_AND_SIZE_RESTRICTIONS,
            &paired,
            out(&split),
        );
        g.transforms.insert(split_t.id.clone(), split_t.clone());
        let mut process = component(
            g,
            "Process",
            sdf::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS,
            &split,
            None,
        );
        // The last component keeps the original id: it produces the
        // transform's outputs.
        process.id = id.clone();
        g.transforms.insert(id.clone(), process);
        let at = g.order.iter().position(|o| *o == id).unwrap_or(0);
        g.order
            .splice(at..at, [pair.id.clone(), split_t.id.clone()]);
    }
    Ok(())
}

/// The leaves of transform `id`, in application order (a combine-per-key
/// composite is one node holding its leaves).
fn expand(
    id: &str,
    comps: &pb::Components,
    visiting: &mut BTreeSet<String>,
    reshuffle_in_runner: bool,
) -> Result<Vec<Transform>> {
    let t = comps.transforms.get(id).ok_or_else(|| {
        Error::plan(
            format!("transform id {id:?}"),
            "is referenced but not in the pipeline components",
        )
    })?;
    if !visiting.insert(id.to_string()) {
        return Err(Error::plan(
            describe(id, t),
            "contains itself through its subtransforms",
        ));
    }
    let spec = t.spec.clone().unwrap_or_default();
    // A composite that expanded to nothing and hands its input on as its
    // output (Beam Python's MaybeReshuffle when it skips the reshuffle)
    // does no work: it contributes no leaf.
    let pass_through = !t.outputs.is_empty()
        && t.outputs
            .values()
            .all(|o| t.inputs.values().any(|i| i == o));
    let out = if t.subtransforms.is_empty() && pass_through {
        vec![]
    } else if reshuffle_in_runner
        && spec.urn == composites::RESHUFFLE
        && t.inputs.len() == 1
        && t.outputs.len() == 1
    {
        // Beam's Reshuffle redistributes elements and keeps each one's
        // timestamp, windows and pane. The runner does that itself: a
        // runner-side identity (a Flatten of one input) that ends fusion, so
        // the expansion's random keys and grouping never run, and elements
        // keep their order, as on Beam's DirectRunner.
        let mut node = base(id, t, &spec);
        node.kind = Kind::Flatten;
        vec![node]
    } else if t.subtransforms.is_empty() {
        vec![leaf(id, t, &spec)?]
    } else {
        let mut leaves = Vec::new();
        for sub in &t.subtransforms {
            leaves.extend(expand(sub, comps, visiting, reshuffle_in_runner)?);
        }
        if spec.urn == composites::COMBINE_PER_KEY {
            let payload = pb::CombinePayload::decode(spec.payload.as_ref()).map_err(|e| {
                Error::plan(describe(id, t), format!("malformed CombinePayload: {e}"))
            })?;
            let mut node = base(id, t, &spec);
            node.kind = Kind::CombinePerKey {
                accumulator_coder_id: payload.accumulator_coder_id,
                expansion: leaves,
            };
            vec![node]
        } else {
            leaves
        }
    };
    visiting.remove(id);
    Ok(out)
}

fn describe(id: &str, t: &pb::PTransform) -> String {
    if t.unique_name.is_empty() || t.unique_name == id {
        format!("transform '{id}'")
    } else {
        format!("transform '{}' (id {id})", t.unique_name)
    }
}

fn base(id: &str, t: &pb::PTransform, spec: &pb::FunctionSpec) -> Transform {
    Transform {
        id: id.to_string(),
        unique_name: t.unique_name.clone(),
        kind: Kind::Extension,
        urn: spec.urn.clone(),
        payload: spec.payload.to_vec(),
        inputs: t.inputs.clone().into_iter().collect(),
        outputs: t.outputs.clone().into_iter().collect(),
        environment_id: t.environment_id.clone(),
    }
}

fn leaf(id: &str, t: &pb::PTransform, spec: &pb::FunctionSpec) -> Result<Transform> {
    let mut node = base(id, t, spec);
    node.kind = match spec.urn.as_str() {
        prim::IMPULSE => Kind::Impulse,
        prim::GROUP_BY_KEY => Kind::GroupByKey,
        prim::FLATTEN => Kind::Flatten,
        prim::ASSIGN_WINDOWS => Kind::WindowInto,
        prim::TEST_STREAM => Kind::TestStream(test_stream(id, t, spec)?),
        urns::oxbeam_transforms::GENERATE => Kind::Generate(generate(id, t, spec)?),
        urns::oxbeam_transforms::REDIS_READ => Kind::RedisRead(redis_read(id, t, spec)?),
        urns::oxbeam_transforms::REDIS_WRITE => Kind::RedisWrite(redis_write(id, t, spec)?),
        urns::oxbeam_transforms::WATCH_FILES => Kind::WatchFiles(
            crate::watch::WatchFilesSpec::decode(&describe(id, t), spec.payload.as_ref())?,
        ),
        prim::PAR_DO => {
            let p = pb::ParDoPayload::decode(spec.payload.as_ref()).map_err(|e| {
                Error::plan(describe(id, t), format!("malformed ParDoPayload: {e}"))
            })?;
            Kind::ParDo {
                side_inputs: p.side_inputs.keys().cloned().collect(),
                stateful: !p.state_specs.is_empty() || !p.timer_family_specs.is_empty(),
                splittable: !p.restriction_coder_id.is_empty(),
            }
        }
        cc::COMBINE_PER_KEY_PRECOMBINE
        | cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS
        | cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS
        | cc::COMBINE_GROUPED_VALUES
        | cc::COMBINE_PER_KEY_CONVERT_TO_ACCUMULATORS => Kind::CombineComponent,
        _ => Kind::Extension,
    };
    Ok(node)
}

fn test_stream(id: &str, t: &pb::PTransform, spec: &pb::FunctionSpec) -> Result<TestStreamSpec> {
    use pb::test_stream_payload::event::Event as E;
    let p = pb::TestStreamPayload::decode(spec.payload.as_ref())
        .map_err(|e| Error::plan(describe(id, t), format!("malformed TestStreamPayload: {e}")))?;
    let mut events = Vec::with_capacity(p.events.len());
    for (i, e) in p.events.into_iter().enumerate() {
        events.push(match e.event {
            Some(E::ElementEvent(a)) => TestStreamEvent::AddElements {
                tag: a.tag,
                elements: a
                    .elements
                    .into_iter()
                    .map(|el| TimestampedElement {
                        encoded: el.encoded_element.to_vec(),
                        timestamp_ms: el.timestamp,
                    })
                    .collect(),
            },
            Some(E::WatermarkEvent(w)) => TestStreamEvent::AdvanceWatermark {
                tag: w.tag,
                to_ms: w.new_watermark,
            },
            Some(E::ProcessingTimeEvent(d)) => TestStreamEvent::AdvanceProcessingTime {
                by_ms: d.advance_duration,
            },
            None => {
                return Err(Error::plan(
                    describe(id, t),
                    format!("TestStream event {i} is empty (no element, watermark or processing-time event)"),
                ));
            }
        });
    }
    Ok(TestStreamSpec {
        coder_id: p.coder_id,
        events,
        // Beam Python always writes an endpoint, with an empty url when the
        // events are inline.
        has_endpoint: p.endpoint.is_some_and(|e| !e.url.is_empty()),
    })
}

fn generate(id: &str, t: &pb::PTransform, spec: &pb::FunctionSpec) -> Result<GenerateSpec> {
    let p = oxbeam_model::oxbeam::GeneratePayload::decode(spec.payload.as_ref())
        .map_err(|e| Error::plan(describe(id, t), format!("malformed GeneratePayload: {e}")))?;
    Ok(GenerateSpec {
        rate_per_second: p.rate_per_second,
        num_elements: (p.num_elements > 0).then_some(p.num_elements),
        key_count: p.key_count,
        event_time_skew_ms: p.event_time_skew_millis,
        max_out_of_orderness_ms: p.max_out_of_orderness_millis,
        seed: p.seed,
        start_timestamp_ms: p.start_timestamp_millis,
    })
}

fn redis_read(
    id: &str,
    t: &pb::PTransform,
    spec: &pb::FunctionSpec,
) -> Result<crate::redis::RedisReadSpec> {
    use crate::redis::RedisStart;
    use oxbeam_model::oxbeam::{RedisReadPayload, RedisStartPosition};
    let p = RedisReadPayload::decode(spec.payload.as_ref())
        .map_err(|e| Error::plan(describe(id, t), format!("malformed RedisReadPayload: {e}")))?;
    let start = match RedisStartPosition::try_from(p.start) {
        Ok(RedisStartPosition::Beginning) => RedisStart::Beginning,
        Ok(RedisStartPosition::Latest) => RedisStart::Latest,
        Ok(RedisStartPosition::AfterId) => RedisStart::AfterId(p.start_id),
        Err(_) => {
            return Err(Error::plan(
                describe(id, t),
                format!("unknown RedisReadPayload start position {}", p.start),
            ));
        }
    };
    Ok(crate::redis::RedisReadSpec {
        url: p.url,
        stream: p.stream,
        start,
        checkpoint_key: (!p.checkpoint_key.is_empty()).then_some(p.checkpoint_key),
        batch_size: Some(p.batch_size).filter(|&n| n > 0).unwrap_or(1000),
        block_ms: Some(p.block_millis).filter(|&n| n > 0).unwrap_or(100),
        max_entries: (p.max_entries > 0).then_some(p.max_entries),
        stop_at_end: p.stop_at_end,
    })
}

fn redis_write(
    id: &str,
    t: &pb::PTransform,
    spec: &pb::FunctionSpec,
) -> Result<crate::redis::RedisWriteSpec> {
    let p = oxbeam_model::oxbeam::RedisWritePayload::decode(spec.payload.as_ref())
        .map_err(|e| Error::plan(describe(id, t), format!("malformed RedisWritePayload: {e}")))?;
    Ok(crate::redis::RedisWriteSpec {
        url: p.url,
        stream: p.stream,
    })
}

fn duration_ms(d: Option<prost_types::Duration>) -> i64 {
    d.map_or(0, |d| {
        d.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(d.nanos) / 1_000_000)
    })
}

fn timestamp_ms(t: Option<prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000)
    })
}

/// Whether an environment is a Python SDK's, whose runners' pane rules
/// Python pipelines expect: Oxbeam's (`oxbeam:env:python:v1`, or a
/// capability naming it) or Beam's, whose environments list the SDK's
/// container image as a capability
/// (`beam:version:sdk_base:apache/beam_python3.11_sdk:2.77.0`).
fn is_python_sdk(env: &pb::Environment) -> bool {
    env.urn == urns::oxbeam_python::ENVIRONMENT
        || env.capabilities.iter().any(|c| {
            c == urns::oxbeam_python::ENVIRONMENT
                || c.strip_prefix(SDK_BASE_CAPABILITY)
                    .is_some_and(|image| image.contains("python"))
        })
}

/// Prefix of Beam's capability naming an environment's SDK container image.
const SDK_BASE_CAPABILITY: &str = "beam:version:sdk_base:";

fn windowing_strategy(
    id: &str,
    ws: &pb::WindowingStrategy,
    coders: &BTreeMap<String, CoderSpec>,
) -> Result<WindowingStrategy> {
    let what = || format!("windowing strategy {id:?}");
    let spec = ws.window_fn.clone().unwrap_or_default();
    let bad =
        |e: prost::DecodeError| Error::plan(what(), format!("malformed {} payload: {e}", spec.urn));
    let window_fn = match spec.urn.as_str() {
        urns::global_windows_payload::PROPERTIES | "" => WindowFn::Global,
        urns::fixed_windows_payload::PROPERTIES => {
            let p = pb::FixedWindowsPayload::decode(spec.payload.as_ref()).map_err(bad)?;
            WindowFn::Fixed {
                size_ms: duration_ms(p.size),
                offset_ms: timestamp_ms(p.offset),
            }
        }
        urns::sliding_windows_payload::PROPERTIES => {
            let p = pb::SlidingWindowsPayload::decode(spec.payload.as_ref()).map_err(bad)?;
            WindowFn::Sliding {
                size_ms: duration_ms(p.size),
                period_ms: duration_ms(p.period),
                offset_ms: timestamp_ms(p.offset),
            }
        }
        urns::session_windows_payload::PROPERTIES => {
            let p = pb::SessionWindowsPayload::decode(spec.payload.as_ref()).map_err(bad)?;
            WindowFn::Sessions {
                gap_ms: duration_ms(p.gap_size),
            }
        }
        other => WindowFn::Custom {
            urn: other.to_string(),
        },
    };
    use pb::merge_status::Enum as M;
    let merging = match M::try_from(ws.merge_status) {
        Ok(M::NeedsMerge) => true,
        Ok(M::NonMerging) | Ok(M::AlreadyMerged) => false,
        _ => matches!(window_fn, WindowFn::Sessions { .. }),
    };
    use pb::output_time::Enum as O;
    let output_time = match O::try_from(ws.output_time) {
        Ok(O::EarliestInPane) => OutputTime::EarliestInPane,
        Ok(O::LatestInPane) => OutputTime::LatestInPane,
        _ => OutputTime::EndOfWindow,
    };
    use pb::accumulation_mode::Enum as A;
    let accumulation = match A::try_from(ws.accumulation_mode) {
        Ok(A::Accumulating) => AccumulationMode::Accumulating,
        Ok(A::Retracting) => AccumulationMode::Retracting,
        _ => AccumulationMode::Discarding,
    };
    let window_coder = match coders.get(&ws.window_coder_id).map(|c| c.urn.as_str()) {
        Some(standard_coders::GLOBAL_WINDOW) => WindowCoderKind::Global,
        Some(standard_coders::INTERVAL_WINDOW) => WindowCoderKind::Interval,
        _ => WindowCoderKind::Other,
    };
    let trigger = match &ws.trigger {
        Some(t) => Trigger::from_proto(t).map_err(|e| Error::plan(what(), e.to_string()))?,
        None => Trigger::Default,
    };
    use pb::closing_behavior::Enum as C;
    let closing_behavior = match C::try_from(ws.closing_behavior) {
        Ok(C::EmitAlways) => ClosingBehavior::EmitAlways,
        _ => ClosingBehavior::EmitIfNonEmpty,
    };
    use pb::on_time_behavior::Enum as T;
    let on_time_behavior = match T::try_from(ws.on_time_behavior) {
        Ok(T::FireIfNonempty) => OnTimeBehavior::FireIfNonEmpty,
        _ => OnTimeBehavior::FireAlways,
    };
    Ok(WindowingStrategy {
        window_fn,
        merging,
        window_coder_id: ws.window_coder_id.clone(),
        window_coder,
        output_time,
        accumulation,
        allowed_lateness_ms: ws.allowed_lateness,
        trigger,
        closing_behavior,
        on_time_behavior,
        pane_rules: PaneRules::Java,
    })
}

/// What the descriptor of one stage holds, in graph terms.
pub(crate) struct StageLayout<'a> {
    pub id: &'a str,
    pub transforms: &'a [String],
    /// `(data source transform id, PCollection id)`.
    pub inputs: &'a [(String, String)],
    /// `(data sink transform id, PCollection id)`.
    pub outputs: &'a [(String, String)],
    pub environment_id: &'a str,
}

fn fresh(taken: &BTreeMap<String, impl Sized>, base: &str) -> String {
    if !taken.contains_key(base) {
        return base.to_string();
    }
    (2..)
        .map(|i| format!("{base}#{i}"))
        .find(|s| !taken.contains_key(s))
        .unwrap_or_default()
}

/// Builds the Beam `ProcessBundleDescriptor` of a stage: its transforms, a
/// data source per input and a data sink per output (with windowed-value
/// coders), and exactly the components they use.
pub(crate) fn build_descriptor(g: &Graph, s: &StageLayout<'_>) -> Result<ProcessBundleDescriptor> {
    let mut d = ProcessBundleDescriptor {
        id: s.id.to_string(),
        ..Default::default()
    };
    let mut pcolls = BTreeSet::new();
    for id in s.transforms {
        let t = g.transforms.get(id).ok_or_else(|| {
            Error::Internal(format!("stage {} names unknown transform {id}", s.id))
        })?;
        pcolls.extend(t.inputs.values().cloned());
        pcolls.extend(t.outputs.values().cloned());
        d.transforms.insert(
            id.clone(),
            pb::PTransform {
                unique_name: t.unique_name.clone(),
                spec: Some(pb::FunctionSpec {
                    urn: t.urn.clone(),
                    payload: t.payload.clone().into(),
                }),
                inputs: t.inputs.clone().into_iter().collect(),
                outputs: t.outputs.clone().into_iter().collect(),
                environment_id: t.environment_id.clone(),
                ..Default::default()
            },
        );
    }
    let mut coder_ids = BTreeSet::new();
    // Coders of state and timer specs (a Beam harness decodes state with them).
    for id in s.transforms {
        coder_ids.extend(crate::state::spec_coder_ids(g, id)?);
    }
    let mut ws_ids = BTreeSet::new();
    for pid in &pcolls {
        let pc = g
            .pcollections
            .get(pid)
            .ok_or_else(|| Error::Internal(format!("unknown PCollection {pid}")))?;
        coder_ids.insert(pc.coder_id.clone());
        ws_ids.insert(pc.windowing_strategy_id.clone());
        d.pcollections.insert(
            pid.clone(),
            pb::PCollection {
                unique_name: pc.unique_name.clone(),
                coder_id: pc.coder_id.clone(),
                is_bounded: pc.is_bounded,
                windowing_strategy_id: pc.windowing_strategy_id.clone(),
                ..Default::default()
            },
        );
    }
    for wid in &ws_ids {
        let raw = g.raw_windowing_strategies.get(wid);
        let ws = raw
            .map(|r| pb::WindowingStrategy::decode(r.as_slice()))
            .transpose()
            .map_err(|e| Error::Internal(format!("re-decoding windowing strategy {wid}: {e}")))?
            .ok_or_else(|| Error::Internal(format!("unknown windowing strategy {wid}")))?;
        coder_ids.insert(ws.window_coder_id.clone());
        d.windowing_strategies.insert(wid.clone(), ws);
    }
    // Coders and their components, transitively.
    let mut stack: Vec<String> = coder_ids.into_iter().collect();
    while let Some(cid) = stack.pop() {
        if d.coders.contains_key(&cid) {
            continue;
        }
        let c = g
            .coders
            .get(&cid)
            .ok_or_else(|| Error::Internal(format!("unknown coder {cid}")))?;
        stack.extend(c.components.iter().cloned());
        d.coders.insert(cid, coder_proto(c));
    }
    // Data sources and sinks with windowed-value coders.
    let mut wv_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut wv_coder = |d: &mut ProcessBundleDescriptor, pid: &str| -> Result<String> {
        let pc = &g.pcollections[pid];
        let window_coder = &g
            .windowing_strategies
            .get(&pc.windowing_strategy_id)
            .ok_or_else(|| Error::Internal(format!("unknown windowing strategy of {pid}")))?
            .window_coder_id;
        let key = format!("{}\u{0}{}", pc.coder_id, window_coder);
        if let Some(id) = wv_ids.get(&key) {
            return Ok(id.clone());
        }
        let id = fresh(&d.coders, &format!("{}/windowed", pc.coder_id));
        d.coders.insert(
            id.clone(),
            coder_proto(&CoderSpec {
                urn: standard_coders::WINDOWED_VALUE.to_string(),
                payload: vec![],
                components: vec![pc.coder_id.clone(), window_coder.clone()],
            }),
        );
        wv_ids.insert(key, id.clone());
        Ok(id)
    };
    for (sid, pid) in s.inputs {
        let coder_id = wv_coder(&mut d, pid)?;
        d.transforms.insert(
            sid.clone(),
            port(
                sid,
                urns::fn_api_transforms::runner::DATA_SOURCE,
                coder_id,
                None,
                Some(pid),
            ),
        );
    }
    for (sid, pid) in s.outputs {
        let coder_id = wv_coder(&mut d, pid)?;
        d.transforms.insert(
            sid.clone(),
            port(
                sid,
                urns::fn_api_transforms::runner::DATA_SINK,
                coder_id,
                Some(pid),
                None,
            ),
        );
    }
    if let Some(env) = g.environments.get(s.environment_id) {
        let e = pb::Environment::decode(env.raw.as_slice())
            .map_err(|e| Error::Internal(format!("re-decoding environment: {e}")))?;
        d.environments.insert(s.environment_id.to_string(), e);
    }
    Ok(d)
}

fn coder_proto(c: &CoderSpec) -> pb::Coder {
    pb::Coder {
        spec: Some(pb::FunctionSpec {
            urn: c.urn.clone(),
            payload: c.payload.clone().into(),
        }),
        component_coder_ids: c.components.clone(),
    }
}

fn port(
    id: &str,
    urn: &str,
    coder_id: String,
    input: Option<&str>,
    output: Option<&str>,
) -> pb::PTransform {
    let payload = RemoteGrpcPort {
        api_service_descriptor: None,
        coder_id,
    }
    .encode_to_vec();
    pb::PTransform {
        unique_name: id.to_string(),
        spec: Some(pb::FunctionSpec {
            urn: urn.to_string(),
            payload: payload.into(),
        }),
        inputs: input
            .map(|p| ("in".to_string(), p.to_string()))
            .into_iter()
            .collect(),
        outputs: output
            .map(|p| ("out".to_string(), p.to_string()))
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use crate::PlanOptions;
    use crate::optimizer::testing::*;

    #[test]
    fn composites_expand_to_their_leaves() {
        let mut b = Builder::new();
        let imp = b.impulse("Read/Impulse");
        let lines = b.pardo("Read/Parse", &imp, "str");
        b.pardo("Write", &lines, "str");
        // Nest Impulse and Parse under an unknown composite, as SDKs do.
        let p = &mut b.p;
        let comps = p.components.as_mut().unwrap();
        comps.transforms.insert(
            "Read".into(),
            oxbeam_model::pipeline::PTransform {
                unique_name: "Read".into(),
                spec: Some(oxbeam_model::pipeline::FunctionSpec {
                    urn: "example:composite:read:v1".into(),
                    payload: Default::default(),
                }),
                subtransforms: vec!["Read/Impulse".into(), "Read/Parse".into()],
                outputs: [("out".to_string(), lines.clone())].into(),
                ..Default::default()
            },
        );
        p.root_transform_ids = vec!["Read".into(), "Write".into()];
        insta::assert_snapshot!(plan_text(&b.build(), PlanOptions::default()));
    }

    #[test]
    fn a_reshuffle_is_a_runner_side_identity() {
        use crate::graph::Kind;
        use oxbeam_model::pipeline as pb;
        use oxbeam_model::urns::standard_p_transforms::composites;
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let xs = b.pardo("Xs", &imp, "kv_str");
        let grouped = b.gbk("Reshuffle/Group", &xs);
        let out = b.pardo("Reshuffle/Restore", &grouped, "kv_str");
        b.pardo("Use", &out, "str");
        let p = &mut b.p;
        let comps = p.components.as_mut().unwrap();
        comps.transforms.insert(
            "Reshuffle".into(),
            pb::PTransform {
                unique_name: "Reshuffle".into(),
                spec: Some(pb::FunctionSpec {
                    urn: composites::RESHUFFLE.into(),
                    payload: Default::default(),
                }),
                subtransforms: vec!["Reshuffle/Group".into(), "Reshuffle/Restore".into()],
                inputs: [("in".to_string(), xs.clone())].into(),
                outputs: [("out".to_string(), out.clone())].into(),
                ..Default::default()
            },
        );
        p.root_transform_ids = vec![
            "Impulse".into(),
            "Xs".into(),
            "Reshuffle".into(),
            "Use".into(),
        ];
        let p = b.build();
        let g = super::to_graph(&p, true).unwrap();
        assert_eq!(g.transforms["Reshuffle"].kind, Kind::Flatten);
        assert!(!g.transforms.contains_key("Reshuffle/Group"));
        assert!(!g.transforms.contains_key("Reshuffle/Restore"));
        assert!(g.transforms.values().all(|t| t.kind != Kind::GroupByKey));
        // Not in the runner (an older Beam compatibility version): the
        // expansion runs.
        let g = super::to_graph(&p, false).unwrap();
        assert!(!g.transforms.contains_key("Reshuffle"));
        assert_eq!(g.transforms["Reshuffle/Group"].kind, Kind::GroupByKey);
        assert!(g.transforms.contains_key("Reshuffle/Restore"));
    }

    #[test]
    fn strategies_of_python_environments_get_python_pane_rules() {
        use crate::PaneRules;
        use oxbeam_model::pipeline as pb;
        let mut b = Builder::new();
        b.impulse("Impulse");
        let comps = b.p.components.as_mut().unwrap();
        let envs = [
            (
                "beam",
                "beam:env:external:v1",
                vec!["beam:version:sdk_base:apache/beam_python3.11_sdk:2.77.0"],
            ),
            ("oxbeam", "oxbeam:env:python:v1", vec![]),
            (
                "oxbeam-worker",
                "beam:env:process:v1",
                vec!["oxbeam:env:python:v1"],
            ),
            (
                "go",
                "beam:env:external:v1",
                vec!["beam:version:sdk_base:apache/beam_go_sdk:2.77.0"],
            ),
        ];
        for (id, urn, caps) in envs {
            comps.environments.insert(
                id.into(),
                pb::Environment {
                    urn: urn.into(),
                    capabilities: caps.into_iter().map(String::from).collect(),
                    ..Default::default()
                },
            );
            let mut ws = comps.windowing_strategies["fixed"].clone();
            ws.environment_id = id.into();
            comps.windowing_strategies.insert(format!("ws-{id}"), ws);
        }
        let g = super::to_graph(&b.build(), true).unwrap();
        let rules = |id: &str| g.windowing_strategies[id].pane_rules;
        assert_eq!(rules("ws-beam"), PaneRules::Python);
        assert_eq!(rules("ws-oxbeam"), PaneRules::Python);
        assert_eq!(rules("ws-oxbeam-worker"), PaneRules::Python);
        assert_eq!(rules("ws-go"), PaneRules::Java);
        assert_eq!(rules("fixed"), PaneRules::Java);
    }

    #[test]
    fn garbage_bytes_are_a_plan_error() {
        let err = crate::decode_pipeline(b"\xff\xff\xff").unwrap_err();
        assert!(matches!(err, crate::Error::Plan { .. }), "{err}");
    }
}
