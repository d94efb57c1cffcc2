//! The `cohort` binary: run a node, a local demo cluster, the simulator, client commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cohort",
    version,
    about = "A thread-per-core, multi-Raft consensus engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local 3-node cluster under load and print throughput and latency.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            eprintln!(
                "cohort demo: not implemented yet: it needs the node runtime (issue 5). \
                 Today `cargo test` exercises the Raft core and its simulator."
            );
            ExitCode::from(2)
        }
    }
}
