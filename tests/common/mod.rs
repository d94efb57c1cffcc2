//! Helpers shared by the integration tests: proptest strategies for Raft messages.
#![allow(dead_code)]

pub mod messages;
pub mod transport;
