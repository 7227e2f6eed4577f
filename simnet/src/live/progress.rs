//! The progress display of `simnet live` on stderr: an `indicatif` bar when stderr is a
//! terminal; otherwise (a CI log, a file) one plain line every five seconds, so a log shows
//! where a long run is without being flooded by redraws.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Width of the bar, in the terminal and in plain lines.
const WIDTH: usize = 30;

/// The run's progress: phase, done of total, and a detail line.
pub(super) struct Progress {
    /// The terminal bar, when stderr is a terminal and progress is on.
    bar: Option<ProgressBar>,
    /// Plain lines instead (stderr is not a terminal, progress is on).
    plain: bool,
    /// When the last plain line was written.
    last_plain: Option<Instant>,
}

impl Progress {
    /// Progress on stderr if `enabled`; silent otherwise.
    pub(super) fn new(enabled: bool) -> Progress {
        let terminal = enabled && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            // `stderr()` draws at most 20 times a second and hides itself if stderr stops
            // being a terminal.
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(&format!(
                "{{prefix:<10}} [{{bar:{WIDTH}}}] {{pos}}/{{len}} {{msg}}"
            ))
            .map(|style| style.progress_chars("#>-"))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            plain: enabled && !terminal,
            last_plain: None,
        }
    }

    /// The current phase (`starting`, `faults`, `converge`), its count and a detail.
    pub(super) fn show(&mut self, phase: &str, done: usize, total: usize, detail: &str) {
        if let Some(bar) = &self.bar {
            bar.set_prefix(phase.to_string());
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(detail.to_string());
            return;
        }
        if !self.plain || self.last_plain.is_some_and(|at| at.elapsed() < PLAIN_EVERY) {
            return;
        }
        self.last_plain = Some(Instant::now());
        let filled = (done * WIDTH)
            .checked_div(total)
            .unwrap_or(WIDTH)
            .min(WIDTH);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
        let mut stderr = std::io::stderr();
        let _ = writeln!(stderr, "{phase:<10} [{bar}] {done}/{total} {detail}");
        let _ = stderr.flush();
    }

    /// Leaves the bar's last state on screen and moves to the next line.
    pub(super) fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
