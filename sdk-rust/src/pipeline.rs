//! [`Pipeline`] and [`PCollection`]: building the Beam pipeline proto.
//!
//! Every transform applied records a `PTransform` in the proto; composites
//! ([`PTransform`] implementations, and the SDK's own composites such as
//! Combine, Reshuffle and text IO) keep their subtransforms. Native functions
//! are registered under their transform's unique name (see [`crate::registry`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use oxbeam_fn_api::Executors;
use oxbeam_model::oxbeam::NativeFunctionPayload;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use prost::Message;

use crate::Result;
use crate::coder::{Coder, CoderSpec, Element};
use crate::exec::NativeExecutor;
use crate::exec::types::ops;
use crate::handle::{InterruptGuard, PipelineHandle};
use crate::options::PipelineOptions;
use crate::registry::{NativeFn, Registry, global_registry};
use crate::runner::{PipelineResult, Runner, local_error, local_options, runner_for};
use crate::window::WindowFn;

/// Id of the environment of native Rust user code in the pipeline proto.
pub const NATIVE_ENVIRONMENT_ID: &str = "oxbeam-native";

/// The main input/output tag of transforms this SDK emits.
pub(crate) const MAIN_TAG: &str = "out";

pub(crate) struct Builder {
    components: pb::Components,
    roots: Vec<String>,
    stack: Vec<String>,
    names: HashSet<String>,
    coder_ids: HashMap<CoderSpec, String>,
    windowing_ids: HashMap<WindowFn, String>,
    registry: Arc<Registry>,
    /// Executors added with `Pipeline::with_executor`, by environment URN.
    executors: Vec<(String, Arc<dyn oxbeam_fn_api::Executor>)>,
}

/// A pipeline under construction: a graph of transforms and PCollections.
///
/// Cheap to clone (a handle). Build it on one thread, then [`run`](Self::run) it.
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) b: Rc<RefCell<Builder>>,
    options: Rc<PipelineOptions>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.b.borrow();
        write!(f, "Pipeline({} transforms)", b.components.transforms.len())
    }
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new(PipelineOptions::default())
    }
}

/// A collection of elements of type `T`, the output of a transform.
///
/// A handle: cloning it does not copy data. Apply transforms with its
/// methods (`map`, `group_by_key`, ...) or [`apply`](Self::apply).
pub struct PCollection<T> {
    pub(crate) id: String,
    pub(crate) window_fn: WindowFn,
    pub(crate) pipeline: Pipeline,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for PCollection<T> {
    fn clone(&self) -> Self {
        PCollection {
            id: self.id.clone(),
            window_fn: self.window_fn,
            pipeline: self.pipeline.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for PCollection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PCollection<{}>({})",
            std::any::type_name::<T>(),
            self.id
        )
    }
}

/// The input of transforms that start a pipeline (sources).
#[derive(Clone, Debug)]
pub struct PBegin {
    pub(crate) pipeline: Pipeline,
}

impl PBegin {
    /// The pipeline to add source transforms to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

/// A user-defined composite transform: a function from an input
/// (a [`PCollection`], [`PBegin`], ...) to an output built from other
/// transforms. Applied with [`PCollection::apply`] or [`Pipeline::apply`], it
/// appears in the proto as a composite with its subtransforms.
///
/// ```
/// use oxbeam::{PCollection, PTransform};
/// struct CountWords;
/// impl PTransform<PCollection<String>> for CountWords {
///     type Output = PCollection<(String, i64)>;
///     fn expand(self, lines: &PCollection<String>) -> Self::Output {
///         lines
///             .flat_map("Split", |l: &String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
///             .count_per_element("Count")
///     }
/// }
/// ```
pub trait PTransform<In> {
    /// What the transform produces.
    type Output: PValue;
    /// Builds the transform's subgraph on `input`.
    fn expand(self, input: &In) -> Self::Output;
}

/// Something made of PCollections (inputs and outputs of composites).
pub trait PValue {
    /// Ids of the PCollections it is made of.
    fn pcollection_ids(&self) -> Vec<String>;
}

impl<T> PValue for PCollection<T> {
    fn pcollection_ids(&self) -> Vec<String> {
        vec![self.id.clone()]
    }
}

impl PValue for PBegin {
    fn pcollection_ids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl PValue for () {
    fn pcollection_ids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl<T> PValue for Vec<PCollection<T>> {
    fn pcollection_ids(&self) -> Vec<String> {
        self.iter().map(|p| p.id.clone()).collect()
    }
}

impl<A: PValue, B: PValue> PValue for (A, B) {
    fn pcollection_ids(&self) -> Vec<String> {
        let mut v = self.0.pcollection_ids();
        v.extend(self.1.pcollection_ids());
        v
    }
}

impl<A: PValue, B: PValue, C: PValue> PValue for (A, B, C) {
    fn pcollection_ids(&self) -> Vec<String> {
        let mut v = self.0.pcollection_ids();
        v.extend(self.1.pcollection_ids());
        v.extend(self.2.pcollection_ids());
        v
    }
}

fn tags(ids: Vec<String>, prefix: &str) -> Vec<(String, String)> {
    if ids.len() == 1 {
        return vec![(
            prefix.to_string(),
            ids.into_iter().next().unwrap_or_default(),
        )];
    }
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| (format!("{prefix}{i}"), id))
        .collect()
}

impl Builder {
    fn unique_name(&mut self, label: &str) -> String {
        let label = if label.is_empty() { "Transform" } else { label };
        let base = match self.stack.last() {
            Some(parent) => format!("{parent}/{label}"),
            None => label.to_string(),
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.names.contains(&name) {
            name = format!("{base}{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    pub(crate) fn add_transform(
        &mut self,
        label: &str,
        spec: Option<pb::FunctionSpec>,
        inputs: Vec<(String, String)>,
        native: bool,
    ) -> String {
        let name = self.unique_name(label);
        self.add_reserved_transform(&name, spec, inputs, native)
    }

    /// Adds a transform under a unique name taken with `unique_name`.
    pub(crate) fn add_reserved_transform(
        &mut self,
        name: &str,
        spec: Option<pb::FunctionSpec>,
        inputs: Vec<(String, String)>,
        native: bool,
    ) -> String {
        let name = name.to_string();
        let t = pb::PTransform {
            unique_name: name.clone(),
            spec,
            inputs: inputs.into_iter().collect(),
            environment_id: if native {
                NATIVE_ENVIRONMENT_ID.to_string()
            } else {
                String::new()
            },
            ..Default::default()
        };
        self.components.transforms.insert(name.clone(), t);
        match self.stack.last() {
            Some(parent) => {
                if let Some(p) = self.components.transforms.get_mut(parent) {
                    p.subtransforms.push(name.clone());
                }
            }
            None => self.roots.push(name.clone()),
        }
        name
    }

    pub(crate) fn coder_id(&mut self, spec: &CoderSpec) -> String {
        if let Some(id) = self.coder_ids.get(spec) {
            return id.clone();
        }
        let components: Vec<String> = spec.components.iter().map(|c| self.coder_id(c)).collect();
        let short = spec.urn.rsplit(':').nth(1).unwrap_or("coder");
        let id = format!("c{}_{short}", self.coder_ids.len());
        self.components.coders.insert(
            id.clone(),
            pb::Coder {
                spec: Some(pb::FunctionSpec {
                    urn: spec.urn.to_string(),
                    payload: spec.payload.clone().into(),
                }),
                component_coder_ids: components,
            },
        );
        self.coder_ids.insert(spec.clone(), id.clone());
        id
    }

    fn windowing_id(&mut self, wf: WindowFn) -> String {
        if let Some(id) = self.windowing_ids.get(&wf) {
            return id.clone();
        }
        let window_coder_id = self.coder_id(&CoderSpec::new(wf.window_coder_urn(), vec![]));
        let ws = pb::WindowingStrategy {
            window_fn: Some(wf.to_proto()),
            merge_status: if wf.is_merging() {
                pb::merge_status::Enum::NeedsMerge
            } else {
                pb::merge_status::Enum::NonMerging
            } as i32,
            window_coder_id,
            trigger: Some(pb::Trigger {
                trigger: Some(pb::trigger::Trigger::Default(pb::trigger::Default {})),
            }),
            accumulation_mode: pb::accumulation_mode::Enum::Discarding as i32,
            output_time: pb::output_time::Enum::EndOfWindow as i32,
            closing_behavior: pb::closing_behavior::Enum::EmitIfNonempty as i32,
            allowed_lateness: 0,
            on_time_behavior: pb::on_time_behavior::Enum::FireIfNonempty as i32,
            assigns_to_one_window: !matches!(wf, WindowFn::Sliding { .. }),
            environment_id: String::new(),
        };
        let id = format!("ws{}", self.windowing_ids.len());
        self.components.windowing_strategies.insert(id.clone(), ws);
        self.windowing_ids.insert(wf, id.clone());
        id
    }

    pub(crate) fn add_output_with_coder(
        &mut self,
        transform: &str,
        tag: &str,
        coder: &CoderSpec,
        wf: WindowFn,
    ) -> String {
        let id = format!("{transform}.{tag}");
        let coder_id = self.coder_id(coder);
        let windowing_strategy_id = self
            .inherited_windowing(transform, wf)
            .unwrap_or_else(|| self.windowing_id(wf));
        self.components.pcollections.insert(
            id.clone(),
            pb::PCollection {
                unique_name: id.clone(),
                coder_id,
                is_bounded: pb::is_bounded::Enum::Bounded as i32,
                windowing_strategy_id,
                display_data: Vec::new(),
            },
        );
        if let Some(t) = self.components.transforms.get_mut(transform) {
            t.outputs.insert(tag.to_string(), id.clone());
        }
        id
    }

    /// The windowing strategy of `transform`'s input windowed by `wf` (the
    /// main input first): outputs keep their input's trigger, allowed
    /// lateness and accumulation mode, as in Beam.
    fn inherited_windowing(&self, transform: &str, wf: WindowFn) -> Option<String> {
        let t = self.components.transforms.get(transform)?;
        let spec = wf.to_proto();
        let main = t.inputs.get("in").into_iter();
        main.chain(t.inputs.values()).find_map(|pc| {
            let ws_id = &self.components.pcollections.get(pc)?.windowing_strategy_id;
            let ws = self.components.windowing_strategies.get(ws_id)?;
            (ws.window_fn.as_ref() == Some(&spec)).then(|| ws_id.clone())
        })
    }

    /// Sets the windowing strategy of PCollection `pcollection` (WindowInto):
    /// `ws`, or the plain strategy of `wf` when `None`.
    pub(crate) fn set_windowing_strategy(
        &mut self,
        pcollection: &str,
        wf: WindowFn,
        ws: Option<pb::WindowingStrategy>,
    ) {
        let id = match ws {
            None => self.windowing_id(wf),
            Some(ws) => {
                let window_coder_id = self.coder_id(&CoderSpec::new(wf.window_coder_urn(), vec![]));
                let id = format!("ws{}_{pcollection}", self.windowing_ids.len());
                self.components.windowing_strategies.insert(
                    id.clone(),
                    pb::WindowingStrategy {
                        window_coder_id,
                        ..ws
                    },
                );
                id
            }
        };
        if let Some(pc) = self.components.pcollections.get_mut(pcollection) {
            pc.windowing_strategy_id = id;
        }
    }

    pub(crate) fn register(&self, name: &str, f: NativeFn) {
        let f = Arc::new(f);
        self.registry.insert_fn(name, f.clone());
        global_registry().insert_fn(name, f);
    }

    pub(crate) fn set_outputs(&mut self, transform: &str, outputs: Vec<(String, String)>) {
        if let Some(t) = self.components.transforms.get_mut(transform) {
            t.outputs = outputs.into_iter().collect();
        }
    }
}

/// A `FunctionSpec` naming the registered native function `name`.
pub(crate) fn native_spec(
    urn: &str,
    name: &str,
    params: Vec<u8>,
    display: String,
) -> pb::FunctionSpec {
    pb::FunctionSpec {
        urn: urn.to_string(),
        payload: NativeFunctionPayload {
            name: name.to_string(),
            params: params.into(),
            display,
        }
        .encode_to_vec()
        .into(),
    }
}

impl Pipeline {
    /// An empty pipeline that will run with `options`.
    pub fn new(options: PipelineOptions) -> Self {
        let mut components = pb::Components::default();
        components.environments.insert(
            NATIVE_ENVIRONMENT_ID.to_string(),
            pb::Environment {
                urn: urns::oxbeam_environments::NATIVE.to_string(),
                ..Default::default()
            },
        );
        let b = Builder {
            components,
            roots: Vec::new(),
            stack: Vec::new(),
            names: HashSet::new(),
            coder_ids: HashMap::new(),
            windowing_ids: HashMap::new(),
            registry: Arc::new(Registry::default()),
            executors: Vec::new(),
        };
        Pipeline {
            b: Rc::new(RefCell::new(b)),
            options: Rc::new(options),
        }
    }

    /// The options the pipeline runs with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// The registry of this pipeline's native functions.
    pub fn registry(&self) -> Arc<Registry> {
        self.b.borrow().registry.clone()
    }

    /// The pipeline's Beam proto.
    pub fn to_proto(&self) -> pb::Pipeline {
        let b = self.b.borrow();
        pb::Pipeline {
            components: Some(b.components.clone()),
            root_transform_ids: b.roots.clone(),
            display_data: Vec::new(),
            requirements: crate::state::requirements(&b.components),
        }
    }

    /// The executors that run this pipeline's user code: the native executor
    /// under `oxbeam:env:native:v1`.
    pub fn executors(&self) -> Executors {
        let native = Executors::new().with(
            urns::oxbeam_environments::NATIVE,
            Arc::new(NativeExecutor::new(self.registry())),
        );
        let b = self.b.borrow();
        b.executors
            .iter()
            .fold(native, |e, (urn, x)| e.with(urn.clone(), x.clone()))
    }

    /// Adds the executor of environments with URN `env_urn` (e.g. the Wasm
    /// executor for `oxbeam:env:wasm:v1`) to [`Pipeline::executors`]. With
    /// `--environment-type PROCESS` those stages run in worker processes
    /// too, on the executors added there.
    pub fn with_executor(
        &self,
        env_urn: &str,
        executor: Arc<dyn oxbeam_fn_api::Executor>,
    ) -> &Self {
        let mut b = self.b.borrow_mut();
        b.executors.retain(|(u, _)| u != env_urn);
        b.executors.push((env_urn.to_string(), executor));
        self
    }

    /// Puts `transform` in environment `env_id`, adding the environment.
    pub(crate) fn set_environment(&self, transform: &str, env_id: &str, env: pb::Environment) {
        let mut b = self.b.borrow_mut();
        b.components.environments.insert(env_id.to_string(), env);
        if let Some(t) = b.components.transforms.get_mut(transform) {
            t.environment_id = env_id.to_string();
        }
    }

    /// Runs the pipeline to completion with the runner chosen in its options
    /// (`--runner`, default `local`).
    ///
    /// # Errors
    /// [`Error::Plan`](crate::Error::Plan) for an invalid pipeline,
    /// [`Error::Execution`](crate::Error::Execution) when user code or IO
    /// fails (the message names the transform and element).
    ///
    /// An unbounded pipeline (or one run with `--streaming`) runs until it
    /// is drained: the first Ctrl-C drains it (every window fires, then
    /// `run` returns `Ok`), a second one cancels it ([`Error::Cancelled`]).
    /// Use [`Pipeline::start`] to drain or cancel it from code.
    ///
    /// [`Error::Cancelled`]: crate::Error::Cancelled
    ///
    /// In a harness process (`--worker`, see [`crate::worker`]) this serves
    /// the runner's bundles instead, and exits the process when the runner
    /// is done with it.
    pub fn run(&self) -> Result<PipelineResult> {
        self.serve_if_worker();
        let runner = runner_for(&self.options)?;
        if self.is_unbounded() && runner.name() == "local" {
            return self.start()?.wait();
        }
        self.run_with(&*runner)
    }

    /// Starts the pipeline on the local runner in the background and
    /// returns a handle to [drain](PipelineHandle::drain),
    /// [cancel](PipelineHandle::cancel) or [wait](PipelineHandle::wait) for
    /// it: how an unbounded pipeline is ended from code.
    ///
    /// ```
    /// use oxbeam::io::Generate;
    /// let p = oxbeam::Pipeline::default();
    /// p.apply("Events", Generate::unbounded().rate_per_second(1000))
    ///     .map("Seq", |(_, seq): &(u64, u64)| *seq);
    /// let job = p.start()?;
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// job.drain();
    /// job.wait()?;
    /// # Ok::<(), oxbeam::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Plan`](crate::Error::Plan) for an invalid pipeline,
    /// [`Error::UnknownRunner`](crate::Error::UnknownRunner) for a runner
    /// other than `local`, [`Error::Runner`](crate::Error::Runner) if
    /// Ctrl-C cannot be handled; execution errors come from
    /// [`PipelineHandle::wait`].
    pub fn start(&self) -> Result<PipelineHandle> {
        self.serve_if_worker();
        let runner = runner_for(&self.options)?;
        if runner.name() != "local" {
            return Err(crate::Error::UnknownRunner(self.options.runner.clone()));
        }
        let local = oxbeam_runner_local::LocalRunner::new(local_options(&self.options));
        // Handle Ctrl-C before the job runs: none may kill the process.
        let interrupts = if self.is_unbounded() {
            Some(InterruptGuard::new()?)
        } else {
            None
        };
        let (proto, executors) = self.proto_and_executors()?;
        let job = local.start(&proto, &executors).map_err(local_error)?;
        Ok(PipelineHandle::new(job, interrupts))
    }

    /// Whether the pipeline runs until drained: it reads an unbounded
    /// PCollection, or its options ask for the streaming engine.
    fn is_unbounded(&self) -> bool {
        self.options.streaming
            || self
                .b
                .borrow()
                .components
                .pcollections
                .values()
                .any(|pc| pc.is_bounded == pb::is_bounded::Enum::Unbounded as i32)
    }

    /// Runs the pipeline with `runner`.
    ///
    /// # Errors
    /// As [`Pipeline::run`].
    pub fn run_with(&self, runner: &dyn Runner) -> Result<PipelineResult> {
        self.serve_if_worker();
        let (proto, executors) = self.proto_and_executors()?;
        runner.run(&proto, &executors)
    }

    /// In worker mode, serves as an SDK harness and exits the process.
    fn serve_if_worker(&self) {
        if let Some(worker) = crate::worker::worker_options(self) {
            crate::worker::serve_and_exit(self, &worker);
        }
    }

    /// The proto and executors a runner gets: with `--environment-type
    /// PROCESS`, the native environment, and every environment whose
    /// executor was added with [`Pipeline::with_executor`] (Wasm), is a
    /// process environment running this binary as a worker, and has no
    /// in-process executor.
    fn proto_and_executors(&self) -> Result<(pb::Pipeline, Executors)> {
        use crate::options::EnvironmentType;
        let mut proto = self.to_proto();
        match self.options.environment_type {
            EnvironmentType::Embedded => return Ok((proto, self.executors())),
            EnvironmentType::InMemory => return Ok((proto, self.in_memory_executors()?)),
            EnvironmentType::Process => {}
        }
        let process =
            crate::worker::process_environment(self.options.environment_config.as_deref())?;
        let b = self.b.borrow();
        if let Some(c) = proto.components.as_mut() {
            for (id, env) in c.environments.iter_mut() {
                let served = id == NATIVE_ENVIRONMENT_ID
                    || b.executors.iter().any(|(urn, _)| *urn == env.urn);
                if served {
                    *env = process.clone();
                }
            }
        }
        Ok((proto, Executors::new()))
    }

    /// [`Pipeline::executors`], each serving as an SDK harness on a thread
    /// of this process, driven over the Fn API's in-memory transport.
    fn in_memory_executors(&self) -> Result<Executors> {
        let direct = self.executors();
        let mut wrapped = Executors::new();
        for urn in direct.env_urns() {
            let Some(executor) = direct.get(urn) else {
                continue;
            };
            let harness = oxbeam_fn_api::InMemoryHarness::start(executor.clone())
                .map_err(crate::Error::Execution)?;
            wrapped = wrapped.with(urn, Arc::new(harness));
        }
        Ok(wrapped)
    }

    /// The input of source transforms.
    pub fn begin(&self) -> PBegin {
        PBegin {
            pipeline: self.clone(),
        }
    }

    /// Applies a source composite (e.g. [`crate::io::ReadFromText`]).
    pub fn apply<P: PTransform<PBegin>>(&self, label: &str, transform: P) -> P::Output {
        self.composite(label, None, Vec::new(), || transform.expand(&self.begin()))
    }

    /// The executors added with [`Pipeline::with_executor`].
    pub(crate) fn added_executors(&self) -> Vec<Arc<dyn oxbeam_fn_api::Executor>> {
        self.b
            .borrow()
            .executors
            .iter()
            .map(|(_, x)| x.clone())
            .collect()
    }

    /// Runs `f` inside a composite transform named `label` with optional
    /// `spec`; its subtransforms are those `f` applies.
    pub(crate) fn composite<R: PValue>(
        &self,
        label: &str,
        spec: Option<pb::FunctionSpec>,
        inputs: Vec<String>,
        f: impl FnOnce() -> R,
    ) -> R {
        let name = self.reserve_name(label);
        self.composite_reserved(&name, spec, inputs, f)
    }

    /// As [`Pipeline::composite`], under a name taken with `reserve_name`.
    pub(crate) fn composite_reserved<R: PValue>(
        &self,
        name: &str,
        spec: Option<pb::FunctionSpec>,
        inputs: Vec<String>,
        f: impl FnOnce() -> R,
    ) -> R {
        let id = self
            .b
            .borrow_mut()
            .add_reserved_transform(name, spec, tags(inputs, "in"), false);
        self.b.borrow_mut().stack.push(id.clone());
        let out = f();
        let mut b = self.b.borrow_mut();
        b.stack.pop();
        b.set_outputs(&id, tags(out.pcollection_ids(), MAIN_TAG));
        out
    }

    /// Unique name the next transform labelled `label` would get, reserving it.
    pub(crate) fn reserve_name(&self, label: &str) -> String {
        self.b.borrow_mut().unique_name(label)
    }

    /// Adds a primitive transform.
    pub(crate) fn add_transform(
        &self,
        label: &str,
        spec: Option<pb::FunctionSpec>,
        inputs: Vec<(String, String)>,
        native: bool,
    ) -> String {
        self.b
            .borrow_mut()
            .add_transform(label, spec, inputs, native)
    }

    /// Adds output `tag` of element type `T` to `transform`.
    pub(crate) fn add_output<T: Element>(
        &self,
        transform: &str,
        tag: &str,
        wf: WindowFn,
    ) -> PCollection<T> {
        let spec = T::Coder::default().spec();
        let id = self
            .b
            .borrow_mut()
            .add_output_with_coder(transform, tag, &spec, wf);
        let t = ops::<T>();
        self.b.borrow().registry.insert_pcollection(&id, t.clone());
        global_registry().insert_pcollection(&id, t);
        PCollection {
            id,
            window_fn: wf,
            pipeline: self.clone(),
            _t: PhantomData,
        }
    }

    pub(crate) fn register(&self, name: &str, f: NativeFn) {
        self.b.borrow().register(name, f);
    }

    pub(crate) fn coder_id(&self, spec: &CoderSpec) -> String {
        self.b.borrow_mut().coder_id(spec)
    }

    /// Marks PCollection `pcollection` unbounded (streaming sources).
    /// Gives GroupByKey output `output` its input's windowing strategy with
    /// the continuation of the input's trigger, as Beam does (see
    /// [`crate::window`]'s `continuation_trigger`).
    pub(crate) fn set_continuation_windowing(&self, input: &str, output: &str) {
        let mut b = self.b.borrow_mut();
        let Some(ws) = b
            .components
            .pcollections
            .get(input)
            .and_then(|pc| {
                b.components
                    .windowing_strategies
                    .get(&pc.windowing_strategy_id)
            })
            .cloned()
        else {
            return;
        };
        let Some(trigger) = ws.trigger.as_ref() else {
            return;
        };
        let continuation = crate::window::continuation_trigger(trigger);
        if &continuation == trigger {
            return;
        }
        let id = format!("ws{}_{output}", b.windowing_ids.len());
        b.components.windowing_strategies.insert(
            id.clone(),
            pb::WindowingStrategy {
                trigger: Some(continuation),
                ..ws
            },
        );
        if let Some(pc) = b.components.pcollections.get_mut(output) {
            pc.windowing_strategy_id = id;
        }
    }

    pub(crate) fn set_unbounded(&self, pcollection: &str) {
        let mut b = self.b.borrow_mut();
        if let Some(pc) = b.components.pcollections.get_mut(pcollection) {
            pc.is_bounded = pb::is_bounded::Enum::Unbounded as i32;
        }
    }

    /// Sets the windowing strategy of PCollection `pcollection` (WindowInto).
    pub(crate) fn set_windowing_strategy(
        &self,
        pcollection: &str,
        wf: WindowFn,
        ws: Option<pb::WindowingStrategy>,
    ) {
        self.b
            .borrow_mut()
            .set_windowing_strategy(pcollection, wf, ws);
    }

    /// Impulse: one empty byte string in the global window (Beam's root of every source).
    pub fn impulse(&self, label: &str) -> PCollection<Vec<u8>> {
        let spec = pb::FunctionSpec {
            urn: urns::standard_p_transforms::primitives::IMPULSE.to_string(),
            payload: Default::default(),
        };
        let id = self.add_transform(label, Some(spec), Vec::new(), false);
        self.add_output::<Vec<u8>>(&id, MAIN_TAG, WindowFn::Global)
    }
}

impl<T: Element> PCollection<T> {
    /// The pipeline this collection belongs to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The PCollection's id in the pipeline proto.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The window fn of its windowing strategy.
    pub fn window_fn(&self) -> WindowFn {
        self.window_fn
    }

    /// Applies a composite transform, recorded as a composite named `label`.
    pub fn apply<P: PTransform<Self>>(&self, label: &str, transform: P) -> P::Output {
        self.pipeline
            .composite(label, None, vec![self.id.clone()], || {
                transform.expand(self)
            })
    }

    pub(crate) fn main_input(&self) -> Vec<(String, String)> {
        vec![("in".to_string(), self.id.clone())]
    }
}

impl<T> PCollection<T> {
    pub(crate) fn from_parts(id: String, window_fn: WindowFn, pipeline: Pipeline) -> Self {
        PCollection {
            id,
            window_fn,
            pipeline,
            _t: PhantomData,
        }
    }
}
