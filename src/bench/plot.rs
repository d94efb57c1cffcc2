//! SVG plots of a run (latency by percentile; throughput and p99 over time) and of a sweep
//! (the throughput–latency curve), drawn with plotters.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::recorder::Second;

const SIZE: (u32, u32) = (900, 540);

fn plot_error(path: &Path, error: impl std::fmt::Display) -> String {
    format!("cannot draw {}: {error}", path.display())
}

/// The legend of the labelled series, top left.
fn draw_legend<'a>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    path: &Path,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| plot_error(path, e))
}

/// The percentile of x = log10(1 / (1 - p)), as a label: 0 → 0%, 1 → 90%, 2 → 99%, …
fn percentile_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    match p {
        p if p < 1.0 => "0%".to_string(),
        p if p < 99.0 => format!("{p:.0}%"),
        p => {
            let digits = (x.round() as usize).saturating_sub(2);
            format!("{p:.digits$}%")
        }
    }
}

/// Latency (ms) by percentile, HdrHistogram style: the x axis stretches the tail, so 99%,
/// 99.9% and 99.99% are equally far apart. One line per (name, histogram).
pub fn latency_by_percentile(
    path: &Path,
    title: &str,
    lines: &[(&str, &Histogram<u64>)],
) -> Result<(), String> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = lines
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, histogram)| {
            let points = histogram
                .iter_quantiles(5)
                .filter(|step| step.quantile_iterated_to() < 1.0)
                .map(|step| {
                    let x = (1.0 / (1.0 - step.quantile_iterated_to())).log10();
                    (x, step.value_iterated_to() as f64 / 1e3)
                })
                .collect();
            (*name, points)
        })
        .collect();
    let x_max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.0))
        .fold(2.0f64, f64::max)
        .ceil();
    let y_max = lines.iter().map(|(_, h)| h.max()).max().unwrap_or(1) as f64 / 1e3 * 1.05;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max.max(0.001))
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&percentile_label)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| plot_error(path, e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    draw_legend(&mut chart, path)?;
    root.present().map_err(|e| plot_error(path, e))
}

/// Throughput (top) and p99 latency (bottom), one point per second.
pub fn timeline(path: &Path, title: &str, seconds: &[Second]) -> Result<(), String> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| plot_error(path, e))?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 10);
    let x_max = seconds.last().map_or(1.0, |s| s.at_s).max(1.0);
    let panels = [
        (
            &top,
            "requests/s",
            seconds.iter().map(|s| (s.at_s, s.requests_per_s)).collect(),
        ),
        (
            &bottom,
            "p99 (ms)",
            // A second without answers has no latency: drawn as 0, the worst second of an
            // outage read as its best (found by a user).
            seconds
                .iter()
                .filter(|s| s.latencies > 0)
                .map(|s| (s.at_s, s.p99_us as f64 / 1e3))
                .collect(),
        ),
    ];
    for (i, (area, label, points)) in panels.into_iter().enumerate() {
        let points: Vec<(f64, f64)> = points;
        let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max.max(1e-3))
            .map_err(|e| plot_error(path, e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(label)
            .y_label_formatter(&|y| format!("{y:.decimals$}", decimals = decimals_for(y_max)))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        let color = Palette99::pick(i).to_rgba();
        // A line per run of seconds next to one another: one across seconds left out (no
        // answer, no latency) drew an outage as steady latency (found in review).
        for run in runs_of_seconds(&points) {
            chart
                .draw_series(LineSeries::new(run, color.stroke_width(2)))
                .map_err(|e| plot_error(path, e))?;
        }
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| plot_error(path, e))?;
    }
    root.present().map_err(|e| plot_error(path, e))
}

/// `points` (one per second, by its end) cut where a second is missing between two.
fn runs_of_seconds(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    for &point in points {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|last| point.0 - last.0 < 1.5) => run.push(point),
            _ => runs.push(vec![point]),
        }
    }
    runs
}

/// Decimals for the labels of an axis from 0 to `max`, so that its ticks (about ten) read
/// apart: a p99 axis up to 0.4 ms needs two, one up to 40 ms none.
fn decimals_for(max: f64) -> usize {
    match max {
        m if m >= 10.0 => 0,
        m if m >= 1.0 => 1,
        m if m >= 0.1 => 2,
        _ => 3,
    }
}

/// One point per run: throughput (x) against p50 and p99 latency (y), each point labelled
/// with the value of the swept setting.
pub fn sweep(path: &Path, title: &str, points: &[(String, f64, u64, u64)]) -> Result<(), String> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let x_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let y_max = points.iter().map(|p| p.3).max().unwrap_or(1) as f64 / 1e3 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max.max(1e-3))
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("throughput (requests/s)")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| plot_error(path, e))?;
    let lines = [("p50", 0usize), ("p99", 1usize)];
    for (name, which) in lines {
        let color = Palette99::pick(which).to_rgba();
        let series: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.1, [p.2, p.3][which] as f64 / 1e3))
            .collect();
        chart
            .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
            .map_err(|e| plot_error(path, e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(series.iter().zip(points).map(|(&(x, y), point)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 3, color.filled())
                    + Text::new(point.0.clone(), (5, -12), ("sans-serif", 12))
            }))
            .map_err(|e| plot_error(path, e))?;
    }
    draw_legend(&mut chart, path)?;
    root.present().map_err(|e| plot_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_name_the_tail() {
        let labels: Vec<String> = [0.0, 1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(percentile_label)
            .collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn a_timeline_line_is_cut_where_a_second_is_missing() {
        let points = [(1.0, 5.0), (2.0, 6.0), (5.0, 9.0), (6.0, 4.0), (6.5, 4.0)];
        let runs = runs_of_seconds(&points);
        assert_eq!(runs, [points[..2].to_vec(), points[2..].to_vec()]);
    }

    /// Found in review: a p99 axis under 1 ms was labelled "0 0 0 0 1".
    #[test]
    fn a_timeline_of_sub_millisecond_p99_labels_its_axis_apart() {
        let path = std::env::temp_dir().join(format!("cohort-plot-{}.svg", std::process::id()));
        let seconds: Vec<Second> = (1u32..=3)
            .map(|at| Second {
                at_s: f64::from(at),
                requests: 1000,
                requests_per_s: 1000.0,
                latencies: 1000,
                length_s: 1.0,
                errors: 0,
                p50_us: 100,
                p99_us: 200 + 100 * u64::from(at),
                max_us: 600,
            })
            .collect();
        timeline(&path, "t", &seconds).expect("plots");
        let svg = std::fs::read_to_string(&path).expect("written");
        let _ = std::fs::remove_file(&path);
        let labels: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(
            labels.contains(&"0.30") && labels.contains(&"0.40"),
            "{svg}"
        );
    }
}
