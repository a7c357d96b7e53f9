//! The typed operators of the native executor: ParDo over a [`DoFn`],
//! closures (map, flat map, filter, ...), and the combine components.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_fn_api::{Error, Result};
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};

use hashbrown::HashTable;

use super::hash::FxHashMap;
use super::side::SideCache;
use super::{BATCH, Cx, Erased, Receiver, WindowedValue, guard};
use crate::coder::{Coder, Element};
use crate::combine::CombineFn;
use crate::dofn::{DoFn, FinishBundleContext, ProcessContext, TaggedOutput};
use crate::metrics::set_current_transform;

/// Runs `f` on every element of `batch` (by reference) under one
/// `catch_unwind`; a panic is reported with the element it happened on.
/// Guarding the whole loop keeps the per-element path free of unwinding
/// landing pads, which would force every value through the stack.
#[inline]
pub(crate) fn guarded_each<T: Debug>(
    transform: &str,
    batch: &[WindowedValue<T>],
    mut f: impl FnMut(&WindowedValue<T>),
) -> Result<()> {
    let mut done = 0usize;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for wv in batch {
            f(wv);
            done += 1;
        }
    }));
    match r {
        Ok(()) => Ok(()),
        Err(p) => Err(super::user_code_error(
            transform,
            p,
            batch.get(done).map(|wv| &wv.value as &dyn Debug),
        )),
    }
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
    pub out: Vec<WindowedValue<D::Out>>,
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
            out: Vec::new(),
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

    fn receive_batch(
        &mut self,
        batch: &mut Vec<WindowedValue<D::In>>,
        cx: &mut dyn Cx,
    ) -> Result<()> {
        for wv in batch.drain(..) {
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

/// `Map`: one output per input, from a closure over the element.
pub(crate) struct MapOp<T, U, F> {
    pub info: OpInfo,
    pub f: Arc<F>,
    pub next: Box<dyn Receiver<U>>,
    pub out: Vec<WindowedValue<U>>,
    pub _t: PhantomData<fn(T)>,
}

impl<T: Element, U: Element, F: Fn(&T) -> U + Send + Sync + 'static> Receiver<T>
    for MapOp<T, U, F>
{
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        let out = guard(&self.info.name, Some(&wv.value), || f(&wv.value))?;
        self.next.receive(wv.with_value(out), cx)
    }

    fn receive_batch(&mut self, batch: &mut Vec<WindowedValue<T>>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        let out = &mut self.out;
        out.clear();
        // `extend` over a slice iterator writes straight into reserved
        // capacity: no per-element temporary on the stack.
        let mut done = 0usize;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            out.extend(batch.iter().map(|wv| {
                let v = f(&wv.value);
                done += 1;
                wv.with_value(v)
            }));
        }));
        if let Err(p) = r {
            let element = batch.get(done).map(|wv| &wv.value as &dyn Debug);
            return Err(super::user_code_error(&self.info.name, p, element));
        }
        batch.clear();
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// `FlatMap`: any number of outputs per input.
pub(crate) struct FlatMapOp<T, U, I, F> {
    pub info: OpInfo,
    pub f: Arc<F>,
    pub next: Box<dyn Receiver<U>>,
    pub out: Vec<WindowedValue<U>>,
    pub _t: PhantomData<fn(T) -> I>,
}

impl<T, U, I, F> FlatMapOp<T, U, I, F>
where
    T: Element,
    U: Element,
    I: IntoIterator<Item = U> + 'static,
    F: Fn(&T) -> I + Send + Sync + 'static,
{
    /// Appends the outputs of one input to `self.out`, passing full batches on.
    #[inline]
    fn expand_one(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        let index = self.info.index;
        set_current_transform(index);
        let f = &*self.f;
        let (out, next) = (&mut self.out, &mut self.next);
        let mut err = None;
        guard(&self.info.name, Some(&wv.value), || {
            for u in f(&wv.value) {
                out.push(wv.with_value(u));
                if out.len() >= BATCH {
                    if let Err(e) = next.receive_batch(out, cx) {
                        err = Some(e);
                        break;
                    }
                    set_current_transform(index);
                }
            }
        })?;
        match err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl<T, U, I, F> Receiver<T> for FlatMapOp<T, U, I, F>
where
    T: Element,
    U: Element,
    I: IntoIterator<Item = U> + 'static,
    F: Fn(&T) -> I + Send + Sync + 'static,
{
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        self.out.clear();
        self.expand_one(wv, cx)?;
        self.next.receive_batch(&mut self.out, cx)
    }

    fn receive_batch(&mut self, batch: &mut Vec<WindowedValue<T>>, cx: &mut dyn Cx) -> Result<()> {
        self.out.clear();
        for wv in batch.drain(..) {
            self.expand_one(wv, cx)?;
        }
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// `Filter`: keeps elements satisfying a predicate.
pub(crate) struct FilterOp<T, F> {
    pub info: OpInfo,
    pub f: Arc<F>,
    pub next: Box<dyn Receiver<T>>,
    pub out: Vec<WindowedValue<T>>,
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

    fn receive_batch(&mut self, batch: &mut Vec<WindowedValue<T>>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        let keep = &mut self.keep;
        keep.clear();
        guarded_each(&self.info.name, batch, |wv| keep.push(f(&wv.value)))?;
        self.out.clear();
        self.out.extend(
            batch
                .drain(..)
                .zip(self.keep.drain(..))
                .filter_map(|(wv, k)| k.then_some(wv)),
        );
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// A user closure computing something from the element, combined with the
/// element itself by value (`WithKeys`, `WithTimestamps`): no clone of the element.
pub(crate) struct PairOp<T, A, U, F, G> {
    pub info: OpInfo,
    pub f: Arc<F>,
    /// Combines the element, its window value and the closure result.
    pub combine: G,
    pub next: Box<dyn Receiver<U>>,
    pub out: Vec<WindowedValue<U>>,
    pub _t: PhantomData<fn(T, A)>,
}

impl<T, A, U, F, G> Receiver<T> for PairOp<T, A, U, F, G>
where
    T: Element,
    A: 'static,
    U: Element,
    F: Fn(&T) -> A + Send + Sync + 'static,
    G: Fn(WindowedValue<T>, A) -> WindowedValue<U> + Send + 'static,
{
    forward_lifecycle!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        let a = guard(&self.info.name, Some(&wv.value), || f(&wv.value))?;
        self.next.receive((self.combine)(wv, a), cx)
    }

    fn receive_batch(&mut self, batch: &mut Vec<WindowedValue<T>>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let f = &*self.f;
        self.out.clear();
        for wv in batch.drain(..) {
            let a = guard(&self.info.name, Some(&wv.value), || f(&wv.value))?;
            self.out.push((self.combine)(wv, a));
        }
        self.next.receive_batch(&mut self.out, cx)
    }
}

/// An SDK-internal element-wise function over owned windowed values (keys,
/// values, swaps, reification): cannot panic on user code, so no guard.
pub(crate) struct OwnedOp<T, U, F> {
    pub f: F,
    pub next: Box<dyn Receiver<U>>,
    pub out: Vec<WindowedValue<U>>,
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

    fn receive_batch(&mut self, batch: &mut Vec<WindowedValue<T>>, cx: &mut dyn Cx) -> Result<()> {
        self.out.clear();
        self.out.reserve(batch.len());
        self.out.extend(batch.drain(..).filter_map(&mut self.f));
        self.next.receive_batch(&mut self.out, cx)
    }
}

// ------------------------------------------------------------------ combine

/// Accumulators by encoded key.
pub(crate) type KeyTable<A> = HashTable<(Vec<u8>, A)>;

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
            next,
        }
    }

    fn flush(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.entries = 0;
        self.last_table = 0;
        self.window_index.clear();
        for (window, table) in self.tables.drain(..) {
            for (key_bytes, acc) in table.into_iter() {
                let key = self.key_coder.decode(&mut &key_bytes[..]).map_err(|e| {
                    Error::Internal(format!(
                        "re-decoding a precombine key in {}: {e}",
                        self.info.name
                    ))
                })?;
                let wv = WindowedValue {
                    value: (key, acc),
                    timestamp: window.max_timestamp(),
                    window,
                    pane: PaneInfo::NO_FIRING,
                };
                self.next.receive(wv, cx)?;
            }
        }
        Ok(())
    }
}

impl<K: Element, C: CombineFn> Receiver<(K, C::In)> for PrecombineOp<K, C> {
    forward_lifecycle_start_teardown!();

    #[inline]
    fn receive(&mut self, wv: WindowedValue<(K, C::In)>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        self.scratch.clear();
        self.key_coder.encode(&wv.value.0, &mut self.scratch);
        let i = match self.tables.get(self.last_table) {
            Some((w, _)) if *w == wv.window => self.last_table,
            _ => {
                let tables = &mut self.tables;
                *self.window_index.entry(wv.window).or_insert_with(|| {
                    tables.push((wv.window, HashTable::new()));
                    tables.len() - 1
                })
            }
        };
        self.last_table = i;
        let table = &mut self.tables[i].1;
        let f = &*self.combine_fn;
        let key = &self.scratch[..];
        let hash = hash_bytes(key);
        if let Some((_, acc)) = table.find_mut(hash, |(k, _)| short_eq(k, key)) {
            return guard(&self.info.name, Some(&wv.value), || {
                f.add_input(acc, &wv.value.1)
            });
        }
        let mut acc = guard(&self.info.name, Some(&wv.value), || f.create_accumulator())?;
        guard(&self.info.name, Some(&wv.value), || {
            f.add_input(&mut acc, &wv.value.1)
        })?;
        table.insert_unique(hash, (key.to_vec(), acc), |(k, _)| hash_bytes(k));
        self.entries += 1;
        if self.entries >= MAX_PRECOMBINE_ENTRIES {
            self.flush(cx)?;
        }
        Ok(())
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
pub(crate) fn with_timestamp<T>(wv: WindowedValue<T>, ts: Timestamp) -> WindowedValue<T> {
    WindowedValue {
        timestamp: ts,
        ..wv
    }
}
