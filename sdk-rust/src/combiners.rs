//! Built-in combiners: [`Sum`], [`Min`], [`Max`], [`Mean`], [`Count`],
//! [`Top`], [`ToList`], [`Sample`] and [`Distinct`].
//!
//! Each offers `globally()` (a [`PTransform`] over `PCollection<T>`) and
//! `per_key()` (over `PCollection<(K, T)>`), plus the bare [`CombineFn`].
//!
//! ```no_run
//! use oxbeam::Pipeline;
//! use oxbeam::combiners::{Sum, Top};
//! let p = Pipeline::default();
//! let scores = p.create("Scores", vec![("a".to_string(), 3i64), ("b".to_string(), 5)]);
//! let totals = scores.apply("Total", Sum::per_key());
//! let best = scores.values("Points").apply("Best", Top::largest(1));
//! ```

use std::cell::Cell;
use std::cmp::Ordering;
use std::marker::PhantomData;

use crate::coder::Element;
use crate::combine::{CombineFn, CombineGlobally, CombinePerKey};
use crate::pipeline::{PCollection, PTransform};

/// Numbers [`Sum`] and [`Mean`] work on.
pub trait Number: Element + Copy + Default + std::ops::AddAssign {
    /// The value as an `f64` (for means).
    fn to_f64(self) -> f64;
}

macro_rules! number {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn to_f64(self) -> f64 { self as f64 }
        }
    )*};
}
number!(i64, i32, i16, u64, u32, u16, usize, isize, f64, f32);

/// Adds numbers.
#[derive(Debug)]
pub struct SumFn<T>(PhantomData<fn() -> T>);

impl<T> Clone for SumFn<T> {
    fn clone(&self) -> Self {
        SumFn(PhantomData)
    }
}

impl<T: Number> CombineFn for SumFn<T> {
    type In = T;
    type Acc = T;
    type Out = T;
    fn create_accumulator(&self) -> T {
        T::default()
    }
    #[inline]
    fn add_input(&self, acc: &mut T, input: &T) {
        *acc += *input;
    }
    fn merge_accumulators(&self, acc: &mut T, other: T) {
        *acc += other;
    }
    fn extract_output(&self, acc: T) -> T {
        acc
    }
}

/// Sum of numbers.
#[derive(Debug, Clone, Copy)]
pub struct Sum;

impl Sum {
    /// The [`CombineFn`].
    pub fn of<T: Number>() -> SumFn<T> {
        SumFn(PhantomData)
    }
    /// Sum of the whole collection (0 when empty).
    pub fn globally<T: Number>() -> CombineGlobally<SumFn<T>> {
        CombineGlobally(Self::of())
    }
    /// Sum per key.
    pub fn per_key<T: Number>() -> CombinePerKey<SumFn<T>> {
        CombinePerKey(Self::of())
    }
}

/// Keeps the smallest (`MAX == false`) or largest value.
#[derive(Debug)]
pub struct ExtremumFn<T, const MAX: bool>(PhantomData<fn() -> T>);

impl<T, const MAX: bool> Clone for ExtremumFn<T, MAX> {
    fn clone(&self) -> Self {
        ExtremumFn(PhantomData)
    }
}

impl<T: Element + PartialOrd, const MAX: bool> CombineFn for ExtremumFn<T, MAX> {
    type In = T;
    type Acc = Option<T>;
    type Out = T;
    fn create_accumulator(&self) -> Option<T> {
        None
    }
    #[inline]
    fn add_input(&self, acc: &mut Option<T>, input: &T) {
        let better = match acc {
            None => true,
            Some(a) => {
                if MAX {
                    input > a
                } else {
                    input < a
                }
            }
        };
        if better {
            *acc = Some(input.clone());
        }
    }
    fn merge_accumulators(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            self.add_input(acc, &o);
        }
    }
    fn extract_output(&self, acc: Option<T>) -> T {
        match acc {
            Some(v) => v,
            None => panic!("min/max of no elements"),
        }
    }
    fn empty_output(&self) -> Option<T> {
        None
    }
}

/// Minimum; combining an empty collection globally outputs nothing.
#[derive(Debug, Clone, Copy)]
pub struct Min;

/// Maximum; combining an empty collection globally outputs nothing.
#[derive(Debug, Clone, Copy)]
pub struct Max;

impl Min {
    /// The [`CombineFn`].
    pub fn of<T: Element + PartialOrd>() -> ExtremumFn<T, false> {
        ExtremumFn(PhantomData)
    }
    /// Minimum of the whole collection.
    pub fn globally<T: Element + PartialOrd>() -> CombineGlobally<ExtremumFn<T, false>> {
        CombineGlobally(Self::of())
    }
    /// Minimum per key.
    pub fn per_key<T: Element + PartialOrd>() -> CombinePerKey<ExtremumFn<T, false>> {
        CombinePerKey(Self::of())
    }
}

impl Max {
    /// The [`CombineFn`].
    pub fn of<T: Element + PartialOrd>() -> ExtremumFn<T, true> {
        ExtremumFn(PhantomData)
    }
    /// Maximum of the whole collection.
    pub fn globally<T: Element + PartialOrd>() -> CombineGlobally<ExtremumFn<T, true>> {
        CombineGlobally(Self::of())
    }
    /// Maximum per key.
    pub fn per_key<T: Element + PartialOrd>() -> CombinePerKey<ExtremumFn<T, true>> {
        CombinePerKey(Self::of())
    }
}

/// Arithmetic mean as `f64`.
#[derive(Debug)]
pub struct MeanFn<T>(PhantomData<fn() -> T>);

impl<T> Clone for MeanFn<T> {
    fn clone(&self) -> Self {
        MeanFn(PhantomData)
    }
}

impl<T: Number> CombineFn for MeanFn<T> {
    type In = T;
    type Acc = (f64, i64);
    type Out = f64;
    fn create_accumulator(&self) -> (f64, i64) {
        (0.0, 0)
    }
    #[inline]
    fn add_input(&self, acc: &mut (f64, i64), input: &T) {
        acc.0 += input.to_f64();
        acc.1 += 1;
    }
    fn merge_accumulators(&self, acc: &mut (f64, i64), other: (f64, i64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn extract_output(&self, acc: (f64, i64)) -> f64 {
        if acc.1 == 0 {
            f64::NAN
        } else {
            acc.0 / acc.1 as f64
        }
    }
}

/// Mean (NaN for an empty collection).
#[derive(Debug, Clone, Copy)]
pub struct Mean;

impl Mean {
    /// The [`CombineFn`].
    pub fn of<T: Number>() -> MeanFn<T> {
        MeanFn(PhantomData)
    }
    /// Mean of the whole collection.
    pub fn globally<T: Number>() -> CombineGlobally<MeanFn<T>> {
        CombineGlobally(Self::of())
    }
    /// Mean per key.
    pub fn per_key<T: Number>() -> CombinePerKey<MeanFn<T>> {
        CombinePerKey(Self::of())
    }
}

/// Counts inputs.
#[derive(Debug)]
pub struct CountFn<T>(PhantomData<fn() -> T>);

impl<T> Clone for CountFn<T> {
    fn clone(&self) -> Self {
        CountFn(PhantomData)
    }
}

impl<T: Element> CombineFn for CountFn<T> {
    type In = T;
    type Acc = i64;
    type Out = i64;
    fn create_accumulator(&self) -> i64 {
        0
    }
    #[inline]
    fn add_input(&self, acc: &mut i64, _: &T) {
        *acc += 1;
    }
    fn merge_accumulators(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
    fn extract_output(&self, acc: i64) -> i64 {
        acc
    }
}

/// Counting: elements, values per key, or occurrences of each element.
#[derive(Debug, Clone, Copy)]
pub struct Count;

/// [`Count::per_element`]: `(element, occurrences)`.
#[derive(Debug, Clone, Copy)]
pub struct CountPerElement;

impl Count {
    /// The [`CombineFn`].
    pub fn of<T: Element>() -> CountFn<T> {
        CountFn(PhantomData)
    }
    /// Number of elements (0 when empty).
    pub fn globally<T: Element>() -> CombineGlobally<CountFn<T>> {
        CombineGlobally(Self::of())
    }
    /// Number of values per key.
    pub fn per_key<T: Element>() -> CombinePerKey<CountFn<T>> {
        CombinePerKey(Self::of())
    }
    /// Occurrences of each distinct element.
    pub fn per_element() -> CountPerElement {
        CountPerElement
    }
}

impl<T: Element> PTransform<PCollection<T>> for CountPerElement {
    type Output = PCollection<(T, i64)>;
    fn expand(self, input: &PCollection<T>) -> Self::Output {
        input
            .owned_map("PairWithUnit", |v: T| (v, ()))
            .combine_per_key("CountPerKey", CountFn::<()>(PhantomData))
    }
}

impl<T: Element> PCollection<T> {
    /// `Count.perElement`: each distinct element (by its encoding) with its
    /// number of occurrences.
    pub fn count_per_element(&self, label: &str) -> PCollection<(T, i64)> {
        self.apply(label, CountPerElement)
    }

    /// `Distinct`: each distinct element (by its encoding) once per window.
    pub fn distinct(&self, label: &str) -> PCollection<T> {
        self.apply(label, Distinct)
    }
}

/// Removes duplicates (by encoding), once per window.
#[derive(Debug, Clone, Copy)]
pub struct Distinct;

#[derive(Debug, Clone, Copy)]
struct UnitFn;

impl CombineFn for UnitFn {
    type In = ();
    type Acc = ();
    type Out = ();
    fn create_accumulator(&self) {}
    fn add_input(&self, _: &mut (), _: &()) {}
    fn merge_accumulators(&self, _: &mut (), _: ()) {}
    fn extract_output(&self, _: ()) {}
}

impl<T: Element> PTransform<PCollection<T>> for Distinct {
    type Output = PCollection<T>;
    fn expand(self, input: &PCollection<T>) -> Self::Output {
        input
            .owned_map("PairWithUnit", |v: T| (v, ()))
            .combine_per_key("CombinePerKey", UnitFn)
            .keys("Keys")
    }
}

/// The `n` largest (or smallest) elements, in order.
#[derive(Debug)]
pub struct TopFn<T> {
    n: usize,
    largest: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TopFn<T> {
    fn clone(&self) -> Self {
        TopFn {
            n: self.n,
            largest: self.largest,
            _t: PhantomData,
        }
    }
}

impl<T: Element + PartialOrd> TopFn<T> {
    fn order(&self, a: &T, b: &T) -> Ordering {
        let o = a.partial_cmp(b).unwrap_or(Ordering::Equal);
        if self.largest { o.reverse() } else { o }
    }

    fn compact(&self, acc: &mut Vec<T>) {
        acc.sort_by(|a, b| self.order(a, b));
        acc.truncate(self.n);
    }
}

impl<T: Element + PartialOrd> CombineFn for TopFn<T> {
    type In = T;
    type Acc = Vec<T>;
    type Out = Vec<T>;
    fn create_accumulator(&self) -> Vec<T> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<T>, input: &T) {
        if self.n == 0 {
            return;
        }
        if acc.len() >= self.n {
            // Full and sorted: skip inputs that cannot enter.
            if let Some(worst) = acc.last() {
                if acc.len() == self.n && self.order(input, worst) != Ordering::Less {
                    return;
                }
            }
        }
        acc.push(input.clone());
        if acc.len() >= self.n {
            self.compact(acc);
        }
    }
    fn merge_accumulators(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
        self.compact(acc);
    }
    fn extract_output(&self, mut acc: Vec<T>) -> Vec<T> {
        self.compact(&mut acc);
        acc
    }
}

/// The `n` largest or smallest elements, ordered best first.
#[derive(Debug, Clone, Copy)]
pub struct Top;

impl Top {
    /// The [`CombineFn`] keeping the `n` largest.
    pub fn largest_fn<T: Element + PartialOrd>(n: usize) -> TopFn<T> {
        TopFn {
            n,
            largest: true,
            _t: PhantomData,
        }
    }
    /// The [`CombineFn`] keeping the `n` smallest.
    pub fn smallest_fn<T: Element + PartialOrd>(n: usize) -> TopFn<T> {
        TopFn {
            n,
            largest: false,
            _t: PhantomData,
        }
    }
    /// The `n` largest elements, largest first.
    pub fn largest<T: Element + PartialOrd>(n: usize) -> CombineGlobally<TopFn<T>> {
        CombineGlobally(Self::largest_fn(n))
    }
    /// The `n` smallest elements, smallest first.
    pub fn smallest<T: Element + PartialOrd>(n: usize) -> CombineGlobally<TopFn<T>> {
        CombineGlobally(Self::smallest_fn(n))
    }
    /// The `n` largest values per key.
    pub fn largest_per_key<T: Element + PartialOrd>(n: usize) -> CombinePerKey<TopFn<T>> {
        CombinePerKey(Self::largest_fn(n))
    }
    /// The `n` smallest values per key.
    pub fn smallest_per_key<T: Element + PartialOrd>(n: usize) -> CombinePerKey<TopFn<T>> {
        CombinePerKey(Self::smallest_fn(n))
    }
}

/// Collects all inputs into a list (in no particular order).
#[derive(Debug)]
pub struct ToListFn<T>(PhantomData<fn() -> T>);

impl<T> Clone for ToListFn<T> {
    fn clone(&self) -> Self {
        ToListFn(PhantomData)
    }
}

impl<T: Element> CombineFn for ToListFn<T> {
    type In = T;
    type Acc = Vec<T>;
    type Out = Vec<T>;
    fn create_accumulator(&self) -> Vec<T> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<T>, input: &T) {
        acc.push(input.clone());
    }
    fn merge_accumulators(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
    }
    fn extract_output(&self, acc: Vec<T>) -> Vec<T> {
        acc
    }
}

/// All elements as one list (globally) or per key.
#[derive(Debug, Clone, Copy)]
pub struct ToList;

impl ToList {
    /// The [`CombineFn`].
    pub fn of<T: Element>() -> ToListFn<T> {
        ToListFn(PhantomData)
    }
    /// The whole collection as one list (empty list when empty).
    pub fn globally<T: Element>() -> CombineGlobally<ToListFn<T>> {
        CombineGlobally(Self::of())
    }
    /// The values of each key as one list.
    pub fn per_key<T: Element>() -> CombinePerKey<ToListFn<T>> {
        CombinePerKey(Self::of())
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9E37_79B9_7F4A_7C15);
    h.finish() | 1
}

fn next_random() -> u64 {
    RNG.with(|r| {
        // xorshift64*
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A uniform random sample of `n` elements (reservoir sampling by random
/// priorities: the `n` inputs with the largest priorities are kept).
#[derive(Debug)]
pub struct SampleFn<T> {
    n: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for SampleFn<T> {
    fn clone(&self) -> Self {
        SampleFn {
            n: self.n,
            _t: PhantomData,
        }
    }
}

impl<T: Element> SampleFn<T> {
    fn compact(&self, acc: &mut Vec<(u64, T)>) {
        acc.sort_by_key(|b| std::cmp::Reverse(b.0));
        acc.truncate(self.n);
    }
}

impl<T: Element> CombineFn for SampleFn<T> {
    type In = T;
    type Acc = Vec<(u64, T)>;
    type Out = Vec<T>;
    fn create_accumulator(&self) -> Vec<(u64, T)> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<(u64, T)>, input: &T) {
        if self.n == 0 {
            return;
        }
        let priority = next_random();
        if acc.len() == self.n {
            if let Some(min) = acc.last() {
                if priority <= min.0 {
                    return;
                }
            }
        }
        acc.push((priority, input.clone()));
        if acc.len() >= self.n {
            self.compact(acc);
        }
    }
    fn merge_accumulators(&self, acc: &mut Vec<(u64, T)>, other: Vec<(u64, T)>) {
        acc.extend(other);
        self.compact(acc);
    }
    fn extract_output(&self, mut acc: Vec<(u64, T)>) -> Vec<T> {
        self.compact(&mut acc);
        acc.into_iter().map(|(_, v)| v).collect()
    }
}

/// Random samples of fixed size.
#[derive(Debug, Clone, Copy)]
pub struct Sample;

impl Sample {
    /// The [`CombineFn`].
    pub fn of<T: Element>(n: usize) -> SampleFn<T> {
        SampleFn { n, _t: PhantomData }
    }
    /// `n` elements chosen uniformly at random (all of them if fewer).
    pub fn fixed_size_globally<T: Element>(n: usize) -> CombineGlobally<SampleFn<T>> {
        CombineGlobally(Self::of(n))
    }
    /// `n` values per key chosen uniformly at random.
    pub fn fixed_size_per_key<T: Element>(n: usize) -> CombinePerKey<SampleFn<T>> {
        CombinePerKey(Self::of(n))
    }
}
