//! What a load run measured: latency histograms (the whole run, each second, each node, each
//! group), counts, and errors by kind.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

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

/// Requests answered by one node, or for one group, counted as the [`Recorder`] counts them.
pub struct Share {
    pub requests: u64,
    pub errors: u64,
    /// To 2 significant digits (a run may have thousands of shares): its percentiles may
    /// read up to 1% above the run's, which keeps 3.
    pub latency_us: Histogram<u64>,
    /// The largest latency recorded, exact (up to [`LATENCY_MAX_US`]): the histogram's read
    /// up to 1% above the run's max (found by a user: every node's max above the run's).
    pub max_us: u64,
}

impl Share {
    fn new() -> Share {
        Share {
            requests: 0,
            errors: 0,
            latency_us: latency_histogram(2),
            max_us: 0,
        }
    }

    fn record(&mut self, latency_us: u64) {
        self.latency_us.saturating_record(latency_us);
        self.max_us = self.max_us.max(latency_us.min(LATENCY_MAX_US));
    }
}

/// One second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    /// Seconds from the start of measurement to the end of this interval.
    pub at_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    /// Answers of requests due in the measured seconds: those the percentiles are of (an
    /// open loop behind its rate answers, first, requests due before them).
    pub latencies: u64,
    /// How long the interval lasted (1 s, but for the last, or one a late tick cut short).
    pub length_s: f64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The closed seconds whose histograms are kept for answers recorded late: a batch's answers
/// are recorded when its last one arrives, up to the client's request timeout (the load's
/// clients keep the default) after the first, and two seconds more for the ticks.
const CLOSED_KEPT: usize = crate::client::REQUEST_TIMEOUT_DEFAULT.as_secs() as usize + 2;

/// The measured seconds in which no answer arrived, by their end (`Second::at_s`): the
/// cluster stalled there, and a closed loop's requests waited rather than failed (found by
/// an operator: six seconds of a write outage were a run of 494 requests/s that passed).
/// None in a run of fewer than 2 answers a second: an open loop of 1 request a second may
/// leave a second without one however fast the cluster (found in review).
pub fn stalled_seconds(timeline: &[Second]) -> Vec<f64> {
    let answers: u64 = timeline.iter().map(|second| second.requests).sum();
    if answers < 2 * timeline.len() as u64 {
        return Vec::new();
    }
    // Not an interval a late tick left short (found in review: closed empty, it was a stall).
    timeline
        .iter()
        .filter(|second| second.requests == 0 && second.length_s >= 0.5)
        .map(|second| second.at_s)
        .collect()
}

/// Of the requests due in the measured window, the most that may fail, in percent, for the
/// run's figures to stand: a failed request has no latency, so the percentiles of the
/// answered ones would hide it.
pub const FAILED_PERCENT_MAX: u64 = 1;

pub struct Recorder {
    /// The measured window, from `start` to `end`: requests due before it (the warm-up) have
    /// no latency recorded, answers that arrive outside it do not count as throughput.
    pub start: Instant,
    pub end: Instant,
    /// From each request's intended start (open loop) or its send (closed loop) to its answer,
    /// for every request due in the window and answered, however late; and, as late as the
    /// open loop's stop, for those it never sent (`unsent`).
    pub latency_us: Histogram<u64>,
    /// From each request's send to its answer: what a generator that ignores coordinated
    /// omission would report. Equal to `latency_us` in a closed loop.
    pub service_us: Histogram<u64>,
    /// Requests due in the window that an open loop never sent: the cluster fell behind the
    /// rate, and the loop stopped sending [`crate::bench::driver::DRAIN_GRACE`] after the
    /// window. Each is in `latency_us` as late as that stop (it would have been later).
    pub unsent: u64,
    /// Answers that arrived within the window, whenever their requests were due: what the
    /// throughput and the CPU per request count. An overloaded open loop answers late, and
    /// its answers after the window are not the cluster's work in it.
    pub requests: u64,
    /// Requests due in the window that failed, by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// The first message of each error kind.
    pub error_examples: BTreeMap<&'static str, String>,
    /// As `requests` and `latency_us`, per node and per group.
    pub per_node: BTreeMap<u64, Share>,
    pub per_group: BTreeMap<u32, Share>,
    /// The seconds closed so far, as shown; a second's figures grow while answers and
    /// failures of it are recorded after it closed (see `closed`).
    pub timeline: Vec<Second>,
    /// What the last [`CLOSED_KEPT`] closed seconds counted, with their start and end: an
    /// answer or failure recorded after its second closed (its batch was handled after the
    /// tick) goes into it there. Of an older second, only its counts grow.
    closed: VecDeque<(Instant, Instant, Share)>,
    interval: Share,
    interval_start: Instant,
}

impl Recorder {
    pub fn new(start: Instant, end: Instant) -> Recorder {
        assert!(start <= end, "the window ends after it starts");
        Recorder {
            start,
            end,
            latency_us: latency_histogram(3),
            service_us: latency_histogram(3),
            requests: 0,
            unsent: 0,
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            per_node: BTreeMap::new(),
            per_group: BTreeMap::new(),
            timeline: Vec::new(),
            closed: VecDeque::new(),
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
        let due = intended >= self.start;
        let arrived = self.start <= done && done < self.end;
        if !(due || arrived) {
            return;
        }
        let latency_us = micros(done - intended);
        if due {
            self.latency_us.saturating_record(latency_us);
            self.service_us.saturating_record(micros(done - sent));
        }
        if arrived {
            self.requests += 1;
            self.in_second(done, |second| {
                second.requests += 1;
                if due {
                    second.record(latency_us);
                }
            });
        }
        let group = self.per_group.entry(group).or_insert_with(Share::new);
        let node = node.map(|node| self.per_node.entry(node).or_insert_with(Share::new));
        for share in std::iter::once(group).chain(node) {
            share.requests += u64::from(arrived);
            if due {
                share.record(latency_us);
            }
        }
    }

    /// Counts what happened at `at` (in the window) in its second: the open one, or the
    /// closed one it fell in, whose line of the timeline is then made again (or, for a second
    /// older than those kept, only its counts).
    fn in_second(&mut self, at: Instant, count: impl FnOnce(&mut Share)) {
        if at >= self.interval_start {
            return count(&mut self.interval);
        }
        let kept_from = self.timeline.len() - self.closed.len();
        // The latest kept second that began by `at`: the one it fell in.
        if let Some(k) = self.closed.iter().rposition(|(from, _, _)| at >= *from) {
            let (from, end, share) = &mut self.closed[k];
            count(share);
            let at_s = (*end - self.start).as_secs_f64();
            self.timeline[kept_from + k] = second_of(share, at_s, *end - *from);
            return;
        }
        // Older than the seconds kept: its counts only.
        let mut counted = Share::new();
        count(&mut counted);
        let at_s = (at - self.start).as_secs_f64();
        let i = (self.timeline.iter())
            .position(|second| at_s < second.at_s)
            .unwrap_or(self.timeline.len() - 1);
        let from_s = i.checked_sub(1).map_or(0.0, |i| self.timeline[i].at_s);
        let second = &mut self.timeline[i];
        second.requests += counted.requests;
        second.errors += counted.errors;
        second.requests_per_s = second.requests as f64 / (second.at_s - from_s).max(1e-9);
    }

    /// A request of `group` meant to start at `intended` failed at `done`, told so by `node`
    /// if by one. As with answers, the failures due in the window are the run's (its counts
    /// and its check), and the timeline's seconds count those that came in them: a request
    /// of the warm-up that failed in the window counted nowhere, and a second could show no
    /// error while requests failed (found in review).
    pub fn failed(
        &mut self,
        group: u32,
        node: Option<u64>,
        intended: Instant,
        done: Instant,
        error: &ClientError,
    ) {
        if self.start <= done && done < self.end {
            self.in_second(done, |second| second.errors += 1);
        }
        if intended < self.start {
            return;
        }
        let kind = error_kind(error);
        *self.errors.entry(kind).or_default() += 1;
        self.error_examples
            .entry(kind)
            .or_insert_with(|| error.to_string());
        let group = self.per_group.entry(group).or_insert_with(Share::new);
        let node = node.map(|node| self.per_node.entry(node).or_insert_with(Share::new));
        for share in std::iter::once(group).chain(node) {
            share.errors += 1;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Requests due in the window and answered: the percentiles are of these and the unsent.
    pub fn answered_count(&self) -> u64 {
        self.latency_us.len() - self.unsent
    }

    /// The requests due at `first`, `first + every`, … before `due_end` that the open loop
    /// gave up sending at `stop`: each one's latency is at least `stop - due`, and that is
    /// what it counts as (none for those due before the window). Recorded in at most
    /// [`UNSENT_STRIDES`] strides of equal counts, each at its smallest latency (its last
    /// request's): millions recorded one by one held the recorder's lock for seconds.
    pub fn unsent(&mut self, first: Instant, every: Duration, due_end: Instant, stop: Instant) {
        let every_ns = every.as_nanos().max(1);
        // The first due in the window: `first` plus whole periods.
        let behind_ns = self.start.saturating_duration_since(first).as_nanos();
        let first = first + nanos(behind_ns.div_ceil(every_ns) * every_ns);
        let count = due_end
            .saturating_duration_since(first)
            .as_nanos()
            .div_ceil(every_ns);
        let strides = count.min(UNSENT_STRIDES);
        for stride in 0..strides {
            let (from, to) = (stride * count / strides, (stride + 1) * count / strides);
            let last_due = first + nanos((to - 1) * every_ns);
            let latency_us = micros(stop.saturating_duration_since(last_due));
            self.latency_us
                .saturating_record_n(latency_us, (to - from) as u64);
        }
        self.unsent += count as u64;
    }

    /// Whether the run's figures stand: an error naming the failures if no request due in
    /// the window was answered, if no answer arrived in half the measured seconds or more,
    /// or if more than [`FAILED_PERCENT_MAX`] percent of them failed.
    pub fn check_failures(&self) -> Result<(), String> {
        let (answered, failed) = (self.answered_count(), self.error_count());
        let first: Vec<String> = (self.errors.iter())
            .map(|(kind, count)| {
                let example = self.error_examples.get(kind).map_or("", String::as_str);
                format!("{count} {kind} (first: {example})")
            })
            .collect();
        // Only where answers arrived: a cluster that answered nothing is down, not outrun
        // (found in review).
        if answered == 0 && self.unsent > 0 && self.requests > 0 {
            // Found by a user: "no request was answered; 0 failed: " after thousands of
            // answers, all of requests due before the measured seconds.
            return Err(format!(
                "no request due in the measured seconds was answered: the open loop fell \
                 behind its rate, and {} due in them were never sent ({} answers arrived, of \
                 requests due before them); {failed} failed{}: lower --rate, or raise \
                 --clients or --depth",
                self.unsent,
                self.requests,
                match first.is_empty() {
                    true => String::new(),
                    false => format!(" ({})", first.join("; ")),
                }
            ));
        }
        if answered == 0 {
            return Err(format!(
                "no request was answered; {failed} failed: {}",
                first.join("; ")
            ));
        }
        // Half is enough (found by a user: a cluster that lost its quorum for 2 of 4 seconds
        // passed, its timeouts under 1% of what a closed loop sends).
        let stalled = stalled_seconds(&self.timeline).len();
        if stalled > 0 && stalled * 2 >= self.timeline.len() {
            return Err(format!(
                "no answer arrived in {stalled} of the {} measured seconds: the cluster \
                 stalled, and its figures are those of the stall ({failed} requests failed{})",
                self.timeline.len(),
                match first.is_empty() {
                    true => String::new(),
                    false => format!(": {}", first.join("; ")),
                }
            ));
        }
        let due = answered + failed;
        if failed * 100 > due * FAILED_PERCENT_MAX {
            return Err(format!(
                "{failed} of {due} requests failed ({:.1}%, more than {FAILED_PERCENT_MAX}%), \
                 so the latency of the answered ones says little: {}",
                failed as f64 * 100.0 / due as f64,
                first.join("; ")
            ));
        }
        Ok(())
    }

    /// End the current interval at `now`, or at the window's end if that came first, and
    /// keep it in the timeline.
    pub fn close_interval(&mut self, now: Instant) -> Second {
        let now = now.min(self.end);
        let interval = std::mem::replace(&mut self.interval, Share::new());
        let second = second_of(
            &interval,
            (now - self.start).as_secs_f64(),
            now - self.interval_start,
        );
        self.closed.push_back((self.interval_start, now, interval));
        if self.closed.len() > CLOSED_KEPT {
            self.closed.pop_front();
        }
        self.interval_start = now;
        self.timeline.push(second.clone());
        second
    }
}

/// The line of the timeline for `share`, a second ending `at_s` into the window and lasting
/// `length`.
fn second_of(share: &Share, at_s: f64, length: std::time::Duration) -> Second {
    Second {
        at_s,
        requests: share.requests,
        requests_per_s: share.requests as f64 / length.as_secs_f64().max(1e-9),
        latencies: share.latency_us.len(),
        length_s: length.as_secs_f64(),
        errors: share.errors,
        p50_us: share.latency_us.value_at_quantile(0.5),
        p99_us: share.latency_us.value_at_quantile(0.99),
        max_us: share.max_us,
    }
}

/// A short stable name for each kind of error, for counting.
pub fn error_kind(error: &ClientError) -> &'static str {
    use crate::proto::client::ErrorCode;
    match error {
        ClientError::NoCluster(_) => "no-cluster",
        ClientError::Invalid(_) => "invalid",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Unavailable { .. } => "unavailable",
        ClientError::Unknown { .. } => "unknown",
        ClientError::Refused { code, .. } => match code {
            ErrorCode::Busy => "busy",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Malformed => "malformed",
            ErrorCode::SessionExpired => "session-expired",
            ErrorCode::Timeout => "server-timeout",
            ErrorCode::NoSpace => "no-space",
            ErrorCode::Unknown => "refused",
        },
    }
}

/// Strides [`Recorder::unsent`] records unsent requests in, at most.
const UNSENT_STRIDES: u128 = 10_000;

/// `ns` nanoseconds (saturating at `u64::MAX`, 584 years).
fn nanos(ns: u128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

fn micros(duration: std::time::Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, LATENCY_MAX_US)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Goal: the unsent of an open loop are counted once each, only those due in the window,
    /// each at least as late as the stop, and a hundred million of them at once take no
    /// longer than ten thousand. Method: due every 1 ms from 1.5 s before a 10 s window, the
    /// stop 2 s after it; then every 100 ns.
    #[test]
    #[allow(clippy::disallowed_methods)]
    fn unsent_requests_count_once_each_as_late_as_the_stop() {
        let start = Instant::now();
        let end = start + Duration::from_secs(10);
        let stop = end + Duration::from_secs(2);
        let mut recorder = Recorder::new(start, end);
        let every = Duration::from_millis(1);
        recorder.unsent(start - Duration::from_millis(1_500), every, end, stop);
        assert_eq!(recorder.unsent, 10_000);
        assert_eq!(recorder.latency_us.len(), 10_000);
        assert_eq!(recorder.answered_count(), 0);
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        let (min, max) = (recorder.latency_us.min(), recorder.latency_us.max());
        assert!(
            near(min, 2_001_000) && near(max, 12_000_000),
            "{min} to {max}"
        );
        let mut many = Recorder::new(start, end);
        many.unsent(start, Duration::from_nanos(100), end, stop);
        assert_eq!(
            (many.unsent, many.latency_us.len()),
            (100_000_000, 100_000_000)
        );
        let p50 = many.latency_us.value_at_quantile(0.5);
        assert!(near(p50, 7_000_000), "p50 {p50}");
    }

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

    /// Goal: latency is of requests due in the window, throughput of answers that arrived in
    /// it; the timeline splits the throughput by when answers arrived. Method: answers at
    /// each edge of a 2 s window, and one recorded after its second was closed.
    #[test]
    fn latency_counts_what_was_due_and_throughput_what_arrived_in_the_window() {
        let t0 = crate::clock::now();
        let start = t0 + Duration::from_secs(1);
        let at = |ms| start + Duration::from_millis(ms);
        let mut recorder = Recorder::new(start, at(2_000));
        // Due in the warm-up, answered in the window: throughput, but no latency.
        recorder.answered(0, Some(1), t0, t0, at(5));
        // Due in the warm-up, answered in it: nothing.
        recorder.answered(0, Some(1), t0, t0, t0);
        recorder.answered(3, Some(2), at(10), at(10), at(12));
        recorder.answered(3, Some(2), at(20), at(30), at(40));
        let timeout = ClientError::Timeout {
            attempts: 3,
            last_error: "x".into(),
        };
        recorder.failed(4, Some(3), at(50), at(60), &timeout);
        // Due in the warm-up, failed in the window: that second's error, not the run's.
        recorder.failed(4, Some(3), t0, at(70), &timeout);
        let first = recorder.close_interval(at(1_000));
        assert_eq!((first.requests, first.errors), (3, 2));
        assert!((first.requests_per_s - 3.0).abs() < 1e-9);
        assert_eq!(recorder.latency_us.len(), 2);
        // The last one: measured from its intended start (20 ms before its answer), and from
        // its send (10 ms) as the service time.
        assert_eq!(
            recorder.latency_us.max(),
            recorder.latency_us.highest_equivalent(20_000)
        );
        assert_eq!(
            recorder.service_us.max(),
            recorder.service_us.highest_equivalent(10_000)
        );
        // Arrived in the first second, recorded in the second: counted in the first, its
        // latency (90 ms, the slowest) too, and so a failure (found in review: such answers
        // were in no second's percentiles, and failures were counted in the open second).
        recorder.answered(3, Some(2), at(900), at(900), at(990));
        recorder.failed(4, Some(3), at(940), at(950), &timeout);
        let late = &recorder.timeline[0];
        assert_eq!((late.requests, late.errors), (4, 3));
        // Exact, not the 2-digit histogram's 90,111 (above the run's max: found by a user).
        assert_eq!(late.max_us, 90_000);
        assert!((late.requests_per_s - 4.0).abs() < 1e-9);
        // Due in the window, answered after it: latency, but no throughput.
        recorder.answered(3, Some(2), at(1_900), at(1_900), at(2_500));
        let second = recorder.close_interval(at(2_600));
        assert_eq!(second.requests, 0);
        assert!((second.at_s - 2.0).abs() < 1e-9, "the window ends at 2 s");
        assert_eq!(recorder.requests, 4);
        assert_eq!(recorder.latency_us.len(), 4);
        assert_eq!(recorder.per_node[&1].requests, 1);
        assert_eq!(recorder.per_node[&1].latency_us.len(), 0);
        assert_eq!(recorder.per_node[&2].requests, 3);
        assert_eq!(recorder.per_node[&2].latency_us.len(), 4);
        assert_eq!(recorder.per_group[&4].errors, 2);
        assert_eq!(recorder.per_node[&3].errors, 2);
        assert_eq!(recorder.errors["timeout"], 2);
        assert_eq!(second.errors, 0);
        assert_eq!(recorder.timeline.len(), 2);
    }

    /// Goal (found in review): a long run keeps the histograms of its last closed seconds
    /// only (one per second grew by 20 KB a second), as many as an answer may be recorded
    /// late (a batch's request timeout), and an answer recorded later than those still
    /// counts in its second. Method: 20 seconds closed; answers of second 2 (counted only)
    /// and of seconds 11 and 19 (latency too) recorded then.
    #[test]
    fn a_long_run_keeps_the_histograms_of_its_last_seconds_only() {
        let start = crate::clock::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut recorder = Recorder::new(start, at(30_000));
        for second in 1..=20 {
            recorder.close_interval(at(second * 1_000));
        }
        assert_eq!(recorder.closed.len(), CLOSED_KEPT);
        recorder.answered(0, Some(1), at(1_500), at(1_500), at(1_600));
        recorder.answered(0, Some(1), at(18_000), at(18_000), at(18_700));
        recorder.answered(0, Some(1), at(10_000), at(10_000), at(10_500));
        assert!(recorder.timeline[10].max_us > 0, "a request timeout late");
        let (old, kept) = (&recorder.timeline[1], &recorder.timeline[18]);
        assert_eq!((old.requests, old.max_us), (1, 0));
        assert_eq!(kept.requests, 1);
        assert_eq!(kept.max_us, 700_000);
    }

    /// Goal: a run stands only if requests were answered and at most 1% of those due failed.
    #[test]
    fn a_run_with_too_many_failures_does_not_stand() {
        let start = crate::clock::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut recorder = Recorder::new(start, at(1_000));
        let busy = ClientError::Refused {
            code: crate::proto::client::ErrorCode::Busy,
            message: "queue full".into(),
        };
        recorder.failed(0, Some(1), at(1), at(2), &busy);
        let none = recorder.check_failures().unwrap_err();
        assert!(none.contains("no request was answered"), "{none}");
        assert!(
            none.contains("1 busy (first: ") && none.contains("queue full"),
            "{none}"
        );
        for _ in 0..99 {
            recorder.answered(0, Some(1), at(1), at(1), at(2));
        }
        recorder.check_failures().expect("1 failure in 100");
        recorder.failed(0, Some(1), at(1), at(2), &busy);
        let many = recorder.check_failures().unwrap_err();
        assert!(many.contains("2 of 101 requests failed"), "{many}");
    }

    /// Goal: a run in which no answer arrived for half its seconds or more does not stand,
    /// though few of its requests failed (a closed loop's wait rather than fail: found by an
    /// operator, six seconds of an outage in eight passed); fewer stalled seconds are said,
    /// not failed. Method: answers in 2, 4 and 5 of 8 seconds; an open loop far behind; a
    /// run of one answer in 4 s.
    #[test]
    fn a_run_that_stalled_most_of_its_seconds_does_not_stand() {
        let start = crate::clock::now();
        let at = |ms| start + Duration::from_millis(ms);
        let answered_in = |seconds: &[u64]| {
            let mut recorder = Recorder::new(start, at(8_000));
            for second in 0..8 {
                if seconds.contains(&second) {
                    for _ in 0..100 {
                        let ms = second * 1_000 + 500;
                        recorder.answered(0, Some(1), at(ms), at(ms), at(ms + 1));
                    }
                }
                recorder.close_interval(at((second + 1) * 1_000));
            }
            recorder
        };
        let stalled = answered_in(&[0, 1]);
        assert_eq!(
            stalled_seconds(&stalled.timeline),
            [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
        let why = stalled.check_failures().unwrap_err();
        assert!(why.contains("no answer arrived in 6 of the 8"), "{why}");
        // An open loop so far behind that what was due in the window never went out.
        let mut behind = Recorder::new(start, at(1_000));
        behind.unsent(at(0), Duration::from_millis(1), at(1_000), at(3_000));
        // Nothing arrived: the cluster is down, not outrun.
        let why = behind.check_failures().unwrap_err();
        assert!(why.contains("no request was answered"), "{why}");
        behind.requests = 500;
        let why = behind.check_failures().unwrap_err();
        assert!(why.contains("the open loop fell behind its rate"), "{why}");
        assert!(why.contains("500 answers arrived"), "{why}");
        let half = answered_in(&[0, 2, 4, 6]);
        assert_eq!(stalled_seconds(&half.timeline).len(), 4);
        let why = half.check_failures().unwrap_err();
        assert!(why.contains("no answer arrived in 4 of the 8"), "{why}");
        let three = answered_in(&[0, 2, 3, 4, 6]);
        three.check_failures().expect("3 stalled seconds of 8");
        // A tick woken late closes an empty interval of no length after the last: no stall.
        let mut late = Recorder::new(start, at(2_000));
        for (answered_at, closed_at) in [(500, 1_000), (1_500, 2_000)] {
            for _ in 0..100 {
                recorder_answer_once(&mut late, at(answered_at));
            }
            late.close_interval(at(closed_at));
        }
        late.close_interval(at(2_600));
        assert_eq!(late.timeline.len(), 3);
        assert!(stalled_seconds(&late.timeline).is_empty());
        late.check_failures().expect("no stall");
        // Fewer than 2 answers a second: an open loop of 1 request a second, not a stall.
        let mut sparse = Recorder::new(start, at(4_000));
        recorder_answer_once(&mut sparse, at(500));
        for second in 1..=4 {
            sparse.close_interval(at(second * 1_000));
        }
        assert!(stalled_seconds(&sparse.timeline).is_empty());
        sparse
            .check_failures()
            .expect("one answer in 4 s, as offered");
    }

    fn recorder_answer_once(recorder: &mut Recorder, at: Instant) {
        recorder.answered(0, Some(1), at, at, at + Duration::from_millis(1));
    }
}
