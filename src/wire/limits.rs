//! Every limit of the wire format and the transport, with the reason for its value.
//!
//! Cluster-wide limits (they shape the bytes on the wire and must agree on every node) come
//! first; per-process defaults of the transport (queue depths, buffer sizes, backoff) follow
//! and can be overridden per process through [`crate::transport::TransportConfig`].

// ---- cluster-wide: the frame format --------------------------------------------------------

/// `length u32 | crc32 u32 | version u8 | reserved [u8; 3]`.
pub const FRAME_HEADER_BYTES: usize = 12;

/// The only frame version this build speaks; a frame with another version byte is refused.
pub const FRAME_VERSION: u8 = 1;

/// The largest flatbuffer one frame may carry. A receiver allocates at most this much per
/// connection for a frame, so it bounds memory per peer; it must hold the largest append
/// batch the Raft core builds plus its message headers, and the largest snapshot message.
/// 16 MiB keeps a node with 64 peer connections under 1 GiB of receive buffers in the worst
/// case while leaving an append batch room for thousands of entries.
pub const FRAME_BODY_BYTES_MAX: usize = 16 << 20;

/// Raft messages the sender packs into one frame: enough that a frame of 64-byte messages
/// amortises its header and syscall, few enough that one frame is a bounded unit of work.
pub const RAFT_MESSAGES_PER_FRAME_MAX: usize = 16_384;

/// Client requests in one frame, and operations in one request: a client batch is applied
/// as one entry, so it must stay far below the frame size.
pub const CLIENT_REQUESTS_PER_FRAME_MAX: usize = 4_096;
pub const CLIENT_OPERATIONS_PER_REQUEST_MAX: usize = 1_024;

/// Client responses in one frame: a node answers more in several frames, so one frame is a
/// bounded unit of work for the client that decodes it.
pub const CLIENT_RESPONSES_PER_FRAME_MAX: usize = CLIENT_REQUESTS_PER_FRAME_MAX;

// ---- cluster-wide: the verifier -------------------------------------------------------------

/// Deepest table nesting of any valid frame: Frame → RaftBatch → RaftMessage →
/// InstallSnapshot → ConfState is 5; Frame → ClientResponseBatch → ClientResponse →
/// ResultItem → Error is 5. One level of slack for an appended field; anything deeper is an
/// attack on the verifier's recursion.
pub const VERIFIER_DEPTH_MAX: usize = 6;

/// Tables the verifier will visit in one frame, at most. A reachable table occupies at least
/// 8 bytes (its vtable offset and the offset that points at it), so an honest frame has at
/// most one table per 8 bytes.
pub const VERIFIER_TABLES_MAX: usize = FRAME_BODY_BYTES_MAX / 8;

/// Bytes of a frame's body per table the verifier visits in it, at least: a frame is refused
/// past one table per 8 bytes (plus [`VERIFIER_TABLES_SLACK`]). A table and the offset that
/// points at it take 8 bytes at the least, so no honest frame holds more (a forwarded
/// proposal of an empty command comes close: `tests/wire_roundtrip.rs`). A crafted frame
/// that points many offsets at one table, each to be decoded again, is cut off here and by
/// the apparent bytes below: verification and decoding stay linear in the frame's size, not
/// in what its offsets can make it appear to hold.
pub const VERIFIER_BODY_BYTES_PER_TABLE: usize = 8;
pub const VERIFIER_TABLES_SLACK: usize = 64;

/// Bytes the verifier may look at, counting shared parts (vtables, aliased vectors) once per
/// reference, at most.
pub const VERIFIER_APPARENT_BYTES_MAX: usize = 2 * FRAME_BODY_BYTES_MAX;

/// Bytes the verifier may look at per byte of a frame's body (plus
/// [`VERIFIER_APPARENT_SLACK_BYTES`]). Honest frames stay below 2.5: each small table's
/// vtable is counted once per table (a frame full of vote answers 1.63, a status answer of
/// followers at term 0 about 2.4); a crafted frame that points many offsets at one big
/// vector of entries (16,384 references to one append of 60 entries fit in 66 KiB) would be
/// seen, and decoded, hundreds of times over.
pub const VERIFIER_APPARENT_BYTES_PER_BODY_BYTE: usize = 4;
pub const VERIFIER_APPARENT_SLACK_BYTES: usize = 4 << 10;

const _: () = assert!(
    FRAME_BODY_BYTES_MAX <= u32::MAX as usize,
    "length field is a u32"
);
const _: () = assert!(
    2 + RAFT_MESSAGES_PER_FRAME_MAX * 3 <= VERIFIER_TABLES_MAX,
    "a full frame of small messages must pass the verifier"
);

// ---- cluster-wide: the handshake ------------------------------------------------------------

/// "COHT": the first four bytes a cohort node expects from a peer.
pub const HANDSHAKE_MAGIC: u32 = 0x434F_4854;

/// Incremented on every incompatible change of the tables after the handshake. 2: an append's
/// entries are a vector of structs and one payload vector, no longer a table each. 3: a batch's
/// appends, append responses, heartbeats and heartbeat responses travel as columns of structs
/// (`batch.rs`), no longer as two tables per message. 4: a leader stops heartbeating an idle
/// group (`Heartbeat.quiesce`), which a follower of version 3 would take for a dead leader.
pub const PROTOCOL_VERSION: u16 = 4;

// ---- per process: the transport -------------------------------------------------------------

/// Bytes queued for one peer before `send` reports backpressure; 32 MiB is two full frames,
/// so a healthy peer is never throttled by it. A peer that stopped reading costs this much
/// queued, and as much again in the batch its writer took and could not write, besides the
/// encoder's buffers, which keep the size of the largest frame the connection sent.
pub const PEER_QUEUE_BYTES_MAX: usize = 32 << 20;

/// Messages queued for one peer before `send` reports backpressure (bounds the queue when the
/// messages are tiny and the byte bound alone would admit millions).
pub const PEER_QUEUE_MESSAGES_MAX: usize = 262_144;

/// Bytes the sender packs into one frame before it starts the next one, well under
/// [`FRAME_BODY_BYTES_MAX`] so the flatbuffer overhead of the messages always fits.
pub const FRAME_PAYLOAD_BYTES_TARGET: usize = 4 << 20;

/// Socket send and receive buffer sizes: large enough that a full frame is in flight without
/// waiting for the peer to read, small enough for thousands of connections.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// What the receiver reads per `read` call; a frame larger than this grows the buffer up to
/// [`FRAME_HEADER_BYTES`] + [`FRAME_BODY_BYTES_MAX`], never beyond.
pub const RECEIVE_CHUNK_BYTES: usize = 256 << 10;

/// Received batches waiting for the shard; past this the readers stop reading and TCP pushes
/// back on the peers.
pub const INBOX_BATCHES_MAX: usize = 1_024;

/// Bytes of received frames waiting for the shard; past this the readers stop reading, as
/// past [`INBOX_BATCHES_MAX`]. Four of the largest frames: a peer sending large frames while
/// the shard falls behind holds at most this much, not [`INBOX_BATCHES_MAX`] large frames.
pub const INBOX_BYTES_MAX: usize = 4 * (FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX);

/// Reconnect backoff: first delay, cap, and the jitter fraction (±) applied to every delay so
/// that a restarted node is not hit by all its peers at the same instant. Only the node of
/// the smaller id dials, so a node back from a restart waits a delay of each such peer's
/// before they reach it: at a 2 s cap it waited 1–1.5 s after a restart of seconds (tester
/// 287: meanwhile those peers' leaders sent it nothing and heard nothing of it, such as its
/// key-value quota). A dial to a node that is down costs a refused connect, twice a second.
pub const RECONNECT_DELAY_MS_MIN: u64 = 10;
pub const RECONNECT_DELAY_MS_MAX: u64 = 500;
pub const RECONNECT_JITTER_PERCENT: u64 = 25;

/// A node probes a peer of a smaller id (which dials it, never the other way) once it has
/// heard nothing from it for this long, and again as long as that lasts: a node removed from
/// the cluster while it was down is dialed by nobody, and learns so only from such a probe's
/// answer. A probe of a peer that is down costs a refused connect.
pub const PROBE_AFTER_MS: u64 = 3_000;

/// Bytes sent to a peer may go unacknowledged this long before the connection is closed
/// (TCP_USER_TIMEOUT): a peer behind a partition that drops every segment is then redialed
/// instead of waiting out the kernel's retransmission backoff, which reaches minutes. A live
/// peer's kernel acknowledges within a round trip even when its process is busy, so this only
/// needs to be well above the longest round trip.
pub const UNACKED_TIMEOUT_MS: u64 = 5_000;

/// A peer must complete its handshake within this long, or it is disconnected (a silent
/// connection would otherwise hold a slot forever).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

const _: () = assert!(FRAME_PAYLOAD_BYTES_TARGET * 2 <= FRAME_BODY_BYTES_MAX);
const _: () = assert!(RECEIVE_CHUNK_BYTES <= FRAME_BODY_BYTES_MAX);
const _: () = assert!(RECONNECT_DELAY_MS_MIN <= RECONNECT_DELAY_MS_MAX);
const _: () = assert!(RECONNECT_JITTER_PERCENT < 100);

/// The largest message (`MessageBody::payload_bytes`) the transport accepts to send: half a
/// frame, so the message, its flatbuffer overhead and its membership lists always fit one.
/// The Raft core's append and snapshot-chunk byte limits must stay below this.
pub const MESSAGE_PAYLOAD_BYTES_MAX: usize = FRAME_BODY_BYTES_MAX / 2;
