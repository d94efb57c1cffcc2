//! Helpers shared by the integration tests: proptest strategies for Raft messages, transport
//! peers, reading a WAL back, local clusters of real processes.
#![allow(dead_code)]

pub mod cluster;
pub mod messages;
pub mod transport;
pub mod wal;
