//! Helpers shared by the integration tests: proptest strategies for Raft messages, transport
//! peers, reading a WAL back, local clusters of real processes,
//! network partitions.
#![allow(dead_code)]

pub mod cluster;
pub mod messages;
pub mod netfilter;
pub mod transport;
pub mod wal;
