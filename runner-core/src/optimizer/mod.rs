//! Optimizer passes over the [`Graph`](crate::graph::Graph), one module each:
//!
//! | pass | effect |
//! |---|---|
//! | [`combiner_lifting`] | combine-per-key → precombine, shuffle, merge, extract (or its plain leaves) |
//! | [`fusion`] | executable transforms → stages |
//! | [`flatten_unzip`] | readers of a Flatten read its inputs directly |
//! | [`side_inputs`] | side inputs become materialization points the consuming stage waits for |

pub(crate) mod combiner_lifting;
pub(crate) mod flatten_unzip;
pub(crate) mod fusion;
pub(crate) mod side_inputs;

#[cfg(test)]
pub(crate) mod testing;
