//! The Python runtime's per-batch loops that run once per element, at C
//! speed (see `oxbeam._runtime`).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Flattens a FlatMap's (or DoFn's) `results`, one per input element, into
/// `values`, and puts each output's element meta (`metas[i]` for the
/// outputs of `results[i]`) in `out_metas`: a list result is appended
/// whole, `None` adds nothing, any other result is iterated. On an
/// exception (a result that is not iterable, an iterator raising) it sets
/// `failed[0]` to the index of that result and raises it.
///
/// The Python loop it replaces cost ~0.35 µs per result (a text line of
/// about 12 words): a type check, two `extend`s and a list of the meta.
#[pyfunction]
pub fn expand_outputs(
    results: &Bound<'_, PyList>,
    metas: &Bound<'_, PyList>,
    values: &Bound<'_, PyList>,
    out_metas: &Bound<'_, PyList>,
    failed: &Bound<'_, PyList>,
) -> PyResult<()> {
    let py = results.py();
    // Mostly one meta for a whole batch (one window, one timestamp): then
    // the metas are one repeat at the end.
    let first = metas.get_item(0).ok();
    let uniform = first
        .as_ref()
        .is_some_and(|m0| metas.iter().all(|m| m.is(m0)));
    let start = values.len();
    for (n, r) in results.iter().enumerate() {
        if r.is_none() {
            continue;
        }
        let before = values.len();
        let added = if let Ok(list) = r.cast_exact::<PyList>() {
            let end = before as ffi::Py_ssize_t;
            // SAFETY: both are live lists and the GIL is held; this is
            // `values[end:end] = list`, which copies (and increfs) the items.
            let rc = unsafe { ffi::PyList_SetSlice(values.as_ptr(), end, end, list.as_ptr()) };
            if rc == 0 {
                Ok(())
            } else {
                Err(PyErr::fetch(py))
            }
        } else {
            r.try_iter()
                .and_then(|items| items.into_iter().try_for_each(|item| values.append(item?)))
        };
        if let Err(e) = added {
            failed.set_item(0, n)?;
            return Err(e);
        }
        if !uniform {
            let meta = metas.get_item(n)?;
            for _ in before..values.len() {
                out_metas.append(&meta)?;
            }
        }
    }
    if let (true, Some(m0)) = (uniform, first) {
        let count = values.len() - start;
        let repeated = PyList::new(py, [m0])?;
        // SAFETY: a live list and the GIL held; a new reference (or null
        // with an error set), which `from_owned_ptr_or_err` takes.
        let repeated = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PySequence_Repeat(repeated.as_ptr(), count as ffi::Py_ssize_t),
            )?
        };
        let end = out_metas.len() as ffi::Py_ssize_t;
        // SAFETY: live lists, GIL held: `out_metas[end:end] = repeated`.
        if unsafe { ffi::PyList_SetSlice(out_metas.as_ptr(), end, end, repeated.as_ptr()) } != 0 {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(())
}
