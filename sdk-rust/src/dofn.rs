//! [`DoFn`]: element-wise user code with a lifecycle, tagged outputs and side
//! inputs, applied with [`PCollection::par_do`](crate::PCollection::par_do).
//!
//! Lifecycle per executor processor (one per worker thread and stage):
//! `setup` once, then per bundle `start_bundle`, `process` per element,
//! `finish_bundle`; `teardown` when the processor is discarded. Each
//! processor works on its own clone of the DoFn you applied.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_fn_api::Error;
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};

use crate::coder::Element;
use crate::exec::side::SideCache;
use crate::exec::{Batch, Cx, Erased, Receiver, WindowedValue};
use crate::metrics::set_current_transform;
use crate::view::SideInput;

/// Element-wise user code. See the [module docs](self) for the lifecycle.
///
/// ```
/// use oxbeam::{DoFn, ProcessContext};
/// #[derive(Clone)]
/// struct SplitWords;
/// impl DoFn for SplitWords {
///     type In = String;
///     type Out = String;
///     fn process(&mut self, line: &String, ctx: &mut ProcessContext<'_, String>) {
///         for w in line.split_whitespace() {
///             ctx.output(w.to_string());
///         }
///     }
/// }
/// ```
pub trait DoFn: Clone + Send + 'static {
    /// Input element type.
    type In: Element;
    /// Main output element type.
    type Out: Element;

    /// Once per processor, before any bundle.
    fn setup(&mut self) {}

    /// Before each bundle.
    fn start_bundle(&mut self) {}

    /// Once per element (and window). Panics fail the bundle with an error
    /// naming the transform, the panic message and the element.
    fn process(&mut self, element: &Self::In, ctx: &mut ProcessContext<'_, Self::Out>);

    /// After each bundle; may output (with an explicit timestamp and window).
    fn finish_bundle(&mut self, ctx: &mut FinishBundleContext<'_, Self::Out>) {
        let _ = ctx;
    }

    /// When the processor is discarded.
    fn teardown(&mut self) {}
}

/// Names an additional output of a ParDo, with its element type.
pub struct TupleTag<T> {
    pub(crate) id: Arc<str>,
    _t: PhantomData<fn() -> T>,
}

impl<T> TupleTag<T> {
    /// A tag with a local name unique within its ParDo ("main" is reserved).
    pub fn new(id: &str) -> Self {
        TupleTag {
            id: id.into(),
            _t: PhantomData,
        }
    }

    /// The tag's local name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<T> Clone for TupleTag<T> {
    fn clone(&self) -> Self {
        TupleTag {
            id: self.id.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for TupleTag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TupleTag({:?})", self.id)
    }
}

/// An additional output receiver (a `Box<dyn Receiver<U>>`, erased).
pub(crate) struct TaggedOutput {
    pub id: Arc<str>,
    pub receiver: Erased,
}

/// What [`DoFn::process`] sees besides the element: its timestamp, window
/// and pane, the outputs, and side inputs.
pub struct ProcessContext<'a, Out> {
    pub(crate) timestamp: Timestamp,
    pub(crate) window: BoundedWindow,
    pub(crate) pane: PaneInfo,
    pub(crate) index: u32,
    /// Main outputs, passed on as a batch by the operator.
    pub(crate) main: &'a mut Batch<Out>,
    pub(crate) extra: &'a mut [TaggedOutput],
    pub(crate) sides: &'a mut SideCache,
    pub(crate) cx: &'a mut dyn Cx,
    pub(crate) error: Option<Error>,
    /// Set by a splittable DoFn (`SdfContext::set_watermark`).
    pub(crate) watermark: Option<Timestamp>,
    /// Passes full batches of main outputs downstream while `process`
    /// runs (a splittable DoFn's restriction may output millions).
    pub(crate) flush: Option<&'a mut FlushFn<'a, Out>>,
}

/// Hands a batch of outputs downstream (leaving it empty).
pub(crate) type FlushFn<'a, Out> = dyn FnMut(&mut Batch<Out>) -> oxbeam_fn_api::Result<()> + 'a;

impl<Out: Element> ProcessContext<'_, Out> {
    /// Event time of the element.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The window the element is being processed in.
    pub fn window(&self) -> &BoundedWindow {
        &self.window
    }

    /// The pane that produced the element.
    pub fn pane(&self) -> &PaneInfo {
        &self.pane
    }

    /// Outputs `value` to the main output, with the element's timestamp and window.
    #[inline]
    pub fn output(&mut self, value: Out) {
        let wv = WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        };
        self.send(wv);
    }

    /// Outputs `value` at `timestamp`, in the element's window.
    pub fn output_with_timestamp(&mut self, value: Out, timestamp: Timestamp) {
        let wv = WindowedValue {
            value,
            timestamp,
            window: self.window,
            pane: self.pane,
        };
        self.send(wv);
    }

    #[inline]
    fn send(&mut self, wv: WindowedValue<Out>) {
        self.main.push(wv);
        if self.main.len() >= crate::exec::BATCH
            && let Some(flush) = self.flush.as_mut()
            && let Err(e) = flush(self.main)
        {
            self.error.get_or_insert(e);
        }
    }

    /// Outputs `value` to the additional output `tag`.
    ///
    /// # Panics
    /// If `tag` was not declared with [`ParDo::with_output`](crate::ParDo::with_output).
    pub fn output_to<U: Element>(&mut self, tag: &TupleTag<U>, value: U) {
        if self.error.is_some() {
            return;
        }
        let wv = WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        };
        let r = find_tagged::<U>(self.extra, tag);
        if let Err(e) = r.receive(wv, self.cx) {
            self.error = Some(e);
        }
        set_current_transform(self.index);
    }

    /// The value of side input `view` for this element's window.
    ///
    /// # Panics
    /// If the view was not declared with
    /// [`ParDo::with_side_input`](crate::ParDo::with_side_input), or cannot be
    /// built (e.g. an empty singleton without default); the panic fails the
    /// bundle with that message.
    pub fn side_input<O: Send + Sync + 'static>(&mut self, view: &SideInput<O>) -> Arc<O> {
        let v = match self.sides.get(&view.local_name, &self.window, &*self.cx) {
            Ok(v) => v,
            Err(e) => panic!("side input {}: {e}", view.local_name),
        };
        match v.downcast::<O>() {
            Ok(v) => v,
            Err(_) => panic!("side input {} has an unexpected view type", view.local_name),
        }
    }
}

fn find_tagged<'a, U: Element>(
    extra: &'a mut [TaggedOutput],
    tag: &TupleTag<U>,
) -> &'a mut dyn Receiver<U> {
    let Some(out) = extra.iter_mut().find(|o| o.id == tag.id) else {
        panic!(
            "output tag {:?} was not declared on this ParDo (use ParDo::with_output)",
            tag.id
        )
    };
    let Some(r) = out.receiver.downcast_mut::<Box<dyn Receiver<U>>>() else {
        panic!(
            "output tag {:?} was declared with another element type",
            tag.id
        )
    };
    &mut **r
}

/// What [`DoFn::finish_bundle`] can do: output with explicit timestamp and window.
pub struct FinishBundleContext<'a, Out> {
    pub(crate) index: u32,
    pub(crate) main: &'a mut dyn Receiver<Out>,
    pub(crate) extra: &'a mut [TaggedOutput],
    pub(crate) cx: &'a mut dyn Cx,
    pub(crate) error: Option<Error>,
}

impl<Out: Element> FinishBundleContext<'_, Out> {
    /// Outputs `value` at `timestamp` in `window` to the main output.
    pub fn output(&mut self, value: Out, timestamp: Timestamp, window: BoundedWindow) {
        if self.error.is_none() {
            let wv = WindowedValue {
                value,
                timestamp,
                window,
                pane: PaneInfo::NO_FIRING,
            };
            if let Err(e) = self.main.receive(wv, self.cx) {
                self.error = Some(e);
            }
            set_current_transform(self.index);
        }
    }

    /// Outputs `value` at `timestamp` in `window` to the additional output `tag`.
    pub fn output_to<U: Element>(
        &mut self,
        tag: &TupleTag<U>,
        value: U,
        timestamp: Timestamp,
        window: BoundedWindow,
    ) {
        if self.error.is_none() {
            let wv = WindowedValue {
                value,
                timestamp,
                window,
                pane: PaneInfo::NO_FIRING,
            };
            let r = find_tagged::<U>(self.extra, tag);
            if let Err(e) = r.receive(wv, self.cx) {
                self.error = Some(e);
            }
            set_current_transform(self.index);
        }
    }
}
