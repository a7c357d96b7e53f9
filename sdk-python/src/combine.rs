//! Combining-table updates at C speed for the precombine of Python's
//! built-in `sum` (`CombinePerKey(sum)`, wordcount's shape).
//!
//! The Python loop `for k, v in pairs: t[k] = t.get(k, 0) + v` costs
//! 115–160 ns per pair in the interpreter; the same dictionary operations
//! from here ([`sum_into`]) cost about 67 ns (a word key and an int value;
//! most of it the dict lookup, which hashes each fresh string and reaches
//! the key object and the int object it holds, both somewhere on the heap).
//! [`SumTable`] keeps the common case out of Python objects altogether:
//! `str` and `int` keys and `int`/`float` sums in one flat Rust table, so a
//! pair costs a fast hash of the key's UTF-8 (an ASCII `str`'s own
//! bytes) and one probe.
//! The semantics are the loop's: values add with `+` starting from `0`.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyTuple};

unsafe extern "C" {
    // In the stable ABI from Python 3.10, and exported with this signature
    // by 3.9 too (pyo3 declares it only for 3.10+ under abi3-py39).
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut ffi::PyObject,
        size: *mut ffi::Py_ssize_t,
    ) -> *const std::ffi::c_char;
}

/// Adds each `(key, value)` of `pairs` into `table`, in order: `table[key]
/// = table.get(key, 0) + value`. Returns how many pairs it consumed: all of
/// them, or fewer when one is not a 2-tuple or its addition or hashing
/// raises; the caller runs its own loop from there, so that pair fails
/// with Python's own error (the table holds every pair before it).
#[pyfunction]
pub fn sum_into(table: &Bound<'_, PyDict>, pairs: &Bound<'_, PyList>) -> usize {
    let zero = PyInt::new(table.py(), 0);
    for (i, item) in pairs.iter().enumerate() {
        // SAFETY: `table` and `item` are live objects, and the GIL is held.
        let added = unsafe { add_plain_pair(table.as_ptr(), item.as_ptr(), zero.as_ptr()) };
        match added {
            Some(true) => {}
            Some(false) => {
                // Python's own loop raises on this pair.
                let _ = PyErr::take(table.py());
                return i;
            }
            None => {
                if add_pair(table, &item, &zero).is_err() {
                    return i;
                }
            }
        }
    }
    pairs.len()
}

/// The common case without reference counting: a 2-tuple whose key is an
/// exact `str` or `int` and whose value is an exact `int` or `float`, so no
/// Python code runs (hashing, comparing, adding) while references are
/// borrowed. `None` for other pairs; `Some(false)` if a call failed (its
/// error set).
///
/// # Safety
/// `table` must be a dict and `item` a live object; the GIL must be held.
unsafe fn add_plain_pair(
    table: *mut ffi::PyObject,
    item: *mut ffi::PyObject,
    zero: *mut ffi::PyObject,
) -> Option<bool> {
    // SAFETY: the caller's contract; every pointer below is checked or is a
    // borrowed reference owned by `item` (or `table`) for the whole call.
    unsafe {
        let (key, value) = pair_items(item)?;
        let plain_key = ffi::PyUnicode_CheckExact(key) != 0 || ffi::PyLong_CheckExact(key) != 0;
        let plain_value = ffi::PyLong_CheckExact(value) != 0 || ffi::PyFloat_CheckExact(value) != 0;
        if !plain_key || !plain_value {
            return None;
        }
        let acc = ffi::PyDict_GetItemWithError(table, key);
        if acc.is_null() && !ffi::PyErr_Occurred().is_null() {
            return Some(false);
        }
        let base = if acc.is_null() { zero } else { acc };
        if ffi::PyLong_CheckExact(base) == 0 && ffi::PyFloat_CheckExact(base) == 0 {
            return None;
        }
        let sum = ffi::PyNumber_Add(base, value);
        if sum.is_null() {
            return Some(false);
        }
        let set = ffi::PyDict_SetItem(table, key, sum);
        ffi::Py_DecRef(sum);
        Some(set == 0)
    }
}

fn add_pair(
    table: &Bound<'_, PyDict>,
    item: &Bound<'_, PyAny>,
    zero: &Bound<'_, PyInt>,
) -> PyResult<()> {
    let pair = item.cast_exact::<PyTuple>()?;
    if pair.len() != 2 {
        return Err(pyo3::exceptions::PyValueError::new_err("not a pair"));
    }
    let key = pair.get_borrowed_item(0)?;
    let value = pair.get_borrowed_item(1)?;
    let sum = match table.get_item(key)? {
        Some(acc) => acc.add(value)?,
        None => zero.add(value)?,
    };
    table.set_item(key, sum)
}

/// A precombine table of `CombinePerKey(sum)` for the pairs Python's own
/// loop would add without running Python code: an exact `str` or `int`
/// key (an `int` within 64 bits) and an exact `int` (within 64 bits) or
/// `float` value, with sums that stay within 64 bits. [`SumTable::add`]
/// stops at the first other pair; the caller then moves the table into
/// its dict ([`SumTable::drain_into`]) and goes on there, so every pair is
/// added as Python would add it, in the same order per key.
///
/// Keys compare as Python's do for these types: two `str`s by their code
/// points, two `int`s by value, a `str` never equal to an `int`.
#[pyclass(module = "oxbeam._oxbeam")]
pub struct SumTable {
    slots: HashTable<Slot>,
    /// The bytes (see [`KeyKind`]) of keys longer than [`INLINE`], one
    /// after another; a slot holds its key's start.
    keys: Vec<u8>,
    hasher: DefaultHashBuilder,
}

/// A key and its sum, in 32 bytes (half a cache line): a pair's lookup
/// waits on this memory more than on anything it computes, so a key of up
/// to [`INLINE`] bytes (most words, every `int`) is in the slot itself.
struct Slot {
    /// The sum's bits: an `i64`, or an `f64` if [`FLOAT`] is set in `shape`.
    acc: u64,
    /// The key's hash's low bits: a probe of another key mostly stops here.
    hash: u32,
    /// The key's length in bytes, [`INT`] for an `int` key, [`FLOAT`] for
    /// a `float` sum.
    shape: u32,
    /// The key's bytes if it has at most [`INLINE`]; else the start of its
    /// bytes in the table's `keys` (the first four, native order).
    key: [u8; INLINE],
}

/// The longest key a slot holds itself.
const INLINE: usize = 16;
const FLOAT: u32 = 1 << 31;
const INT: u32 = 1 << 30;
/// Longer keys are left to Python.
const MAX_KEY_LEN: u32 = INT - 1;

impl Slot {
    /// `shape` without the sum's type: the key's kind and length.
    fn key_shape(kind: KeyKind, len: u32) -> u32 {
        len | if kind == KeyKind::Int { INT } else { 0 }
    }

    fn kind(&self) -> KeyKind {
        if self.shape & INT != 0 {
            KeyKind::Int
        } else {
            KeyKind::Str
        }
    }

    /// The key's bytes (`keys`: the table's, for a long key).
    fn key<'a>(&'a self, keys: &'a [u8]) -> &'a [u8] {
        let len = (self.shape & MAX_KEY_LEN) as usize;
        if len <= INLINE {
            &self.key[..len]
        } else {
            let start = u32::from_ne_bytes([self.key[0], self.key[1], self.key[2], self.key[3]]);
            &keys[start as usize..start as usize + len]
        }
    }
}

/// How a key's bytes hold it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum KeyKind {
    /// A `str`: its UTF-8 (equal strings, equal bytes).
    Str,
    /// An `int`: its eight bytes, little-endian.
    Int,
}

#[derive(Clone, Copy)]
enum Acc {
    Int(i64),
    Float(f64),
}

impl Acc {
    /// `self + value` as Python adds an `int` or `float` to one; `None`
    /// when an `int` sum leaves 64 bits.
    fn add(self, value: Acc) -> Option<Acc> {
        Some(match (self, value) {
            (Acc::Int(a), Acc::Int(b)) => Acc::Int(a.checked_add(b)?),
            // Python converts the int to the nearest float (ties to even),
            // as `as` does.
            (Acc::Int(a), Acc::Float(b)) => Acc::Float(a as f64 + b),
            (Acc::Float(a), Acc::Int(b)) => Acc::Float(a + b as f64),
            (Acc::Float(a), Acc::Float(b)) => Acc::Float(a + b),
        })
    }

    fn of(slot: &Slot) -> Acc {
        if slot.shape & FLOAT != 0 {
            Acc::Float(f64::from_bits(slot.acc))
        } else {
            Acc::Int(slot.acc as i64)
        }
    }

    /// The slot's `acc` for it, and its bit in `shape`.
    fn bits(self) -> (u64, u32) {
        match self {
            Acc::Int(i) => (i as u64, 0),
            Acc::Float(f) => (f.to_bits(), FLOAT),
        }
    }
}

#[pymethods]
impl SumTable {
    #[new]
    fn new() -> Self {
        SumTable {
            slots: HashTable::new(),
            keys: Vec::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Adds each `(key, value)` of `pairs` in order (with `count`, 1 for
    /// each pair, whatever its value: the precombine of `Count.PerKey`);
    /// returns how many it added: all, or fewer when it reached one it does
    /// not take (see the type), which it leaves, with those after it, to
    /// the caller.
    #[pyo3(signature = (pairs, count=false))]
    fn add(&mut self, pairs: &Bound<'_, PyList>, count: bool) -> usize {
        for (i, item) in pairs.iter().enumerate() {
            // SAFETY: `item` is a live object and the GIL is held.
            if unsafe { !self.add_pair(item.as_ptr(), count) } {
                return i;
            }
        }
        pairs.len()
    }

    fn __len__(&self) -> usize {
        self.slots.len()
    }

    /// Its `(key, sum)` pairs, as Python objects; empties it.
    fn take_items<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        let keys = std::mem::take(&mut self.keys);
        for slot in std::mem::take(&mut self.slots) {
            let (key, acc) = slot_objects(py, &keys, &slot)?;
            out.append(PyTuple::new(py, [key, acc])?)?;
        }
        Ok(out)
    }

    /// Adds its sums into `table` (`table[key] = table.get(key, 0) +
    /// sum`); empties it.
    fn drain_into(&mut self, table: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = table.py();
        let zero = PyInt::new(py, 0);
        let keys = std::mem::take(&mut self.keys);
        for slot in std::mem::take(&mut self.slots) {
            let (key, acc) = slot_objects(py, &keys, &slot)?;
            let sum = match table.get_item(&key)? {
                Some(a) => a.add(acc)?,
                None => zero.add(acc)?,
            };
            table.set_item(key, sum)?;
        }
        Ok(())
    }
}

impl SumTable {
    /// Adds one pair (its value, or 1 with `count`) if it is of the kind the
    /// table takes; `false` (and nothing changed, no Python error set)
    /// otherwise.
    ///
    /// # Safety
    /// `item` must be a live object; the GIL must be held.
    unsafe fn add_pair(&mut self, item: *mut ffi::PyObject, count: bool) -> bool {
        // SAFETY: the caller's contract; the tuple's items are borrowed
        // references it owns for the whole call, and no Python code runs.
        unsafe {
            let Some((key, value)) = pair_items(item) else {
                return false;
            };
            let value = if count {
                Acc::Int(1)
            } else {
                match plain_number(value) {
                    Some(v) => v,
                    None => return false,
                }
            };
            if ffi::PyUnicode_CheckExact(key) != 0 {
                // An ASCII `str` gives its own bytes (no copy); any other
                // caches its UTF-8 on itself. One with a lone surrogate has
                // no UTF-8 and is left to Python.
                let mut n: ffi::Py_ssize_t = 0;
                let data = PyUnicode_AsUTF8AndSize(key, &mut n);
                if data.is_null() {
                    ffi::PyErr_Clear();
                    return false;
                }
                let bytes = std::slice::from_raw_parts(data.cast::<u8>(), n as usize);
                self.add_key(KeyKind::Str, bytes, value)
            } else if ffi::PyLong_CheckExact(key) != 0 {
                let mut overflow = 0;
                let k = ffi::PyLong_AsLongLongAndOverflow(key, &mut overflow);
                if overflow != 0 || (k == -1 && !ffi::PyErr_Occurred().is_null()) {
                    ffi::PyErr_Clear();
                    return false;
                }
                self.add_key(KeyKind::Int, &k.to_le_bytes(), value)
            } else {
                false
            }
        }
    }

    /// Adds `value` at `key` (bytes as [`KeyKind`] says); `false` if the sum leaves 64
    /// bits (nothing changed).
    fn add_key(&mut self, kind: KeyKind, key: &[u8], value: Acc) -> bool {
        let Some(len) = u32::try_from(key.len()).ok().filter(|&n| n <= MAX_KEY_LEN) else {
            return false;
        };
        let hash = self.hasher.hash_one((kind, key));
        let tag = hash as u32;
        let shape = Slot::key_shape(kind, len);
        let keys = &self.keys;
        let found = self.slots.find_mut(hash, |s| {
            s.hash == tag && s.shape & !FLOAT == shape && s.key(keys) == key
        });
        if let Some(slot) = found {
            return match Acc::of(slot).add(value) {
                Some(sum) => {
                    let (acc, float) = sum.bits();
                    slot.acc = acc;
                    slot.shape = shape | float;
                    true
                }
                None => false,
            };
        }
        let Some(sum) = Acc::Int(0).add(value) else {
            return false;
        };
        let mut inline = [0u8; INLINE];
        if key.len() <= INLINE {
            inline[..key.len()].copy_from_slice(key);
        } else {
            let Some(start) = u32::try_from(self.keys.len())
                .ok()
                .filter(|s| s.checked_add(len).is_some())
            else {
                return false;
            };
            inline[..4].copy_from_slice(&start.to_ne_bytes());
            self.keys.extend_from_slice(key);
        }
        let (acc, float) = sum.bits();
        let hasher = &self.hasher;
        let all_keys = &self.keys;
        self.slots.insert_unique(
            hash,
            Slot {
                acc,
                hash: tag,
                shape: shape | float,
                key: inline,
            },
            |s| hasher.hash_one((s.kind(), s.key(all_keys))),
        );
        true
    }
}

/// A slot's key (its bytes in `keys`) and sum as Python objects.
fn slot_objects<'py>(
    py: Python<'py>,
    keys: &[u8],
    slot: &Slot,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let bytes = slot.key(keys);
    let key = match slot.kind() {
        KeyKind::Int => {
            let mut le = [0u8; 8];
            le.copy_from_slice(bytes);
            i64::from_le_bytes(le).into_pyobject(py)?.into_any()
        }
        // SAFETY: `bytes` is a live slice of `len` bytes, valid UTF-8 (it
        // came from a `str`), and the GIL is held; the result is a new
        // reference (or null with an error set), which
        // `from_owned_ptr_or_err` takes.
        KeyKind::Str => unsafe {
            let s = ffi::PyUnicode_DecodeUTF8(
                bytes.as_ptr().cast(),
                bytes.len() as ffi::Py_ssize_t,
                std::ptr::null(),
            );
            Bound::from_owned_ptr_or_err(py, s)?
        },
    };
    let acc = match Acc::of(slot) {
        Acc::Int(i) => i.into_pyobject(py)?.into_any(),
        Acc::Float(f) => f.into_pyobject(py)?.into_any(),
    };
    Ok((key, acc))
}

/// The key and value of `item` if it is an exact 2-tuple (borrowed
/// references, owned by `item`).
///
/// # Safety
/// `item` must be a live object; the GIL must be held.
unsafe fn pair_items(item: *mut ffi::PyObject) -> Option<(*mut ffi::PyObject, *mut ffi::PyObject)> {
    // SAFETY: the caller's contract; the items are read only once `item`
    // is known to be a tuple of two.
    unsafe {
        if ffi::PyTuple_CheckExact(item) == 0 || ffi::PyTuple_Size(item) != 2 {
            return None;
        }
        Some((ffi::PyTuple_GetItem(item, 0), ffi::PyTuple_GetItem(item, 1)))
    }
}

/// An exact `int` within 64 bits or an exact `float`, as an [`Acc`].
///
/// # Safety
/// `value` must be a live object; the GIL must be held.
unsafe fn plain_number(value: *mut ffi::PyObject) -> Option<Acc> {
    // SAFETY: the caller's contract.
    unsafe {
        if ffi::PyLong_CheckExact(value) != 0 {
            let mut overflow = 0;
            let v = ffi::PyLong_AsLongLongAndOverflow(value, &mut overflow);
            if overflow != 0 || (v == -1 && !ffi::PyErr_Occurred().is_null()) {
                ffi::PyErr_Clear();
                return None;
            }
            Some(Acc::Int(v))
        } else if ffi::PyFloat_CheckExact(value) != 0 {
            Some(Acc::Float(ffi::PyFloat_AsDouble(value)))
        } else {
            None
        }
    }
}
