//! Helpers shared by the integration tests: proptest strategies for Raft messages, transport
//! peers, reading a WAL back.
#![allow(dead_code)]

pub mod messages;
pub mod transport;
pub mod wal;
