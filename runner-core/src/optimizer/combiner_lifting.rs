//! Combiner lifting: a combine-per-key composite becomes `precombine` (fused
//! before the shuffle, so each bundle shuffles one accumulator per key and
//! window), GroupByKey of the accumulators, then `merge_accumulators` and
//! `extract_outputs` after it. With merging windows (sessions) the
//! precombine folds values per unmerged window, and the GroupByKey merges
//! windows as it would the values, their accumulators then merged by
//! `merge_accumulators` (as Beam's FnApiRunner and DirectRunner lift).
//! Otherwise (disabled, or a trigger that counts elements) the composite is
//! replaced by its own leaves: GroupByKey then `combine_grouped_values`.

use std::collections::BTreeMap;

use oxbeam_model::urns::standard_coders;
use oxbeam_model::urns::standard_p_transforms::{combine_components as cc, primitives};

use crate::coder::CoderSpec;
use crate::error::{Error, Result};
use crate::graph::{Graph, Kind, PCollection, Transform};

/// Replaces every combine-per-key composite of `g`, lifted when `lift` and
/// possible.
pub(crate) fn apply(g: &mut Graph, lift: bool) -> Result<()> {
    let composites: Vec<String> = g
        .order
        .iter()
        .filter(|id| matches!(g.transforms[*id].kind, Kind::CombinePerKey { .. }))
        .cloned()
        .collect();
    for id in composites {
        let t = g
            .transforms
            .remove(&id)
            .ok_or_else(|| Error::Internal(format!("lost {id}")))?;
        let Kind::CombinePerKey {
            accumulator_coder_id,
            expansion,
        } = t.kind.clone()
        else {
            continue;
        };
        let replacement = match lift
            .then(|| liftable(g, &t, &accumulator_coder_id, &expansion))
            .flatten()
        {
            Some(env) => lifted(g, &t, &accumulator_coder_id, &env),
            None => expansion,
        };
        let pos = g
            .order
            .iter()
            .position(|x| *x == id)
            .unwrap_or(g.order.len());
        let ids: Vec<String> = replacement.iter().map(|t| t.id.clone()).collect();
        g.order.splice(pos..(pos + 1).min(g.order.len()), ids);
        for r in replacement {
            g.transforms.insert(r.id.clone(), r);
        }
    }
    Ok(())
}

/// The environment to run the lifted phases in, if the composite can be lifted.
fn liftable(g: &Graph, t: &Transform, acc: &str, expansion: &[Transform]) -> Option<String> {
    if t.inputs.len() != 1 || t.outputs.len() != 1 || !g.coders.contains_key(acc) {
        return None;
    }
    let input = g.pcollections.get(t.inputs.values().next()?)?;
    let ws = g.windowing_strategies.get(&input.windowing_strategy_id)?;
    let coder = g.coders.get(&input.coder_id)?;
    if !ws.allows_combiner_lifting()
        || coder.urn != standard_coders::KV
        || coder.components.len() != 2
    {
        return None;
    }
    let env = if t.environment_id.is_empty() {
        expansion
            .iter()
            .map(|l| &l.environment_id)
            .find(|e| !e.is_empty())?
            .clone()
    } else {
        t.environment_id.clone()
    };
    Some(env)
}

fn lifted(g: &mut Graph, t: &Transform, acc: &str, env: &str) -> Vec<Transform> {
    let (in_local, input) = t
        .inputs
        .iter()
        .next()
        .map(|(l, p)| (l.clone(), p.clone()))
        .unwrap_or_default();
    let input_pc = g.pcollections[&input].clone();
    let key = g.coders[&input_pc.coder_id].components[0].clone();
    let acc = &g.length_prefix_unknown(acc);
    let spec = |urn: &str, components: Vec<String>| CoderSpec {
        urn: urn.to_string(),
        payload: vec![],
        components,
    };
    let kv_acc = g.add_coder(
        &format!("{}/KV<key,accumulator>", t.id),
        spec(standard_coders::KV, vec![key.clone(), acc.to_string()]),
    );
    let iter_acc = g.add_coder(
        &format!("{}/Iterable<accumulator>", t.id),
        spec(standard_coders::ITERABLE, vec![acc.to_string()]),
    );
    let kv_iter = g.add_coder(
        &format!("{}/KV<key,Iterable<accumulator>>", t.id),
        spec(standard_coders::KV, vec![key, iter_acc]),
    );
    let name = |suffix: &str| {
        if t.unique_name.is_empty() {
            format!("{}/{suffix}", t.id)
        } else {
            format!("{}/{suffix}", t.unique_name)
        }
    };
    let pcoll = |g: &mut Graph, suffix: &str, coder_id: &str| {
        let id = g.fresh_id(&format!("{}/{suffix}", t.id));
        g.pcollections.insert(
            id.clone(),
            PCollection {
                unique_name: name(suffix),
                coder_id: coder_id.to_string(),
                windowing_strategy_id: input_pc.windowing_strategy_id.clone(),
                is_bounded: input_pc.is_bounded,
            },
        );
        id
    };
    let pre_out = pcoll(g, "Precombine.out", &kv_acc);
    let grouped = pcoll(g, "GroupAccumulators.out", &kv_iter);
    let merged = pcoll(g, "MergeAccumulators.out", &kv_acc);
    let step = |g: &Graph,
                suffix: &str,
                urn: &str,
                input: &str,
                output: BTreeMap<String, String>,
                env: &str| Transform {
        id: g.fresh_id(&format!("{}/{suffix}", t.id)),
        unique_name: name(suffix),
        kind: if urn == primitives::GROUP_BY_KEY {
            Kind::GroupByKey
        } else {
            Kind::CombineComponent
        },
        urn: urn.to_string(),
        payload: if urn == primitives::GROUP_BY_KEY {
            vec![]
        } else {
            t.payload.clone()
        },
        inputs: [(in_local.clone(), input.to_string())].into(),
        outputs: output,
        environment_id: env.to_string(),
    };
    let out = |p: &str| BTreeMap::from([("out".to_string(), p.to_string())]);
    vec![
        step(
            g,
            "Precombine",
            cc::COMBINE_PER_KEY_PRECOMBINE,
            &input,
            out(&pre_out),
            env,
        ),
        step(
            g,
            "Group",
            primitives::GROUP_BY_KEY,
            &pre_out,
            out(&grouped),
            "",
        ),
        step(
            g,
            "MergeAccumulators",
            cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS,
            &grouped,
            out(&merged),
            env,
        ),
        step(
            g,
            "ExtractOutputs",
            cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS,
            &merged,
            t.outputs.clone(),
            env,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use crate::PlanOptions;
    use crate::optimizer::testing::*;

    #[test]
    fn lifts_combine_per_key() {
        let p = word_count(Windowing::Global);
        insta::assert_snapshot!(plan_text(&p, PlanOptions::default()));
    }

    #[test]
    fn keeps_unlifted_path_when_disabled() {
        let p = word_count(Windowing::Global);
        let opts = PlanOptions {
            combiner_lifting: false,
            ..PlanOptions::default()
        };
        insta::assert_snapshot!(plan_text(&p, opts));
    }

    #[test]
    fn lifts_over_merging_windows() {
        let p = word_count(Windowing::Sessions);
        insta::assert_snapshot!(plan_text(&p, PlanOptions::default()));
    }
}
