//! Warm Beam Python SDK harnesses for process environments.
//!
//! Beam Python's harness (`PY -m apache_beam.runners.worker.sdk_worker_main`)
//! spends ~0.7 s importing Beam before it connects, on every job and every
//! worker. A long-lived runner (the job server) can keep a few of them
//! started ahead: a warm process has done the imports and waits on its
//! standard input for what the cold one would get from its command line
//! and environment (the job's endpoints, worker id, pipeline options), then
//! runs the same `main`. Only jobs whose environment sets no variables but
//! `PYTHONPATH` (which the warm process adds to `sys.path` as the
//! interpreter would have) get one: others may set variables an
//! interpreter or library reads when it starts. [`prestart`] fills the
//! pool for a command; a
//! process launcher [`take`]s one, and the pool refills when the job's
//! harnesses stop.
//! Commands of any other shape always start cold.
//!
//! A warm process ends when its runner does: its standard input closes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The module Beam's Python harness runs as.
const HARNESS_MODULE: &str = "apache_beam.runners.worker.sdk_worker_main";

/// Imports the harness, then runs it with the environment and arguments of
/// the first line of standard input (JSON); exits on end of input.
const SHIM: &str = "\
import json, os, sys
import apache_beam.runners.worker.sdk_worker_main as harness
line = sys.stdin.readline()
if not line:
    sys.exit(0)
spec = json.loads(line)
os.environ.update(spec['env'])
# As the interpreter does at start: PYTHONPATH after the script's directory.
for entry in reversed(spec['env'].get('PYTHONPATH', '').split(os.pathsep)):
    if entry:
        sys.path.insert(1, entry)
sys.argv = [harness.__file__] + spec['argv']
harness.main(sys.argv)
";

/// Idle warm processes per command, and how many each command keeps.
struct Pool {
    idle: HashMap<String, Vec<Child>>,
    target: HashMap<String, usize>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

fn with_pool<T>(f: impl FnOnce(&mut Pool) -> T) -> T {
    let mut guard = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let pool = guard.get_or_insert_with(|| Pool {
        idle: HashMap::new(),
        target: HashMap::new(),
    });
    f(pool)
}

/// The interpreter of `command` if it runs Beam's Python harness
/// (`PY -m apache_beam.runners.worker.sdk_worker_main`, nothing else).
pub fn beam_python_interpreter(command: &str) -> Option<&str> {
    let mut parts = command.split_whitespace();
    let python = parts.next()?;
    (parts.next()? == "-m" && parts.next()? == HARNESS_MODULE && parts.next().is_none())
        .then_some(python)
}

/// Keeps `count` warm harnesses for `command` from now on (0 stops
/// keeping them); starts the missing ones. Commands that do not run
/// Beam's Python harness are ignored.
pub fn prestart(command: &str, count: usize) {
    let command = command.trim();
    if beam_python_interpreter(command).is_none() {
        return;
    }
    with_pool(|p| {
        p.target.insert(command.to_string(), count);
    });
    refill(command);
}

/// Starts warm processes until `command` has its target of idle ones.
fn refill(command: &str) {
    let Some(python) = beam_python_interpreter(command) else {
        return;
    };
    loop {
        let missing = with_pool(|p| {
            let target = p.target.get(command).copied().unwrap_or(0);
            let idle = p.idle.entry(command.to_string()).or_default();
            idle.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            idle.len() < target
        });
        if !missing {
            return;
        }
        let started = Command::new(python)
            .args(["-c", SHIM])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match started {
            Ok(child) => with_pool(|p| p.idle.entry(command.to_string()).or_default().push(child)),
            Err(e) => {
                tracing::warn!("cannot prestart a harness `{command}`: {e}");
                return;
            }
        }
    }
}

/// A warm harness for `command`, handed the environment `env` and the
/// arguments `argv` it would have been started with; `None` when there is
/// none (the caller starts one cold).
pub(crate) fn take(
    command: &str,
    env: &BTreeMap<String, String>,
    argv: &[String],
) -> Option<Child> {
    let command = command.trim();
    beam_python_interpreter(command)?;
    let spec = serde_json::json!({ "env": env, "argv": argv }).to_string();
    let child = loop {
        let mut child = with_pool(|p| p.idle.get_mut(command).and_then(Vec::pop))?;
        if !matches!(child.try_wait(), Ok(None)) {
            continue;
        }
        let Some(mut stdin) = child.stdin.take() else {
            continue;
        };
        // One line, then end of input.
        if stdin.write_all(format!("{spec}\n").as_bytes()).is_ok() {
            break child;
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    Some(child)
}

/// Refills every command's pool; called when a job's harnesses are
/// stopped, not when one is taken: starting processes that import Beam
/// while the job runs would take its cores.
pub(crate) fn refill_all() {
    let commands: Vec<String> = with_pool(|p| p.target.keys().cloned().collect());
    for c in commands {
        refill(&c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_beam_python_harness_commands_are_kept_warm() {
        let cmd = "/venv/bin/python -m apache_beam.runners.worker.sdk_worker_main";
        assert_eq!(beam_python_interpreter(cmd), Some("/venv/bin/python"));
        assert_eq!(
            beam_python_interpreter(&format!("  {cmd}  ")),
            Some("/venv/bin/python")
        );
        assert_eq!(beam_python_interpreter(&format!("{cmd} --flag")), None);
        assert_eq!(beam_python_interpreter("python -m other.module"), None);
        assert_eq!(beam_python_interpreter("/opt/boot"), None);
        // Ignored: nothing is kept for them.
        prestart("/opt/boot", 2);
        assert!(take("/opt/boot", &BTreeMap::new(), &[]).is_none());
    }
}
