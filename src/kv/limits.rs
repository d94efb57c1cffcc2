//! Limits of the key-value state machine, with the reason for each value.

/// Keys index a hash map and travel in every reply: 4 KiB covers composite keys (tenant,
/// table, row) with room to spare and keeps a key a small fraction of a Raft entry.
pub const KEY_BYTES_MAX: usize = 4 << 10;

/// A value is copied into the state machine and replicated as one entry: 1 MiB keeps one
/// write far below the wire's 16 MiB frame limit (`wire::limits`) and the WAL's segment size.
pub const VALUE_BYTES_MAX: usize = 1 << 20;

/// Operations in one request, applied atomically as one entry: enough for any sane batch, few
/// enough that one entry stays a bounded unit of work. The wire's per-request limit must not
/// be larger (checked where the two meet, `proto::client`).
pub const OPERATIONS_PER_COMMAND_MAX: usize = 1_024;

/// Client sessions one group remembers. Past it, the least recently active are forgotten and
/// their clients get `SessionExpired` (they must start over with a new client id).
pub const SESSIONS_MAX: usize = 65_536;

/// Clients whose session was forgotten that one group still remembers by id, oldest
/// forgotten first: their retries of a first request are expired, not applied again (see
/// `session.rs`). 8 bytes each in a snapshot (2 MiB at the bound), about 26 in memory (7 MiB
/// per group at the bound, reached only after that many sessions were evicted).
pub const FORGOTTEN_CLIENTS_MAX: usize = 4 * SESSIONS_MAX;

/// Replies one session keeps for requests its client has not acknowledged yet: the most
/// requests one client may have outstanding. Past it the oldest reply is dropped, and a retry
/// of that request is answered `SessionExpired`, never applied twice.
pub const REPLIES_PER_SESSION_MAX: usize = 4_096;

/// Bytes of replies one session keeps (estimated: a fixed cost per operation result plus
/// the values it holds). Past it the oldest replies are dropped as past the count above: a
/// client that never acknowledges with writes of a thousand operations each would otherwise
/// keep 4,096 replies of about 48 KiB each, on every replica and in every snapshot. The
/// newest reply is always kept.
pub const REPLY_BYTES_PER_SESSION_MAX: usize = 1 << 20;

/// Bytes of replies all sessions of one group keep together: past it the heaviest sessions are
/// forgotten first (a few clients' large answers must not push out every light session), and their
/// clients get `SessionExpired` as past `SESSIONS_MAX`. (In memory each session holds its replies
/// in a ring of at most four times their slots, or 32 slots, of 24 bytes each: at the bounds, 64
/// MiB of replies of 48 bytes each and 65,536 sessions, about 180 MiB more, which the weight leaves
/// out so that every replica, whatever its ring's history, weighs and so forgets the same
/// sessions.)
pub const SESSION_BYTES_MAX: usize = 64 << 20;

/// Value bytes one write's answer may carry (the values its gets read and its failed
/// conditions return): a write whose answer could carry more is refused whole, unapplied.
/// Four largest values. A write's reply is kept for its retries on every replica and in
/// every snapshot (see `SESSION_BYTES_MAX`), and must fit the one frame that answers it, so
/// that an applied write is never answered as refused; reads carry more
/// (`proto::client::ANSWER_VALUE_BYTES_MAX`).
pub const WRITE_RESULT_BYTES_MAX: usize = 4 * VALUE_BYTES_MAX;
