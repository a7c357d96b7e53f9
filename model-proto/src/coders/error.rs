//! [`CoderError`]: what can go wrong building, encoding with or decoding with a coder.

/// Result alias of the coders module.
pub type Result<T, E = CoderError> = std::result::Result<T, E>;

/// Errors of the coders, sorted by who is at fault.
///
/// - *Bad bytes* (the sender's fault): [`Truncated`](Self::Truncated),
///   [`LengthExceedsInput`](Self::LengthExceedsInput),
///   [`InvalidVarint`](Self::InvalidVarint), [`InvalidUtf8`](Self::InvalidUtf8),
///   [`InvalidData`](Self::InvalidData), [`TooManyElements`](Self::TooManyElements).
///   Each carries `offset`: the byte position of the failing read, counted from
///   the start of the slice given to the public function that returned it
///   (low-level [`wire`](super::wire) readers report 0: their own position).
/// - *Bad coder spec* (the pipeline's fault): [`UnknownCoderId`](Self::UnknownCoderId),
///   [`BadCoder`](Self::BadCoder), [`BadSchema`](Self::BadSchema),
///   [`OpaqueNested`](Self::OpaqueNested) (an unknown coder used where its
///   extent is needed).
/// - *Bad value* (the caller's fault): [`ValueMismatch`](Self::ValueMismatch).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoderError {
    /// The input ended inside a value.
    #[error("truncated input at byte {offset}: needed {needed} bytes, {available} available")]
    Truncated {
        /// Position of the failing read.
        offset: usize,
        /// Bytes the read needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A length prefix or element count larger than the rest of the input.
    #[error("length {length} at byte {offset} exceeds the {available} bytes remaining")]
    LengthExceedsInput {
        /// Position of the bytes the length announced.
        offset: usize,
        /// The announced length.
        length: u64,
        /// Bytes that were left.
        available: usize,
    },
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("invalid varint at byte {offset}: longer than 10 bytes or overflows 64 bits")]
    InvalidVarint {
        /// Position of the varint's first byte.
        offset: usize,
    },
    /// A string coder's bytes are not UTF-8.
    #[error("invalid UTF-8 at byte {offset}: {detail}")]
    InvalidUtf8 {
        /// Position of the first invalid byte.
        offset: usize,
        /// What the UTF-8 validator said.
        detail: String,
    },
    /// Bytes that no value of the coder encodes to (a bool byte of 2, a null
    /// marker of 7, a negative count, ...).
    #[error("invalid {what} at byte {offset}: {detail}")]
    InvalidData {
        /// Position of the offending bytes.
        offset: usize,
        /// What was being read.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// More elements than the input can plausibly hold (see
    /// [`MAX_ELEMENTS_BASE`](super::MAX_ELEMENTS_BASE)): the cap keeps a few
    /// bytes from costing gigabytes.
    #[error("{count} more elements at byte {offset} exceed the limit of {limit} for this input")]
    TooManyElements {
        /// Position of the count (or row) that went over.
        offset: usize,
        /// Elements it announced.
        count: u64,
        /// Elements allowed for the whole input.
        limit: u64,
    },
    /// A coder id missing from the pipeline's components.
    #[error("coder id {0:?} is not in the pipeline components")]
    UnknownCoderId(String),
    /// A coder spec with the wrong components or payload, or a cyclic one.
    #[error("bad coder {urn}: {reason}")]
    BadCoder {
        /// The coder's URN.
        urn: String,
        /// What was wrong.
        reason: String,
    },
    /// A row schema that cannot be encoded.
    #[error("bad row schema: {0}")]
    BadSchema(String),
    /// An unknown coder whose extent in the input cannot be known: it can be
    /// read only as the whole rest of the input (outer context), or when
    /// wrapped in `beam:coder:length_prefix:v1`.
    #[error(
        "coder {urn} is not known to Oxbeam, so it cannot be read in the nested context; \
         wrap it in beam:coder:length_prefix:v1"
    )]
    OpaqueNested {
        /// The unknown coder's URN.
        urn: String,
    },
    /// A value that does not fit the coder it is encoded with.
    #[error("cannot encode {found} with {coder}: {detail}")]
    ValueMismatch {
        /// The coder (or schema type) encoding.
        coder: String,
        /// The kind of value given.
        found: &'static str,
        /// What was expected.
        detail: String,
    },
}

impl CoderError {
    /// Adds `delta` to the offset of a bad-bytes error (no-op for other kinds).
    pub(crate) fn shift_offset(mut self, delta: usize) -> Self {
        match &mut self {
            CoderError::Truncated { offset, .. }
            | CoderError::LengthExceedsInput { offset, .. }
            | CoderError::InvalidVarint { offset }
            | CoderError::InvalidUtf8 { offset, .. }
            | CoderError::InvalidData { offset, .. }
            | CoderError::TooManyElements { offset, .. } => *offset = offset.saturating_add(delta),
            _ => {}
        }
        self
    }

    /// The byte position of a bad-bytes error.
    pub fn offset(&self) -> Option<usize> {
        match self {
            CoderError::Truncated { offset, .. }
            | CoderError::LengthExceedsInput { offset, .. }
            | CoderError::InvalidVarint { offset }
            | CoderError::InvalidUtf8 { offset, .. }
            | CoderError::InvalidData { offset, .. }
            | CoderError::TooManyElements { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        CoderError::InvalidData {
            offset: 0,
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_coder(urn: &str, reason: impl Into<String>) -> Self {
        CoderError::BadCoder {
            urn: urn.to_string(),
            reason: reason.into(),
        }
    }
}
