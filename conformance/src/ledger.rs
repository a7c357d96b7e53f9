//! Running cases and keeping the Implemented/Unimplemented ledger.

use std::collections::BTreeMap;
use std::fmt;

use oxbeam::Pipeline;

use crate::case::{Case, Expected};
use crate::interpret::build_with;
use crate::runners::RunnerConfig;

/// What happened to one case on one runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Output (or failure) exactly as expected.
    Passed,
    /// The runner lacks these capabilities; the case did not run.
    Unimplemented(Vec<String>),
    /// Ran, and differed from the expectation.
    Failed(String),
}

/// Runs `case` on `runner` and compares with its expectation.
pub fn run_case(case: &Case, runner: &RunnerConfig) -> Outcome {
    let missing: Vec<String> = case
        .requires
        .iter()
        .filter(|c| !runner.capabilities.contains(&c.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Outcome::Unimplemented(missing);
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(format!("no temp dir: {e}")),
    };
    let prefix = dir.path().join("out");
    let guest = if runner.wasm {
        match crate::wasm::guest() {
            Ok(m) => Some(m),
            Err(e) => return Outcome::Failed(format!("no Wasm guest: {e}")),
        }
    } else {
        None
    };
    let mut options = runner.options.clone();
    if let Some(worker) = &runner.harness {
        // The harness rebuilds this case's pipeline (with the same Wasm
        // guest, so its stages and PCollections are the same) and serves it.
        let (worker, prefix) = (worker.to_string_lossy(), prefix.to_string_lossy());
        let mut words = vec![
            worker.to_string(),
            "--case".into(),
            case.name.clone(),
            "--output".into(),
            prefix.to_string(),
            "--worker".into(),
        ];
        if let Some(m) = &guest {
            let path = dir.path().join("guest.wasm");
            if let Err(e) = std::fs::write(&path, m.as_slice()) {
                return Outcome::Failed(format!("writing the Wasm guest: {e}"));
            }
            words.extend(["--wasm-guest".into(), path.to_string_lossy().into_owned()]);
        }
        let command: Vec<String> = words
            .iter()
            .map(|w| oxbeam::worker::shell_quote(w))
            .collect();
        options.environment_type = oxbeam::EnvironmentType::Process;
        options.environment_config = Some(command.join(" "));
    }
    let p = Pipeline::new(options);
    if guest.is_some() {
        crate::wasm::register(&p);
    }
    build_with(
        case,
        &p,
        prefix.to_str().expect("utf-8 temp path"),
        guest.as_ref(),
    );
    let result = p.run();
    match (&case.expected, result) {
        (Expected::Output(expected), Ok(_)) => match read_lines(dir.path()) {
            Ok(actual) => compare(expected, actual),
            Err(e) => Outcome::Failed(format!("reading output: {e}")),
        },
        (Expected::Output(_), Err(e)) => Outcome::Failed(format!("job failed: {e}")),
        (Expected::Failure(needles), Err(e)) => {
            let text = e.to_string();
            let absent: Vec<&String> = needles
                .iter()
                .filter(|n| !text.contains(n.as_str()))
                .collect();
            if absent.is_empty() {
                Outcome::Passed
            } else {
                Outcome::Failed(format!("error {text:?} lacks {absent:?}"))
            }
        }
        (Expected::Failure(_), Ok(_)) => {
            Outcome::Failed("job succeeded, expected a failure".into())
        }
    }
}

fn read_lines(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("out-") {
            lines.extend(std::fs::read_to_string(&path)?.lines().map(str::to_string));
        }
    }
    Ok(lines)
}

fn compare(expected: &[String], mut actual: Vec<String>) -> Outcome {
    let mut expected = expected.to_vec();
    expected.sort();
    actual.sort();
    if expected == actual {
        return Outcome::Passed;
    }
    // Multiset differences, so a line expected twice but produced once shows.
    let mut extra = actual.clone();
    let mut missing = Vec::new();
    for e in &expected {
        match extra.iter().position(|a| a == e) {
            Some(i) => {
                extra.remove(i);
            }
            None => missing.push(e.clone()),
        }
    }
    Outcome::Failed(format!(
        "expected {} lines, got {}; missing {missing:?}; unexpected {extra:?}",
        expected.len(),
        actual.len()
    ))
}

/// Outcomes of every case on every runner.
#[derive(Debug, Default)]
pub struct Ledger {
    rows: BTreeMap<String, BTreeMap<&'static str, Outcome>>,
    runners: Vec<&'static str>,
}

impl Ledger {
    /// Records one outcome.
    pub fn record(&mut self, case: &str, runner: &'static str, outcome: Outcome) {
        if !self.runners.contains(&runner) {
            self.runners.push(runner);
        }
        self.rows
            .entry(case.to_string())
            .or_default()
            .insert(runner, outcome);
    }

    /// (passed, unimplemented, failed) over all cases and runners.
    pub fn totals(&self) -> (usize, usize, usize) {
        let mut t = (0, 0, 0);
        for o in self.rows.values().flat_map(|r| r.values()) {
            match o {
                Outcome::Passed => t.0 += 1,
                Outcome::Unimplemented(_) => t.1 += 1,
                Outcome::Failed(_) => t.2 += 1,
            }
        }
        t
    }

    /// Every failure as `case on runner: why`.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (case, row) in &self.rows {
            for (runner, o) in row {
                if let Outcome::Failed(why) = o {
                    out.push(format!("{case} on {runner}: {why}"));
                }
            }
        }
        out
    }
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.rows.keys().map(String::len).max().unwrap_or(4).max(4);
        write!(f, "{:width$}", "case")?;
        for r in &self.runners {
            write!(f, "  {r:>14}")?;
        }
        writeln!(f)?;
        for (case, row) in &self.rows {
            write!(f, "{case:width$}")?;
            for r in &self.runners {
                let cell = match row.get(r) {
                    Some(Outcome::Passed) => "Implemented",
                    Some(Outcome::Unimplemented(_)) => "Unimplemented",
                    Some(Outcome::Failed(_)) => "FAILED",
                    None => "-",
                };
                write!(f, "  {cell:>14}")?;
            }
            writeln!(f)?;
        }
        let (p, u, x) = self.totals();
        write!(f, "{p} passed, {x} failed, {u} unimplemented")
    }
}
