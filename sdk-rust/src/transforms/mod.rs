//! The SDK's transforms, as methods on [`PCollection`](crate::PCollection) and
//! [`Pipeline`](crate::Pipeline).

pub(crate) mod core;
pub(crate) mod fns;
pub(crate) mod pardo;
