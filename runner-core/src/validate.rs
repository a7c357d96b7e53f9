//! Checks a [`Graph`] before optimization, with errors that name the transform
//! or PCollection at fault.

use std::collections::BTreeMap;

use oxbeam_model::urns::standard_p_transforms::{deprecated_primitives, primitives};

use crate::coder::Coder;
use crate::error::{Error, Result};
use crate::graph::{Graph, Kind, Transform};
use crate::windowing::{WindowCoderKind, WindowFn};

/// Pipeline requirements (`Pipeline.requirements`) Oxbeam meets: splittable
/// DoFns run without runner-initiated splits.
pub const SUPPORTED_REQUIREMENTS: &[&str] =
    &[oxbeam_model::urns::standard_requirements::REQUIRES_SPLITTABLE_DOFN];

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
                return Err(Error::not_implemented(
                    what(),
                    "stateful DoFns (state and timers)",
                ));
            }
            if *splittable {
                return Err(Error::not_implemented(what(), "splittable DoFns"));
            }
        }
        Kind::WindowInto | Kind::CombineComponent => needs_env()?,
        Kind::CombinePerKey { .. } => {}
        Kind::Extension => {
            if t.environment_id.is_empty() {
                let known = [
                    deprecated_primitives::READ,
                    deprecated_primitives::CREATE_VIEW,
                    primitives::TEST_STREAM,
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
    if ws.merging && !matches!(ws.window_fn, WindowFn::Sessions { .. }) {
        return Err(Error::not_implemented(
            what(),
            format!("merging window fn {}", ws.window_fn),
        ));
    }
    if ws.trigger.is_some() {
        return Err(Error::not_implemented(what(), "non-default triggers"));
    }
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
        if !ws.compatible_with(out_ws) {
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
    fn unsupported_requirement() {
        let mut b = Builder::new();
        b.p.requirements = vec![
            oxbeam_model::urns::standard_requirements::REQUIRES_TIME_SORTED_INPUT.into(),
            oxbeam_model::urns::standard_requirements::REQUIRES_BUNDLE_FINALIZATION.into(),
        ];
        insta::assert_snapshot!(err(&b.build()));
    }
}
