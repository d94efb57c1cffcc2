//! The one place the process reads the wall clock (the Raft core and the simulator never do;
//! they count ticks). Everything outside that needs a time goes through here.

use std::time::Instant;

/// Monotonic now.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}
