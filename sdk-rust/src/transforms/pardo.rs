//! ParDo and the element-wise transforms built on it: `map`, `flat_map`,
//! `filter`, keys and values, timestamps, and [`ParDo`] over a [`DoFn`].

use std::any::TypeId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use oxbeam_fn_api::Result;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::Timestamp;
use prost::Message;

use crate::coder::Element;
use crate::dofn::{DoFn, TupleTag};
use crate::exec::ops::{
    ErasedOutput, FilterOp, FlatMapOp, MapOp, OpInfo, OwnedOp, PairOp, ParDoOp, ValueOp,
};
use crate::exec::side::ViewBuilder;
use crate::exec::types::{TypeOps, ops};
use crate::exec::{Batch, Erased, Meta, Receiver, WindowedValue, erase, unerase};
use crate::pipeline::{MAIN_TAG, PCollection, Pipeline, native_spec};
use crate::registry::{NativeFn, ParDoArgs, ParDoFn, TaggedFactory};
use crate::transforms::fns::{FlatMapFn, MapFn};
use crate::view::SideInput;
use crate::window::WindowFn;

fn tagged_factory<U: Element>(id: Arc<str>, r: Erased, what: &str) -> Result<ErasedOutput> {
    Ok(ErasedOutput::new::<U>(id, unerase::<U>(r, what)?))
}

/// The declaration of a main output of type `U`.
pub(crate) fn main_output<U: Element>() -> (Arc<str>, Arc<dyn TypeOps>, TaggedFactory) {
    (MAIN_TAG.into(), ops::<U>(), tagged_factory::<U>)
}

/// A side input declared on a ParDo.
#[derive(Clone)]
pub(crate) struct SideDecl {
    pub local_name: String,
    pub pcoll_id: String,
    pub window_fn: WindowFn,
    pub access_urn: &'static str,
    pub builder: Arc<dyn ViewBuilder>,
}

/// An additional output declared on a ParDo.
pub(crate) struct OutputDecl {
    pub tag: Arc<str>,
    pub ty: Arc<dyn TypeOps>,
    pub factory: TaggedFactory,
    pub add: fn(&Pipeline, &str, &str, WindowFn) -> String,
}

fn add_output_erased<U: Element>(p: &Pipeline, transform: &str, tag: &str, wf: WindowFn) -> String {
    p.add_output::<U>(transform, tag, wf).id
}

/// Adds a native ParDo transform; returns its id. The caller adds outputs.
pub(crate) fn add_pardo(
    p: &Pipeline,
    label: &str,
    input: &str,
    display: String,
    params: Vec<u8>,
    sides: &[SideDecl],
    entry: impl FnOnce(&str) -> ParDoFn,
) -> String {
    let name = p.reserve_name(label);
    let side_inputs = sides
        .iter()
        .map(|s| {
            (
                s.local_name.clone(),
                pb::SideInput {
                    access_pattern: Some(pb::FunctionSpec {
                        urn: s.access_urn.to_string(),
                        payload: Default::default(),
                    }),
                    view_fn: None,
                    window_mapping_fn: Some(s.window_fn.to_proto()),
                },
            )
        })
        .collect();
    let mut inputs = vec![("in".to_string(), input.to_string())];
    inputs.extend(
        sides
            .iter()
            .map(|s| (s.local_name.clone(), s.pcoll_id.clone())),
    );
    let payload = pb::ParDoPayload {
        side_inputs,
        ..Default::default()
    };
    let id = add_native_pardo_transform(p, &name, inputs, params, display, payload);
    p.register(&id, NativeFn::ParDo(entry(&id)));
    id
}

/// Adds the ParDo transform `name` (a name taken with
/// `Pipeline::reserve_name`) reading `inputs` (the main one as `"in"`), its
/// `payload` (side inputs, state specs, restriction coder...) completed
/// with the native DoFn registered under `name`; returns its id. The caller
/// registers the function and adds outputs.
pub(crate) fn add_native_pardo_transform(
    p: &Pipeline,
    name: &str,
    inputs: Vec<(String, String)>,
    params: Vec<u8>,
    display: String,
    payload: pb::ParDoPayload,
) -> String {
    let payload = pb::ParDoPayload {
        do_fn: Some(native_spec(
            urns::native_functions::DO_FN,
            name,
            params,
            display,
        )),
        ..payload
    };
    let spec = pb::FunctionSpec {
        urn: urns::standard_p_transforms::primitives::PAR_DO.to_string(),
        payload: payload.encode_to_vec().into(),
    };
    // `reserve_name` took the unique name; register the transform under it.
    p.b.borrow_mut()
        .add_reserved_transform(name, Some(spec), inputs, true)
}

/// A single-output ParDo entry whose operator is built by `build` from the
/// next receiver.
pub(crate) fn simple_entry<T: Element, U: Element>(
    build: impl Fn(OpInfo, Box<dyn Receiver<U>>) -> Box<dyn Receiver<T>> + Send + Sync + 'static,
) -> ParDoFn {
    ParDoFn {
        input: ops::<T>(),
        outputs: vec![(MAIN_TAG.into(), ops::<U>(), tagged_factory::<U>)],
        side_inputs: Vec::new(),
        factory: Box::new(move |args: ParDoArgs<'_>| {
            let what = args.info.transform_id.clone();
            let next = unerase::<U>(args.main, &what)?;
            Ok(erase::<T>(build(args.info, next)))
        }),
    }
}

impl<T: Element> PCollection<T> {
    /// Applies a single-output native ParDo built by `build`.
    pub(crate) fn simple_pardo<U: Element>(
        &self,
        label: &str,
        display: &str,
        build: impl Fn(OpInfo, Box<dyn Receiver<U>>) -> Box<dyn Receiver<T>> + Send + Sync + 'static,
    ) -> PCollection<U> {
        self.simple_pardo_windowed(label, display, self.window_fn, build)
    }

    pub(crate) fn simple_pardo_windowed<U: Element>(
        &self,
        label: &str,
        display: &str,
        out_window_fn: WindowFn,
        build: impl Fn(OpInfo, Box<dyn Receiver<U>>) -> Box<dyn Receiver<T>> + Send + Sync + 'static,
    ) -> PCollection<U> {
        let id = add_pardo(
            &self.pipeline,
            label,
            &self.id,
            display.to_string(),
            Vec::new(),
            &[],
            |_| simple_entry::<T, U>(build),
        );
        self.pipeline.add_output::<U>(&id, MAIN_TAG, out_window_fn)
    }

    /// Applies an SDK-internal function over owned windowed values.
    pub(crate) fn owned_pardo<U: Element>(
        &self,
        label: &str,
        f: impl FnMut(WindowedValue<T>) -> Option<WindowedValue<U>> + Clone + Send + Sync + 'static,
    ) -> PCollection<U> {
        self.simple_pardo(label, label, move |_, next| {
            Box::new(OwnedOp {
                f: f.clone(),
                next,
                out: Batch::default(),
                _t: PhantomData,
            })
        })
    }

    /// Applies an SDK-internal function of the value alone (timestamp,
    /// window and pane kept).
    pub(crate) fn owned_map<U: Element>(
        &self,
        label: &str,
        f: impl FnMut(T) -> U + Clone + Send + Sync + 'static,
    ) -> PCollection<U> {
        self.simple_pardo(label, label, move |_, next| {
            Box::new(ValueOp {
                f: f.clone(),
                next,
                out: Batch::default(),
                _t: PhantomData,
            })
        })
    }

    /// `Map`: `f` applied to every element, taking it by reference
    /// (`|x: &T| ...`) or by value (`|x: T| ...`; see [`MapFn`]).
    ///
    /// By value avoids cloning when the output reuses the input:
    ///
    /// ```
    /// # let p = oxbeam::Pipeline::default();
    /// let words = p.create("Words", vec!["a".to_string(), "b".to_string()]);
    /// let loud = words.map("Shout", |mut w: String| {
    ///     w.make_ascii_uppercase();
    ///     w
    /// });
    /// let lengths = words.map("Length", |w: &String| w.len() as i64);
    /// # let _ = (loud, lengths);
    /// ```
    ///
    /// A panic fails the job with the transform's name and the element,
    /// except that an element taken by value was moved into `f` and is
    /// reported as such.
    pub fn map<U: Element, K: 'static, F: MapFn<T, U, K>>(
        &self,
        label: &str,
        f: F,
    ) -> PCollection<U> {
        let f = Arc::new(f);
        self.simple_pardo(label, std::any::type_name::<F>(), move |info, next| {
            Box::new(MapOp {
                info,
                f: f.clone(),
                next,
                out: Batch::default(),
                _t: PhantomData,
            })
        })
    }

    /// `FlatMap`: every item of the iterable `f` returns becomes an element.
    /// `f` takes the element by reference (`|x: &T| ...`) or by value
    /// (`|x: T| ...`), as for [`map`](Self::map).
    pub fn flat_map<U, I, K, F>(&self, label: &str, f: F) -> PCollection<U>
    where
        U: Element,
        I: IntoIterator<Item = U> + 'static,
        K: 'static,
        F: FlatMapFn<T, I, K>,
    {
        let f = Arc::new(f);
        self.simple_pardo(label, std::any::type_name::<F>(), move |info, next| {
            Box::new(FlatMapOp {
                info,
                f: f.clone(),
                next,
                out: Batch::default(),
                _t: PhantomData,
            })
        })
    }

    /// `Filter`: keeps the elements for which `f` is true.
    pub fn filter<F: Fn(&T) -> bool + Send + Sync + 'static>(
        &self,
        label: &str,
        f: F,
    ) -> PCollection<T> {
        let f = Arc::new(f);
        self.simple_pardo(label, std::any::type_name::<F>(), move |info, next| {
            Box::new(FilterOp {
                info,
                f: f.clone(),
                next,
                keep: Vec::new(),
            })
        })
    }

    /// `WithKeys`: pairs every element with the key `f` computes.
    pub fn with_keys<K: Element, F: Fn(&T) -> K + Send + Sync + 'static>(
        &self,
        label: &str,
        f: F,
    ) -> PCollection<(K, T)> {
        let f = Arc::new(f);
        self.simple_pardo(label, std::any::type_name::<F>(), move |info, next| {
            Box::new(PairOp {
                info,
                f: f.clone(),
                combine: |v: T, _: &mut Meta, k: K| (k, v),
                next,
                out: Batch::default(),
                _t: PhantomData,
            })
        })
    }

    /// `WithTimestamps`: sets each element's event time to what `f` returns.
    /// Elements keep their window; re-window with
    /// [`window_into`](Self::window_into) after it.
    pub fn with_timestamps<F: Fn(&T) -> Timestamp + Send + Sync + 'static>(
        &self,
        label: &str,
        f: F,
    ) -> PCollection<T> {
        let f = Arc::new(f);
        self.simple_pardo(label, std::any::type_name::<F>(), move |info, next| {
            Box::new(PairOp {
                info,
                f: f.clone(),
                combine: crate::exec::ops::with_timestamp::<T>,
                next,
                out: Batch::default(),
                _t: PhantomData,
            })
        })
    }

    /// Applies a [`ParDo`] of a [`DoFn`]; returns its main output.
    pub fn par_do<D: DoFn<In = T>>(&self, label: &str, pardo: ParDo<D>) -> PCollection<D::Out> {
        self.par_do_with_outputs(label, pardo).0
    }

    /// Applies a [`ParDo`] with additional outputs; returns the main output
    /// and the tagged ones.
    pub fn par_do_with_outputs<D: DoFn<In = T>>(
        &self,
        label: &str,
        pardo: ParDo<D>,
    ) -> (PCollection<D::Out>, TaggedOutputs) {
        let ParDo {
            dofn,
            outputs,
            sides,
        } = pardo;
        let mut declared = vec![(
            Arc::<str>::from(MAIN_TAG),
            ops::<D::Out>(),
            tagged_factory::<D::Out> as TaggedFactory,
        )];
        declared.extend(
            outputs
                .iter()
                .map(|o| (o.tag.clone(), o.ty.clone(), o.factory)),
        );
        let side_builders: Vec<(String, Arc<dyn ViewBuilder>)> = sides
            .iter()
            .map(|s| (s.local_name.clone(), s.builder.clone()))
            .collect();
        let proto = Mutex::new(dofn);
        let id = add_pardo(
            &self.pipeline,
            label,
            &self.id,
            std::any::type_name::<D>().to_string(),
            Vec::new(),
            &sides,
            |_| ParDoFn {
                input: ops::<T>(),
                outputs: declared,
                side_inputs: side_builders,
                factory: Box::new(move |args: ParDoArgs<'_>| {
                    let what = args.info.transform_id.clone();
                    let dofn = proto
                        .lock()
                        .map_err(|_| {
                            oxbeam_fn_api::Error::Internal("DoFn prototype lock poisoned".into())
                        })?
                        .clone();
                    let main = unerase::<D::Out>(args.main, &what)?;
                    let op = ParDoOp::new(args.info, dofn, main, args.extra, args.sides)?;
                    Ok(erase::<T>(Box::new(op)))
                }),
            },
        );
        let main = self
            .pipeline
            .add_output::<D::Out>(&id, MAIN_TAG, self.window_fn);
        let mut tagged = HashMap::new();
        for o in &outputs {
            let pid = (o.add)(&self.pipeline, &id, &o.tag, self.window_fn);
            tagged.insert(o.tag.to_string(), (pid, o.ty.type_id()));
        }
        (
            main,
            TaggedOutputs {
                pipeline: self.pipeline.clone(),
                window_fn: self.window_fn,
                outputs: tagged,
            },
        )
    }
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// `Keys`: the key of every pair.
    pub fn keys(&self, label: &str) -> PCollection<K> {
        self.owned_map(label, |(k, _): (K, V)| k)
    }

    /// `Values`: the value of every pair.
    pub fn values(&self, label: &str) -> PCollection<V> {
        self.owned_map(label, |(_, v): (K, V)| v)
    }

    /// `KvSwap`: `(k, v)` becomes `(v, k)`.
    pub fn kv_swap(&self, label: &str) -> PCollection<(V, K)> {
        self.owned_map(label, |(k, v): (K, V)| (v, k))
    }

    /// `MapValues`: `f` applied to every value, keys kept.
    pub fn map_values<U: Element, F: Fn(&V) -> U + Send + Sync + 'static>(
        &self,
        label: &str,
        f: F,
    ) -> PCollection<(K, U)> {
        let f = Arc::new(f);
        self.simple_pardo(label, std::any::type_name::<F>(), move |info, next| {
            Box::new(PairOp {
                info,
                f: {
                    let f = f.clone();
                    Arc::new(move |kv: &(K, V)| f(&kv.1))
                },
                combine: |(k, _): (K, V), _: &mut Meta, u: U| (k, u),
                next,
                out: Batch::default(),
                _t: PhantomData,
            })
        })
    }
}

/// A ParDo of a [`DoFn`], with its additional outputs and side inputs.
///
/// ```no_run
/// # use oxbeam::{DoFn, ParDo, Pipeline, ProcessContext, TupleTag};
/// #[derive(Clone)]
/// struct Parse { errors: TupleTag<String> }
/// impl DoFn for Parse {
///     type In = String;
///     type Out = i64;
///     fn process(&mut self, s: &String, ctx: &mut ProcessContext<'_, i64>) {
///         match s.parse() {
///             Ok(n) => ctx.output(n),
///             Err(_) => ctx.output_to(&self.errors, s.clone()),
///         }
///     }
/// }
/// let p = Pipeline::default();
/// let errors = TupleTag::<String>::new("errors");
/// let lines = p.create("Lines", vec!["1".to_string(), "x".to_string()]);
/// let (numbers, tagged) = lines.par_do_with_outputs(
///     "Parse",
///     ParDo::of(Parse { errors: errors.clone() }).with_output(&errors),
/// );
/// let bad = tagged.get(&errors);
/// ```
pub struct ParDo<D: DoFn> {
    dofn: D,
    outputs: Vec<OutputDecl>,
    sides: Vec<SideDecl>,
}

impl<D: DoFn> ParDo<D> {
    /// A ParDo running clones of `dofn`.
    pub fn of(dofn: D) -> Self {
        ParDo {
            dofn,
            outputs: Vec::new(),
            sides: Vec::new(),
        }
    }

    /// Declares the additional output `tag`.
    pub fn with_output<U: Element>(mut self, tag: &TupleTag<U>) -> Self {
        assert!(
            &*tag.id != MAIN_TAG,
            "the tag {MAIN_TAG:?} is reserved for the main output"
        );
        self.outputs.push(OutputDecl {
            tag: tag.id.clone(),
            ty: ops::<U>(),
            factory: tagged_factory::<U>,
            add: add_output_erased::<U>,
        });
        self
    }

    /// Declares the side input `view`.
    pub fn with_side_input<O>(mut self, view: &SideInput<O>) -> Self {
        if !self.sides.iter().any(|s| s.local_name == view.local_name) {
            self.sides.push(SideDecl {
                local_name: view.local_name.clone(),
                pcoll_id: view.pcoll_id.clone(),
                window_fn: view.window_fn,
                access_urn: view.access_urn,
                builder: view.builder.clone(),
            });
        }
        self
    }
}

/// The additional outputs of a ParDo, by tag.
#[derive(Debug)]
pub struct TaggedOutputs {
    pipeline: Pipeline,
    window_fn: WindowFn,
    outputs: HashMap<String, (String, TypeId)>,
}

impl TaggedOutputs {
    /// The output of `tag`.
    ///
    /// # Panics
    /// If `tag` was not declared on the ParDo, or with another element type.
    pub fn get<U: Element>(&self, tag: &TupleTag<U>) -> PCollection<U> {
        let Some((id, ty)) = self.outputs.get(&*tag.id) else {
            panic!("output tag {:?} was not declared on this ParDo", tag.id)
        };
        assert!(
            *ty == TypeId::of::<U>(),
            "output tag {:?} was declared with another element type",
            tag.id
        );
        PCollection::from_parts(id.clone(), self.window_fn, self.pipeline.clone())
    }
}
