//! A core's share of the node: its Raft groups, their key-value state, and the event loop
//! that drives them with the core's WAL and connections.

pub mod answers_held;
pub mod balance;
pub mod client_reach;
pub mod core;
pub mod group;
pub mod groups;
pub mod inbox;
pub mod membership;
pub mod snapshot_stream;
pub mod tick_clock;
mod woken_only;

pub use group::{Answer, ConnId, Group};
