//! Seed sweeps: the same configuration under many seeds, spread over worker threads.
//!
//! Every run is independent and deterministic, so a sweep is embarrassingly parallel: workers
//! take the next seed from a shared counter, and the result lists failures in seed order (not
//! finishing order), so two sweeps of the same range print the same thing.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::config::SimConfig;
use super::{run, SimFailure};

/// A failed seed: what broke and how to replay it.
#[derive(Clone, Debug, Serialize)]
pub struct SweepFailure {
    /// The seed.
    pub seed: u64,
    /// The violated invariant and its detail, as printed.
    pub violation: String,
    /// The command line that replays this run alone.
    pub reproduce: String,
}

impl From<SimFailure> for SweepFailure {
    fn from(failure: SimFailure) -> Self {
        SweepFailure {
            seed: failure.seed,
            violation: failure.violation.to_string(),
            reproduce: failure.reproduce,
        }
    }
}

/// What a sweep found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepReport {
    /// Seeds run.
    pub runs: u64,
    /// Seeds whose run held every invariant.
    pub passed: u64,
    /// The others, by seed.
    pub failures: Vec<SweepFailure>,
    /// Messages accepted over all runs (status updates included).
    pub accepted: u64,
    /// Of which delivered.
    pub delivered: u64,
    /// Of which expired with an event.
    pub expired: u64,
    /// Simulation events processed over all runs.
    pub events: u64,
    /// Slowest convergence after the heal over all runs (virtual ms).
    pub max_convergence_after_heal_ms: u64,
    /// Wall-clock time of the whole sweep.
    pub wall_clock_ms: u64,
    /// Worker threads used.
    pub jobs: usize,
}

impl SweepReport {
    /// Accepted messages simulated per wall-clock second, over the whole sweep.
    pub fn messages_per_wall_second(&self) -> f64 {
        if self.wall_clock_ms == 0 {
            return 0.0;
        }
        self.accepted as f64 * 1000.0 / self.wall_clock_ms as f64
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "sweep      {} seeds on {} threads: {} passed, {} failed\n\
             messages   accepted {}  delivered {}  expired {}\n\
             speed      {} events, {:.1} s wall, {:.0} accepted messages per wall second\n\
             liveness   slowest convergence after heal {} ms (virtual)\n",
            self.runs,
            self.jobs,
            self.passed,
            self.failures.len(),
            self.accepted,
            self.delivered,
            self.expired,
            self.events,
            self.wall_clock_ms as f64 / 1000.0,
            self.messages_per_wall_second(),
            self.max_convergence_after_heal_ms,
        );
        for failure in &self.failures {
            text.push_str(&format!(
                "FAILED     seed={} {}\n           replay: {}\n",
                failure.seed, failure.violation, failure.reproduce
            ));
        }
        text
    }
}

/// Runs `base` once per seed in `seeds` on `jobs` threads (at least one). `progress` is called
/// after each run with (runs finished, failures so far); it may be called from any worker.
pub fn sweep(
    base: &SimConfig,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> SweepReport {
    let started = Instant::now();
    let jobs = jobs.max(1);
    let next = AtomicU64::new(seeds.start);
    let totals = Mutex::new(SweepReport {
        jobs,
        ..SweepReport::default()
    });
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                let mut config = base.clone();
                config.seed = seed;
                let result = run(&config);
                let (runs, failed) = {
                    // A worker that panicked while holding the lock cannot leave totals
                    // half-written (each update below is a few additions), so keep going.
                    let mut totals = totals
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    let report = match &result {
                        Ok(report) => report,
                        Err(failure) => &failure.report,
                    };
                    totals.runs += 1;
                    totals.accepted += report.accepted;
                    totals.delivered += report.delivered;
                    totals.expired += report.expired;
                    totals.events += report.events_processed;
                    totals.max_convergence_after_heal_ms = totals
                        .max_convergence_after_heal_ms
                        .max(report.convergence_after_heal_ms.unwrap_or(0));
                    match result {
                        Ok(_) => totals.passed += 1,
                        Err(failure) => totals.failures.push(failure.into()),
                    }
                    (totals.runs, totals.failures.len() as u64)
                };
                progress(runs, failed);
            });
        }
    });
    let mut report = totals
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    report.failures.sort_by_key(|failure| failure.seed);
    report.wall_clock_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// Parses `A..B` (B excluded) or `A..=B` (B included) into a half-open range.
pub fn parse_seed_range(text: &str) -> Result<Range<u64>, String> {
    let help =
        || format!("`{text}` is not a seed range; write e.g. 1..101 (101 excluded) or 1..=100");
    let (start, end, inclusive) = if let Some((start, end)) = text.split_once("..=") {
        (start, end, true)
    } else if let Some((start, end)) = text.split_once("..") {
        (start, end, false)
    } else {
        return Err(help());
    };
    let start: u64 = start.trim().parse().map_err(|_| help())?;
    let end: u64 = end.trim().parse().map_err(|_| help())?;
    let end = if inclusive {
        end.checked_add(1).ok_or_else(help)?
    } else {
        end
    };
    if end <= start {
        return Err(format!("`{text}` is an empty seed range"));
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_both_ways_and_refuse_nonsense() {
        assert_eq!(parse_seed_range("1..101"), Ok(1..101));
        assert_eq!(parse_seed_range("1..=100"), Ok(1..101));
        assert_eq!(parse_seed_range(" 0 .. 3"), Ok(0..3));
        for bad in [
            "5..5",
            "7..3",
            "1-100",
            "a..b",
            "1..",
            "..9",
            "0..=18446744073709551615",
        ] {
            let error = parse_seed_range(bad).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }
}
