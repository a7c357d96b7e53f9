//! Flatten unzipping: whoever reads a Flatten's output reads the union of its
//! inputs directly, so the Flatten itself copies nothing and disappears from
//! the plan. Shuffles and side inputs always read through Flattens; stages do
//! when the pass is enabled (otherwise a Flatten step materializes the union).

use std::collections::BTreeMap;

use crate::graph::{Graph, Kind};

/// The materialized PCollections whose union is `pcoll`: `pcoll` itself,
/// or, when it is a Flatten's output and `unzip` holds, the (recursively
/// resolved) inputs of that Flatten.
pub(crate) fn resolve(
    g: &Graph,
    producers: &BTreeMap<&str, &str>,
    pcoll: &str,
    unzip: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    resolve_into(g, producers, pcoll, unzip, &mut out, 0);
    out
}

fn resolve_into(
    g: &Graph,
    producers: &BTreeMap<&str, &str>,
    pcoll: &str,
    unzip: bool,
    out: &mut Vec<String>,
    depth: usize,
) {
    let flatten = producers
        .get(pcoll)
        .map(|t| &g.transforms[*t])
        .filter(|t| unzip && t.kind == Kind::Flatten && depth < 1000);
    match flatten {
        Some(t) => {
            for input in t.inputs.values() {
                resolve_into(g, producers, input, true, out, depth + 1);
            }
        }
        // A PCollection flattened twice contributes its elements twice
        // (Beam's Flatten is a bag union), so repeats are kept.
        None => out.push(pcoll.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use crate::PlanOptions;
    use crate::optimizer::testing::*;

    fn flatten_pipeline() -> Pipeline {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let a = b.pardo("A", &imp, "kv_str");
        let c = b.pardo("B", &imp, "kv_str");
        let f = b.flatten("Flatten", &[&a, &c], "kv_str");
        let _d = b.pardo("Consume", &f, "str");
        let _g = b.gbk("Group", &f);
        b.build()
    }

    #[test]
    fn readers_read_flatten_inputs_directly() {
        insta::assert_snapshot!(plan_text(&flatten_pipeline(), PlanOptions::default()));
    }

    #[test]
    fn flatten_step_when_unzipping_is_disabled() {
        let opts = PlanOptions {
            flatten_unzip: false,
            ..PlanOptions::default()
        };
        insta::assert_snapshot!(plan_text(&flatten_pipeline(), opts));
    }
}
