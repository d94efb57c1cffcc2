//! `cohort put|get|delete|cas|status|leader transfer|members`: one request against a running
//! cluster, printed plainly.

use std::cell::Cell;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};

use crate::client::{Client, ClientOptions, change_membership};
use crate::kv::limits::VALUE_BYTES_MAX;
use crate::kv::{Op, OpResult};
use crate::proto::client::Consistency;
use crate::proto::members::{MemberOp, MemberOutcome};

#[derive(Args, Debug)]
pub struct Target {
    /// Base address (HOST:PORT) of one or more members, comma-separated.
    #[arg(long, default_value = "127.0.0.1:7000", value_delimiter = ',',
          value_parser = member_address)]
    pub nodes: Vec<String>,
    /// Give up after this many milliseconds, retries included (`status`: learning the
    /// cluster's layout and asking every core of every node at once, at most 3 s, after which
    /// a core that did not answer is listed as unreachable; `members`: for each
    /// group, one after another, and twice for `add --voter`, which adds and then promotes).
    /// Other commands learn the layout first, which may take up to as long again (at most
    /// 2 s).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub timeout_ms: u64,
}

/// A member's base address as given: refused at once when it is not HOST:PORT (it was
/// reported as a member that did not answer).
fn member_address(address: &str) -> Result<String, String> {
    crate::proto::members::check_address(address).map(|()| address.to_string())
}

impl Target {
    fn options(&self) -> ClientOptions {
        let mut options = ClientOptions::new(self.nodes.clone(), u64::from(std::process::id()));
        options.request_timeout = Duration::from_millis(self.timeout_ms);
        options.attempt_timeout = options.attempt_timeout.min(options.request_timeout);
        options
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReadMode {
    /// Confirmed by the leader with a heartbeat round (ReadIndex); nodes run with
    /// `--lease-reads` serve it from the leader's lease instead, as `lease`.
    Linearizable,
    /// The leader's lease where the nodes run with `--lease-reads`; elsewhere ReadIndex.
    Lease,
    /// Whatever the asked node has applied.
    Stale,
}

impl From<ReadMode> for Consistency {
    fn from(mode: ReadMode) -> Consistency {
        match mode {
            ReadMode::Linearizable => Consistency::Linearizable,
            ReadMode::Lease => Consistency::Lease,
            ReadMode::Stale => Consistency::Stale,
        }
    }
}

#[derive(Debug)]
pub enum KvCommand {
    Put {
        key: String,
        value: Bytes,
    },
    Get {
        key: String,
        read: ReadMode,
        /// The value's bytes as they are (see [`Printed::Raw`]).
        raw: bool,
    },
    Delete {
        key: String,
    },
    Cas {
        key: String,
        expected: Option<Bytes>,
        value: Bytes,
    },
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// What a command prints.
#[derive(Debug, PartialEq, Eq)]
pub enum Printed {
    /// A line of text (a value not valid UTF-8 shown escaped).
    Line(String),
    /// A compare-and-swap's condition that failed, said in a line: nothing was written, which
    /// the exit status tells scripts (see [`CONDITION_FAILED_EXIT`]).
    ConditionFailed(String),
    /// A value's bytes as they are, with no newline.
    Raw(Bytes),
    /// A read of a key that has no value: said on standard error, with nothing on standard
    /// output, and told scripts by the exit status (see [`NOT_FOUND_EXIT`]). Printed as a
    /// line "(not found)", it could not be told from a key holding those very bytes.
    NotFound,
    /// No answer, or a refusal after an attempt that may have been taken in: a write may or
    /// may not have been applied, which the exit status tells scripts (see
    /// [`OUTCOME_UNKNOWN_EXIT`]). Said on standard error.
    OutcomeUnknown(String),
}

/// The exit status of `cohort cas` whose condition failed (nothing written): apart from 0
/// (swapped) and 1 (an error), so that `if cohort cas lock --absent me` tells who won.
pub const CONDITION_FAILED_EXIT: u8 = 2;

/// The exit status of `cohort get` of a key that has no value: a definite "no", as a failed
/// condition is (so the same status), apart from an error's 1, which says nothing was learnt.
pub const NOT_FOUND_EXIT: u8 = CONDITION_FAILED_EXIT;

/// The exit status of a command whose outcome is unknown ([`Printed::OutcomeUnknown`]): a
/// script must not take it for a failure that wrote nothing (exit 1), such as a lock it did
/// not take when its `cohort cas` did take it.
pub const OUTCOME_UNKNOWN_EXIT: u8 = 4;

/// A value from `input` (standard input), read to its end: at most `VALUE_BYTES_MAX` bytes,
/// or an error that says so before more is read.
pub fn read_value(input: impl Read) -> Result<Bytes, String> {
    read_bounded(input, "on standard input")
}

/// A value from the file at `path`, read as [`read_value`] reads standard input.
pub fn read_value_file(path: &std::path::Path) -> Result<Bytes, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    read_bounded(file, &format!("in {}", path.display()))
}

/// `input` read to its end, refused once it passes `VALUE_BYTES_MAX`; `place` says where the
/// value is in an error ("on standard input").
fn read_bounded(input: impl Read, place: &str) -> Result<Bytes, String> {
    let mut value = Vec::new();
    input
        .take(VALUE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut value)
        .map_err(|e| format!("cannot read the value {place}: {e}"))?;
    if value.len() > VALUE_BYTES_MAX {
        return Err(format!(
            "the value {place} is larger than the largest value ({VALUE_BYTES_MAX} bytes)"
        ));
    }
    Ok(Bytes::from(value))
}

/// Run one command; what to print, or the error.
pub fn run(target: &Target, command: KvCommand) -> Result<Printed, String> {
    let options = target.options();
    crate::node::on_one_executor("cohort-client", move || async move {
        let client = Client::connect(options).await.map_err(|e| e.to_string())?;
        let mut raw = false;
        let reading = matches!(command, KvCommand::Get { .. });
        let (op, consistency) = match command {
            KvCommand::Put { key, value } => (
                Op::Put {
                    key: bytes(&key),
                    value,
                },
                Consistency::Linearizable,
            ),
            KvCommand::Get {
                key,
                read,
                raw: as_is,
            } => {
                raw = as_is;
                (Op::Get { key: bytes(&key) }, read.into())
            }
            KvCommand::Delete { key } => {
                (Op::Delete { key: bytes(&key) }, Consistency::Linearizable)
            }
            KvCommand::Cas {
                key,
                expected,
                value,
            } => (
                Op::CompareAndSwap {
                    key: bytes(&key),
                    expected,
                    value,
                },
                Consistency::Linearizable,
            ),
        };
        let mut results = match client.execute(vec![op], consistency).await {
            Ok(results) => results,
            Err(error) if error.outcome_unknown() => {
                return Ok(Printed::OutcomeUnknown(error.to_string()));
            }
            Err(error) => return Err(error.to_string()),
        };
        let line = match results.pop() {
            Some(OpResult::Value(value)) if raw => return Ok(Printed::Raw(value)),
            Some(OpResult::Value(value)) => shown(&value),
            Some(OpResult::NotFound) if reading => return Ok(Printed::NotFound),
            // A delete of a key that has none: done, nothing to delete.
            Some(OpResult::NotFound) => "(not found)".to_string(),
            Some(OpResult::Written) => "OK".to_string(),
            Some(OpResult::ConditionFailed { current }) => {
                let now = current.map_or("the key has no value".to_string(), |value| {
                    format!("the value is {}", shown(&value))
                });
                return Ok(Printed::ConditionFailed(format!("condition failed: {now}")));
            }
            // The client checks that an answer holds a result per operation.
            None => return Err("an answer without a result".to_string()),
        };
        Ok(Printed::Line(line))
    })?
}

/// A value as a line shows it: as it is if it is UTF-8, else escaped (`\xNN`, as Rust
/// escapes bytes), which is said on standard error. Shown lossily, such a value read into a
/// file without --raw was damaged without a word (found by trying it as a user would).
fn shown(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => text.to_string(),
        Err(_) => {
            super::say_err(
                "cohort: the value is not UTF-8: shown escaped (\\xNN, \\\\, \\n, …); --raw \
                 writes its bytes as they are",
            );
            value.escape_ascii().to_string()
        }
    }
}

/// The exit status of `cohort status` when some member did not answer: its table is printed,
/// with a line for each one that did not, and health checks see it.
pub const STATUS_UNREACHABLE_EXIT: u8 = 3;

/// How long `cohort status` waits at most (less where --timeout-ms is less): a live core
/// answers within milliseconds, even under load.
const STATUS_WAIT_MAX: Duration = Duration::from_secs(3);

/// `cohort status`: the table of every group of every member, and how many members did not
/// answer (on some core).
pub fn status(target: &Target) -> Result<(String, usize), String> {
    let mut options = target.options();
    // The topology and then every core at once, all within --timeout-ms and 3 s: found by
    // an operator, a frozen member held the whole table back for 10 s in an incident.
    options.attempt_timeout = options.request_timeout.min(STATUS_WAIT_MAX);
    let (rows, missing) = crate::node::on_one_executor("cohort-status", move || async move {
        crate::client::cluster_status(options).await
    })?
    .map_err(|e| e.to_string())?;
    let mut table = crate::proto::status::render(&rows);
    for (_, line) in &missing {
        table += &format!("unreachable: {line}\n");
    }
    let nodes: std::collections::BTreeSet<u64> = missing.iter().map(|(node, _)| *node).collect();
    Ok((table, nodes.len()))
}

/// `cohort leader transfer`: hand `group` to node `to` and wait until it leads.
pub fn transfer_leader(target: &Target, group: u32, to: u64) -> Result<String, String> {
    let options = target.options();
    let took = crate::node::on_one_executor("cohort-transfer", move || async move {
        crate::client::transfer_leader(options, group, to).await
    })??;
    Ok(format!(
        "group {group}: node {to} leads it now ({:.1} ms)",
        took.as_secs_f64() * 1e3
    ))
}

/// `cohort members list`: every member, its address, and in how many groups it votes.
pub fn members_list(target: &Target) -> Result<String, String> {
    let options = target.options();
    let (topology, rows) = crate::node::on_one_executor("cohort-members", move || async move {
        crate::client::membership_view(&options).await
    })??;
    Ok(crate::client::render_membership(&topology, &rows))
}

/// Says each group's outcome of a membership change (`verb`) as it comes, and counts in
/// `changed` the groups it was done in.
fn reported<'a>(
    node: u64,
    verb: &'static str,
    changed: &'a Cell<u32>,
) -> impl FnMut(u32, &MemberOutcome) + 'a {
    move |group, outcome| match outcome {
        MemberOutcome::NotMember { why, .. } => {
            super::say_err(&format!("group {group}: {why}: nothing to do"))
        }
        _ => {
            changed.set(changed.get() + 1);
            super::say_err(&format!("group {group}: {verb} node {node}: done"))
        }
    }
}

/// A membership change's `error`, saying that the groups it was done in before (`changed`)
/// keep it, and how to go on.
fn partly_done(error: String, verb: &str, changed: u32) -> String {
    match changed {
        0 => error,
        n => format!(
            "{error}; the {verb} was done in {n} group(s) before it (above), not in the rest: \
             give the command again to finish (`cohort members list` shows where each node is)"
        ),
    }
}

/// `cohort members add|promote|remove`: make the change in every group, one at a time; with
/// `then_promote`, an added learner is promoted once it caught up.
pub fn members_change(
    target: &Target,
    node: u64,
    op: MemberOp,
    then_promote: bool,
) -> Result<String, String> {
    let options = target.options();
    let verb = op.verb();
    let started = crate::clock::now();
    let (voters, learners) = crate::node::on_one_executor("cohort-members", move || async move {
        // Groups changed before a refusal stay changed (each is a change of its own, at its
        // own leader): the error says so, and how to go on.
        let (changed, promoted) = (Cell::new(0), Cell::new(0));
        let mut done = change_membership(&options, node, op, reported(node, verb, &changed))
            .await
            .map_err(|error| partly_done(error.message, verb, changed.get()))?;
        if then_promote {
            let promote = reported(node, "promote", &promoted);
            done = change_membership(&options, node, MemberOp::Promote, promote)
                .await
                .map_err(|error| partly_done(error.message, "promote", promoted.get()))?;
        }
        Ok::<_, String>(done)
    })??;
    Ok(format!(
        "{verb} node {node}: done in every group ({:.1} s); voters {voters:?}, learners {learners:?}",
        started.elapsed().as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a membership change refused part way says that the groups before keep it, and
    /// how to go on; one refused at its first group says nothing of the kind.
    #[test]
    fn a_change_refused_part_way_says_which_groups_keep_it() {
        let changed = Cell::new(0);
        let mut report = reported(3, "remove", &changed);
        let done = MemberOutcome::Done {
            voters: vec![1, 2],
            learners: Vec::new(),
        };
        let nothing = MemberOutcome::NotMember {
            why: "node 3 is in no configuration of group 1".to_string(),
            removed: false,
        };
        report(0, &done);
        report(1, &nothing);
        report(2, &done);
        assert_eq!(
            changed.get(),
            2,
            "a group with nothing to do changed nothing"
        );
        let said = partly_done("group 3: refused".to_string(), "remove", changed.get());
        assert!(said.starts_with("group 3: refused; "), "{said}");
        assert!(said.contains("remove was done in 2 group(s)"), "{said}");
        assert!(said.contains("give the command again"), "{said}");
        let first = partly_done("group 0: refused".to_string(), "remove", 0);
        assert_eq!(first, "group 0: refused");
    }
}
