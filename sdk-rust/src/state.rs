//! Per-key state and timers: Beam's stateful processing.
//!
//! A [`StatefulDoFn`] processes a `PCollection<(K, V)>` with state and
//! timers scoped to each key and window. Declare them as fields (each with
//! an id unique within the DoFn) and list them in
//! [`declare`](StatefulDoFn::declare); in [`process`](StatefulDoFn::process)
//! and [`on_timer`](StatefulDoFn::on_timer) the [`StateContext`] gives typed
//! handles to them.
//!
//! ```
//! use oxbeam::state::{Declarations, StateContext, StatefulDoFn, ValueState};
//! #[derive(Clone)]
//! struct RunningCount { count: ValueState<i64> }
//! impl StatefulDoFn for RunningCount {
//!     type Key = String;
//!     type Value = i64;
//!     type Out = (String, i64);
//!     fn declare(&self, d: &mut Declarations) { d.state(&self.count); }
//!     fn process(&mut self, key: &String, _: &i64, ctx: &mut StateContext<'_, (String, i64)>) {
//!         let n = ctx.state(&self.count).read().unwrap_or(0) + 1;
//!         ctx.state(&self.count).write(&n);
//!         ctx.output((key.clone(), n));
//!     }
//! }
//! let p = oxbeam::Pipeline::default();
//! let counts = p
//!     .create("In", vec![("a".to_string(), 1i64), ("a".to_string(), 2)])
//!     .stateful_par_do("Count", RunningCount { count: ValueState::new("count") });
//! # let _ = counts;
//! ```
//!
//! | spec | Beam spec | on the wire (Fn API) |
//! |---|---|---|
//! | [`ValueState<T>`] | `ReadModifyWriteStateSpec` | bag of one value |
//! | [`BagState<T>`] | `BagStateSpec` | bag |
//! | [`CombiningState<C>`] | `CombiningStateSpec` | bag of accumulators |
//! | [`MapState<K, V>`] | `MapStateSpec` | multimap, one value per key |
//! | [`SetState<T>`] | `SetStateSpec` | bag of distinct values |
//! | [`OrderedListState<T>`] | `OrderedListStateSpec` | ordered list keyed by microseconds |
//! | [`TimerSpec`] | `TimerFamilySpec` | `beam:coder:timer:v1` on the data channel |
//!
//! Costs: every handle call is one State API request (in process: a hash
//! lookup in the runner's store) plus encoding; nothing is cached, so reads
//! always see the latest writes. Set state reads the whole set on `add` and
//! `contains`. The runner partitions the input by key, so state needs no
//! locking; plain [`DoFn`](crate::DoFn)s are unaffected.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use oxbeam_fn_api::{Error, Result, UserStateKey, UserStateKind};
use oxbeam_model::coders::{WindowCoder, wire};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};
use prost::Message;

use crate::coder::{Coder, CoderSpec, Element};
use crate::combine::CombineFn;
use crate::exec::ops::OpInfo;
use crate::exec::types::ops;
use crate::exec::{BATCH, Batch, Cx, Receiver, TimerTarget, WindowedValue, erase, guard, unerase};
use crate::metrics::set_current_transform;
use crate::pipeline::{MAIN_TAG, PCollection, native_spec};
use crate::registry::{NativeFn, ParDoArgs, ParDoFn};
use crate::transforms::pardo::{add_native_pardo_transform, main_output};

/// A DoFn over keyed input with per-key-and-window state and timers. See
/// the [module docs](self).
///
/// Lifecycle as for [`DoFn`](crate::DoFn): `setup` once per processor,
/// then `process` per element and `on_timer` per fired timer, `teardown`
/// at the end. State and timers of a key are only ever touched by one
/// processor at a time.
pub trait StatefulDoFn: Clone + Send + 'static {
    /// Key type of the input.
    type Key: Element;
    /// Value type of the input.
    type Value: Element;
    /// Main output element type.
    type Out: Element;

    /// Lists the state and timers the DoFn uses (usually its fields).
    fn declare(&self, declarations: &mut Declarations);

    /// Once per processor, before any bundle.
    fn setup(&mut self) {}

    /// Once per element (and window). Panics fail the bundle with an error
    /// naming the transform, the panic message and the element.
    fn process(
        &mut self,
        key: &Self::Key,
        value: &Self::Value,
        ctx: &mut StateContext<'_, Self::Out>,
    );

    /// When a timer set for `key` fires; `ctx` is in the timer's window,
    /// with the timer's output timestamp.
    fn on_timer(
        &mut self,
        key: &Self::Key,
        timer: &FiredTimer,
        ctx: &mut StateContext<'_, Self::Out>,
    ) {
        let _ = (key, timer, ctx);
    }

    /// When the processor is discarded.
    fn teardown(&mut self) {}
}

/// What a state spec declares (its id and Beam spec); built by the spec types.
#[derive(Clone, Debug)]
pub struct StateDeclaration {
    id: String,
    kind: DeclKind,
}

#[derive(Clone, Debug)]
enum DeclKind {
    Value(CoderSpec),
    Bag(CoderSpec),
    Combining(CoderSpec),
    Map(CoderSpec, CoderSpec),
    Set(CoderSpec),
    OrderedList(CoderSpec),
}

/// The state and timers a [`StatefulDoFn`] declares.
#[derive(Default, Debug)]
pub struct Declarations {
    states: Vec<StateDeclaration>,
    timers: Vec<(String, TimeDomain)>,
}

impl Declarations {
    /// Declares a state cell.
    ///
    /// # Panics
    /// If another state has the same id.
    pub fn state<S: StateSpec>(&mut self, spec: &S) -> &mut Self {
        let d = spec.declaration();
        assert!(
            !self.states.iter().any(|s| s.id == d.id),
            "state id {:?} is declared twice",
            d.id
        );
        self.states.push(d);
        self
    }

    /// Declares a timer (family).
    ///
    /// # Panics
    /// If another timer has the same id.
    pub fn timer(&mut self, spec: &TimerSpec) -> &mut Self {
        assert!(
            !self.timers.iter().any(|(id, _)| *id == spec.id),
            "timer id {:?} is declared twice",
            spec.id
        );
        self.timers.push((spec.id.clone(), spec.domain));
        self
    }
}

/// A state spec: its id and type, and the handle [`StateContext::state`]
/// gives for it.
pub trait StateSpec {
    /// The typed handle.
    type Handle<'a>
    where
        Self: 'a;
    /// The id, unique within the DoFn.
    fn id(&self) -> &str;
    /// Its declaration (id and Beam spec).
    fn declaration(&self) -> StateDeclaration;
    /// A handle on the cell of the current key and window.
    fn handle<'a>(&'a self, cell: StateCell<'a>) -> Self::Handle<'a>;
}

/// The cell of one state for the current key and window, as handles use it.
pub struct StateCell<'a> {
    cx: &'a mut dyn Cx,
    transform: &'a str,
    state_id: &'a str,
    window: &'a [u8],
    key: &'a [u8],
}

impl<'a> StateCell<'a> {
    /// The address of `kind` in this cell (borrowing only the address parts).
    fn key<'k>(
        transform: &'a str,
        state_id: &'a str,
        window: &'a [u8],
        key: &'a [u8],
        kind: UserStateKind<'k>,
    ) -> UserStateKey<'k>
    where
        'a: 'k,
    {
        UserStateKey {
            transform,
            state_id,
            window,
            key,
            kind,
        }
    }

    #[cold]
    fn fail(&self, what: &str, e: Error) -> ! {
        panic!("{what} of state {:?} failed: {e}", self.state_id)
    }

    fn get(&mut self, kind: UserStateKind<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let key = Self::key(self.transform, self.state_id, self.window, self.key, kind);
        if let Err(e) = self.cx.state().get(&key, &mut out) {
            self.fail("reading", e)
        }
        out
    }

    fn append(&mut self, kind: UserStateKind<'_>, data: &[u8]) {
        let key = Self::key(self.transform, self.state_id, self.window, self.key, kind);
        if let Err(e) = self.cx.state().append(&key, data) {
            self.fail("writing", e)
        }
    }

    fn clear(&mut self, kind: UserStateKind<'_>) {
        let key = Self::key(self.transform, self.state_id, self.window, self.key, kind);
        if let Err(e) = self.cx.state().clear(&key) {
            self.fail("clearing", e)
        }
    }

    fn decode_all<T: Element>(&self, bytes: &[u8]) -> Vec<T> {
        let coder = T::Coder::default();
        let mut rest = bytes;
        let mut out = Vec::new();
        while !rest.is_empty() {
            match coder.decode(&mut rest) {
                Ok(v) => out.push(v),
                Err(e) => panic!("state {:?} holds undecodable bytes: {e}", self.state_id),
            }
        }
        out
    }
}

fn encode<T: Element>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    T::Coder::default().encode(v, &mut out);
    out
}

fn spec_of<T: Element>() -> CoderSpec {
    T::Coder::default().spec()
}

macro_rules! state_spec_type {
    ($(#[$doc:meta])* $name:ident<$($t:ident),+> $(where $($bound:tt)+)?) => {
        $(#[$doc])*
        pub struct $name<$($t),+> {
            id: Arc<str>,
            _t: PhantomData<fn() -> ($($t,)+)>,
        }
        impl<$($t),+> Clone for $name<$($t),+> {
            fn clone(&self) -> Self {
                $name { id: self.id.clone(), _t: PhantomData }
            }
        }
        impl<$($t),+> std::fmt::Debug for $name<$($t),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.id)
            }
        }
        impl<$($t),+> $name<$($t),+> {
            /// A spec with `id`, unique among the DoFn's state.
            pub fn new(id: &str) -> Self {
                $name { id: id.into(), _t: PhantomData }
            }
        }
    };
}

state_spec_type!(
    /// A single value per key and window: read, write, clear.
    ValueState<T>
);
state_spec_type!(
    /// Values appended per key and window, read all at once.
    BagState<T>
);
state_spec_type!(
    /// A map per key and window.
    MapState<K, V>
);
state_spec_type!(
    /// A set of distinct values per key and window.
    SetState<T>
);
state_spec_type!(
    /// Values sorted by a timestamp, read and cleared by time range.
    OrderedListState<T>
);

/// Values folded by a [`CombineFn`] per key and window: add inputs, read
/// the combined output.
pub struct CombiningState<C> {
    id: Arc<str>,
    combine_fn: Arc<C>,
}

impl<C> Clone for CombiningState<C> {
    fn clone(&self) -> Self {
        CombiningState {
            id: self.id.clone(),
            combine_fn: self.combine_fn.clone(),
        }
    }
}

impl<C> std::fmt::Debug for CombiningState<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CombiningState({:?})", self.id)
    }
}

impl<C: CombineFn> CombiningState<C> {
    /// A spec with `id` combining with `combine_fn`.
    pub fn new(id: &str, combine_fn: C) -> Self {
        CombiningState {
            id: id.into(),
            combine_fn: Arc::new(combine_fn),
        }
    }
}

impl<T: Element> StateSpec for ValueState<T> {
    type Handle<'a> = ValueHandle<'a, T>;
    fn id(&self) -> &str {
        &self.id
    }
    fn declaration(&self) -> StateDeclaration {
        StateDeclaration {
            id: self.id.to_string(),
            kind: DeclKind::Value(spec_of::<T>()),
        }
    }
    fn handle<'a>(&'a self, cell: StateCell<'a>) -> ValueHandle<'a, T> {
        ValueHandle {
            cell,
            _t: PhantomData,
        }
    }
}

/// The handle of a [`ValueState`].
pub struct ValueHandle<'a, T> {
    cell: StateCell<'a>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Element> ValueHandle<'_, T> {
    /// The value, if one was written.
    pub fn read(&mut self) -> Option<T> {
        let bytes = self.cell.get(UserStateKind::Bag);
        self.cell.decode_all::<T>(&bytes).pop()
    }

    /// Replaces the value.
    pub fn write(&mut self, value: &T) {
        self.cell.clear(UserStateKind::Bag);
        self.cell.append(UserStateKind::Bag, &encode(value));
    }

    /// Removes the value.
    pub fn clear(&mut self) {
        self.cell.clear(UserStateKind::Bag);
    }
}

impl<T: Element> StateSpec for BagState<T> {
    type Handle<'a> = BagHandle<'a, T>;
    fn id(&self) -> &str {
        &self.id
    }
    fn declaration(&self) -> StateDeclaration {
        StateDeclaration {
            id: self.id.to_string(),
            kind: DeclKind::Bag(spec_of::<T>()),
        }
    }
    fn handle<'a>(&'a self, cell: StateCell<'a>) -> BagHandle<'a, T> {
        BagHandle {
            cell,
            _t: PhantomData,
        }
    }
}

/// The handle of a [`BagState`].
pub struct BagHandle<'a, T> {
    cell: StateCell<'a>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Element> BagHandle<'_, T> {
    /// Every value added, in order.
    pub fn read(&mut self) -> Vec<T> {
        let bytes = self.cell.get(UserStateKind::Bag);
        self.cell.decode_all(&bytes)
    }

    /// Whether nothing was added.
    pub fn is_empty(&mut self) -> bool {
        self.cell.get(UserStateKind::Bag).is_empty()
    }

    /// Adds a value.
    pub fn add(&mut self, value: &T) {
        self.cell.append(UserStateKind::Bag, &encode(value));
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.cell.clear(UserStateKind::Bag);
    }
}

impl<C: CombineFn> StateSpec for CombiningState<C> {
    type Handle<'a> = CombiningHandle<'a, C>;
    fn id(&self) -> &str {
        &self.id
    }
    fn declaration(&self) -> StateDeclaration {
        StateDeclaration {
            id: self.id.to_string(),
            kind: DeclKind::Combining(spec_of::<C::Acc>()),
        }
    }
    fn handle<'a>(&'a self, cell: StateCell<'a>) -> CombiningHandle<'a, C> {
        CombiningHandle {
            cell,
            combine_fn: &self.combine_fn,
        }
    }
}

/// The handle of a [`CombiningState`].
pub struct CombiningHandle<'a, C> {
    cell: StateCell<'a>,
    combine_fn: &'a C,
}

impl<C: CombineFn> CombiningHandle<'_, C> {
    /// Adds one input.
    pub fn add(&mut self, input: &C::In) {
        let mut acc = self.combine_fn.create_accumulator();
        self.combine_fn.add_input(&mut acc, input);
        self.cell.append(UserStateKind::Bag, &encode(&acc));
    }

    /// The merged accumulator (compacting the stored ones into it).
    pub fn read_accumulator(&mut self) -> C::Acc {
        let bytes = self.cell.get(UserStateKind::Bag);
        let accs: Vec<C::Acc> = self.cell.decode_all(&bytes);
        let n = accs.len();
        let mut it = accs.into_iter();
        let mut acc = it
            .next()
            .unwrap_or_else(|| self.combine_fn.create_accumulator());
        for a in it {
            self.combine_fn.merge_accumulators(&mut acc, a);
        }
        if n > 1 {
            self.cell.clear(UserStateKind::Bag);
            self.cell.append(UserStateKind::Bag, &encode(&acc));
        }
        acc
    }

    /// The combined output of everything added (of nothing: the output of
    /// an empty accumulator).
    pub fn read(&mut self) -> C::Out {
        let acc = self.read_accumulator();
        self.combine_fn.extract_output(acc)
    }

    /// Forgets every input.
    pub fn clear(&mut self) {
        self.cell.clear(UserStateKind::Bag);
    }
}

impl<K: Element, V: Element> StateSpec for MapState<K, V> {
    type Handle<'a> = MapHandle<'a, K, V>;
    fn id(&self) -> &str {
        &self.id
    }
    fn declaration(&self) -> StateDeclaration {
        StateDeclaration {
            id: self.id.to_string(),
            kind: DeclKind::Map(spec_of::<K>(), spec_of::<V>()),
        }
    }
    fn handle<'a>(&'a self, cell: StateCell<'a>) -> MapHandle<'a, K, V> {
        MapHandle {
            cell,
            _t: PhantomData,
        }
    }
}

/// The handle of a [`MapState`].
pub struct MapHandle<'a, K, V> {
    cell: StateCell<'a>,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K: Element, V: Element> MapHandle<'_, K, V> {
    /// The value under `key`.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let k = encode(key);
        let bytes = self.cell.get(UserStateKind::Multimap { map_key: &k });
        self.cell.decode_all::<V>(&bytes).pop()
    }

    /// Sets the value under `key`.
    pub fn put(&mut self, key: &K, value: &V) {
        let k = encode(key);
        self.cell.clear(UserStateKind::Multimap { map_key: &k });
        self.cell
            .append(UserStateKind::Multimap { map_key: &k }, &encode(value));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) {
        let k = encode(key);
        self.cell.clear(UserStateKind::Multimap { map_key: &k });
    }

    /// The keys, in the order of their encodings.
    pub fn keys(&mut self) -> Vec<K> {
        let bytes = self.cell.get(UserStateKind::MultimapKeys);
        self.cell.decode_all(&bytes)
    }

    /// Every (key, value), in the order of the keys' encodings.
    pub fn entries(&mut self) -> Vec<(K, V)> {
        let keys = self.keys();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(v) = self.get(&k) {
                out.push((k, v));
            }
        }
        out
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.cell.clear(UserStateKind::MultimapKeys);
    }
}

impl<T: Element> StateSpec for SetState<T> {
    type Handle<'a> = SetHandle<'a, T>;
    fn id(&self) -> &str {
        &self.id
    }
    fn declaration(&self) -> StateDeclaration {
        StateDeclaration {
            id: self.id.to_string(),
            kind: DeclKind::Set(spec_of::<T>()),
        }
    }
    fn handle<'a>(&'a self, cell: StateCell<'a>) -> SetHandle<'a, T> {
        SetHandle {
            cell,
            _t: PhantomData,
        }
    }
}

/// The handle of a [`SetState`]. Values are equal when their encodings are.
pub struct SetHandle<'a, T> {
    cell: StateCell<'a>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Element> SetHandle<'_, T> {
    fn encoded_members(&mut self) -> Vec<Vec<u8>> {
        let bytes = self.cell.get(UserStateKind::Bag);
        let coder = T::Coder::default();
        let mut rest = &bytes[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let before = rest;
            if let Err(e) = coder.decode(&mut rest) {
                panic!(
                    "state {:?} holds undecodable bytes: {e}",
                    self.cell.state_id
                )
            }
            out.push(before[..before.len() - rest.len()].to_vec());
        }
        out
    }

    /// Adds `value`; returns whether it was not there yet.
    pub fn add(&mut self, value: &T) -> bool {
        let v = encode(value);
        if self.encoded_members().contains(&v) {
            return false;
        }
        self.cell.append(UserStateKind::Bag, &v);
        true
    }

    /// Whether `value` is in the set.
    pub fn contains(&mut self, value: &T) -> bool {
        let v = encode(value);
        self.encoded_members().contains(&v)
    }

    /// Removes `value`.
    pub fn remove(&mut self, value: &T) {
        let v = encode(value);
        let members = self.encoded_members();
        if members.contains(&v) {
            self.cell.clear(UserStateKind::Bag);
            let rest: Vec<u8> = members.into_iter().filter(|m| *m != v).flatten().collect();
            self.cell.append(UserStateKind::Bag, &rest);
        }
    }

    /// The members, in insertion order.
    pub fn read(&mut self) -> Vec<T> {
        let bytes = self.cell.get(UserStateKind::Bag);
        self.cell.decode_all(&bytes)
    }

    /// Removes every member.
    pub fn clear(&mut self) {
        self.cell.clear(UserStateKind::Bag);
    }
}

impl<T: Element> StateSpec for OrderedListState<T> {
    type Handle<'a> = OrderedListHandle<'a, T>;
    fn id(&self) -> &str {
        &self.id
    }
    fn declaration(&self) -> StateDeclaration {
        StateDeclaration {
            id: self.id.to_string(),
            kind: DeclKind::OrderedList(spec_of::<T>()),
        }
    }
    fn handle<'a>(&'a self, cell: StateCell<'a>) -> OrderedListHandle<'a, T> {
        OrderedListHandle {
            cell,
            _t: PhantomData,
        }
    }
}

/// The handle of an [`OrderedListState`].
pub struct OrderedListHandle<'a, T> {
    cell: StateCell<'a>,
    _t: PhantomData<fn() -> T>,
}

/// Sort keys are microseconds, as in Beam's SDKs.
fn micros(t: Timestamp) -> i64 {
    t.millis().saturating_mul(1000)
}

impl<T: Element> OrderedListHandle<'_, T> {
    /// Adds `value` at `timestamp`.
    pub fn add(&mut self, timestamp: Timestamp, value: &T) {
        let v = encode(value);
        let mut entry = Vec::with_capacity(v.len() + 12);
        wire::write_varint_i64(&mut entry, micros(timestamp));
        wire::write_length_prefixed(&mut entry, &v);
        self.cell.append(
            UserStateKind::OrderedList {
                start: i64::MIN,
                end: i64::MAX,
            },
            &entry,
        );
    }

    /// Every value with its timestamp, in timestamp order.
    pub fn read(&mut self) -> Vec<(Timestamp, T)> {
        self.read_range_micros(i64::MIN, i64::MAX)
    }

    /// The values with timestamps in `[start, end)`, in timestamp order.
    pub fn read_range(&mut self, start: Timestamp, end: Timestamp) -> Vec<(Timestamp, T)> {
        self.read_range_micros(micros(start), micros(end))
    }

    fn read_range_micros(&mut self, start: i64, end: i64) -> Vec<(Timestamp, T)> {
        let bytes = self.cell.get(UserStateKind::OrderedList { start, end });
        let coder = T::Coder::default();
        let mut rest = &bytes[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let r = wire::read_varint_i64(&mut rest).and_then(|ts| {
                let mut v = wire::read_length_prefixed(&mut rest)?;
                Ok((
                    Timestamp::from_millis(ts.div_euclid(1000)),
                    coder.decode(&mut v)?,
                ))
            });
            match r {
                Ok(e) => out.push(e),
                Err(e) => panic!(
                    "state {:?} holds undecodable bytes: {e}",
                    self.cell.state_id
                ),
            }
        }
        out
    }

    /// Removes the values with timestamps in `[start, end)`.
    pub fn clear_range(&mut self, start: Timestamp, end: Timestamp) {
        self.cell.clear(UserStateKind::OrderedList {
            start: micros(start),
            end: micros(end),
        });
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.cell.clear(UserStateKind::OrderedList {
            start: i64::MIN,
            end: i64::MAX,
        });
    }
}

/// The time domain of a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the input watermark passes its timestamp (in batch: after
    /// all input, in timestamp order).
    EventTime,
    /// Fires when processing time passes its timestamp (in batch: after all
    /// input, in timestamp order).
    ProcessingTime,
}

/// A timer (family): set per key and window, under dynamic tags if wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerSpec {
    id: String,
    domain: TimeDomain,
}

impl TimerSpec {
    /// An event-time timer with `id`, unique among the DoFn's timers.
    pub fn event_time(id: &str) -> Self {
        TimerSpec {
            id: id.to_string(),
            domain: TimeDomain::EventTime,
        }
    }

    /// A processing-time timer with `id`.
    pub fn processing_time(id: &str) -> Self {
        TimerSpec {
            id: id.to_string(),
            domain: TimeDomain::ProcessingTime,
        }
    }

    /// The timer's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The timer's time domain.
    pub fn domain(&self) -> TimeDomain {
        self.domain
    }
}

/// A timer that fired, as [`StatefulDoFn::on_timer`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredTimer {
    /// Id of its [`TimerSpec`].
    pub id: String,
    /// Its dynamic tag (empty unless set with [`TimerHandle::with_tag`]).
    pub tag: String,
    /// Its time domain.
    pub domain: TimeDomain,
    /// When it was set to fire.
    pub fire_timestamp: Timestamp,
    /// The timestamp of outputs made while it fires.
    pub output_timestamp: Timestamp,
}

impl FiredTimer {
    /// Whether it is a timer of `spec`.
    pub fn is(&self, spec: &TimerSpec) -> bool {
        self.id == spec.id
    }
}

/// Sets or clears one timer for the current key and window; see
/// [`StateContext::timer`].
pub struct TimerHandle<'c, 'a, Out> {
    ctx: &'c mut StateContext<'a, Out>,
    id: &'c str,
    domain: TimeDomain,
    tag: String,
    output_timestamp: Option<Timestamp>,
}

impl<Out: Element> TimerHandle<'_, '_, Out> {
    /// Addresses the member `tag` of the timer family.
    pub fn with_tag(mut self, tag: &str) -> Self {
        self.tag = tag.to_string();
        self
    }

    /// Outputs made when it fires get `timestamp` (which also holds the
    /// output watermark). Default: the fire timestamp for event-time
    /// timers, the current element's timestamp for processing-time ones.
    pub fn with_output_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.output_timestamp = Some(timestamp);
        self
    }

    fn header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.ctx.key);
        wire::write_length_prefixed(out, self.tag.as_bytes());
        wire::write_i32_be(out, 1);
        out.extend_from_slice(self.ctx.window_bytes);
    }

    fn send(self, bytes: &[u8]) {
        let (transform, id) = (self.ctx.transform, self.id);
        if let Err(e) = self.ctx.cx.emit_timer(transform, id, bytes) {
            panic!("setting timer {id:?} failed: {e}")
        }
    }

    /// Sets it to fire at `timestamp`, replacing its earlier setting.
    pub fn set(self, timestamp: Timestamp) {
        let output = self.output_timestamp.unwrap_or(match self.domain {
            TimeDomain::EventTime => timestamp,
            TimeDomain::ProcessingTime => self.ctx.timestamp,
        });
        let mut out = Vec::with_capacity(64);
        self.header(&mut out);
        wire::write_bool(&mut out, false);
        wire::write_timestamp(&mut out, timestamp);
        wire::write_timestamp(&mut out, output);
        wire::write_pane(&mut out, &PaneInfo::NO_FIRING);
        self.send(&out);
    }

    /// Clears it: it will not fire unless set again.
    pub fn clear(self) {
        let mut out = Vec::with_capacity(32);
        self.header(&mut out);
        wire::write_bool(&mut out, true);
        self.send(&out);
    }
}

/// What [`StatefulDoFn::process`] and [`StatefulDoFn::on_timer`] see: the
/// element's (or timer's) timestamp and window, outputs, and the state and
/// timers of the current key and window.
pub struct StateContext<'a, Out> {
    timestamp: Timestamp,
    window: BoundedWindow,
    pane: PaneInfo,
    transform: &'a str,
    key: &'a [u8],
    window_bytes: &'a [u8],
    domains: &'a [(String, TimeDomain)],
    main: &'a mut Batch<Out>,
    cx: &'a mut dyn Cx,
}

impl<'a, Out: Element> StateContext<'a, Out> {
    /// Event time of the element, or the output timestamp of the timer.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The window.
    pub fn window(&self) -> &BoundedWindow {
        &self.window
    }

    /// Outputs `value` with the context's timestamp and window.
    pub fn output(&mut self, value: Out) {
        self.main.push(WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        });
    }

    /// Outputs `value` at `timestamp`, in the context's window.
    pub fn output_with_timestamp(&mut self, value: Out, timestamp: Timestamp) {
        self.main.push(WindowedValue {
            value,
            timestamp,
            window: self.window,
            pane: self.pane,
        });
    }

    /// The handle of state `spec` for the current key and window.
    ///
    /// Handle calls panic (failing the bundle) if the runner cannot serve
    /// the state, e.g. when the DoFn runs outside a stateful stage.
    pub fn state<'s, S: StateSpec>(&'s mut self, spec: &'s S) -> S::Handle<'s> {
        let cell = StateCell {
            cx: &mut *self.cx,
            transform: self.transform,
            state_id: spec.id(),
            window: self.window_bytes,
            key: self.key,
        };
        spec.handle(cell)
    }

    /// The timer `spec` for the current key and window, to set or clear.
    ///
    /// # Panics
    /// If `spec` was not declared by the DoFn.
    pub fn timer<'c>(&'c mut self, spec: &'c TimerSpec) -> TimerHandle<'c, 'a, Out> {
        assert!(
            self.domains.iter().any(|(id, _)| *id == spec.id),
            "timer {:?} was not declared (list it in StatefulDoFn::declare)",
            spec.id
        );
        TimerHandle {
            domain: spec.domain,
            id: &spec.id,
            tag: String::new(),
            output_timestamp: None,
            ctx: self,
        }
    }
}

// ------------------------------------------------------------- applying it

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// Applies a [`StatefulDoFn`]: a ParDo whose payload declares its state
    /// and timers with Beam's spec messages, so the runner partitions its
    /// input by key and gives it state and timers.
    pub fn stateful_par_do<D>(&self, label: &str, dofn: D) -> PCollection<D::Out>
    where
        D: StatefulDoFn<Key = K, Value = V>,
    {
        let p = &self.pipeline;
        let mut decl = Declarations::default();
        dofn.declare(&mut decl);
        let name = p.reserve_name(label);
        let window_coder = CoderSpec::new(self.window_fn.window_coder_urn(), vec![]);
        let timer_coder = p.coder_id(&CoderSpec::new(
            urns::standard_coders::TIMER,
            vec![spec_of::<K>(), window_coder],
        ));
        let mut state_specs = BTreeMap::new();
        for s in &decl.states {
            use pb::state_spec::Spec;
            let spec = match &s.kind {
                DeclKind::Value(c) => Spec::ReadModifyWriteSpec(pb::ReadModifyWriteStateSpec {
                    coder_id: p.coder_id(c),
                }),
                DeclKind::Bag(c) => Spec::BagSpec(pb::BagStateSpec {
                    element_coder_id: p.coder_id(c),
                }),
                DeclKind::Combining(c) => Spec::CombiningSpec(pb::CombiningStateSpec {
                    accumulator_coder_id: p.coder_id(c),
                    combine_fn: Some(native_spec(
                        urns::native_functions::COMBINE_FN,
                        &format!("{name}/{}", s.id),
                        Vec::new(),
                        String::new(),
                    )),
                }),
                DeclKind::Map(k, v) => Spec::MapSpec(pb::MapStateSpec {
                    key_coder_id: p.coder_id(k),
                    value_coder_id: p.coder_id(v),
                }),
                DeclKind::Set(c) => Spec::SetSpec(pb::SetStateSpec {
                    element_coder_id: p.coder_id(c),
                }),
                DeclKind::OrderedList(c) => Spec::OrderedListSpec(pb::OrderedListStateSpec {
                    element_coder_id: p.coder_id(c),
                }),
            };
            let protocol_urn = match &s.kind {
                DeclKind::Map(..) => urns::standard_user_state_types::MULTIMAP,
                DeclKind::OrderedList(_) => urns::standard_user_state_types::ORDERED_LIST,
                _ => urns::standard_user_state_types::BAG,
            };
            state_specs.insert(
                s.id.clone(),
                pb::StateSpec {
                    spec: Some(spec),
                    protocol: Some(pb::FunctionSpec {
                        urn: protocol_urn.to_string(),
                        payload: Default::default(),
                    }),
                },
            );
        }
        let timer_family_specs = decl
            .timers
            .iter()
            .map(|(id, domain)| {
                let time_domain = match domain {
                    TimeDomain::EventTime => pb::time_domain::Enum::EventTime,
                    TimeDomain::ProcessingTime => pb::time_domain::Enum::ProcessingTime,
                };
                (
                    id.clone(),
                    pb::TimerFamilySpec {
                        time_domain: time_domain as i32,
                        timer_family_coder_id: timer_coder.clone(),
                    },
                )
            })
            .collect();
        let id = add_native_pardo_transform(
            p,
            &name,
            vec![("in".to_string(), self.id.clone())],
            Vec::new(),
            std::any::type_name::<D>().to_string(),
            pb::ParDoPayload {
                state_specs: state_specs.into_iter().collect(),
                timer_family_specs,
                ..Default::default()
            },
        );
        let proto = Mutex::new(dofn);
        let domains: Arc<[(String, TimeDomain)]> = decl.timers.into();
        p.register(
            &id,
            NativeFn::ParDo(ParDoFn {
                input: ops::<(K, V)>(),
                outputs: vec![main_output::<D::Out>()],
                side_inputs: Vec::new(),
                factory: Box::new(move |args: ParDoArgs<'_>| {
                    let what = args.info.transform_id.clone();
                    let dofn = proto
                        .lock()
                        .map_err(|_| Error::Internal("DoFn prototype lock poisoned".into()))?
                        .clone();
                    let main = unerase::<D::Out>(args.main, &what)?;
                    let core = StatefulCore::new(
                        args.info,
                        dofn,
                        main,
                        domains.clone(),
                        args.input_window_coder,
                    )?;
                    let core = Arc::new(Mutex::new(core));
                    args.timers
                        .push((what, Box::new(StatefulTimers(core.clone()))));
                    Ok(erase::<(K, V)>(Box::new(StatefulOp(core))))
                }),
            }),
        );
        p.add_output::<D::Out>(&id, MAIN_TAG, self.window_fn)
    }
}

/// The pipeline requirements of `components`: stateful processing if a
/// ParDo declares state or timers (a runner must understand it to run the
/// pipeline correctly).
pub(crate) fn requirements(components: &pb::Components) -> Vec<String> {
    let stateful = components.transforms.values().any(|t| {
        t.spec.as_ref().is_some_and(|s| {
            s.urn == urns::standard_p_transforms::primitives::PAR_DO
                && pb::ParDoPayload::decode(s.payload.as_ref())
                    .is_ok_and(|p| !p.state_specs.is_empty() || !p.timer_family_specs.is_empty())
        })
    });
    if stateful {
        vec![urns::standard_requirements::REQUIRES_STATEFUL_PROCESSING.to_string()]
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------- operator

/// The operator of a [`StatefulDoFn`], shared by its element side
/// ([`StatefulOp`]) and its timer side ([`StatefulTimers`]).
struct StatefulCore<D: StatefulDoFn> {
    info: OpInfo,
    dofn: D,
    main: Box<dyn Receiver<D::Out>>,
    out: Batch<D::Out>,
    domains: Arc<[(String, TimeDomain)]>,
    window_coder: WindowCoder,
    key_coder: <D::Key as Element>::Coder,
    key: Vec<u8>,
    window: Vec<u8>,
}

impl<D: StatefulDoFn> StatefulCore<D> {
    fn new(
        info: OpInfo,
        mut dofn: D,
        main: Box<dyn Receiver<D::Out>>,
        domains: Arc<[(String, TimeDomain)]>,
        window_coder: WindowCoder,
    ) -> Result<Self> {
        set_current_transform(info.index);
        guard(&info.name, None, || dofn.setup())?;
        Ok(StatefulCore {
            info,
            dofn,
            main,
            out: Batch::default(),
            domains,
            window_coder,
            key_coder: Default::default(),
            key: Vec::new(),
            window: Vec::new(),
        })
    }

    fn process(&mut self, wv: WindowedValue<(D::Key, D::Value)>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        self.key.clear();
        self.key_coder.encode(&wv.value.0, &mut self.key);
        self.window.clear();
        wire::write_window(&mut self.window, &wv.window);
        let mut ctx = StateContext {
            timestamp: wv.timestamp,
            window: wv.window,
            pane: wv.pane,
            transform: &self.info.transform_id,
            key: &self.key,
            window_bytes: &self.window,
            domains: &self.domains,
            main: &mut self.out,
            cx,
        };
        let dofn = &mut self.dofn;
        guard(&self.info.name, Some(&wv.value), || {
            dofn.process(&wv.value.0, &wv.value.1, &mut ctx)
        })
    }

    fn fire(&mut self, family: &str, timers: &[u8], cx: &mut dyn Cx) -> Result<()> {
        let Some(domain) = self
            .domains
            .iter()
            .find(|(id, _)| id == family)
            .map(|(_, d)| *d)
        else {
            return Err(Error::invalid(
                format!("timers of transform {}", self.info.transform_id),
                format!("timer family {family:?} is not declared by its DoFn"),
            ));
        };
        let bad = |e: oxbeam_model::coders::CoderError| {
            Error::invalid(format!("timer of transform {}", self.info.transform_id), e)
        };
        let mut rest = timers;
        while !rest.is_empty() {
            let start = rest;
            let key = self.key_coder.decode(&mut rest).map_err(bad)?;
            self.key.clear();
            self.key
                .extend_from_slice(&start[..start.len() - rest.len()]);
            let tag = wire::read_str(&mut rest).map_err(bad)?.to_string();
            let n = wire::read_i32_be(&mut rest).map_err(bad)?;
            let mut windows = Vec::new();
            for _ in 0..n.max(0) {
                let w = match self.window_coder {
                    WindowCoder::Global => BoundedWindow::Global,
                    WindowCoder::Interval => wire::read_interval_window(&mut rest).map_err(bad)?,
                };
                windows.push(w);
            }
            if wire::read_bool(&mut rest).map_err(bad)? {
                continue; // a cleared timer: nothing fires
            }
            let fire = wire::read_timestamp(&mut rest).map_err(bad)?;
            let hold = wire::read_timestamp(&mut rest).map_err(bad)?;
            let pane = wire::read_pane(&mut rest).map_err(bad)?;
            let fired = FiredTimer {
                id: family.to_string(),
                tag,
                domain,
                fire_timestamp: fire,
                output_timestamp: hold,
            };
            for window in windows {
                set_current_transform(self.info.index);
                self.window.clear();
                wire::write_window(&mut self.window, &window);
                let mut ctx = StateContext {
                    timestamp: hold,
                    window,
                    pane,
                    transform: &self.info.transform_id,
                    key: &self.key,
                    window_bytes: &self.window,
                    domains: &self.domains,
                    main: &mut self.out,
                    cx: &mut *cx,
                };
                let dofn = &mut self.dofn;
                guard(&self.info.name, Some(&key), || {
                    dofn.on_timer(&key, &fired, &mut ctx)
                })?;
                if self.out.len() >= BATCH {
                    self.main.receive_batch(&mut self.out, cx)?;
                }
            }
        }
        self.main.receive_batch(&mut self.out, cx)
    }
}

fn lock<D: StatefulDoFn>(
    core: &Mutex<StatefulCore<D>>,
) -> Result<std::sync::MutexGuard<'_, StatefulCore<D>>> {
    core.lock()
        .map_err(|_| Error::Internal("stateful operator lock poisoned".into()))
}

/// The element side of a stateful ParDo.
struct StatefulOp<D: StatefulDoFn>(Arc<Mutex<StatefulCore<D>>>);

impl<D: StatefulDoFn> Receiver<(D::Key, D::Value)> for StatefulOp<D> {
    fn start(&mut self) -> Result<()> {
        lock(&self.0)?.main.start()
    }

    fn receive(&mut self, wv: WindowedValue<(D::Key, D::Value)>, cx: &mut dyn Cx) -> Result<()> {
        let mut core = lock(&self.0)?;
        core.process(wv, cx)?;
        let c = &mut *core;
        c.main.receive_batch(&mut c.out, cx)
    }

    fn receive_batch(
        &mut self,
        batch: &mut Batch<(D::Key, D::Value)>,
        cx: &mut dyn Cx,
    ) -> Result<()> {
        let mut core = lock(&self.0)?;
        let c = &mut *core;
        for wv in batch.drain() {
            c.process(wv, cx)?;
            if c.out.len() >= BATCH {
                c.main.receive_batch(&mut c.out, cx)?;
            }
        }
        c.main.receive_batch(&mut c.out, cx)
    }

    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        lock(&self.0)?.main.finish(cx)
    }

    fn teardown(&mut self) {
        if let Ok(mut c) = self.0.lock() {
            set_current_transform(c.info.index);
            let name = c.info.name.clone();
            let _ = guard(&name, None, || c.dofn.teardown());
            c.main.teardown();
        }
    }
}

/// The timer side of a stateful ParDo.
struct StatefulTimers<D: StatefulDoFn>(Arc<Mutex<StatefulCore<D>>>);

impl<D: StatefulDoFn> TimerTarget for StatefulTimers<D> {
    fn fire(&mut self, family: &str, timers: &[u8], cx: &mut dyn Cx) -> Result<()> {
        lock(&self.0)?.fire(family, timers, cx)
    }
}
