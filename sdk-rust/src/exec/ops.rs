//! The typed operators of the native executor: ParDo over a [`DoFn`],
//! closures (map, flat map, filter, ...), and the combine components.

use std::any::{Any, TypeId};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_fn_api::{Error, Result};
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};

use hashbrown::HashTable;

use super::hash::FxHashMap;
use super::side::SideCache;
use super::{BATCH, Batch, Cx, Erased, Meta, Receiver, WindowedValue, guard};
use crate::coder::{Coder, Element};
use crate::combine::CombineFn;
use crate::dofn::{DoFn, FinishBundleContext, ProcessContext, TaggedOutput};
use crate::metrics::set_current_transform;
use crate::transforms::fns::{FlatMapFn, MapFn};

/// Runs `f` on every value of `batch` (by reference) under one
/// `catch_unwind`; a panic is reported with the element it happened on.
/// Guarding the whole loop keeps the per-element path free of unwinding
/// landing pads, which would force every value through the stack.
#[inline]
pub(crate) fn guarded_each<T: Debug>(
    transform: &str,
    batch: &[T],
    mut f: impl FnMut(&T),
) -> Result<()> {
    let mut done = 0usize;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for v in batch {
            f(v);
            done += 1;
        }
    }));
    match r {
        Ok(()) => Ok(()),
        Err(p) => Err(super::user_code_error(
            transform,
            p,
            batch.get(done).map(|v| v as &dyn Debug),
        )),
    }
}

/// The error of a Map or FlatMap function that panicked: with the element
/// parked in `slot` when it was borrowed, or saying it was moved.
#[cold]
fn fn_panic<T: Debug>(
    transform: &str,
    by_value: bool,
    payload: Box<dyn std::any::Any + Send>,
    slot: Option<T>,
) -> Error {
    if by_value {
        super::user_code_error_moved(transform, payload)
    } else {
        super::user_code_error(transform, payload, slot.as_ref().map(|v| v as &dyn Debug))
    }
}

/// Moves the metadata column of `from` to `to` (whose own is dropped).
#[inline]
fn pass_meta<T, U>(from: &mut Batch<T>, to: &mut Batch<U>) {
    to.meta.clear();
    std::mem::swap(&mut to.meta, &mut from.meta);
}

/// Whether an element-wise operator from `T` to `U` keeps the type, so it
/// can map its input batch in place (see [`map_in_place`]).
#[inline(always)]
fn keeps_type<T: 'static, U: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<U>()
}

/// Maps the values of `batch` with `f` in place when `U` is `T`, and hands
/// `batch` itself on as a batch of `U`: collecting a mapped `vec::IntoIter`
/// into a vector of the same element type reuses its allocation, so each
/// value is read and written back in the same slot, there is no second
/// buffer to fill, and the metadata column is not touched at all. A chain of
/// such Maps passes one batch down the chain. `f`'s panic is returned
/// (`batch` is then empty); `None` if `U` is not `T`.
#[inline]
fn map_in_place<T: 'static, U: 'static>(
    batch: &mut Batch<T>,
    f: impl FnMut(T) -> U,
) -> Option<std::thread::Result<&mut Batch<U>>> {
    if !keeps_type::<T, U>() {
        return None;
    }
    let values = std::mem::take(&mut batch.values);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        values.into_iter().map(f).collect::<Vec<U>>()
    }));
    let same = (batch as &mut dyn Any).downcast_mut::<Batch<U>>()?;
    Some(match r {
        Ok(values) => {
            same.values = values;
            Ok(same)
        }
        Err(p) => {
            same.clear();
            Err(p)
        }
    })
}

/// Identity of an operator running user code.
#[derive(Clone, Debug)]
pub(crate) struct OpInfo {
    /// Unique name of the transform, for errors and metrics.
    pub name: Arc<str>,
    /// Index of the transform in its processor, for metrics.
    pub index: u32,
    /// Transform id in the descriptor (for side inputs).
    pub transform_id: String,
}

/// An additional ParDo output with its lifecycle, its element type erased.
pub(crate) struct ErasedOutput {
    pub output: TaggedOutput,
    pub start: fn(&mut Erased) -> Result<()>,
    pub finish: fn(&mut Erased, &mut dyn Cx) -> Result<()>,
    pub teardown: fn(&mut Erased),
}

fn as_receiver<U: 'static>(e: &mut Erased) -> Option<&mut Box<dyn Receiver<U>>> {
    e.downcast_mut::<Box<dyn Receiver<U>>>()
}

impl ErasedOutput {
    /// Wraps a receiver of `U` for the tag `id`.
    pub fn new<U: Element>(id: Arc<str>, r: Box<dyn Receiver<U>>) -> Self {
        ErasedOutput {
            output: TaggedOutput {
                id,
                receiver: super::erase(r),
            },
            start: |e| as_receiver::<U>(e).map_or(Ok(()), |r| r.start()),
            finish: |e, cx| as_receiver::<U>(e).map_or(Ok(()), |r| r.finish(cx)),
            teardown: |e| {
                if let Some(r) = as_receiver::<U>(e) {
                    r.teardown();
                }
            },
        }
    }
}

/// Start, finish and teardown of an erased additional output.
pub(crate) type Lifecycle = (
    fn(&mut Erased) -> Result<()>,
    fn(&mut Erased, &mut dyn Cx) -> Result<()>,
    fn(&mut Erased),
);

/// ParDo over a user [`DoFn`].
pub(crate) struct ParDoOp<D: DoFn> {
    pub info: OpInfo,
    pub dofn: D,
    pub main: Box<dyn Receiver<D::Out>>,
    pub out: Batch<D::Out>,
    /// Additional outputs; `tagged[i].output` mirrors `lifecycles[i]`.
    pub tagged: Vec<TaggedOutput>,
    pub lifecycles: Vec<Lifecycle>,
    pub sides: SideCache,
}

impl<D: DoFn> ParDoOp<D> {
    pub fn new(
        info: OpInfo,
        mut dofn: D,
        main: Box<dyn Receiver<D::Out>>,
        extra: Vec<ErasedOutput>,
        sides: SideCache,
    ) -> Result<Self> {
        set_current_transform(info.index);
        guard(&info.name, None, || dofn.setup())?;
        let mut tagged = Vec::new();
        let mut lifecycles = Vec::new();
        for e in extra {
            tagged.push(e.output);
            lifecycles.push((e.start, e.finish, e.teardown));
        }
        Ok(ParDoOp {
            info,
            dofn,
            main,
            out: Batch::default(),
            tagged,
            lifecycles,
            sides,
        })
    }
}

impl<D: DoFn> ParDoOp<D> {
    #[inline]
    fn process(&mut self, wv: WindowedValue<D::In>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let mut ctx = ProcessContext {
            timestamp: wv.timestamp,
            window: wv.window,
            pane: wv.pane,
            index: self.info.index,
            main: &mut self.out,
            extra: &mut self.tagged,
            sides: &mut self.sides,
            cx,
            error: None,
            watermark: None,
            flush: None,
        };
        let dofn = &mut self.dofn;
        guard(&self.info.name, Some(&wv.value), || {
            dofn.process(&wv.value, &mut ctx)
        })?;
        match ctx.error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl<D: DoFn> Receiver<D::In> for ParDoOp<D> {
    fn start(&mut self) -> Result<()> {
        self.sides.reset();
        set_current_transform(self.info.index);
        guard(&self.info.name, None, || self.dofn.start_bundle())?;
        self.main.start()?;
        for (t, l) in self.tagged.iter_mut().zip(&self.lifecycles) {
            (l.0)(&mut t.receiver)?;
        }
        Ok(())
    }

    #[inline]
    fn receive(&mut self, wv: WindowedValue<D::In>, cx: &mut dyn Cx) -> Result<()> {
        self.process(wv, cx)?;
        self.main.receive_batch(&mut self.out, cx)
    }

    fn receive_batch(&mut self, batch: &mut Batch<D::In>, cx: &mut dyn Cx) -> Result<()> {
        for wv in batch.drain() {
            self.process(wv, cx)?;
            if self.out.len() >= BATCH {
                self.main.receive_batch(&mut self.out, cx)?;
            }
        }
        self.main.receive_batch(&mut self.out, cx)
    }

    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let mut ctx = FinishBundleContext {
            index: self.info.index,
            main: &mut *self.main,
            extra: &mut self.tagged,
            cx: &mut *cx,
            error: None,
        };
        let dofn = &mut self.dofn;
        guard(&self.info.name, None, || dofn.finish_bundle(&mut ctx))?;
        if let Some(e) = ctx.error {
            return Err(e);
        }
        self.main.finish(cx)?;
        for (t, l) in self.tagged.iter_mut().zip(&self.lifecycles) {
            (l.1)(&mut t.receiver, cx)?;
        }
        Ok(())
    }

    fn teardown(&mut self) {
        set_current_transform(self.info.index);
        let _ = guard(&self.info.name, None, || self.dofn.teardown());
        self.main.teardown();
        for (t, l) in self.tagged.iter_mut().zip(&self.lifecycles) {
            (l.2)(&mut t.receiver);
        }
    }
}

macro_rules! forward_lifecycle {
    () => {
        fn start(&mut self) -> Result<()> {
            self.next.start()
        }
        fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
            self.next.finish(cx)
        }
        fn teardown(&mut self) {
            self.next.teardown()
        }
    };
}
pub(crate) use forward_lifecycle;

macro_rules! forward_lifecycle_start_teardown {
    () => {
        fn start(&mut self) -> Result<()> {
            self.next.start()
        }
        fn teardown(&mut self) {
            self.next.teardown()
        }
    };
}

/// `Map`: one output per input, from a function of the element (by
/// reference or by value, see [`MapFn`]). Values move from the input batch
/// to the output batch; the metadata column is handed over untouched.
pub(crate) struct MapOp<T, U, K, F> {
    pub info: OpInfo,
    pub f: Arc<F>,
    pub next: Box<dyn Receiver<U>>,
    pub out: Batch<U>,
    pub _t: PhantomData<fn(T, K)>,
}

impl<T: Element, U: Element, K: 'static, F: MapFn<T, U, K>> Receiver<T> for MapOp<T, U, K, F> {
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let meta = wv.meta();
        let f = &*self.f;
        let mut slot = None;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.call(wv.value, &mut slot)))
        {
            Ok(u) => self.next.receive(meta.with(u), cx),
            Err(p) => Err(fn_panic(&self.info.name, F::BY_VALUE, p, slot)),
        }
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        let mut slot = None;
        match map_in_place(batch, |v| f.call(v, &mut slot)) {
            Some(Ok(same)) => return self.next.receive_batch(same, cx),
            Some(Err(p)) => return Err(fn_panic(&self.info.name, F::BY_VALUE, p, slot)),
            None => {}
        }
        let out = &mut self.out;
        out.values.clear();
        pass_meta(batch, out);
        let values = &mut batch.values;
        // `extend` over a draining iterator writes straight into reserved
        // capacity: no per-element temporary on the stack.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            out.values
                .extend(values.drain(..).map(|v| f.call(v, &mut slot)));
        }));
        if let Err(p) = r {
            batch.clear();
            self.out.clear();
            return Err(fn_panic(&self.info.name, F::BY_VALUE, p, slot));
        }
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// `FlatMap`: any number of outputs per input.
pub(crate) struct FlatMapOp<T, U, I, K, F> {
    pub info: OpInfo,
    pub f: Arc<F>,
    pub next: Box<dyn Receiver<U>>,
    pub out: Batch<U>,
    pub _t: PhantomData<fn(T, K) -> I>,
}

impl<T, U, I, K, F> FlatMapOp<T, U, I, K, F>
where
    T: Element,
    U: Element,
    I: IntoIterator<Item = U> + 'static,
    K: 'static,
    F: FlatMapFn<T, I, K>,
{
    /// Appends the outputs of one input to `self.out`, passing full batches on.
    #[inline]
    fn expand_one(&mut self, value: T, meta: Meta, cx: &mut dyn Cx) -> Result<()> {
        let index = self.info.index;
        set_current_transform(index);
        let f = &*self.f;
        let (out, next) = (&mut self.out, &mut self.next);
        let mut err = None;
        // By reference the element stays in `slot` while the (possibly
        // lazy) iterable is consumed, so a panic report can show it.
        let mut slot = None;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for u in f.call(value, &mut slot) {
                out.push_with(u, meta);
                if out.len() >= BATCH {
                    if let Err(e) = next.receive_batch(out, cx) {
                        err = Some(e);
                        break;
                    }
                    set_current_transform(index);
                }
            }
        }));
        if let Err(p) = r {
            return Err(fn_panic(&self.info.name, F::BY_VALUE, p, slot));
        }
        match err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl<T, U, I, K, F> Receiver<T> for FlatMapOp<T, U, I, K, F>
where
    T: Element,
    U: Element,
    I: IntoIterator<Item = U> + 'static,
    K: 'static,
    F: FlatMapFn<T, I, K>,
{
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        self.out.clear();
        let meta = wv.meta();
        self.expand_one(wv.value, meta, cx)?;
        self.next.receive_batch(&mut self.out, cx)
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        self.out.clear();
        for (v, m) in batch.values.drain(..).zip(batch.meta.drain(..)) {
            self.expand_one(v, m, cx)?;
        }
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// `Filter`: keeps elements satisfying a predicate; compacts the batch in
/// place and passes it on.
pub(crate) struct FilterOp<T, F> {
    pub info: OpInfo,
    pub f: Arc<F>,
    pub next: Box<dyn Receiver<T>>,
    pub keep: Vec<bool>,
}

impl<T: Element, F: Fn(&T) -> bool + Send + Sync + 'static> Receiver<T> for FilterOp<T, F> {
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        if guard(&self.info.name, Some(&wv.value), || f(&wv.value))? {
            self.next.receive(wv, cx)
        } else {
            Ok(())
        }
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        let keep = &mut self.keep;
        keep.clear();
        if let Err(e) = guarded_each(&self.info.name, &batch.values, |v| keep.push(f(v))) {
            batch.clear();
            return Err(e);
        }
        // `retain` visits every element once, in order.
        let mut i = 0;
        batch.values.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        batch.meta.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.next.receive_batch(batch, cx)
    }
}

/// A user closure computing something from the element, combined with the
/// element itself by value (`WithKeys`, `WithTimestamps`): no clone of the element.
pub(crate) struct PairOp<T, A, U, F, G> {
    pub info: OpInfo,
    pub f: Arc<F>,
    /// Combines the element, its metadata and the closure result.
    pub combine: G,
    pub next: Box<dyn Receiver<U>>,
    pub out: Batch<U>,
    pub _t: PhantomData<fn(T, A)>,
}

impl<T, A, U, F, G> PairOp<T, A, U, F, G>
where
    T: Element,
    A: 'static,
    U: Element,
    F: Fn(&T) -> A + Send + Sync + 'static,
    G: Fn(T, &mut Meta, A) -> U + Send + 'static,
{
    fn pair_all(&mut self, batch: &mut Batch<T>) -> Result<()> {
        let f = &*self.f;
        for (v, m) in batch.values.drain(..).zip(batch.meta.iter_mut()) {
            let a = guard(&self.info.name, Some(&v), || f(&v))?;
            self.out.values.push((self.combine)(v, m, a));
        }
        Ok(())
    }
}

impl<T, A, U, F, G> Receiver<T> for PairOp<T, A, U, F, G>
where
    T: Element,
    A: 'static,
    U: Element,
    F: Fn(&T) -> A + Send + Sync + 'static,
    G: Fn(T, &mut Meta, A) -> U + Send + 'static,
{
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        let a = guard(&self.info.name, Some(&wv.value), || f(&wv.value))?;
        let mut meta = wv.meta();
        let u = (self.combine)(wv.value, &mut meta, a);
        self.next.receive(meta.with(u), cx)
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        self.out.values.clear();
        if let Err(e) = self.pair_all(batch) {
            batch.clear();
            self.out.clear();
            return Err(e);
        }
        pass_meta(batch, &mut self.out);
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// An SDK-internal element-wise function over owned windowed values
/// (reification, random keys): cannot panic on user code, so no guard.
pub(crate) struct OwnedOp<T, U, F> {
    pub f: F,
    pub next: Box<dyn Receiver<U>>,
    pub out: Batch<U>,
    pub _t: PhantomData<fn(T)>,
}

impl<
    T: Element,
    U: Element,
    F: FnMut(WindowedValue<T>) -> Option<WindowedValue<U>> + Send + 'static,
> Receiver<T> for OwnedOp<T, U, F>
{
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        match (self.f)(wv) {
            Some(out) => self.next.receive(out, cx),
            None => Ok(()),
        }
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        self.out.clear();
        for wv in batch.drain() {
            if let Some(o) = (self.f)(wv) {
                self.out.push(o);
            }
        }
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// An SDK-internal function of the value alone (keys, values, swaps,
/// pairing with a unit): metadata untouched, no guard.
pub(crate) struct ValueOp<T, U, F> {
    pub f: F,
    pub next: Box<dyn Receiver<U>>,
    pub out: Batch<U>,
    pub _t: PhantomData<fn(T)>,
}

impl<T: Element, U: Element, F: FnMut(T) -> U + Send + 'static> Receiver<T> for ValueOp<T, U, F> {
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        let meta = wv.meta();
        let u = (self.f)(wv.value);
        self.next.receive(meta.with(u), cx)
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        match map_in_place(batch, &mut self.f) {
            Some(Ok(same)) => return self.next.receive_batch(same, cx),
            // SDK-internal functions do not panic; if one does, it
            // propagates as it would from the loop below.
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => {}
        }
        self.out.values.clear();
        self.out
            .values
            .extend(batch.values.drain(..).map(&mut self.f));
        pass_meta(batch, &mut self.out);
        self.next.receive_batch(&mut self.out, cx)
    }
}

// ------------------------------------------------------------------ combine

/// Accumulators by encoded key. A slot holds the key's full hash, the key
/// itself when short (up to [`INLINE_KEY`] bytes, e.g. words and ids) or its
/// place in a byte arena, and the accumulator: looking up an existing key
/// allocates nothing and usually touches one cache line.
pub(crate) struct KeyTable<A> {
    slots: HashTable<KeySlot<A>>,
    arena: Vec<u8>,
}

/// Keys up to this many bytes live in their slot.
const INLINE_KEY: usize = 16;

struct KeySlot<A> {
    hash: u64,
    len: u32,
    /// Offset of a long key in the arena.
    start: u32,
    inline: [u8; INLINE_KEY],
    acc: A,
}

impl<A> KeySlot<A> {
    #[inline]
    fn key<'a>(&'a self, arena: &'a [u8]) -> &'a [u8] {
        let len = self.len as usize;
        if len <= INLINE_KEY {
            &self.inline[..len]
        } else {
            let start = self.start as usize;
            &arena[start..start + len]
        }
    }
}

impl<A> Default for KeyTable<A> {
    fn default() -> Self {
        KeyTable {
            slots: HashTable::new(),
            arena: Vec::new(),
        }
    }
}

impl<A> KeyTable<A> {
    /// The accumulator of `key`, created by `create` if absent (then also
    /// reports `true`).
    #[inline]
    pub fn get_or_insert<E>(
        &mut self,
        key: &[u8],
        create: impl FnOnce() -> std::result::Result<A, E>,
    ) -> std::result::Result<(&mut A, bool), E> {
        let hash = hash_key(key);
        let arena = &self.arena;
        let entry = self.slots.entry(
            hash,
            |s| s.hash == hash && short_eq(s.key(arena), key),
            |s| s.hash,
        );
        let vacant = match entry {
            hashbrown::hash_table::Entry::Occupied(o) => return Ok((&mut o.into_mut().acc, false)),
            hashbrown::hash_table::Entry::Vacant(v) => v,
        };
        let acc = create()?;
        let mut inline = [0u8; INLINE_KEY];
        let mut start = 0u32;
        if key.len() <= INLINE_KEY {
            inline[..key.len()].copy_from_slice(key);
        } else {
            start = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
            self.arena.extend_from_slice(key);
        }
        let slot = KeySlot {
            hash,
            len: u32::try_from(key.len()).unwrap_or(u32::MAX),
            start,
            inline,
            acc,
        };
        Ok((&mut vacant.insert(slot).into_mut().acc, true))
    }

    /// Calls `f` with every (encoded key, accumulator); leaves the table empty.
    pub fn drain_each(&mut self, mut f: impl FnMut(&[u8], A)) {
        let arena = &self.arena;
        for s in self.slots.drain() {
            let len = s.len as usize;
            if len <= INLINE_KEY {
                f(&s.inline[..len], s.acc);
            } else {
                let start = s.start as usize;
                f(&arena[start..start + len], s.acc);
            }
        }
    }
}

/// Hash of an encoded key: two overlapping 8-byte reads and a folded
/// multiply for short keys, FxHash over longer ones.
#[inline]
fn hash_key(b: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let n = b.len();
    let (x, y) = if (8..=16).contains(&n) {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[n - 8..]);
        (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
    } else if (4..8).contains(&n) {
        let mut lo = [0u8; 4];
        let mut hi = [0u8; 4];
        lo.copy_from_slice(&b[..4]);
        hi.copy_from_slice(&b[n - 4..]);
        (u32::from_le_bytes(lo) as u64, u32::from_le_bytes(hi) as u64)
    } else if n < 4 {
        let x = match n {
            0 => 0,
            _ => (b[0] as u64) << 16 | (b[n / 2] as u64) << 8 | b[n - 1] as u64,
        };
        (x, 0)
    } else {
        return hash_bytes(b);
    };
    let m = ((x ^ K) as u128).wrapping_mul((y ^ n as u64 ^ K.rotate_left(32)) as u128);
    (m as u64) ^ ((m >> 64) as u64)
}

fn hash_bytes(b: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = super::hash::FxHasher::default();
    h.write(b);
    h.write_usize(b.len());
    h.finish()
}

/// Byte equality without a `memcmp` call for short keys (words, ids).
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && if a.len() <= 16 {
            a.iter().zip(b).all(|(x, y)| x == y)
        } else {
            a == b
        }
}

/// Precombined entries in a bundle before an early flush, bounding memory.
const MAX_PRECOMBINE_ENTRIES: usize = 1 << 17;

/// `combine_per_key_precombine`: folds inputs into one accumulator per
/// (encoded key, window) within the bundle; emits them at finish.
pub(crate) struct PrecombineOp<K: Element, C: CombineFn> {
    pub info: OpInfo,
    pub combine_fn: Arc<C>,
    pub key_coder: K::Coder,
    /// One table of (encoded key, accumulator) per window; the last one
    /// used is looked up first.
    pub tables: Vec<(BoundedWindow, KeyTable<C::Acc>)>,
    pub last_table: usize,
    pub window_index: FxHashMap<BoundedWindow, usize>,
    pub entries: usize,
    pub scratch: Vec<u8>,
    /// The encoded key of the input after the current run.
    pub next_key: Vec<u8>,
    pub out: Batch<(K, C::Acc)>,
    pub next: Box<dyn Receiver<(K, C::Acc)>>,
}

impl<K: Element, C: CombineFn> PrecombineOp<K, C> {
    pub fn new(info: OpInfo, combine_fn: Arc<C>, next: Box<dyn Receiver<(K, C::Acc)>>) -> Self {
        PrecombineOp {
            info,
            combine_fn,
            key_coder: K::Coder::default(),
            tables: Vec::new(),
            last_table: 0,
            window_index: FxHashMap::default(),
            entries: 0,
            scratch: Vec::new(),
            next_key: Vec::new(),
            out: Batch::default(),
            next,
        }
    }

    fn flush(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.entries = 0;
        self.last_table = 0;
        self.window_index.clear();
        self.out.clear();
        let mut r = Ok(());
        let (key_coder, out, next, name) = (
            &self.key_coder,
            &mut self.out,
            &mut self.next,
            &self.info.name,
        );
        for (window, mut table) in self.tables.drain(..) {
            let meta = Meta {
                timestamp: window.max_timestamp(),
                window,
                pane: PaneInfo::NO_FIRING,
            };
            table.drain_each(|key_bytes, acc| {
                if r.is_err() {
                    return;
                }
                match key_coder.decode(&mut &key_bytes[..]) {
                    Ok(key) => out.push_with((key, acc), meta),
                    Err(e) => {
                        r = Err(Error::Internal(format!(
                            "re-decoding a precombine key in {name}: {e}"
                        )));
                        return;
                    }
                }
                if out.len() >= BATCH {
                    r = next.receive_batch(out, cx);
                }
            });
        }
        r?;
        self.next.receive_batch(&mut self.out, cx)
    }

    /// Folds a run of inputs that share `window` and the encoded key in
    /// `self.scratch` into their accumulator (one table lookup for the
    /// run); `Ok(true)` when the table is full and must be flushed.
    #[inline]
    fn add_run(&mut self, values: &[(K, C::In)], window: BoundedWindow) -> Result<bool> {
        let i = match self.tables.get(self.last_table) {
            Some((w, _)) if *w == window => self.last_table,
            _ => {
                let tables = &mut self.tables;
                *self.window_index.entry(window).or_insert_with(|| {
                    tables.push((window, KeyTable::default()));
                    tables.len() - 1
                })
            }
        };
        self.last_table = i;
        let table = &mut self.tables[i].1;
        let f = &*self.combine_fn;
        let name = &self.info.name;
        let (acc, created) = table.get_or_insert(&self.scratch, || {
            guard(name, values.first().map(|v| v as &dyn Debug), || {
                f.create_accumulator()
            })
        })?;
        guarded_each(name, values, |v| f.add_input(acc, &v.1))?;
        if created {
            self.entries += 1;
        }
        Ok(self.entries >= MAX_PRECOMBINE_ENTRIES)
    }
}

impl<K: Element, C: CombineFn> Receiver<(K, C::In)> for PrecombineOp<K, C> {
    forward_lifecycle_start_teardown!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<(K, C::In)>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        self.scratch.clear();
        self.key_coder.encode(&wv.value.0, &mut self.scratch);
        if self.add_run(std::slice::from_ref(&wv.value), wv.window)? {
            self.flush(cx)?;
        }
        Ok(())
    }

    /// Consecutive inputs with the same key and window (a global combine's
    /// whole batch, or sorted input) fold with one table lookup.
    fn receive_batch(&mut self, batch: &mut Batch<(K, C::In)>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let (values, meta) = (&batch.values, &batch.meta);
        let mut r = Ok(());
        let mut next_key = std::mem::take(&mut self.next_key);
        if let Some(first) = values.first() {
            self.scratch.clear();
            self.key_coder.encode(&first.0, &mut self.scratch);
        }
        let mut start = 0;
        for j in 1..=values.len() {
            let window = meta[start].window;
            if j < values.len() {
                next_key.clear();
                self.key_coder.encode(&values[j].0, &mut next_key);
                if meta[j].window == window && next_key == self.scratch {
                    continue;
                }
            }
            match self.add_run(&values[start..j], window) {
                Ok(false) => {}
                Ok(true) => {
                    r = self.flush(cx);
                    set_current_transform(self.info.index);
                }
                Err(e) => r = Err(e),
            }
            if r.is_err() {
                break;
            }
            std::mem::swap(&mut self.scratch, &mut next_key);
            start = j;
        }
        self.next_key = next_key;
        batch.clear();
        r
    }

    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.flush(cx)?;
        self.next.finish(cx)
    }
}

/// A per-element combine phase: `f(combine_fn, input) -> output` on the value,
/// keeping key, timestamp and window (merge accumulators, extract outputs,
/// combine grouped values, convert to accumulators).
pub(crate) struct CombinePhaseOp<K, C, I, O> {
    pub info: OpInfo,
    pub combine_fn: Arc<C>,
    pub phase: fn(&C, I) -> O,
    pub next: Box<dyn Receiver<(K, O)>>,
}

impl<K: Element, C: CombineFn, I: Element, O: Element> Receiver<(K, I)>
    for CombinePhaseOp<K, C, I, O>
{
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<(K, I)>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let WindowedValue {
            value: (key, input),
            timestamp,
            window,
            pane,
        } = wv;
        let f = &*self.combine_fn;
        let phase = self.phase;
        let key_dbg: &dyn Debug = &key;
        let out = guard(&self.info.name, Some(key_dbg), || phase(f, input))?;
        self.next.receive(
            WindowedValue {
                value: (key, out),
                timestamp,
                window,
                pane,
            },
            cx,
        )
    }
}

/// `merge_accumulators` phase.
pub(crate) fn merge_phase<C: CombineFn>(f: &C, accs: Vec<C::Acc>) -> C::Acc {
    let mut it = accs.into_iter();
    match it.next() {
        None => f.create_accumulator(),
        Some(mut first) => {
            for a in it {
                f.merge_accumulators(&mut first, a);
            }
            first
        }
    }
}

/// `extract_outputs` phase.
pub(crate) fn extract_phase<C: CombineFn>(f: &C, acc: C::Acc) -> C::Out {
    f.extract_output(acc)
}

/// `combine_grouped_values` phase.
pub(crate) fn grouped_phase<C: CombineFn>(f: &C, values: Vec<C::In>) -> C::Out {
    let mut acc = f.create_accumulator();
    for v in &values {
        f.add_input(&mut acc, v);
    }
    f.extract_output(acc)
}

/// `convert_to_accumulators` phase.
pub(crate) fn convert_phase<C: CombineFn>(f: &C, v: C::In) -> C::Acc {
    let mut acc = f.create_accumulator();
    f.add_input(&mut acc, &v);
    acc
}

/// Sets the timestamp of each element from a closure (`WithTimestamps`).
pub(crate) fn with_timestamp<T>(v: T, meta: &mut Meta, ts: Timestamp) -> T {
    meta.timestamp = ts;
    v
}

#[cfg(test)]
mod key_table_tests {
    use super::*;

    #[test]
    fn finds_inserted_keys_short_and_long() {
        let mut t = KeyTable::<u64>::default();
        let keys: Vec<Vec<u8>> = (0..5000u32)
            .map(|i| {
                let n = (i % 40) as usize;
                let mut k = i.to_le_bytes().to_vec();
                k.resize(n.max(1), b'k');
                k.extend(i.to_be_bytes());
                k
            })
            .chain([Vec::new(), vec![0], vec![0, 0]])
            .collect();
        for round in 0..3u64 {
            for (i, k) in keys.iter().enumerate() {
                let (acc, created) = t
                    .get_or_insert(k, || Ok::<u64, ()>(1000 * i as u64))
                    .unwrap();
                assert_eq!(created, round == 0, "key {i}");
                *acc += 1;
            }
        }
        let mut seen = Vec::new();
        t.drain_each(|k, acc| seen.push((k.to_vec(), acc)));
        assert_eq!(seen.len(), keys.len());
        for (k, acc) in seen {
            let i = keys.iter().position(|x| *x == k).unwrap();
            assert_eq!(acc, 1000 * i as u64 + 3);
        }
        assert!(t.get_or_insert(b"again", || Ok::<u64, ()>(0)).unwrap().1);
    }

    #[test]
    fn creation_errors_insert_nothing() {
        let mut t = KeyTable::<u64>::default();
        assert!(t.get_or_insert(b"k", || Err("no")).is_err());
        assert!(t.get_or_insert(b"k", || Ok::<u64, &str>(1)).unwrap().1);
    }
}
