//! File IO: text files (one element per line) and JSON lines (serde);
//! [`WatchFiles`], the lines of new files as they appear; [`Generate`], a
//! synthetic unbounded source for streaming pipelines; and [`redis`]: Redis
//! Streams as a replayable source and an exactly-once sink.
//!
//! Reading expands a glob into byte-range splits of each file, reshuffles
//! them over workers, and reads the lines that *start* in each split (so a
//! line crossing a split boundary is read once).
//!
//! Writing produces `<prefix>-SSSSS-of-NNNNN<suffix>` files. Each shard is
//! first written to a hidden temporary file next to it; only when every shard
//! has been written does a single finalize step rename them into place. A
//! job that fails leaves no file that looks complete.

mod generate;
mod json;
pub mod redis;
mod text;
mod watch;

pub use generate::Generate;
pub use json::{ReadJsonLines, WriteJsonLines};
pub use text::{ReadFromText, WriteToText, shard_name};
pub use watch::WatchFiles;
