//! Beam's standard coders, byte-compatible with every Beam SDK.
//!
//! Three layers, from fastest to most general:
//!
//! - [`wire`]: the primitives (varints, big-endian numbers, length-prefixed
//!   bytes, timestamps, windows, panes). Writers append to a reusable
//!   `Vec<u8>`; readers advance a `&mut &[u8]` and borrow from it.
//! - The windowed-value fast path for the runner's hot loop:
//!   [`WindowedValueHeader`] (timestamp, [`Windows`], pane) with
//!   [`encode_windowed_bytes`], [`decode_windowed`] and
//!   [`decode_windowed_with`], which leave the element value as borrowed
//!   encoded bytes. No allocation for single-window elements.
//! - The dynamic [`Coder`] tree, built from a pipeline's coder protos, with
//!   [`Coder::encode`], [`Coder::decode`] into [`Value`], and [`Coder::skip`]
//!   to find a value's extent without building it (e.g. to split a kv into
//!   key bytes and value bytes, [`Coder::split_kv`]). Unknown coders become
//!   [`Coder::Opaque`]: readable only as the whole buffer or inside
//!   `length_prefix`.
//!
//! Every decoder is total: malformed input gives a [`CoderError`] with the
//! byte offset, never a panic, and no length or count from the input is
//! trusted for allocation before it is checked against the input left.
//!
//! ```
//! use oxbeam_model::coders::{Coder, Context, Value};
//! let coder = Coder::kv(Coder::StringUtf8, Coder::Varint);
//! let mut out = Vec::new();
//! coder.encode(&Value::kv(Value::String("k".into()), Value::Int(-1)), &mut out, Context::Nested)?;
//! assert_eq!(out.len(), 2 + 10);
//! let (key, value) = coder.split_kv(&mut &out[..], Context::Nested)?;
//! assert_eq!((key, value.len()), (&b"\x01k"[..], 10));
//! assert_eq!(coder.decode(&mut &out[..], Context::Nested)?, Value::kv(Value::String("k".into()), Value::Int(-1)));
//! # Ok::<(), oxbeam_model::coders::CoderError>(())
//! ```

mod coder;
mod error;
mod row;
mod value;
mod windowed;
pub mod wire;

pub use coder::{Coder, Context, MAX_CODER_DEPTH, MAX_ELEMENTS_BASE, MAX_ELEMENTS_PER_INPUT_BYTE};
pub use error::{CoderError, Result};
pub use row::{FieldKind, FieldType, RowField, RowSchema};
pub use value::{Decimal, Timer, TimerFiring, Value, WindowedValue};
pub use windowed::{
    WindowCoder, WindowedRef, WindowedValueHeader, Windows, decode_windowed, decode_windowed_with,
    encode_windowed_bytes,
};
