//! [`NativeExecutor`]: builds the operator tree of a bundle descriptor and
//! runs bundles through it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxbeam_fn_api::{Bundle, BundleProcessor, ElementSplits, Error, Executor, Rebalancer, Result};
use oxbeam_model::coders::{Coder as DynCoder, WindowCoder};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::oxbeam::NativeFunctionPayload;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use prost::Message;

use super::ops::OpInfo;
use super::side::{SideCache, SideSlot};
use super::types::{SourceOp, TypeOps};
use super::{BundleCx, Erased, TailSplit, TimerTargets};
use crate::metrics;
use crate::registry::{CombineEntry, NativeFn, ParDoArgs, Registry, global_registry};
use crate::window::WindowFn;

/// Runs native Rust user code (DoFns, closures, CombineFns) registered in a
/// [`Registry`], for environments `oxbeam:env:native:v1`.
#[derive(Clone, Debug)]
pub struct NativeExecutor {
    registry: Arc<Registry>,
}

impl NativeExecutor {
    /// An executor resolving function names in `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        NativeExecutor { registry }
    }

    /// An executor over the process-wide registry (for worker processes).
    pub fn global() -> Self {
        NativeExecutor {
            registry: global_registry().clone(),
        }
    }
}

impl Executor for NativeExecutor {
    fn name(&self) -> &str {
        "native"
    }

    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            StageBuilder::new(&descriptor, &self.registry)?.build()
        }));
        match built {
            Ok(r) => r,
            Err(p) => Err(super::user_code_error(&descriptor.id, p, None)),
        }
    }
}

enum Node {
    Source {
        output: String,
        window_coder: WindowCoder,
    },
    Sink {
        input: String,
        window_coder: WindowCoder,
    },
    ParDo {
        f: Arc<NativeFn>,
        params: Vec<u8>,
        input: String,
        /// Window coder of the main input (stateful DoFns decode timers with it).
        input_window_coder: WindowCoder,
        outputs: BTreeMap<String, String>,
        sides: Vec<SideArgs>,
    },
    Combine {
        urn: String,
        entry: Arc<dyn CombineEntry>,
        input: String,
        output: String,
    },
    /// A component of a splittable DoFn.
    Splittable {
        urn: String,
        entry: Arc<dyn crate::sdf::SplittableEntry>,
        input: String,
        output: String,
    },
    WindowInto {
        window_fn: WindowFn,
        input: String,
        output: String,
    },
}

struct SideArgs {
    local_name: String,
    window_coder: WindowCoder,
    mapping: WindowFn,
}

struct Transform {
    id: String,
    name: Arc<str>,
    node: Node,
}

struct StageBuilder<'a> {
    descriptor: &'a ProcessBundleDescriptor,
    registry: &'a Registry,
    transforms: Vec<Transform>,
    types: HashMap<String, Arc<dyn TypeOps>>,
    consumers: HashMap<String, Vec<usize>>,
    names: Vec<Arc<str>>,
    timers: TimerTargets,
}

fn single<'m>(m: &'m BTreeMap<String, String>, id: &str, what: &str) -> Result<&'m String> {
    let mut it = m.values();
    match (it.next(), it.next()) {
        (Some(v), None) => Ok(v),
        _ => Err(Error::invalid(
            format!("transform {id}"),
            format!("expected exactly one {what}, found {}", m.len()),
        )),
    }
}

fn native_payload(
    spec: Option<&pb::FunctionSpec>,
    urn: &str,
    id: &str,
) -> Result<NativeFunctionPayload> {
    let spec = spec
        .ok_or_else(|| Error::invalid(format!("payload of transform {id}"), "no function spec"))?;
    if spec.urn != urn {
        return Err(Error::Unsupported {
            transform: id.to_string(),
            message: format!(
                "function {} is not a native Rust function ({urn})",
                spec.urn
            ),
        });
    }
    NativeFunctionPayload::decode(&spec.payload[..])
        .map_err(|e| Error::invalid(format!("native function payload of transform {id}"), e))
}

impl<'a> StageBuilder<'a> {
    fn new(descriptor: &'a ProcessBundleDescriptor, registry: &'a Registry) -> Result<Self> {
        let components = pb::Components {
            coders: descriptor.coders.clone(),
            ..Default::default()
        };
        let window_coder_of = |coder_id: &str, what: &str| -> Result<WindowCoder> {
            let c = DynCoder::from_proto(coder_id, &components)
                .map_err(|e| Error::invalid(what.to_string(), e))?;
            let w = match &c {
                DynCoder::WindowedValue { window, .. } => window.as_ref(),
                other => other,
            };
            WindowCoder::from_coder(w).ok_or_else(|| Error::Unsupported {
                transform: what.to_string(),
                message: format!("window coder {} is not a standard window coder", w.urn()),
            })
        };
        let port_window_coder = |t: &pb::PTransform, id: &str| -> Result<WindowCoder> {
            let payload = t.spec.as_ref().map(|s| &s.payload[..]).unwrap_or_default();
            let port = RemoteGrpcPort::decode(payload)
                .map_err(|e| Error::invalid(format!("data port of {id}"), e))?;
            window_coder_of(&port.coder_id, id)
        };

        let mut ids: Vec<&String> = descriptor.transforms.keys().collect();
        ids.sort();
        let mut transforms = Vec::new();
        for id in ids {
            let t = &descriptor.transforms[id];
            let urn = t.spec.as_ref().map_or("", |s| s.urn.as_str());
            let name: Arc<str> = if t.unique_name.is_empty() {
                id.as_str().into()
            } else {
                t.unique_name.as_str().into()
            };
            let payload = t.spec.as_ref().map(|s| &s.payload[..]).unwrap_or_default();
            let node = match urn {
                urns::fn_api_transforms::runner::DATA_SOURCE => Node::Source {
                    output: single(&t.outputs, id, "output")?.clone(),
                    window_coder: port_window_coder(t, id)?,
                },
                urns::fn_api_transforms::runner::DATA_SINK => Node::Sink {
                    input: single(&t.inputs, id, "input")?.clone(),
                    window_coder: port_window_coder(t, id)?,
                },
                urns::standard_p_transforms::primitives::PAR_DO => {
                    let p = pb::ParDoPayload::decode(payload).map_err(|e| Error::invalid(format!("ParDo payload of {id}"), e))?;
                    let native = native_payload(p.do_fn.as_ref(), urns::native_functions::DO_FN, id)?;
                    let f = registry.get_fn(&native.name).ok_or_else(|| Error::Unsupported {
                        transform: id.clone(),
                        message: format!(
                            "native function {:?} is not registered in this binary (was the pipeline built by it?)",
                            native.name
                        ),
                    })?;
                    let mains: Vec<&String> = t.inputs.iter().filter(|(k, _)| !p.side_inputs.contains_key(*k)).map(|(_, v)| v).collect();
                    let [input] = mains[..] else {
                        return Err(Error::invalid(format!("transform {id}"), format!("a ParDo needs one main input, found {}", mains.len())));
                    };
                    let mut sides = Vec::new();
                    let mut side_names: Vec<&String> = p.side_inputs.keys().collect();
                    side_names.sort();
                    for local in side_names {
                        let si = &p.side_inputs[local];
                        let pcoll_id = t.inputs.get(local).ok_or_else(|| Error::invalid(format!("transform {id}"), format!("side input {local} has no input PCollection")))?;
                        let pcoll = descriptor.pcollections.get(pcoll_id).ok_or_else(|| Error::invalid(format!("transform {id}"), format!("unknown PCollection {pcoll_id}")))?;
                        let ws = descriptor.windowing_strategies.get(&pcoll.windowing_strategy_id).ok_or_else(|| {
                            Error::invalid(format!("PCollection {pcoll_id}"), format!("unknown windowing strategy {}", pcoll.windowing_strategy_id))
                        })?;
                        let mapping_spec = si.window_mapping_fn.as_ref().or(ws.window_fn.as_ref());
                        let mapping = match mapping_spec {
                            Some(s) => WindowFn::from_proto(s).map_err(|e| Error::Unsupported { transform: id.clone(), message: e })?,
                            None => WindowFn::Global,
                        };
                        sides.push(SideArgs { local_name: local.clone(), window_coder: window_coder_of(&ws.window_coder_id, pcoll_id)?, mapping });
                    }
                    let input_window_coder = match descriptor.pcollections.get(input).and_then(|pc| descriptor.windowing_strategies.get(&pc.windowing_strategy_id)) {
                        Some(ws) => window_coder_of(&ws.window_coder_id, input).unwrap_or(WindowCoder::Global),
                        None => WindowCoder::Global,
                    };
                    Node::ParDo { f, params: native.params.to_vec(), input: input.clone(), input_window_coder, outputs: t.outputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), sides }
                }
                urns::standard_p_transforms::combine_components::COMBINE_PER_KEY_PRECOMBINE
                | urns::standard_p_transforms::combine_components::COMBINE_PER_KEY_MERGE_ACCUMULATORS
                | urns::standard_p_transforms::combine_components::COMBINE_PER_KEY_EXTRACT_OUTPUTS
                | urns::standard_p_transforms::combine_components::COMBINE_GROUPED_VALUES
                | urns::standard_p_transforms::combine_components::COMBINE_PER_KEY_CONVERT_TO_ACCUMULATORS => {
                    let p = pb::CombinePayload::decode(payload).map_err(|e| Error::invalid(format!("Combine payload of {id}"), e))?;
                    let native = native_payload(p.combine_fn.as_ref(), urns::native_functions::COMBINE_FN, id)?;
                    let entry = match registry.get_fn(&native.name).as_deref() {
                        Some(NativeFn::Combine(c)) => c.clone(),
                        _ => {
                            return Err(Error::Unsupported {
                                transform: id.clone(),
                                message: format!("native CombineFn {:?} is not registered in this binary", native.name),
                            });
                        }
                    };
                    Node::Combine {
                        urn: urn.to_string(),
                        entry,
                        input: single(&t.inputs, id, "input")?.clone(),
                        output: single(&t.outputs, id, "output")?.clone(),
                    }
                }
                urns::standard_p_transforms::splittable_par_do_components::PAIR_WITH_RESTRICTION
                | urns::standard_p_transforms::splittable_par_do_components::SPLIT_AND_SIZE_RESTRICTIONS
                | urns::standard_p_transforms::splittable_par_do_components::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS => {
                    let p = pb::ParDoPayload::decode(payload).map_err(|e| Error::invalid(format!("ParDo payload of {id}"), e))?;
                    let native = native_payload(p.do_fn.as_ref(), urns::native_functions::DO_FN, id)?;
                    let entry = match registry.get_fn(&native.name).as_deref() {
                        Some(NativeFn::Splittable(e)) => e.clone(),
                        _ => {
                            return Err(Error::Unsupported {
                                transform: id.clone(),
                                message: format!("native splittable DoFn {:?} is not registered in this binary", native.name),
                            });
                        }
                    };
                    if !p.side_inputs.is_empty() {
                        return Err(Error::Unsupported { transform: id.clone(), message: "side inputs of a splittable DoFn".into() });
                    }
                    Node::Splittable {
                        urn: urn.to_string(),
                        entry,
                        input: single(&t.inputs, id, "input")?.clone(),
                        output: single(&t.outputs, id, "output")?.clone(),
                    }
                }
                urns::standard_p_transforms::primitives::ASSIGN_WINDOWS => {
                    let p = pb::WindowIntoPayload::decode(payload).map_err(|e| Error::invalid(format!("WindowInto payload of {id}"), e))?;
                    let spec = p.window_fn.unwrap_or_default();
                    let window_fn = WindowFn::from_proto(&spec).map_err(|e| Error::Unsupported { transform: id.clone(), message: e })?;
                    Node::WindowInto {
                        window_fn,
                        input: single(&t.inputs, id, "input")?.clone(),
                        output: single(&t.outputs, id, "output")?.clone(),
                    }
                }
                other => {
                    return Err(Error::Unsupported {
                        transform: id.clone(),
                        message: format!("the native executor does not run transforms with URN {other:?}"),
                    });
                }
            };
            transforms.push(Transform {
                id: id.clone(),
                name,
                node,
            });
        }
        Ok(StageBuilder {
            descriptor,
            registry,
            transforms,
            types: HashMap::new(),
            consumers: HashMap::new(),
            names: Vec::new(),
            timers: Vec::new(),
        })
    }

    fn set_type(&mut self, pcoll: &str, t: Arc<dyn TypeOps>) -> Result<bool> {
        match self.types.get(pcoll) {
            Some(old) if old.type_id() != t.type_id() => Err(Error::Internal(format!(
                "PCollection {pcoll} is {} for one transform and {} for another",
                old.type_name(),
                t.type_name()
            ))),
            Some(_) => Ok(false),
            None => {
                self.types.insert(pcoll.to_string(), t);
                Ok(true)
            }
        }
    }

    fn infer_types(&mut self) -> Result<()> {
        let mut sets: Vec<(String, Arc<dyn TypeOps>)> = Vec::new();
        for t in &self.transforms {
            match &t.node {
                Node::ParDo {
                    f, input, outputs, ..
                } => {
                    let NativeFn::ParDo(p) = &**f else {
                        return Err(Error::invalid(
                            format!("transform {}", t.id),
                            "a ParDo refers to a CombineFn",
                        ));
                    };
                    sets.push((input.clone(), p.input.clone()));
                    for (tag, pcoll) in outputs {
                        let Some((_, ty, _)) =
                            p.outputs.iter().find(|(n, _, _)| &**n == tag.as_str())
                        else {
                            return Err(Error::invalid(
                                format!("transform {}", t.id),
                                format!("output tag {tag:?} is not declared by its DoFn"),
                            ));
                        };
                        sets.push((pcoll.clone(), ty.clone()));
                    }
                }
                Node::Combine {
                    urn,
                    entry,
                    input,
                    output,
                } => {
                    let (i, o) = entry.types(urn).ok_or_else(|| Error::Unsupported {
                        transform: t.id.clone(),
                        message: format!("combine component {urn} is not supported"),
                    })?;
                    sets.push((input.clone(), i));
                    sets.push((output.clone(), o));
                }
                Node::Splittable {
                    urn,
                    entry,
                    input,
                    output,
                } => {
                    let (i, o) = entry.types(urn).ok_or_else(|| Error::Unsupported {
                        transform: t.id.clone(),
                        message: format!("{urn} is not a splittable DoFn component"),
                    })?;
                    sets.push((input.clone(), i));
                    sets.push((output.clone(), o));
                }
                _ => {}
            }
        }
        for (p, t) in sets {
            self.set_type(&p, t)?;
        }
        // Type-preserving window assignment propagates types both ways.
        loop {
            let mut changed = false;
            let pairs: Vec<(String, String)> = self
                .transforms
                .iter()
                .filter_map(|t| match &t.node {
                    Node::WindowInto { input, output, .. } => Some((input.clone(), output.clone())),
                    _ => None,
                })
                .collect();
            for (i, o) in pairs {
                if let Some(t) = self.types.get(&i).cloned() {
                    changed |= self.set_type(&o, t)?;
                } else if let Some(t) = self.types.get(&o).cloned() {
                    changed |= self.set_type(&i, t)?;
                }
            }
            if !changed {
                break;
            }
        }
        let mut all: Vec<String> = Vec::new();
        for t in &self.transforms {
            match &t.node {
                Node::Source { output, .. } => all.push(output.clone()),
                Node::Sink { input, .. } => all.push(input.clone()),
                Node::WindowInto { input, output, .. } => {
                    all.push(input.clone());
                    all.push(output.clone());
                }
                _ => {}
            }
        }
        for p in all {
            if !self.types.contains_key(&p) {
                let t = self.registry.get_pcollection(&p).ok_or_else(|| {
                    Error::Internal(format!(
                        "cannot tell the element type of PCollection {p} in stage {}",
                        self.descriptor.id
                    ))
                })?;
                self.types.insert(p, t);
            }
        }
        Ok(())
    }

    fn type_of(&self, pcoll: &str) -> Result<Arc<dyn TypeOps>> {
        self.types
            .get(pcoll)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no element type for PCollection {pcoll}")))
    }

    fn build_pcollection(&mut self, pcoll: &str) -> Result<Erased> {
        let ty = self.type_of(pcoll)?;
        let consumers = self.consumers.get(pcoll).cloned().unwrap_or_default();
        let mut outs = Vec::with_capacity(consumers.len());
        for c in consumers {
            outs.push(self.build_transform(c)?);
        }
        ty.fanout(outs, &format!("PCollection {pcoll}"))
    }

    fn info(&mut self, i: usize) -> OpInfo {
        let t = &self.transforms[i];
        self.names.push(t.name.clone());
        OpInfo {
            name: t.name.clone(),
            index: (self.names.len() - 1) as u32,
            transform_id: t.id.clone(),
        }
    }

    fn build_transform(&mut self, i: usize) -> Result<Erased> {
        let id = self.transforms[i].id.clone();
        match &self.transforms[i].node {
            Node::Source { .. } => Err(Error::Internal(format!(
                "data source {id} consumes a PCollection"
            ))),
            Node::Sink {
                input,
                window_coder,
            } => Ok(self.type_of(input)?.sink(&id, *window_coder)),
            Node::WindowInto {
                window_fn,
                input,
                output,
            } => {
                let (wf, input, output) = (*window_fn, input.clone(), output.clone());
                let next = self.build_pcollection(&output)?;
                self.type_of(&input)?.window_into(wf, next, &id)
            }
            Node::Combine {
                urn, entry, output, ..
            } => {
                let (urn, entry, output) = (urn.clone(), entry.clone(), output.clone());
                let next = self.build_pcollection(&output)?;
                let info = self.info(i);
                entry.build(&urn, info, next)
            }
            Node::Splittable {
                urn,
                entry,
                input,
                output,
            } => {
                let (urn, entry, output) = (urn.clone(), entry.clone(), output.clone());
                // The data source reading its input, where its residuals go.
                let source = self.transforms.iter().find_map(|t| match &t.node {
                    Node::Source { output, .. } if output == input => Some(t.id.clone()),
                    _ => None,
                });
                let next = self.build_pcollection(&output)?;
                let info = self.info(i);
                entry.build(&urn, info, next, source)
            }
            Node::ParDo {
                f,
                params,
                outputs,
                sides,
                input_window_coder,
                ..
            } => {
                let (f, params, outputs) = (f.clone(), params.clone(), outputs.clone());
                let input_window_coder = *input_window_coder;
                let sides: Vec<(String, WindowCoder, WindowFn)> = sides
                    .iter()
                    .map(|s| (s.local_name.clone(), s.window_coder, s.mapping))
                    .collect();
                let NativeFn::ParDo(p) = &*f else {
                    return Err(Error::Internal(format!("transform {id} is not a ParDo")));
                };
                let mut built = Vec::new();
                for (tag, ty, factory) in &p.outputs {
                    let r = match outputs.get(&**tag) {
                        Some(pcoll) => self.build_pcollection(pcoll)?,
                        None => ty.discard(),
                    };
                    built.push((tag.clone(), r, *factory));
                }
                let mut built = built.into_iter();
                let main = built.next().map(|b| b.1).ok_or_else(|| {
                    Error::Internal(format!("ParDo {id} declares no main output"))
                })?;
                let mut extra = Vec::new();
                for (tag, r, factory) in built {
                    extra.push(factory(tag, r, &id)?);
                }
                let mut cache = SideCache::default();
                for (local, wc, mapping) in sides {
                    let builder = p
                        .side_inputs
                        .iter()
                        .find(|(n, _)| *n == local)
                        .map(|(_, b)| b.clone())
                        .ok_or_else(|| {
                            Error::invalid(
                                format!("transform {id}"),
                                format!("side input {local} is not declared by its DoFn"),
                            )
                        })?;
                    cache
                        .slots
                        .push(SideSlot::new(local, id.clone(), wc, mapping, builder));
                }
                let info = self.info(i);
                (p.factory)(ParDoArgs {
                    info,
                    params: &params,
                    main,
                    extra,
                    sides: cache,
                    input_window_coder,
                    timers: &mut self.timers,
                })
            }
        }
    }

    fn build(mut self) -> Result<Box<dyn BundleProcessor>> {
        self.infer_types()?;
        for (i, t) in self.transforms.iter().enumerate() {
            let input = match &t.node {
                Node::Sink { input, .. }
                | Node::ParDo { input, .. }
                | Node::Combine { input, .. }
                | Node::Splittable { input, .. }
                | Node::WindowInto { input, .. } => input,
                Node::Source { .. } => continue,
            };
            self.consumers.entry(input.clone()).or_default().push(i);
        }
        let mut sources: Vec<(String, Box<dyn SourceOp>)> = Vec::new();
        for i in 0..self.transforms.len() {
            if let Node::Source {
                output,
                window_coder,
            } = &self.transforms[i].node
            {
                let (output, wc, id) =
                    (output.clone(), *window_coder, self.transforms[i].id.clone());
                let next = self.build_pcollection(&output)?;
                let op = self.type_of(&output)?.source(next, wc, &id)?;
                sources.push((id, op));
            }
        }
        if sources.is_empty() {
            return Err(Error::invalid(
                format!("descriptor {}", self.descriptor.id),
                "stage has no data source",
            ));
        }
        let splits_elements = self.transforms.iter().any(|t| {
            matches!(&t.node, Node::Splittable { urn, .. }
                if urn == urns::standard_p_transforms::splittable_par_do_components::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS)
        });
        Ok(Box::new(Processor {
            id: self.descriptor.id.clone(),
            sources,
            names: self.names,
            timers: self.timers,
            splits_elements,
        }))
    }
}

struct Processor {
    id: String,
    sources: Vec<(String, Box<dyn SourceOp>)>,
    names: Vec<Arc<str>>,
    timers: TimerTargets,
    /// The stage processes splittable restrictions: its elements are
    /// processed one at a time, and the last one of a bundle may be split
    /// inside (see [`Cx::split_point`]).
    splits_elements: bool,
}

impl Processor {
    fn run(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        let rebalancer = bundle.rebalancer;
        let mut cx = BundleCx {
            sink: &mut *bundle.sink,
            side_inputs: bundle.side_inputs,
            state: &mut *bundle.state,
            residuals: bundle.residuals.as_deref_mut(),
            tail: None,
        };
        for (_, s) in &mut self.sources {
            s.start()?;
        }
        match rebalancer {
            Some(r) => self.process_splittable(&bundle.inputs, r, &mut cx)?,
            None => {
                for &(id, bytes) in &bundle.inputs {
                    let s = self.source(id)?;
                    self.sources[s].1.process(bytes, &mut cx)?;
                }
            }
        }
        for (transform, family, timers) in &bundle.timers {
            let Some((_, target)) = self.timers.iter_mut().find(|(t, _)| t == transform) else {
                return Err(Error::invalid(
                    format!("timer input of stage {}", self.id),
                    format!("transform {transform} of this stage has no timers"),
                ));
            };
            target.fire(family, timers, &mut cx)?;
        }
        for (_, s) in &mut self.sources {
            s.finish(&mut cx)?;
        }
        Ok(())
    }
}

impl Processor {
    /// The index of data source `id`.
    fn source(&self, id: &str) -> Result<usize> {
        self.sources
            .iter()
            .position(|(sid, _)| sid == id)
            .ok_or_else(|| {
                Error::invalid(
                    format!("bundle input of stage {}", self.id),
                    format!("no data source {id}"),
                )
            })
    }

    /// Processes `inputs` in runs of elements sized to take about
    /// [`SPLIT_CHECK_EVERY`] each, asking `rebalancer` between runs whether
    /// to give part of the elements left away (dynamic work rebalancing;
    /// a split falls between elements).
    fn process_splittable<'r>(
        &mut self,
        inputs: &[(&'r str, &'r [u8])],
        rebalancer: &'r dyn Rebalancer,
        cx: &mut BundleCx<'r>,
    ) -> Result<()> {
        let mut splits = ElementSplits::new(rebalancer);
        let mut pending: VecDeque<(&str, &[u8])> = inputs.iter().copied().collect();
        let mut run = 1usize;
        // Until no work is left, an offer no split request claimed included.
        loop {
            while let Some((id, bytes)) = pending.pop_front() {
                let s = self.source(id)?;
                let (mut at, mut end) = (0, bytes.len());
                while at < end {
                    let t = Instant::now();
                    // The bundle's last element, if it is a restriction: split
                    // points inside it may hand part of it off.
                    let tail = self.splits_elements
                        && pending.is_empty()
                        && !splits.has_offer()
                        && self.sources[s].1.element_ends(&bytes[at..end])?.len() == 1;
                    if tail {
                        cx.tail = Some(TailSplit {
                            rebalancer,
                            started: Instant::now() - splits.elapsed(),
                            source: id.to_string(),
                            covered: splits.covered(id, &bytes[..at]),
                        });
                    }
                    let taken = self.sources[s].1.process_some(&bytes[at..end], run, cx);
                    cx.tail = None;
                    at += taken?;
                    let took = t.elapsed();
                    if self.splits_elements {
                        // Restrictions are heavy: one per run, so that the
                        // last one is processed on its own.
                        run = 1;
                    } else if took < SPLIT_CHECK_EVERY / 2 {
                        run = (run * 2).min(MAX_RUN);
                    } else if took > SPLIT_CHECK_EVERY * 2 {
                        run = (run / 2).max(1);
                    }
                    if at == end && pending.is_empty() {
                        break;
                    }
                    let sources = &self.sources;
                    splits.check((id, bytes, at), &mut end, &mut pending, |sid, b| {
                        let i = sources
                            .iter()
                            .position(|(x, _)| x == sid)
                            .ok_or_else(|| Error::Internal(format!("no data source {sid}")))?;
                        sources[i].1.element_ends(b)
                    })?;
                }
                splits.finished(id, &bytes[..at]);
            }
            if !splits.reclaim(&mut pending) {
                break;
            }
        }
        Ok(())
    }
}

/// How long a run of elements between split checks aims to take.
const SPLIT_CHECK_EVERY: Duration = Duration::from_millis(5);
/// The longest run of elements between split checks.
const MAX_RUN: usize = 1 << 16;

impl BundleProcessor for Processor {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        metrics::begin_bundle();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(bundle)));
        metrics::end_bundle(&self.names, bundle.metrics);
        match r {
            Ok(r) => r,
            Err(p) => Err(super::user_code_error(&self.id, p, None)),
        }
    }

    fn teardown(&mut self) {
        for (_, s) in &mut self.sources {
            s.teardown();
        }
    }
}
