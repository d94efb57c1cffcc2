//! cohort: a thread-per-core, multi-Raft consensus engine.
//!
//! The layers, lowest first (an arrow means "is used by"; nothing points back down):
//!
//! ```text
//!   raft (pure consensus core)   wal (per-core log)   wire (frames)   kv (state machine)
//!          │                          │                   │                │
//!          │                          │              transport            │
//!          └──────────────┬───────────┴───────────────────┴────────────────┘
//!                       shard (per-core event loop) ── node (process) ── main.rs
//!   sim (deterministic simulator) drives raft (+ kv) with fake time, network and disk.
//!   proto (client protocol) joins wire and kv for shard, node and client; kv and wire never
//!   import each other. bench (load generator) drives client; the CLI drives node and bench.
//! ```
//!
//! Where to look for an idea:
//! - election, replication, reads, membership: [`raft`] (`src/raft/`)
//! - the fault-injecting deterministic harness: [`sim`] (`src/sim/`)
//! - frames, handshake and conversion of messages: [`wire`] (`src/wire/`)
//! - connections between the cores of nodes: [`transport`] (`src/transport/`)
//! - the few OS calls without a safe wrapper (locked memory, fd hand-over): [`sys`]; small
//!   files replaced whole and durably: [`durable`]
//! - the per-core write-ahead log, its disk format and recovery rules: [`wal`] (`src/wal/`)
//! - the replicated key-value state machine: [`kv`]; the client protocol over it: [`proto`]
//! - the load generator behind `cohort bench` (histograms, reports, plots): [`bench`](mod@bench)
#![deny(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod durable;
pub mod kv;
pub mod node;
pub mod proto;
pub mod raft;
pub mod repeats;
pub mod shard;
pub mod sim;
pub mod sys;
pub mod transport;
pub mod wal;
pub mod wire;
