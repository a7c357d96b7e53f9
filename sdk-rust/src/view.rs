//! Side-input views: a PCollection read whole by another transform, per
//! window, as a singleton, list, iterable or multimap.
//!
//! ```no_run
//! # use oxbeam::{Pipeline, DoFn, ProcessContext, ParDo, SideInput};
//! # use std::sync::Arc;
//! #[derive(Clone)]
//! struct AboveMean(SideInput<f64>);
//! impl DoFn for AboveMean {
//!     type In = i64;
//!     type Out = i64;
//!     fn process(&mut self, x: &i64, ctx: &mut ProcessContext<'_, i64>) {
//!         let mean: Arc<f64> = ctx.side_input(&self.0);
//!         if (*x as f64) > *mean { ctx.output(*x) }
//!     }
//! }
//! let p = Pipeline::default();
//! let xs = p.create("Xs", vec![1i64, 5, 9]);
//! let mean = xs.apply("Mean", oxbeam::combiners::Mean::globally()).as_singleton();
//! let above = xs.par_do("Above", ParDo::of(AboveMean(mean.clone())).with_side_input(&mean));
//! ```
//!
//! The window a main-input element reads is its window mapped through the
//! side input's window fn (Beam's `getSideInputWindow`): the same window for
//! equal fixed windows, the global window for a globally windowed side input.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_model::urns;

use crate::PCollection;
use crate::coder::Element;
use crate::exec::side::{ListViewBuilder, MultimapViewBuilder, SingletonViewBuilder, ViewBuilder};
use crate::window::WindowFn;

/// A handle to a side input whose view (per window) has type `O`.
///
/// Declare it on a ParDo with [`ParDo::with_side_input`](crate::ParDo::with_side_input)
/// and read it in `process` with
/// [`ProcessContext::side_input`](crate::ProcessContext::side_input).
pub struct SideInput<O> {
    pub(crate) local_name: String,
    pub(crate) pcoll_id: String,
    pub(crate) window_fn: WindowFn,
    pub(crate) access_urn: &'static str,
    pub(crate) builder: Arc<dyn ViewBuilder>,
    _o: PhantomData<fn() -> O>,
}

impl<O> Clone for SideInput<O> {
    fn clone(&self) -> Self {
        SideInput {
            local_name: self.local_name.clone(),
            pcoll_id: self.pcoll_id.clone(),
            window_fn: self.window_fn,
            access_urn: self.access_urn,
            builder: self.builder.clone(),
            _o: PhantomData,
        }
    }
}

impl<O> fmt::Debug for SideInput<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SideInput({} of {})", self.local_name, self.pcoll_id)
    }
}

impl<T: Element> PCollection<T> {
    fn view<O>(
        &self,
        kind: &str,
        access_urn: &'static str,
        builder: Arc<dyn ViewBuilder>,
    ) -> SideInput<O> {
        SideInput {
            local_name: format!("side:{kind}:{}", self.id),
            pcoll_id: self.id.clone(),
            window_fn: self.window_fn,
            access_urn,
            builder,
            _o: PhantomData,
        }
    }

    /// A view of the single element of each window. Reading a window with
    /// no element, or more than one, fails the reading transform.
    pub fn as_singleton(&self) -> SideInput<T> {
        self.view(
            "singleton",
            urns::standard_side_input_types::ITERABLE,
            Arc::new(SingletonViewBuilder::<T> { default: None }),
        )
    }

    /// A view of the single element of each window, `default` for empty windows.
    pub fn as_singleton_or(&self, default: T) -> SideInput<T> {
        self.view(
            "singleton",
            urns::standard_side_input_types::ITERABLE,
            Arc::new(SingletonViewBuilder::<T> {
                default: Some(default),
            }),
        )
    }

    /// A view of all elements of each window, as a list.
    pub fn as_list(&self) -> SideInput<Vec<T>> {
        self.view(
            "list",
            urns::standard_side_input_types::ITERABLE,
            Arc::new(ListViewBuilder::<T>(PhantomData)),
        )
    }

    /// A view of all elements of each window, to iterate (same as a list).
    pub fn as_iterable(&self) -> SideInput<Vec<T>> {
        self.view(
            "iterable",
            urns::standard_side_input_types::ITERABLE,
            Arc::new(ListViewBuilder::<T>(PhantomData)),
        )
    }
}

impl<K: Element + Hash + Eq, V: Element> PCollection<(K, V)> {
    /// A view of each window's key-value pairs as a map from key to values.
    pub fn as_multimap(&self) -> SideInput<HashMap<K, Vec<V>>> {
        self.view(
            "multimap",
            urns::standard_side_input_types::MULTIMAP,
            Arc::new(MultimapViewBuilder::<K, V>(PhantomData)),
        )
    }
}
