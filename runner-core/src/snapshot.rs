//! Snapshots of runtime state — a GroupByKey's buffered windows and
//! triggers ([`crate::gabw::GroupAlsoByWindow::snapshot`]), user state
//! ([`crate::state::StateStore::snapshot`]) and timers
//! ([`crate::state::TimerQueue::snapshot`]) — so a streaming engine can
//! checkpoint them with its sources' offsets and restore them after a
//! restart.
//!
//! The bytes are bincode (varint integers) of the structures' serde forms:
//! compact, and only meant to be read back by the same build of Oxbeam. A
//! snapshot does not carry what the pipeline defines (windowing strategy,
//! trigger, state specs): it is restored into a structure built from the
//! same plan.

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
}

/// Encodes `value`.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing in-memory maps, vectors and integers into a Vec cannot
    // fail (no size limit, no I/O).
    options()
        .serialize(value)
        .expect("serializing runtime state into memory")
}

/// Decodes what [`encode`] wrote; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    options()
        // Lengths inside cannot claim more than the input holds.
        .with_limit(bytes.len() as u64)
        .deserialize(bytes)
        .map_err(|e| format!("corrupt snapshot of {what} ({} bytes): {e}", bytes.len()))
}
