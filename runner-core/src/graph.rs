//! The pipeline graph the optimizer works on: leaf transforms (a closed enum
//! of primitives plus an extension escape hatch), PCollections, coders,
//! windowing strategies and environments, with no protobuf types.

use std::collections::{BTreeMap, BTreeSet};

use crate::coder::CoderSpec;
use crate::windowing::WindowingStrategy;

/// What a transform is, for the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Runner primitive: emits one empty element.
    Impulse,
    /// Runs user code on each element of its main input.
    ParDo {
        /// Local names of inputs that are side inputs.
        side_inputs: BTreeSet<String>,
        /// Declares state or timers.
        stateful: bool,
        /// A splittable DoFn.
        splittable: bool,
    },
    /// Runner primitive: groups by key and window.
    GroupByKey,
    /// Runner primitive: union of its inputs.
    Flatten,
    /// Assigns windows (executed by the SDK environment).
    WindowInto,
    /// The combine-per-key composite, kept whole for combiner lifting.
    CombinePerKey {
        /// Accumulator coder id from the `CombinePayload`.
        accumulator_coder_id: String,
        /// Its leaves (GroupByKey, then combine_grouped_values), in order.
        expansion: Vec<Transform>,
    },
    /// One of the combine components (precombine, merge, extract, grouped values).
    CombineComponent,
    /// Runner primitive: a scripted stream of elements, watermark and
    /// processing-time events (`beam:transform:teststream:v1`).
    TestStream(TestStreamSpec),
    /// Runner-executed synthetic source (`oxbeam:transform:generate:v1`).
    Generate(crate::plan::GenerateSpec),
    /// Runner-executed Redis stream source (`oxbeam:transform:redis_read:v1`).
    RedisRead(crate::redis::RedisReadSpec),
    /// Runner-executed Redis stream sink (`oxbeam:transform:redis_write:v1`).
    RedisWrite(crate::redis::RedisWriteSpec),
    /// Runner-executed file-watching source (`oxbeam:transform:watch_files:v1`).
    WatchFiles(crate::watch::WatchFilesSpec),
    /// Any other leaf; executable if it has an environment.
    Extension,
}

/// A decoded `TestStreamPayload`; elements still in the payload coder's
/// outer encoding (validation decodes them, planning re-encodes them nested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestStreamSpec {
    pub coder_id: String,
    pub events: Vec<crate::plan::TestStreamEvent>,
    /// An external event service (not supported).
    pub has_endpoint: bool,
}

/// One transform of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transform {
    pub id: String,
    pub unique_name: String,
    pub kind: Kind,
    pub urn: String,
    pub payload: Vec<u8>,
    /// Local name → PCollection id (side inputs included).
    pub inputs: BTreeMap<String, String>,
    /// Local name → PCollection id.
    pub outputs: BTreeMap<String, String>,
    /// Empty for runner-executed transforms.
    pub environment_id: String,
}

impl Transform {
    /// Transforms the SDK environment runs (fused into stages).
    pub fn is_executable(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Impulse
                | Kind::GroupByKey
                | Kind::Flatten
                | Kind::CombinePerKey { .. }
                | Kind::TestStream(_)
                | Kind::Generate(_)
                | Kind::RedisRead(_)
                | Kind::RedisWrite(_)
                | Kind::WatchFiles(_)
        )
    }

    /// Ids of the PCollections this transform reads as main inputs.
    pub fn main_inputs(&self) -> impl Iterator<Item = &str> {
        let side = match &self.kind {
            Kind::ParDo { side_inputs, .. } => Some(side_inputs),
            _ => None,
        };
        self.inputs
            .iter()
            .filter(move |(local, _)| side.is_none_or(|s| !s.contains(*local)))
            .map(|(_, p)| p.as_str())
    }

    /// `(local name, PCollection id)` of each side input.
    pub fn side_inputs(&self) -> impl Iterator<Item = (&str, &str)> {
        let side = match &self.kind {
            Kind::ParDo { side_inputs, .. } => Some(side_inputs),
            _ => None,
        };
        self.inputs
            .iter()
            .filter(move |(local, _)| side.is_some_and(|s| s.contains(*local)))
            .map(|(l, p)| (l.as_str(), p.as_str()))
    }

    /// For error messages: `transform 'name' (id t)`.
    pub fn describe(&self) -> String {
        if self.unique_name.is_empty() || self.unique_name == self.id {
            format!("transform '{}'", self.id)
        } else {
            format!("transform '{}' (id {})", self.unique_name, self.id)
        }
    }
}

/// A PCollection of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PCollection {
    pub unique_name: String,
    pub coder_id: String,
    pub windowing_strategy_id: String,
    /// `IsBounded` as its proto number (kept for descriptors).
    pub is_bounded: i32,
}

/// An environment: its URN, and the encoded proto for descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Environment {
    pub urn: String,
    pub raw: Vec<u8>,
}

/// The whole graph.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    /// Leaf transforms (and combine composites before lifting), by id.
    pub transforms: BTreeMap<String, Transform>,
    /// Order the SDK applied the leaves in; ties in topological sorting
    /// follow it so plans are stable.
    pub order: Vec<String>,
    pub pcollections: BTreeMap<String, PCollection>,
    pub coders: BTreeMap<String, CoderSpec>,
    pub windowing_strategies: BTreeMap<String, WindowingStrategy>,
    /// Encoded `WindowingStrategy` protos, re-emitted into descriptors.
    pub raw_windowing_strategies: BTreeMap<String, Vec<u8>>,
    pub environments: BTreeMap<String, Environment>,
    pub requirements: Vec<String>,
}

impl Graph {
    /// The transform producing each PCollection.
    pub fn producers(&self) -> BTreeMap<&str, &str> {
        let mut m = BTreeMap::new();
        for t in self.transforms.values() {
            for p in t.outputs.values() {
                m.insert(p.as_str(), t.id.as_str());
            }
        }
        m
    }

    /// The transforms reading each PCollection (main or side), in graph order.
    pub fn consumers(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut m: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for id in &self.order {
            if let Some(t) = self.transforms.get(id) {
                for p in t.inputs.values() {
                    let v = m.entry(p.as_str()).or_default();
                    if v.last() != Some(&t.id.as_str()) {
                        v.push(t.id.as_str());
                    }
                }
            }
        }
        m
    }

    /// A fresh id starting with `base` that no coder, PCollection or
    /// transform uses.
    pub fn fresh_id(&self, base: &str) -> String {
        let taken = |s: &str| {
            self.coders.contains_key(s)
                || self.pcollections.contains_key(s)
                || self.transforms.contains_key(s)
                || self.windowing_strategies.contains_key(s)
        };
        if !taken(base) {
            return base.to_string();
        }
        (2..)
            .map(|i| format!("{base}#{i}"))
            .find(|s| !taken(s))
            .unwrap_or_default()
    }

    /// Adds a coder with this spec (reusing an identical one) and returns its id.
    pub fn add_coder(&mut self, base: &str, spec: CoderSpec) -> String {
        if let Some((id, _)) = self.coders.iter().find(|(_, s)| **s == spec) {
            return id.clone();
        }
        let id = self.fresh_id(base);
        self.coders.insert(id.clone(), spec);
        id
    }

    /// The id of a coder equal to `id` with every coder the runner does not
    /// know wrapped in `beam:coder:length_prefix:v1` (adding the wrappers),
    /// as Beam's runners do, so the runner can find element boundaries and
    /// group by their bytes. Coders already under a length prefix and
    /// unknown coders' components are left alone. Missing ids are returned
    /// unchanged (validation reports them).
    pub fn length_prefix_unknown(&mut self, id: &str) -> String {
        self.length_prefix_unknown_at(id, 0, &mut BTreeMap::new())
    }

    /// `done` holds the answer for each coder id already visited: a coder
    /// shared by several components (or, in a malformed proto, its own
    /// component) is rewritten once, not once per path to it, which grows
    /// exponentially with the nesting.
    fn length_prefix_unknown_at(
        &mut self,
        id: &str,
        depth: usize,
        done: &mut BTreeMap<String, String>,
    ) -> String {
        if let Some(known) = done.get(id) {
            return known.clone();
        }
        let rewritten = self.length_prefix_unknown_once(id, depth, done);
        done.insert(id.to_string(), rewritten.clone());
        rewritten
    }

    fn length_prefix_unknown_once(
        &mut self,
        id: &str,
        depth: usize,
        done: &mut BTreeMap<String, String>,
    ) -> String {
        let Some(spec) = self.coders.get(id).cloned() else {
            return id.to_string();
        };
        if depth > oxbeam_model::coders::MAX_CODER_DEPTH
            || spec.urn == oxbeam_model::urns::standard_coders::LENGTH_PREFIX
        {
            return id.to_string();
        }
        // A row coder whose schema the runner cannot read (e.g. Beam
        // Python's `pythonsdk_any` logical type, pickled in the row) is as
        // opaque as an unknown coder.
        let opaque_row = spec.urn == oxbeam_model::urns::standard_coders::ROW
            && crate::coder::build_coder(id, &self.coders).is_err();
        if !crate::coder::is_known_urn(&spec.urn) || opaque_row {
            return self.add_coder(
                &format!("{id}/length_prefixed"),
                CoderSpec {
                    urn: oxbeam_model::urns::standard_coders::LENGTH_PREFIX.to_string(),
                    payload: vec![],
                    components: vec![id.to_string()],
                },
            );
        }
        let components: Vec<String> = spec
            .components
            .iter()
            .map(|c| self.length_prefix_unknown_at(c, depth + 1, done))
            .collect();
        if components == spec.components {
            return id.to_string();
        }
        self.add_coder(
            &format!("{id}/length_prefixed"),
            CoderSpec { components, ..spec },
        )
    }

    /// Leaf transforms in topological order (producers first), ties broken
    /// by application order.
    ///
    /// Returns the id of a transform on a cycle if there is one.
    pub fn topological_order(&self) -> Result<Vec<String>, String> {
        let producers = self.producers();
        let mut indegree: BTreeMap<&str, usize> = BTreeMap::new();
        let mut downstream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in self.transforms.values() {
            let deps: BTreeSet<&str> = t
                .inputs
                .values()
                .filter_map(|p| producers.get(p.as_str()).copied())
                .collect();
            indegree.insert(t.id.as_str(), deps.len());
            for d in deps {
                downstream.entry(d).or_default().push(t.id.as_str());
            }
        }
        let rank: BTreeMap<&str, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let key = |id: &str| (rank.get(id).copied().unwrap_or(usize::MAX), id.to_string());
        let mut ready: BTreeSet<(usize, String)> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(id, _)| key(id))
            .collect();
        let mut out = Vec::with_capacity(indegree.len());
        while let Some(next) = ready.pop_first() {
            let id = next.1;
            if let Some(ds) = downstream.get(id.as_str()) {
                for d in ds {
                    let n = indegree
                        .get_mut(d)
                        .expect("every transform has an indegree");
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(key(d));
                    }
                }
            }
            out.push(id);
        }
        if out.len() < indegree.len() {
            let stuck = indegree
                .iter()
                .filter(|(id, _)| !out.iter().any(|o| o == *id))
                .map(|(id, _)| id.to_string())
                .next()
                .unwrap_or_default();
            return Err(stuck);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxbeam_model::urns::standard_coders as sc;

    fn spec(urn: &str, components: &[&str]) -> CoderSpec {
        CoderSpec {
            urn: urn.to_string(),
            payload: vec![],
            components: components.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// 60 levels of `KV<c, c>` over an unknown coder: every coder is
    /// rewritten once (2^60 paths lead to the bottom one), and the result
    /// wraps the unknown coder in a length prefix at every level.
    #[test]
    fn shared_and_cyclic_coders_are_rewritten_once() {
        let mut g = Graph::default();
        g.coders
            .insert("c0".into(), spec("example:coder:opaque:v1", &[]));
        for i in 1..=60 {
            let below = format!("c{}", i - 1);
            g.coders
                .insert(format!("c{i}"), spec(sc::KV, &[&below, &below]));
        }
        let top = g.length_prefix_unknown("c60");
        let mut id = top;
        for _ in 0..60 {
            let s = &g.coders[&id];
            assert_eq!(s.urn, sc::KV);
            assert_eq!(s.components[0], s.components[1]);
            id = s.components[0].clone();
        }
        assert_eq!(g.coders[&id].urn, sc::LENGTH_PREFIX);
        assert_eq!(g.coders[&id].components, ["c0"]);
        // A coder that is its own component (a malformed proto) ends too.
        g.coders
            .insert("loop".into(), spec(sc::KV, &["loop", "loop"]));
        g.length_prefix_unknown("loop");
    }
}
