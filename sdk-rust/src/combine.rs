//! [`CombineFn`] and Combine per key / globally.
//!
//! Combine per key is emitted as Beam's composite
//! `beam:transform:combine_per_key:v1` (GroupByKey, then
//! `combine_grouped_values`), so a runner may lift it: precombine before the
//! shuffle, merge accumulators and extract outputs after it. The native
//! executor implements every phase for any registered CombineFn.

use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_fn_api::{Error, Result};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use prost::Message;

use crate::coder::{Coder, Element};
use crate::dofn::{DoFn, ProcessContext};
use crate::exec::ops::{
    CombinePhaseOp, OpInfo, PrecombineOp, convert_phase, extract_phase, grouped_phase, merge_phase,
};
use crate::exec::types::{TypeOps, ops};
use crate::exec::{Erased, erase, unerase};
use crate::pipeline::{MAIN_TAG, PCollection, PTransform, native_spec};
use crate::registry::{CombineEntry, NativeFn};
use crate::transforms::pardo::ParDo;
use crate::view::SideInput;
use crate::window::WindowFn;

/// An associative, commutative aggregation: inputs are added to
/// accumulators, accumulators merge, and the final one is extracted.
///
/// ```
/// use oxbeam::CombineFn;
/// #[derive(Clone)]
/// struct Longest;
/// impl CombineFn for Longest {
///     type In = String;
///     type Acc = String;
///     type Out = String;
///     fn create_accumulator(&self) -> String { String::new() }
///     fn add_input(&self, acc: &mut String, s: &String) {
///         if s.len() > acc.len() { *acc = s.clone() }
///     }
///     fn merge_accumulators(&self, acc: &mut String, other: String) {
///         if other.len() > acc.len() { *acc = other }
///     }
///     fn extract_output(&self, acc: String) -> String { acc }
/// }
/// ```
pub trait CombineFn: Send + Sync + 'static {
    /// Input element type.
    type In: Element;
    /// Accumulator type (shuffled between the lifted phases).
    type Acc: Element;
    /// Output type.
    type Out: Element;

    /// A new, empty accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one input to `acc`.
    fn add_input(&self, acc: &mut Self::Acc, input: &Self::In);
    /// Merges `other` into `acc`.
    fn merge_accumulators(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result of an accumulator.
    fn extract_output(&self, acc: Self::Acc) -> Self::Out;

    /// What combining globally outputs for an empty input (in the global
    /// window): by default the output of an empty accumulator. Return `None`
    /// to output nothing (e.g. min and max have no identity).
    fn empty_output(&self) -> Option<Self::Out> {
        Some(self.extract_output(self.create_accumulator()))
    }
}

/// A registered keyed CombineFn: builds every combine phase.
struct PerKeyEntry<K, C> {
    combine_fn: Arc<C>,
    _k: PhantomData<fn() -> K>,
}

impl<K: Element, C: CombineFn> CombineEntry for PerKeyEntry<K, C> {
    fn types(&self, urn: &str) -> Option<(Arc<dyn TypeOps>, Arc<dyn TypeOps>)> {
        use urns::standard_p_transforms::combine_components as cc;
        Some(match urn {
            cc::COMBINE_PER_KEY_PRECOMBINE | cc::COMBINE_PER_KEY_CONVERT_TO_ACCUMULATORS => {
                (ops::<(K, C::In)>(), ops::<(K, C::Acc)>())
            }
            cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS => {
                (ops::<(K, Vec<C::Acc>)>(), ops::<(K, C::Acc)>())
            }
            cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS => (ops::<(K, C::Acc)>(), ops::<(K, C::Out)>()),
            cc::COMBINE_GROUPED_VALUES => (ops::<(K, Vec<C::In>)>(), ops::<(K, C::Out)>()),
            _ => return None,
        })
    }

    fn build(&self, urn: &str, info: OpInfo, next: Erased) -> Result<Erased> {
        use urns::standard_p_transforms::combine_components as cc;
        let what = info.transform_id.clone();
        let f = self.combine_fn.clone();
        Ok(match urn {
            cc::COMBINE_PER_KEY_PRECOMBINE => erase::<(K, C::In)>(Box::new(
                PrecombineOp::<K, C>::new(info, f, unerase(next, &what)?),
            )),
            cc::COMBINE_PER_KEY_CONVERT_TO_ACCUMULATORS => {
                erase::<(K, C::In)>(Box::new(CombinePhaseOp::<K, C, C::In, C::Acc> {
                    info,
                    combine_fn: f,
                    phase: convert_phase::<C>,
                    next: unerase(next, &what)?,
                }))
            }
            cc::COMBINE_PER_KEY_MERGE_ACCUMULATORS => {
                erase::<(K, Vec<C::Acc>)>(Box::new(CombinePhaseOp::<K, C, Vec<C::Acc>, C::Acc> {
                    info,
                    combine_fn: f,
                    phase: merge_phase::<C>,
                    next: unerase(next, &what)?,
                }))
            }
            cc::COMBINE_PER_KEY_EXTRACT_OUTPUTS => {
                erase::<(K, C::Acc)>(Box::new(CombinePhaseOp::<K, C, C::Acc, C::Out> {
                    info,
                    combine_fn: f,
                    phase: extract_phase::<C>,
                    next: unerase(next, &what)?,
                }))
            }
            cc::COMBINE_GROUPED_VALUES => {
                erase::<(K, Vec<C::In>)>(Box::new(CombinePhaseOp::<K, C, Vec<C::In>, C::Out> {
                    info,
                    combine_fn: f,
                    phase: grouped_phase::<C>,
                    next: unerase(next, &what)?,
                }))
            }
            other => {
                return Err(Error::Unsupported {
                    transform: what,
                    message: format!("combine component {other} is not supported"),
                });
            }
        })
    }
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// Combine per key: one `(key, output)` per key and window.
    pub fn combine_per_key<C: CombineFn<In = V>>(
        &self,
        label: &str,
        combine_fn: C,
    ) -> PCollection<(K, C::Out)> {
        let p = self.pipeline.clone();
        let name = p.reserve_name(label);
        let acc_coder = p.coder_id(&<C::Acc as Element>::Coder::default().spec());
        let payload = pb::CombinePayload {
            combine_fn: Some(native_spec(
                urns::native_functions::COMBINE_FN,
                &name,
                Vec::new(),
                std::any::type_name::<C>().to_string(),
            )),
            accumulator_coder_id: acc_coder,
        }
        .encode_to_vec();
        p.register(
            &name,
            NativeFn::Combine(Arc::new(PerKeyEntry::<K, C> {
                combine_fn: Arc::new(combine_fn),
                _k: PhantomData,
            })),
        );
        let spec = pb::FunctionSpec {
            urn: urns::standard_p_transforms::composites::COMBINE_PER_KEY.to_string(),
            payload: payload.clone().into(),
        };
        p.composite_reserved(&name, Some(spec), vec![self.id.clone()], || {
            let grouped = self.group_by_key("GroupByKey");
            let spec = pb::FunctionSpec {
                urn: urns::standard_p_transforms::combine_components::COMBINE_GROUPED_VALUES
                    .to_string(),
                payload: payload.into(),
            };
            let id = p.add_transform("CombineValues", Some(spec), grouped.main_input(), true);
            p.add_output::<(K, C::Out)>(&id, MAIN_TAG, self.window_fn)
        })
    }
}

/// Emits the side input's elements, or a default when it is empty.
#[derive(Clone)]
struct DefaultIfEmpty<T: Element> {
    side: SideInput<Vec<T>>,
    default: T,
}

impl<T: Element> DoFn for DefaultIfEmpty<T> {
    type In = Vec<u8>;
    type Out = T;
    fn process(&mut self, _: &Vec<u8>, ctx: &mut ProcessContext<'_, T>) {
        let values = ctx.side_input(&self.side);
        if values.is_empty() {
            ctx.output(self.default.clone());
        } else {
            for v in values.iter() {
                ctx.output(v.clone());
            }
        }
    }
}

impl<T: Element> PCollection<T> {
    /// Combine globally: one output per window. For an empty, globally
    /// windowed input it outputs [`CombineFn::empty_output`].
    pub fn combine_globally<C: CombineFn<In = T>>(
        &self,
        label: &str,
        combine_fn: C,
    ) -> PCollection<C::Out> {
        let p = self.pipeline.clone();
        p.clone().composite(label, None, vec![self.id.clone()], || {
            let default = if self.window_fn == WindowFn::Global {
                combine_fn.empty_output()
            } else {
                None
            };
            let combined = self
                .owned_map("KeyByUnit", |v: T| ((), v))
                .combine_per_key("CombinePerKey", combine_fn)
                .values("Values");
            match default {
                None => combined,
                Some(d) => {
                    let side = combined.as_iterable();
                    p.impulse("Impulse").par_do(
                        "DefaultIfEmpty",
                        ParDo::of(DefaultIfEmpty {
                            side: side.clone(),
                            default: d,
                        })
                        .with_side_input(&side),
                    )
                }
            }
        })
    }
}

/// [`PTransform`] combining a whole collection with a CombineFn.
#[derive(Clone, Debug)]
pub struct CombineGlobally<C>(pub C);

/// [`PTransform`] combining the values of each key with a CombineFn.
#[derive(Clone, Debug)]
pub struct CombinePerKey<C>(pub C);

impl<C: CombineFn> PTransform<PCollection<C::In>> for CombineGlobally<C> {
    type Output = PCollection<C::Out>;
    fn expand(self, input: &PCollection<C::In>) -> Self::Output {
        input.combine_globally("CombineGlobally", self.0)
    }
}

impl<K: Element, C: CombineFn> PTransform<PCollection<(K, C::In)>> for CombinePerKey<C> {
    type Output = PCollection<(K, C::Out)>;
    fn expand(self, input: &PCollection<(K, C::In)>) -> Self::Output {
        input.combine_per_key("CombinePerKey", self.0)
    }
}
