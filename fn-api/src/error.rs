use std::fmt;

/// Errors of the executor boundary, sorted by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// User code failed (panic, exception, trap) while processing a bundle.
    #[error("{0}")]
    UserCode(UserCodeError),
    /// The descriptor asks for something this executor cannot run.
    #[error("cannot run transform {transform}: {message}")]
    Unsupported {
        /// Transform id in the descriptor.
        transform: String,
        /// Why.
        message: String,
    },
    /// Malformed input: a bad descriptor, payload or encoded element.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was malformed (e.g. "payload of transform t3").
        what: String,
        /// Why.
        message: String,
    },
    /// An SDK harness in another process failed outside user code: it
    /// exited or disconnected, timed out, or broke the Fn API protocol.
    #[error("SDK harness {worker}: {message}")]
    Harness {
        /// The harness's worker id.
        worker: String,
        /// What went wrong, with the harness's last output when known.
        message: String,
    },
    /// A bug in Oxbeam itself.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A user function failed on an element.
#[derive(Debug, Clone)]
pub struct UserCodeError {
    /// Unique name of the transform whose function failed.
    pub transform: String,
    /// The panic message, exception text or trap.
    pub message: String,
    /// A truncated rendering of the element being processed, if known.
    pub element: Option<String>,
}

impl fmt::Display for UserCodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "user code failed in transform '{}': {}",
            self.transform, self.message
        )?;
        if let Some(e) = &self.element {
            write!(f, " (element: {e})")?;
        }
        Ok(())
    }
}

impl Error {
    /// An [`Error::Invalid`] from anything displayable.
    pub fn invalid(what: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
