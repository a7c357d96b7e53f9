//! Warm Python SDK harnesses for process environments.
//!
//! Beam Python's harness (`PY -m apache_beam.runners.worker.sdk_worker_main`)
//! spends ~0.7 s importing Beam before it connects, on every job and every
//! worker; Oxbeam's Python worker (`PY -m oxbeam.runners.worker`) ~0.1 s.
//! A runner can have them started ahead: a warm process has done the
//! imports and waits on its standard input for what the cold one would get
//! from its command line and environment (the job's endpoints, worker id,
//! pipeline options), then runs the same `main`. Only jobs whose
//! environment sets no variables but `PYTHONPATH` (which the warm process
//! adds to `sys.path` as the interpreter would have) get one: others may
//! set variables an interpreter or library reads when it starts.
//!
//! A long-lived runner (the job server) keeps a pool per command:
//! [`prestart`] sets how many idle ones a command keeps, and the pool
//! refills when a job's harnesses stop. A one-off run (the Python SDK's
//! `multi_processing` mode) starts its workers while the pipeline is still
//! being built with [`prestart_once`] and drops the ones it did not use
//! with [`release`]. A process launcher [`take`]s one; commands of any
//! other shape always start cold.
//!
//! A warm process ends when its runner does: its standard input closes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The modules of the harnesses kept warm: Beam Python's and Oxbeam's.
const HARNESS_MODULES: [&str; 2] = [
    "apache_beam.runners.worker.sdk_worker_main",
    "oxbeam.runners.worker",
];

/// Imports harness `module`, then runs its `main` with the environment and
/// arguments of the first line of standard input (JSON); exits on end of
/// input. Ctrl-C while it waits is not for it (the runner stops it by
/// closing its input).
fn shim(module: &str) -> String {
    format!(
        "\
import json, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
import {module} as harness
line = sys.stdin.readline()
if not line:
    sys.exit(0)
signal.signal(signal.SIGINT, signal.default_int_handler)
spec = json.loads(line)
os.environ.update(spec['env'])
# As the interpreter does at start: PYTHONPATH after the script's directory.
for entry in reversed(spec['env'].get('PYTHONPATH', '').split(os.pathsep)):
    if entry:
        sys.path.insert(1, entry)
sys.argv = [harness.__file__] + spec['argv']
harness.main(sys.argv)
"
    )
}

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

/// The interpreter and module of `command` if it runs a harness kept warm
/// (`PY -m MODULE`, nothing else, MODULE one of [`HARNESS_MODULES`]).
fn harness_command(command: &str) -> Option<(&str, &str)> {
    let mut parts = command.split_whitespace();
    let python = parts.next()?;
    if parts.next()? != "-m" {
        return None;
    }
    let module = parts.next()?;
    (HARNESS_MODULES.contains(&module) && parts.next().is_none()).then_some((python, module))
}

/// Keeps `count` warm harnesses for `command` from now on (0 stops
/// keeping them); starts the missing ones. Commands that do not run a
/// harness kept warm are ignored.
pub fn prestart(command: &str, count: usize) {
    let command = command.trim();
    if harness_command(command).is_none() {
        return;
    }
    with_pool(|p| {
        p.target.insert(command.to_string(), count);
    });
    refill(command);
}

/// Starts `count` warm harnesses for `command` now, once: the pool is not
/// refilled as they are taken. Commands that do not run a harness kept
/// warm are ignored.
pub fn prestart_once(command: &str, count: usize) {
    start_until(command.trim(), |_| count);
}

/// Stops the idle warm harnesses of `command` and keeps none from now on.
pub fn release(command: &str) {
    let command = command.trim();
    let idle = with_pool(|p| {
        p.target.remove(command);
        p.idle.remove(command).unwrap_or_default()
    });
    for mut child in idle {
        // Its input closes: it exits on its own (see the shim).
        drop(child.stdin.take());
        let _ = child.wait();
    }
}

/// Starts warm processes until `command` has its target of idle ones.
fn refill(command: &str) {
    start_until(command, |p| p.target.get(command).copied().unwrap_or(0));
}

/// Starts warm processes until `command` has `target(pool)` idle ones.
fn start_until(command: &str, target: impl Fn(&Pool) -> usize) {
    let Some((python, module)) = harness_command(command) else {
        return;
    };
    let shim = shim(module);
    loop {
        let missing = with_pool(|p| {
            let target = target(p);
            let idle = p.idle.entry(command.to_string()).or_default();
            idle.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            idle.len() < target
        });
        if !missing {
            return;
        }
        let started = Command::new(python)
            .args(["-c", &shim])
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
    harness_command(command)?;
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
    fn only_python_harness_commands_are_kept_warm() {
        let beam = "apache_beam.runners.worker.sdk_worker_main";
        let cmd = format!("/venv/bin/python -m {beam}");
        assert_eq!(harness_command(&cmd), Some(("/venv/bin/python", beam)));
        assert_eq!(
            harness_command(&format!("  {cmd}  ")),
            Some(("/venv/bin/python", beam))
        );
        assert_eq!(
            harness_command("py -m oxbeam.runners.worker"),
            Some(("py", "oxbeam.runners.worker"))
        );
        assert_eq!(harness_command(&format!("{cmd} --flag")), None);
        assert_eq!(harness_command("python -m other.module"), None);
        assert_eq!(harness_command("python -c oxbeam.runners.worker"), None);
        assert_eq!(harness_command("/opt/boot"), None);
        // Ignored: nothing is kept for them.
        prestart("/opt/boot", 2);
        assert!(take("/opt/boot", &BTreeMap::new(), &[]).is_none());
    }
}
