//! Accumulator compaction: combining inside a streaming GroupByKey.
//!
//! After combiner lifting, a GroupByKey buffers one accumulator per key and
//! window from every precombine bundle, and `merge_accumulators` after it
//! merges them all when the pane fires. Streaming bundles are small (a few
//! milliseconds of input each, to keep latency low), so by the end of a
//! window a key may have hundreds of accumulators buffered, and merging
//! them all is the bulk of the time between the watermark passing the
//! window and the pane reaching its consumers.
//!
//! A [`CompactionSpec`] lets the engine merge buffered accumulators while
//! the window is still open, with the pipeline's own CombineFn: a bundle
//! descriptor (data source → that `merge_accumulators` → data sink) that
//! takes `KV<key, Iterable<accumulator>>` and gives `KV<key, accumulator>`,
//! each output in its input's window. Merging is associative and
//! commutative, so replacing a window's buffered accumulators by their
//! merge never changes the pane (the values of a lifted grouping are only
//! ever merged) — it only moves the work ahead of the firing.

use std::sync::Arc;

use oxbeam_model::fn_execution::ProcessBundleDescriptor;
use oxbeam_model::urns::standard_p_transforms::combine_components as cc;

use crate::error::Result;
use crate::graph::Graph;
use crate::translate::{StageLayout, build_descriptor};

/// How a grouping has the SDK merge the accumulators it buffers.
#[derive(Debug, Clone)]
pub struct CompactionSpec {
    /// Environment of the CombineFn.
    pub environment_id: String,
    /// Its URN (selects the executor).
    pub environment_urn: String,
    /// The data source of [`CompactionSpec::descriptor`]: reads nested
    /// windowed `KV<key, Iterable<accumulator>>` (the grouping's output
    /// coder).
    pub source: String,
    /// Its data sink: nested windowed `KV<key, accumulator>`, one per input
    /// element, in the input's window.
    pub sink: String,
    /// Data source → `merge_accumulators` → data sink.
    pub descriptor: Arc<ProcessBundleDescriptor>,
}

/// The compaction spec of GroupByKey `gbk`, if its output goes only to a
/// lifted combine's `merge_accumulators`.
pub(crate) fn spec(g: &Graph, gbk: &str) -> Result<Option<Box<CompactionSpec>>> {
    let Some(output) = g
        .transforms
        .get(gbk)
        .and_then(|t| t.outputs.values().next())
    else {
        return Ok(None);
    };
    let consumers = g.consumers();
    let [merge] = consumers
        .get(output.as_str())
        .map_or(&[][..], Vec::as_slice)
    else {
        return Ok(None);
    };
    let t = &g.transforms[*merge];
    if t.urn != cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS || t.inputs.len() != 1 {
        return Ok(None);
    }
    let Some(merged) = t.outputs.values().next() else {
        return Ok(None);
    };
    let Some(env) = g.environments.get(&t.environment_id) else {
        return Ok(None);
    };
    let id = format!("compact-{gbk}");
    let source = format!("{id}/source");
    let sink = format!("{id}/sink");
    let descriptor = build_descriptor(
        g,
        &StageLayout {
            id: &id,
            transforms: std::slice::from_ref(&t.id),
            inputs: &[(source.clone(), output.clone())],
            outputs: &[(sink.clone(), merged.clone())],
            environment_id: &t.environment_id,
        },
    )?;
    Ok(Some(Box::new(CompactionSpec {
        environment_id: t.environment_id.clone(),
        environment_urn: env.urn.clone(),
        source,
        sink,
        descriptor: Arc::new(descriptor),
    })))
}
