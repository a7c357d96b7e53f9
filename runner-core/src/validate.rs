//! Checks a [`Graph`] before optimization, with errors that name the transform
//! or PCollection at fault.

use std::collections::BTreeMap;

use oxbeam_model::urns::standard_p_transforms::{deprecated_primitives, primitives};

use crate::coder::Coder;
use crate::error::{Error, Result};
use crate::graph::{Graph, Kind, TestStreamSpec, Transform};
use crate::plan::GenerateSpec;
use crate::windowing::{WindowCoderKind, WindowFn};

/// Pipeline requirements (`Pipeline.requirements`) Oxbeam meets: splittable
/// DoFns (self-checkpointing residuals are resumed; no runner-initiated
/// splits yet); stateful DoFns (state and timers); bundle finalization
/// (callbacks run once a bundle's output is committed).
pub const SUPPORTED_REQUIREMENTS: &[&str] = &[
    oxbeam_model::urns::standard_requirements::REQUIRES_BUNDLE_FINALIZATION,
    oxbeam_model::urns::standard_requirements::REQUIRES_SPLITTABLE_DOFN,
    oxbeam_model::urns::standard_requirements::REQUIRES_STATEFUL_PROCESSING,
];

/// Validates the graph; the first problem found (in application order) wins.
pub(crate) fn validate(g: &Graph) -> Result<()> {
    let unsupported: Vec<&String> = g
        .requirements
        .iter()
        .filter(|r| !SUPPORTED_REQUIREMENTS.contains(&r.as_str()))
        .collect();
    if !unsupported.is_empty() {
        let mut reqs: Vec<&str> = unsupported.into_iter().map(String::as_str).collect();
        reqs.sort();
        reqs.dedup();
        return Err(Error::not_implemented(
            "pipeline requirements",
            format!("Oxbeam does not support {}", reqs.join(", ")),
        ));
    }
    let mut produced: BTreeMap<&str, &Transform> = BTreeMap::new();
    for id in &g.order {
        let t = &g.transforms[id];
        let leaves: Vec<&Transform> = match &t.kind {
            Kind::CombinePerKey { expansion, .. } => std::iter::once(t).chain(expansion).collect(),
            _ => vec![t],
        };
        for leaf in leaves {
            check_transform(g, leaf)?;
            if std::ptr::eq(leaf, t) {
                for p in leaf.outputs.values() {
                    if let Some(other) = produced.insert(p, leaf) {
                        return Err(Error::plan(
                            leaf.describe(),
                            format!(
                                "outputs PCollection '{p}', which {} also outputs",
                                other.describe()
                            ),
                        ));
                    }
                }
            }
        }
    }
    g.topological_order().map_err(|id| {
        Error::plan(
            g.transforms[&id].describe(),
            "is part of a cycle: it (indirectly) reads its own output",
        )
    })?;
    Ok(())
}

fn check_transform(g: &Graph, t: &Transform) -> Result<()> {
    let what = || t.describe();
    for p in t.inputs.values().chain(t.outputs.values()) {
        check_pcollection(g, t, p)?;
    }
    if !t.environment_id.is_empty() && !g.environments.contains_key(&t.environment_id) {
        return Err(Error::plan(
            what(),
            format!(
                "names environment '{}', which is not in the pipeline",
                t.environment_id
            ),
        ));
    }
    check_retractions(g, t)?;
    let needs_env = || -> Result<()> {
        if t.environment_id.is_empty() {
            return Err(Error::plan(
                what(),
                format!(
                    "is an executable transform ({}) with no environment to run it",
                    t.urn
                ),
            ));
        }
        Ok(())
    };
    match &t.kind {
        Kind::Impulse => {
            if !t.inputs.is_empty() || t.outputs.len() != 1 {
                return Err(Error::plan(
                    what(),
                    "an Impulse must have no inputs and one output",
                ));
            }
        }
        Kind::GroupByKey => check_gbk(g, t)?,
        Kind::Flatten => check_flatten(g, t)?,
        Kind::ParDo {
            stateful,
            splittable,
            ..
        } => {
            needs_env()?;
            if *stateful {
                crate::state::check_stateful(g, t)?;
            }
            if *splittable {
                return Err(Error::not_implemented(what(), "splittable DoFns"));
            }
        }
        Kind::WindowInto | Kind::CombineComponent => needs_env()?,
        Kind::CombinePerKey { .. } => {}
        Kind::TestStream(spec) => check_test_stream(g, t, spec)?,
        Kind::Generate(spec) => check_generate(g, t, spec)?,
        Kind::RedisRead(spec) => crate::redis::check_read(g, t, spec)?,
        Kind::WatchFiles(spec) => crate::watch::check(g, t, spec)?,
        Kind::RedisWrite(spec) => crate::redis::check_write(g, t, spec)?,
        Kind::Extension => {
            if t.environment_id.is_empty() {
                let known = [
                    deprecated_primitives::READ,
                    deprecated_primitives::CREATE_VIEW,
                    primitives::MAP_WINDOWS,
                    primitives::MERGE_WINDOWS,
                    primitives::TO_STRING,
                ];
                if known.contains(&t.urn.as_str()) {
                    return Err(Error::not_implemented(
                        what(),
                        format!("the runner does not execute {} yet", t.urn),
                    ));
                }
                return Err(Error::plan(
                    what(),
                    format!(
                        "has URN '{}', which is neither a runner primitive nor a composite, and no environment to run it",
                        t.urn
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The output local name a TestStream event tag names: itself, or for the
/// empty tag (Beam's main output) the only output, or the one named `None`
/// or `out` (Beam Python's and Oxbeam's main tags).
pub(crate) fn resolve_test_stream_tag(t: &Transform, tag: &str) -> Option<String> {
    if t.outputs.contains_key(tag) {
        return Some(tag.to_string());
    }
    if !tag.is_empty() {
        return None;
    }
    if t.outputs.len() == 1 {
        return t.outputs.keys().next().cloned();
    }
    ["None", "out", "output"]
        .into_iter()
        .find(|k| t.outputs.contains_key(*k))
        .map(str::to_string)
}

/// Re-encodes a TestStream element from the payload's outer encoding to the
/// nested one; errors if the bytes are not exactly one value of `coder`.
pub(crate) fn nest_test_stream_element(
    coder: &Coder,
    outer: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    use oxbeam_model::coders::Context;
    // A coder the runner does not know travels length-prefixed (see
    // `Graph::length_prefix_unknown`): its nested form is the outer bytes
    // behind their length (Beam Python's default TestStream coder is one).
    if let Coder::Opaque { .. } = coder {
        let mut out = Vec::with_capacity(outer.len() + 5);
        oxbeam_model::coders::wire::write_varint_u64(&mut out, outer.len() as u64);
        out.extend_from_slice(outer);
        return Ok(out);
    }
    let mut input = outer;
    let value = coder
        .decode(&mut input, Context::Outer)
        .map_err(|e| e.to_string())?;
    if !input.is_empty() {
        return Err(format!("{} bytes left over", input.len()));
    }
    let mut out = Vec::with_capacity(outer.len() + 2);
    coder
        .encode(&value, &mut out, Context::Nested)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn check_test_stream(g: &Graph, t: &Transform, spec: &TestStreamSpec) -> Result<()> {
    use crate::plan::TestStreamEvent as E;
    let what = || t.describe();
    if !t.inputs.is_empty() || t.outputs.is_empty() {
        return Err(Error::plan(
            what(),
            "a TestStream must have no inputs and at least one output",
        ));
    }
    if spec.has_endpoint {
        return Err(Error::not_implemented(
            what(),
            "TestStream events from an external TestStream service (endpoint)",
        ));
    }
    if !g.coders.contains_key(&spec.coder_id) {
        return Err(Error::plan(
            what(),
            format!(
                "its TestStreamPayload names coder '{}', which is not in the pipeline",
                spec.coder_id
            ),
        ));
    }
    let coder =
        crate::coder::build_coder(&spec.coder_id, &g.coders).map_err(|e| Error::plan(what(), e))?;
    let mut watermarks: BTreeMap<String, i64> = BTreeMap::new();
    for (i, e) in spec.events.iter().enumerate() {
        let tag = match e {
            E::AddElements { tag, .. } | E::AdvanceWatermark { tag, .. } => Some(tag),
            E::AdvanceProcessingTime { .. } => None,
        };
        let resolved = match tag {
            Some(tag) => Some(resolve_test_stream_tag(t, tag).ok_or_else(|| {
                Error::plan(
                    what(),
                    format!(
                        "TestStream event {i} names output tag {tag:?}; the outputs are {:?}",
                        t.outputs.keys().collect::<Vec<_>>()
                    ),
                )
            })?),
            None => None,
        };
        match e {
            E::AddElements { elements, .. } => {
                for (j, el) in elements.iter().enumerate() {
                    nest_test_stream_element(&coder, &el.encoded).map_err(|m| {
                        Error::plan(
                            what(),
                            format!(
                                "element {j} of TestStream event {i} does not decode with coder '{}': {m}",
                                spec.coder_id
                            ),
                        )
                    })?;
                }
            }
            E::AdvanceWatermark { to_ms, .. } => {
                let tag = resolved.unwrap_or_default();
                if let Some(prev) = watermarks.insert(tag.clone(), *to_ms) {
                    if *to_ms < prev {
                        return Err(Error::plan(
                            what(),
                            format!(
                                "TestStream event {i} moves the watermark of {tag:?} back from {prev} to {to_ms}"
                            ),
                        ));
                    }
                }
            }
            E::AdvanceProcessingTime { by_ms } => {
                if *by_ms < 0 {
                    return Err(Error::plan(
                        what(),
                        format!(
                            "TestStream event {i} advances processing time by {by_ms}ms (negative)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_generate(g: &Graph, t: &Transform, spec: &GenerateSpec) -> Result<()> {
    let what = || t.describe();
    if !t.inputs.is_empty() || t.outputs.len() != 1 {
        return Err(Error::plan(
            what(),
            "a generator source must have no inputs and one output",
        ));
    }
    if spec.key_count == 0 {
        return Err(Error::plan(what(), "its GeneratePayload has key_count 0"));
    }
    if spec.event_time_skew_ms < 0 || spec.max_out_of_orderness_ms < 0 {
        return Err(Error::plan(
            what(),
            "its GeneratePayload has a negative event-time skew or out-of-orderness",
        ));
    }
    let out = t
        .outputs
        .values()
        .next()
        .map(String::as_str)
        .unwrap_or_default();
    let coder_id = &g.pcollections[out].coder_id;
    let coder =
        crate::coder::build_coder(coder_id, &g.coders).map_err(|e| Error::plan(what(), e))?;
    if !matches!(&coder, Coder::Kv { key, value } if matches!((&**key, &**value), (Coder::Varint, Coder::Varint)))
    {
        return Err(Error::plan(
            what(),
            format!("its output '{out}' has coder '{coder_id}'; it must be KV<varint, varint>"),
        ));
    }
    Ok(())
}

fn check_pcollection(g: &Graph, t: &Transform, p: &str) -> Result<()> {
    let pc = g.pcollections.get(p).ok_or_else(|| {
        Error::plan(
            t.describe(),
            format!("uses PCollection '{p}', which is not in the pipeline"),
        )
    })?;
    crate::coder::build_coder(&pc.coder_id, &g.coders)
        .map_err(|e| Error::plan(format!("PCollection '{p}' (used by {})", t.describe()), e))?;
    let ws = g
        .windowing_strategies
        .get(&pc.windowing_strategy_id)
        .ok_or_else(|| {
            Error::plan(
                format!("PCollection '{p}' (used by {})", t.describe()),
                format!(
                    "names windowing strategy '{}', which is not in the pipeline",
                    pc.windowing_strategy_id
                ),
            )
        })?;
    if !g.coders.contains_key(&ws.window_coder_id) {
        return Err(Error::plan(
            format!("windowing strategy '{}'", pc.windowing_strategy_id),
            format!(
                "names window coder '{}', which is not in the pipeline",
                ws.window_coder_id
            ),
        ));
    }
    Ok(())
}

fn check_gbk(g: &Graph, t: &Transform) -> Result<()> {
    let what = || t.describe();
    if t.inputs.len() != 1 || t.outputs.len() != 1 {
        return Err(Error::plan(
            what(),
            "a GroupByKey must have one input and one output",
        ));
    }
    let input = t
        .inputs
        .values()
        .next()
        .map(String::as_str)
        .unwrap_or_default();
    let pc = &g.pcollections[input];
    let coder =
        crate::coder::build_coder(&pc.coder_id, &g.coders).map_err(|e| Error::plan(what(), e))?;
    let Coder::Kv { key, .. } = coder else {
        let urn = g
            .coders
            .get(&pc.coder_id)
            .map(|c| c.urn.as_str())
            .unwrap_or_default();
        return Err(Error::plan(
            what(),
            format!(
                "its input PCollection '{input}' has coder '{}' ({urn}), not a KV coder",
                pc.coder_id
            ),
        ));
    };
    if !key.is_self_delimiting() {
        return Err(Error::plan(
            what(),
            format!(
                "its key coder ({}) contains a coder unknown to the runner outside any length prefix; \
                 wrap it in beam:coder:length_prefix:v1",
                key.urn()
            ),
        ));
    }
    let ws = &g.windowing_strategies[&pc.windowing_strategy_id];
    if ws.window_coder == WindowCoderKind::Other {
        return Err(Error::not_implemented(
            what(),
            format!(
                "grouping windows of coder '{}' (only global and interval windows)",
                ws.window_coder_id
            ),
        ));
    }
    // Merging window fns other than sessions merge in their SDK
    // (crate::merge_windows), which needs windows the runner can read.
    if ws.merging
        && !matches!(ws.window_fn, WindowFn::Sessions { .. })
        && ws.window_coder != WindowCoderKind::Interval
    {
        return Err(Error::not_implemented(
            what(),
            format!(
                "merging window fn {} with windows of coder '{}' (only interval windows merge)",
                ws.window_fn, ws.window_coder_id
            ),
        ));
    }
    // Triggers and accumulation modes are the engines' business (a batch
    // engine may not run them all); every one of them is valid here.
    Ok(())
}

fn check_flatten(g: &Graph, t: &Transform) -> Result<()> {
    if t.outputs.len() != 1 {
        return Err(Error::plan(t.describe(), "a Flatten must have one output"));
    }
    let out = t
        .outputs
        .values()
        .next()
        .map(String::as_str)
        .unwrap_or_default();
    let out_pc = &g.pcollections[out];
    let out_ws = &g.windowing_strategies[&out_pc.windowing_strategy_id];
    for input in t.inputs.values() {
        let pc = &g.pcollections[input];
        let ws = &g.windowing_strategies[&pc.windowing_strategy_id];
        // Elements keep their windows through a Flatten (Beam Python
        // flattens e.g. FixedWindows(25) with FixedWindows(100)); their
        // windows must only be encoded alike.
        let same_windows = ws.window_coder == out_ws.window_coder
            && (ws.window_coder != WindowCoderKind::Other
                || ws.window_coder_id == out_ws.window_coder_id);
        if !same_windows {
            return Err(Error::plan(
                t.describe(),
                format!(
                    "its inputs must be windowed alike: input '{input}' is windowed {}, the output '{out}' {}",
                    ws.window_fn, out_ws.window_fn
                ),
            ));
        }
        let same_coder = pc.coder_id == out_pc.coder_id
            || crate::coder::build_coder(&pc.coder_id, &g.coders).ok()
                == crate::coder::build_coder(&out_pc.coder_id, &g.coders).ok();
        if !same_coder {
            return Err(Error::not_implemented(
                t.describe(),
                format!(
                    "flattening input '{input}' of coder '{}' into output of coder '{}' (re-encoding)",
                    pc.coder_id, out_pc.coder_id
                ),
            ));
        }
    }
    Ok(())
}

/// Retractions (RETRACTING accumulation) are an Oxbeam extension of the pane
/// byte: a Beam SDK harness would read them as ordinary elements, so a
/// transform running in one must not consume a retracting PCollection.
fn check_retractions(g: &Graph, t: &Transform) -> Result<()> {
    use oxbeam_model::urns::standard_environments::environments as env;
    let Some(e) = g.environments.get(&t.environment_id) else {
        return Ok(());
    };
    if ![env::DOCKER, env::PROCESS, env::EXTERNAL].contains(&e.urn.as_str()) {
        return Ok(());
    }
    for pc in t.inputs.values() {
        let retracting = g
            .pcollections
            .get(pc)
            .and_then(|p| g.windowing_strategies.get(&p.windowing_strategy_id))
            .is_some_and(|ws| ws.accumulation == crate::windowing::AccumulationMode::Retracting);
        if retracting {
            return Err(Error::not_implemented(
                t.describe(),
                format!(
                    "reads PCollection '{pc}' with RETRACTING panes, but runs in a Beam SDK \
                     harness ({}), which cannot receive retractions",
                    e.urn
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use oxbeam_model::pipeline as pb;

    use crate::PlanOptions;
    use crate::optimizer::testing::*;

    fn err(p: &Pipeline) -> String {
        match crate::plan(p, &PlanOptions::default()) {
            Ok(_) => "planned without error".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_urn_without_environment() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        b.add(
            "Mystery",
            "example:transform:mystery:v1",
            vec![],
            &[("in", &imp)],
            None,
            "",
            true,
        );
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn known_but_unsupported_primitive() {
        let mut b = Builder::new();
        b.add(
            "ReadIt",
            oxbeam_model::urns::standard_p_transforms::deprecated_primitives::READ,
            vec![],
            &[],
            None,
            "",
            true,
        );
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn missing_pcollection() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let out = b.pardo("Orphan", &imp, "str");
        b.p.components
            .as_mut()
            .unwrap()
            .transforms
            .get_mut("Orphan")
            .unwrap()
            .inputs
            .insert("in".into(), "nowhere".into());
        let _ = out;
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn missing_coder() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        b.pardo("Bad", &imp, "no-such-coder");
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn missing_windowing_strategy() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let out = b.pardo("Bad", &imp, "str");
        b.p.components
            .as_mut()
            .unwrap()
            .pcollections
            .get_mut(&out)
            .unwrap()
            .windowing_strategy_id = "nope".into();
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn missing_environment() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        b.pardo_in("Elsewhere", &imp, "str", "no-such-env", &[]);
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn executable_without_environment() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        b.pardo_in("Homeless", &imp, "str", "", &[]);
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn group_by_key_on_non_kv() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let words = b.pardo("Words", &imp, "str");
        b.gbk("Group", &words);
        insta::assert_snapshot!(err(&b.build()));
    }

    /// Unknown coders are length-prefixed at translation (as Beam's runners
    /// do), so a GroupByKey on an opaque key groups by its encoded bytes.
    #[test]
    fn group_by_key_with_opaque_key_is_length_prefixed() {
        let mut b = Builder::new();
        let comps = b.p.components.as_mut().unwrap();
        comps.coders.insert(
            "custom".into(),
            pb::Coder {
                spec: Some(pb::FunctionSpec {
                    urn: "example:coder:custom:v1".into(),
                    payload: Default::default(),
                }),
                component_coder_ids: vec![],
            },
        );
        comps.coders.insert(
            "kv_custom".into(),
            pb::Coder {
                spec: Some(pb::FunctionSpec {
                    urn: oxbeam_model::urns::standard_coders::KV.into(),
                    payload: Default::default(),
                }),
                component_coder_ids: vec!["custom".into(), "varint".into()],
            },
        );
        let imp = b.impulse("Impulse");
        let kvs = b.pardo("Pairs", &imp, "kv_custom");
        b.gbk("Group", &kvs);
        let plan = crate::plan(&b.build(), &PlanOptions::default()).unwrap();
        let key = plan
            .steps()
            .iter()
            .find_map(|s| match s {
                crate::Step::GroupByKey(g) => Some(g.key_coder.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            key.urn(),
            oxbeam_model::urns::standard_coders::LENGTH_PREFIX
        );
        assert!(key.is_self_delimiting());
    }

    #[test]
    fn flatten_of_different_windowing() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let a = b.pardo("A", &imp, "str");
        let c = b.pardo("B", &imp, "str");
        let w = b.window_into("Window", &c, "fixed");
        b.flatten("Flatten", &[&a, &w], "str");
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn flatten_of_different_interval_windows_is_valid() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let a = b.pardo("A", &imp, "str");
        let c = b.pardo("B", &imp, "str");
        let wa = b.window_into("WindowA", &a, "fixed");
        let wc = b.window_into("WindowB", &c, "sessions");
        b.flatten("Flatten", &[&wa, &wc], "str");
        crate::plan(&b.build(), &crate::PlanOptions::default()).unwrap();
    }

    #[test]
    fn cycle() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let a = b.pardo("A", &imp, "str");
        let c = b.pardo("B", &a, "str");
        // A reads B's output as well: A → B → A.
        b.p.components
            .as_mut()
            .unwrap()
            .transforms
            .get_mut("A")
            .unwrap()
            .inputs
            .insert("loop".into(), c);
        insta::assert_snapshot!(err(&b.build()));
    }

    #[test]
    fn stateful_dofn() {
        use prost::Message;
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        b.pardo("Stateful", &imp, "str");
        let t =
            b.p.components
                .as_mut()
                .unwrap()
                .transforms
                .get_mut("Stateful")
                .unwrap();
        let mut payload =
            pb::ParDoPayload::decode(t.spec.as_ref().unwrap().payload.as_ref()).unwrap();
        payload
            .state_specs
            .insert("count".into(), pb::StateSpec::default());
        t.spec.as_mut().unwrap().payload = payload.encode_to_vec().into();
        insta::assert_snapshot!(err(&b.build()));
    }

    /// A splittable ParDo becomes Beam's three SDF components (run without
    /// splitting), and its requirement is accepted.
    #[test]
    fn splittable_dofn_is_expanded() {
        use prost::Message;
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let out = b.pardo("Read", &imp, "str");
        b.pardo("After", &out, "str");
        b.p.requirements =
            vec![oxbeam_model::urns::standard_requirements::REQUIRES_SPLITTABLE_DOFN.into()];
        let t =
            b.p.components
                .as_mut()
                .unwrap()
                .transforms
                .get_mut("Read")
                .unwrap();
        let mut payload =
            pb::ParDoPayload::decode(t.spec.as_ref().unwrap().payload.as_ref()).unwrap();
        payload.restriction_coder_id = "str".into();
        t.spec.as_mut().unwrap().payload = payload.encode_to_vec().into();
        let plan = crate::plan(&b.build(), &PlanOptions::default()).unwrap();
        let urns: Vec<String> = plan
            .steps()
            .iter()
            .filter_map(|s| match s {
                crate::Step::Stage(s) => Some(s),
                _ => None,
            })
            .flat_map(|s| {
                s.transforms
                    .iter()
                    .map(|id| {
                        s.descriptor.transforms[id]
                            .spec
                            .as_ref()
                            .unwrap()
                            .urn
                            .clone()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        use oxbeam_model::urns::standard_p_transforms::splittable_par_do_components as sdf;
        assert_eq!(
            urns,
            [
                sdf::PAIR_WITH_RESTRICTION,
                sdf::SPLIT_AND_SIZE_RESTRICTIONS,
                sdf::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS,
                oxbeam_model::urns::standard_p_transforms::primitives::PAR_DO,
            ]
        );
    }

    #[test]
    fn malformed_test_streams() {
        use crate::optimizer::testing::events::*;
        use prost::Message;
        let with = |events: Vec<pb::test_stream_payload::Event>| {
            let mut b = Builder::new();
            b.test_stream("Events", events);
            err(&b.build())
        };
        let mut out = vec![
            with(vec![elements("nope", &[("a", 1)])]),
            with(vec![watermark("", 10), watermark("", 5)]),
            with(vec![processing_time(-1)]),
            with(vec![pb::test_stream_payload::Event { event: None }]),
        ];
        let mut bad = elements("", &[("x", 1)]);
        if let Some(pb::test_stream_payload::event::Event::ElementEvent(e)) = &mut bad.event {
            e.elements[0].encoded_element = vec![0xff, 0xfe].into();
        }
        out.push(with(vec![bad]));
        let mut b = Builder::new();
        b.test_stream("Events", vec![]);
        let t =
            b.p.components
                .as_mut()
                .unwrap()
                .transforms
                .get_mut("Events")
                .unwrap();
        t.spec.as_mut().unwrap().payload = vec![0xff, 0xff].into();
        out.push(err(&b.build()));
        let mut b = Builder::new();
        b.test_stream("Events", vec![]);
        let t =
            b.p.components
                .as_mut()
                .unwrap()
                .transforms
                .get_mut("Events")
                .unwrap();
        let mut payload =
            pb::TestStreamPayload::decode(t.spec.as_ref().unwrap().payload.as_ref()).unwrap();
        payload.coder_id = "missing".into();
        t.spec.as_mut().unwrap().payload = payload.encode_to_vec().into();
        out.push(err(&b.p));
        payload.coder_id = "str".into();
        payload.endpoint = Some(oxbeam_model::pipeline::ApiServiceDescriptor {
            url: "localhost:12345".into(),
            ..Default::default()
        });
        let t =
            b.p.components
                .as_mut()
                .unwrap()
                .transforms
                .get_mut("Events")
                .unwrap();
        t.spec.as_mut().unwrap().payload = payload.encode_to_vec().into();
        out.push(err(&b.build()));
        insta::assert_snapshot!(out.join("\n"));
    }

    #[test]
    fn malformed_generators() {
        use oxbeam_model::oxbeam::GeneratePayload;
        use prost::Message;
        let with = |payload: GeneratePayload, coder: &str| {
            let mut b = Builder::new();
            b.generate("Gen", payload.encode_to_vec(), coder);
            err(&b.build())
        };
        let good = GeneratePayload {
            key_count: 3,
            ..Default::default()
        };
        let out = [
            with(good, "kv_varint"),
            with(good, "kv_str"),
            with(
                GeneratePayload {
                    key_count: 0,
                    ..good
                },
                "kv_varint",
            ),
            with(
                GeneratePayload {
                    event_time_skew_millis: -1,
                    ..good
                },
                "kv_varint",
            ),
        ];
        insta::assert_snapshot!(out.join("\n"));
    }

    #[test]
    fn malformed_file_watchers() {
        use oxbeam_model::oxbeam::WatchFilesPayload;
        use prost::Message;
        let with = |pattern: &str, coder: &str| {
            let mut b = Builder::new();
            let payload = WatchFilesPayload {
                pattern: pattern.into(),
                ..Default::default()
            };
            b.watch_files("Watch", payload.encode_to_vec(), coder);
            err(&b.build())
        };
        let mut b = Builder::new();
        b.watch_files("Watch", vec![0xff], "str");
        let out = [
            with("/in/*.txt", "kv_str"),
            with("", "str"),
            with("/in/[", "str"),
            err(&b.build()),
        ];
        insta::assert_snapshot!(out.join("\n"));
    }

    #[test]
    fn unsupported_requirement() {
        let mut b = Builder::new();
        b.p.requirements = vec![
            oxbeam_model::urns::standard_requirements::REQUIRES_TIME_SORTED_INPUT.into(),
            oxbeam_model::urns::standard_requirements::REQUIRES_ON_WINDOW_EXPIRATION.into(),
        ];
        insta::assert_snapshot!(err(&b.build()));
    }
}
