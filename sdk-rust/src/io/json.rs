//! JSON lines: one serde value per line.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::text::{ReadFromText, WriteToText};
use crate::coder::Element;
use crate::pipeline::{PBegin, PCollection, PTransform};

/// Reads files of JSON values, one per line (blank lines skipped). A line
/// that does not parse as `T` fails the job, naming the line.
#[derive(Debug)]
pub struct ReadJsonLines<T> {
    pattern: String,
    _t: PhantomData<fn() -> T>,
}

impl<T> ReadJsonLines<T> {
    /// Reads the files matching `pattern`.
    pub fn new(pattern: impl Into<String>) -> Self {
        ReadJsonLines {
            pattern: pattern.into(),
            _t: PhantomData,
        }
    }
}

impl<T: Element + DeserializeOwned> PTransform<PBegin> for ReadJsonLines<T> {
    type Output = PCollection<T>;
    fn expand(self, input: &PBegin) -> PCollection<T> {
        input
            .pipeline()
            .apply("ReadLines", ReadFromText::new(self.pattern))
            .flat_map("Parse", |line: &String| {
                if line.trim().is_empty() {
                    return None;
                }
                match serde_json::from_str::<T>(line) {
                    Ok(v) => Some(v),
                    Err(e) => panic!("invalid JSON line ({e}): {line}"),
                }
            })
    }
}

/// Writes values as JSON lines (see [`WriteToText`] for naming and sharding).
#[derive(Debug)]
pub struct WriteJsonLines<T> {
    text: WriteToText,
    _t: PhantomData<fn(T)>,
}

impl<T> WriteJsonLines<T> {
    /// Writes to files named from `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        WriteJsonLines {
            text: WriteToText::new(prefix),
            _t: PhantomData,
        }
    }

    /// Writes `n` shards.
    pub fn with_num_shards(mut self, n: usize) -> Self {
        self.text = self.text.with_num_shards(n);
        self
    }
}

impl<T: Element + Serialize> PTransform<PCollection<T>> for WriteJsonLines<T> {
    type Output = PCollection<String>;
    fn expand(self, input: &PCollection<T>) -> PCollection<String> {
        input
            .map("ToJson", |v: &T| {
                serde_json::to_string(v)
                    .unwrap_or_else(|e| panic!("cannot serialize {v:?} as JSON: {e}"))
            })
            .apply("WriteLines", self.text)
    }
}
