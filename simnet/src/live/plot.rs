//! The live run's pictures, drawn with `plotters` (SVG backend, no fonts needed: text is
//! written as SVG text for the viewer to render): the latency histogram of one run, and the
//! scaling plot over several runs' `report.json` files (`simnet plot-scaling`).

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde_json::Value;

use super::report::LiveReport;

const BLUE_BAR: RGBColor = RGBColor(0x4a, 0x78, 0xb5);
const P50: RGBColor = RGBColor(0x2a, 0x9d, 0x3a);
const P95: RGBColor = RGBColor(0xd0, 0x8a, 0x00);
const P99: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const PURPLE: RGBColor = RGBColor(0x7b, 0x4a, 0xb5);

fn drawing<E: std::fmt::Debug>(error: E) -> String {
    format!("could not draw the plot: {error:?}")
}

fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.0}s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.2}")
    }
}

/// The latency histogram of `report` as SVG: one bar per log-spaced bucket of
/// [`LiveReport::histogram`], the p50/p95/p99 buckets marked.
pub fn histogram_svg(report: &LiveReport) -> Result<String, String> {
    let buckets = &report.histogram;
    let count = buckets.len().max(1);
    let max_count = buckets.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let title = format!(
            "submit → verified receipt, {} nodes, faults {}, seed {} ({} samples)",
            report.nodes, report.faults, report.seed, report.latency.samples
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0..count).into_segmented(), 0..max_count + max_count / 10)
            .map_err(drawing)?;
        let label = |value: &SegmentValue<usize>| match value {
            SegmentValue::Exact(index) | SegmentValue::CenterOf(index) => buckets
                .get(*index)
                .map(|(bound, _)| format_ms(*bound))
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(count.div_ceil(4).max(2))
            .x_label_formatter(&label)
            .x_desc("latency (ms, log scale; bucket upper bounds)")
            .y_desc("messages")
            .draw()
            .map_err(drawing)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(BLUE_BAR.filled())
                    .margin(1)
                    .data(
                        buckets
                            .iter()
                            .enumerate()
                            .map(|(index, (_, n))| (index, *n)),
                    ),
            )
            .map_err(drawing)?;
        let marks = [
            ("p50", report.latency.p50_ms, P50),
            ("p95", report.latency.p95_ms, P95),
            ("p99", report.latency.p99_ms, P99),
        ];
        for (name, value, colour) in marks {
            let Some(index) = buckets.iter().position(|(bound, _)| value <= *bound) else {
                continue;
            };
            let x = SegmentValue::CenterOf(index);
            chart
                .draw_series(LineSeries::new(
                    [(x.clone(), 0), (x, max_count)],
                    colour.stroke_width(2),
                ))
                .map_err(drawing)?
                .label(format!("{name} {value:.1} ms"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// One point of the scaling plot: the figures of one run's `report.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRow {
    /// Member nodes.
    pub nodes: u64,
    /// Requests planned.
    pub planned: u64,
    /// Submit → receipt latency, ms.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Peak RSS of all node processes together, MiB.
    pub peak_rss_sum_mib: f64,
    /// CPU seconds of all node processes.
    pub cpu_seconds: f64,
}

impl ScalingRow {
    /// The row from a `report.json` (as `simnet live --report-dir` writes it).
    pub fn from_report(report: &Value) -> Result<ScalingRow, String> {
        let number = |path: &[&str]| -> Result<f64, String> {
            path.iter()
                .try_fold(report, |value, key| value.get(key))
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("the report has no number at `{}`", path.join(".")))
        };
        Ok(ScalingRow {
            nodes: number(&["nodes"])? as u64,
            planned: number(&["planned"])? as u64,
            p50_ms: number(&["latency", "p50_ms"])?,
            p95_ms: number(&["latency", "p95_ms"])?,
            p99_ms: number(&["latency", "p99_ms"])?,
            peak_rss_sum_mib: number(&["resources", "peak_rss_sum_mib"])?,
            cpu_seconds: number(&["resources", "cpu_seconds"])?,
        })
    }
}

/// Reads `DIR/report.json` of every directory, sorted by node count.
pub fn read_scaling_rows(dirs: &[PathBuf]) -> Result<Vec<ScalingRow>, String> {
    if dirs.is_empty() {
        return Err("name at least one report directory (each holding a report.json)".into());
    }
    let mut rows = dirs
        .iter()
        .map(|dir| {
            let path: &Path = &dir.join("report.json");
            let text = std::fs::read_to_string(path).map_err(|error| {
                format!(
                    "cannot read {}: {error} (pass directories written by `simnet live --report-dir`)",
                    path.display()
                )
            })?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
            ScalingRow::from_report(&value).map_err(|error| format!("{}: {error}", path.display()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    rows.sort_by_key(|row| row.nodes);
    Ok(rows)
}

/// The scaling plot: submit → receipt latency (p50/p95/p99, log scale) and peak RSS with CPU
/// seconds, over node count.
pub fn scaling_svg(rows: &[ScalingRow]) -> Result<String, String> {
    let Some(first) = rows.first() else {
        return Err("no runs to plot".into());
    };
    let max_nodes = rows.iter().map(|row| row.nodes).max().unwrap_or(1).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let root = root
            .titled(
                &format!(
                    "simnet live, harsh faults, {} requests at the same offered rate, by node count",
                    first.planned
                ),
                ("sans-serif", 14),
            )
            .map_err(drawing)?;
        let (left, right) = root.split_horizontally(410);

        let latencies = rows
            .iter()
            .flat_map(|row| [row.p50_ms, row.p95_ms, row.p99_ms])
            .filter(|ms| *ms > 0.0);
        let low = latencies.clone().fold(f64::INFINITY, f64::min);
        let high = latencies.fold(0.0, f64::max);
        let (low, high) = if low.is_finite() && high > 0.0 {
            (
                10f64.powf(low.log10().floor()),
                10f64
                    .powf(high.log10().ceil())
                    .max(10f64.powf(low.log10().floor() + 1.0)),
            )
        } else {
            (1.0, 10.0)
        };
        let mut chart = ChartBuilder::on(&left)
            .caption("submit → receipt latency (ms, log)", ("sans-serif", 12))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0..max_nodes + max_nodes / 20, (low..high).log_scale())
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("nodes")
            .draw()
            .map_err(drawing)?;
        type Pick = fn(&ScalingRow) -> f64;
        let series: [(&str, RGBColor, Pick); 3] = [
            ("p50", P50, |row| row.p50_ms),
            ("p95", P95, |row| row.p95_ms),
            ("p99", P99, |row| row.p99_ms),
        ];
        for (name, colour, pick) in series {
            let points: Vec<(u64, f64)> = rows
                .iter()
                .map(|row| (row.nodes, pick(row).max(low)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(drawing)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|at| Circle::new(at, 3, colour.filled())),
                )
                .map_err(drawing)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE)
            .draw()
            .map_err(drawing)?;

        let top = rows
            .iter()
            .flat_map(|row| [row.peak_rss_sum_mib, row.cpu_seconds])
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = ChartBuilder::on(&right)
            .caption("peak RSS (MiB, all nodes) and CPU (s)", ("sans-serif", 12))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0..max_nodes + max_nodes / 20, 0.0..top)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("nodes")
            .draw()
            .map_err(drawing)?;
        let series: [(&str, RGBColor, Pick); 2] = [
            ("peak RSS MiB", BLUE_BAR, |row| row.peak_rss_sum_mib),
            ("CPU s", PURPLE, |row| row.cpu_seconds),
        ];
        for (name, colour, pick) in series {
            let points: Vec<(u64, f64)> = rows.iter().map(|row| (row.nodes, pick(row))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(drawing)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|at| Circle::new(at, 3, colour.filled())),
                )
                .map_err(drawing)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE)
            .draw()
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_dir(root: &Path, nodes: u64, p50_ms: f64) -> PathBuf {
        let dir = root.join(format!("scale-{nodes}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let report = serde_json::json!({
            "nodes": nodes, "planned": 1000,
            "latency": { "p50_ms": p50_ms, "p95_ms": p50_ms * 10.0, "p99_ms": p50_ms * 20.0 },
            "resources": { "peak_rss_sum_mib": nodes as f64 * 14.0, "cpu_seconds": 9.5 },
        });
        std::fs::write(dir.join("report.json"), report.to_string()).expect("written");
        dir
    }

    #[test]
    fn scaling_plot_reads_report_dirs_in_node_order() {
        let root = tempfile::tempdir().expect("temp dir");
        let dirs = [
            report_dir(root.path(), 50, 5.6),
            report_dir(root.path(), 10, 2.5),
        ];
        let rows = read_scaling_rows(&dirs).expect("read");
        assert_eq!(
            rows.iter().map(|row| row.nodes).collect::<Vec<_>>(),
            [10, 50]
        );
        assert_eq!(rows[1].p99_ms, 112.0);
        let svg = scaling_svg(&rows).expect("drawn");
        assert!(svg.starts_with("<svg") && svg.contains("1000 requests"));
        assert!(svg.contains("peak RSS MiB") && svg.contains("p99"));
    }

    #[test]
    fn scaling_plot_says_what_is_missing() {
        let root = tempfile::tempdir().expect("temp dir");
        let error = read_scaling_rows(&[root.path().to_path_buf()]).expect_err("no report");
        assert!(
            error.contains("report.json") && error.contains("--report-dir"),
            "{error}"
        );
        std::fs::write(root.path().join("report.json"), r#"{"nodes": 5}"#).expect("written");
        let error = read_scaling_rows(&[root.path().to_path_buf()]).expect_err("incomplete");
        assert!(error.contains("planned"), "{error}");
        assert!(read_scaling_rows(&[]).is_err());
    }
}
