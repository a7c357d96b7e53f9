//! One place that maps Oxbeam's Rust errors to Python exceptions.
//!
//! | Rust error | Python exception |
//! |---|---|
//! | planner `NotImplemented` | `NotImplementedError` |
//! | planner `Plan`, missing executor | `oxbeam.PipelineError` |
//! | `fn_api::Error::UserCode` | `oxbeam.UserCodeError` (`transform`, `element`, `traceback`) |
//! | other execution errors | `oxbeam.ExecutionError` |
//! | bugs | `oxbeam.InternalError` |

use pyo3::exceptions::{PyException, PyNotImplementedError};
use pyo3::prelude::*;

pyo3::create_exception!(
    _oxbeam,
    OxbeamError,
    PyException,
    "Base class of Oxbeam's errors."
);
pyo3::create_exception!(
    _oxbeam,
    PipelineError,
    OxbeamError,
    "The pipeline is invalid."
);
pyo3::create_exception!(
    _oxbeam,
    ExecutionError,
    OxbeamError,
    "Running the pipeline failed outside user code."
);
pyo3::create_exception!(
    _oxbeam,
    UserCodeError,
    ExecutionError,
    "A user function raised an exception."
);
pyo3::create_exception!(_oxbeam, InternalError, OxbeamError, "A bug in Oxbeam.");

/// The Python exception for a runner error.
pub fn to_py(py: Python<'_>, e: oxbeam_runner_local::Error) -> PyErr {
    use oxbeam_fn_api::Error as F;
    use oxbeam_runner_local::Error as R;
    match e {
        R::Plan(m) if m.starts_with("not implemented:") => PyNotImplementedError::new_err(m),
        R::Plan(m) => PipelineError::new_err(m),
        R::MissingExecutor { .. } => PipelineError::new_err(e.to_string()),
        R::Execution(F::UserCode(u)) => {
            let err = UserCodeError::new_err(u.to_string());
            let v = err.value(py);
            let _ = v.setattr("transform", &u.transform);
            let _ = v.setattr("element", &u.element);
            let _ = v.setattr("traceback_text", &u.message);
            err
        }
        R::Execution(F::Internal(m)) | R::Internal(m) => InternalError::new_err(m),
        other => ExecutionError::new_err(other.to_string()),
    }
}

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("OxbeamError", py.get_type::<OxbeamError>())?;
    m.add("PipelineError", py.get_type::<PipelineError>())?;
    m.add("ExecutionError", py.get_type::<ExecutionError>())?;
    m.add("UserCodeError", py.get_type::<UserCodeError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
