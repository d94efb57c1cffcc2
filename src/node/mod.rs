//! A cohort process: its configuration, one executor per core, and its shutdown.

pub mod clients;
pub mod config;

pub use config::{ConfigError, NodeConfig, SyncMode, parse_members};
