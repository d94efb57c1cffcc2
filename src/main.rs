//! The `cohort` binary: run a node, a local demo cluster, the load generator, client commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cohort::cli::bench::{self, BenchCommand, SweepCommand};
use cohort::cli::client_cmd::{self, KvCommand, ReadMode, Target};
use cohort::cli::demo::{self, DemoArgs};
use cohort::cli::serve::ServeArgs;

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
    Demo(DemoArgs),
    /// Load a cluster (a running one, or a local one it starts) and report throughput,
    /// latency percentiles, per-node and per-group shares, JSON, .hgrm files and SVG plots.
    Bench(Box<BenchCommand>),
    /// Run a node of a cluster until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Write a value.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Read a value.
    Get {
        key: String,
        /// How fresh the value must be.
        #[arg(long, value_enum, default_value_t = ReadMode::Linearizable)]
        read: ReadMode,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a key.
    Delete {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show every group of every member: role, leader, term, commit, applied, and each
    /// leader's view of its followers.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Leadership operations.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Write VALUE only if the key holds EXPECTED (or, with --absent, has no value).
    Cas {
        key: String,
        /// The value the key must hold now.
        #[arg(long, required_unless_present = "absent", conflicts_with = "absent")]
        expected: Option<String>,
        /// The key must not exist now.
        #[arg(long)]
        absent: bool,
        value: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum LeaderCommand {
    /// Hand a group's leadership to a node; returns once that node leads it, or fails.
    Transfer {
        /// The group.
        #[arg(long)]
        group: u32,
        /// The node id to hand it to.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        target: Target,
    },
}

fn fail(error: &str) -> ExitCode {
    eprintln!("cohort: {error}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (target, command) = match cli.command {
        Command::Demo(args) => {
            return match demo::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Command::Bench(command) => {
            let result = match &command.sweep {
                None => bench::run(&command.args),
                Some(SweepCommand::Sweep { vary, values, args }) => {
                    bench::sweep(*vary, values, args)
                }
            };
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Command::Serve(args) => {
            use std::io::IsTerminal;
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_max_level(tracing::Level::INFO)
                .init();
            let result = args.to_config().and_then(cohort::node::run);
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Command::Leader(LeaderCommand::Transfer { group, to, target }) => {
            return match client_cmd::transfer_leader(&target, group, to) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            };
        }
        Command::Status { target } => {
            return match client_cmd::status(&target) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            };
        }
        Command::Put { key, value, target } => (target, KvCommand::Put { key, value }),
        Command::Get { key, read, target } => (target, KvCommand::Get { key, read }),
        Command::Delete { key, target } => (target, KvCommand::Delete { key }),
        Command::Cas {
            key,
            expected,
            value,
            target,
            ..
        } => (
            target,
            KvCommand::Cas {
                key,
                expected,
                value,
            },
        ),
    };
    match client_cmd::run(&target, command) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}
