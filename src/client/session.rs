//! A client of a cohort cluster: routes each request to the core that owns its keys, follows
//! leader hints, retries with the same sequence number (so nothing is applied twice), and
//! caches leaders per group.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;

use crate::kv::{Command, CommandError, Op, OpResult};
use crate::proto::client::{
    Consistency, ErrorCode, Outcome, Request, decode_responses, encode_requests,
};
use crate::proto::topology::{
    Topology, client_address, decode_topology, encode_topology_request, group_of,
};
use crate::raft::Prng;
use crate::wire::FrameEncoder;

use super::conn::Conn;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Base addresses (`host:P`) of some members; the first that answers gives the topology.
    pub seeds: Vec<String>,
    /// How long one attempt waits for its answer before trying another node.
    pub attempt_timeout: Duration,
    /// How long a request may take in all, retries included.
    pub request_timeout: Duration,
    /// Seeds the client id and the choice of nodes to try.
    pub seed: u64,
}

impl ClientOptions {
    pub fn new(seeds: Vec<String>, seed: u64) -> ClientOptions {
        ClientOptions {
            seeds,
            attempt_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            seed,
        }
    }
}

#[derive(Debug)]
pub enum ClientError {
    /// No seed answered with a topology.
    NoCluster(String),
    /// The request broke a limit or made no sense; retrying will not help.
    Invalid(String),
    /// The cluster refused it (session expired, malformed, too large).
    Refused { code: ErrorCode, message: String },
    /// No answer within the request timeout; the write may or may not have been applied
    /// (a retry with the same client would find out without applying it twice).
    Timeout { attempts: u32, last_error: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoCluster(why) => write!(f, "no cluster member answered: {why}"),
            ClientError::Invalid(why) => write!(f, "invalid request: {why}"),
            ClientError::Refused { code, message } => write!(f, "refused ({code:?}): {message}"),
            ClientError::Timeout {
                attempts,
                last_error,
            } => write!(
                f,
                "no answer after {attempts} attempts (last: {last_error}); the outcome is unknown"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<CommandError> for ClientError {
    fn from(error: CommandError) -> Self {
        ClientError::Invalid(error.to_string())
    }
}

/// One request of a batch on its way, and where it is being sent.
struct Slot {
    request: Request,
    group: u32,
    node: Option<u64>,
}

pub struct Client {
    options: ClientOptions,
    topology: Topology,
    /// The base of this client's ids. Exactly-once sessions live in each group's state
    /// machine, so each group sees its own client id (a hash of base and group) with its own
    /// sequence numbers 1, 2, 3, …; reads, which never touch a session, use one more id.
    client_id: u64,
    /// Next sequence per derived client id.
    sequences: HashMap<u64, u64>,
    leaders: HashMap<u32, u64>,
    conns: HashMap<String, Conn>,
    encoder: FrameEncoder,
    rng: Prng,
}

impl Client {
    /// Ask the seeds for the cluster's topology.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let mut rng = Prng::new(options.seed);
        let mut encoder = FrameEncoder::new();
        encode_topology_request(&mut encoder).expect("an empty frame fits");
        let mut errors = Vec::new();
        for seed in &options.seeds {
            let Some(address) = client_address(seed, 0) else {
                errors.push(format!("{seed}: not HOST:PORT"));
                continue;
            };
            let attempt = async {
                let mut conn = Conn::connect(&address, options.attempt_timeout).await?;
                conn.send(&encoder).await?;
                let frame = conn.recv().await?;
                decode_topology(&frame).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })
            };
            match with_timeout(options.attempt_timeout, attempt).await {
                Ok(topology) => {
                    // Client ids must not collide: mix the seed with the process id.
                    // Ids must not collide between clients: mix the seed with the process id.
                    let client_id = rng.next_u64() ^ u64::from(std::process::id()) << 32;
                    return Ok(Client {
                        topology,
                        client_id,
                        sequences: HashMap::new(),
                        leaders: HashMap::new(),
                        conns: HashMap::new(),
                        encoder,
                        rng,
                        options,
                    });
                }
                Err(error) => {
                    errors.push(format!("{seed} (clients of core 0 at {address}): {error}"))
                }
            }
        }
        Err(ClientError::NoCluster(errors.join("; ")))
    }

    /// [`Client::connect`], retried until `patience` runs out (a cluster that is starting).
    pub async fn connect_retrying(
        options: ClientOptions,
        patience: Duration,
    ) -> Result<Client, ClientError> {
        let deadline = crate::clock::now() + patience;
        loop {
            match Client::connect(options.clone()).await {
                Ok(client) => return Ok(client),
                Err(error) if crate::clock::now() >= deadline => return Err(error),
                Err(_) => glommio::timer::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Run `ops` atomically (all keys must belong to one group).
    pub async fn execute(
        &mut self,
        ops: Vec<Op>,
        consistency: Consistency,
    ) -> Result<Vec<OpResult>, ClientError> {
        let mut results = self.execute_batch(vec![(ops, consistency)]).await;
        results.pop().expect("one result per request")
    }

    /// Run many requests at once, each atomic on its own (its keys in one group). Requests
    /// for the same core of the same node travel in one frame, and their answers come back
    /// in one, so a batch costs a few syscalls instead of a few per request. Results come
    /// back in the order of `requests`.
    pub async fn execute_batch(
        &mut self,
        requests: Vec<(Vec<Op>, Consistency)>,
    ) -> Vec<Result<Vec<OpResult>, ClientError>> {
        // A slot per request while it waits for its answer; None once answered or refused.
        let mut slots: Vec<Option<Slot>> = Vec::with_capacity(requests.len());
        let mut results: Vec<Option<Result<Vec<OpResult>, ClientError>>> = Vec::new();
        for (ops, consistency) in requests {
            match self.prepare(ops, consistency) {
                Ok(slot) => {
                    results.push(None);
                    slots.push(Some(slot));
                }
                Err(error) => {
                    results.push(Some(Err(error)));
                    slots.push(None);
                }
            }
        }
        // Everything before this batch has its answer: each id's lowest sequence here is the
        // first one still unacknowledged.
        let mut first_unacked: HashMap<u64, u64> = HashMap::new();
        for slot in slots.iter().flatten() {
            let id = slot.request.command.client_id;
            let lowest = first_unacked.entry(id).or_insert(u64::MAX);
            *lowest = (*lowest).min(slot.request.command.sequence);
        }
        for slot in slots.iter_mut().flatten() {
            slot.request.command.first_unacked = first_unacked[&slot.request.command.client_id];
        }
        let deadline = crate::clock::now() + self.options.request_timeout;
        let mut attempts = 0;
        let mut last_error = String::new();
        loop {
            for (slot, result) in slots.iter_mut().zip(&results) {
                if result.is_some() {
                    *slot = None;
                }
            }
            if slots.iter().all(Option::is_none) || crate::clock::now() >= deadline {
                break;
            }
            attempts += 1;
            // One frame per address, with every request that goes there.
            let mut by_address: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            let pending = slots.iter_mut().enumerate();
            for (i, slot) in pending.filter_map(|(i, s)| s.as_mut().map(|s| (i, s))) {
                let node = slot.node.unwrap_or_else(|| self.leader_guess(slot.group));
                slot.node = Some(node);
                match self.topology.address_of(node, slot.group) {
                    Some(address) => by_address.entry(address).or_default().push(i),
                    None => slot.node = Some(self.other_member(node)),
                }
            }
            let mut pause = false;
            for (address, members) in by_address {
                let frame: Vec<Request> = members
                    .iter()
                    .filter_map(|&i| slots[i].as_ref().map(|s| s.request.clone()))
                    .collect();
                match self.exchange(&address, &frame).await {
                    Ok(outcomes) => {
                        for (&i, outcome) in members.iter().zip(outcomes) {
                            let Some(slot) = slots[i].as_mut() else {
                                continue;
                            };
                            let node = slot.node.expect("routed");
                            match outcome {
                                Some(Outcome::Results(answer)) => {
                                    self.leaders.insert(slot.group, node);
                                    results[i] = Some(Ok(answer));
                                }
                                Some(Outcome::NotLeader { leader, .. })
                                    if leader != 0 && leader != node =>
                                {
                                    slot.node = Some(leader);
                                    last_error = format!("node {node} is not the leader");
                                }
                                Some(Outcome::NotLeader { .. }) => {
                                    // No leader known (an election is on): ask someone else.
                                    last_error = "no leader known".to_string();
                                    slot.node = Some(self.other_member(node));
                                    pause = true;
                                }
                                Some(Outcome::Error {
                                    code: ErrorCode::Busy,
                                    message,
                                }) => {
                                    last_error = message;
                                    pause = true;
                                }
                                Some(Outcome::Error { code, message }) => {
                                    results[i] = Some(Err(ClientError::Refused { code, message }));
                                }
                                None => {
                                    last_error = format!("{address}: no answer in time");
                                    slot.node = Some(self.other_member(node));
                                    pause = true;
                                }
                            }
                        }
                    }
                    Err(error) => {
                        self.conns.remove(&address);
                        last_error = format!("{address}: {error}");
                        for &i in &members {
                            if let Some(slot) = slots[i].as_mut() {
                                let node = slot.node.expect("routed");
                                slot.node = Some(self.other_member(node));
                            }
                        }
                        pause = true;
                    }
                }
            }
            if pause {
                self.pause().await;
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(ClientError::Timeout {
                        attempts,
                        last_error: last_error.clone(),
                    })
                })
            })
            .collect()
    }

    /// Check a request and give it its client id and sequence (kept across retries).
    fn prepare(&mut self, ops: Vec<Op>, consistency: Consistency) -> Result<Slot, ClientError> {
        let Some(first) = ops.first() else {
            return Err(ClientError::Invalid(
                "a request needs an operation".to_string(),
            ));
        };
        let groups = self.topology.groups;
        let group = group_of(first.key(), groups);
        if ops.iter().any(|op| group_of(op.key(), groups) != group) {
            return Err(ClientError::Invalid(
                "the keys of one request must belong to one group".to_string(),
            ));
        }
        let read_only = ops.iter().all(Op::is_read);
        // A 64-bit hash of (base, group), or of (base, reads): collisions are negligible.
        let tag = if read_only {
            u64::MAX
        } else {
            u64::from(group)
        };
        let client_id = Prng::new(self.client_id ^ tag.rotate_left(32)).next_u64();
        let next = self.sequences.entry(client_id).or_insert(1);
        let sequence = *next;
        let request = Request {
            command: Command {
                client_id,
                sequence,
                first_unacked: sequence,
                ops,
            },
            consistency,
        };
        request.command.validate()?;
        *next += 1;
        Ok(Slot {
            request,
            group,
            node: None,
        })
    }

    /// Send `requests` to `address` in one frame and collect their answers (None for one
    /// that got no answer within the attempt timeout).
    async fn exchange(
        &mut self,
        address: &str,
        requests: &[Request],
    ) -> std::io::Result<Vec<Option<Outcome>>> {
        let timeout = self.options.attempt_timeout;
        if !self.conns.contains_key(address) {
            let conn = with_timeout(timeout, Conn::connect(address, timeout)).await?;
            self.conns.insert(address.to_string(), conn);
        }
        encode_requests(&mut self.encoder, requests)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let conn = self.conns.get_mut(address).expect("inserted");
        conn.send(&self.encoder).await?;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
        let mut missing = requests.len();
        let wanted: HashMap<(u64, u64), usize> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.command.client_id, r.command.sequence), i))
            .collect();
        let collect = async {
            while missing > 0 {
                let frame = conn.recv().await?;
                let responses = decode_responses(&frame).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?;
                // Answers to earlier attempts that timed out are skipped.
                for response in responses {
                    let key = (response.client_id, response.sequence);
                    if let Some(&i) = wanted.get(&key)
                        && outcomes[i].is_none()
                    {
                        outcomes[i] = Some(response.outcome);
                        missing -= 1;
                    }
                }
            }
            Ok::<(), std::io::Error>(())
        };
        match with_timeout(timeout, collect).await {
            Ok(()) => Ok(outcomes),
            // Some answers came, some did not: the connection may be stuck; drop it, keep
            // what arrived.
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                self.conns.remove(address);
                Ok(outcomes)
            }
            Err(error) => Err(error),
        }
    }

    fn leader_guess(&mut self, group: u32) -> u64 {
        match self.leaders.get(&group) {
            Some(&node) => node,
            None => {
                let members = &self.topology.members;
                members[self.rng.below(members.len() as u64) as usize].0
            }
        }
    }

    fn other_member(&mut self, not: u64) -> u64 {
        let members = &self.topology.members;
        if members.len() == 1 {
            return members[0].0;
        }
        loop {
            let candidate = members[self.rng.below(members.len() as u64) as usize].0;
            if candidate != not {
                return candidate;
            }
        }
    }

    /// A short jittered wait before the next attempt, so retries do not hammer an election.
    async fn pause(&mut self) {
        let pause = Duration::from_millis(5 + self.rng.below(20));
        glommio::timer::sleep(pause).await;
    }

    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let op = Op::Put {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        };
        self.execute(vec![op], Consistency::Linearizable)
            .await
            .map(drop)
    }

    pub async fn get(
        &mut self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Bytes>, ClientError> {
        let op = Op::Get {
            key: Bytes::copy_from_slice(key),
        };
        match self.execute(vec![op], consistency).await?.pop() {
            Some(OpResult::Value(value)) => Ok(Some(value)),
            _ => Ok(None),
        }
    }
}

/// `work`, or a timeout error after `timeout`.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    work: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    future::or(work, async {
        glommio::timer::sleep(timeout).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        ))
    })
    .await
}
