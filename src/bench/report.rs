//! A run's results for people and programs: the summary table, the JSON report, and
//! HdrHistogram percentile-distribution (.hgrm) files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::raw_disk::RawFdatasync;

use super::cpu::CpuUse;
use super::recorder::{LATENCY_MAX_US, Percentiles, Second, Share};

/// The figures of a run against a null server: the generator's own ceiling.
#[derive(Clone, Debug, Serialize)]
pub struct Ceiling {
    pub seconds: f64,
    pub requests_per_s: f64,
    pub latency: Percentiles,
}

/// One node's or group's part of a run.
#[derive(Clone, Debug, Serialize)]
pub struct ShareRow {
    pub id: u64,
    pub requests: u64,
    pub errors: u64,
    /// This one's fraction of all answered requests.
    pub share: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Everything a run measured, as the JSON report holds it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub cohort_version: &'static str,
    /// What was measured, in words (the summary's first line).
    pub title: String,
    /// The cluster: how it was started or reached.
    pub cluster: serde_json::Value,
    /// The load's settings.
    pub load: serde_json::Value,
    pub seconds: f64,
    /// Answers that arrived within the measured window (see `Recorder::requests`).
    pub requests: u64,
    pub requests_per_s: f64,
    /// The open loop's rate, to read `requests_per_s` against; None in a closed loop.
    pub offered_requests_per_s: Option<f64>,
    /// Requests due in the window that the open loop never sent (it fell behind its rate
    /// and stopped `DRAIN_GRACE` after the window): in `latency` as late as that stop.
    pub unsent: u64,
    /// Requests due in the window that failed, by kind: they have no latency.
    pub errors: BTreeMap<&'static str, u64>,
    pub error_examples: BTreeMap<&'static str, String>,
    /// From each request's intended start (coordinated omission corrected in an open loop) to
    /// the arrival of its answer, of every request due in the window and answered; and to
    /// the open loop's stop for those it never sent (`unsent`; the timeline's seconds leave
    /// them out).
    pub latency: Percentiles,
    /// From each request's send: what an uncorrected generator would report.
    pub service_time: Percentiles,
    /// The latency histograms' top ([`LATENCY_MAX_US`]): a latency above it is recorded as
    /// it, so a figure equal to it means at least that.
    pub latency_max_us: u64,
    pub timeline: Vec<Second>,
    pub per_node: Vec<ShareRow>,
    pub per_group: Vec<ShareRow>,
    pub ceiling: Option<Ceiling>,
    /// Why a ceiling that was asked for is not in `ceiling` (cut short, or its requests
    /// failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling_left_out: Option<String>,
    /// How this machine's idle CPUs wait (see `idle.rs`), if the kernel says.
    pub idle_cpus: Option<String>,
    /// A raw durable 4 KiB write in the data folder, made as the WALs sync (embedded
    /// clusters).
    #[serde(flatten)]
    pub raw_fdatasync: Option<RawFdatasync>,
    /// CPU per request: the generator's, each local node's, and the machine's.
    pub cpu: CpuUse,
}

pub fn share_rows<K: Copy + Into<u64>>(shares: &BTreeMap<K, Share>, total: u64) -> Vec<ShareRow> {
    shares
        .iter()
        .map(|(&id, share)| ShareRow {
            id: id.into(),
            requests: share.requests,
            errors: share.errors,
            share: share.requests as f64 / total.max(1) as f64,
            p50_us: share.latency_us.value_at_quantile(0.5),
            p99_us: share.latency_us.value_at_quantile(0.99),
            max_us: share.max_us,
        })
        .collect()
}

/// A latency for people: µs below 10 ms... in the unit that keeps three digits. The
/// histograms end at [`LATENCY_MAX_US`] and hold anything longer there: such a figure reads
/// as at least that.
pub fn duration_text(us: u64) -> String {
    if us >= LATENCY_MAX_US {
        return format!("≥ {} s", LATENCY_MAX_US / 1_000_000);
    }
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// The summary table printed at the end of a run.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", report.title);
    let errors = report.errors.values().sum::<u64>();
    let _ = writeln!(
        out,
        "throughput  {:.0} requests/s ({} answers in the {:.2} s measured; {} requests failed)",
        report.requests_per_s, report.requests, report.seconds, errors
    );
    let stalled = super::recorder::stalled_seconds(&report.timeline);
    if let Some(first) = stalled.first() {
        let _ = writeln!(
            out,
            "stalled     no answer arrived in {} of the {} measured seconds (the first ending at \
             {first:.1} s): the throughput is an average over the stall, not a steady rate",
            stalled.len(),
            report.timeline.len()
        );
    }
    if let Some(offered) = report.offered_requests_per_s {
        let _ = writeln!(
            out,
            "offered     {offered:.0} requests/s (open loop); the throughput is {:.0}% of it",
            100.0 * report.requests_per_s / offered.max(1e-9)
        );
    }
    if report.latency.count == 0 {
        let _ = writeln!(
            out,
            "latency     none: no request due in the measured time was answered"
        );
    } else {
        latency_rows(&mut out, report, errors);
    }
    if report.unsent > 0 {
        let _ = writeln!(
            out,
            "unsent      {} requests due in the measured time were never sent: the cluster (or \
             the generator) fell behind the rate, and the generator stopped sending {} s after \
             the end; each counts in the latency as late as that stop (it would have been \
             later)",
            report.unsent,
            super::driver::DRAIN_GRACE.as_secs()
        );
    }
    for (kind, count) in &report.errors {
        let example = report.error_examples.get(kind).map_or("", String::as_str);
        let _ = writeln!(out, "errors      {count} {kind} (first: {example})");
    }
    if !report.per_node.is_empty() {
        let _ = writeln!(out, "per node    requests   share        p50        p99");
        for row in &report.per_node {
            let _ = writeln!(
                out,
                "  node {:<4} {:>9} {:>6.1}% {:>10} {:>10}",
                row.id,
                row.requests,
                row.share * 100.0,
                duration_text(row.p50_us),
                duration_text(row.p99_us)
            );
        }
    }
    if let Some(line) = group_spread(&report.per_group) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(ceiling) = &report.ceiling {
        // An open loop's ceiling runs closed: its rate is what the generator can reach.
        let load = match report.offered_requests_per_s {
            None => "same load",
            Some(_) => "closed loop, same clients, depth and batch",
        };
        let _ = writeln!(
            out,
            "ceiling     the generator against a null server of the same shape, in this process \
             and on as many threads ({:.1} s, {load}): {:.0} requests/s, p50 {}, p99 {}; this \
             run reached {:.0}% of it",
            ceiling.seconds,
            ceiling.requests_per_s,
            duration_text(ceiling.latency.p50_us),
            duration_text(ceiling.latency.p99_us),
            100.0 * report.requests_per_s / ceiling.requests_per_s.max(1e-9)
        );
    }
    if let Some(why) = &report.ceiling_left_out {
        let _ = writeln!(out, "ceiling     left out: {why}");
    }
    if let Some(idle) = &report.idle_cpus {
        let _ = writeln!(out, "idle CPUs   {idle}");
    }
    if let Some(raw) = &report.raw_fdatasync {
        let _ = writeln!(out, "raw limit   {}", raw.words());
    }
    out.push_str(&super::cpu::summary_lines(&report.cpu));
    out
}

/// The latency table of the summary, and what its percentiles are of.
fn latency_rows(out: &mut String, report: &Report, errors: u64) {
    let _ = writeln!(
        out,
        "latency     {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    let row = |out: &mut String, name: &str, p: &Percentiles| {
        let cells = [
            p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.p9999_us, p.max_us,
        ]
        .map(duration_text);
        let _ = writeln!(
            out,
            "  {name:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
        );
    };
    row(out, "request", &report.latency);
    if report.service_time != report.latency {
        row(out, "service", &report.service_time);
        let _ = writeln!(
            out,
            "  (request: from each request's intended start, as the open loop scheduled it; \
             service: from its send, hiding queueing in the generator)"
        );
    }
    let failed = match errors {
        0 => "none failed".to_string(),
        _ => format!("the {errors} that failed have no latency"),
    };
    let unsent = match report.unsent {
        0 => String::new(),
        unsent => format!(" or never sent ({unsent}, see below)"),
    };
    let _ = writeln!(
        out,
        "  (of the {} requests due in the measured time and answered{unsent}, late ones \
         included; {failed})",
        report.latency.count
    );
}

/// One line on how evenly the groups shared the load.
fn group_spread(groups: &[ShareRow]) -> Option<String> {
    let requests = groups.iter().map(|g| g.requests);
    let (min, max) = (requests.clone().min()?, requests.clone().max()?);
    let mean = requests.sum::<u64>() as f64 / groups.len() as f64;
    let slowest = groups.iter().max_by_key(|g| g.p99_us)?;
    let fastest = groups.iter().min_by_key(|g| g.p99_us)?;
    Some(format!(
        "per group   {} groups: requests {min} to {max} (max/mean {:.2}); p99 from {} \
         (group {}) to {} (group {})",
        groups.len(),
        max as f64 / mean.max(1e-9),
        duration_text(fastest.p99_us),
        fastest.id,
        duration_text(slowest.p99_us),
        slowest.id
    ))
}

/// A histogram as HdrHistogram's percentile-distribution text (values in milliseconds), the
/// format its plotter and other tools read.
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for step in histogram.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let value_ms = step.value_iterated_to() as f64 / 1e3;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(
                out,
                "{value_ms:>12.3} {quantile:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(out, "{value_ms:>12.3} {quantile:>2.12} {total:>10}");
        }
    }
    let sub_buckets = (2 * 10u64.pow(u32::from(histogram.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        histogram.mean() / 1e3,
        histogram.stdev() / 1e3
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        histogram.max() as f64 / 1e3,
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_buckets
    );
    if histogram.max() >= LATENCY_MAX_US {
        let _ = writeln!(
            out,
            "#[Clipped: latencies above {:.3} are recorded as it; its values mean at least it]",
            LATENCY_MAX_US as f64 / 1e3
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::recorder::latency_histogram;

    /// Goal: a latency past the histograms' end (held at it) does not print as measured.
    #[test]
    fn latencies_past_the_histograms_end_print_as_at_least_it() {
        let mut histogram = latency_histogram(3);
        histogram.saturating_record(90_000_000);
        assert_eq!(duration_text(histogram.max()), "≥ 60 s");
        assert_eq!(duration_text(59_000_000), "59.00 s");
        // The histogram file says so too (review 234: it gave the top as measured).
        assert!(hgrm(&histogram).contains("#[Clipped"));
        let mut below = latency_histogram(3);
        below.record(59_000_000).unwrap();
        assert!(!hgrm(&below).contains("#[Clipped"));
    }

    #[test]
    fn hgrm_lists_cumulative_counts_up_to_the_maximum() {
        let mut histogram = latency_histogram(3);
        for us in 1..=1_000 {
            histogram.record(us * 10).unwrap();
        }
        let text = hgrm(&histogram);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        let first = &rows[0];
        let last = rows.last().unwrap();
        assert_eq!(first[0], "0.010");
        // The top row is the highest value equivalent to 10 ms at three digits.
        assert_eq!(last[..3], ["10.007", "1.000000000000", "1000"]);
        assert_eq!(last.len(), 3, "the 100% row has no 1/(1-p) column");
        // Counts never decrease; percentiles climb to 1.
        let counts: Vec<u64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        // The median row: about 5 ms at about 500 requests.
        let median = rows
            .iter()
            .find(|r| r[1].parse::<f64>().unwrap() >= 0.5)
            .unwrap();
        assert_eq!(median[0], "5.003");
        assert!(text.contains("#[Max     =       10.007, Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn durations_keep_three_digits_in_a_readable_unit() {
        assert_eq!(duration_text(812), "812 µs");
        assert_eq!(duration_text(13_250), "13.25 ms");
        assert_eq!(duration_text(1_500_000), "1.50 s");
    }
}
