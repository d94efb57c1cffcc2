//! `cohort check`: a Jepsen-style check of a running cluster. Clients read, write,
//! compare-and-swap and delete a few fresh keys they share for a while (break the cluster
//! meanwhile: kill, freeze, cut off nodes), then each key's history (every operation with
//! when it was asked and when, if ever, it was answered) is checked for linearizability by
//! [`crate::sim::check_register`]. `tests/node_history.rs` runs it under a nemesis.
//!
//! Values are unique (client and count), so a read names the write it saw. An operation
//! without an answer (a timeout, a refusal after an attempt that may have been taken in) may
//! have taken effect any time after it was asked, or never; reads without an answer are left
//! out. The keys are named `cohort-check-<run>-<k>`, new for each run; the check leaves them
//! behind, with whatever value they hold last.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use smallvec::smallvec;

use crate::client::{Client, ClientError, ClientOptions};
use crate::kv::{Op, OpResult};
use crate::proto::client::Consistency;
use crate::raft::Prng;
use crate::sim::{Operation, RegisterOp, check_register};

use super::client_cmd::Target;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// How long the clients run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Clients, each with one request at a time.
    #[arg(long, default_value_t = 4)]
    pub clients: u64,
    /// Keys the clients share (each is checked on its own).
    #[arg(long, default_value_t = 4)]
    pub keys: usize,
    /// How reads are served (not stale reads: they are not linearizable, nothing to check).
    #[arg(long, value_enum, default_value_t = CheckedRead::Linearizable)]
    pub read: CheckedRead,
    #[command(flatten)]
    pub target: Target,
}

/// A value's client, in its decimal digits above these (client 3's 52nd is 3000000052).
pub const VALUES_PER_CLIENT: u64 = 1_000_000_000;

/// Far above what a history of millions of operations needs (a few configurations each),
/// and at most about a gigabyte of the search's cache.
const CONFIGURATIONS_MAX: usize = 10_000_000;

/// Operations, each with the index of its key.
pub type History = Vec<(usize, Operation<u64>)>;

/// `--clients` at most: each runs on a thread of its own.
const CHECK_CLIENTS_MAX: u64 = 1_024;
/// `--keys` at most.
const CHECK_KEYS_MAX: usize = 100_000;

/// Nanoseconds since `origin`: the time line every client shares. (Microseconds were too
/// coarse: a client's next request was often asked in the microsecond its last answer came,
/// and the checker takes equal times for overlapping operations, so a read that missed the
/// client's own write just answered could have passed.)
pub fn nanos(origin: Instant) -> u64 {
    crate::clock::now().duration_since(origin).as_nanos() as u64
}

/// The keys of run `run`.
pub fn key_names(run: u64, count: usize) -> Vec<Bytes> {
    (0..count)
        .map(|k| Bytes::from(format!("cohort-check-{run}-{k}")))
        .collect()
}

fn decode(bytes: &Bytes) -> Result<u64, String> {
    let array: [u8; 8] = bytes[..]
        .try_into()
        .map_err(|_| format!("a read returned {bytes:?}, which no client of this check wrote"))?;
    Ok(u64::from_le_bytes(array))
}

fn encode(value: u64) -> Bytes {
    Bytes::copy_from_slice(&value.to_le_bytes())
}

/// What one operation asked, before its answer is known.
#[derive(Clone, Copy, Debug)]
pub enum Asked {
    Read,
    Put(u64),
    Delete,
    Swap { expected: Option<u64>, new: u64 },
}

/// A random operation on `key`: 40% reads, 30% puts of `new`, 20% swaps from `last_seen`
/// (the value this client last saw there) to `new` (put-if-absent when it saw none), 10%
/// deletes.
pub fn random_op(rng: &mut Prng, key: Bytes, new: u64, last_seen: Option<u64>) -> (Asked, Op) {
    let value = encode(new);
    match rng.below(10) {
        0..=3 => (Asked::Read, Op::Get { key }),
        4..=6 => (Asked::Put(new), Op::Put { key, value }),
        7..=8 => {
            let op = match last_seen {
                None => Op::PutIfAbsent { key, value },
                Some(old) => Op::CompareAndSwap {
                    key,
                    expected: Some(encode(old)),
                    value,
                },
            };
            let expected = last_seen;
            (Asked::Swap { expected, new }, op)
        }
        _ => (Asked::Delete, Op::Delete { key }),
    }
}

impl Asked {
    /// The operation as a history records it, from its result (`None`: no answer came, so
    /// it may or may not have happened); `Ok(None)` for a read without an answer, which
    /// constrains nothing.
    pub fn recorded(self, result: Option<OpResult>) -> Result<Option<RegisterOp<u64>>, String> {
        let Some(result) = result else {
            return Ok(match self {
                Asked::Read => None,
                Asked::Put(value) => Some(RegisterOp::Write { value: Some(value) }),
                Asked::Delete => Some(RegisterOp::Write { value: None }),
                Asked::Swap { expected, new } => Some(RegisterOp::CasWritten { expected, new }),
            });
        };
        let op = match (self, result) {
            (Asked::Read, OpResult::Value(value)) => RegisterOp::Read {
                saw: Some(decode(&value)?),
            },
            (Asked::Read, OpResult::NotFound) => RegisterOp::Read { saw: None },
            (Asked::Put(value), OpResult::Written) => RegisterOp::Write { value: Some(value) },
            (Asked::Delete, OpResult::Written) => RegisterOp::Delete { found: true },
            (Asked::Delete, OpResult::NotFound) => RegisterOp::Delete { found: false },
            (Asked::Swap { expected, new }, OpResult::Written) => {
                RegisterOp::CasWritten { expected, new }
            }
            (Asked::Swap { expected, .. }, OpResult::ConditionFailed { current }) => {
                let current = current.as_ref().map(decode).transpose()?;
                RegisterOp::CasFailed { expected, current }
            }
            (asked, other) => {
                return Err(format!("{other:?} does not answer {asked:?}"));
            }
        };
        Ok(Some(op))
    }
}

/// The key's value right after an answered operation (for the next swap's expected value).
pub fn seen(op: &RegisterOp<u64>) -> Option<u64> {
    match op {
        RegisterOp::Read { saw } => *saw,
        RegisterOp::CasFailed { current, .. } => *current,
        RegisterOp::Write { value } => *value,
        RegisterOp::CasWritten { new, .. } => Some(*new),
        RegisterOp::Delete { .. } => None,
    }
}

/// The first result of a client's answer; `None` if no answer came or the outcome is
/// otherwise unknown; an error for a request the client refused as invalid (a bug of the
/// check). (A request the cluster refused, or that no node took in, is left out before
/// this.)
fn first_result(result: Result<Vec<OpResult>, ClientError>) -> Result<Option<OpResult>, String> {
    match result {
        Ok(mut results) if !results.is_empty() => Ok(Some(results.swap_remove(0))),
        Ok(_) => Err("an answer without a result".to_string()),
        Err(ClientError::Invalid(why)) => Err(format!("an invalid request: {why}")),
        Err(_) => Ok(None),
    }
}

/// One client of a check.
#[derive(Clone, Debug)]
pub struct CheckClient {
    pub seeds: Vec<String>,
    /// 1, 2, …: the high digits of its values.
    pub client: u64,
    /// Picks its operations and the nodes it tries.
    pub seed: u64,
    pub keys: Vec<Bytes>,
    pub consistencies: Vec<Consistency>,
    /// How long one request may take, retries included.
    pub request_timeout: Duration,
}

/// What one client of a check did.
#[derive(Debug, Default)]
pub struct ClientHistory {
    pub history: History,
    /// Operations refused, or unanswered with none taken in: they did not happen, and are
    /// left out of the history.
    pub left_out: usize,
    /// The members' base addresses as the client last learned them: the last reads go to
    /// them too (tester 291: to the seeds alone, a check whose seeds were removed or down at
    /// the end gave no verdict for its whole run).
    pub members: Vec<String>,
}

impl CheckClient {
    /// Runs random operations on the keys, one at a time, until `stop` (or until its values
    /// run out), on an executor of its own (call it on a thread of its own); returns what
    /// happened.
    pub fn run(self, origin: Instant, stop: Arc<AtomicBool>) -> Result<ClientHistory, String> {
        crate::node::on_one_executor("check-client", move || async move {
            let mut options = ClientOptions::new(self.seeds.clone(), self.seed);
            options.attempt_timeout = Duration::from_millis(300).min(self.request_timeout);
            options.request_timeout = self.request_timeout;
            let session = Client::connect_retrying(options, Duration::from_secs(20))
                .await
                .map_err(|e| format!("client {}: {e}", self.client))?;
            let mut done = self.operate(&session, origin, &stop).await?;
            done.members = (session.topology().members.into_iter())
                .map(|(_, base)| base)
                .collect();
            Ok(done)
        })?
    }

    async fn operate(
        &self,
        session: &Client,
        origin: Instant,
        stop: &AtomicBool,
    ) -> Result<ClientHistory, String> {
        let mut rng = Prng::new(self.seed);
        let mut last_seen: Vec<Option<u64>> = vec![None; self.keys.len()];
        let mut done = ClientHistory::default();
        let mut count = 0;
        let mut last_answered_at = 0;
        // Its values are its own while the count stays below the next client's range.
        while !stop.load(Ordering::Relaxed) && count + 1 < VALUES_PER_CLIENT {
            let k = rng.below(self.keys.len() as u64) as usize;
            let key = self.keys[k].clone();
            count += 1;
            let new = self.client * VALUES_PER_CLIENT + count;
            let (asked, op) = random_op(&mut rng, key, new, last_seen[k]);
            let consistency = if matches!(asked, Asked::Read) {
                self.consistencies[rng.below(self.consistencies.len() as u64) as usize]
            } else {
                Consistency::Linearizable
            };
            // After the last answer, strictly: the two do not overlap.
            let invoked_at = nanos(origin).max(last_answered_at + 1);
            let executed = session.execute(smallvec![op], consistency).await;
            // Refused, or unanswered without any node having taken it in: not applied, so
            // it did not happen. Left out of the history, its value was never written: a
            // read of it is a violation.
            if matches!(
                executed,
                Err(ClientError::Refused { .. } | ClientError::Unavailable { .. })
            ) {
                done.left_out += 1;
                continue;
            }
            let result = first_result(executed)?;
            let answered_at = result.is_some().then(|| nanos(origin).max(invoked_at + 1));
            if let Some(at) = answered_at {
                last_answered_at = at;
            }
            let Some(op) = asked.recorded(result)? else {
                continue;
            };
            if answered_at.is_some() {
                last_seen[k] = seen(&op);
            }
            done.history.push((
                k,
                Operation {
                    client: self.client,
                    op,
                    invoked_at,
                    answered_at,
                },
            ));
        }
        Ok(done)
    }
}

/// One linearizable read of each key, patient (30 s each): the last operations of a
/// history, which every unanswered write that took effect must have reached.
pub fn read_all(seeds: &[String], keys: &[Bytes], origin: Instant) -> Result<History, String> {
    let (seeds, keys) = (seeds.to_vec(), keys.to_vec());
    crate::node::on_one_executor("check-last-reads", move || async move {
        let mut options = ClientOptions::new(seeds, 7);
        options.request_timeout = Duration::from_secs(30);
        let session = Client::connect_retrying(options, Duration::from_secs(30))
            .await
            .map_err(|e| format!("the last reads: {e}"))?;
        let mut history = History::new();
        let mut last_answered_at = 0;
        for (k, key) in keys.into_iter().enumerate() {
            let invoked_at = nanos(origin).max(last_answered_at + 1);
            let result = session
                .execute(smallvec![Op::Get { key }], Consistency::Linearizable)
                .await;
            let answered_at = nanos(origin).max(invoked_at + 1);
            last_answered_at = answered_at;
            // Why it failed, for the message (a read's unknown outcome is no answer).
            let why = result.as_ref().err().map(ToString::to_string);
            match Asked::Read.recorded(first_result(result)?)? {
                Some(op) => history.push((
                    k,
                    Operation {
                        client: 0,
                        op,
                        invoked_at,
                        answered_at: Some(answered_at),
                    },
                )),
                _ => {
                    let why = why.unwrap_or_else(|| "no reason given".to_string());
                    return Err(format!("the last read of key {k} got no answer: {why}"));
                }
            }
        }
        Ok(history)
    })?
}

/// What one key's history held.
#[derive(Clone, Debug, Default)]
pub struct KeyCount {
    pub operations: usize,
    /// Answered reads, writes and deletes, swaps that wrote, and swaps whose condition
    /// failed (they add up to `operations` with those without an answer).
    pub reads: usize,
    pub writes: usize,
    pub swaps_written: usize,
    pub swaps_failed: usize,
    pub unanswered: usize,
}

/// Check each key's history; Err names the first key that is not linearizable and why.
pub fn check_keys(keys: &[Bytes], history: &History) -> Result<Vec<KeyCount>, String> {
    let mut of_key: Vec<Vec<Operation<u64>>> = vec![Vec::new(); keys.len()];
    for (k, op) in history {
        of_key[*k].push(op.clone());
    }
    let mut counts = Vec::new();
    for (key, ops) in keys.iter().zip(of_key) {
        let mut count = KeyCount {
            operations: ops.len(),
            ..KeyCount::default()
        };
        for op in &ops {
            if op.answered_at.is_none() {
                count.unanswered += 1;
                continue;
            }
            match op.op {
                RegisterOp::Read { .. } => count.reads += 1,
                RegisterOp::Write { .. } | RegisterOp::Delete { .. } => count.writes += 1,
                RegisterOp::CasWritten { .. } => count.swaps_written += 1,
                RegisterOp::CasFailed { .. } => count.swaps_failed += 1,
            }
        }
        check_register(&ops, CONFIGURATIONS_MAX)
            .map_err(|error| format!("key {}: {error}", String::from_utf8_lossy(key)))?;
        counts.push(count);
    }
    Ok(counts)
}

/// The reads a check may use: those that must be linearizable (`--help` listed stale, which
/// was then refused).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CheckedRead {
    /// Confirmed by the leader with a heartbeat round (ReadIndex); nodes run with
    /// `--lease-reads` serve it from the leader's lease instead, as `lease`.
    Linearizable,
    /// The leader's lease where the nodes run with `--lease-reads`; elsewhere ReadIndex.
    Lease,
}

/// `cohort check`.
pub fn run(args: &CheckArgs) -> Result<String, String> {
    let consistencies = match args.read {
        CheckedRead::Linearizable => vec![Consistency::Linearizable],
        CheckedRead::Lease => vec![Consistency::Lease],
    };
    if args.clients == 0 || args.keys == 0 || args.seconds == 0 {
        return Err("--clients, --keys and --seconds must be at least 1".to_string());
    }
    if args.seconds > 86_400 {
        return Err(format!("--seconds is {}, at most 86400", args.seconds));
    }
    // A thread per client; a search per key over its own history (linearizability checking
    // is exponential in what overlaps: more keys or clients check nothing more).
    if args.clients > CHECK_CLIENTS_MAX || args.keys > CHECK_KEYS_MAX {
        return Err(format!(
            "--clients is {} and --keys {}: at most {CHECK_CLIENTS_MAX} and {CHECK_KEYS_MAX}",
            args.clients, args.keys
        ));
    }
    let seed = crate::clock::wall_nanos() as u64;
    let keys = key_names(seed % 1_000_000_000, args.keys);
    let origin = crate::clock::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut cannot_start = None;
    for client in 1..=args.clients {
        let check = CheckClient {
            seeds: args.target.nodes.clone(),
            client,
            seed: seed.wrapping_add(client),
            keys: keys.clone(),
            consistencies: consistencies.clone(),
            request_timeout: Duration::from_millis(args.target.timeout_ms),
        };
        let stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(format!("check-client-{client}"));
        match thread.spawn(move || check.run(origin, stop)) {
            Ok(handle) => clients.push(handle),
            Err(error) => {
                cannot_start = Some(format!(
                    "cannot start a thread for client {client} of {}: {error} (a limit on \
                     threads or processes; use fewer --clients)",
                    args.clients
                ));
                break;
            }
        }
    }
    // A client returns before the stop only when it failed: its error is the check's, now
    // rather than after the whole --seconds.
    if cannot_start.is_none() {
        wait_until_or(origin + Duration::from_secs(args.seconds), || {
            clients.iter().any(std::thread::JoinHandle::is_finished)
        });
    }
    stop.store(true, Ordering::Relaxed);
    let mut history = History::new();
    let mut left_out = 0;
    let mut failed = cannot_start.map(Err);
    // The members the clients learned, then the seeds.
    let mut last_readers: Vec<String> = Vec::new();
    for client in clients {
        match client.join().map_err(|_| "a client panicked".to_string())? {
            Ok(done) => {
                history.extend(done.history);
                left_out += done.left_out;
                for member in done.members {
                    if !last_readers.contains(&member) {
                        last_readers.push(member);
                    }
                }
            }
            Err(error) => failed = failed.or(Some(Err(error))),
        }
    }
    if let Some(failed) = failed {
        return failed;
    }
    for seed in &args.target.nodes {
        if !last_readers.contains(seed) {
            last_readers.push(seed.clone());
        }
    }
    history.extend(read_all(&last_readers, &keys, origin)?);
    let counts = check_keys(&keys, &history)?;
    let mut out = String::new();
    for (key, count) in keys.iter().zip(&counts) {
        out.push_str(&format!(
            "{}: {} operations ({} reads, {} writes and deletes, {} swaps written, {} swaps \
             whose condition failed, {} without an answer): linearizable\n",
            String::from_utf8_lossy(key),
            count.operations,
            count.reads,
            count.writes,
            count.swaps_written,
            count.swaps_failed,
            count.unanswered
        ));
    }
    let total: usize = counts.iter().map(|c| c.operations).sum();
    let unanswered: usize = counts.iter().map(|c| c.unanswered).sum();
    let written: usize = counts.iter().map(|c| c.writes + c.swaps_written).sum();
    // Reads of keys never written are trivially linearizable: a cluster that answered no
    // write (refused them all: its disks full) passed (found in review).
    if written == 0 {
        return Err(format!(
            "no write was answered in {} s ({left_out} operations refused or not taken in, \
             {unanswered} without an answer): nothing was checked; is the cluster up, does it \
             have leaders, and room in its logs?",
            args.seconds
        ));
    }
    out.push_str(&format!(
        "cohort check: every key's history is linearizable ({total} operations by {} clients \
         in {} s; {left_out} more refused or not taken in, left out)",
        args.clients, args.seconds
    ));
    Ok(out)
}

/// Sleeps until `deadline` or until `done` says so, looked at every 50 ms (the command
/// line's main thread, never an executor).
#[allow(clippy::disallowed_methods)]
fn wait_until_or(deadline: Instant, done: impl Fn() -> bool) {
    loop {
        let now = crate::clock::now();
        if now >= deadline || done() {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key's counts add up to its operations (found by a user: failed swaps were left out
    /// of the line, so its numbers did not add up).
    #[test]
    fn a_keys_counts_add_up_to_its_operations() {
        let op = |op, at: u64, answered: bool| Operation {
            client: 1,
            op,
            invoked_at: at,
            answered_at: answered.then_some(at + 1),
        };
        let history: History = vec![
            (0, op(RegisterOp::Write { value: Some(1) }, 0, true)),
            (0, op(RegisterOp::Read { saw: Some(1) }, 2, true)),
            (
                0,
                op(
                    RegisterOp::CasWritten {
                        expected: Some(1),
                        new: 2,
                    },
                    4,
                    true,
                ),
            ),
            (
                0,
                op(
                    RegisterOp::CasFailed {
                        expected: Some(1),
                        current: Some(2),
                    },
                    6,
                    true,
                ),
            ),
            (0, op(RegisterOp::Write { value: Some(3) }, 8, false)),
        ];
        let counts = check_keys(&[Bytes::from_static(b"k")], &history).expect("linearizable");
        let c = &counts[0];
        let parts = [
            c.reads,
            c.writes,
            c.swaps_written,
            c.swaps_failed,
            c.unanswered,
        ];
        assert_eq!(parts, [1, 1, 1, 1, 1]);
        assert_eq!(parts.iter().sum::<usize>(), c.operations);
    }
}
