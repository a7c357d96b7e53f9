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
//! being built with [`prestart_once`], or forks them from the pipeline's
//! own process, imports done, and hands them over with [`adopt`]; it
//! drops the ones it did not use with [`release`]. A process launcher
//! [`take`]s one; commands of any other shape always start cold.
//!
//! A warm process ends when its runner does: its standard input closes.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// A harness process, with pipes to its standard streams: started from a
/// command, or forked by the Python SDK from the pipeline's process.
pub(crate) enum Harness {
    Spawned(Child),
    Forked(Forked),
}

/// A child of this process it did not start with [`Command`] (see
/// [`adopt`]); reaped here.
pub(crate) struct Forked {
    pid: libc::pid_t,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    status: Option<ExitStatus>,
}

impl Forked {
    fn waitpid(&mut self, flags: libc::c_int) -> std::io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        loop {
            let mut raw = 0;
            // SAFETY: `pid` is this process's child (not reaped before:
            // `status` is unset), and `raw` is a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut raw, flags) };
            if r == self.pid {
                self.status = Some(ExitStatus::from_raw(raw));
                return Ok(self.status);
            }
            if r == 0 {
                return Ok(None);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Harness {
    /// Its exit status if it has exited.
    pub(crate) fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self {
            Harness::Spawned(c) => c.try_wait(),
            Harness::Forked(f) => f.waitpid(libc::WNOHANG),
        }
    }

    /// Waits for it to exit.
    pub(crate) fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Harness::Spawned(c) => c.wait(),
            Harness::Forked(f) => f
                .waitpid(0)?
                .ok_or_else(|| std::io::Error::other("waitpid returned no status")),
        }
    }

    /// Kills it (SIGKILL) unless it has exited.
    pub(crate) fn kill(&mut self) -> std::io::Result<()> {
        match self {
            Harness::Spawned(c) => c.kill(),
            Harness::Forked(f) => {
                if f.waitpid(libc::WNOHANG)?.is_some() {
                    return Ok(());
                }
                // SAFETY: a plain syscall; `pid` is an unreaped child, so
                // it cannot name another process.
                if unsafe { libc::kill(f.pid, libc::SIGKILL) } == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            }
        }
    }

    fn take_stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        match self {
            Harness::Spawned(c) => c.stdin.take().map(|s| Box::new(s) as Box<dyn Write + Send>),
            Harness::Forked(f) => f.stdin.take().map(|s| Box::new(s) as Box<dyn Write + Send>),
        }
    }

    /// Its standard output and error, to read (once).
    pub(crate) fn take_output(&mut self) -> [Option<Box<dyn Read + Send>>; 2] {
        fn boxed<R: Read + Send + 'static>(r: Option<R>) -> Option<Box<dyn Read + Send>> {
            r.map(|r| Box::new(r) as Box<dyn Read + Send>)
        }
        match self {
            Harness::Spawned(c) => [boxed(c.stdout.take()), boxed(c.stderr.take())],
            Harness::Forked(f) => [boxed(f.stdout.take()), boxed(f.stderr.take())],
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }
}

/// Idle warm processes per command, and how many each command keeps.
struct Pool {
    idle: HashMap<String, Vec<Harness>>,
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

/// Adds a warm harness for `command` that the caller forked from this
/// process: `pid` waits, its imports done, for the line a shim reads on
/// its standard input (see [`shim`]) on `stdin`, and writes its output to
/// `stdout` and `stderr`. It is run like the shim's process, then reaped
/// here.
///
/// # Errors
/// `command` does not run a harness kept warm, or a descriptor is not open
/// (nothing is taken over then).
///
/// # Safety
/// `pid` must be an unreaped child of this process that nothing else
/// waits for, and the three descriptors open pipe ends that nothing else
/// owns: they are closed with the harness.
pub unsafe fn adopt(
    command: &str,
    pid: i32,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
) -> Result<(), String> {
    let command = command.trim();
    if harness_command(command).is_none() {
        return Err(format!("`{command}` does not run a harness kept warm"));
    }
    for fd in [stdin, stdout, stderr] {
        // SAFETY: a plain syscall on a descriptor number.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!("descriptor {fd} is not open"));
        }
    }
    // SAFETY: the caller's contract: open descriptors nothing else owns.
    let (stdin, stdout, stderr) = unsafe {
        (
            File::from_raw_fd(stdin),
            File::from_raw_fd(stdout),
            File::from_raw_fd(stderr),
        )
    };
    let harness = Harness::Forked(Forked {
        pid,
        stdin: Some(stdin),
        stdout: Some(stdout),
        stderr: Some(stderr),
        status: None,
    });
    with_pool(|p| p.idle.entry(command.to_string()).or_default().push(harness));
    Ok(())
}

/// Stops the idle warm harnesses of `command` and keeps none from now on.
pub fn release(command: &str) {
    let command = command.trim();
    let idle = with_pool(|p| {
        p.target.remove(command);
        p.idle.remove(command).unwrap_or_default()
    });
    for mut harness in idle {
        // Its input closes: it exits on its own (see the shim).
        drop(harness.take_stdin());
        let _ = harness.wait();
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
            idle.retain_mut(Harness::running);
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
            Ok(child) => with_pool(|p| {
                p.idle
                    .entry(command.to_string())
                    .or_default()
                    .push(Harness::Spawned(child))
            }),
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
) -> Option<Harness> {
    let command = command.trim();
    harness_command(command)?;
    let spec = serde_json::json!({ "env": env, "argv": argv }).to_string();
    let harness = loop {
        let mut harness = with_pool(|p| p.idle.get_mut(command).and_then(Vec::pop))?;
        if !harness.running() {
            continue;
        }
        let Some(mut stdin) = harness.take_stdin() else {
            continue;
        };
        // One line, then end of input.
        if stdin.write_all(format!("{spec}\n").as_bytes()).is_ok() {
            break harness;
        }
        let _ = harness.kill();
        let _ = harness.wait();
    };
    Some(harness)
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

    #[test]
    fn an_adopted_child_is_taken_handed_its_line_and_reaped() {
        use std::os::fd::IntoRawFd;

        // Stands in for a forked worker: echoes the line it is handed.
        let command = "adopted-python -m oxbeam.runners.worker";
        let mut child = Command::new("/bin/sh")
            .args(["-c", "read line; echo \"got $line\"; exit 3"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let fds = [
            child.stdin.take().unwrap().into_raw_fd(),
            child.stdout.take().unwrap().into_raw_fd(),
            child.stderr.take().unwrap().into_raw_fd(),
        ];
        // Not a harness command, or a closed descriptor: refused, nothing
        // taken over.
        // SAFETY: refused before any descriptor is used.
        let refused = unsafe { adopt("/opt/boot", pid, fds[0], fds[1], fds[2]) };
        assert!(refused.unwrap_err().contains("not run a harness"));
        // SAFETY: as above (999_999 is not open).
        let refused = unsafe { adopt(command, pid, fds[0], 999_999, fds[2]) };
        assert_eq!(refused.unwrap_err(), "descriptor 999999 is not open");
        // SAFETY: `pid` is our child, now waited for only here; the
        // descriptors were released from `child`.
        unsafe { adopt(command, pid, fds[0], fds[1], fds[2]) }.unwrap();
        drop(child); // does not wait for or kill the process

        let argv = ["--id=w1".to_string()];
        let mut harness = take(command, &BTreeMap::new(), &argv).expect("the adopted child");
        assert!(take(command, &BTreeMap::new(), &argv).is_none());
        let [Some(mut out), Some(_err)] = harness.take_output() else {
            panic!("no output pipes");
        };
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        assert_eq!(text, "got {\"argv\":[\"--id=w1\"],\"env\":{}}\n");
        assert_eq!(harness.wait().unwrap().code(), Some(3));
        assert_eq!(harness.try_wait().unwrap().and_then(|s| s.code()), Some(3));
        harness.kill().unwrap(); // exited: nothing to do
    }
}
