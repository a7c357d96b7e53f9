//! The native executor: runs fused stages of Rust user code for a runner.
//!
//! A [`NativeExecutor`] turns a `ProcessBundleDescriptor` into a tree of
//! typed operators, one per transform:
//!
//! ```text
//! data source ──decode T──▶ Box<dyn Receiver<T>> ──▶ ... ──▶ data sink (encode U, emit)
//! ```
//!
//! - Every operator is a monomorphized [`Receiver<T>`]; values move between
//!   them by value in [`Batch`]es, with one virtual call per batch per
//!   transform. A PCollection with several consumers clones into each (the
//!   last one gets the original).
//! - A batch keeps values and their metadata (timestamp, window, pane) in
//!   separate columns: a Map touches only values. One that keeps the
//!   element type maps the batch's values in place and hands the same batch
//!   on (a chain of them passes one batch down, metadata untouched); one
//!   that changes it fills its own value column and takes the metadata
//!   column by swapping vectors. Either way its cost is the user function
//!   plus one move of each value.
//! - Types are erased only while the tree is built: each registered function
//!   knows its input and output element types ([`types::TypeOps`]), and the
//!   builder downcasts each `Box<dyn Any>` receiver once.
//! - Data sources decode whole input buffers in a loop; data sinks encode
//!   into one reused buffer and call `OutputSink::emit`.
//! - User code runs inside `catch_unwind`; a panic becomes
//!   `Error::UserCode{transform, message, element}`.

pub(crate) mod hash;
pub(crate) mod ops;
mod processor;
pub(crate) mod side;
pub(crate) mod types;

#[cfg(test)]
mod tests;

use std::any::Any;
use std::fmt::Debug;

use oxbeam_fn_api::{Error, Result, UserCodeError};
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};

pub use processor::NativeExecutor;

/// One element in exactly one window. The data source explodes elements in
/// several windows into one value per window, so operators never allocate
/// window lists.
#[derive(Clone, Debug)]
#[repr(C)]
pub(crate) struct WindowedValue<T> {
    pub value: T,
    pub timestamp: Timestamp,
    pub window: BoundedWindow,
    pub pane: PaneInfo,
}

impl<T> WindowedValue<T> {
    /// Timestamp, window and pane.
    #[inline]
    pub fn meta(&self) -> Meta {
        Meta {
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        }
    }

    /// The same timestamp, window and pane around another value.
    #[inline]
    pub fn with_value<U>(&self, value: U) -> WindowedValue<U> {
        WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        }
    }

    /// The same timestamp, window and pane around `f(value)`.
    #[inline]
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> WindowedValue<U> {
        WindowedValue {
            value: f(self.value),
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        }
    }
}

/// Timestamp, window and pane of one element (a [`Batch`] column).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Meta {
    pub timestamp: Timestamp,
    pub window: BoundedWindow,
    pub pane: PaneInfo,
}

impl Meta {
    /// `value` with this metadata.
    #[inline]
    pub fn with<T>(self, value: T) -> WindowedValue<T> {
        WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        }
    }
}

/// Elements passed between operators, column-wise: `values[i]` has the
/// timestamp, window and pane `meta[i]`. Invariant: both have the same length.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    pub values: Vec<T>,
    pub meta: Vec<Meta>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            values: Vec::new(),
            meta: Vec::new(),
        }
    }
}

impl<T> Batch<T> {
    /// An empty batch with room for `n` elements.
    pub fn with_capacity(n: usize) -> Self {
        Batch {
            values: Vec::with_capacity(n),
            meta: Vec::with_capacity(n),
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    #[inline]
    pub fn clear(&mut self) {
        self.values.clear();
        self.meta.clear();
    }

    #[inline]
    pub fn push(&mut self, wv: WindowedValue<T>) {
        self.meta.push(wv.meta());
        self.values.push(wv.value);
    }

    #[inline]
    pub fn push_with(&mut self, value: T, meta: Meta) {
        self.values.push(value);
        self.meta.push(meta);
    }

    /// Removes every element, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = WindowedValue<T>> + '_ {
        self.values
            .drain(..)
            .zip(self.meta.drain(..))
            .map(|(v, m)| m.with(v))
    }

    /// Every element, in order, as (value, metadata).
    pub fn iter(&self) -> impl Iterator<Item = (&T, &Meta)> + '_ {
        self.values.iter().zip(self.meta.iter())
    }
}

/// What a bundle offers operators: the runner's output sink, side inputs,
/// user state and timers.
pub(crate) trait Cx {
    /// Emits one encoded element to a data sink.
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> Result<()>;
    /// The encoded elements of a side input.
    fn side_input(&self, transform: &str, local_name: &str) -> Result<&[u8]>;
    /// The bundle's user state.
    fn state(&mut self) -> &mut dyn oxbeam_fn_api::UserState;
    /// Sets or clears one encoded timer.
    fn emit_timer(&mut self, transform: &str, family: &str, timer: &[u8]) -> Result<()>;
    /// Hands work a splittable DoFn deferred to the runner, to reschedule;
    /// gives it back if the runner takes no residuals (then the executor
    /// resumes it itself).
    fn defer(
        &mut self,
        residual: oxbeam_fn_api::Residual,
    ) -> std::result::Result<(), oxbeam_fn_api::Residual> {
        Err(residual)
    }
    /// A point where the splittable DoFn processing the element of data
    /// source `source` could split it: if the runner wants part of the
    /// bundle's remaining work (dynamic work rebalancing) and this element
    /// is the bundle's last, `split(fraction)` splits its restriction and
    /// returns the primary and residual as encoded elements of `source`;
    /// the residual is handed off. Returns whether it split.
    fn split_point(&mut self, source: &str, split: &mut SplitFn<'_>) -> bool {
        let _ = (source, split);
        false
    }
}

/// Splits the element being processed at a fraction of its remaining
/// work: `(primary, residual)`, encoded.
pub(crate) type SplitFn<'a> = dyn FnMut(f64) -> Option<(Vec<u8>, Vec<u8>)> + 'a;

/// Dynamic work rebalancing inside the last element of a bundle (see
/// [`Cx::split_point`]).
pub(crate) struct TailSplit<'a> {
    pub rebalancer: &'a dyn oxbeam_fn_api::Rebalancer,
    pub started: std::time::Instant,
    /// The data source of the element.
    pub source: String,
    /// What the bundle processed before the element.
    pub covered: Vec<(String, Vec<u8>)>,
}

/// The [`Cx`] of one `process_bundle` call.
pub(crate) struct BundleCx<'a> {
    pub sink: &'a mut dyn oxbeam_fn_api::OutputSink,
    pub side_inputs: &'a dyn oxbeam_fn_api::SideInputs,
    pub state: &'a mut dyn oxbeam_fn_api::UserState,
    /// Where deferred work goes, if the runner schedules it.
    pub residuals: Option<&'a mut Vec<oxbeam_fn_api::Residual>>,
    /// Set while the last element of a splittable bundle is processed.
    pub tail: Option<TailSplit<'a>>,
}

impl Cx for BundleCx<'_> {
    #[inline]
    fn emit(&mut self, sink_transform: &str, element: &[u8]) -> Result<()> {
        self.sink.emit(sink_transform, element)
    }

    fn side_input(&self, transform: &str, local_name: &str) -> Result<&[u8]> {
        self.side_inputs.side_input(transform, local_name)
    }

    fn state(&mut self) -> &mut dyn oxbeam_fn_api::UserState {
        &mut *self.state
    }

    fn emit_timer(&mut self, transform: &str, family: &str, timer: &[u8]) -> Result<()> {
        self.sink.emit_timer(transform, family, timer)
    }

    fn defer(
        &mut self,
        residual: oxbeam_fn_api::Residual,
    ) -> std::result::Result<(), oxbeam_fn_api::Residual> {
        match &mut self.residuals {
            Some(r) => {
                r.push(residual);
                Ok(())
            }
            None => Err(residual),
        }
    }

    fn split_point(&mut self, source: &str, split: &mut SplitFn<'_>) -> bool {
        let Some(tail) = self.tail.as_ref().filter(|t| t.source == source) else {
            return false;
        };
        let Some(fraction) = tail.rebalancer.split_fraction(tail.started.elapsed()) else {
            return false;
        };
        let Some((primary, residual)) = split(fraction) else {
            return false;
        };
        let mut kept = tail.covered.clone();
        kept.push((tail.source.clone(), primary));
        tail.rebalancer
            .hand_off(vec![(tail.source.clone(), residual)], kept);
        true
    }
}

/// A [`Cx`] with nothing behind it: what user code sees where it may not
/// reach the bundle (a splittable DoFn's `process`, whose real context
/// serves the split points of its tracker).
pub(crate) struct NoCx(pub oxbeam_fn_api::NoUserState);

impl Cx for NoCx {
    fn emit(&mut self, sink_transform: &str, _: &[u8]) -> Result<()> {
        Err(Error::Internal(format!(
            "no data sink {sink_transform} here"
        )))
    }

    fn side_input(&self, transform: &str, local_name: &str) -> Result<&[u8]> {
        Err(Error::Unsupported {
            transform: transform.to_string(),
            message: format!("side input {local_name}: splittable DoFns take no side inputs"),
        })
    }

    fn state(&mut self) -> &mut dyn oxbeam_fn_api::UserState {
        &mut self.0
    }

    fn emit_timer(&mut self, transform: &str, _: &str, _: &[u8]) -> Result<()> {
        Err(Error::Unsupported {
            transform: transform.to_string(),
            message: "splittable DoFns set no timers".into(),
        })
    }
}

/// Receives the timers of one stateful transform (its operator's timer
/// side, sharing the operator's state).
pub(crate) trait TimerTarget: Send {
    /// Fires `timers` (concatenated `beam:coder:timer:v1` encodings) of
    /// timer family `family`.
    fn fire(&mut self, family: &str, timers: &[u8], cx: &mut dyn Cx) -> Result<()>;
}

/// The timer targets of a processor, by transform id.
pub(crate) type TimerTargets = Vec<(String, Box<dyn TimerTarget>)>;

/// An operator consuming elements of type `T`.
///
/// `start`, `finish` and `teardown` propagate downstream, so calling them on
/// a data source reaches every operator of its tree in topological order.
pub(crate) trait Receiver<T>: Send {
    /// Before the first element of a bundle.
    fn start(&mut self) -> Result<()>;
    /// One element.
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()>;
    /// A batch of elements, in order; leaves `batch` empty (also on error).
    /// Element-wise operators override it to process the batch in a loop and
    /// pass one output batch on: one virtual call per batch instead of per
    /// element.
    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        let r = batch.drain().try_for_each(|wv| self.receive(wv, cx));
        batch.clear();
        r
    }
    /// After the last element of a bundle (runs `finish_bundle`).
    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()>;
    /// When the processor is discarded.
    fn teardown(&mut self);
}

/// Elements per batch passed between operators.
pub(crate) const BATCH: usize = 100;

/// A `Box<dyn Receiver<T>>` with `T` erased, while the operator tree is built.
pub(crate) type Erased = Box<dyn Any + Send>;

/// Erases a receiver's element type.
pub(crate) fn erase<T: 'static>(r: Box<dyn Receiver<T>>) -> Erased {
    Box::new(r)
}

/// Recovers a receiver of `T`.
///
/// # Errors
/// [`Error::Internal`] if the receiver consumes another type (a registry or
/// descriptor mismatch).
pub(crate) fn unerase<T: 'static>(r: Erased, what: &str) -> Result<Box<dyn Receiver<T>>> {
    r.downcast::<Box<dyn Receiver<T>>>()
        .map(|b| *b)
        .map_err(|_| {
            Error::Internal(format!(
                "{what}: consumer does not accept elements of type {}",
                std::any::type_name::<T>()
            ))
        })
}

const MAX_ELEMENT_DEBUG: usize = 256;

/// Renders an element for an error message, truncated.
pub(crate) fn render_element(e: &dyn Debug) -> String {
    let mut s = format!("{e:?}");
    if s.len() > MAX_ELEMENT_DEBUG {
        let mut cut = MAX_ELEMENT_DEBUG;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// The error of user code that panicked in `transform` on `element`.
#[cold]
pub(crate) fn user_code_error(
    transform: &str,
    payload: Box<dyn Any + Send>,
    element: Option<&dyn Debug>,
) -> Error {
    Error::UserCode(UserCodeError {
        transform: transform.to_string(),
        message: panic_message(&*payload),
        element: element.map(render_element),
    })
}

/// What a panic report shows for an element that was moved into the user
/// function (taken by value), hence is gone when the panic is caught.
pub(crate) const MOVED_ELEMENT: &str =
    "not shown: moved into the function (take it by reference to see it here)";

/// The error of user code that panicked in `transform` on an element it had
/// taken by value.
#[cold]
pub(crate) fn user_code_error_moved(transform: &str, payload: Box<dyn Any + Send>) -> Error {
    Error::UserCode(UserCodeError {
        transform: transform.to_string(),
        message: panic_message(&*payload),
        element: Some(MOVED_ELEMENT.to_string()),
    })
}

/// Runs user code `f`, turning a panic into [`Error::UserCode`].
#[inline]
pub(crate) fn guard<R>(
    transform: &str,
    element: Option<&dyn Debug>,
    f: impl FnOnce() -> R,
) -> Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Ok(r),
        Err(payload) => Err(user_code_error(transform, payload, element)),
    }
}
