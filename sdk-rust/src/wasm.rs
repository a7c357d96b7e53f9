//! WebAssembly user functions in Rust pipelines.
//!
//! A [`WasmFn`] names an export of a Wasm module (built with the
//! `oxbeam-wasm-guest` crate, or any language implementing `wasm/ABI.md`).
//! The transforms here put it in the pipeline as a ParDo or Combine whose
//! function is `oxbeam:fn:wasm_do_fn:v1` / `oxbeam:fn:wasm_combine_fn:v1`,
//! in environment [`WASM_ENVIRONMENT_ID`] (`oxbeam:env:wasm:v1`). The runner
//! fuses Wasm transforms among themselves and hands their stages to the
//! executor registered for that URN: add one with
//! [`Pipeline::with_executor`](crate::Pipeline::with_executor), e.g.
//! `oxbeam_wasm::WasmExecutor` (this crate does not depend on wasmtime).
//!
//! Values cross into the guest as their coder's outer-context encoding
//! (raw UTF-8 for `String`, a varint for integers, ...). Guests built for
//! `wasm32-wasip1` get the WASI preview 1 functions they import, deny by
//! default; [`WasmFn::grant_env`], [`WasmFn::grant_clock`] and
//! [`WasmFn::grant_random`] open what a function needs.
//!
//! ```
//! use oxbeam::wasm::{WasmFn, WasmMap};
//! use oxbeam::Pipeline;
//! let module = std::sync::Arc::new(Vec::new()); // the .wasm bytes
//! let p = Pipeline::default();
//! let upper = p
//!     .create("Words", vec!["a".to_string()])
//!     .apply("Upper", WasmMap::<String>::new(WasmFn::new(module, "upper")));
//! # let _ = upper;
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_model::oxbeam::{
    WasmFunctionKind, WasmFunctionPayload, WasmGrants, WasmLimits, wasm_function_payload,
};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use prost::Message;

use crate::coder::{Coder, Element};
use crate::pipeline::{MAIN_TAG, PCollection, PTransform};

/// Id of the Wasm environment in the pipeline proto.
pub const WASM_ENVIRONMENT_ID: &str = "oxbeam-wasm";

/// One function exported by a Wasm module, with its configuration.
#[derive(Clone, Debug)]
pub struct WasmFn {
    module: Module,
    export: String,
    config: Vec<u8>,
    limits: Option<WasmLimits>,
    grants: Option<WasmGrants>,
}

#[derive(Clone, Debug)]
enum Module {
    Bytes(Arc<Vec<u8>>),
    Artifact(String),
}

impl WasmFn {
    /// The export `export` of the module `module` (embedded in the pipeline).
    pub fn new(module: Arc<Vec<u8>>, export: &str) -> Self {
        WasmFn {
            module: Module::Bytes(module),
            export: export.to_string(),
            config: Vec::new(),
            limits: None,
            grants: None,
        }
    }

    /// The export `export` of the module in file `path`, read by the
    /// executor (the path must be valid where the stage runs).
    pub fn from_artifact(path: &str, export: &str) -> Self {
        WasmFn {
            module: Module::Artifact(path.to_string()),
            export: export.to_string(),
            config: Vec::new(),
            limits: None,
            grants: None,
        }
    }

    /// Bytes handed to the instance's `oxbeam_configure` before any batch.
    pub fn with_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.config = config.into();
        self
    }

    /// Resource limits; zero keeps the executor's default.
    pub fn with_limits(
        mut self,
        max_memory_bytes: u64,
        bundle_deadline_millis: u64,
        fuel_per_bundle: u64,
    ) -> Self {
        self.limits = Some(WasmLimits {
            max_memory_bytes,
            bundle_deadline_millis,
            fuel_per_bundle,
        });
        self
    }

    /// Grants the environment variable `key=value` to the guest (WASI
    /// `environ_get`; guests see no variables otherwise).
    pub fn grant_env(mut self, key: &str, value: &str) -> Self {
        self.grants
            .get_or_insert_with(Default::default)
            .env
            .push(format!("{key}={value}"));
        self
    }

    /// Grants the wall-clock and monotonic clocks (WASI `clock_time_get`;
    /// `ENOTCAPABLE` otherwise).
    pub fn grant_clock(mut self) -> Self {
        self.grants.get_or_insert_with(Default::default).clock = true;
        self
    }

    /// Grants random bytes (WASI `random_get`; `ENOTCAPABLE` otherwise).
    pub fn grant_random(mut self) -> Self {
        self.grants.get_or_insert_with(Default::default).random = true;
        self
    }

    fn spec(&self, urn: &str, kind: WasmFunctionKind) -> pb::FunctionSpec {
        let module = match &self.module {
            Module::Bytes(b) => {
                wasm_function_payload::Module::ModuleBytes(b.as_slice().to_vec().into())
            }
            Module::Artifact(p) => wasm_function_payload::Module::ModuleArtifact(p.clone()),
        };
        let payload = WasmFunctionPayload {
            module: Some(module),
            export_name: self.export.clone(),
            kind: kind as i32,
            config: self.config.clone().into(),
            limits: self.limits,
            module_sha256: String::new(),
            display: format!("wasm:{}", self.export),
            abi_version: 1,
            grants: self.grants.clone(),
        };
        pb::FunctionSpec {
            urn: urn.to_string(),
            payload: payload.encode_to_vec().into(),
        }
    }
}

fn environment() -> pb::Environment {
    pb::Environment {
        urn: urns::wasm_functions::ENVIRONMENT.to_string(),
        ..Default::default()
    }
}

fn wasm_par_do<T: Element, O: Element>(
    input: &PCollection<T>,
    f: &WasmFn,
    kind: WasmFunctionKind,
) -> PCollection<O> {
    let p = input.pipeline();
    let payload = pb::ParDoPayload {
        do_fn: Some(f.spec(urns::wasm_functions::DO_FN, kind)),
        ..Default::default()
    };
    let spec = pb::FunctionSpec {
        urn: urns::standard_p_transforms::primitives::PAR_DO.to_string(),
        payload: payload.encode_to_vec().into(),
    };
    let id = p.add_transform("ParDo", Some(spec), input.main_input(), false);
    p.set_environment(&id, WASM_ENVIRONMENT_ID, environment());
    p.add_output::<O>(&id, MAIN_TAG, input.window_fn())
}

macro_rules! elementwise {
    ($(#[$doc:meta])* $name:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name<O> {
            f: WasmFn,
            _o: PhantomData<fn() -> O>,
        }

        impl<O> $name<O> {
            /// The transform running `f`.
            pub fn new(f: WasmFn) -> Self {
                $name { f, _o: PhantomData }
            }
        }

        impl<T: Element, O: Element> PTransform<PCollection<T>> for $name<O> {
            type Output = PCollection<O>;
            fn expand(self, input: &PCollection<T>) -> PCollection<O> {
                wasm_par_do(input, &self.f, WasmFunctionKind::$kind)
            }
        }
    };
}

elementwise!(
    /// One `O` per input (kind `MAP`); timestamp and windows are kept.
    WasmMap,
    Map
);
elementwise!(
    /// Zero or more `O`s per input (kind `FLAT_MAP`).
    WasmFlatMap,
    FlatMap
);
elementwise!(
    /// A DoFn (kind `DO_FN`) seeing key, value, timestamp and window; it
    /// sets output timestamps.
    WasmDoFn,
    DoFn
);

/// The constructors the issue of Wasm UDFs names, next to the native ones:
/// [`Map::wasm`], [`FlatMap::wasm`], [`Filter::wasm`] and
/// [`ParDo::wasm`](crate::ParDo::wasm) build the transforms above.
///
/// ```
/// use std::sync::Arc;
/// use oxbeam::wasm::{Filter, FlatMap, Map, WasmFn};
/// use oxbeam::{ParDo, Pipeline};
/// let module = Arc::new(Vec::new()); // the .wasm bytes
/// let p = Pipeline::default();
/// let lines = p.create("Lines", vec!["a b".to_string()]);
/// let words = lines.apply("Split", FlatMap::wasm::<String>(WasmFn::new(module.clone(), "tokenize")));
/// let long = words.apply("Long", Filter::wasm(WasmFn::new(module.clone(), "min_len")));
/// let upper = long.apply("Upper", Map::wasm::<String>(WasmFn::new(module.clone(), "upper")));
/// let described = upper.apply("Describe", ParDo::wasm::<String>(WasmFn::new(module, "describe")));
/// # let _ = described;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Map;

impl Map {
    /// A [`WasmMap`] running `f`.
    pub fn wasm<O>(f: WasmFn) -> WasmMap<O> {
        WasmMap::new(f)
    }
}

/// See [`Map`]: [`FlatMap::wasm`] builds a [`WasmFlatMap`].
#[derive(Clone, Copy, Debug)]
pub struct FlatMap;

impl FlatMap {
    /// A [`WasmFlatMap`] running `f`.
    pub fn wasm<O>(f: WasmFn) -> WasmFlatMap<O> {
        WasmFlatMap::new(f)
    }
}

/// See [`Map`]: [`Filter::wasm`] builds a [`WasmFilter`].
#[derive(Clone, Copy, Debug)]
pub struct Filter;

impl Filter {
    /// A [`WasmFilter`] running `f`.
    pub fn wasm(f: WasmFn) -> WasmFilter {
        WasmFilter::new(f)
    }
}

/// The DoFn type of [`ParDo::wasm`](crate::ParDo::wasm): it has no values;
/// it only gives that constructor a home next to `ParDo::of`.
#[derive(Clone, Copy, Debug)]
pub enum WasmParDo {}

impl crate::DoFn for WasmParDo {
    type In = Vec<u8>;
    type Out = Vec<u8>;
    fn process(&mut self, _: &Vec<u8>, _: &mut crate::ProcessContext<'_, Vec<u8>>) {
        match *self {}
    }
}

impl crate::ParDo<WasmParDo> {
    /// A ParDo of a Wasm DoFn (a [`WasmDoFn`]: sees key, value, timestamp
    /// and window, sets output timestamps), e.g.
    /// `xs.apply("Describe", ParDo::wasm::<String>(WasmFn::new(module, "describe")))`.
    pub fn wasm<O>(f: WasmFn) -> WasmDoFn<O> {
        WasmDoFn::new(f)
    }
}

/// Keeps the elements the function accepts (kind `FILTER`).
#[derive(Clone, Debug)]
pub struct WasmFilter {
    f: WasmFn,
}

impl WasmFilter {
    /// The transform running `f`.
    pub fn new(f: WasmFn) -> Self {
        WasmFilter { f }
    }
}

impl<T: Element> PTransform<PCollection<T>> for WasmFilter {
    type Output = PCollection<T>;
    fn expand(self, input: &PCollection<T>) -> PCollection<T> {
        wasm_par_do(input, &self.f, WasmFunctionKind::Filter)
    }
}

/// Combine per key with a Wasm CombineFn (kind `COMBINE`): one `(K, O)` per
/// key and window. `A` is the accumulator's element type (its coder encodes
/// the guest's accumulator bytes; `Vec<u8>` by default).
#[derive(Clone, Debug)]
pub struct WasmCombinePerKey<O, A = Vec<u8>> {
    f: WasmFn,
    _o: PhantomData<fn() -> (O, A)>,
}

impl<O, A> WasmCombinePerKey<O, A> {
    /// The transform running `f`.
    pub fn new(f: WasmFn) -> Self {
        WasmCombinePerKey { f, _o: PhantomData }
    }
}

/// The `CombinePayload` of a Wasm CombineFn with accumulator type `A`.
fn combine_payload<A: Element>(f: &WasmFn, p: &crate::Pipeline) -> Vec<u8> {
    pb::CombinePayload {
        combine_fn: Some(f.spec(urns::wasm_functions::COMBINE_FN, WasmFunctionKind::Combine)),
        accumulator_coder_id: p.coder_id(&<A as Element>::Coder::default().spec()),
    }
    .encode_to_vec()
}

/// The Wasm CombineFn over each grouped `(K, [V])` of `grouped`
/// (`beam:transform:combine_grouped_values:v1` in the Wasm environment).
fn combine_grouped_values<K: Element, V: Element, O: Element>(
    grouped: &PCollection<(K, Vec<V>)>,
    label: &str,
    payload: Vec<u8>,
) -> PCollection<(K, O)> {
    let p = grouped.pipeline().clone();
    let spec = pb::FunctionSpec {
        urn: urns::standard_p_transforms::combine_components::COMBINE_GROUPED_VALUES.to_string(),
        payload: payload.into(),
    };
    let id = p.add_transform(label, Some(spec), grouped.main_input(), false);
    p.set_environment(&id, WASM_ENVIRONMENT_ID, environment());
    p.add_output::<(K, O)>(&id, MAIN_TAG, grouped.window_fn())
}

impl<K: Element, V: Element, O: Element, A: Element> PTransform<PCollection<(K, V)>>
    for WasmCombinePerKey<O, A>
{
    type Output = PCollection<(K, O)>;
    fn expand(self, input: &PCollection<(K, V)>) -> PCollection<(K, O)> {
        let p = input.pipeline().clone();
        let name = p.reserve_name("CombinePerKey");
        let payload = combine_payload::<A>(&self.f, &p);
        let spec = pb::FunctionSpec {
            urn: urns::standard_p_transforms::composites::COMBINE_PER_KEY.to_string(),
            payload: payload.clone().into(),
        };
        p.composite_reserved(&name, Some(spec), vec![input.id().to_string()], || {
            let grouped = input.group_by_key("GroupByKey");
            combine_grouped_values(&grouped, "CombineValues", payload)
        })
    }
}

/// Combine of all elements with a Wasm CombineFn (kind `COMBINE`): one `O`
/// per window. In the global window an empty input gives the CombineFn's
/// result for no input (the guest's `extract(create())`), as Beam's
/// `CombineGlobally`; [`without_defaults`](Self::without_defaults) drops it.
#[derive(Clone, Debug)]
pub struct WasmCombineGlobally<O, A = Vec<u8>> {
    f: WasmFn,
    has_defaults: bool,
    _o: PhantomData<fn() -> (O, A)>,
}

impl<O, A> WasmCombineGlobally<O, A> {
    /// The transform running `f`.
    pub fn new(f: WasmFn) -> Self {
        WasmCombineGlobally {
            f,
            has_defaults: true,
            _o: PhantomData,
        }
    }

    /// No output for an empty input.
    #[must_use]
    pub fn without_defaults(mut self) -> Self {
        self.has_defaults = false;
        self
    }
}

/// Emits the combined value, or the default when there is none.
#[derive(Clone)]
struct CombinedOrDefault<O: Element> {
    combined: crate::SideInput<Vec<O>>,
    default: crate::SideInput<Vec<O>>,
}

impl<O: Element> crate::DoFn for CombinedOrDefault<O> {
    type In = Vec<u8>;
    type Out = O;
    fn process(&mut self, _: &Vec<u8>, ctx: &mut crate::ProcessContext<'_, O>) {
        let combined = ctx.side_input(&self.combined);
        let chosen = if combined.is_empty() {
            ctx.side_input(&self.default)
        } else {
            combined
        };
        for v in chosen.iter() {
            ctx.output(v.clone());
        }
    }
}

impl<V: Element, O: Element, A: Element> PTransform<PCollection<V>> for WasmCombineGlobally<O, A> {
    type Output = PCollection<O>;
    fn expand(self, input: &PCollection<V>) -> PCollection<O> {
        let p = input.pipeline().clone();
        let payload = combine_payload::<A>(&self.f, &p);
        let combined = input
            .map("KeyWithVoid", |v: &V| (Vec::<u8>::new(), v.clone()))
            .apply(
                "CombinePerKey",
                WasmCombinePerKey::<O, A>::new(self.f.clone()),
            )
            .values("DropKey");
        if !self.has_defaults || input.window_fn() != crate::WindowFn::Global {
            return combined;
        }
        // The result for no input: the CombineFn over one empty group.
        let empty = p.create("EmptyGroup", vec![(Vec::<u8>::new(), Vec::<V>::new())]);
        let default = combine_grouped_values::<Vec<u8>, V, O>(&empty, "CombineEmptyGroup", payload)
            .values("DefaultValue");
        let (c, d) = (combined.as_iterable(), default.as_iterable());
        p.impulse("DoOnce").par_do(
            "InjectDefault",
            crate::ParDo::of(CombinedOrDefault {
                combined: c.clone(),
                default: d.clone(),
            })
            .with_side_input(&c)
            .with_side_input(&d),
        )
    }
}
