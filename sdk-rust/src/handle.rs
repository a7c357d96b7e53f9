//! [`PipelineHandle`]: a pipeline running in the background, to drain,
//! cancel or wait for; and Ctrl-C handling for unbounded pipelines.
//!
//! Ctrl-C (SIGINT) while [`PipelineHandle::wait`] (or [`Pipeline::run`] of
//! an unbounded pipeline) waits: the first one drains the job (sources
//! stop, event time advances to +∞, every window and timer fires, the job
//! ends successfully), the second cancels it. With no job waiting, Ctrl-C
//! exits the process with status 130 as it would without the handler.
//!
//! [`Pipeline::run`]: crate::Pipeline::run

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::runner::{PipelineResult, local_error};
use crate::{Error, Result};

/// Ctrl-Cs received since the handler was installed.
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
/// Jobs waiting in [`PipelineHandle::wait`] (they handle Ctrl-C).
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// Whether the handler thread is running (`Err` if it could not start).
static HANDLER: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// How often a waiting job checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(10);

/// Installs the process's SIGINT handler once: a thread counting Ctrl-Cs.
fn install_interrupt_handler() -> std::result::Result<(), String> {
    HANDLER
        .get_or_init(|| {
            let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])
                .map_err(|e| format!("cannot handle SIGINT: {e}"))?;
            std::thread::Builder::new()
                .name("oxbeam-sigint".into())
                .spawn(move || {
                    for _ in signals.forever() {
                        if WAITING.load(Ordering::SeqCst) == 0 {
                            // Nothing to drain: behave as the default action.
                            std::process::exit(130);
                        }
                        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .map(|_| ())
                .map_err(|e| format!("cannot start the SIGINT thread: {e}"))
        })
        .clone()
}

/// Counts a job that handles Ctrl-C (see the [module docs](self)) from
/// before it starts until it is waited for or dropped.
#[derive(Debug)]
pub(crate) struct InterruptGuard {
    /// Ctrl-Cs received before the job started.
    seen: usize,
}

impl InterruptGuard {
    /// Installs the SIGINT handler if needed; call before starting the job,
    /// so that no Ctrl-C after it started goes to the default action.
    ///
    /// # Errors
    /// [`Error::Runner`] if the handler cannot be installed.
    pub(crate) fn new() -> Result<Self> {
        install_interrupt_handler().map_err(Error::Runner)?;
        WAITING.fetch_add(1, Ordering::SeqCst);
        Ok(InterruptGuard {
            seen: INTERRUPTS.load(Ordering::SeqCst),
        })
    }

    /// Ctrl-Cs since the job started.
    fn count(&self) -> usize {
        INTERRUPTS.load(Ordering::SeqCst).wrapping_sub(self.seen)
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A pipeline started with [`Pipeline::start`](crate::Pipeline::start),
/// running on threads of its own. Unbounded pipelines run until drained or
/// cancelled. Dropping the handle cancels the job and waits for it to stop.
#[derive(Debug)]
pub struct PipelineHandle {
    job: oxbeam_runner_local::JobHandle,
    /// For unbounded pipelines: Ctrl-C drains, a second one cancels.
    interrupts: Option<InterruptGuard>,
}

impl PipelineHandle {
    pub(crate) fn new(
        job: oxbeam_runner_local::JobHandle,
        interrupts: Option<InterruptGuard>,
    ) -> Self {
        PipelineHandle { job, interrupts }
    }

    /// Drains the job: its sources stop, event time advances to +∞ so every
    /// window and timer fires, and the job ends successfully once all that
    /// is processed. A bounded pipeline finishes as it would anyway.
    pub fn drain(&self) {
        self.job.drain();
    }

    /// Stops the job at once: [`PipelineHandle::wait`] returns
    /// [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.job.cancel();
    }

    /// Whether the job has ended (done, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.job.is_finished()
    }

    /// Waits for the job to end. For an unbounded pipeline (or one run with
    /// `--streaming`), the first Ctrl-C since it started drains it and the
    /// second cancels it (see the [module docs](self)).
    ///
    /// # Errors
    /// [`Error::Execution`] when user code or IO fails, [`Error::Cancelled`]
    /// after [`PipelineHandle::cancel`] or a second Ctrl-C,
    /// [`Error::Runner`] for the runner's own failures.
    pub fn wait(self) -> Result<PipelineResult> {
        let PipelineHandle { job, interrupts } = self;
        if let Some(guard) = &interrupts {
            let mut acted = 0;
            while !job.is_finished() {
                let n = guard.count();
                if n > acted {
                    acted = n;
                    if n == 1 {
                        eprintln!("oxbeam: draining the pipeline (Ctrl-C again to cancel)");
                        job.drain();
                    } else {
                        eprintln!("oxbeam: cancelling the pipeline");
                        job.cancel();
                    }
                }
                std::thread::sleep(POLL);
            }
        }
        let result = job.wait();
        drop(interrupts);
        result.map(PipelineResult::from).map_err(local_error)
    }
}
