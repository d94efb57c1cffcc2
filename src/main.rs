//! The `cohort` binary: run a node, a local demo cluster, the load generator, client commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bytes::Bytes;
use cohort::cli::bench::{self, BenchCommand, SweepCommand};
use cohort::cli::check::{self, CheckArgs};
use cohort::cli::client_cmd::{self, KvCommand, Printed, ReadMode, Target};
use cohort::cli::demo::{self, DemoArgs};
use cohort::cli::serve::ServeArgs;
use cohort::cli::sim::{self, SimArgs};
use cohort::proto::members::{MemberOp, check_address};

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
    /// Run a node of a cluster until SIGTERM, SIGHUP or Ctrl-C.
    Serve(ServeArgs),
    /// Run the deterministic simulator: seeded random runs of a Raft group under crashes,
    /// partitions, message loss, membership changes and compaction, each checked for Raft's
    /// safety properties at every step; a failing seed is printed with how to replay it.
    Sim(SimArgs),
    /// Check a running cluster for linearizability: clients read, write, swap and delete a
    /// few fresh keys they share for a while (break the cluster meanwhile), then every key's
    /// history is checked. Writes keys named cohort-check-<run>-<k>.
    Check(CheckArgs),
    /// Write a value. Exits 1 where it failed having changed nothing (refused, or taken in
    /// by no node), 4 where its outcome is unknown (it may have been applied).
    Put {
        key: String,
        /// The value. Without it, standard input is read to its end and written as it is,
        /// any bytes (`cohort put logo < logo.png`), up to the largest value (1 MiB); an
        /// empty input is refused (an empty value is given as '').
        value: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Read a value. Exits 2 where the key has no value (saying "(not found)" on standard
    /// error, nothing on standard output), 1 where it failed.
    Get {
        key: String,
        /// How fresh the value must be.
        #[arg(long, value_enum, default_value_t = ReadMode::Linearizable)]
        read: ReadMode,
        /// Write the value's bytes as they are, with no newline (for values that are not
        /// text).
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a key. Exits 1 where it failed having changed nothing, 4 where its outcome is
    /// unknown (it may have been applied).
    Delete {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show every group of every member: role, leader, term, commit, applied, and each
    /// leader's view of its followers. Exits 3 (after the table) if a member did not answer.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Leadership operations.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Membership: list, add, promote or remove a node (in every group, through joint
    /// consensus). A new node usually joins by itself: `cohort serve --join`.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Write VALUE only if the key holds the value --expected or --expected-file gives (or,
    /// with --absent, has no value). Exits 2 where the condition failed (nothing written), 1
    /// where it failed having changed nothing, 4 where its outcome is unknown.
    // One condition, required: a missing one is named with the others (`--absent` too).
    #[command(group = clap::ArgGroup::new("condition")
        .required(true)
        .args(["expected", "expected_file", "absent"]))]
    Cas {
        key: String,
        /// The value the key must hold now.
        #[arg(long)]
        expected: Option<String>,
        /// The value the key must hold now, read from this file: any bytes.
        #[arg(long)]
        expected_file: Option<std::path::PathBuf>,
        /// The key must not exist now.
        #[arg(long)]
        absent: bool,
        /// The new value. Without it, standard input is read to its end and written as it
        /// is, any bytes, as `put` does (an empty input is refused).
        value: Option<String>,
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

#[derive(Subcommand)]
enum MembersCommand {
    /// Every member, its address, and in how many groups it is a voter or a learner.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Add a node as a learner of every group (it receives the log, it does not vote).
    Add {
        /// The new node's id (never one a removed node had).
        #[arg(long)]
        id: u64,
        /// The new node's base address (HOST:PORT), as its `serve --listen` says.
        #[arg(long)]
        address: String,
        /// Then wait until it caught up and make it a voter.
        #[arg(long)]
        voter: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Make a learner that caught up a voter of every group.
    Promote {
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a node from every group (a group it leads is handed to another voter first).
    Remove {
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        target: Target,
    },
}

/// Print a command's result. A reader that went away (`cohort get k | head -c 10`) is not an
/// error worth a panic: the output was not wanted any more.
fn print_out(text: &str) -> ExitCode {
    print_raw(format!("{text}\n").as_bytes())
}

fn print_raw(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => fail(&format!("cannot write the result: {error}")),
    }
}

/// A command's VALUE argument, or else standard input read to its end (any bytes, but some:
/// an empty input is far more often a VALUE forgotten in a script, with nothing on its
/// standard input, than an empty value, which is given as ''); `usage` shows the command in
/// the errors.
fn value_or_stdin(value: Option<String>, usage: &str) -> Result<Bytes, String> {
    match value {
        Some(value) => Ok(Bytes::from(value)),
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => Err(format!(
            "no VALUE given, and standard input is a terminal: give the value, or send it on \
             standard input (`cohort {usage} < FILE`)"
        )),
        None => match client_cmd::read_value(std::io::stdin().lock())? {
            empty if empty.is_empty() => Err(format!(
                "no VALUE given, and standard input is empty: give the value (an empty one as \
                 '': `cohort {usage} ''`), or send it on standard input"
            )),
            value => Ok(value),
        },
    }
}

fn fail(error: &str) -> ExitCode {
    cohort::cli::say_err(&format!("cohort: {error}"));
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let parsed = <Cli as clap::CommandFactory>::command()
        .try_get_matches()
        .and_then(|matches| {
            Ok((
                <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?,
                matches,
            ))
        });
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        // Not clap's own exit, with status 2: `cas` gives 2 to a failed condition, and a
        // script would take a mistyped flag for a lock someone else holds.
        Err(error) => {
            let _ = error.print();
            return match error.use_stderr() {
                true => ExitCode::FAILURE,
                false => ExitCode::SUCCESS, // --help, --version
            };
        }
    };
    let (target, command) = match cli.command {
        Command::Sim(args) => {
            return match sim::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Command::Check(args) => {
            return match check::run(&args) {
                Ok(report) => print_out(&report),
                Err(error) => fail(&error),
            };
        }
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
                    // The varied setting's own flag would be overridden at every point.
                    let flag_given = (matches.subcommand_matches("bench"))
                        .and_then(|bench| bench.subcommand_matches("sweep"))
                        .and_then(|sweep| sweep.value_source(vary.arg_id()))
                        == Some(clap::parser::ValueSource::CommandLine);
                    bench::sweep(*vary, values, args, flag_given)
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
                // A line that cannot be written (its log on a full disk) is lost, not
                // reported with `eprintln!`, which panicked the core that logged it.
                .log_internal_errors(false)
                .init();
            let result = cohort::cli::serve::run(&args);
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Command::Leader(LeaderCommand::Transfer { group, to, target }) => {
            return match client_cmd::transfer_leader(&target, group, to) {
                Ok(line) => print_out(&line),
                Err(error) => fail(&error),
            };
        }
        Command::Members(command) => {
            let result = match command {
                MembersCommand::List { target } => client_cmd::members_list(&target),
                MembersCommand::Add {
                    id,
                    address,
                    voter,
                    target,
                } => match check_address(&address) {
                    Ok(()) => client_cmd::members_change(
                        &target,
                        id,
                        MemberOp::AddLearner { address },
                        voter,
                    ),
                    Err(why) => Err(format!("--address: {why}")),
                },
                MembersCommand::Promote { id, target } => {
                    client_cmd::members_change(&target, id, MemberOp::Promote, false)
                }
                MembersCommand::Remove { id, target } => {
                    client_cmd::members_change(&target, id, MemberOp::Remove, false)
                }
            };
            return match result {
                Ok(text) => print_out(text.trim_end()),
                Err(error) => fail(&error),
            };
        }
        Command::Status { target } => {
            return match client_cmd::status(&target) {
                Ok((table, 0)) => print_out(table.trim_end()),
                Ok((table, unreachable)) => match print_out(table.trim_end()) {
                    ExitCode::SUCCESS => {
                        cohort::cli::say_err(&format!(
                            "cohort: {unreachable} member(s) did not answer"
                        ));
                        ExitCode::from(client_cmd::STATUS_UNREACHABLE_EXIT)
                    }
                    other => other,
                },
                Err(error) => fail(&error),
            };
        }
        Command::Put { key, value, target } => {
            let value = match value_or_stdin(value, "put KEY") {
                Ok(value) => value,
                Err(error) => return fail(&error),
            };
            (target, KvCommand::Put { key, value })
        }
        Command::Get {
            key,
            read,
            raw,
            target,
        } => (target, KvCommand::Get { key, read, raw }),
        Command::Delete { key, target } => (target, KvCommand::Delete { key }),
        Command::Cas {
            key,
            expected,
            expected_file,
            absent,
            value,
            target,
        } => {
            // The condition as given, for an error that shows how to send the value.
            let usage = match (&expected, absent) {
                (_, true) => "cas KEY --absent",
                (Some(_), false) => "cas KEY --expected …",
                (None, false) => "cas KEY --expected-file …",
            };
            let expected = match (expected, expected_file) {
                (Some(expected), _) => Some(Bytes::from(expected)),
                (None, Some(path)) => match client_cmd::read_value_file(&path) {
                    Ok(expected) => Some(expected),
                    Err(error) => return fail(&format!("--expected-file: {error}")),
                },
                (None, None) => None,
            };
            let value = match value_or_stdin(value, usage) {
                Ok(value) => value,
                Err(error) => return fail(&error),
            };
            (
                target,
                KvCommand::Cas {
                    key,
                    expected,
                    value,
                },
            )
        }
    };
    // A write done whose result cannot be printed (stdout on a full disk) keeps its status:
    // exit 1 says nothing was written (found in review: a script then took a lock it held
    // for one it did not get).
    let wrote = !matches!(command, KvCommand::Get { .. });
    let printed = |bytes: &[u8], status: ExitCode| match (print_raw(bytes), wrote) {
        (ExitCode::SUCCESS, _) | (_, true) => status,
        (failed, false) => failed,
    };
    match client_cmd::run(&target, command) {
        Ok(Printed::Line(line)) => printed(format!("{line}\n").as_bytes(), ExitCode::SUCCESS),
        Ok(Printed::Raw(bytes)) => printed(&bytes, ExitCode::SUCCESS),
        Ok(Printed::ConditionFailed(line)) => printed(
            format!("{line}\n").as_bytes(),
            ExitCode::from(client_cmd::CONDITION_FAILED_EXIT),
        ),
        Ok(Printed::NotFound) => {
            cohort::cli::say_err("(not found)");
            ExitCode::from(client_cmd::NOT_FOUND_EXIT)
        }
        Ok(Printed::OutcomeUnknown(error)) => {
            cohort::cli::say_err(&format!("cohort: {error}"));
            ExitCode::from(client_cmd::OUTCOME_UNKNOWN_EXIT)
        }
        Err(error) => fail(&error),
    }
}
