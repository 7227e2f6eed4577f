//! The progress display of `simnet live` on stderr.

use std::io::Write;
use std::time::{Duration, Instant};

/// A tiny progress bar on stderr (a line every five seconds when stderr is not a terminal).
pub(super) struct Progress {
    pub(super) enabled: bool,
    pub(super) terminal: bool,
    pub(super) last: Instant,
}

impl Progress {
    pub(super) fn show(&mut self, phase: &str, done: usize, total: usize, detail: &str) {
        if !self.enabled {
            return;
        }
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let width = 30;
        let filled = (done * width)
            .checked_div(total)
            .unwrap_or(width)
            .min(width);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
        let line = format!("{phase:<10} [{bar}] {done}/{total} {detail}");
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r{line:<110}");
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }

    pub(super) fn finish(&mut self) {
        if self.enabled && self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}
