//! The case format.

use std::path::Path;

use serde::Deserialize;

/// One conformance case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// What it checks, for people.
    #[serde(default)]
    pub description: String,
    /// Capabilities a runner needs to run it (see [`crate::RunnerConfig`]).
    #[serde(default)]
    pub requires: Vec<String>,
    /// The main input.
    pub input: Vec<Input>,
    /// Transforms applied in order to the main input.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// How output lines are written.
    #[serde(default)]
    pub format: Format,
    /// What must come out.
    pub expected: Expected,
}

/// One input element: `[key, value]` or `[key, value, timestamp_millis]`.
/// Without a timestamp, elements carry Beam's minimum timestamp.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// Key and value.
    Kv(String, i64),
    /// Key, value and event time in milliseconds.
    Timestamped(String, i64, i64),
}

impl Input {
    /// The key, value and timestamp (if given).
    pub fn parts(&self) -> (&str, i64, Option<i64>) {
        match self {
            Input::Kv(k, v) => (k, *v, None),
            Input::Timestamped(k, v, t) => (k, *v, Some(*t)),
        }
    }
}

/// Window functions a case can ask for (sizes in milliseconds).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    /// The global window.
    Global,
    /// Fixed windows of this size.
    Fixed(u64),
    /// Sliding windows: `[size, period]`.
    Sliding(u64, u64),
    /// Session windows with this gap.
    Sessions(u64),
}

/// The step vocabulary. Every step maps `PCollection<(String, i64)>` to
/// `PCollection<(String, i64)>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// WindowInto.
    Window(WindowSpec),
    /// Sets each element's timestamp to its value (milliseconds).
    TimestampFromValue,
    /// Adds a constant to every value.
    AddToValue(i64),
    /// Multiplies every value.
    MultiplyValue(i64),
    /// Keeps elements whose value is at least this.
    KeepValuesAtLeast(i64),
    /// CombinePerKey(Sum).
    SumPerKey,
    /// CombinePerKey(Min).
    MinPerKey,
    /// CombinePerKey(Max).
    MaxPerKey,
    /// CombinePerKey(Count): the value becomes the number of elements.
    CountPerKey,
    /// CombinePerKey(Mean), rounded down to an integer.
    MeanPerKey,
    /// GroupByKey, then the sum of each group.
    GroupAndSum,
    /// GroupByKey, then each group's values sorted and concatenated into the
    /// key (`k:[v1,v2]`), value = group size.
    GroupAndList,
    /// Top-N per key: one output per kept value, largest first.
    TopPerKey(usize),
    /// CombineGlobally(Sum) under key `*`.
    SumGlobally,
    /// Count.perElement over `key=value` strings: key `k=v`, value = count.
    CountPerElement,
    /// Distinct elements.
    Distinct,
    /// Reshuffle.
    Reshuffle,
    /// Flatten the collection with itself (every element twice).
    FlattenWithSelf,
    /// Partition by `value mod n`, keep partition `keep`.
    Partition {
        /// Number of partitions.
        n: usize,
        /// Which partition survives.
        keep: usize,
    },
    /// A ParDo with a tagged output: even values go to the main output, odd
    /// values to the tagged one, negated; both are flattened back together.
    SplitEvenOdd,
    /// Each value plus the sum of all values of its window (a singleton side
    /// input computed from the same collection).
    AddWindowTotalFromSideInput,
    /// Each value plus the number of values the side multimap holds for its
    /// key (a multimap side input built from the same collection).
    AddKeyCountFromMultimap,
    /// CoGroupByKey with a second input; value = 1000 × left count + right count.
    CoGroupWith(Vec<Input>),
    /// A DoFn that panics on this value (for failure cases).
    PanicOnValue(i64),
    /// A splittable DoFn: each `(k, v)` becomes `(k, i)` for `i` in
    /// `0..v`, with timestamp `i` ms; the offset range is split into parts
    /// of `part` offsets up front, and each `process` call claims at most
    /// `per_call` offsets, then resumes the rest (a self-checkpoint).
    ExpandRange {
        /// Offsets per restriction part.
        part: i64,
        /// Offsets claimed per `process` call.
        per_call: i64,
    },
}

/// How each output element becomes a line.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `key=value`
    #[default]
    Kv,
    /// `key=value@window` with windows as `[start,end)` or `global`.
    KvWindow,
    /// `key=value@window ts=timestamp`.
    KvWindowTimestamp,
}

/// What a case must produce.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expected {
    /// Exactly these lines, in any order.
    Output(Vec<String>),
    /// The job fails with an error containing every one of these texts.
    Failure(Vec<String>),
}

/// Loads every `*.yaml` file of `dir` (each a list of cases), sorted by file
/// and in file order.
///
/// # Errors
/// Unreadable files, malformed YAML, or duplicate case names.
pub fn load_cases(dir: impl AsRef<Path>) -> anyhow::Result<Vec<Case>> {
    let mut files: Vec<_> = std::fs::read_dir(dir.as_ref())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut cases: Vec<Case> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        // Through a JSON value so enums read as `{variant: data}` maps, the
        // natural YAML spelling (serde_yaml alone wants `!variant` tags).
        let tree: serde_json::Value =
            serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let mut these: Vec<Case> =
            serde_json::from_value(tree).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        cases.append(&mut these);
    }
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        anyhow::ensure!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
    }
    Ok(cases)
}
