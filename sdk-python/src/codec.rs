//! Python values ↔ Beam-encoded bytes, in Rust.
//!
//! A [`Codec`] is the Python view of a PCollection's coder: standard coders
//! map to Python types (`varint` ↔ `int`, `string_utf8` ↔ `str`, `bytes` ↔
//! `bytes`, `double` ↔ `float`, `bool` ↔ `bool`, `kv` ↔ 2-tuple, `iterable`
//! ↔ `list`), `oxbeam:coder:python_any:v1` carries any Python value (type
//! tag, then the value; pickle for types without a tag), and coders Python
//! does not know are handed over as their encoded `bytes`.
//!
//! Windowed values become a *meta* per element: the tuple
//! `(timestamp_micros, window)` where `window` is the SDK's `GlobalWindow`
//! singleton or an `IntervalWindow`; elements from a trigger firing (any
//! pane but `NO_FIRING`) get `(timestamp_micros, window, pane_info)` with
//! the SDK's `PaneInfo` (retractions included). Consecutive elements with equal headers
//! share one meta object, and encoding caches the header of the last meta
//! object seen, so the usual case (every element in the same window) costs
//! one pointer comparison per element.

use std::sync::{Arc, OnceLock};

use oxbeam_model::coders::wire;
use oxbeam_model::coders::{Coder, WindowCoder, WindowedValueHeader, Windows};
use oxbeam_model::urns::oxbeam_python;
use oxbeam_model::window::{BoundedWindow, PaneInfo, PaneTiming, Timestamp};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Tags of `oxbeam:coder:python_any:v1`.
mod tag {
    pub const NONE: u8 = 0;
    pub const FALSE: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const INT: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const STR: u8 = 5;
    pub const BYTES: u8 = 6;
    pub const TUPLE: u8 = 7;
    pub const LIST: u8 = 8;
    pub const PICKLE: u8 = 9;
}

/// How values of one coder are decoded to and encoded from Python objects.
#[derive(Clone, Debug, PartialEq)]
pub enum Codec {
    /// `beam:coder:varint:v1` ↔ `int`.
    Varint,
    /// `beam:coder:string_utf8:v1` ↔ `str`.
    Str,
    /// `beam:coder:bytes:v1` ↔ `bytes`.
    Bytes,
    /// `beam:coder:double:v1` ↔ `float`.
    Double,
    /// `beam:coder:bool:v1` ↔ `bool`.
    Bool,
    /// `beam:coder:kv:v1` ↔ `(key, value)`.
    Kv(Box<Codec>, Box<Codec>),
    /// `beam:coder:iterable:v1` ↔ `list`.
    Iterable(Box<Codec>),
    /// `beam:coder:length_prefix:v1` around another codec.
    LengthPrefix(Box<Codec>),
    /// `beam:coder:nullable:v1` ↔ `None` or the inner value.
    Nullable(Box<Codec>),
    /// `oxbeam:coder:python_any:v1`: any Python value.
    Any,
    /// `oxbeam:coder:python_custom:v1`: a user's Python coder.
    Custom(Arc<CustomCoder>),
    /// A coder Python does not interpret: the encoded bytes (outer context).
    Opaque,
}

impl Codec {
    /// The codec of a dynamic coder.
    ///
    /// # Errors
    /// For coders that have no Python representation here (windowed values,
    /// timers, rows, ...).
    pub fn from_coder(c: &Coder) -> Result<Codec, String> {
        Ok(match c {
            Coder::Bytes => Codec::Bytes,
            Coder::StringUtf8 => Codec::Str,
            Coder::Bool => Codec::Bool,
            Coder::Varint => Codec::Varint,
            Coder::Double => Codec::Double,
            Coder::Kv { key, value } => Codec::Kv(
                Box::new(Self::from_coder(key)?),
                Box::new(Self::from_coder(value)?),
            ),
            Coder::Iterable(e) => Codec::Iterable(Box::new(Self::from_coder(e)?)),
            Coder::LengthPrefix(inner) => Codec::LengthPrefix(Box::new(Self::from_coder(inner)?)),
            Coder::Nullable(inner) => Codec::Nullable(Box::new(Self::from_coder(inner)?)),
            Coder::Opaque { urn, .. } if urn == oxbeam_python::ANY_CODER => Codec::Any,
            Coder::Opaque { urn, payload } if urn == oxbeam_python::CUSTOM_CODER => {
                Codec::Custom(Arc::new(CustomCoder {
                    pickled: payload.to_vec(),
                    coder: OnceLock::new(),
                }))
            }
            Coder::Opaque { .. } => Codec::Opaque,
            other => {
                return Err(format!(
                    "coder {} has no Python representation",
                    other.urn()
                ));
            }
        })
    }
}

/// A user's Python coder (`oxbeam.coders.Coder` subclass): its pickle from
/// the coder payload, loaded on first use.
pub struct CustomCoder {
    pickled: Vec<u8>,
    coder: OnceLock<Py<PyAny>>,
}

impl CustomCoder {
    fn get<'py>(&self, py: Python<'py>, h: &PyHelpers) -> PyResult<Bound<'py, PyAny>> {
        if let Some(c) = self.coder.get() {
            return Ok(c.bind(py).clone());
        }
        let c = h.loads.bind(py).call1((PyBytes::new(py, &self.pickled),))?;
        // Another thread may have loaded it first; either object will do.
        let _ = self.coder.set(c.clone().unbind());
        Ok(c)
    }

    /// `coder.decode(bytes)`.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        h: &PyHelpers,
        bytes: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, h)?
            .call_method1("decode", (PyBytes::new(py, bytes),))
    }

    /// `coder.encode(v)`, which must return `bytes`.
    fn encode(
        &self,
        h: &PyHelpers,
        v: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
        nested: bool,
    ) -> PyResult<()> {
        let coder = self.get(v.py(), h)?;
        let b = coder.call_method1("encode", (v,))?;
        let b = b.cast::<PyBytes>().map_err(|_| {
            PyValueError::new_err(format!(
                "{}.encode() returned {}, not bytes",
                coder
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                b.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        write_maybe_prefixed(out, b.as_bytes(), nested);
        Ok(())
    }
}

impl PartialEq for CustomCoder {
    fn eq(&self, other: &Self) -> bool {
        self.pickled == other.pickled
    }
}

impl std::fmt::Debug for CustomCoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomCoder({} pickled bytes)", self.pickled.len())
    }
}

/// Python helpers the codecs call: pickle and the SDK's window classes.
pub struct PyHelpers {
    dumps: Py<PyAny>,
    loads: Py<PyAny>,
    global_window: Py<PyAny>,
    interval_window: Py<PyAny>,
    pane: Py<PyAny>,
}

impl PyHelpers {
    /// Imports them.
    ///
    /// # Errors
    /// If `pickle` or `oxbeam.window` cannot be imported.
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        let pickle = py.import("pickle")?;
        let window = py.import("oxbeam.window")?;
        let wv = py.import("oxbeam.utils.windowed_value")?;
        Ok(PyHelpers {
            pane: wv.getattr("_pane")?.unbind(),
            dumps: pickle.getattr("dumps")?.unbind(),
            loads: pickle.getattr("loads")?.unbind(),
            global_window: window.getattr("GlobalWindow")?.call0()?.unbind(),
            interval_window: window.getattr("IntervalWindow")?.unbind(),
        })
    }

    /// A Python handle to the same helpers.
    pub fn clone_ref(&self, py: Python<'_>) -> Self {
        PyHelpers {
            dumps: self.dumps.clone_ref(py),
            loads: self.loads.clone_ref(py),
            global_window: self.global_window.clone_ref(py),
            interval_window: self.interval_window.clone_ref(py),
            pane: self.pane.clone_ref(py),
        }
    }
}

fn coder_err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("malformed element bytes: {e}"))
}

impl Codec {
    /// Decodes one value.
    ///
    /// # Errors
    /// On malformed bytes, or if a pickle does not load.
    pub fn decode<'py>(
        &self,
        py: Python<'py>,
        h: &PyHelpers,
        input: &mut &[u8],
        nested: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Codec::Varint => wire::read_varint_i64(input)
                .map_err(coder_err)?
                .into_pyobject(py)?
                .into_any(),
            Codec::Double => wire::read_f64_be(input)
                .map_err(coder_err)?
                .into_pyobject(py)?
                .into_any(),
            Codec::Bool => PyBool::new(py, wire::read_bool(input).map_err(coder_err)?)
                .to_owned()
                .into_any(),
            Codec::Str => {
                let b = read_maybe_prefixed(input, nested)?;
                let s = std::str::from_utf8(b).map_err(coder_err)?;
                PyString::new(py, s).into_any()
            }
            Codec::Bytes | Codec::Opaque => {
                PyBytes::new(py, read_maybe_prefixed(input, nested)?).into_any()
            }
            Codec::Kv(k, v) => {
                let k = k.decode(py, h, input, true)?;
                let v = v.decode(py, h, input, nested)?;
                PyTuple::new(py, [k, v])?.into_any()
            }
            Codec::Iterable(e) => {
                let count = wire::read_i32_be(input).map_err(coder_err)?;
                let list = PyList::empty(py);
                if count >= 0 {
                    for _ in 0..count {
                        list.append(e.decode(py, h, input, true)?)?;
                    }
                } else {
                    loop {
                        let n = wire::read_varint_u64(input).map_err(coder_err)?;
                        if n == 0 {
                            break;
                        }
                        for _ in 0..n {
                            list.append(e.decode(py, h, input, true)?)?;
                        }
                    }
                }
                list.into_any()
            }
            Codec::LengthPrefix(inner) => {
                let mut b = wire::read_length_prefixed(input).map_err(coder_err)?;
                inner.decode(py, h, &mut b, false)?
            }
            Codec::Nullable(inner) => {
                if wire::read_u8(input).map_err(coder_err)? == 0 {
                    py.None().into_bound(py)
                } else {
                    inner.decode(py, h, input, nested)?
                }
            }
            Codec::Any => decode_any(py, h, input)?,
            Codec::Custom(c) => c.decode(py, h, read_maybe_prefixed(input, nested)?)?,
        })
    }

    /// Encodes one value.
    ///
    /// # Errors
    /// If the value does not fit the coder (e.g. a `str` for `varint`), or
    /// does not pickle.
    pub fn encode(
        &self,
        h: &PyHelpers,
        v: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
        nested: bool,
    ) -> PyResult<()> {
        match self {
            Codec::Varint => {
                let i: i64 = v.extract().map_err(|_| mismatch(v, "an int (64-bit)"))?;
                wire::write_varint_i64(out, i);
            }
            Codec::Double => {
                let f: f64 = v.extract().map_err(|_| mismatch(v, "a float"))?;
                wire::write_f64_be(out, f);
            }
            Codec::Bool => {
                let b = v.cast::<PyBool>().map_err(|_| mismatch(v, "a bool"))?;
                wire::write_bool(out, b.is_true());
            }
            Codec::Str => {
                let s = v.cast::<PyString>().map_err(|_| mismatch(v, "a str"))?;
                write_maybe_prefixed(out, s.to_cow()?.as_bytes(), nested);
            }
            Codec::Bytes | Codec::Opaque => {
                let b = v.cast::<PyBytes>().map_err(|_| mismatch(v, "bytes"))?;
                write_maybe_prefixed(out, b.as_bytes(), nested);
            }
            Codec::Kv(kc, vc) => {
                let t = v
                    .cast::<PyTuple>()
                    .ok()
                    .filter(|t| t.len() == 2)
                    .ok_or_else(|| mismatch(v, "a 2-tuple (key, value)"))?;
                kc.encode(h, &t.get_item(0)?, out, true)?;
                vc.encode(h, &t.get_item(1)?, out, nested)?;
            }
            Codec::Iterable(e) => {
                let items: Vec<Bound<'_, PyAny>> = match v.cast::<PyList>() {
                    Ok(l) => l.iter().collect(),
                    Err(_) => v
                        .try_iter()
                        .map_err(|_| mismatch(v, "an iterable"))?
                        .collect::<PyResult<_>>()?,
                };
                wire::write_i32_be(out, i32::try_from(items.len()).unwrap_or(i32::MAX));
                for i in &items {
                    e.encode(h, i, out, true)?;
                }
            }
            Codec::LengthPrefix(inner) => {
                let mut tmp = Vec::new();
                inner.encode(h, v, &mut tmp, false)?;
                wire::write_length_prefixed(out, &tmp);
            }
            Codec::Nullable(inner) => {
                if v.is_none() {
                    out.push(0);
                } else {
                    out.push(1);
                    inner.encode(h, v, out, nested)?;
                }
            }
            Codec::Any => encode_any(h, v, out)?,
            Codec::Custom(c) => c.encode(h, v, out, nested)?,
        }
        Ok(())
    }
}

fn mismatch(v: &Bound<'_, PyAny>, expected: &str) -> PyErr {
    let ty = v
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let mut r = v.repr().map(|r| r.to_string()).unwrap_or_default();
    if r.len() > 100 {
        let mut cut = 100;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r.truncate(cut);
        r.push('…');
    }
    PyValueError::new_err(format!(
        "element {r} of type {ty} does not match the PCollection's coder: expected {expected} \
         (check with_output_types / the element type)"
    ))
}

fn read_maybe_prefixed<'a>(input: &mut &'a [u8], nested: bool) -> PyResult<&'a [u8]> {
    if nested {
        wire::read_length_prefixed(input).map_err(coder_err)
    } else {
        Ok(std::mem::take(input))
    }
}

fn write_maybe_prefixed(out: &mut Vec<u8>, b: &[u8], nested: bool) {
    if nested {
        wire::write_length_prefixed(out, b);
    } else {
        out.extend_from_slice(b);
    }
}

fn read_len(input: &mut &[u8]) -> PyResult<usize> {
    let n = wire::read_varint_u64(input).map_err(coder_err)?;
    if n > input.len() as u64 * 8 + 8 {
        return Err(coder_err(format!("count {n} exceeds the input")));
    }
    Ok(n as usize)
}

fn decode_any<'py>(
    py: Python<'py>,
    h: &PyHelpers,
    input: &mut &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    let t = wire::read_u8(input).map_err(coder_err)?;
    Ok(match t {
        tag::NONE => py.None().into_bound(py),
        tag::FALSE => PyBool::new(py, false).to_owned().into_any(),
        tag::TRUE => PyBool::new(py, true).to_owned().into_any(),
        tag::INT => wire::read_varint_i64(input)
            .map_err(coder_err)?
            .into_pyobject(py)?
            .into_any(),
        tag::FLOAT => PyFloat::new(py, wire::read_f64_be(input).map_err(coder_err)?).into_any(),
        tag::STR => {
            let b = wire::read_length_prefixed(input).map_err(coder_err)?;
            PyString::new(py, std::str::from_utf8(b).map_err(coder_err)?).into_any()
        }
        tag::BYTES => {
            PyBytes::new(py, wire::read_length_prefixed(input).map_err(coder_err)?).into_any()
        }
        tag::TUPLE | tag::LIST => {
            let n = read_len(input)?;
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(decode_any(py, h, input)?);
            }
            if t == tag::TUPLE {
                PyTuple::new(py, items)?.into_any()
            } else {
                PyList::new(py, items)?.into_any()
            }
        }
        tag::PICKLE => {
            let b = wire::read_length_prefixed(input).map_err(coder_err)?;
            h.loads.bind(py).call1((PyBytes::new(py, b),))?
        }
        other => return Err(coder_err(format!("unknown python_any tag {other}"))),
    })
}

fn encode_any(h: &PyHelpers, v: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    if v.is_none() {
        out.push(tag::NONE);
    } else if v.is_exact_instance_of::<PyBool>() {
        out.push(if v.is_truthy()? {
            tag::TRUE
        } else {
            tag::FALSE
        });
    } else if v.is_exact_instance_of::<PyInt>() {
        match v.extract::<i64>() {
            Ok(i) => {
                out.push(tag::INT);
                wire::write_varint_i64(out, i);
            }
            Err(_) => pickle(h, v, out)?,
        }
    } else if v.is_exact_instance_of::<PyString>() {
        out.push(tag::STR);
        let s = v.cast::<PyString>()?.to_cow()?;
        wire::write_length_prefixed(out, s.as_bytes());
    } else if v.is_exact_instance_of::<PyFloat>() {
        out.push(tag::FLOAT);
        wire::write_f64_be(out, v.extract::<f64>()?);
    } else if v.is_exact_instance_of::<PyBytes>() {
        out.push(tag::BYTES);
        wire::write_length_prefixed(out, v.cast::<PyBytes>()?.as_bytes());
    } else if v.is_exact_instance_of::<PyTuple>() {
        let t = v.cast::<PyTuple>()?;
        out.push(tag::TUPLE);
        wire::write_varint_u64(out, t.len() as u64);
        for i in t.iter() {
            encode_any(h, &i, out)?;
        }
    } else if v.is_exact_instance_of::<PyList>() {
        let l = v.cast::<PyList>()?;
        out.push(tag::LIST);
        wire::write_varint_u64(out, l.len() as u64);
        for i in l.iter() {
            encode_any(h, &i, out)?;
        }
    } else {
        pickle(h, v, out)?;
    }
    Ok(())
}

fn pickle(h: &PyHelpers, v: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let py = v.py();
    // Plain pickle first (fast); values it cannot pickle by reference
    // (classes and functions defined in a function, lambdas) go through
    // cloudpickle, whose output plain `pickle.loads` reads.
    let b = match h.dumps.bind(py).call1((v, 4)) {
        Ok(b) => b,
        Err(first) => py
            .import("cloudpickle")
            .and_then(|c| c.getattr("dumps"))
            .and_then(|d| d.call1((v, 4)))
            .map_err(|_| first)?,
    };
    out.push(tag::PICKLE);
    wire::write_length_prefixed(out, b.cast::<PyBytes>()?.as_bytes());
    Ok(())
}

/// Decodes concatenated nested windowed values into parallel Python lists
/// of values and metas, one entry per (element, window).
pub struct BatchDecoder {
    /// The value codec.
    pub codec: Codec,
    /// The window coder of the windowed values.
    pub window_coder: WindowCoder,
    last: Option<(Timestamp, BoundedWindow, PaneInfo, Py<PyAny>)>,
}

impl BatchDecoder {
    /// A decoder of windowed values of `codec` with windows of `window_coder`.
    pub fn new(codec: Codec, window_coder: WindowCoder) -> Self {
        BatchDecoder {
            codec,
            window_coder,
            last: None,
        }
    }

    fn meta<'py>(
        &mut self,
        py: Python<'py>,
        h: &PyHelpers,
        ts: Timestamp,
        w: BoundedWindow,
        pane: PaneInfo,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some((lt, lw, lp, m)) = &self.last {
            if *lt == ts && *lw == w && *lp == pane {
                return Ok(m.bind(py).clone());
            }
        }
        let window = py_window(py, h, &w)?;
        let micros = ts
            .millis()
            .saturating_mul(1000)
            .into_pyobject(py)?
            .into_any();
        let m = if pane == PaneInfo::NO_FIRING {
            PyTuple::new(py, [micros, window])?
        } else {
            PyTuple::new(py, [micros, window, py_pane(py, h, &pane)?])?
        }
        .into_any();
        self.last = Some((ts, w, pane, m.clone().unbind()));
        Ok(m)
    }

    /// Decodes up to `max` elements from `input` (advancing it), appending
    /// to `values` and `metas`.
    ///
    /// # Errors
    /// On malformed bytes.
    pub fn decode_into(
        &mut self,
        py: Python<'_>,
        h: &PyHelpers,
        input: &mut &[u8],
        max: usize,
        values: &Bound<'_, PyList>,
        metas: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        let mut n = 0;
        while !input.is_empty() && n < max {
            let header =
                WindowedValueHeader::decode(input, self.window_coder).map_err(coder_err)?;
            let v = self.codec.decode(py, h, input, true)?;
            for w in header.windows.iter() {
                values.append(&v)?;
                metas.append(self.meta(py, h, header.timestamp, *w, header.pane)?)?;
            }
            n += 1;
        }
        Ok(())
    }
}

/// Encodes metas to windowed-value headers, caching the last one.
#[derive(Default)]
pub struct HeaderEncoder {
    last: Option<(Py<PyAny>, Vec<u8>)>,
}

impl HeaderEncoder {
    /// Appends the header of `meta`.
    ///
    /// # Errors
    /// If `meta` is not a `(timestamp_micros, window)` tuple.
    pub fn encode(
        &mut self,
        h: &PyHelpers,
        meta: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
    ) -> PyResult<()> {
        if let Some((m, bytes)) = &self.last {
            if m.as_ptr() == meta.as_ptr() {
                out.extend_from_slice(bytes);
                return Ok(());
            }
        }
        let t = meta.cast::<PyTuple>()?;
        let micros: i64 = t.get_item(0)?.extract()?;
        let window = window_of(h, &t.get_item(1)?)?;
        let pane = if t.len() > 2 {
            pane_of(&t.get_item(2)?)?
        } else {
            PaneInfo::NO_FIRING
        };
        let header = WindowedValueHeader {
            timestamp: Timestamp::from_millis(micros.div_euclid(1000)),
            windows: Windows::one(window),
            pane,
        };
        let mut bytes = Vec::with_capacity(16);
        header.encode(&mut bytes);
        out.extend_from_slice(&bytes);
        self.last = Some((meta.clone().unbind(), bytes));
        Ok(())
    }
}

/// The SDK's window object for `w`.
///
/// # Errors
/// If the SDK's `IntervalWindow` cannot be built.
pub fn py_window<'py>(
    py: Python<'py>,
    h: &PyHelpers,
    w: &BoundedWindow,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match w {
        BoundedWindow::Global => h.global_window.bind(py).clone(),
        BoundedWindow::Interval { start, end } => h.interval_window.bind(py).call_method1(
            "_from_micros",
            (
                start.millis().saturating_mul(1000),
                end.millis().saturating_mul(1000),
            ),
        )?,
    })
}

/// The window of an SDK window object (`GlobalWindow` or `IntervalWindow`).
///
/// # Errors
/// If `w` is neither.
pub fn window_of(h: &PyHelpers, w: &Bound<'_, PyAny>) -> PyResult<BoundedWindow> {
    if w.is(h.global_window.bind(w.py())) {
        return Ok(BoundedWindow::Global);
    }
    // Windows of elements at the min timestamp may start before it.
    let (s, e): (i128, i128) = w.call_method0("_micros")?.extract()?;
    let clamp = |x: i128| x.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    Ok(BoundedWindow::Interval {
        start: Timestamp::from_millis(clamp(s).div_euclid(1000)),
        end: Timestamp::from_millis(clamp(e).div_euclid(1000)),
    })
}

/// The SDK's `PaneInfo` for `pane`.
///
/// # Errors
/// If the SDK's constructor fails.
pub fn py_pane<'py>(
    py: Python<'py>,
    h: &PyHelpers,
    pane: &PaneInfo,
) -> PyResult<Bound<'py, PyAny>> {
    h.pane.bind(py).call1((
        pane.is_first,
        pane.is_last,
        pane.timing as u8,
        pane.index,
        pane.on_time_index,
        pane.is_retraction,
    ))
}

/// The pane of an SDK `PaneInfo` (its `_wire()` fields).
pub fn pane_of(p: &Bound<'_, PyAny>) -> PyResult<PaneInfo> {
    let (is_first, is_last, timing, index, on_time_index, is_retraction): (
        bool,
        bool,
        u8,
        i64,
        i64,
        bool,
    ) = p.call_method0("_wire")?.extract()?;
    Ok(PaneInfo {
        is_first,
        is_last,
        timing: PaneTiming::from_bits(timing),
        index,
        on_time_index,
        is_retraction,
    })
}

/// Encodes each of `values` (outer context) with coder `coder_id` of the
/// serialized `Components` message `components` (e.g. TestStream elements).
///
/// # Errors
/// `ValueError` if the components do not decode, the coder is unknown or
/// has no Python representation, or a value does not fit it.
#[pyfunction]
pub fn encode_values<'py>(
    py: Python<'py>,
    components: &[u8],
    coder_id: &str,
    values: &Bound<'py, PyList>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    use prost::Message;
    let comps = oxbeam_model::pipeline::Components::decode(components)
        .map_err(|e| PyValueError::new_err(format!("Components: {e}")))?;
    let coder = Coder::from_proto(coder_id, &comps)
        .map_err(|e| PyValueError::new_err(format!("coder {coder_id}: {e}")))?;
    let codec = Codec::from_coder(&coder).map_err(PyValueError::new_err)?;
    let h = PyHelpers::new(py)?;
    let mut out = Vec::with_capacity(values.len());
    let mut buf = Vec::new();
    for v in values.iter() {
        buf.clear();
        codec.encode(&h, &v, &mut buf, false)?;
        out.push(PyBytes::new(py, &buf));
    }
    Ok(out)
}
