//! What a load run measured: latency histograms (the whole run, each second, each node, each
//! group), counts, and errors by kind.

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::ClientError;

/// The slowest latency a histogram holds; slower ones are recorded as this.
pub const LATENCY_MAX_US: u64 = 60_000_000;

/// A histogram of latencies in µs, 1 µs to a minute, `digits` significant digits.
pub fn latency_histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, digits).expect("valid bounds")
}

/// The percentiles a report shows, in µs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        let at = |q: f64| histogram.value_at_quantile(q);
        Percentiles {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            p9999_us: at(0.9999),
            max_us: histogram.max(),
        }
    }
}

/// Requests answered by one node, or for one group.
pub struct Share {
    pub requests: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

impl Share {
    fn new() -> Share {
        Share {
            requests: 0,
            errors: 0,
            latency_us: latency_histogram(2),
        }
    }
}

/// One second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    /// Seconds from the start of measurement to the end of this interval.
    pub at_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

pub struct Recorder {
    /// Requests that started before this (the warm-up) are not recorded.
    pub start: Instant,
    /// From each request's intended start (open loop) or its send (closed loop) to its answer.
    pub latency_us: Histogram<u64>,
    /// From each request's send to its answer: what a generator that ignores coordinated
    /// omission would report. Equal to `latency_us` in a closed loop.
    pub service_us: Histogram<u64>,
    pub requests: u64,
    pub errors: BTreeMap<&'static str, u64>,
    /// The first message of each error kind.
    pub error_examples: BTreeMap<&'static str, String>,
    pub per_node: BTreeMap<u64, Share>,
    pub per_group: BTreeMap<u32, Share>,
    pub timeline: Vec<Second>,
    interval: Share,
    interval_start: Instant,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            latency_us: latency_histogram(3),
            service_us: latency_histogram(3),
            requests: 0,
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            per_node: BTreeMap::new(),
            per_group: BTreeMap::new(),
            timeline: Vec::new(),
            interval: Share::new(),
            interval_start: start,
        }
    }

    /// A request of `group`, meant to start at `intended` and sent at `sent`, was answered
    /// by `node` at `done`.
    pub fn answered(
        &mut self,
        group: u32,
        node: Option<u64>,
        intended: Instant,
        sent: Instant,
        done: Instant,
    ) {
        if intended < self.start {
            return;
        }
        let latency_us = micros(done - intended);
        self.requests += 1;
        self.latency_us.saturating_record(latency_us);
        self.service_us.saturating_record(micros(done - sent));
        self.interval.requests += 1;
        self.interval.latency_us.saturating_record(latency_us);
        let group = self.per_group.entry(group).or_insert_with(Share::new);
        group.requests += 1;
        group.latency_us.saturating_record(latency_us);
        if let Some(node) = node {
            let node = self.per_node.entry(node).or_insert_with(Share::new);
            node.requests += 1;
            node.latency_us.saturating_record(latency_us);
        }
    }

    /// A request of `group` meant to start at `intended` failed.
    pub fn failed(&mut self, group: u32, intended: Instant, error: &ClientError) {
        if intended < self.start {
            return;
        }
        let kind = error_kind(error);
        *self.errors.entry(kind).or_default() += 1;
        self.error_examples
            .entry(kind)
            .or_insert_with(|| error.to_string());
        self.interval.errors += 1;
        self.per_group
            .entry(group)
            .or_insert_with(Share::new)
            .errors += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// End the current interval at `now` and keep it in the timeline.
    pub fn close_interval(&mut self, now: Instant) -> Second {
        let interval = std::mem::replace(&mut self.interval, Share::new());
        let length_s = (now - self.interval_start).as_secs_f64().max(1e-9);
        self.interval_start = now;
        let second = Second {
            at_s: (now - self.start).as_secs_f64(),
            requests: interval.requests,
            requests_per_s: interval.requests as f64 / length_s,
            errors: interval.errors,
            p50_us: interval.latency_us.value_at_quantile(0.5),
            p99_us: interval.latency_us.value_at_quantile(0.99),
            max_us: interval.latency_us.max(),
        };
        self.timeline.push(second.clone());
        second
    }
}

/// A short stable name for each kind of error, for counting.
pub fn error_kind(error: &ClientError) -> &'static str {
    use crate::proto::client::ErrorCode;
    match error {
        ClientError::NoCluster(_) => "no-cluster",
        ClientError::Invalid(_) => "invalid",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Unknown { .. } => "unknown",
        ClientError::Refused { code, .. } => match code {
            ErrorCode::Busy => "busy",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Malformed => "malformed",
            ErrorCode::SessionExpired => "session-expired",
            ErrorCode::Timeout => "server-timeout",
            ErrorCode::Unknown => "refused",
        },
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, LATENCY_MAX_US)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_of_one_to_ten_thousand() {
        let mut histogram = latency_histogram(3);
        for value in 1..=10_000 {
            histogram.record(value).unwrap();
        }
        let p = Percentiles::of(&histogram);
        assert_eq!(p.count, 10_000);
        // Three significant digits: values are exact to within 0.1%.
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(p.p50_us, 5_000), "p50 {}", p.p50_us);
        assert!(near(p.p90_us, 9_000), "p90 {}", p.p90_us);
        assert!(near(p.p99_us, 9_900), "p99 {}", p.p99_us);
        assert!(near(p.p999_us, 9_990), "p99.9 {}", p.p999_us);
        assert!(near(p.max_us, 10_000), "max {}", p.max_us);
        assert!((p.mean_us - 5_000.5).abs() < 5.0, "mean {}", p.mean_us);
    }

    #[test]
    fn one_slow_request_in_a_thousand_is_the_p999_not_the_p99() {
        let mut histogram = latency_histogram(3);
        for _ in 0..999 {
            histogram.record(100).unwrap();
        }
        histogram.record(500_000).unwrap();
        let p = Percentiles::of(&histogram);
        assert_eq!((p.p50_us, p.p99_us), (100, 100));
        assert!(p.p9999_us >= 499_000 && p.max_us >= 499_000);
    }

    #[test]
    fn the_warm_up_is_not_recorded_and_intervals_split_the_run() {
        let t0 = crate::clock::now();
        let start = t0 + Duration::from_secs(1);
        let mut recorder = Recorder::new(start);
        // Meant to start during the warm-up: ignored even though it ended after it.
        recorder.answered(0, Some(1), t0, t0, start + Duration::from_millis(5));
        let at = |ms| start + Duration::from_millis(ms);
        recorder.answered(3, Some(2), at(10), at(10), at(12));
        recorder.answered(3, Some(2), at(20), at(30), at(40));
        let timeout = ClientError::Timeout {
            attempts: 3,
            last_error: "x".into(),
        };
        recorder.failed(4, at(50), &timeout);
        let first = recorder.close_interval(at(1_000));
        assert_eq!((first.requests, first.errors), (2, 1));
        assert!((first.requests_per_s - 2.0).abs() < 1e-9);
        // The second one: measured from its intended start (20 ms before its answer), and
        // from its send (10 ms) as the service time.
        assert_eq!(
            recorder.latency_us.max(),
            recorder.latency_us.highest_equivalent(20_000)
        );
        assert_eq!(
            recorder.service_us.max(),
            recorder.service_us.highest_equivalent(10_000)
        );
        assert_eq!(recorder.per_node[&2].requests, 2);
        assert_eq!(recorder.per_group[&4].errors, 1);
        assert_eq!(recorder.errors["timeout"], 1);
        let second = recorder.close_interval(at(2_000));
        assert_eq!(second.requests, 0);
        assert_eq!(recorder.timeline.len(), 2);
    }
}
