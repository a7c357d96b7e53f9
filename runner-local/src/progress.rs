//! A progress bar on stderr, shown only in a terminal and only once a job
//! has run for more than a second.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub(crate) struct Progress {
    enabled: bool,
    started: Instant,
    total: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(enabled: bool, total_steps: usize) -> Self {
        Progress {
            enabled: enabled && std::io::stderr().is_terminal(),
            started: Instant::now(),
            total: total_steps as u64,
            bar: None,
        }
    }

    /// Whether a bar may be shown (stderr is a terminal and it was asked for).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Updates the bar (creating it after the first second).
    pub fn update(&mut self, done_steps: usize, elements: u64, running: &str) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() && self.started.elapsed() > Duration::from_secs(1) {
            let bar = ProgressBar::new(self.total);
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done_steps as u64);
            bar.set_message(format!("{elements} elements; running {running}"));
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
