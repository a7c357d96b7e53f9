//! The guest half of ABI v1: arenas, the batch loops the export macros call,
//! and the runtime exports (`oxbeam_abi_version`, `oxbeam_alloc`,
//! `oxbeam_configure`, `oxbeam_last_error`). See `wasm/ABI.md`.
//!
//! The loops take explicit buffers so they are testable on any target; only
//! [`call`] and the exports touch the module's globals.

use std::cell::UnsafeCell;
use std::fmt::Display;

/// The ABI version this crate implements.
pub const ABI_VERSION: i32 = 1;
/// Key length meaning "the element has no key" (its coder is not a kv).
pub const NO_KEY: u32 = u32::MAX;
/// Accumulator length meaning "no accumulator yet: create one".
pub const NO_ACCUMULATOR: u32 = u32::MAX;
/// Batch header: element count, then the cursor the guest updates.
pub const HEADER_LEN: usize = 8;
/// Combine op: add inputs to an accumulator (or a new one).
pub const OP_ADD_INPUTS: i32 = 0;
/// Combine op: merge accumulators.
pub const OP_MERGE_ACCUMULATORS: i32 = 1;
/// Combine op: extract the output of an accumulator.
pub const OP_EXTRACT_OUTPUT: i32 = 2;
/// Combine op: add inputs to a new accumulator and extract its output.
pub const OP_ADD_INPUTS_AND_EXTRACT: i32 = 3;

/// What a UDF closure may return: `()` or `Result<(), E: Display>`.
pub trait UdfResult {
    /// The error message, if the call failed.
    fn into_result(self) -> Result<(), String>;
}

impl UdfResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> UdfResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// What a filter closure may return: `bool` or `Result<bool, E: Display>`.
pub trait FilterResult {
    /// Keep the element?
    fn into_keep(self) -> Result<bool, String>;
}

impl FilterResult for bool {
    fn into_keep(self) -> Result<bool, String> {
        Ok(self)
    }
}

impl<E: Display> FilterResult for Result<bool, E> {
    fn into_keep(self) -> Result<bool, String> {
        self.map_err(|e| e.to_string())
    }
}

/// A window of event time, as the host passes it to DoFns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The global window.
    Global,
    /// `[start, end)` in milliseconds.
    Interval {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
    },
}

/// One element as a DoFn sees it.
#[derive(Clone, Copy, Debug)]
pub struct Element<'a> {
    /// Index of the element in its batch.
    pub index: u32,
    /// Event time, milliseconds since the epoch.
    pub timestamp: i64,
    /// The one window this call is for (elements in several windows are
    /// processed once per window).
    pub window: Window,
    /// For kv inputs, the key's outer-context encoding.
    pub key: Option<&'a [u8]>,
    /// The value's outer-context encoding (for kv inputs, the kv's value).
    pub value: &'a [u8],
}

/// Collects a flat-map's outputs for the current element.
pub struct Emitter<'a> {
    out: &'a mut Vec<u8>,
    index: u32,
    /// The batch's records: values cut from the input (a tokenizer's
    /// words) are copied from here.
    records: &'a [u8],
}

impl Emitter<'_> {
    /// Emits one output value.
    #[inline]
    pub fn emit(&mut self, value: &[u8]) {
        let out = &mut *self.out;
        // A short value inside the batch's records (a word of the input
        // line) goes as one fixed 16-byte copy, then a truncate: no call to
        // `memory.copy` (a host call in wasmtime) per word.
        let n = value.len();
        let at = (value.as_ptr() as usize).wrapping_sub(self.records.as_ptr() as usize);
        if n < 16
            && let Some(window) = self.records.get(at..).and_then(|r| r.first_chunk::<16>())
        {
            let mut record = [0u8; 24];
            record[..4].copy_from_slice(&self.index.to_le_bytes());
            record[4..8].copy_from_slice(&(n as u32).to_le_bytes());
            record[8..].copy_from_slice(window);
            let len = out.len();
            out.extend_from_slice(&record);
            out.truncate(len + 8 + n);
            return;
        }
        // One capacity check for the index, the length and the value.
        out.reserve(8 + value.len());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }

    /// Emits one output value written by `write` (no intermediate buffer).
    #[inline]
    pub fn emit_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        put_u32(self.out, self.index);
        framed(self.out, write);
    }
}

/// Collects a DoFn's outputs for the current element.
pub struct DoFnOutput<'a> {
    out: &'a mut Vec<u8>,
    index: u32,
    timestamp: i64,
}

impl DoFnOutput<'_> {
    /// Emits `value` (no key) at the input's timestamp.
    #[inline]
    pub fn emit(&mut self, value: &[u8]) {
        self.emit_at(self.timestamp, None, value);
    }

    /// Emits the kv `(key, value)` at the input's timestamp; for a kv
    /// output coder, `key` is the key's outer-context encoding.
    #[inline]
    pub fn emit_kv(&mut self, key: &[u8], value: &[u8]) {
        self.emit_at(self.timestamp, Some(key), value);
    }

    /// Emits an optional key and a value at `timestamp` (milliseconds).
    #[inline]
    pub fn emit_at(&mut self, timestamp: i64, key: Option<&[u8]>, value: &[u8]) {
        put_u32(self.out, self.index);
        self.out.extend_from_slice(&timestamp.to_le_bytes());
        match key {
            Some(k) => put_bytes(self.out, k),
            None => put_u32(self.out, NO_KEY),
        }
        put_bytes(self.out, value);
    }
}

/// A combine function over encoded values, as `oxbeam_combine!` exports it.
///
/// Accumulators cross the boundary encoded (the host may move them between
/// bundles and workers), so the fn says how to encode and decode them.
pub trait CombineFn {
    /// The in-memory accumulator.
    type Accumulator;
    /// A new, empty accumulator.
    fn create(&self) -> Self::Accumulator;
    /// Adds one input value (outer-context encoding).
    ///
    /// # Errors
    /// A message that fails the bundle (e.g. an undecodable input).
    fn add_input(&self, acc: &mut Self::Accumulator, value: &[u8]) -> Result<(), String>;
    /// Merges `other` into `acc`.
    fn merge(&self, acc: &mut Self::Accumulator, other: Self::Accumulator);
    /// Appends the output value (outer-context encoding).
    fn extract(&self, acc: Self::Accumulator, out: &mut Vec<u8>);
    /// Appends the accumulator's encoding.
    fn encode_accumulator(&self, acc: &Self::Accumulator, out: &mut Vec<u8>);
    /// Decodes an accumulator written by `encode_accumulator`.
    ///
    /// # Errors
    /// A message that fails the bundle.
    fn decode_accumulator(&self, bytes: &[u8]) -> Result<Self::Accumulator, String>;
}

// ------------------------------------------------------------ batch loops

/// Reads the records of a batch; never panics on malformed input.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!(
                "malformed batch from host: need {n} bytes, {} left",
                self.buf.len()
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    fn i64(&mut self) -> Result<i64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(a))
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()?;
        self.take(n as usize)
    }

    #[inline]
    fn opt_bytes(&mut self, none: u32) -> Result<Option<&'a [u8]>, String> {
        let n = self.u32()?;
        if n == none {
            Ok(None)
        } else {
            self.take(n as usize).map(Some)
        }
    }
}

#[inline]
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

/// Writes a `u32` length, then what `write` appends, patching the length.
#[inline]
fn framed<R>(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let r = write(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    r
}

/// Splits a batch into its count, the cursor slot and the records.
fn split_batch(input: &mut [u8]) -> Result<(u32, &mut [u8], &[u8]), String> {
    if input.len() < HEADER_LEN {
        return Err("malformed batch from host: no header".into());
    }
    let (header, records) = input.split_at_mut(HEADER_LEN);
    let count = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    Ok((count, &mut header[4..8], records))
}

#[inline]
fn set_cursor(cursor: &mut [u8], i: u32) {
    cursor.copy_from_slice(&i.to_le_bytes());
}

fn in_element(i: u32, e: String) -> String {
    format!("element {i}: {e}")
}

/// The MAP loop.
///
/// # Errors
/// The first failing element's message.
pub fn run_map<R: UdfResult>(
    input: &mut [u8],
    out: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], &mut Vec<u8>) -> R,
) -> Result<(), String> {
    let (count, cursor, records) = split_batch(input)?;
    let mut r = Reader { buf: records };
    for i in 0..count {
        set_cursor(cursor, i);
        let value = r.bytes()?;
        framed(out, |out| f(value, out).into_result()).map_err(|e| in_element(i, e))?;
    }
    Ok(())
}

/// The FLAT_MAP loop.
///
/// # Errors
/// The first failing element's message.
pub fn run_flat_map<R: UdfResult>(
    input: &mut [u8],
    out: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], &mut Emitter<'_>) -> R,
) -> Result<(), String> {
    let (count, cursor, records) = split_batch(input)?;
    let mut r = Reader { buf: records };
    for i in 0..count {
        set_cursor(cursor, i);
        let value = r.bytes()?;
        let mut emitter = Emitter {
            out,
            index: i,
            records,
        };
        f(value, &mut emitter)
            .into_result()
            .map_err(|e| in_element(i, e))?;
    }
    Ok(())
}

/// The FILTER loop: one byte per element, 1 to keep it.
///
/// # Errors
/// The first failing element's message.
pub fn run_filter<R: FilterResult>(
    input: &mut [u8],
    out: &mut Vec<u8>,
    mut f: impl FnMut(&[u8]) -> R,
) -> Result<(), String> {
    let (count, cursor, records) = split_batch(input)?;
    let mut r = Reader { buf: records };
    for i in 0..count {
        set_cursor(cursor, i);
        let value = r.bytes()?;
        let keep = f(value).into_keep().map_err(|e| in_element(i, e))?;
        out.push(u8::from(keep));
    }
    Ok(())
}

/// The DO_FN loop.
///
/// # Errors
/// The first failing element's message.
pub fn run_do_fn<R: UdfResult>(
    input: &mut [u8],
    out: &mut Vec<u8>,
    mut f: impl FnMut(&Element<'_>, &mut DoFnOutput<'_>) -> R,
) -> Result<(), String> {
    let (count, cursor, records) = split_batch(input)?;
    let mut r = Reader { buf: records };
    for i in 0..count {
        set_cursor(cursor, i);
        let timestamp = r.i64()?;
        let kind = r.u8()?;
        let start = r.i64()?;
        let end = r.i64()?;
        let window = match kind {
            0 => Window::Global,
            _ => Window::Interval { start, end },
        };
        let key = r.opt_bytes(NO_KEY)?;
        let value = r.bytes()?;
        let element = Element {
            index: i,
            timestamp,
            window,
            key,
            value,
        };
        let mut output = DoFnOutput {
            out,
            index: i,
            timestamp,
        };
        f(&element, &mut output)
            .into_result()
            .map_err(|e| in_element(i, e))?;
    }
    Ok(())
}

/// The COMBINE loop for one `op`.
///
/// # Errors
/// The first failing record's message, or an unknown op.
pub fn run_combine<C: CombineFn>(
    c: &C,
    op: i32,
    input: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let (count, cursor, records) = split_batch(input)?;
    let mut r = Reader { buf: records };
    for i in 0..count {
        set_cursor(cursor, i);
        let step = |r: &mut Reader<'_>, out: &mut Vec<u8>| -> Result<(), String> {
            match op {
                OP_ADD_INPUTS | OP_ADD_INPUTS_AND_EXTRACT => {
                    let mut acc = match r.opt_bytes(NO_ACCUMULATOR)? {
                        Some(b) => c.decode_accumulator(b)?,
                        None => c.create(),
                    };
                    let n = r.u32()?;
                    for _ in 0..n {
                        c.add_input(&mut acc, r.bytes()?)?;
                    }
                    if op == OP_ADD_INPUTS {
                        framed(out, |out| c.encode_accumulator(&acc, out));
                    } else {
                        framed(out, |out| c.extract(acc, out));
                    }
                }
                OP_MERGE_ACCUMULATORS => {
                    let n = r.u32()?;
                    let mut acc = c.create();
                    for _ in 0..n {
                        let other = c.decode_accumulator(r.bytes()?)?;
                        c.merge(&mut acc, other);
                    }
                    framed(out, |out| c.encode_accumulator(&acc, out));
                }
                OP_EXTRACT_OUTPUT => {
                    let acc = c.decode_accumulator(r.bytes()?)?;
                    framed(out, |out| c.extract(acc, out));
                }
                other => return Err(format!("unknown combine op {other}")),
            }
            Ok(())
        };
        step(&mut r, out).map_err(|e| in_element(i, e))?;
    }
    Ok(())
}

// ------------------------------------------------------- module globals

/// A module global. Wasm guests are single-threaded: no two borrows of one
/// global are ever live at once (each is borrowed only inside one export).
struct Global<T>(UnsafeCell<T>);

// SAFETY: wasm32-unknown-unknown modules run on one thread; on other targets
// the globals are only reachable through the wasm-only exports.
unsafe impl<T> Sync for Global<T> {}

static INPUT: Global<Vec<u8>> = Global(UnsafeCell::new(Vec::new()));
static OUTPUT: Global<Vec<u8>> = Global(UnsafeCell::new(Vec::new()));
static ERROR: Global<String> = Global(UnsafeCell::new(String::new()));
static CONFIG: Global<Vec<u8>> = Global(UnsafeCell::new(Vec::new()));
static HOOKED: Global<bool> = Global(UnsafeCell::new(false));

fn pack(ptr: *const u8, len: usize) -> i64 {
    ((len as u64) << 32 | (ptr as usize as u64 & 0xFFFF_FFFF)) as i64
}

fn set_error(message: String) {
    // SAFETY: see `Global`; no other borrow of ERROR is live.
    unsafe { *ERROR.0.get() = message };
}

fn install_panic_hook() {
    // SAFETY: see `Global`.
    let hooked = unsafe { &mut *HOOKED.0.get() };
    if !*hooked {
        *hooked = true;
        // A panic aborts (traps) on wasm32; keep its message for the host's
        // `oxbeam_last_error` call after the trap.
        std::panic::set_hook(Box::new(|info| set_error(info.to_string())));
    }
}

/// The configuration the host passed to `oxbeam_configure` (empty if none).
pub fn config() -> &'static [u8] {
    // SAFETY: see `Global`; CONFIG is only written by `oxbeam_configure`,
    // never while a UDF runs.
    unsafe { &*CONFIG.0.get() }
}

/// Runs one export call: checks `in_len`, resets the output arena, runs
/// `body`, and packs the output location or reports the error.
pub fn call(in_len: i32, body: impl FnOnce(&mut [u8], &mut Vec<u8>) -> Result<(), String>) -> i64 {
    install_panic_hook();
    // SAFETY: see `Global`; INPUT and OUTPUT are borrowed only here.
    let (input, out) = unsafe { (&mut *INPUT.0.get(), &mut *OUTPUT.0.get()) };
    let n = match usize::try_from(in_len) {
        Ok(n) if n <= input.len() => n,
        _ => {
            set_error(format!(
                "input length {in_len} exceeds the arena ({} bytes)",
                input.len()
            ));
            return -1;
        }
    };
    out.clear();
    match body(&mut input[..n], out) {
        Ok(()) => pack(out.as_ptr(), out.len()),
        Err(e) => {
            set_error(e);
            -1
        }
    }
}

/// Export `oxbeam_abi_version`.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn oxbeam_abi_version() -> i32 {
    ABI_VERSION
}

/// Export `oxbeam_alloc`: an input arena of at least `size` bytes, valid
/// until the next call.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn oxbeam_alloc(size: i32) -> i32 {
    install_panic_hook();
    // SAFETY: see `Global`.
    let input = unsafe { &mut *INPUT.0.get() };
    let Ok(size) = usize::try_from(size) else {
        return 0;
    };
    if input.len() < size {
        if input.try_reserve_exact(size - input.len()).is_err() {
            return 0;
        }
        input.resize(size, 0);
    }
    input.as_mut_ptr() as i32
}

/// Export `oxbeam_configure`: stores the `len` config bytes at the input
/// arena for [`config`].
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn oxbeam_configure(len: i32) -> i32 {
    // SAFETY: see `Global`.
    let (input, config) = unsafe { (&*INPUT.0.get(), &mut *CONFIG.0.get()) };
    match usize::try_from(len) {
        Ok(n) if n <= input.len() => {
            config.clear();
            config.extend_from_slice(&input[..n]);
            0
        }
        _ => {
            set_error(format!("config length {len} exceeds the arena"));
            1
        }
    }
}

/// Export `oxbeam_last_error`: the last error or panic message.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn oxbeam_last_error() -> i64 {
    // SAFETY: see `Global`.
    let e = unsafe { &*ERROR.0.get() };
    pack(e.as_ptr(), e.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(values: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        put_u32(&mut b, values.len() as u32);
        put_u32(&mut b, u32::MAX);
        for v in values {
            put_bytes(&mut b, v);
        }
        b
    }

    #[test]
    fn map_frames_each_output() {
        let mut input = batch(&[b"ab", b""]);
        let mut out = Vec::new();
        run_map(&mut input, &mut out, |v: &[u8], o: &mut Vec<u8>| {
            o.extend(v.iter().map(u8::to_ascii_uppercase))
        })
        .unwrap();
        assert_eq!(out, b"\x02\0\0\0AB\0\0\0\0");
        assert_eq!(&input[4..8], &1u32.to_le_bytes(), "cursor at last element");
    }

    #[test]
    fn errors_name_the_element_and_truncation_is_reported() {
        let mut input = batch(&[b"ok", b"bad"]);
        let mut out = Vec::new();
        let err = run_filter(&mut input, &mut out, |v: &[u8]| {
            if v == b"bad" { Err("no") } else { Ok(true) }
        })
        .unwrap_err();
        assert_eq!(err, "element 1: no");
        let mut input = batch(&[b"ok"]);
        input.truncate(input.len() - 1);
        let err = run_filter(&mut input, &mut out, |_: &[u8]| true).unwrap_err();
        assert!(err.contains("malformed batch"), "{err}");
    }
}
