//! A client of a cohort cluster: routes each request to the core that owns its keys, follows
//! leader hints, retries with the same sequence number (so nothing is applied twice), and
//! caches leaders per group.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use futures_lite::future;

use crate::kv::{Command, CommandError, Op, OpResult, Ops, Results};
use crate::proto::client::{
    Consistency, ErrorCode, Outcome, REQUEST_BYTES_MAX, Request, encode_requests, request_bytes,
    request_frames,
};
use crate::proto::topology::{
    Topology, client_address, core_of, decode_topology, encode_topology_request, group_of,
};
use crate::raft::Prng;
use crate::wire::FrameEncoder;

use super::channel::{Attempt, Channel};
use super::conn::exchange;
use super::cut_off::{CutOffs, Place};
use super::silence;
use super::unanswered::Unanswered;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Base addresses (`host:P`) of some members; the first that answers gives the topology.
    pub seeds: Vec<String>,
    /// How long one attempt waits for its answer before trying another node.
    pub attempt_timeout: Duration,
    /// How long a request may take in all, retries included.
    pub request_timeout: Duration,
    /// Seeds the choice of nodes to try. (It is mixed into the client id too, which is
    /// unique whatever the seed: see `unique_client_id`.)
    pub seed: u64,
}

/// [`ClientOptions::request_timeout`] unless set otherwise.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

impl ClientOptions {
    pub fn new(seeds: Vec<String>, seed: u64) -> ClientOptions {
        ClientOptions {
            seeds,
            attempt_timeout: Duration::from_secs(2),
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            seed,
        }
    }
}

/// Why a request failed, and what it did:
///
/// | error | applied? |
/// |---|---|
/// | `NoCluster`, `Invalid`, `Unavailable`, `Refused` | no: nothing was applied |
/// | `Timeout`, `Unknown` | not known ([`ClientError::outcome_unknown`]) |
#[derive(Debug)]
pub enum ClientError {
    /// No seed answered with a topology. Nothing was sent.
    NoCluster(String),
    /// The request broke a limit or made no sense; retrying will not help. Nothing was sent.
    Invalid(String),
    /// The cluster refused it (session expired, malformed, too large, no space), and no attempt of
    /// it may have been taken in before: it was not applied.
    Refused { code: ErrorCode, message: String },
    /// No answer within the request timeout; the write may or may not have been applied,
    /// and may still be, after this error is returned (it may wait in a leader's log for a
    /// quorum). A retry is a new request (a new sequence number): if the first was applied,
    /// or is later, the retry applies again. A read first does not tell: it may come before
    /// the first is applied. So make retried writes idempotent (a put of the same value) or
    /// conditional (a compare-and-swap on what the first would have changed).
    Timeout { attempts: u32, last_error: String },
    /// No answer within the request timeout, and the request changed nothing: it only read,
    /// or no node took it in (every attempt failed to connect, or was refused before it was
    /// proposed: "not the leader" from a node that proposed nothing, "busy").
    Unavailable { attempts: u32, last_error: String },
    /// The last attempt was refused, but an earlier one may have been taken in (it went
    /// unanswered, or its connection broke), so the request may have been applied. As with
    /// a timeout, the outcome is unknown. (A leader that proposed a request and then lost
    /// its term answers "not the leader", as a follower does. The retry at the next leader,
    /// with the same sequence number, usually finds the request applied and gets its
    /// result, or applies it; but if the store no longer holds that result (the client's
    /// session was evicted, or thousands of its later requests were answered meanwhile),
    /// the retry is refused as expired, which says nothing of the first attempt: such a
    /// refusal is reported here too. So is any other refusal after a "not the leader" that
    /// says the request may have been proposed: a node of smaller limits (`--segment-mib`)
    /// may refuse as too large what another proposed. After one that says nothing was
    /// proposed, a refusal is `Refused`.)
    Unknown { code: ErrorCode, message: String },
}

impl ClientError {
    /// Whether the request may have been applied although it failed (see
    /// [`ClientError::Timeout`] and [`ClientError::Unknown`]).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. } | ClientError::Unknown { .. }
        )
    }
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
                "not done in time, after {} (last: {last_error}); the outcome \
                 is unknown",
                attempts_said(*attempts)
            ),
            ClientError::Unavailable {
                attempts,
                last_error,
            } => write!(
                f,
                "not done in time, after {} (last: {last_error}); it changed \
                 nothing",
                attempts_said(*attempts)
            ),
            ClientError::Unknown { code, message } => write!(
                f,
                "refused ({code:?}): {message}; an earlier attempt may have been applied, so \
                 the outcome is unknown"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// "1 attempt", "3 attempts" (a tester read "after 1 attempts").
fn attempts_said(attempts: u32) -> String {
    match attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    }
}

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
    /// An attempt may have been taken in: a refusal after it, or no answer in time, does not
    /// mean "not applied".
    maybe_taken: bool,
    /// An attempt was answered "not the leader": a next one pauses before it follows a hint.
    redirected: bool,
    /// The request goes to `node`, a member that does not lead its group, for it to forward
    /// to the leader, which this client cannot reach (see `Client::route`).
    relayed: bool,
    /// An attempt was answered "not the leader" by a leader that may have proposed the
    /// request before it lost its term: the request may commit all the same.
    proposal_orphaned: bool,
    /// Which of the client's ids the request belongs to: its group's, or the reads'.
    tag: u64,
    /// The request was numbered again under a fresh id after its session expired.
    renewed: bool,
    /// Why this request's last attempt failed, for its error if none succeeds.
    last_error: String,
    /// What a node said when it last refused this request as busy: its error names it even
    /// where a later attempt went unanswered, or found no leader.
    refused_busy: Option<String>,
    /// Why a connection for this request could not be opened, where this process may open
    /// no more files: its error names that cause, not the redirects that followed it.
    out_of_files: Option<String>,
}

impl Slot {
    /// The next attempt goes to `node` (not relayed: `Client::route` decides that).
    fn go_to(&mut self, node: u64) {
        self.node = Some(node);
        self.relayed = false;
    }

    /// Whether the request may have been applied, although no answer said so: it writes,
    /// and an attempt may have been taken in, or a leader that may have proposed it lost its
    /// term.
    fn may_have_applied(&self) -> bool {
        !self.request.command.is_read_only() && (self.maybe_taken || self.proposal_orphaned)
    }
}

/// A batch's requests while they wait for answers (a slot per request; None once answered
/// or refused), and the connections of the attempt under way with the requests each
/// carries. However the batch ends, its dropped future's included (a caller that stopped
/// waiting), the requests still waiting are given up: they no longer hold back their id's
/// `first_unacked`, nor wait for answers on their connections.
/// The requests (places in a batch's slots) queued on each connection, by address.
type Queued = RefCell<Vec<(String, Rc<Channel>, Vec<usize>)>>;

struct Waiting<'c> {
    client: &'c Client,
    slots: Vec<Option<Slot>>,
    /// The requests (places in `slots`) queued on each connection, recorded as they are
    /// queued: a batch dropped while it still sent elsewhere left them waiting there.
    sent: Queued,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        for (_, channel, members) in self.sent.get_mut().iter() {
            for slot in members.iter().filter_map(|&i| self.slots[i].as_ref()) {
                let command = &slot.request.command;
                channel.forget((command.client_id, command.sequence));
            }
        }
        for slot in self.slots.iter().flatten() {
            self.client.answered(&slot.request);
        }
    }
}

/// The answer to one request of a batch, and which node gave it.
#[derive(Debug)]
pub struct Answer {
    pub result: Result<Results, ClientError>,
    /// The node whose answer ended the request (None when none did).
    pub node: Option<u64>,
    /// When that answer arrived (taken as its frame was read, so a batch's answers that come
    /// in different frames have different times), or when the client gave up on the request.
    pub at: Instant,
}

/// A client, cheap to clone: the clones share connections, leader hints and sessions, so many
/// tasks of one executor can have requests in flight on the same connections at once.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

struct Inner {
    options: ClientOptions,
    /// The cluster as last asked; asked again when a hint names a node it lacks or a member
    /// stops answering (membership changes).
    topology: RefCell<Topology>,
    /// When the topology was last asked for: at most one refresh per `REFRESH_EVERY`.
    refreshed: Cell<Instant>,
    /// The base of this client's ids. Exactly-once sessions live in each group's state
    /// machine, so each group sees its own client id (a hash of base and group) with its own
    /// sequence numbers 1, 2, 3, …; reads, which never touch a session, use one more id.
    client_id: u64,
    state: RefCell<State>,
}

struct State {
    /// The id in use per tag (a group, or the reads): derived from the base at first, a
    /// fresh one after the group forgot the session of the last.
    ids: HashMap<u64, u64>,
    /// Next sequence per derived client id.
    sequences: HashMap<u64, u64>,
    /// Sequences sent and not yet answered, per derived client id: the lowest is what a
    /// request tells the state machine as its `first_unacked`.
    unanswered: HashMap<u64, Unanswered>,
    /// Derived client ids with at least one request applied (so their group holds a session).
    applied: HashSet<u64>,
    leaders: HashMap<u32, u64>,
    /// When this client last gave each node up: its connection silent, a dial of it failed,
    /// a request it relayed failed, or it was found cut off.
    given_up: HashMap<u64, Instant>,
    /// The cores of nodes that lead while this client cannot reach them, by (node, core)
    /// (see `Client::watch_silence`): their groups' requests go through another member
    /// until a probe or an answer finds them reachable. By core: a cut may take one port of
    /// a node and leave the others (found by a tester: an answer of another core ended the
    /// cut-off, and the next dial of the cut port waited out its patience).
    cut_off: CutOffs,
    channels: HashMap<String, Rc<Channel>>,
    encoder: FrameEncoder,
    rng: Prng,
}

/// A client id no other client shares, now or later. The state machine keeps each id's last
/// replies, so a new client that reused an old id would have its first requests taken for
/// the old client's retries: answered from the old replies and never applied. The seed
/// and the process id alone do not do (`cohort put` runs as pid 1 in every container, and
/// pids wrap): this mixes them with the process's random hash keys (drawn from the OS) and
/// the wall clock, through SipHash.
fn unique_client_id(seed: u64) -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(seed);
    hasher.write_u32(std::process::id());
    hasher.write_u128(crate::clock::wall_nanos());
    hasher.finish()
}

impl Client {
    /// Ask the seeds for the cluster's topology.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let rng = Prng::new(options.seed);
        let topology = fetch_topology(&options.seeds, options.attempt_timeout).await?;
        let client_id = unique_client_id(options.seed);
        let state = State {
            ids: HashMap::new(),
            sequences: HashMap::new(),
            unanswered: HashMap::new(),
            applied: HashSet::new(),
            leaders: HashMap::new(),
            given_up: HashMap::new(),
            cut_off: CutOffs::default(),
            channels: HashMap::new(),
            encoder: FrameEncoder::new(),
            rng,
        };
        let inner = Inner {
            topology: RefCell::new(topology),
            refreshed: Cell::new(crate::clock::now()),
            client_id,
            state: RefCell::new(state),
            options,
        };
        Ok(Client {
            inner: Rc::new(inner),
        })
    }

    /// Ask the members (and the seeds) for the topology again, at most once per
    /// `REFRESH_EVERY`, and not past `deadline`: the membership may have changed.
    async fn refresh_topology(&self, deadline: Instant) {
        let now = crate::clock::now();
        if now < self.inner.refreshed.get() + REFRESH_EVERY || now >= deadline {
            return;
        }
        self.inner.refreshed.set(now);
        let mut seeds: Vec<String> = self.topology().members.into_iter().map(|m| m.1).collect();
        for seed in &self.inner.options.seeds {
            if !seeds.contains(seed) {
                seeds.push(seed.clone());
            }
        }
        let known = self.topology();
        let asked = fetch_topology_like(&seeds, self.inner.options.attempt_timeout, &known);
        let fetched = future::or(async { Some(asked.await) }, async {
            glommio::timer::sleep(deadline - now).await;
            None
        });
        if let Some(Ok(topology)) = fetched.await {
            // Connections to addresses the layout no longer lists (a member removed, or
            // moved to another address), and those the node closed, go: kept, each held its
            // socket for the client's life (found in review).
            let listed: std::collections::BTreeSet<String> = (topology.members.iter())
                .flat_map(|(_, base)| (0..topology.cores).filter_map(|c| client_address(base, c)))
                .collect();
            let mut state = self.inner.state.borrow_mut();
            (state.channels)
                .retain(|address, channel| listed.contains(address) && !channel.is_broken());
            // Nor are members no longer listed cut off, or relays (review 304).
            let member = |node: u64| topology.members.iter().any(|m| m.0 == node);
            state.cut_off.retain_members(member);
            drop(state);
            *self.inner.topology.borrow_mut() = topology;
        }
    }

    /// [`Client::connect`], retried until `patience` runs out (a cluster that is starting).
    pub async fn connect_retrying(
        options: ClientOptions,
        patience: Duration,
    ) -> Result<Client, ClientError> {
        let deadline = crate::clock::deadline_in(patience);
        loop {
            match Client::connect(options.clone()).await {
                Ok(client) => return Ok(client),
                Err(error) if crate::clock::now() >= deadline => return Err(error),
                Err(_) => glommio::timer::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// How many client ids this client keeps state for: one per group it wrote to (and one
    /// for reads), plus ids retired with requests still unanswered (tests).
    #[doc(hidden)]
    pub fn ids_held(&self) -> usize {
        let state = self.inner.state.borrow();
        let held = (state.sequences.keys())
            .chain(state.unanswered.keys())
            .chain(state.applied.iter());
        held.collect::<HashSet<_>>().len()
    }

    /// The cluster as this client last learned it.
    pub fn topology(&self) -> Topology {
        self.inner.topology.borrow().clone()
    }

    /// Run `ops` together, in one log entry (all keys must belong to one group): each
    /// condition guards its own operation, not the others.
    pub async fn execute(
        &self,
        ops: impl Into<Ops>,
        consistency: Consistency,
    ) -> Result<Vec<OpResult>, ClientError> {
        let mut answers = self
            .execute_batch_traced(vec![(ops.into(), consistency)])
            .await;
        let answer = answers.pop().expect("one answer per request");
        answer.result.map(|results| results.to_vec())
    }

    /// Run many requests at once, each atomic on its own (its keys in one group). Requests
    /// for the same core of the same node travel in one frame, and their answers come back
    /// in one, so a batch costs a few syscalls instead of a few per request. Results come
    /// back in the order of `requests`.
    pub async fn execute_batch(
        &self,
        requests: Vec<(Ops, Consistency)>,
    ) -> Vec<Result<Vec<OpResult>, ClientError>> {
        let answers = self.execute_batch_traced(requests).await;
        answers
            .into_iter()
            .map(|answer| answer.result.map(|results| results.to_vec()))
            .collect()
    }

    /// [`Client::execute_batch`], telling for each request which node answered it, and when.
    pub async fn execute_batch_traced(&self, requests: Vec<(Ops, Consistency)>) -> Vec<Answer> {
        let mut waiting = Waiting {
            client: self,
            slots: Vec::with_capacity(requests.len()),
            sent: RefCell::default(),
        };
        let slots = &mut waiting.slots;
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(requests.len());
        for (ops, consistency) in requests {
            match self.prepare(ops, consistency) {
                Ok(slot) => {
                    answers.push(None);
                    slots.push(Some(slot));
                }
                Err(error) => {
                    answers.push(Some(Answer {
                        result: Err(error),
                        node: None,
                        at: crate::clock::now(),
                    }));
                    slots.push(None);
                }
            }
        }
        let options = &self.inner.options;
        let deadline = crate::clock::deadline_in(options.request_timeout);
        let (mut attempts, mut pauses) = (0, 0);
        // Set by a pause that left less than its own floor before the deadline.
        let mut no_time_left = false;
        loop {
            for (slot, answer) in slots.iter_mut().zip(&answers) {
                if answer.is_some()
                    && let Some(slot) = slot.take()
                {
                    self.answered(&slot.request);
                }
            }
            if slots.iter().all(Option::is_none) || no_time_left || crate::clock::now() >= deadline
            {
                break;
            }
            attempts += 1;
            let mut pause = false;
            // A node refused as busy, or its connection backed up: the pauses grow longer.
            let mut busy = false;
            // The attempt's waits together (its connections, then its answers) end by its
            // end, and that is no later than the deadline.
            let attempt_end = crate::clock::now()
                + options
                    .attempt_timeout
                    .min(deadline.saturating_duration_since(crate::clock::now()));
            let left = || attempt_end.saturating_duration_since(crate::clock::now());
            // Send everything first, one frame per address, then collect every answer: the
            // nodes work on all of them at once.
            let attempt = Attempt::new(slots.len());
            let routed = self.route(slots);
            if routed.is_empty() {
                // No member of those it tried has an address a client can reach (a layout
                // from a broken node, a leader it has not heard of; `route` named it for
                // each request): wait before the next pick, as after a failed send.
                pause = true;
            }
            // Every address at once: connecting to one that does not answer (a machine off)
            // took the attempt's time, and in turn left the others' requests none (found in
            // review: no request of a batch was ever answered). A node whose connection was
            // given up lately for its silence (`watch_silence`) has an election timeout to
            // connect: a leader whose machine was gone held its clients for the attempt's 2 s
            // while another was elected, sent back to it by followers that had not noticed.
            let allowed = silence::silence_allowed(self.inner.topology.borrow().timing);
            let queued = &waiting.sent;
            // Whether each dial was cut short by the attempt's end to less than an election
            // timeout: its failure then says nothing of the node (review 302).
            let mut cut_short = Vec::with_capacity(routed.len());
            let sends = (routed.iter())
                .map(|(address, members)| {
                    let place = members.first().and_then(|&i| {
                        let slot = slots[i].as_ref()?;
                        Some((slot.node?, self.core_of(slot.group)))
                    });
                    let patience = self.dial_patience(place, allowed);
                    cut_short.push(left() < allowed);
                    self.send(
                        address,
                        members,
                        slots,
                        &attempt,
                        queued,
                        left().min(patience),
                    )
                })
                .collect();
            let sent = join_all(sends).await;
            let sent = sent.into_iter().zip(cut_short);
            for ((address, members), (sent, cut_short)) in routed.into_iter().zip(sent) {
                match sent {
                    // A connection was had: no earlier want of files explains what follows.
                    Ok(backed_up) if backed_up.is_empty() => {
                        for &i in &members {
                            if let Some(slot) = slots[i].as_mut() {
                                slot.out_of_files = None;
                            }
                        }
                    }
                    // Not sent (the connection backed up): tried again after a pause.
                    Ok(backed_up) => {
                        for &i in &backed_up {
                            if let Some(slot) = slots[i].as_mut() {
                                slot.last_error = format!("{address}: its connection is backed up");
                            }
                        }
                        (pause, busy) = (true, true);
                    }
                    Err(error) => {
                        // Found by a benchmarker: past its open-files limit, a client's
                        // requests failed as "node 1 is not the leader", the follower's
                        // answer after the leader's connection could not be opened.
                        let out_of_files = match error.raw_os_error() {
                            Some(libc::EMFILE) => Some(format!(
                                "{address}: {error}: this process may open no more files \
                                 (raise its limit: `ulimit -n`, LimitNOFILE=; or hold fewer \
                                 connections)"
                            )),
                            Some(libc::ENFILE) => Some(format!(
                                "{address}: {error}: the system may open no more files \
                                 (its limit: fs.file-max)"
                            )),
                            _ => None,
                        };
                        for &i in &members {
                            if let Some(slot) = slots[i].as_mut() {
                                slot.last_error = format!("{address}: {error}");
                                if out_of_files.is_some() {
                                    slot.out_of_files.clone_from(&out_of_files);
                                }
                            }
                        }
                        // Not for want of files here, nor a dial the attempt's end cut short:
                        // those say nothing of the node.
                        let timed_out = error.kind() == std::io::ErrorKind::TimedOut;
                        let unreachable = out_of_files.is_none() && !(timed_out && cut_short);
                        self.reroute(&members, slots, unreachable);
                        pause = true;
                    }
                }
            }
            // Every answer, or the end of the attempt's time: whatever is missing then went
            // unanswered.
            self.answers_or_end(&attempt, &waiting.sent, slots, left(), allowed)
                .await;
            for (address, channel, members) in waiting.sent.take() {
                for i in members {
                    let Some(slot) = slots[i].as_mut() else {
                        continue;
                    };
                    let key = (
                        slot.request.command.client_id,
                        slot.request.command.sequence,
                    );
                    let node = slot.node.expect("routed");
                    let (answer, arrived) = attempt.take(i).unzip();
                    // No answer, or a broken connection: the node may have taken it in.
                    slot.maybe_taken |= matches!(answer, None | Some(Err(_)));
                    if matches!(answer, Some(Ok(_)))
                        && !self.inner.state.borrow().cut_off.is_empty()
                    {
                        self.heard_from(slot, node, answer.as_ref());
                    }
                    let redirected_before = slot.redirected;
                    if let Some(Ok(Outcome::NotLeader { maybe_proposed, .. })) = &answer {
                        slot.redirected = true;
                        slot.proposal_orphaned |= maybe_proposed;
                    }
                    let misfit = match &answer {
                        Some(Ok(Outcome::Results(result))) => {
                            super::results_fit::misfit(&slot.request.command.ops, result)
                        }
                        _ => None,
                    };
                    match answer {
                        // Results that do not fit the request (a broken or hostile node):
                        // taken as results, a put answered with none was reported done. A
                        // write answered was applied, or may have been.
                        Some(Ok(Outcome::Results(_))) if misfit.is_some() => {
                            let why = misfit.unwrap_or_default();
                            let message = format!("node {node} answered {why}");
                            let error = if slot.request.command.is_read_only() {
                                ClientError::Refused {
                                    code: ErrorCode::Malformed,
                                    message,
                                }
                            } else {
                                ClientError::Unknown {
                                    code: ErrorCode::Malformed,
                                    message,
                                }
                            };
                            answers[i] = Some(Answer {
                                result: Err(error),
                                node: Some(node),
                                at: arrived.expect("an answer has its time"),
                            });
                        }
                        Some(Ok(Outcome::Results(result))) => {
                            let mut state = self.inner.state.borrow_mut();
                            // Any member answers a stale read, and one relayed: only other
                            // answers name the leader.
                            if slot.request.consistency != Consistency::Stale && !slot.relayed {
                                state.leaders.insert(slot.group, node);
                            }
                            // Not for an id retired meanwhile (another of its requests
                            // found the session forgotten): it holds no session any more.
                            let id = slot.request.command.client_id;
                            if state.ids.get(&slot.tag) == Some(&id) {
                                state.applied.insert(id);
                            }
                            drop(state);
                            answers[i] = Some(Answer {
                                result: Ok(result),
                                node: Some(node),
                                at: arrived.expect("an answer has its time"),
                            });
                        }
                        // Naming itself: it leads again, in a new term, and its write of an
                        // older term may not commit; the retry goes to it again.
                        Some(Ok(Outcome::NotLeader { leader, .. })) if leader != 0 => {
                            slot.go_to(leader);
                            // The group's next requests go there at once too: a leader
                            // learnt only from answers kept sending them to a node that
                            // stopped leading.
                            self.inner
                                .state
                                .borrow_mut()
                                .leaders
                                .insert(slot.group, leader);
                            slot.last_error = if leader == node {
                                format!("node {node} leads in a new term")
                            } else {
                                format!("node {node} is not the leader")
                            };
                            // A leader this client never heard of: a new member. Sent on
                            // before: hints that are out of date (an election is on) may send
                            // it round between nodes.
                            let known = self
                                .inner
                                .topology
                                .borrow()
                                .members
                                .iter()
                                .any(|m| m.0 == leader);
                            pause |= !known || redirected_before;
                        }
                        Some(Ok(Outcome::NotLeader { .. })) => {
                            // No leader known (an election is on): ask someone else.
                            slot.last_error = "no leader known".to_string();
                            slot.go_to(self.other_member(node));
                            pause = true;
                        }
                        Some(Ok(Outcome::Error {
                            code: ErrorCode::Busy,
                            message,
                        })) => {
                            slot.refused_busy = Some(message.clone());
                            slot.last_error = message;
                            (pause, busy) = (true, true);
                        }
                        // Refused before anything of it was applied: safe to send again as
                        // a new client.
                        Some(Ok(Outcome::Error {
                            code: ErrorCode::SessionExpired,
                            message,
                        })) if !(slot.may_have_applied() || slot.renewed) => {
                            slot.last_error = message;
                            self.renew(slot);
                        }
                        Some(Ok(Outcome::Error { code, message })) => {
                            // After an attempt that may have been proposed, a refusal says
                            // nothing of that attempt, which may have been applied: a retry
                            // refused as expired finds its result no longer held (see
                            // `ClientError::Unknown`), and one refused as too large may meet
                            // a node of smaller limits (`--segment-mib`) than the one that
                            // proposed it.
                            let error = if slot.may_have_applied() {
                                ClientError::Unknown { code, message }
                            } else {
                                ClientError::Refused { code, message }
                            };
                            answers[i] = Some(Answer {
                                result: Err(error),
                                node: Some(node),
                                at: arrived.expect("an answer has its time"),
                            });
                        }
                        Some(Err(reason)) => {
                            slot.last_error = format!("{address}: {reason}");
                            // Kept where only this request was taken from it (a stale read,
                            // `watch_silence`): it may still carry others' and answer them.
                            if channel.is_broken() {
                                self.drop_channel(&address, &channel);
                            }
                            if slot.relayed {
                                self.relay_failed(node);
                            }
                            slot.go_to(self.next_after_silence(slot.group, node));
                            pause = true;
                        }
                        None => {
                            channel.forget(key);
                            slot.last_error = format!("{address}: no answer in time");
                            // A connection that said nothing for a whole attempt is stuck.
                            if channel.is_dead(options.attempt_timeout) {
                                self.drop_channel(&address, &channel);
                            }
                            if slot.relayed {
                                self.relay_failed(node);
                            }
                            slot.go_to(self.next_after_silence(slot.group, node));
                            pause = true;
                        }
                    }
                }
            }
            if pause {
                let floor = self.pause(pauses, deadline, busy).await;
                pauses += 1;
                // No attempt with less time left than the pause's floor: its answer would
                // hardly come in time, and an attempt unanswered may have been taken in, so
                // a request every node refused untaken ("no leader known") ended "outcome
                // unknown" rather than "unavailable" (found by tester 308: a pause that ended
                // a moment before the deadline sent one more attempt with no time left).
                no_time_left = deadline.saturating_duration_since(crate::clock::now()) < floor;
                if !no_time_left {
                    self.refresh_topology(deadline).await;
                }
            }
        }
        // What still waits is given up (`Waiting`'s drop).
        let gave_up = crate::clock::now();
        answers
            .into_iter()
            .zip(slots.iter())
            .map(|(answer, slot)| {
                answer.unwrap_or_else(|| {
                    let (last, refused, files) = match slot {
                        Some(slot) => (
                            slot.last_error.as_str(),
                            slot.refused_busy.as_deref(),
                            slot.out_of_files.as_deref(),
                        ),
                        None => ("", None, None),
                    };
                    let mut last_error = match refused {
                        Some(refusal) if refusal != last => {
                            format!("{last}; refused before that as busy: {refusal}")
                        }
                        _ => last.to_string(),
                    };
                    if let Some(files) = files {
                        last_error = match files.starts_with(last) {
                            true => files.to_string(),
                            false => format!("{last_error}; before that: {files}"),
                        };
                    }
                    if attempts == 0 {
                        last_error = format!(
                            "the request timeout ({:?}) left no time to try",
                            options.request_timeout
                        );
                    }
                    let error = if slot.as_ref().is_some_and(Slot::may_have_applied) {
                        ClientError::Timeout {
                            attempts,
                            last_error,
                        }
                    } else {
                        ClientError::Unavailable {
                            attempts,
                            last_error,
                        }
                    };
                    Answer {
                        result: Err(error),
                        node: None,
                        at: gave_up,
                    }
                })
            })
            .collect()
    }

    /// The waiting slots grouped by the address each goes to next.
    fn route(&self, slots: &mut [Option<Slot>]) -> BTreeMap<String, Vec<usize>> {
        // By node and core first, then one address per place: formatting an address per
        // slot cost more than the rest of routing.
        let cores = self.inner.topology.borrow().cores;
        let mut by_place: BTreeMap<(u64, u16), (u32, Vec<usize>)> = BTreeMap::new();
        let pending = slots.iter_mut().enumerate();
        // Most often none is: no look-up per request then.
        let any_cut_off = !self.inner.state.borrow().cut_off.is_empty();
        // The relay picked for each cut-off place this time: one per place, not per request.
        let mut relays: Vec<(Place, u64)> = Vec::new();
        for (i, slot) in pending.filter_map(|(i, s)| s.as_mut().map(|s| (i, s))) {
            let stale = slot.request.consistency == Consistency::Stale;
            let mut node = (slot.node).unwrap_or_else(|| self.leader_guess(slot.group, stale));
            // A leader this client cannot reach, while the other members hear it: the request
            // goes to one of them, which forwards it (a stale read, which any member serves,
            // is just served there).
            if any_cut_off
                && !slot.relayed
                && let Some(via) = self.cut_off_via(node, slot.group)
            {
                slot.request.forward_to = if stale { 0 } else { node };
                let cut = (node, core_of(slot.group, cores));
                node = match relays.iter().find(|(place, _)| *place == cut) {
                    Some(&(_, relay)) => relay,
                    None => {
                        let relay = self.relay_for(cut.0, cut.1, via);
                        relays.push((cut, relay));
                        relay
                    }
                };
                slot.relayed = !stale;
            }
            if !slot.relayed {
                slot.request.forward_to = 0;
            }
            slot.node = Some(node);
            let place = (node, core_of(slot.group, cores));
            by_place
                .entry(place)
                .or_insert((slot.group, Vec::new()))
                .1
                .push(i);
        }
        let mut by_address: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for ((node, _), (group, members)) in by_place {
            let topology = self.inner.topology.borrow();
            let address = topology.address_of(node, group);
            let listed = topology.members.iter().any(|m| m.0 == node);
            drop(topology);
            match address {
                Some(address) => by_address.entry(address).or_default().extend(members),
                None => {
                    let why = match listed {
                        true => format!("node {node} has no client address in the layout"),
                        false => format!("node {node}, named the leader, is not in the layout"),
                    };
                    for i in members {
                        if let Some(slot) = slots[i].as_mut() {
                            if slot.relayed {
                                self.relay_failed(node);
                            }
                            slot.last_error = why.clone();
                            slot.go_to(self.other_member(node));
                        }
                    }
                }
            }
        }
        by_address
    }

    /// Until every request of `attempt` has its answer, or for `left`: past `allowed` (an
    /// election timeout), the connections silent that long are asked about
    /// (`watch_silence`). An attempt answered within `allowed` costs one timer, as before.
    async fn answers_or_end(
        &self,
        attempt: &Attempt,
        queued: &Queued,
        slots: &[Option<Slot>],
        left: Duration,
        allowed: Duration,
    ) {
        let end = crate::clock::now() + left;
        let first_wait = glommio::timer::Timer::new(left.min(allowed));
        let all_answered = future::or(
            async {
                attempt.all_answered().await;
                true
            },
            async {
                first_wait.await;
                false
            },
        );
        let rest = end.saturating_duration_since(crate::clock::now());
        if all_answered.await || rest.is_zero() {
            return;
        }
        let attempt_over = glommio::timer::Timer::new(rest);
        let watched = self.watch_silence(queued, slots, attempt, allowed);
        future::or(attempt.all_answered(), async {
            let over = async {
                attempt_over.await;
            };
            future::or(over, watched).await;
        })
        .await;
    }

    /// Until dropped: a connection of this attempt that has said nothing for `allowed` (an
    /// election timeout) while its requests wait has the other members asked who leads
    /// their groups (at most once per half of `allowed`, whichever attempts wait on it, then
    /// less often while they find its node still leading); where the answer of the newest
    /// term names another node for any of them, the client stops waiting on it, and the
    /// requests go to those leaders, or elsewhere (as maybe taken in: sent again with the
    /// same sequence numbers, never applied twice). Found by a tester: a frozen leader held
    /// its clients' requests for the attempt's whole time (2 s), though another was elected
    /// in 0.4 s; a machine gone without a word does the same. Stale reads, which any member
    /// serves at once, are not asked about: they go to another member (found by the same
    /// tester: one-shot stale reads sent to a frozen follower waited 2 s).
    async fn watch_silence(
        &self,
        queued: &Queued,
        slots: &[Option<Slot>],
        attempt: &Attempt,
        allowed: Duration,
    ) {
        loop {
            glommio::timer::sleep(silence::look_every(allowed)).await;
            let mut silent = Vec::new();
            for (_, channel, members) in queued.borrow().iter() {
                let Some(since) = channel.silent_since() else {
                    continue;
                };
                if crate::clock::now().saturating_duration_since(since) < allowed {
                    continue;
                }
                let (stale, waiting): (Vec<&Slot>, Vec<&Slot>) = (members.iter())
                    .filter(|&&i| !attempt.is_answered(i))
                    .filter_map(|&i| slots[i].as_ref())
                    .partition(|slot| {
                        let stale = slot.request.consistency == Consistency::Stale;
                        stale && slot.request.command.is_read_only()
                    });
                if !stale.is_empty() {
                    let keys: Vec<_> = (stale.iter())
                        .map(|slot| {
                            (
                                slot.request.command.client_id,
                                slot.request.command.sequence,
                            )
                        })
                        .collect();
                    let silence = crate::clock::now().saturating_duration_since(since);
                    let reason = format!(
                        "said nothing for {} ms; a stale read goes to another member",
                        silence.as_millis()
                    );
                    channel.abandon(&keys, &reason);
                }
                let Some(first) = waiting.first() else {
                    continue;
                };
                if !channel.ask_about_silence(silence::first_ask_wait(allowed)) {
                    continue;
                }
                let mut groups: Vec<u32> = waiting.iter().map(|slot| slot.group).collect();
                groups.sort_unstable();
                groups.dedup();
                let node = first.node.expect("routed");
                silent.push((Rc::clone(channel), node, groups, since));
            }
            if silent.is_empty() {
                continue;
            }
            let topology = self.topology();
            let asked = (silent.iter())
                .map(|(_, node, groups, _)| {
                    let core = core_of(groups[0], topology.cores);
                    silence::ask_others(&topology, *node, core, silence::first_ask_wait(allowed))
                })
                .collect();
            let answers = join_all(asked).await;
            for ((channel, node, groups, since), answers) in silent.into_iter().zip(answers) {
                let moved = silence::moved(&answers, &groups, node);
                if moved.is_empty() {
                    // The members hear it lead, and this client does not: its requests go
                    // through them (found by a tester: a leader its clients could not reach,
                    // while its peers could, held them for as long as the cut lasted).
                    // Found twice, not once: a leader only slow for an election timeout (a
                    // stalled sync, a pause) keeps its clients (review 302).
                    if let Some(lead) = silence::still_leads(&answers, &groups, node)
                        && channel.asked_in_vain_before(silence::first_ask_wait(allowed))
                    {
                        let silence = crate::clock::now().saturating_duration_since(since);
                        let reason = silence::cut_off_reason(node, silence, &lead);
                        if channel.give_up_if_silent_since(since, reason) {
                            let place = (node, self.core_of(groups[0]));
                            self.mark_cut_off(place, Some(lead.told_by), allowed);
                        }
                        continue;
                    }
                    channel.asked_in_vain(silence::ask_wait_most(allowed));
                    continue;
                }
                let mut state = self.inner.state.borrow_mut();
                for group in &moved {
                    state.leaders.insert(group.group, group.leader);
                }
                state.given_up.insert(node, crate::clock::now());
                drop(state);
                let silence = crate::clock::now().saturating_duration_since(since);
                channel.give_up_if_silent_since(since, silence::reason(node, silence, &moved));
            }
        }
    }

    /// `place` leads while this client cannot reach it: its groups' requests go through
    /// another member (`via`, or the one named before) until a probe finds it reachable (see
    /// [`CutOffs`]). Not in a cluster of one node: there is no other member.
    fn mark_cut_off(&self, place: Place, via: Option<u64>, allowed: Duration) {
        if self
            .inner
            .topology
            .borrow()
            .members
            .iter()
            .all(|m| m.0 == place.0)
        {
            return;
        }
        let now = crate::clock::now();
        let mut state = self.inner.state.borrow_mut();
        state.cut_off.mark(place, via, now, allowed);
        state.given_up.insert(place.0, now);
    }

    /// `node` answered `slot`'s request (`answer`): that core of it is not cut off. A relay
    /// that answered with results is kept for the next requests round their leader; one that
    /// named that leader back (it forwarded nothing: it stops, or knows no better) failed
    /// (review 304: kept for any answer, a stopping relay had requests bounce off it).
    fn heard_from(&self, slot: &Slot, node: u64, answer: Option<&Result<Outcome, String>>) {
        let core = self.core_of(slot.group);
        self.inner
            .state
            .borrow_mut()
            .cut_off
            .heard_from((node, core));
        if !slot.relayed {
            return;
        }
        let leader = slot.request.forward_to;
        match answer {
            Some(Ok(Outcome::Results(_))) => {
                let mut state = self.inner.state.borrow_mut();
                state.cut_off.relay_answered((leader, core), node);
            }
            Some(Ok(Outcome::NotLeader { leader: named, .. })) if *named == leader => {
                self.relay_failed(node);
            }
            _ => {}
        }
    }

    /// A relay (a member requests for a cut-off node went through) failed: it counts as
    /// given up (a relay is picked among the others for a while, see [`Client::relay_for`]),
    /// and the requests it relayed go through another member.
    fn relay_failed(&self, relay: u64) {
        let mut state = self.inner.state.borrow_mut();
        state.given_up.insert(relay, crate::clock::now());
        state.cut_off.relay_failed(relay);
    }

    /// The member that the requests for `node`'s core `core`, cut off, go through: `via`
    /// (one that said it hears `node` lead, or the last relay that answered) unless given up
    /// lately, else one at random of the members not given up lately and not cut off on that
    /// core (found by a tester: with a member down, or the relay stopped, half the requests
    /// went to it, again and again), else any other.
    fn relay_for(&self, node: u64, core: u16, via: Option<u64>) -> u64 {
        let allowed = silence::silence_allowed(self.inner.topology.borrow().timing);
        let fit: Vec<u64> = {
            let state = self.inner.state.borrow();
            let topology = self.inner.topology.borrow();
            let now = crate::clock::now();
            let fits = |n: u64| {
                let lately = (state.given_up.get(&n)).is_some_and(|&at| {
                    now.saturating_duration_since(at) < silence::given_up_for(allowed)
                });
                n != node && !lately && !state.cut_off.contains((n, core))
            };
            let member = |n: u64| topology.members.iter().any(|m| m.0 == n);
            if let Some(via) = via.filter(|&v| fits(v) && member(v)) {
                return via;
            }
            (topology.members.iter())
                .map(|m| m.0)
                .filter(|&m| fits(m))
                .collect()
        };
        if fit.is_empty() {
            return self.other_member(node);
        }
        let pick = self.inner.state.borrow_mut().rng.below(fit.len() as u64);
        fit[pick as usize]
    }

    /// The core of this cluster's nodes that `group` lives on.
    fn core_of(&self, group: u32) -> u16 {
        core_of(group, self.inner.topology.borrow().cores)
    }

    /// Probes `place`, cut off, at its address for `group`, beside the requests that go
    /// round it, and hands the result to [`CutOffs::probed`] for marking `generation`. The
    /// probe holds no client alive: one dropped meanwhile takes no result.
    fn probe(&self, place: Place, group: u32, generation: u64) {
        let address = self.inner.topology.borrow().address_of(place.0, group);
        let allowed = silence::silence_allowed(self.inner.topology.borrow().timing);
        let inner = Rc::downgrade(&self.inner);
        let probed = async move {
            // A full dial's patience: a far client's SYNs take longer than an election
            // timeout, and nothing waits on the probe.
            let patience = silence::dial_patience(allowed, false);
            let reached = match address {
                Some(address) => silence::reachable(&address, patience).await,
                None => false,
            };
            if let Some(inner) = inner.upgrade() {
                let now = crate::clock::now();
                let cuts = &mut inner.state.borrow_mut().cut_off;
                cuts.probed(place, generation, reached, now, allowed);
            }
        };
        glommio::spawn_local(probed).detach();
    }

    /// How long a dial of `place` may take ([`silence::dial_patience`]).
    fn dial_patience(&self, place: Option<Place>, allowed: Duration) -> Duration {
        let state = self.inner.state.borrow();
        let given_up = place.and_then(|(node, _)| state.given_up.get(&node));
        let lately = given_up.is_some_and(|at| at.elapsed() < silence::given_up_for(allowed));
        // Found cut off, and not found reachable since: most likely still.
        let cut_off = place.is_some_and(|place| state.cut_off.contains(place));
        silence::dial_patience(allowed, lately || cut_off)
    }

    /// Whether requests for `place` go through another member now (see
    /// [`Client::watch_silence`]).
    fn is_cut_off(&self, place: Place) -> bool {
        self.inner.state.borrow().cut_off.contains(place)
    }

    /// Where `node`'s core for `group` is cut off, the relay named for it, if any; a probe of
    /// it is sent where one is due.
    fn cut_off_via(&self, node: u64, group: u32) -> Option<Option<u64>> {
        let place = (node, self.core_of(group));
        let now = crate::clock::now();
        let detour = self.inner.state.borrow_mut().cut_off.detour(place, now)?;
        if let Some(generation) = detour.probe {
            self.probe(place, group, generation);
        }
        Some(detour.via)
    }

    /// Where a request of `group` goes after its connection to `node` failed or went silent:
    /// to the leader last named (by an answer, a hint, or another member asked about a
    /// silent connection) if another node; to `node` again if it leads but this client
    /// cannot reach it (`Client::route` sends it through another member); or anyone else.
    fn next_after_silence(&self, group: u32, node: u64) -> u64 {
        let named = self.inner.state.borrow().leaders.get(&group).copied();
        match named {
            Some(leader) if leader != node => leader,
            _ if self.is_cut_off((node, self.core_of(group))) => node,
            _ => self.other_member(node),
        }
    }

    /// The requests of `members` could not be sent to their node: they go elsewhere (see
    /// [`Client::next_after_silence`]). Where the node is named as their groups' leader and
    /// `unreachable` (the dial failed, for a cause other than this process's want of files:
    /// its SYNs unanswered, refused, or a route dropped), it is taken for cut off (see
    /// [`Client::mark_cut_off`]) and they go through another member, which forwards them to
    /// it, or names the leader it knows (found by a tester: its followers sent clients back
    /// to a leader they could not reach, round and round, for as long as the cut lasted).
    fn reroute(&self, members: &[usize], slots: &mut [Option<Slot>], unreachable: bool) {
        let Some(node) = members.iter().find_map(|&i| slots[i].as_ref()?.node) else {
            return;
        };
        let named = {
            let state = self.inner.state.borrow();
            let mut waiting = members.iter().filter_map(|&i| slots[i].as_ref());
            waiting.any(|slot| state.leaders.get(&slot.group) == Some(&node))
        };
        if unreachable && named {
            let allowed = silence::silence_allowed(self.inner.topology.borrow().timing);
            let group = members.iter().find_map(|&i| Some(slots[i].as_ref()?.group));
            let core = self.core_of(group.expect("a waiting request"));
            self.mark_cut_off((node, core), None, allowed);
        } else if unreachable {
            self.relay_failed(node);
        }
        for &i in members {
            if let Some(slot) = slots[i].as_mut() {
                slot.go_to(self.next_after_silence(slot.group, node));
            }
        }
    }

    /// Queue the requests of `members` to `address`, in as few frames as hold them; their
    /// answers go to `attempt`, each at its place in `slots`. Where any went, the connection
    /// and those sent are recorded in `queued`; returns those not sent, their connection
    /// backed up (an error only where the connection could not be had, or broke).
    async fn send(
        &self,
        address: &str,
        members: &[usize],
        slots: &[Option<Slot>],
        attempt: &Rc<Attempt>,
        queued: &Queued,
        timeout: Duration,
    ) -> std::io::Result<Vec<usize>> {
        let channel = self.channel(address, timeout).await?;
        let requests: Vec<(usize, &Request)> = members
            .iter()
            .filter_map(|&i| slots[i].as_ref().map(|s| (i, &s.request)))
            .collect();
        let mut state = self.inner.state.borrow_mut();
        let mut backed_up = Vec::new();
        for (n, frame) in request_frames(&requests, |(_, r)| r)
            .into_iter()
            .enumerate()
        {
            if !backed_up.is_empty() {
                backed_up.extend(frame.iter().map(|(i, _)| *i));
                continue;
            }
            // Cannot fail: `prepare` refused any request larger than a frame. Were it to fail
            // after frames went, those may be taken in: the attempt goes on with them (the
            // requests not sent go unanswered, counted as maybe taken in, never as "changed
            // nothing").
            if let Err(error) = encode_requests(&mut state.encoder, frame.iter().map(|(_, r)| *r)) {
                if n == 0 {
                    let error = error.to_string();
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, error));
                }
                break;
            }
            let keys = frame
                .iter()
                .map(|(i, r)| ((r.command.client_id, r.command.sequence), *i));
            if let Err(reason) = channel.send(&state.encoder, keys, attempt) {
                // Backed up (not broken): not sent, tried again at the same node, which
                // still answers what it took in; the attempt goes on with the frames that
                // went (found in review: the whole batch went to another member).
                if n > 0 || !channel.is_broken() {
                    backed_up.extend(frame.iter().map(|(i, _)| *i));
                    continue;
                }
                drop(state);
                self.drop_channel(address, &channel);
                return Err(std::io::Error::other(reason));
            }
        }
        drop(state);
        let went: Vec<usize> = (members.iter())
            .filter(|i| !backed_up.contains(i))
            .copied()
            .collect();
        if !went.is_empty() {
            (queued.borrow_mut()).push((address.to_string(), channel, went));
        }
        Ok(backed_up)
    }

    /// The open connection to `address`, or a new one made within `timeout`. One the node
    /// closed since it was last used (a restart, an idle connection let go) is replaced,
    /// not tried: the request sent its way failed, and went to another member after a
    /// pause (found in review).
    async fn channel(&self, address: &str, timeout: Duration) -> std::io::Result<Rc<Channel>> {
        if let Some(channel) = self.inner.state.borrow().channels.get(address)
            && !channel.is_broken()
        {
            return Ok(Rc::clone(channel));
        }
        let channel = Rc::new(with_timeout(timeout, Channel::connect(address, timeout)).await?);
        // Another task may have connected meanwhile: keep the first that works.
        let mut state = self.inner.state.borrow_mut();
        let kept = state
            .channels
            .entry(address.to_string())
            .and_modify(|kept| {
                if kept.is_broken() {
                    *kept = Rc::clone(&channel);
                }
            })
            .or_insert(channel);
        Ok(Rc::clone(kept))
    }

    fn drop_channel(&self, address: &str, channel: &Rc<Channel>) {
        let mut state = self.inner.state.borrow_mut();
        if state
            .channels
            .get(address)
            .is_some_and(|c| Rc::ptr_eq(c, channel))
        {
            state.channels.remove(address);
        }
    }

    /// Check a request and give it its client id and sequence (kept across retries).
    fn prepare(&self, ops: Ops, consistency: Consistency) -> Result<Slot, ClientError> {
        let Some(first) = ops.first() else {
            return Err(ClientError::Invalid(
                "a request needs an operation".to_string(),
            ));
        };
        let groups = self.inner.topology.borrow().groups;
        let group = group_of(first.key(), groups);
        if ops[1..]
            .iter()
            .any(|op| group_of(op.key(), groups) != group)
        {
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
        let mut request = Request {
            forward_to: 0,
            command: Command {
                // Numbered below, once the request is known to be valid.
                client_id: 0,
                sequence: 1,
                first_unacked: 1,
                ops,
            },
            consistency,
        };
        request.command.validate()?;
        let bytes = request_bytes(&request);
        if bytes > REQUEST_BYTES_MAX {
            return Err(ClientError::Invalid(format!(
                "a request of {bytes} bytes does not fit a frame: at most {REQUEST_BYTES_MAX} \
                 bytes of keys, values and expected values (split it)"
            )));
        }
        self.number(tag, &mut request.command);
        Ok(Slot {
            request,
            group,
            node: None,
            maybe_taken: false,
            redirected: false,
            relayed: false,
            proposal_orphaned: false,
            tag,
            renewed: false,
            last_error: String::new(),
            refused_busy: None,
            out_of_files: None,
        })
    }

    /// Gives `command` the id in use for `tag` and that id's next sequence.
    fn number(&self, tag: u64, command: &mut Command) {
        let mut state = self.inner.state.borrow_mut();
        let base = self.inner.client_id;
        let client_id = *state
            .ids
            .entry(tag)
            .or_insert_with(|| Prng::new(base ^ tag.rotate_left(32)).next_u64());
        let sequence = *state.sequences.get(&client_id).unwrap_or(&1);
        let unanswered = state.unanswered.get(&client_id);
        // Everything below the lowest unanswered sequence has its answer. Until the group
        // applied one request of this id, its state machine holds no session for it and must
        // hear "nothing acknowledged" (1): requests refused before they were proposed (too
        // large, malformed) used up sequence numbers it never saw.
        let first_unacked = if state.applied.contains(&client_id) {
            unanswered
                .and_then(Unanswered::lowest)
                .map_or(sequence, |lowest| lowest.min(sequence))
        } else {
            1
        };
        state.sequences.insert(client_id, sequence + 1);
        state.unanswered.entry(client_id).or_default().add(sequence);
        command.client_id = client_id;
        command.sequence = sequence;
        command.first_unacked = first_unacked;
    }

    /// The group forgot the session of `slot`'s id (evicted, among too many clients), so
    /// every later request of that id would be refused as expired: the id is retired and
    /// `slot` numbered again under a fresh one, which starts a new session.
    fn renew(&self, slot: &mut Slot) {
        let old = slot.request.command.client_id;
        self.answered(&slot.request);
        {
            let mut state = self.inner.state.borrow_mut();
            if state.ids.get(&slot.tag) == Some(&old) {
                // Another draw of the same unique stream: as unique as the first.
                let fresh = Prng::new(old).next_u64();
                state.ids.insert(slot.tag, fresh);
                state.sequences.remove(&old);
                state.applied.remove(&old);
                // Retired with nothing else in flight: forgotten now (`answered` keeps a
                // window while its id has a sequence).
                if state
                    .unanswered
                    .get(&old)
                    .is_some_and(|u| u.lowest().is_none())
                {
                    state.unanswered.remove(&old);
                }
            }
        }
        self.number(slot.tag, &mut slot.request.command);
        slot.renewed = true;
    }

    /// `request` is finished with (answered, refused or given up): it no longer holds back
    /// `first_unacked`.
    fn answered(&self, request: &Request) {
        let mut state = self.inner.state.borrow_mut();
        let id = request.command.client_id;
        if let Some(unanswered) = state.unanswered.get_mut(&id) {
            unanswered.remove(request.command.sequence);
            // A retired id (see `renew`) is forgotten once its last request is answered.
            if unanswered.lowest().is_none() && !state.sequences.contains_key(&id) {
                state.unanswered.remove(&id);
            }
        }
    }

    /// Where to send a request of `group` first: its leader, where known; else the node that
    /// answered the layout, or (`stale`: any member answers, and reads spread over them) a
    /// member at random.
    fn leader_guess(&self, group: u32, stale: bool) -> u64 {
        let mut state = self.inner.state.borrow_mut();
        match state.leaders.get(&group) {
            Some(&node) => node,
            // The node that answered the layout, which was up a moment ago, and names the
            // leader if it is not: found by an operator, a random member that did not answer
            // (a frozen machine, a partition) held one in three one-shot commands for the
            // attempt's whole time (2 s) while the group's leader was up.
            None => {
                let topology = self.inner.topology.borrow();
                let members = &topology.members;
                if !stale && members.iter().any(|m| m.0 == topology.node_id) {
                    topology.node_id
                } else {
                    members[state.rng.below(members.len() as u64) as usize].0
                }
            }
        }
    }

    /// A member other than `not`, at random; `not` when there is none (a layout listing one
    /// node, or only ids that are all `not`, which a broken node could send).
    fn other_member(&self, not: u64) -> u64 {
        let members = &self.inner.topology.borrow().members;
        let others = members.iter().filter(|m| m.0 != not).count() as u64;
        if others == 0 {
            return not;
        }
        let pick = self.inner.state.borrow_mut().rng.below(others) as usize;
        members
            .iter()
            .filter(|m| m.0 != not)
            .nth(pick)
            .map_or(not, |m| m.0)
    }

    /// A jittered wait before the next attempt, so retries do not hammer an election or a
    /// cluster that is down: 5–25 ms at first, doubling with each pause the request took
    /// before (`pauses`), up to a fifth to all of half an election timeout (20–100 ms by
    /// default; at least 5–25 ms, at most 100–500 ms), or to 100–500 ms after a node refused
    /// as busy (`busy`); never past `deadline`. Found by a tester: the pauses grew to
    /// 100–500 ms during an election of 0.2–0.4 s, and a killed leader's clients were
    /// answered 1.05–1.67 s after it died. Returns the pause's floor.
    async fn pause(&self, pauses: u32, deadline: Instant, busy: bool) -> Duration {
        let allowed = silence::silence_allowed(self.inner.topology.borrow().timing);
        let (floor_ms, ceiling_ms) = pause_range_ms(pauses, allowed, busy);
        let jitter_ms = self
            .inner
            .state
            .borrow_mut()
            .rng
            .below(ceiling_ms - floor_ms);
        let pause = Duration::from_millis(floor_ms + jitter_ms)
            .min(deadline.saturating_duration_since(crate::clock::now()));
        glommio::timer::sleep(pause).await;
        Duration::from_millis(floor_ms)
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let op = Op::Put {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        };
        self.execute(vec![op], Consistency::Linearizable)
            .await
            .map(drop)
    }

    pub async fn get(
        &self,
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

/// The least time between two topology requests of one client.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// One seed asked for the topology: its answer, or why it gave none.
type Asking<'a> = Pin<Box<dyn Future<Output = Result<Topology, String>> + 'a>>;

/// Ask every one of `seeds` (base addresses) at once for the topology; the first answer
/// wins, and the others are dropped. A seed that takes connections and says nothing costs
/// nothing while another answers (asked in turn, each for a whole `timeout`, a silent first
/// member held up every refresh).
pub async fn fetch_topology(seeds: &[String], timeout: Duration) -> Result<Topology, ClientError> {
    fetch_topology_of(seeds, timeout, None).await
}

/// [`fetch_topology`] asked again by a client that knows the layout `known`: an answer of
/// another cluster (or of other cores or groups) counts as that seed's failure, and the first
/// answer of `known`'s cluster is taken (found in review: the first answer was taken, and
/// one of another cluster made the whole refresh be dropped).
pub(crate) async fn fetch_topology_like(
    seeds: &[String],
    timeout: Duration,
    known: &Topology,
) -> Result<Topology, ClientError> {
    fetch_topology_of(seeds, timeout, Some(known)).await
}

async fn fetch_topology_of(
    seeds: &[String],
    timeout: Duration,
    known: Option<&Topology>,
) -> Result<Topology, ClientError> {
    let mut encoder = FrameEncoder::new();
    encode_topology_request(&mut encoder).expect("an empty frame fits");
    let encoder = &encoder;
    if seeds.is_empty() {
        return Err(ClientError::NoCluster(
            "no member's address was given".to_string(),
        ));
    }
    let mut errors = Vec::new();
    let mut asked: Vec<Asking<'_>> = Vec::new();
    for seed in seeds {
        let Some(address) = client_address(seed, 0) else {
            errors.push(format!(
                "{seed}: not HOST:PORT (with a port below 65535: clients connect at the \
                 port after it)"
            ));
            continue;
        };
        asked.push(Box::pin(async move {
            match exchange(&address, encoder, timeout, timeout, decode_topology).await {
                Ok(topology) if topology.members.is_empty() => {
                    Err(format!("{seed}: knows no members yet"))
                }
                Ok(topology) if known.is_some_and(|known| !known.same_cluster(&topology)) => {
                    let known = known.expect("checked just above");
                    Err(format!("{seed}: {}", known.other_cluster(&topology)))
                }
                Ok(topology) => Ok(topology),
                Err(error) => Err(format!("{seed} (clients of core 0 at {address}): {error}")),
            }
        }));
    }
    std::future::poll_fn(|cx| {
        let mut i = 0;
        while i < asked.len() {
            match asked[i].as_mut().poll(cx) {
                Poll::Ready(Ok(topology)) => return Poll::Ready(Ok(topology)),
                Poll::Ready(Err(error)) => {
                    errors.push(error);
                    drop(asked.remove(i));
                }
                Poll::Pending => i += 1,
            }
        }
        if asked.is_empty() {
            Poll::Ready(Err(ClientError::NoCluster(errors.join("; "))))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The pause after `pauses` pauses, in ms, between a fifth of a ceiling and the ceiling:
/// 25 ms doubled with each pause before, up to half of `allowed` (an election timeout), kept
/// within 25 and 500 ms; up to 500 ms where a node refused as busy (`busy`: overloaded, or
/// its disk full), whatever the election timeout (review 301).
fn pause_range_ms(pauses: u32, allowed: Duration, busy: bool) -> (u64, u64) {
    let most_ms = match busy {
        true => 500,
        false => (allowed.as_millis() / 2).clamp(25, 500) as u64,
    };
    let ceiling_ms = (25u64 << pauses.min(5)).min(most_ms);
    (ceiling_ms / 5, ceiling_ms)
}

/// The outputs of `futures`, in their order, once all are done; they run together.
pub(super) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(&mut outputs) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(done) => *output = Some(done),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// `work`, or a timeout error after `timeout`.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    work: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    future::or(work, async {
        glommio::timer::sleep(timeout.min(crate::clock::WAIT_MAX)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            // What was left of the request's time (9.990057597s read as noise).
            match timeout.as_millis() {
                ms @ 0..1_000 => format!("no answer within {ms} ms"),
                _ => format!("no answer within {:.1} s", timeout.as_secs_f64()),
            },
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: pauses between attempts grow to half an election timeout at most (a tester:
    /// grown to 100–500 ms during an election of 0.2–0.4 s, they held a killed leader's
    /// clients for 1.1–1.4 s), within 25 and 500 ms whatever the layout says.
    #[test]
    fn pauses_grow_to_half_an_election_timeout() {
        let ms = Duration::from_millis;
        let grown: Vec<_> = (0..7)
            .map(|p| pause_range_ms(p, ms(200), false).1)
            .collect();
        assert_eq!(grown, [25, 50, 100, 100, 100, 100, 100]);
        assert_eq!(pause_range_ms(0, ms(200), false), (5, 25));
        assert_eq!(pause_range_ms(9, ms(20), false), (5, 25));
        assert_eq!(pause_range_ms(9, ms(400), false), (40, 200));
        assert_eq!(
            pause_range_ms(9, Duration::from_secs(60), false),
            (100, 500)
        );
        // After a refusal as busy (overload, a full disk) they grow as they did before.
        let busy: Vec<_> = (0..7).map(|p| pause_range_ms(p, ms(200), true).1).collect();
        assert_eq!(busy, [25, 50, 100, 200, 400, 500, 500]);
    }

    /// Goal: an error counts its attempts in words that agree (a tester read "after 1
    /// attempts").
    #[test]
    fn an_error_says_one_attempt_or_many() {
        let said = |attempts| {
            ClientError::Timeout {
                attempts,
                last_error: "no answer in time".to_string(),
            }
            .to_string()
        };
        assert!(said(1).contains("after 1 attempt (last: no answer in time)"));
        assert!(said(3).contains("after 3 attempts (last: no answer in time)"));
        let unavailable = ClientError::Unavailable {
            attempts: 1,
            last_error: String::new(),
        };
        assert!(unavailable.to_string().contains("after 1 attempt ("));
    }
}
