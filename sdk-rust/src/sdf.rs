//! Splittable DoFns: element-wise user code whose work per element is a
//! *restriction* the runner can split — reading a file by byte ranges, a
//! range of numbers, an unbounded stream that checkpoints itself.
//!
//! A [`SplittableDoFn`] gives each element an initial restriction, may split
//! it into parts up front (each part becomes its own unit of work, spread
//! over workers and split further between bundles by dynamic work
//! rebalancing), and processes one part at a time, claiming positions from
//! its [`RestrictionTracker`] before doing the work they stand for:
//!
//! ```
//! use oxbeam::sdf::{
//!     OffsetRange, OffsetRangeTracker, ProcessContinuation, SplittableDoFn, Tracked,
//! };
//! use oxbeam::ProcessContext;
//!
//! /// Emits `0..n` for each element `n`, in parts of up to 1000 numbers.
//! #[derive(Clone)]
//! struct Count;
//!
//! impl SplittableDoFn for Count {
//!     type In = i64;
//!     type Out = i64;
//!     type Tracker = OffsetRangeTracker;
//!
//!     fn initial_restriction(&self, n: &i64) -> OffsetRange {
//!         OffsetRange::new(0, *n)
//!     }
//!
//!     fn split_restriction(&self, _: &i64, r: &OffsetRange) -> Vec<OffsetRange> {
//!         r.split(1000)
//!     }
//!
//!     fn new_tracker(&self, r: OffsetRange) -> OffsetRangeTracker {
//!         OffsetRangeTracker::new(r)
//!     }
//!
//!     fn process(
//!         &mut self,
//!         _: &i64,
//!         tracker: &mut Tracked<'_, OffsetRangeTracker>,
//!         ctx: &mut ProcessContext<'_, i64>,
//!     ) -> ProcessContinuation {
//!         let mut i = tracker.current_restriction().start;
//!         while tracker.try_claim(i) {
//!             ctx.output(i);
//!             i += 1;
//!         }
//!         ProcessContinuation::Stop
//!     }
//! }
//! ```
//!
//! Apply it with [`PCollection::par_do_splittable`](crate::PCollection::par_do_splittable).
//!
//! **In the pipeline proto** it is a ParDo with a `restriction_coder_id`
//! (the restriction's element coder), which runners expand into Beam's
//! three SDF components (pair with restriction, split and size, process
//! sized elements and restrictions); the native executor runs all three.
//!
//! **Self-checkpointing.** `process` returning
//! [`ProcessContinuation::Resume`] after claiming part of its restriction
//! hands the unclaimed rest back: in streaming the runner reschedules it
//! after the delay as new work (its output watermark held, or advanced to
//! [`SdfContext::set_watermark`]); where the runner takes no residuals
//! (batch) the executor waits the delay and goes on within the bundle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use oxbeam_fn_api::{Error, NoUserState, Residual, Result};
use oxbeam_model::coders::{CoderError, WindowedValueHeader, Windows};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::standard_p_transforms::splittable_par_do_components as sdf;
use oxbeam_model::window::Timestamp;

use crate::coder::{Coder, CoderSpec, Element};
use crate::dofn::ProcessContext;
use crate::exec::ops::{OpInfo, forward_lifecycle};
use crate::exec::side::SideCache;
use crate::exec::types::{TypeOps, ops};
use crate::exec::{Batch, Cx, Erased, NoCx, Receiver, WindowedValue, erase, guard, unerase};
use crate::metrics::set_current_transform;
use crate::pipeline::{MAIN_TAG, PCollection};
use crate::registry::NativeFn;
use crate::transforms::pardo::add_native_pardo_transform;

/// What [`SplittableDoFn::process`] tells the runner when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessContinuation {
    /// The restriction is done (every position claimed, or `try_claim`
    /// refused one).
    Stop,
    /// Resume the unclaimed rest of the restriction after this delay (e.g.
    /// no new data yet).
    Resume(Duration),
}

/// Tracks which part of a restriction has been claimed: `process` claims
/// each position before doing its work, and the runner splits off the
/// part not yet claimed.
pub trait RestrictionTracker: Send + 'static {
    /// The restriction type.
    type Restriction: Element;
    /// A position within it.
    type Position;

    /// Claims `position`; `false` means it is outside what this tracker
    /// still owns: stop processing.
    fn try_claim(&mut self, position: Self::Position) -> bool;

    /// The restriction being processed (after any split, the primary).
    fn current_restriction(&self) -> Self::Restriction;

    /// Splits off `fraction_of_remainder` of the unclaimed work: returns
    /// `(primary, residual)` — what this tracker keeps, and the rest — or
    /// `None` if nothing can be split off. `0.0` splits off everything not
    /// yet claimed (a checkpoint).
    fn try_split(
        &mut self,
        fraction_of_remainder: f64,
    ) -> Option<(Self::Restriction, Self::Restriction)>;

    /// After `process` returned [`ProcessContinuation::Stop`]: `Err` if work
    /// remains unclaimed (a bug in `process`).
    ///
    /// # Errors
    /// A message naming what was left.
    fn check_done(&self) -> std::result::Result<(), String>;

    /// Work left, in the restriction's own units (for sizes and progress).
    fn remaining_size(&self) -> f64;
}

/// A half-open range of offsets `[start, end)`: byte offsets in a file,
/// indices, sequence numbers. Encoded as Beam's `KV<varint, varint>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetRange {
    /// First offset in the range.
    pub start: i64,
    /// One past the last.
    pub end: i64,
}

impl OffsetRange {
    /// `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        OffsetRange { start, end }
    }

    /// Offsets in the range.
    pub fn size(&self) -> i64 {
        (self.end - self.start).max(0)
    }

    /// Consecutive ranges of at most `size` offsets covering this one.
    pub fn split(&self, size: i64) -> Vec<OffsetRange> {
        let size = size.max(1);
        let mut out = Vec::new();
        let mut at = self.start;
        while at < self.end {
            let end = at.saturating_add(size).min(self.end);
            out.push(OffsetRange::new(at, end));
            at = end;
        }
        if out.is_empty() {
            out.push(*self);
        }
        out
    }
}

/// Coder of [`OffsetRange`]: `KV<varint, varint>`.
#[derive(Default)]
pub struct OffsetRangeCoder;

impl Coder<OffsetRange> for OffsetRangeCoder {
    fn encode(&self, value: &OffsetRange, out: &mut Vec<u8>) {
        <(i64, i64) as Element>::Coder::default().encode(&(value.start, value.end), out);
    }

    fn decode(&self, input: &mut &[u8]) -> std::result::Result<OffsetRange, CoderError> {
        let (start, end) = <(i64, i64) as Element>::Coder::default().decode(input)?;
        Ok(OffsetRange { start, end })
    }

    fn spec(&self) -> CoderSpec {
        <(i64, i64) as Element>::Coder::default().spec()
    }
}

impl Element for OffsetRange {
    type Coder = OffsetRangeCoder;
}

/// The tracker of an [`OffsetRange`], with Beam's rules: offsets are
/// claimed in increasing order; a claim at or past the end fails;
/// splitting keeps the claimed part and at least the next offset.
#[derive(Debug, Clone)]
pub struct OffsetRangeTracker {
    range: OffsetRange,
    last_claimed: Option<i64>,
    last_attempted: Option<i64>,
}

impl OffsetRangeTracker {
    /// A tracker owning `range`.
    pub fn new(range: OffsetRange) -> Self {
        OffsetRangeTracker {
            range,
            last_claimed: None,
            last_attempted: None,
        }
    }

    /// The last offset claimed, if any.
    pub fn last_claimed(&self) -> Option<i64> {
        self.last_claimed
    }
}

impl RestrictionTracker for OffsetRangeTracker {
    type Restriction = OffsetRange;
    type Position = i64;

    /// # Panics
    /// If `offset` is not past the last offset attempted, or before the
    /// range's start (Beam raises too).
    fn try_claim(&mut self, offset: i64) -> bool {
        if let Some(last) = self.last_attempted {
            assert!(
                offset > last,
                "OffsetRangeTracker: offset {offset} claimed after {last} (claims must increase)"
            );
        }
        assert!(
            offset >= self.range.start,
            "OffsetRangeTracker: offset {offset} is before the range {:?}",
            self.range
        );
        self.last_attempted = Some(offset);
        if offset >= self.range.end {
            return false;
        }
        self.last_claimed = Some(offset);
        true
    }

    fn current_restriction(&self) -> OffsetRange {
        self.range
    }

    fn try_split(&mut self, fraction: f64) -> Option<(OffsetRange, OffsetRange)> {
        let from = self.last_attempted.map_or(self.range.start, |l| l + 1);
        if from >= self.range.end {
            return None;
        }
        let remaining = (self.range.end - from) as f64;
        let split = from + (remaining * fraction.clamp(0.0, 1.0)) as i64;
        // A split keeps at least what was claimed; a fraction > 0 keeps at
        // least one more offset.
        let split = if fraction > 0.0 {
            split.max(from + 1)
        } else {
            split
        };
        if split >= self.range.end {
            return None;
        }
        let residual = OffsetRange::new(split, self.range.end);
        self.range.end = split;
        Some((self.range, residual))
    }

    fn check_done(&self) -> std::result::Result<(), String> {
        let done_to = self.last_attempted.map_or(self.range.start, |l| l + 1);
        if self.range.start < self.range.end && done_to < self.range.end {
            return Err(format!(
                "offsets {done_to}..{} of {:?} were neither claimed nor attempted",
                self.range.end, self.range
            ));
        }
        Ok(())
    }

    fn remaining_size(&self) -> f64 {
        let from = self.last_attempted.map_or(self.range.start, |l| l + 1);
        (self.range.end - from).max(0) as f64
    }
}

/// The tracker `process` works with: claims go through it, and between
/// claims the runner may split the restriction (dynamic work rebalancing:
/// the unclaimed tail goes to an idle worker; `try_claim` then refuses the
/// positions given away). Derefs to the tracker itself.
pub struct Tracked<'a, T: RestrictionTracker> {
    inner: T,
    split_point: Option<&'a mut dyn FnMut(&mut T)>,
    claims: u32,
}

/// Claims between two split points.
const CLAIMS_PER_SPLIT_POINT: u32 = 16;

impl<'a, T: RestrictionTracker> Tracked<'a, T> {
    /// `inner`, with `split_point` offered a chance to split it every few
    /// claims.
    pub(crate) fn new(inner: T, split_point: Option<&'a mut dyn FnMut(&mut T)>) -> Self {
        Tracked {
            inner,
            split_point,
            claims: 0,
        }
    }

    /// Claims `position` (see [`RestrictionTracker::try_claim`]); `false`:
    /// stop processing.
    pub fn try_claim(&mut self, position: T::Position) -> bool {
        if !self.inner.try_claim(position) {
            return false;
        }
        if let Some(split) = self.split_point.as_mut() {
            self.claims += 1;
            if self.claims >= CLAIMS_PER_SPLIT_POINT {
                self.claims = 0;
                split(&mut self.inner);
            }
        }
        true
    }

    /// The restriction being processed (after a split, the part kept).
    pub fn current_restriction(&self) -> T::Restriction {
        self.inner.current_restriction()
    }

    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: RestrictionTracker> std::ops::Deref for Tracked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: RestrictionTracker> std::ops::DerefMut for Tracked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

/// The restriction type of a [`SplittableDoFn`].
pub type RestrictionOf<F> = <<F as SplittableDoFn>::Tracker as RestrictionTracker>::Restriction;

/// Element-wise user code over splittable restrictions. See the
/// [module docs](self).
///
/// Lifecycle as [`DoFn`](crate::DoFn): each executor processor has its own
/// clone; `setup` once per processor, `teardown` when it is discarded.
pub trait SplittableDoFn: Clone + Send + Sync + 'static {
    /// Input element type.
    type In: Element;
    /// Output element type.
    type Out: Element;
    /// Tracks a restriction while `process` works on it.
    type Tracker: RestrictionTracker;

    /// The whole work for `element`.
    fn initial_restriction(&self, element: &Self::In) -> RestrictionOf<Self>;

    /// Parts of `restriction` to process independently (each may run on
    /// another worker). Default: the restriction whole.
    fn split_restriction(
        &self,
        element: &Self::In,
        restriction: &RestrictionOf<Self>,
    ) -> Vec<RestrictionOf<Self>> {
        let _ = element;
        vec![restriction.clone()]
    }

    /// A tracker for `restriction`.
    fn new_tracker(&self, restriction: RestrictionOf<Self>) -> Self::Tracker;

    /// The size of `restriction`, relative to others (default: its
    /// tracker's [`RestrictionTracker::remaining_size`]).
    fn restriction_size(&self, element: &Self::In, restriction: &RestrictionOf<Self>) -> f64 {
        let _ = element;
        self.new_tracker(restriction.clone()).remaining_size()
    }

    /// Once per processor, before any bundle.
    fn setup(&mut self) {}

    /// Processes `element` within what `tracker` lets it claim. Outputs go
    /// to `ctx` as for a [`DoFn`](crate::DoFn) (timestamp, window and pane
    /// of the element). Panics fail the bundle naming the element.
    fn process(
        &mut self,
        element: &Self::In,
        tracker: &mut Tracked<'_, Self::Tracker>,
        ctx: &mut ProcessContext<'_, Self::Out>,
    ) -> ProcessContinuation;

    /// When the processor is discarded.
    fn teardown(&mut self) {}
}

/// Extra context of a splittable `process` call (see
/// [`SdfContext::set_watermark`]).
pub trait SdfContext {
    /// Reports that outputs of the rest of this restriction will have
    /// timestamps at or after `watermark` (Beam's manual watermark
    /// estimator): when `process` resumes later, the runner may advance
    /// the output watermark to it meanwhile.
    fn set_watermark(&mut self, watermark: Timestamp);
}

impl<Out: Element> SdfContext for ProcessContext<'_, Out> {
    fn set_watermark(&mut self, watermark: Timestamp) {
        self.watermark = Some(watermark);
    }
}

/// Applies a [`SplittableDoFn`]; see
/// [`PCollection::par_do_splittable`].
pub struct SplittableParDo<F> {
    f: F,
    unbounded: bool,
}

impl<F: SplittableDoFn> SplittableParDo<F> {
    /// `f` over each element.
    pub fn of(f: F) -> Self {
        SplittableParDo {
            f,
            unbounded: false,
        }
    }

    /// Each element's work may never end (it resumes itself forever): the
    /// output is an unbounded PCollection, and the pipeline runs in
    /// streaming mode (Beam's `unbounded_per_element`).
    pub fn unbounded(mut self) -> Self {
        self.unbounded = true;
        self
    }
}

impl<F> fmt::Debug for SplittableParDo<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SplittableParDo({}{})",
            std::any::type_name::<F>(),
            if self.unbounded { ", unbounded" } else { "" }
        )
    }
}

impl<T: Element> PCollection<T> {
    /// Applies a splittable DoFn (see [`crate::sdf`]).
    pub fn par_do_splittable<F: SplittableDoFn<In = T>>(
        &self,
        label: &str,
        pardo: SplittableParDo<F>,
    ) -> PCollection<F::Out> {
        let p = &self.pipeline;
        let name = p.reserve_name(label);
        let restriction_coder_id =
            p.coder_id(&<RestrictionOf<F> as Element>::Coder::default().spec());
        let id = add_native_pardo_transform(
            p,
            &name,
            vec![("in".to_string(), self.id.clone())],
            Vec::new(),
            std::any::type_name::<F>().to_string(),
            pb::ParDoPayload {
                restriction_coder_id,
                ..Default::default()
            },
        );
        p.register(
            &id,
            NativeFn::Splittable(Arc::new(Entry {
                f: pardo.f,
                name: name.clone(),
            })),
        );
        let out = p.add_output::<F::Out>(&id, MAIN_TAG, self.window_fn);
        if pardo.unbounded {
            p.set_unbounded(&out.id);
        }
        out
    }
}

/// A registered splittable DoFn: builds its three components.
pub(crate) trait SplittableEntry: Send + Sync {
    /// Input and output element types of component `urn`, if it is one.
    fn types(&self, urn: &str) -> Option<(Arc<dyn TypeOps>, Arc<dyn TypeOps>)>;
    /// Component `urn` feeding `next`. `source`: the data source feeding
    /// it, if any (where its residuals go back in).
    fn build(
        &self,
        urn: &str,
        info: OpInfo,
        next: Erased,
        source: Option<String>,
    ) -> Result<Erased>;
}

struct Entry<F> {
    f: F,
    name: String,
}

type Paired<F> = (<F as SplittableDoFn>::In, RestrictionOf<F>);
type Sized<F> = (Paired<F>, f64);

impl<F: SplittableDoFn> SplittableEntry for Entry<F> {
    fn types(&self, urn: &str) -> Option<(Arc<dyn TypeOps>, Arc<dyn TypeOps>)> {
        match urn {
            sdf::PAIR_WITH_RESTRICTION => Some((ops::<F::In>(), ops::<Paired<F>>())),
            sdf::SPLIT_AND_SIZE_RESTRICTIONS => Some((ops::<Paired<F>>(), ops::<Sized<F>>())),
            sdf::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS => {
                Some((ops::<Sized<F>>(), ops::<F::Out>()))
            }
            _ => None,
        }
    }

    fn build(
        &self,
        urn: &str,
        info: OpInfo,
        next: Erased,
        source: Option<String>,
    ) -> Result<Erased> {
        let what = format!("{} ({})", info.transform_id, self.name);
        match urn {
            sdf::PAIR_WITH_RESTRICTION => Ok(erase::<F::In>(Box::new(PairOp {
                info,
                f: self.f.clone(),
                next: unerase::<Paired<F>>(next, &what)?,
                out: Batch::default(),
            }))),
            sdf::SPLIT_AND_SIZE_RESTRICTIONS => Ok(erase::<Paired<F>>(Box::new(SplitOp {
                info,
                f: self.f.clone(),
                next: unerase::<Sized<F>>(next, &what)?,
                out: Batch::default(),
            }))),
            sdf::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS => {
                let mut f = self.f.clone();
                set_current_transform(info.index);
                guard(&info.name, None, || f.setup())?;
                Ok(erase::<Sized<F>>(Box::new(ProcessOp {
                    info,
                    sizer: f.clone(),
                    f,
                    next: unerase::<F::Out>(next, &what)?,
                    out: Batch::default(),
                    sides: SideCache::default(),
                    source,
                })))
            }
            other => Err(Error::Unsupported {
                transform: info.transform_id,
                message: format!("{other} is not a component of a splittable DoFn"),
            }),
        }
    }
}

/// Pairs each element with its initial restriction.
struct PairOp<F: SplittableDoFn> {
    info: OpInfo,
    f: F,
    next: Box<dyn Receiver<Paired<F>>>,
    out: Batch<Paired<F>>,
}

impl<F: SplittableDoFn> Receiver<F::In> for PairOp<F> {
    forward_lifecycle!();

    fn receive(&mut self, wv: WindowedValue<F::In>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &self.f;
        let r = guard(&self.info.name, Some(&wv.value), || {
            f.initial_restriction(&wv.value)
        })?;
        self.out.push(wv.map(|v| (v, r)));
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// Splits each restriction and sizes the parts.
struct SplitOp<F: SplittableDoFn> {
    info: OpInfo,
    f: F,
    next: Box<dyn Receiver<Sized<F>>>,
    out: Batch<Sized<F>>,
}

impl<F: SplittableDoFn> Receiver<Paired<F>> for SplitOp<F> {
    forward_lifecycle!();

    fn receive(&mut self, wv: WindowedValue<Paired<F>>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &self.f;
        let (element, restriction) = &wv.value;
        let parts = guard(&self.info.name, Some(element), || {
            f.split_restriction(element, restriction)
                .into_iter()
                .map(|r| {
                    let size = f.restriction_size(element, &r);
                    (r, size)
                })
                .collect::<Vec<_>>()
        })?;
        let meta = wv.meta();
        for (r, size) in parts {
            self.out.push_with(((element.clone(), r), size), meta);
        }
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// Processes each sized element and restriction with a tracker.
struct ProcessOp<F: SplittableDoFn> {
    info: OpInfo,
    f: F,
    /// Sizes restrictions while `f` processes.
    sizer: F,
    next: Box<dyn Receiver<F::Out>>,
    out: Batch<F::Out>,
    sides: SideCache,
    /// The data source feeding this operator: residuals go back to it.
    source: Option<String>,
}

impl<F: SplittableDoFn> ProcessOp<F> {
    /// Runs `process` on one restriction; returns the residual to resume,
    /// with its delay and watermark, if `process` asked to resume.
    #[allow(clippy::type_complexity)]
    fn run(
        &mut self,
        element: &F::In,
        restriction: RestrictionOf<F>,
        meta: crate::exec::Meta,
        cx: &mut dyn Cx,
    ) -> Result<Option<(RestrictionOf<F>, Duration, Option<Timestamp>)>> {
        set_current_transform(self.info.index);
        let (sizer, source) = (&self.sizer, self.source.as_deref());
        // The bundle's context serves two callbacks of `process`: batches
        // of outputs go downstream as they fill, and split points.
        let cx = std::cell::RefCell::new(cx);
        let next = &mut self.next;
        let index = self.info.index;
        let mut flush = |batch: &mut Batch<F::Out>| {
            let r = next.receive_batch(batch, &mut **cx.borrow_mut());
            set_current_transform(index);
            r
        };
        // Split points: the runner may take the unclaimed part of the
        // restriction for another worker.
        let mut split_point = |t: &mut F::Tracker| {
            let Some(source) = source else {
                return;
            };
            cx.borrow_mut().split_point(source, &mut |fraction| {
                let (primary, residual) = t.try_split(fraction)?;
                let encode = |r: RestrictionOf<F>| {
                    let size = sizer.restriction_size(element, &r);
                    encode_sized::<F>(meta, element, r, size)
                };
                Some((encode(primary), encode(residual)))
            });
        };
        let mut tracker = Tracked::new(
            self.f.new_tracker(restriction),
            source.map(|_| &mut split_point as &mut dyn FnMut(&mut F::Tracker)),
        );
        let mut no_cx = NoCx(NoUserState);
        let mut ctx = ProcessContext {
            timestamp: meta.timestamp,
            window: meta.window,
            pane: meta.pane,
            index: self.info.index,
            main: &mut self.out,
            extra: &mut [],
            sides: &mut self.sides,
            cx: &mut no_cx,
            error: None,
            watermark: None,
            flush: Some(&mut flush),
        };
        let f = &mut self.f;
        let continuation = guard(&self.info.name, Some(element), || {
            f.process(element, &mut tracker, &mut ctx)
        })?;
        let watermark = ctx.watermark;
        if let Some(e) = ctx.error {
            return Err(e);
        }
        let mut tracker = tracker.into_inner();
        match continuation {
            ProcessContinuation::Stop => {
                tracker.check_done().map_err(|m| {
                    Error::UserCode(oxbeam_fn_api::UserCodeError {
                        transform: self.info.name.to_string(),
                        message: format!("process returned Stop with work left: {m}"),
                        element: Some(crate::exec::render_element(element)),
                    })
                })?;
                Ok(None)
            }
            ProcessContinuation::Resume(delay) => Ok(tracker
                .try_split(0.0)
                .map(|(_, residual)| (residual, delay, watermark))),
        }
    }
}

/// A sized element and restriction as the data source of the process
/// component reads it: a windowed `KV<KV<element, restriction>, size>`.
fn encode_sized<F: SplittableDoFn>(
    meta: crate::exec::Meta,
    element: &F::In,
    restriction: RestrictionOf<F>,
    size: f64,
) -> Vec<u8> {
    let mut buf = Vec::new();
    WindowedValueHeader {
        timestamp: meta.timestamp,
        windows: Windows::one(meta.window),
        pane: meta.pane,
    }
    .encode(&mut buf);
    <Sized<F> as Element>::Coder::default()
        .encode(&((element.clone(), restriction), size), &mut buf);
    buf
}

impl<F: SplittableDoFn> Receiver<Sized<F>> for ProcessOp<F> {
    fn start(&mut self) -> Result<()> {
        self.sides.reset();
        self.next.start()
    }

    fn receive(&mut self, wv: WindowedValue<Sized<F>>, cx: &mut dyn Cx) -> Result<()> {
        let meta = wv.meta();
        let ((element, mut restriction), _) = wv.value;
        loop {
            let resume = self.run(&element, restriction, meta, cx)?;
            self.next.receive_batch(&mut self.out, cx)?;
            let Some((residual, delay, watermark)) = resume else {
                return Ok(());
            };
            if let Some(source) = &self.source {
                // The runner reschedules it: encoded as this source's
                // elements, a sized element and restriction.
                let size = self.sizer.restriction_size(&element, &residual);
                let r = Residual {
                    source: source.clone(),
                    element: encode_sized::<F>(meta, &element, residual.clone(), size),
                    delay,
                    watermark_millis: watermark.map(Timestamp::millis),
                };
                if cx.defer(r).is_ok() {
                    return Ok(());
                }
                // The runner takes no residuals: resume here.
            }
            std::thread::sleep(delay);
            restriction = residual;
        }
    }

    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.next.finish(cx)
    }

    fn teardown(&mut self) {
        set_current_transform(self.info.index);
        let _ = guard(&self.info.name, None, || self.f.teardown());
        self.next.teardown()
    }
}
