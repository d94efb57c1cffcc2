//! A cohort process: its configuration, one executor per core, and its shutdown.

mod client_conns;
pub mod clients;
pub mod config;
mod dir_lock;
mod executor;
pub mod identity;
mod incarnation;
mod log;
mod members_view;
mod open_files;
mod ports;
mod refusals;
mod resolve;
mod role_lines;
mod room_kept;
mod runtime;
mod snapshot_file;

pub use config::{ConfigError, NodeConfig, SyncMode, parse_members};
pub use executor::{off_loop, on_one_executor, start_executor};
pub use refusals::refused_for_lost_data;
pub use runtime::{run, run_telling, run_until, say};
