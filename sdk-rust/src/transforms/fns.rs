//! The functions `map` and `flat_map` accept: closures taking the element
//! by reference (`|x: &T| ...`) or by value (`|x: T| ...`).
//!
//! By reference is Beam's usual contract: the element stays with the
//! executor, and a panic report shows it. By value hands the element over,
//! so a function can modify and return it (`|mut v: Vec<u8>| { v[0] = 1; v }`)
//! or move its parts out without cloning; a panic report then says that the
//! element was moved into the function instead of showing it, because
//! rendering every element in case of a panic would cost more than the clone
//! it saves.
//!
//! The kind is inferred from the closure's parameter type, so annotate it:
//! `|x: &T|` or `|x: T|`. The marker types [`ByRef`] and [`ByValue`] only
//! appear in signatures.

/// Marker: the function takes `&T`.
#[derive(Debug, Clone, Copy)]
pub enum ByRef {}

/// Marker: the function takes `T` by value.
#[derive(Debug, Clone, Copy)]
pub enum ByValue {}

mod sealed {
    pub trait Sealed<T, U, Kind> {}
    impl<T, U, F: Fn(&T) -> U> Sealed<T, U, super::ByRef> for F {}
    impl<T, U, F: Fn(T) -> U> Sealed<T, U, super::ByValue> for F {}
}

/// A `Map` function from `T` to `U`: `Fn(&T) -> U` ([`ByRef`]) or
/// `Fn(T) -> U` ([`ByValue`]). Implemented for closures and functions; not
/// implementable outside this crate.
pub trait MapFn<T, U, Kind>: sealed::Sealed<T, U, Kind> + Send + Sync + 'static {
    /// Whether the element is moved into the function.
    #[doc(hidden)]
    const BY_VALUE: bool;
    /// Applies the function to `v`. By reference, `v` is parked in `slot`
    /// during the call so a panic report can show it.
    #[doc(hidden)]
    fn call(&self, v: T, slot: &mut Option<T>) -> U;
}

/// A `FlatMap` function from `T` to an iterable `I`: `Fn(&T) -> I`
/// ([`ByRef`]) or `Fn(T) -> I` ([`ByValue`]). Implemented for closures and
/// functions; not implementable outside this crate.
pub trait FlatMapFn<T, I, Kind>: sealed::Sealed<T, I, Kind> + Send + Sync + 'static {
    /// Whether the element is moved into the function.
    #[doc(hidden)]
    const BY_VALUE: bool;
    /// Applies the function to `v` (see [`MapFn::call`]).
    #[doc(hidden)]
    fn call(&self, v: T, slot: &mut Option<T>) -> I;
}

impl<T, U, F: Fn(&T) -> U + Send + Sync + 'static> MapFn<T, U, ByRef> for F {
    const BY_VALUE: bool = false;
    #[inline(always)]
    fn call(&self, v: T, slot: &mut Option<T>) -> U {
        let v = slot.insert(v);
        let u = self(v);
        *slot = None;
        u
    }
}

impl<T, U, F: Fn(T) -> U + Send + Sync + 'static> MapFn<T, U, ByValue> for F {
    const BY_VALUE: bool = true;
    #[inline(always)]
    fn call(&self, v: T, _: &mut Option<T>) -> U {
        self(v)
    }
}

impl<T, I, F: Fn(&T) -> I + Send + Sync + 'static> FlatMapFn<T, I, ByRef> for F {
    const BY_VALUE: bool = false;
    #[inline(always)]
    fn call(&self, v: T, slot: &mut Option<T>) -> I {
        self(slot.insert(v))
    }
}

impl<T, I, F: Fn(T) -> I + Send + Sync + 'static> FlatMapFn<T, I, ByValue> for F {
    const BY_VALUE: bool = true;
    #[inline(always)]
    fn call(&self, v: T, _: &mut Option<T>) -> I {
        self(v)
    }
}
