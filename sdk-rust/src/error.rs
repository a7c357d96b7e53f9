//! The SDK's errors, sorted by who is at fault.

use oxbeam_fn_api::UserCodeError;

/// Errors of building or running a pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipeline is invalid or unsupported by the runner (the runner's
    /// message says which: `invalid pipeline: ...`, `not implemented: ...`).
    #[error("{0}")]
    Plan(String),
    /// Running failed: user code, IO, or bad data.
    #[error("{0}")]
    Execution(oxbeam_fn_api::Error),
    /// The runner failed for another reason (its own bug, disk spill errors, ...).
    #[error("runner failed: {0}")]
    Runner(String),
    /// The pipeline was cancelled ([`PipelineHandle::cancel`](crate::PipelineHandle::cancel),
    /// or a second Ctrl-C).
    #[error("the pipeline was cancelled")]
    Cancelled,
    /// `--runner` names no runner this binary has.
    #[error("unknown runner {0:?} (available: local)")]
    UnknownRunner(String),
}

impl Error {
    /// The failing user code, if that is what failed.
    pub fn user_code(&self) -> Option<&UserCodeError> {
        match self {
            Error::Execution(oxbeam_fn_api::Error::UserCode(u)) => Some(u),
            _ => None,
        }
    }
}

/// Result alias of the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;
