//! Reading a WAL back in the WAL tests.

use cohort::wal::{Storage, Wal, WalEntry};

/// Every live entry of `group`, in order.
pub fn read_all<S: Storage>(wal: &Wal<S>, group: u64) -> Vec<WalEntry> {
    let Some(state) = wal.group(group) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    wal.entries(group, state.first_index..state.last_index + 1, &mut out)
        .expect("read");
    out
}
