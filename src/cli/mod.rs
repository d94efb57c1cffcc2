//! The `cohort` command line: flags, and what each subcommand runs.

pub mod bench;
pub mod check;
pub mod client_cmd;
pub mod demo;
mod join;
pub mod local_cluster;
mod scratch_cluster;
pub mod serve;
pub mod sim;
