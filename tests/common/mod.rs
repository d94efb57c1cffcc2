//! Helpers shared by the integration tests: proptest strategies for Raft messages, transport
//! peers, reading a WAL back, local clusters of real processes,
//! network partitions, small file systems that fill up, snapshots the fake logs received, the
//! `cohort` command bounded in time.
#![allow(dead_code)]

pub mod cluster;
pub mod messages;
pub mod netfilter;
pub mod process;
pub mod snapshots;
pub mod tmpfs;
pub mod transport;
pub mod wal;
