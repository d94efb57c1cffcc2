//! The one place the process reads the wall clock (the Raft core and the simulator never do;
//! they count ticks). Everything outside that needs a time goes through here.

use std::time::{Duration, Instant};

/// Monotonic now.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
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
