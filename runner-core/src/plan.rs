//! [`ExecutionPlan`]: what a runner executes, with no protobuf in sight
//! (except each stage's descriptor, which is the executor contract).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use oxbeam_model::fn_execution::ProcessBundleDescriptor;

use crate::PlanOptions;
use crate::coder::Coder;
use crate::error::{Error, Result};
use crate::graph::{Graph, Kind};
use crate::optimizer::{flatten_unzip, side_inputs};
use crate::translate::{self, StageLayout};
use crate::windowing::WindowingStrategy;

/// A PCollection as runners see it.
#[derive(Debug, Clone)]
pub struct PCollectionInfo {
    /// Id in the pipeline.
    pub id: String,
    /// Human-readable name.
    pub unique_name: String,
    /// Coder of the element values.
    pub coder: Coder,
    /// Windowing strategy.
    pub windowing: WindowingStrategy,
    /// Whether the PCollection is bounded (`IsBounded`; unspecified counts
    /// as bounded). An unbounded one makes runners execute in streaming.
    pub bounded: bool,
}

/// Runner primitive: emits one empty element in the global window.
#[derive(Debug, Clone)]
pub struct ImpulseStep {
    /// Transform id.
    pub transform: String,
    /// Transform name.
    pub unique_name: String,
    /// The PCollection it emits into.
    pub output: String,
}

/// Runner primitive: groups by (encoded key, window).
#[derive(Debug, Clone)]
pub struct GroupByKeyStep {
    /// Transform id.
    pub transform: String,
    /// Transform name.
    pub unique_name: String,
    /// Materialized PCollections whose union is grouped (Flattens unzipped).
    pub inputs: Vec<String>,
    /// The grouped PCollection: `KV<key, Iterable<value>>`.
    pub output: String,
    /// Coder of the keys (to split a key from its value).
    pub key_coder: Coder,
    /// Windowing of the input: window encoding, merging, output time.
    pub windowing: WindowingStrategy,
    /// For a merging window fn the runner does not know: how to have the
    /// SDK merge windows (see [`crate::merge_windows`]).
    pub merge_windows: Option<crate::merge_windows::MergeWindowsSpec>,
    /// For the GroupByKey of a lifted combine: how to merge the
    /// accumulators it buffers before the pane fires (see
    /// [`crate::compaction`]).
    pub compaction: Option<Box<crate::compaction::CompactionSpec>>,
}

/// Runner primitive: the union of its inputs (present only when flatten
/// unzipping is disabled and a stage reads the Flatten's output).
#[derive(Debug, Clone)]
pub struct FlattenStep {
    /// Transform id.
    pub transform: String,
    /// Transform name.
    pub unique_name: String,
    /// Materialized inputs.
    pub inputs: Vec<String>,
    /// The union.
    pub output: String,
}

/// One element of a TestStream: its value and event timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampedElement {
    /// The value: in the plan, nested encoding with the TestStream's coder
    /// (the payload's outer encoding is re-encoded by the planner).
    pub encoded: Vec<u8>,
    /// Event time, in ms.
    pub timestamp_ms: i64,
}

/// One event of a TestStream script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStreamEvent {
    /// Emit elements (in the global window) on output `tag`.
    AddElements {
        /// Local output name of the TestStream transform.
        tag: String,
        /// The elements, in order.
        elements: Vec<TimestampedElement>,
    },
    /// Move the watermark of output `tag` to `to_ms`.
    AdvanceWatermark {
        /// Local output name of the TestStream transform.
        tag: String,
        /// The new watermark, in ms (`i64::MAX` or above Beam's max
        /// timestamp: +∞).
        to_ms: i64,
    },
    /// Advance the synthetic processing-time clock by `by_ms`.
    AdvanceProcessingTime {
        /// How far, in ms.
        by_ms: i64,
    },
}

/// Runner primitive: replays a scripted stream. Runners apply one event at
/// a time and let the pipeline quiesce before the next; processing time is
/// a synthetic clock moved only by its processing-time events; after the
/// last event every watermark goes to +∞.
#[derive(Debug, Clone)]
pub struct TestStreamStep {
    /// Transform id.
    pub transform: String,
    /// Transform name.
    pub unique_name: String,
    /// Coder of the element values.
    pub coder: Coder,
    /// Local output name (event tag) → PCollection id.
    pub outputs: BTreeMap<String, String>,
    /// The script, in order; every tag names a key of `outputs`.
    pub events: Vec<TestStreamEvent>,
}

/// The settings of a generator source (`oxbeam:transform:generate:v1`,
/// payload `GeneratePayload`; see its docs for the element and timestamp
/// formulas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSpec {
    /// Elements per second of processing time; 0: as fast as possible.
    pub rate_per_second: u64,
    /// Elements in total; `None`: unbounded.
    pub num_elements: Option<u64>,
    /// Distinct keys.
    pub key_count: u64,
    /// Lag of event time behind the generator's clock, in ms.
    pub event_time_skew_ms: i64,
    /// Largest random extra lag of one element, in ms.
    pub max_out_of_orderness_ms: i64,
    /// Seed of keys and jitter.
    pub seed: u64,
    /// Event time of element 0; `None`: the wall clock at start.
    pub start_timestamp_ms: Option<i64>,
}

/// Runner-executed synthetic source of `KV<varint key, varint seq>`.
#[derive(Debug, Clone)]
pub struct GenerateStep {
    /// Transform id.
    pub transform: String,
    /// Transform name.
    pub unique_name: String,
    /// The PCollection it emits into.
    pub output: String,
    /// What to generate.
    pub spec: GenerateSpec,
}

/// A main input of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInput {
    /// Id of the data-source transform in the descriptor.
    pub source_transform: String,
    /// The PCollection the source emits into (inside the stage).
    pub pcollection: String,
    /// The materialized PCollections whose union feeds it.
    pub reads: Vec<String>,
    /// Whether it is a Reshuffle's output: its elements are to be spread
    /// over the workers, however few chunks they take.
    pub redistributed: bool,
}

/// An output of a stage, read by later steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageOutput {
    /// Id of the data-sink transform in the descriptor.
    pub sink_transform: String,
    /// The PCollection the sink receives.
    pub pcollection: String,
}

/// A side input read by a transform of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSideInput {
    /// The reading transform's id.
    pub transform: String,
    /// Local name of the side input in the transform.
    pub local_name: String,
    /// The side PCollection as declared.
    pub pcollection: String,
    /// The materialized PCollections whose union it is.
    pub reads: Vec<String>,
}

/// A fused stage: transforms run together by one executor.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Stage id (also the descriptor id).
    pub id: String,
    /// Transform ids, producers first.
    pub transforms: Vec<String>,
    /// Transform names, parallel to `transforms`.
    pub transform_names: Vec<String>,
    /// Main inputs.
    pub inputs: Vec<StageInput>,
    /// Side inputs (the stage waits until they are ready: complete in
    /// batch, window by window in streaming).
    pub side_inputs: Vec<StageSideInput>,
    /// Outputs read by later steps.
    pub outputs: Vec<StageOutput>,
    /// Environment id in the pipeline.
    pub environment_id: String,
    /// Environment URN: selects the executor.
    pub environment_urn: String,
    /// The Beam descriptor handed to the executor.
    pub descriptor: Arc<ProcessBundleDescriptor>,
    /// Set when the stage runs stateful ParDos: its input must be
    /// partitioned by key, and it has user state and timers.
    pub state: Option<Arc<crate::state::StageState>>,
}

/// One step of a plan.
#[derive(Debug, Clone)]
pub enum Step {
    /// See [`ImpulseStep`].
    Impulse(ImpulseStep),
    /// See [`GroupByKeyStep`].
    GroupByKey(GroupByKeyStep),
    /// See [`FlattenStep`].
    Flatten(FlattenStep),
    /// See [`Stage`].
    Stage(Stage),
    /// See [`TestStreamStep`].
    TestStream(TestStreamStep),
    /// See [`GenerateStep`].
    Generate(GenerateStep),
    /// See [`RedisReadStep`](crate::RedisReadStep).
    RedisRead(crate::RedisReadStep),
    /// See [`WatchFilesStep`](crate::WatchFilesStep).
    WatchFiles(crate::WatchFilesStep),
    /// See [`RedisWriteStep`](crate::RedisWriteStep).
    RedisWrite(crate::RedisWriteStep),
}

impl Step {
    /// Materialized PCollections this step reads (main and side), in order.
    pub fn reads(&self) -> Vec<&str> {
        match self {
            Step::Impulse(_)
            | Step::TestStream(_)
            | Step::Generate(_)
            | Step::RedisRead(_)
            | Step::WatchFiles(_) => vec![],
            Step::RedisWrite(w) => w.inputs.iter().map(String::as_str).collect(),
            Step::GroupByKey(g) => g.inputs.iter().map(String::as_str).collect(),
            Step::Flatten(f) => f.inputs.iter().map(String::as_str).collect(),
            Step::Stage(s) => s
                .inputs
                .iter()
                .flat_map(|i| &i.reads)
                .chain(s.side_inputs.iter().flat_map(|i| &i.reads))
                .map(String::as_str)
                .collect(),
        }
    }

    /// Materialized PCollections this step produces.
    pub fn outputs(&self) -> Vec<&str> {
        match self {
            Step::Impulse(i) => vec![&i.output],
            Step::GroupByKey(g) => vec![&g.output],
            Step::Flatten(f) => vec![&f.output],
            Step::Stage(s) => s.outputs.iter().map(|o| o.pcollection.as_str()).collect(),
            Step::TestStream(t) => t.outputs.values().map(String::as_str).collect(),
            Step::Generate(g) => vec![&g.output],
            Step::RedisRead(r) => vec![&r.output],
            Step::WatchFiles(w) => vec![&w.output],
            Step::RedisWrite(_) => vec![],
        }
    }

    /// A short name for progress and errors.
    pub fn name(&self) -> String {
        match self {
            Step::Impulse(i) => format!("impulse '{}'", i.unique_name),
            Step::GroupByKey(g) => format!("group-by-key '{}'", g.unique_name),
            Step::Flatten(f) => format!("flatten '{}'", f.unique_name),
            Step::Stage(s) => format!("stage {}", s.id),
            Step::TestStream(t) => format!("test-stream '{}'", t.unique_name),
            Step::Generate(g) => format!("generate '{}'", g.unique_name),
            Step::RedisRead(r) => format!("redis-read '{}'", r.unique_name),
            Step::WatchFiles(w) => format!("watch-files '{}'", w.unique_name),
            Step::RedisWrite(w) => format!("redis-write '{}'", w.unique_name),
        }
    }
}

/// An optimized plan: steps in an order where each step comes after the
/// producers of everything it reads.
#[derive(Debug, Clone)]
pub struct ExecutionPlan {
    steps: Vec<Step>,
    pcollections: BTreeMap<String, PCollectionInfo>,
    options: PlanOptions,
}

impl ExecutionPlan {
    /// The steps, producers first.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Every PCollection of the plan, by id.
    pub fn pcollections(&self) -> &BTreeMap<String, PCollectionInfo> {
        &self.pcollections
    }

    /// A PCollection by id.
    pub fn pcollection(&self, id: &str) -> Option<&PCollectionInfo> {
        self.pcollections.get(id)
    }

    /// The options the plan was made with.
    pub fn options(&self) -> &PlanOptions {
        &self.options
    }

    /// Whether the plan needs a streaming engine: it has a TestStream, a
    /// generator source, Redis stream IO or an unbounded PCollection.
    pub fn is_streaming(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                Step::TestStream(_)
                    | Step::Generate(_)
                    | Step::RedisRead(_)
                    | Step::RedisWrite(_)
                    | Step::WatchFiles(_)
            )
        }) || self.pcollections.values().any(|p| !p.bounded)
    }

    /// Index of the step producing each materialized PCollection.
    pub fn producers(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            for o in s.outputs() {
                m.insert(o, i);
            }
        }
        m
    }
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

impl fmt::Display for ExecutionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "ExecutionPlan: {} steps (fusion {}, combiner lifting {}, flatten unzipping {})",
            self.steps.len(),
            on(o.fusion),
            on(o.combiner_lifting),
            on(o.flatten_unzip)
        )?;
        let union = |reads: &[String]| -> String {
            match reads {
                [] => "(nothing)".to_string(),
                [one] => one.clone(),
                many => format!("union({})", many.join(", ")),
            }
        };
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Impulse(s) => {
                    writeln!(f, "[{i}] Impulse '{}' -> {}", s.unique_name, s.output)?
                }
                Step::Flatten(s) => writeln!(
                    f,
                    "[{i}] Flatten '{}': {} -> {}",
                    s.unique_name,
                    union(&s.inputs),
                    s.output
                )?,
                Step::GroupByKey(s) => writeln!(
                    f,
                    "[{i}] GroupByKey '{}' [{}{}]: {} -> {}",
                    s.unique_name,
                    s.windowing,
                    if s.windowing.merging { ", merging" } else { "" },
                    union(&s.inputs),
                    s.output
                )?,
                Step::TestStream(t) => {
                    writeln!(
                        f,
                        "[{i}] TestStream '{}' ({}, {} events) -> {}",
                        t.unique_name,
                        t.coder.urn(),
                        t.events.len(),
                        t.outputs
                            .iter()
                            .map(|(tag, p)| format!("{tag}: {p}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )?;
                    for e in &t.events {
                        match e {
                            TestStreamEvent::AddElements { tag, elements } => {
                                let ts: Vec<String> = elements
                                    .iter()
                                    .map(|e| e.timestamp_ms.to_string())
                                    .collect();
                                writeln!(
                                    f,
                                    "      + {} elements to {tag} @[{}]",
                                    elements.len(),
                                    ts.join(", ")
                                )?
                            }
                            TestStreamEvent::AdvanceWatermark { tag, to_ms } => {
                                writeln!(f, "      watermark of {tag} -> {to_ms}")?
                            }
                            TestStreamEvent::AdvanceProcessingTime { by_ms } => {
                                writeln!(f, "      processing time +{by_ms}ms")?
                            }
                        }
                    }
                }
                Step::Generate(g) => {
                    let s = &g.spec;
                    writeln!(
                        f,
                        "[{i}] Generate '{}' ({} elements, {}/s, {} keys, skew {}ms, out of order {}ms, seed {}) -> {}",
                        g.unique_name,
                        s.num_elements
                            .map_or("unbounded".to_string(), |n| n.to_string()),
                        s.rate_per_second,
                        s.key_count,
                        s.event_time_skew_ms,
                        s.max_out_of_orderness_ms,
                        s.seed,
                        g.output
                    )?;
                }
                Step::RedisRead(r) => {
                    let s = &r.spec;
                    writeln!(
                        f,
                        "[{i}] RedisRead '{}' ({} stream {:?}, checkpoint {:?}, batch {}) -> {}",
                        r.unique_name, s.url, s.stream, s.checkpoint_key, s.batch_size, r.output
                    )?;
                }
                Step::WatchFiles(w) => {
                    let s = &w.spec;
                    writeln!(
                        f,
                        "[{i}] WatchFiles '{}' ({:?} every {} ms, stop after idle {:?} ms, max files {:?}) -> {}",
                        w.unique_name,
                        s.pattern,
                        s.poll_interval_ms,
                        s.stop_after_idle_ms,
                        s.max_files,
                        w.output
                    )?;
                }
                Step::RedisWrite(w) => {
                    writeln!(
                        f,
                        "[{i}] RedisWrite '{}' ({} stream {:?}) <- {}",
                        w.unique_name,
                        w.spec.url,
                        w.spec.stream,
                        union(&w.inputs)
                    )?;
                }
                Step::Stage(s) => {
                    writeln!(
                        f,
                        "[{i}] Stage {} on {} ({})",
                        s.id, s.environment_urn, s.environment_id
                    )?;
                    for name in &s.transform_names {
                        writeln!(f, "      | {name}")?;
                    }
                    for inp in &s.inputs {
                        let src = union(&inp.reads);
                        if src == inp.pcollection {
                            writeln!(f, "      in:   {}", inp.pcollection)?;
                        } else {
                            writeln!(f, "      in:   {} <- {src}", inp.pcollection)?;
                        }
                    }
                    for si in &s.side_inputs {
                        writeln!(
                            f,
                            "      side: {} of {} <- {} (materialized)",
                            si.local_name,
                            si.transform,
                            union(&si.reads)
                        )?;
                    }
                    for out in &s.outputs {
                        writeln!(f, "      out:  {}", out.pcollection)?;
                    }
                    if let Some(state) = &s.state {
                        writeln!(f, "      state: {state}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Builds the plan from an optimized graph and its stages.
pub(crate) fn assemble(
    g: &Graph,
    topo: &[String],
    stages: Vec<Vec<String>>,
    options: &PlanOptions,
) -> Result<ExecutionPlan> {
    let producers = g.producers();
    let rank: BTreeMap<&str, usize> = topo
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    // Each step with the rank of its first transform, for stable ordering.
    let mut steps: Vec<(usize, Step)> = Vec::new();
    for st in &stages {
        let set: BTreeSet<&str> = st.iter().map(String::as_str).collect();
        let mut inputs: Vec<StageInput> = Vec::new();
        for id in st {
            for p in g.transforms[id].main_inputs() {
                let internal = producers.get(p).is_some_and(|prod| set.contains(prod));
                if !internal && !inputs.iter().any(|i| i.pcollection == p) {
                    let redistributed = producers.get(p).is_some_and(|prod| {
                        g.transforms[*prod].urn
                            == oxbeam_model::urns::standard_p_transforms::composites::RESHUFFLE
                    });
                    inputs.push(StageInput {
                        source_transform: String::new(),
                        pcollection: p.to_string(),
                        reads: flatten_unzip::resolve(g, &producers, p, options.flatten_unzip),
                        redistributed,
                    });
                }
            }
        }
        let side = side_inputs::materializations(g, &producers, st);
        let first = st.first().map_or(usize::MAX, |id| rank[id.as_str()]);
        let env = g.transforms[&st[0]].environment_id.clone();
        steps.push((
            first,
            Step::Stage(Stage {
                id: String::new(),
                transforms: st.clone(),
                transform_names: st.iter().map(|id| display_name(g, id)).collect(),
                inputs,
                side_inputs: side,
                outputs: vec![],
                environment_urn: g
                    .environments
                    .get(&env)
                    .map(|e| e.urn.clone())
                    .unwrap_or_default(),
                environment_id: env,
                descriptor: Arc::default(),
                state: crate::state::stage_state(g, st)?.map(Arc::new),
            }),
        ));
    }
    let mut flatten_needed: BTreeSet<&str> = BTreeSet::new();
    for (_, s) in &steps {
        if let Step::Stage(s) = s {
            for i in &s.inputs {
                for r in &i.reads {
                    if producers
                        .get(r.as_str())
                        .is_some_and(|t| g.transforms[*t].kind == Kind::Flatten)
                    {
                        flatten_needed.insert(producers[r.as_str()]);
                    }
                }
            }
        }
    }
    for id in topo {
        let t = &g.transforms[id];
        let out = || t.outputs.values().next().cloned().unwrap_or_default();
        let step = match &t.kind {
            Kind::Impulse => Step::Impulse(ImpulseStep {
                transform: id.clone(),
                unique_name: display_name(g, id),
                output: out(),
            }),
            Kind::Flatten if flatten_needed.contains(id.as_str()) => Step::Flatten(FlattenStep {
                transform: id.clone(),
                unique_name: display_name(g, id),
                inputs: union_of(g, &producers, t.inputs.values()),
                output: out(),
            }),
            Kind::GroupByKey => {
                let input = t.inputs.values().next().cloned().unwrap_or_default();
                let pc = &g.pcollections[&input];
                let Coder::Kv { key, .. } =
                    crate::coder::build_coder(&pc.coder_id, &g.coders).map_err(Error::Internal)?
                else {
                    return Err(Error::Internal(format!("GroupByKey {id} input is not KV")));
                };
                let windowing = &g.windowing_strategies[&pc.windowing_strategy_id];
                Step::GroupByKey(GroupByKeyStep {
                    transform: id.clone(),
                    unique_name: display_name(g, id),
                    inputs: flatten_unzip::resolve(g, &producers, &input, true),
                    output: out(),
                    key_coder: (*key).clone(),
                    windowing: windowing.clone(),
                    merge_windows: if windowing.merging
                        && matches!(
                            windowing.window_fn,
                            crate::windowing::WindowFn::Custom { .. }
                        ) {
                        Some(crate::merge_windows::spec(
                            g,
                            &pc.windowing_strategy_id,
                            &display_name(g, id),
                        )?)
                    } else {
                        None
                    },
                    compaction: crate::compaction::spec(g, id)?,
                })
            }
            Kind::TestStream(spec) => Step::TestStream(test_stream_step(g, t, spec)?),
            Kind::Generate(spec) => Step::Generate(GenerateStep {
                transform: id.clone(),
                unique_name: display_name(g, id),
                output: out(),
                spec: spec.clone(),
            }),
            Kind::RedisRead(spec) => Step::RedisRead(crate::RedisReadStep {
                transform: id.clone(),
                unique_name: display_name(g, id),
                output: out(),
                spec: spec.clone(),
            }),
            Kind::WatchFiles(spec) => Step::WatchFiles(crate::WatchFilesStep {
                transform: id.clone(),
                unique_name: display_name(g, id),
                output: out(),
                spec: spec.clone(),
            }),
            Kind::RedisWrite(spec) => {
                let input = t.inputs.values().next().cloned().unwrap_or_default();
                Step::RedisWrite(crate::RedisWriteStep {
                    transform: id.clone(),
                    unique_name: display_name(g, id),
                    inputs: flatten_unzip::resolve(g, &producers, &input, true),
                    spec: spec.clone(),
                })
            }
            _ => continue,
        };
        steps.push((rank[id.as_str()], step));
    }
    // Stage outputs: what the stage produces and a later step reads.
    let read: BTreeSet<String> = steps
        .iter()
        .flat_map(|(_, s)| s.reads())
        .map(str::to_string)
        .collect();
    for (_, step) in steps.iter_mut() {
        if let Step::Stage(s) = step {
            for id in &s.transforms {
                for p in g.transforms[id].outputs.values() {
                    if read.contains(p) && !s.outputs.iter().any(|o| &o.pcollection == p) {
                        s.outputs.push(StageOutput {
                            sink_transform: String::new(),
                            pcollection: p.clone(),
                        });
                    }
                }
            }
        }
    }
    let steps = order_steps(steps)?;
    let mut out_steps = Vec::with_capacity(steps.len());
    for (i, mut step) in steps.into_iter().enumerate() {
        if let Step::Stage(s) = &mut step {
            s.id = format!("stage-{i}");
            for inp in &mut s.inputs {
                inp.source_transform =
                    fresh_transform_id(g, &format!("{}/source", inp.pcollection));
            }
            for o in &mut s.outputs {
                o.sink_transform = fresh_transform_id(g, &format!("{}/sink", o.pcollection));
            }
            let ins: Vec<(String, String)> = s
                .inputs
                .iter()
                .map(|i| (i.source_transform.clone(), i.pcollection.clone()))
                .collect();
            let outs: Vec<(String, String)> = s
                .outputs
                .iter()
                .map(|o| (o.sink_transform.clone(), o.pcollection.clone()))
                .collect();
            let d = translate::build_descriptor(
                g,
                &StageLayout {
                    id: &s.id,
                    transforms: &s.transforms,
                    inputs: &ins,
                    outputs: &outs,
                    environment_id: &s.environment_id,
                },
            )?;
            s.descriptor = Arc::new(d);
        }
        out_steps.push(step);
    }
    let mut pcollections = BTreeMap::new();
    for (id, pc) in &g.pcollections {
        let (Ok(coder), Some(ws)) = (
            crate::coder::build_coder(&pc.coder_id, &g.coders),
            g.windowing_strategies.get(&pc.windowing_strategy_id),
        ) else {
            continue;
        };
        pcollections.insert(
            id.clone(),
            PCollectionInfo {
                id: id.clone(),
                unique_name: pc.unique_name.clone(),
                coder,
                windowing: ws.clone(),
                bounded: pc.is_bounded
                    != oxbeam_model::pipeline::is_bounded::Enum::Unbounded as i32,
            },
        );
    }
    Ok(ExecutionPlan {
        steps: out_steps,
        pcollections,
        options: options.clone(),
    })
}

/// The TestStream step of `t`, its elements re-encoded from the payload's
/// outer context to the nested one windowed values use.
fn test_stream_step(
    g: &Graph,
    t: &crate::graph::Transform,
    spec: &crate::graph::TestStreamSpec,
) -> Result<TestStreamStep> {
    let coder = crate::coder::build_coder(&spec.coder_id, &g.coders).map_err(Error::Internal)?;
    let mut events = spec.events.clone();
    for e in &mut events {
        if let TestStreamEvent::AddElements { tag, .. }
        | TestStreamEvent::AdvanceWatermark { tag, .. } = e
        {
            *tag = crate::validate::resolve_test_stream_tag(t, tag)
                .ok_or_else(|| Error::Internal(format!("unresolved TestStream tag {tag:?}")))?;
        }
        if let TestStreamEvent::AddElements { elements, .. } = e {
            for el in elements {
                el.encoded = crate::validate::nest_test_stream_element(&coder, &el.encoded)
                    .map_err(|m| Error::plan(t.describe(), m))?;
            }
        }
    }
    Ok(TestStreamStep {
        transform: t.id.clone(),
        unique_name: display_name(g, &t.id),
        coder,
        outputs: t.outputs.clone(),
        events,
    })
}

fn union_of<'a>(
    g: &Graph,
    producers: &BTreeMap<&str, &str>,
    inputs: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in inputs {
        for r in flatten_unzip::resolve(g, producers, i, true) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

fn display_name(g: &Graph, id: &str) -> String {
    let t = &g.transforms[id];
    if t.unique_name.is_empty() {
        id.to_string()
    } else {
        t.unique_name.clone()
    }
}

fn fresh_transform_id(g: &Graph, base: &str) -> String {
    if !g.transforms.contains_key(base) {
        return base.to_string();
    }
    (2..)
        .map(|i| format!("{base}#{i}"))
        .find(|s| !g.transforms.contains_key(s))
        .unwrap_or_default()
}

/// Orders steps so producers come first; ties by application rank.
fn order_steps(steps: Vec<(usize, Step)>) -> Result<Vec<Step>> {
    let mut producer: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (_, s)) in steps.iter().enumerate() {
        for o in s.outputs() {
            producer.insert(o.to_string(), i);
        }
    }
    let n = steps.len();
    let mut indegree = vec![0usize; n];
    let mut down: Vec<Vec<usize>> = vec![vec![]; n];
    for (i, (_, s)) in steps.iter().enumerate() {
        let deps: BTreeSet<usize> = s
            .reads()
            .iter()
            .filter_map(|r| producer.get(*r).copied())
            .collect();
        indegree[i] = deps.len();
        for d in deps {
            down[d].push(i);
        }
    }
    let mut ready: BTreeSet<(usize, usize)> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(|i| (steps[i].0, i))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some((_, i)) = ready.pop_first() {
        order.push(i);
        for &d in &down[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert((steps[d].0, d));
            }
        }
    }
    if order.len() != n {
        return Err(Error::Internal(
            "the fused plan has a cycle between steps".into(),
        ));
    }
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(|(_, s)| Some(s)).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use oxbeam_model::fn_execution::RemoteGrpcPort;
    use prost::Message;

    use crate::optimizer::testing::*;
    use crate::{PlanOptions, Step};

    /// A readable summary of every stage's descriptor.
    fn descriptors(p: &Pipeline) -> String {
        let plan = crate::plan(p, &PlanOptions::default()).unwrap();
        let mut out = String::new();
        for step in plan.steps() {
            let Step::Stage(s) = step else { continue };
            let d = &s.descriptor;
            writeln!(out, "descriptor {}", d.id).unwrap();
            for (id, t) in &d.transforms {
                let spec = t.spec.as_ref().unwrap();
                let port = (spec.urn.starts_with("beam:runner:"))
                    .then(|| {
                        RemoteGrpcPort::decode(spec.payload.as_ref())
                            .unwrap()
                            .coder_id
                    })
                    .map(|c| format!(" coder={c}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  transform {id}: {}{port} in={:?} out={:?} env={:?}",
                    spec.urn, t.inputs, t.outputs, t.environment_id
                )
                .unwrap();
            }
            for (id, pc) in &d.pcollections {
                writeln!(
                    out,
                    "  pcollection {id}: coder={} ws={}",
                    pc.coder_id, pc.windowing_strategy_id
                )
                .unwrap();
            }
            for (id, c) in &d.coders {
                writeln!(
                    out,
                    "  coder {id}: {} {:?}",
                    c.spec.as_ref().unwrap().urn,
                    c.component_coder_ids
                )
                .unwrap();
            }
            writeln!(
                out,
                "  windowing strategies: {:?}",
                d.windowing_strategies.keys().collect::<Vec<_>>()
            )
            .unwrap();
            writeln!(
                out,
                "  environments: {:?}",
                d.environments.keys().collect::<Vec<_>>()
            )
            .unwrap();
        }
        out
    }

    #[test]
    fn test_stream_is_a_runner_primitive() {
        use crate::optimizer::testing::events::*;
        let mut b = Builder::new();
        let s = b.test_stream(
            "Events",
            vec![
                elements("", &[("a", 1), ("b", 7)]),
                processing_time(5_000),
                watermark("out", 10),
                elements("out", &[("late", 2)]),
                watermark("", i64::MAX),
            ],
        );
        let w = b.window_into("Window", &s, "fixed");
        let pairs = b.pardo("PairWithOne", &w, "kv_str");
        b.gbk("Group", &pairs);
        let p = b.build();
        let plan = crate::plan(&p, &PlanOptions::default()).unwrap();
        assert!(plan.is_streaming());
        assert!(!plan.pcollection("Events.out").unwrap().bounded);
        assert!(plan.pcollection("Window.out").unwrap().bounded);
        let Step::TestStream(t) = &plan.steps()[0] else {
            panic!("{plan}")
        };
        // "b" re-encoded nested: its length, then its bytes.
        let crate::TestStreamEvent::AddElements { tag, elements } = &t.events[0] else {
            panic!()
        };
        assert_eq!(
            (tag.as_str(), elements[1].encoded.as_slice()),
            ("out", &[1, b'b'][..])
        );
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn test_stream_as_beam_python_writes_it() {
        // Beam Python always sets an endpoint (empty url for inline events)
        // and encodes elements with its pickled coder, which the runner does
        // not know: the elements travel length-prefixed.
        use crate::optimizer::testing::events::*;
        let mut b = Builder::new();
        let s = b.test_stream("Events", vec![elements("", &[("ab", 1)])]);
        let comps = b.p.components.as_mut().unwrap();
        comps.coders.insert(
            "pickled".into(),
            oxbeam_model::pipeline::Coder {
                spec: Some(oxbeam_model::pipeline::FunctionSpec {
                    urn: "x:pickled".into(),
                    payload: vec![].into(),
                }),
                component_coder_ids: vec![],
            },
        );
        comps.pcollections.get_mut(&s).unwrap().coder_id = "pickled".into();
        let t = comps.transforms.get_mut("Events").unwrap();
        let mut payload = oxbeam_model::pipeline::TestStreamPayload::decode(
            t.spec.as_ref().unwrap().payload.as_ref(),
        )
        .unwrap();
        payload.coder_id = "pickled".into();
        payload.endpoint = Some(oxbeam_model::pipeline::ApiServiceDescriptor::default());
        t.spec.as_mut().unwrap().payload = payload.encode_to_vec().into();
        let plan = crate::plan(&b.build(), &PlanOptions::default()).unwrap();
        let Step::TestStream(t) = &plan.steps()[0] else {
            panic!("{plan}")
        };
        let crate::TestStreamEvent::AddElements { elements, .. } = &t.events[0] else {
            panic!()
        };
        assert_eq!(elements[0].encoded, [2, b'a', b'b']);
    }

    #[test]
    fn stage_descriptors_hold_ports_and_only_needed_components() {
        insta::assert_snapshot!(descriptors(&word_count(Windowing::Fixed)));
    }
}
