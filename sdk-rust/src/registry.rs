//! The registry of native functions: what a `NativeFunctionPayload.name` in
//! a pipeline proto means in this binary.
//!
//! Building a pipeline registers every DoFn, closure and CombineFn under a
//! name derived from its transform's unique name (e.g. `"Count words/Map"`),
//! in the pipeline's own registry and in the process-wide one
//! ([`global_registry`]). The same binary rebuilding the same pipeline (as a
//! worker of a distributed runner) therefore registers the same names, so a
//! descriptor from another process resolves. Two pipelines built in one
//! process with the same transform names overwrite each other in the
//! process-wide registry; [`Pipeline::run`](crate::Pipeline::run) uses the
//! pipeline's own registry and is not affected.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use oxbeam_fn_api::Result;

use crate::exec::Erased;
use crate::exec::ops::{ErasedOutput, OpInfo};
use crate::exec::side::{SideCache, ViewBuilder};
use crate::exec::types::TypeOps;

/// What the stage builder hands a ParDo factory.
pub(crate) struct ParDoArgs<'a> {
    pub info: OpInfo,
    /// `NativeFunctionPayload.params`.
    pub params: &'a [u8],
    /// The main output's receiver (`Box<dyn Receiver<Out>>`, erased).
    pub main: Erased,
    /// Additional outputs, in the order of [`ParDoFn::outputs`] after the main one.
    pub extra: Vec<ErasedOutput>,
    pub sides: SideCache,
    /// Window coder of the main input.
    pub input_window_coder: oxbeam_model::coders::WindowCoder,
    /// Where a stateful ParDo registers the receiver of its timers.
    pub timers: &'a mut crate::exec::TimerTargets,
}

/// Builds a ParDo operator; returns the `Box<dyn Receiver<In>>`, erased.
pub(crate) type ParDoFactory = dyn Fn(ParDoArgs<'_>) -> Result<Erased> + Send + Sync;

/// Builds the erased additional output of one tag from its receiver.
pub(crate) type TaggedFactory = fn(Arc<str>, Erased, &str) -> Result<ErasedOutput>;

/// A registered ParDo (DoFn or closure).
pub(crate) struct ParDoFn {
    /// Main input element type.
    pub input: Arc<dyn TypeOps>,
    /// Output tags with their element types; the first is the main output.
    pub outputs: Vec<(Arc<str>, Arc<dyn TypeOps>, TaggedFactory)>,
    /// Side inputs by local name.
    pub side_inputs: Vec<(String, Arc<dyn ViewBuilder>)>,
    pub factory: Box<ParDoFactory>,
}

/// A registered CombineFn, keyed: builds any combine component.
pub(crate) trait CombineEntry: Send + Sync {
    /// Input and output element types of the component `urn`, if supported.
    fn types(&self, urn: &str) -> Option<(Arc<dyn TypeOps>, Arc<dyn TypeOps>)>;
    /// The component `urn` feeding `next`.
    fn build(&self, urn: &str, info: OpInfo, next: Erased) -> Result<Erased>;
}

/// A registered native function.
pub(crate) enum NativeFn {
    ParDo(ParDoFn),
    Combine(Arc<dyn CombineEntry>),
    Splittable(Arc<dyn crate::sdf::SplittableEntry>),
}

/// Native functions by name, and element types by PCollection id.
#[derive(Default)]
pub struct Registry {
    fns: RwLock<HashMap<String, Arc<NativeFn>>>,
    pcollections: RwLock<HashMap<String, Arc<dyn TypeOps>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.fns.read().map_or(0, |m| m.len());
        write!(f, "Registry({n} functions)")
    }
}

impl Registry {
    pub(crate) fn insert_fn(&self, name: &str, f: Arc<NativeFn>) {
        if let Ok(mut m) = self.fns.write() {
            m.insert(name.to_string(), f);
        }
    }

    pub(crate) fn insert_pcollection(&self, id: &str, t: Arc<dyn TypeOps>) {
        if let Ok(mut m) = self.pcollections.write() {
            m.insert(id.to_string(), t);
        }
    }

    pub(crate) fn get_fn(&self, name: &str) -> Option<Arc<NativeFn>> {
        self.fns.read().ok()?.get(name).cloned()
    }

    pub(crate) fn get_pcollection(&self, id: &str) -> Option<Arc<dyn TypeOps>> {
        self.pcollections.read().ok()?.get(id).cloned()
    }

    /// Names of the registered functions, sorted.
    pub fn function_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .fns
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// The process-wide registry, for workers that receive descriptors of a
/// pipeline built (identically) by this same binary.
pub fn global_registry() -> &'static Arc<Registry> {
    static GLOBAL: OnceLock<Arc<Registry>> = OnceLock::new();
    GLOBAL.get_or_init(Default::default)
}
