//! User state and timers of stateful Python DoFns.
//!
//! A stage with stateful ParDos gets one [`StateClient`]: the Python
//! runtime sets the current key and window before calling user code, and
//! the state objects it hands to the DoFn (`oxbeam._runtime`) read, append
//! and clear cells through the client, which encodes keys, windows and
//! values in Rust and serves requests from the bundle's
//! `oxbeam_fn_api::UserState` (Beam's State API: value, combining and set
//! state are bags, as Beam Python keeps them; ordered lists are
//! `OrderedListUserState`). Timers set or cleared by user code are encoded
//! as `beam:coder:timer:v1` and handed to the runner after each Python call
//! (`OutputSink::emit_timer`).
//!
//! The client holds a pointer to the bundle's user state only while the
//! bundle runs ([`StateClient::attach`] / [`StateClient::detach`]);
//! requests outside a bundle fail with a Python `RuntimeError`.

use oxbeam_fn_api::{Bundle, UserState, UserStateKey, UserStateKind};
use oxbeam_model::coders::WindowCoder;
use oxbeam_model::coders::wire;
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::codec::{Codec, PyHelpers, pane_of, py_pane, py_window, window_of};

/// One state cell declared by a stateful transform.
pub(crate) struct Cell {
    /// Its id in `ParDoPayload.state_specs`.
    pub id: String,
    /// Codec of its values (bag elements, accumulators, list entries, map
    /// values).
    pub codec: Codec,
    /// Codec of its map keys (map state only).
    pub key_codec: Option<Codec>,
}

/// What the client knows of one stateful transform of the stage.
pub(crate) struct StatefulTransform {
    /// Transform id.
    pub transform: String,
    /// Codec of the keys of its input.
    pub key: Codec,
    /// Coder of the windows of its input.
    pub window: WindowCoder,
    /// Its state cells, by index.
    pub cells: Vec<Cell>,
    /// Its timer family ids, by index.
    pub families: Vec<String>,
}

/// The bundle's user state, erased to `'static` while the bundle runs.
struct StatePtr(*mut (dyn UserState + 'static));

// SAFETY: the pointer is only dereferenced under the GIL while the bundle
// that owns the state runs on this thread (see `attach`).
unsafe impl Send for StatePtr {}
// SAFETY: as above; the GIL serializes every access.
unsafe impl Sync for StatePtr {}

/// Timers set or cleared since the last drain: (transform index, family
/// index, encoded timer).
pub(crate) type PendingTimers = Vec<(usize, usize, Vec<u8>)>;

/// Serves user state and collects timers for the stateful DoFns of a stage.
#[pyclass(module = "oxbeam._oxbeam")]
pub struct StateClient {
    helpers: PyHelpers,
    transforms: Vec<StatefulTransform>,
    state: Option<StatePtr>,
    current: usize,
    key: Vec<u8>,
    window: Vec<u8>,
    timers: PendingTimers,
    scratch: Vec<u8>,
}

fn state_err(e: oxbeam_fn_api::Error) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

impl StateClient {
    pub(crate) fn new(helpers: PyHelpers, transforms: Vec<StatefulTransform>) -> Self {
        StateClient {
            helpers,
            transforms,
            state: None,
            current: 0,
            key: Vec::new(),
            window: Vec::new(),
            timers: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Serves requests from `bundle`'s user state until [`detach`](Self::detach).
    ///
    /// The caller must call `detach` before the bundle's state borrow ends
    /// (the executor does so on every path out of a bundle).
    pub(crate) fn attach(&mut self, bundle: &mut Bundle<'_>) {
        let ptr: *mut (dyn UserState + '_) = &mut *bundle.state;
        // SAFETY: only the lifetime bound changes; `detach` runs before the
        // borrow of `bundle.state` ends, and nothing else uses that state
        // while the pointer is set (the executor does not touch
        // `bundle.state` itself).
        let ptr: *mut (dyn UserState + 'static) = unsafe { std::mem::transmute(ptr) };
        self.state = Some(StatePtr(ptr));
    }

    /// Stops serving state.
    pub(crate) fn detach(&mut self) {
        self.state = None;
    }

    /// Takes the timers set since the last call.
    pub(crate) fn take_timers(&mut self) -> PendingTimers {
        std::mem::take(&mut self.timers)
    }

    /// The id of transform `t` and of its family `f`.
    pub(crate) fn timer_target(&self, t: usize, f: usize) -> (&str, &str) {
        let st = &self.transforms[t];
        (&st.transform, &st.families[f])
    }

    /// Index of the stateful transform `id`.
    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        self.transforms.iter().position(|t| t.transform == id)
    }

    /// Decodes timers of family `family` of transform `t` (concatenated
    /// `beam:coder:timer:v1`) into `(key bytes, key, tag, window,
    /// fire micros, hold micros, pane)` tuples, one per window; cleared
    /// timers are skipped.
    pub(crate) fn decode_timers<'py>(
        &self,
        py: Python<'py>,
        t: usize,
        mut input: &[u8],
    ) -> PyResult<Bound<'py, PyList>> {
        let st = &self.transforms[t];
        let h = &self.helpers;
        let bad = |e: oxbeam_model::coders::CoderError| {
            PyValueError::new_err(format!("malformed timer of {}: {e}", st.transform))
        };
        let out = PyList::empty(py);
        while !input.is_empty() {
            let start = input;
            let key = st.key.decode(py, h, &mut input, true)?;
            let key_bytes = PyBytes::new(py, &start[..start.len() - input.len()]);
            let tag = wire::read_str(&mut input).map_err(bad)?.to_string();
            let n = wire::read_i32_be(&mut input).map_err(bad)?;
            let mut windows = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n.max(0) {
                windows.push(match st.window {
                    WindowCoder::Global => BoundedWindow::Global,
                    WindowCoder::Interval => wire::read_interval_window(&mut input).map_err(bad)?,
                });
            }
            if wire::read_bool(&mut input).map_err(bad)? {
                continue;
            }
            let fire = wire::read_timestamp(&mut input).map_err(bad)?;
            let hold = wire::read_timestamp(&mut input).map_err(bad)?;
            let pane = wire::read_pane(&mut input).map_err(bad)?;
            let pane_obj = if pane == PaneInfo::NO_FIRING {
                py.None().into_bound(py)
            } else {
                py_pane(py, h, &pane)?
            };
            for w in &windows {
                let item = PyTuple::new(
                    py,
                    [
                        key_bytes.clone().into_any(),
                        key.clone(),
                        tag.as_str().into_pyobject(py)?.into_any(),
                        py_window(py, h, w)?,
                        fire.millis()
                            .saturating_mul(1000)
                            .into_pyobject(py)?
                            .into_any(),
                        hold.millis()
                            .saturating_mul(1000)
                            .into_pyobject(py)?
                            .into_any(),
                        pane_obj.clone(),
                    ],
                )?;
                out.append(item)?;
            }
        }
        Ok(out)
    }

    fn key_codec(&self, t: usize, c: usize) -> PyResult<&Codec> {
        self.cell(t, c)?
            .key_codec
            .as_ref()
            .ok_or_else(|| PyValueError::new_err(format!("state cell {t}/{c} is not a map")))
    }

    /// `key` encoded (nested) with map cell `c`'s key codec.
    fn map_key(&self, t: usize, c: usize, key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let mut out = Vec::new();
        self.key_codec(t, c)?
            .encode(&self.helpers, key, &mut out, true)?;
        Ok(out)
    }

    fn cell(&self, t: usize, c: usize) -> PyResult<&Cell> {
        self.transforms
            .get(t)
            .and_then(|st| st.cells.get(c))
            .ok_or_else(|| PyValueError::new_err(format!("no state cell {t}/{c}")))
    }

    fn request<R>(
        &mut self,
        t: usize,
        c: usize,
        kind: UserStateKind<'_>,
        f: impl FnOnce(&mut dyn UserState, &UserStateKey<'_>) -> oxbeam_fn_api::Result<R>,
    ) -> PyResult<R> {
        if t != self.current {
            return Err(PyRuntimeError::new_err(
                "state used outside the transform's own process or on_timer call",
            ));
        }
        let Some(ptr) = self.state.as_ref().map(|p| p.0) else {
            return Err(PyRuntimeError::new_err(
                "user state is only available while a bundle is processed",
            ));
        };
        let st = &self.transforms[t];
        let key = UserStateKey {
            transform: &st.transform,
            state_id: &st.cells[c].id,
            window: &self.window,
            key: &self.key,
            kind,
        };
        // SAFETY: set by `attach` for the running bundle (see there).
        let state = unsafe { &mut *ptr };
        f(state, &key).map_err(state_err)
    }

    fn push_timer(&mut self, t: usize, f: usize, tag: &str, body: &[u8]) -> PyResult<()> {
        if t != self.current {
            return Err(PyRuntimeError::new_err(
                "timer used outside the transform's own process or on_timer call",
            ));
        }
        if self
            .transforms
            .get(t)
            .is_none_or(|st| st.families.get(f).is_none())
        {
            return Err(PyValueError::new_err(format!("no timer family {t}/{f}")));
        }
        let mut out = Vec::with_capacity(self.key.len() + self.window.len() + body.len() + 8);
        out.extend_from_slice(&self.key);
        wire::write_length_prefixed(&mut out, tag.as_bytes());
        wire::write_i32_be(&mut out, 1);
        out.extend_from_slice(&self.window);
        out.extend_from_slice(body);
        self.timers.push((t, f, out));
        Ok(())
    }
}

fn ts(micros: i64) -> Timestamp {
    Timestamp::from_millis(micros.div_euclid(1000))
}

#[pymethods]
impl StateClient {
    /// Makes `key` and `window` current for transform `t` (encodes them).
    fn set_current(
        &mut self,
        t: usize,
        key: &Bound<'_, PyAny>,
        window: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let st = self
            .transforms
            .get(t)
            .ok_or_else(|| PyValueError::new_err(format!("no stateful transform {t}")))?;
        self.key.clear();
        st.key.encode(&self.helpers, key, &mut self.key, true)?;
        self.window.clear();
        wire::write_window(&mut self.window, &window_of(&self.helpers, window)?);
        self.current = t;
        Ok(())
    }

    /// As `set_current`, with the key already encoded (a fired timer's).
    fn set_current_encoded(
        &mut self,
        t: usize,
        key: &[u8],
        window: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if t >= self.transforms.len() {
            return Err(PyValueError::new_err(format!("no stateful transform {t}")));
        }
        self.key.clear();
        self.key.extend_from_slice(key);
        self.window.clear();
        wire::write_window(&mut self.window, &window_of(&self.helpers, window)?);
        self.current = t;
        Ok(())
    }

    /// Every value of bag cell `c` of transform `t`, in append order.
    fn read<'py>(&mut self, py: Python<'py>, t: usize, c: usize) -> PyResult<Bound<'py, PyList>> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let r = self.request(t, c, UserStateKind::Bag, |s, k| s.get(k, &mut buf));
        let out = r.and_then(|()| {
            let codec = &self.cell(t, c)?.codec;
            let list = PyList::empty(py);
            let mut input = &buf[..];
            while !input.is_empty() {
                list.append(codec.decode(py, &self.helpers, &mut input, true)?)?;
            }
            Ok(list)
        });
        self.scratch = buf;
        out
    }

    /// Appends `value` to bag cell `c` of transform `t`.
    fn append(&mut self, t: usize, c: usize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let r = self
            .cell(t, c)
            .and_then(|cell| cell.codec.encode(&self.helpers, value, &mut buf, true))
            .and_then(|()| self.request(t, c, UserStateKind::Bag, |s, k| s.append(k, &buf)));
        self.scratch = buf;
        r
    }

    /// Replaces the contents of bag cell `c` of transform `t` by `values`.
    fn write(&mut self, t: usize, c: usize, values: &Bound<'_, PyList>) -> PyResult<()> {
        let mut buf = Vec::new();
        let codec = &self.cell(t, c)?.codec;
        for v in values.iter() {
            codec.encode(&self.helpers, &v, &mut buf, true)?;
        }
        self.request(t, c, UserStateKind::Bag, |s, k| s.clear(k))?;
        if buf.is_empty() {
            return Ok(());
        }
        self.request(t, c, UserStateKind::Bag, |s, k| s.append(k, &buf))
    }

    /// Empties bag cell `c` of transform `t`.
    fn clear(&mut self, t: usize, c: usize) -> PyResult<()> {
        self.request(t, c, UserStateKind::Bag, |s, k| s.clear(k))
    }

    /// The value under `key` in map cell `c` of transform `t`, or `None`.
    fn map_get<'py>(
        &mut self,
        py: Python<'py>,
        t: usize,
        c: usize,
        key: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let map_key = self.map_key(t, c, key)?;
        let mut buf = Vec::new();
        self.request(
            t,
            c,
            UserStateKind::Multimap { map_key: &map_key },
            |s, k| s.get(k, &mut buf),
        )?;
        if buf.is_empty() {
            return Ok(None);
        }
        // A put replaces: the last value is the current one.
        let codec = &self.cell(t, c)?.codec;
        let mut input = &buf[..];
        let mut last = None;
        while !input.is_empty() {
            last = Some(codec.decode(py, &self.helpers, &mut input, true)?);
        }
        Ok(last)
    }

    /// Sets `key` to `value` in map cell `c` of transform `t`.
    fn map_put(
        &mut self,
        t: usize,
        c: usize,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let map_key = self.map_key(t, c, key)?;
        let mut buf = Vec::new();
        self.cell(t, c)?
            .codec
            .encode(&self.helpers, value, &mut buf, true)?;
        let kind = || UserStateKind::Multimap { map_key: &map_key };
        self.request(t, c, kind(), |s, k| s.clear(k))?;
        self.request(t, c, kind(), |s, k| s.append(k, &buf))
    }

    /// Removes `key` from map cell `c` of transform `t`.
    fn map_remove(&mut self, t: usize, c: usize, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let map_key = self.map_key(t, c, key)?;
        self.request(
            t,
            c,
            UserStateKind::Multimap { map_key: &map_key },
            |s, k| s.clear(k),
        )
    }

    /// The keys of map cell `c` of transform `t`, in first-insertion order.
    fn map_keys<'py>(
        &mut self,
        py: Python<'py>,
        t: usize,
        c: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut buf = Vec::new();
        self.request(t, c, UserStateKind::MultimapKeys, |s, k| s.get(k, &mut buf))?;
        let codec = self.key_codec(t, c)?;
        let list = PyList::empty(py);
        let mut input = &buf[..];
        while !input.is_empty() {
            list.append(codec.decode(py, &self.helpers, &mut input, true)?)?;
        }
        Ok(list)
    }

    /// Empties map cell `c` of transform `t`.
    fn map_clear(&mut self, t: usize, c: usize) -> PyResult<()> {
        self.request(t, c, UserStateKind::MultimapKeys, |s, k| s.clear(k))
    }

    /// Entries `(sort key micros, value)` of ordered-list cell `c` with
    /// sort keys in `[start, end)`, in order.
    fn ordered_read<'py>(
        &mut self,
        py: Python<'py>,
        t: usize,
        c: usize,
        start: i64,
        end: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let r = self.request(t, c, UserStateKind::OrderedList { start, end }, |s, k| {
            s.get(k, &mut buf)
        });
        let out = r.and_then(|()| {
            let codec = &self.cell(t, c)?.codec;
            let list = PyList::empty(py);
            let mut input = &buf[..];
            let bad = |e: oxbeam_model::coders::CoderError| {
                PyValueError::new_err(format!("malformed ordered list entry: {e}"))
            };
            while !input.is_empty() {
                let sort_key = wire::read_varint_i64(&mut input).map_err(bad)?;
                let mut v = wire::read_length_prefixed(&mut input).map_err(bad)?;
                let value = codec.decode(py, &self.helpers, &mut v, false)?;
                list.append((sort_key, value))?;
            }
            Ok(list)
        });
        self.scratch = buf;
        out
    }

    /// Adds `value` at sort key `sort_key` (micros) to ordered-list cell `c`.
    fn ordered_append(
        &mut self,
        t: usize,
        c: usize,
        sort_key: i64,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        wire::write_varint_i64(&mut buf, sort_key);
        let mut v = Vec::new();
        let r = self
            .cell(t, c)
            .and_then(|cell| cell.codec.encode(&self.helpers, value, &mut v, false))
            .and_then(|()| {
                wire::write_length_prefixed(&mut buf, &v);
                self.request(
                    t,
                    c,
                    UserStateKind::OrderedList {
                        start: i64::MIN,
                        end: i64::MAX,
                    },
                    |s, k| s.append(k, &buf),
                )
            });
        self.scratch = buf;
        r
    }

    /// Removes the entries of ordered-list cell `c` with sort keys in `[start, end)`.
    fn ordered_clear(&mut self, t: usize, c: usize, start: i64, end: i64) -> PyResult<()> {
        self.request(t, c, UserStateKind::OrderedList { start, end }, |s, k| {
            s.clear(k)
        })
    }

    /// Sets timer `tag` of family `f` of transform `t` for the current key
    /// and window to fire at `fire` with output timestamp `hold` (micros).
    #[pyo3(signature = (t, f, tag, fire, hold, pane=None))]
    fn set_timer(
        &mut self,
        t: usize,
        f: usize,
        tag: &str,
        fire: i64,
        hold: i64,
        pane: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let pane = match pane {
            Some(p) if !p.is_none() => pane_of(p)?,
            _ => PaneInfo::NO_FIRING,
        };
        let mut body = Vec::with_capacity(20);
        wire::write_bool(&mut body, false);
        wire::write_timestamp(&mut body, ts(fire));
        wire::write_timestamp(&mut body, ts(hold));
        wire::write_pane(&mut body, &pane);
        self.push_timer(t, f, tag, &body)
    }

    /// Clears timer `tag` of family `f` of transform `t` for the current key and window.
    fn clear_timer(&mut self, t: usize, f: usize, tag: &str) -> PyResult<()> {
        self.push_timer(t, f, tag, &[1])
    }
}
