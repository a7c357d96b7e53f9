//! Side inputs: every PCollection read as a side input is a materialization
//! point. Its producer writes it out in full; the reading stage depends on it
//! and starts only when it is complete (in batch: when the producer's output
//! watermark reaches +∞), then reads it through `SideInputs`.

use std::collections::BTreeMap;

use crate::graph::Graph;
use crate::optimizer::flatten_unzip;
use crate::plan::StageSideInput;

/// The side inputs read by the transforms of one stage, with the
/// materialized PCollections each one is the union of.
pub(crate) fn materializations(
    g: &Graph,
    producers: &BTreeMap<&str, &str>,
    stage_transforms: &[String],
) -> Vec<StageSideInput> {
    let mut out = Vec::new();
    for id in stage_transforms {
        let t = &g.transforms[id];
        for (local, pcoll) in t.side_inputs() {
            out.push(StageSideInput {
                transform: id.clone(),
                local_name: local.to_string(),
                pcollection: pcoll.to_string(),
                reads: flatten_unzip::resolve(g, producers, pcoll, true),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::PlanOptions;
    use crate::optimizer::testing::*;

    #[test]
    fn side_input_breaks_fusion_and_orders_stages() {
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let main = b.pardo("Main", &imp, "str");
        let side = b.pardo("MakeSide", &imp, "str");
        let _out = b.pardo_in("UseSide", &main, "str", NATIVE_ENV, &[("lookup", &side)]);
        insta::assert_snapshot!(plan_text(&b.build(), PlanOptions::default()));
    }

    #[test]
    fn side_input_produced_downstream_of_main_stage() {
        // The side input is computed from the main input's own stage output:
        // the reader cannot be fused with its producer.
        let mut b = Builder::new();
        let imp = b.impulse("Impulse");
        let main = b.pardo("Main", &imp, "str");
        let side = b.pardo("Summarize", &main, "str");
        let _out = b.pardo_in("UseSide", &main, "str", NATIVE_ENV, &[("summary", &side)]);
        insta::assert_snapshot!(plan_text(&b.build(), PlanOptions::default()));
    }
}
