//! The one place the process reads the wall clock (the Raft core and the simulator never do;
//! they count ticks). Everything outside that needs a time goes through here.

use std::time::{Duration, Instant};

/// Monotonic now.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// The longest wait a deadline is made of: "for ever" in practice, and short enough that
/// adding it to now cannot overflow (found in review: a library caller's `Duration::MAX` as
/// a timeout, meaning no limit, panicked).
pub const WAIT_MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The instant `wait` from now, `wait` no longer than [`WAIT_MAX`].
pub fn deadline_in(wait: Duration) -> Instant {
    now() + wait.min(WAIT_MAX)
}

/// Time since the machine booted, suspensions included: what ticks are counted from (see
/// `shard::tick_clock`), so that a leader's lease, counted in ticks, ends on time even
/// across a suspension of the machine, which `now` does not count.
pub fn since_boot() -> Duration {
    crate::sys::boot_time()
}

/// Nanoseconds since the Unix epoch by the system clock (0 if it is set before 1970): for
/// telling apart things made at different times, never for measuring.
#[allow(clippy::disallowed_methods)]
pub fn wall_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

/// `nanos` since the Unix epoch as a UTC time, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as the log's
/// lines are stamped (days to a date by Howard Hinnant's `civil_from_days`).
pub fn utc_stamp(nanos: u128) -> String {
    let seconds = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let micros = nanos % 1_000_000_000 / 1_000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    // Days since 0000-03-01 in 400-year eras; the year starts in March, so a leap day ends it.
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let (hours, minutes, secs) = (of_day / 3_600, of_day % 3_600 / 60, of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{secs:02}.{micros:06}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a stamp reads as the log's, the epoch, a leap day and a day of this year.
    #[test]
    fn a_utc_stamp_reads_as_the_date_and_time() {
        assert_eq!(utc_stamp(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            utc_stamp(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            utc_stamp(1_796_518_138_011_878_000),
            "2026-12-06T00:48:58.011878Z"
        );
        assert_eq!(
            utc_stamp(1_704_067_199 * 1_000_000_000),
            "2023-12-31T23:59:59.000000Z"
        );
    }
}
