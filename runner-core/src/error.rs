//! [`Error`]: why a pipeline cannot be planned, sorted by who is at fault.

/// Errors of the planner.
///
/// - [`Error::Plan`]: the pipeline is malformed (the SDK's or user's fault).
/// - [`Error::NotImplemented`]: the pipeline is valid Beam, but uses
///   something Oxbeam does not run yet.
/// - [`Error::Internal`]: a bug in Oxbeam.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The pipeline is invalid.
    #[error("invalid pipeline: {what}: {message}")]
    Plan {
        /// What is at fault, e.g. `transform 'Count/Group' (id t3)`.
        what: String,
        /// Why.
        message: String,
    },
    /// The pipeline needs something not implemented yet.
    #[error("not implemented: {what}: {message}")]
    NotImplemented {
        /// What needs it.
        what: String,
        /// What is missing.
        message: String,
    },
    /// A bug in Oxbeam's planner.
    #[error("internal planner error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn plan(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Plan {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_implemented(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::NotImplemented {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
