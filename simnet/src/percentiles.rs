//! Latency percentiles for both modes, through an HDR histogram (`hdrhistogram`, three
//! significant figures): nearest-rank quantiles (the smallest sample with at least q of all
//! samples at or below it), exact below 2,048 units and within 0.1 % above.

use hdrhistogram::Histogram;

/// Significant figures the histograms keep.
const SIGNIFICANT_FIGURES: u8 = 3;

/// p50, p95, p99 and the exact maximum of a set of samples (any unit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Percentiles {
    /// Samples counted.
    pub(crate) count: u64,
    /// Median.
    pub(crate) p50: u64,
    /// 95th percentile.
    pub(crate) p95: u64,
    /// 99th percentile.
    pub(crate) p99: u64,
    /// Largest sample, exact.
    pub(crate) max: u64,
}

impl Percentiles {
    /// The percentiles of `samples`; all zero when there are none.
    pub(crate) fn of(samples: impl IntoIterator<Item = u64>) -> Percentiles {
        // An auto-resizing histogram: `record` grows it to fit each sample (only a value past
        // what any histogram can track, about 2^63, is clamped instead).
        let Ok(mut histogram) = Histogram::<u64>::new(SIGNIFICANT_FIGURES) else {
            return Percentiles::default();
        };
        let mut max = 0;
        for sample in samples {
            if histogram.record(sample).is_err() {
                histogram.saturating_record(sample);
            }
            max = max.max(sample);
        }
        if histogram.is_empty() {
            return Percentiles::default();
        }
        // A bucket's reported value is its highest equivalent value, which may lie above the
        // largest sample; no percentile is above the maximum.
        let at = |quantile: f64| histogram.value_at_quantile(quantile).min(max);
        Percentiles {
            count: histogram.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact_nearest_rank() {
        let percentiles = Percentiles::of(1..=100);
        assert_eq!(
            (
                percentiles.p50,
                percentiles.p95,
                percentiles.p99,
                percentiles.max
            ),
            (50, 95, 99, 100)
        );
        assert_eq!(Percentiles::of([7]).p99, 7);
        assert_eq!(Percentiles::of([]), Percentiles::default());
    }

    #[test]
    fn large_values_stay_within_three_significant_figures() {
        // 1..=10,000 seconds in µs: the exact nearest-rank p50 is 5,000,000 µs.
        let percentiles = Percentiles::of((1..=10_000u64).map(|s| s * 1_000_000));
        for (got, exact) in [
            (percentiles.p50, 5_000_000_000u64),
            (percentiles.p95, 9_500_000_000),
            (percentiles.p99, 9_900_000_000),
        ] {
            let error = got.abs_diff(exact) as f64 / exact as f64;
            assert!(error < 0.001, "{got} vs {exact}");
        }
        assert_eq!(percentiles.max, 10_000_000_000);
        assert_eq!(percentiles.count, 10_000);
    }
}
