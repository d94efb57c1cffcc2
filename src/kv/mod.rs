//! The replicated key-value state machine: commands as they sit in Raft entries, their
//! application with exactly-once client sessions, and snapshots for log compaction.
//!
//! Operations: get, put, delete, compare-and-swap and put-if-absent, in batches applied
//! together (one entry, nothing between them; each condition guards its own operation only,
//! not the batch). Reads may also be served outside the log ([`KvStore::get`]) once the caller has
//! established the consistency it needs (ReadIndex, lease, or none for stale reads).

mod blob;
mod command;
pub mod limits;
mod session;
mod snapshot;
mod store;
mod table;

pub use command::{Command, CommandError, CommandRef, Op, OpRef, Ops};
pub use session::Results;
pub use snapshot::{SnapshotError, SnapshotJob};
pub use store::{KvStore, OpResult, Reply, written};
