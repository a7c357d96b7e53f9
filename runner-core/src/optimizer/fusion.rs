//! Fusion: groups executable transforms into stages that run as one
//! `ProcessBundleDescriptor`, passing values instead of bytes between them.
//!
//! Producer–consumer fusion joins a transform with the producer of its main
//! input; sibling fusion joins transforms reading the same PCollection, so it
//! is read once. Both need the same environment, and never make a stage
//! depend on itself: fusion breaks at runner primitives (GroupByKey, Flatten,
//! Impulse), before stateful ParDos (their input is partitioned by key, so
//! it must be a stage input), before a splittable DoFn's
//! process-sized-elements-and-restrictions (as Beam's runners do: the split
//! restrictions are materialized, so the runner can spread them over
//! bundles and workers instead of processing them all where they were
//! split), at side inputs (a side input must be fully materialized before
//! its reader runs), in streaming pipelines before a ParDo with side inputs
//! whose main input has fixed or sliding windows (the runner holds each
//! element back until the side inputs are ready for its window, which it
//! reads from the stage's input) and where a merge would create a cycle
//! between stages.
//! With fusion disabled every executable transform is its own stage.

use std::collections::BTreeMap;

use oxbeam_model::pipeline::is_bounded;
use oxbeam_model::urns::standard_p_transforms::splittable_par_do_components as sdf;

use crate::graph::Graph;
use crate::windowing::WindowFn;

/// Union-find over transform indices.
#[derive(Clone)]
struct Sets {
    parent: Vec<usize>,
}

impl Sets {
    fn find(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }
}

/// Partitions the executable transforms of `g` into stages, each listed in
/// `topo` order; stages are ordered by their first transform.
pub(crate) fn fuse(g: &Graph, topo: &[String], enabled: bool) -> Vec<Vec<String>> {
    let index: BTreeMap<&str, usize> = topo
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut sets = Sets {
        parent: (0..topo.len()).collect(),
    };
    if enabled {
        let streaming = g
            .pcollections
            .values()
            .any(|p| p.is_bounded == is_bounded::Enum::Unbounded as i32);
        let starts_stage = |id: &str| starts_stage(g, id, streaming);
        let producers = g.producers();
        let consumers = g.consumers();
        let edges = edges(g, topo, &index, &producers);
        for (i, id) in topo.iter().enumerate() {
            let t = &g.transforms[id];
            if !t.is_executable() || starts_stage(id) {
                continue;
            }
            for p in t.main_inputs() {
                // Producer–consumer.
                if let Some(&prod) = producers.get(p) {
                    let pt = &g.transforms[prod];
                    if pt.is_executable() && pt.environment_id == t.environment_id {
                        try_merge(&mut sets, &edges, index[prod], i);
                    }
                }
                // Siblings reading the same PCollection as a main input.
                for &other in consumers.get(p).into_iter().flatten() {
                    let ot = &g.transforms[other];
                    let j = index[other];
                    if j < i
                        && ot.is_executable()
                        && !starts_stage(other)
                        && ot.environment_id == t.environment_id
                        && ot.main_inputs().any(|q| q == p)
                    {
                        try_merge(&mut sets, &edges, j, i);
                    }
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, id) in topo.iter().enumerate() {
        if g.transforms[id].is_executable() {
            groups.entry(sets.find(i)).or_default().push(id.clone());
        }
    }
    let mut out: Vec<Vec<String>> = groups.into_values().collect();
    out.sort_by_key(|s| index[s[0].as_str()]);
    out
}

/// Whether transform `id` must read its main input as a stage input: a
/// stateful ParDo (the runner partitions that input by key), a splittable
/// DoFn's process step (the runner distributes its restrictions), or in a
/// `streaming` pipeline a ParDo reading side inputs by window (the runner
/// holds its input back window by window).
fn starts_stage(g: &Graph, id: &str, streaming: bool) -> bool {
    g.transforms[id].urn == sdf::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS
        || crate::state::is_stateful(g, id)
        || (streaming && reads_side_inputs_by_window(g, id))
}

/// Whether transform `id` has side inputs and a main input in fixed or
/// sliding windows.
fn reads_side_inputs_by_window(g: &Graph, id: &str) -> bool {
    let t = &g.transforms[id];
    t.side_inputs().next().is_some()
        && t.main_inputs().any(|p| {
            g.pcollections
                .get(p)
                .and_then(|pc| g.windowing_strategies.get(&pc.windowing_strategy_id))
                .is_some_and(|ws| {
                    matches!(
                        ws.window_fn,
                        WindowFn::Fixed { .. } | WindowFn::Sliding { .. }
                    )
                })
        })
}

/// A data dependency between transforms `from` → `to`, and whether it is a
/// side input.
type Edge = (usize, usize, bool);

fn edges(
    g: &Graph,
    topo: &[String],
    index: &BTreeMap<&str, usize>,
    producers: &BTreeMap<&str, &str>,
) -> Vec<Edge> {
    let mut e = Vec::new();
    for (i, id) in topo.iter().enumerate() {
        let t = &g.transforms[id];
        for p in t.main_inputs() {
            if let Some(prod) = producers.get(p) {
                e.push((index[prod], i, false));
            }
        }
        for (_, p) in t.side_inputs() {
            if let Some(prod) = producers.get(p) {
                e.push((index[prod], i, true));
            }
        }
    }
    e
}

fn try_merge(sets: &mut Sets, edges: &[Edge], a: usize, b: usize) {
    let (ra, rb) = (sets.find(a), sets.find(b));
    if ra == rb {
        return;
    }
    let before = sets.clone();
    let (lo, hi) = (ra.min(rb), ra.max(rb));
    sets.parent[hi] = lo;
    if !acyclic(sets, edges) {
        *sets = before;
    }
}

/// Whether the graph of stages (sets) is acyclic, and no stage reads a side
/// input it produces itself.
fn acyclic(sets: &Sets, edges: &[Edge]) -> bool {
    let n = sets.parent.len();
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for &(from, to, side) in edges {
        let (f, t) = (sets.find(from), sets.find(to));
        if f == t {
            if side {
                return false;
            }
            continue;
        }
        adj[f].push(t);
        indegree[t] += 1;
    }
    let mut ready: Vec<usize> = (0..n)
        .filter(|&i| sets.find(i) == i && indegree[i] == 0)
        .collect();
    let nodes = (0..n).filter(|&i| sets.find(i) == i).count();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &j in &adj[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(j);
            }
        }
    }
    seen == nodes
}

#[cfg(test)]
mod tests {
    use crate::PlanOptions;
    use crate::optimizer::testing::*;

    #[test]
    fn fuses_producer_consumer_chains_and_breaks_at_shuffles() {
        let p = word_count(Windowing::Fixed);
        insta::assert_snapshot!(plan_text(&p, PlanOptions::default()));
    }

    #[test]
    fn unfused_plan_has_one_stage_per_transform() {
        let p = word_count(Windowing::Fixed);
        let opts = PlanOptions {
            fusion: false,
            ..PlanOptions::default()
        };
        insta::assert_snapshot!(plan_text(&p, opts));
    }

    #[test]
    fn fuses_siblings_after_a_shuffle() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let kv = b.pardo("MakeKV", &imp, "kv_str");
        let g = b.gbk("Group", &kv);
        let _a = b.pardo("Left", &g, "str");
        let _c = b.pardo("Right", &g, "str");
        insta::assert_snapshot!(plan_text(&b.build(), PlanOptions::default()));
    }

    /// Makes transform `id` of `b` stateful: a bag state and an event-time
    /// and a processing-time timer family.
    fn make_stateful(b: &mut Builder, id: &str) {
        use oxbeam_model::pipeline as pb;
        use prost::Message;
        let t =
            b.p.components
                .as_mut()
                .unwrap()
                .transforms
                .get_mut(id)
                .unwrap();
        let mut payload =
            pb::ParDoPayload::decode(t.spec.as_ref().unwrap().payload.as_ref()).unwrap();
        payload.state_specs.insert(
            "buffer".into(),
            pb::StateSpec {
                spec: Some(pb::state_spec::Spec::BagSpec(pb::BagStateSpec {
                    element_coder_id: "varint".into(),
                })),
                protocol: None,
            },
        );
        for (family, domain) in [
            ("flush", pb::time_domain::Enum::EventTime),
            ("tick", pb::time_domain::Enum::ProcessingTime),
        ] {
            payload.timer_family_specs.insert(
                family.into(),
                pb::TimerFamilySpec {
                    time_domain: domain as i32,
                    timer_family_coder_id: "str".into(),
                },
            );
        }
        t.spec.as_mut().unwrap().payload = payload.encode_to_vec().into();
    }

    /// A stateful ParDo starts a new stage (its input is partitioned by key);
    /// what follows it fuses into its stage; the stage records its state.
    #[test]
    fn stateful_pardo_starts_a_stage() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let kv = b.pardo("MakeKV", &imp, "kv_str");
        let sibling = b.pardo("Sibling", &kv, "str");
        let counted = b.pardo("Count", &kv, "kv_str");
        let _after = b.pardo("Format", &counted, "str");
        let _ = sibling;
        make_stateful(&mut b, "Count");
        insta::assert_snapshot!(plan_text(&b.build(), PlanOptions::default()));
    }

    /// A splittable DoFn's process step starts a new stage reading the
    /// materialized split restrictions (so the runner can spread them over
    /// workers); what follows it fuses into its stage.
    #[test]
    fn splittable_process_starts_a_stage() {
        use oxbeam_model::pipeline as pb;
        use prost::Message;
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let source = b.pardo("EmitSource", &imp, "str");
        let lines = b.pardo("Read", &source, "str");
        let words = b.pardo("Split", &lines, "str");
        let _pairs = b.pardo("PairWithOne", &words, "kv_str");
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
        insta::assert_snapshot!(plan_text(&b.build(), PlanOptions::default()));
    }

    #[test]
    fn does_not_fuse_across_environments() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let a = b.pardo("Native", &imp, "str");
        let _c = b.pardo_in("Other", &a, "str", "other-env", &[]);
        insta::assert_snapshot!(plan_text(&b.build(), PlanOptions::default()));
    }
}
