//! Drives load through the Rust client: a closed loop (each client keeps `depth` batches in
//! flight) or an open loop (requests meant to start at a fixed rate, latency measured from
//! each one's intended start so a stalled server cannot hide behind a stalled generator).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::sync::Semaphore;

use crate::client::{Client, ClientOptions};
use crate::kv::{Op, Ops};
use crate::proto::client::Consistency;
use crate::proto::topology::group_of;
use crate::raft::Prng;
use smallvec::smallvec;

use super::cpu::{self, CpuUse, Watched};
use super::keys::{Distribution, KeyChooser, Keys};
use super::meeting::{ENDED_EARLY, Meeting, Seat};
use super::recorder::Recorder;

/// Set by SIGINT, SIGTERM or SIGHUP once [`stop_on_signals`] was called.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Folders [`delete_on_second_signal`] names: deleted before a second signal ends the
/// process.
static SCRATCH_FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// From now on, SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) end a run's load
/// early instead of killing the process, so that the caller can stop the nodes it started and
/// delete their folder; a second SIGINT or SIGTERM deletes the folders named by
/// [`delete_on_second_signal`] and ends the process at once (its nodes stop by themselves,
/// see `serve --stop-with-parent`). The signals are taken on a thread of their own. A
/// SIGHUP is never a second signal (a closing terminal often sends two), and is left alone
/// where it was ignored (`nohup`: the run was asked to outlive its terminal).
pub fn stop_on_signals() -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut registered = Ok(());
    INTERRUPTED.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let mut taken = vec![SIGINT, SIGTERM];
        if !crate::sys::signal_ignored(SIGHUP) {
            taken.push(SIGHUP);
        }
        match signal_hook::iterator::Signals::new(taken) {
            Ok(mut signals) => {
                let first = Arc::clone(&flag);
                std::thread::spawn(move || {
                    for signal in signals.forever() {
                        if !first.swap(true, Ordering::SeqCst) || signal == SIGHUP {
                            continue;
                        }
                        // Found in review: the second signal ended the process at once, and
                        // the folder of its nodes (hundreds of MiB of WAL) stayed behind.
                        let folders = SCRATCH_FOLDERS.lock().unwrap_or_else(|e| e.into_inner());
                        folders
                            .iter()
                            .for_each(|folder| delete_while_written(folder));
                        std::process::exit(1);
                    }
                });
            }
            Err(error) => registered = Err(format!("cannot handle signals: {error}")),
        }
        flag
    });
    registered
}

/// Deletes `folder`, whose nodes may still be writing into it (they stop once this process
/// is gone): a file made while the folder is walked fails its deletion, which is tried again.
/// Once it is gone, no node makes it again.
fn delete_while_written(folder: &Path) {
    for _ in 0..100 {
        match std::fs::remove_dir_all(folder) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                std::thread::yield_now();
            }
            _ => return,
        }
    }
}

/// Deletes `folder` if a second signal ends the process (see [`stop_on_signals`]), until
/// [`keep_on_second_signal`] takes it back.
pub fn delete_on_second_signal(folder: &Path) {
    let mut folders = SCRATCH_FOLDERS.lock().unwrap_or_else(|e| e.into_inner());
    folders.push(folder.to_path_buf());
}

/// Undoes [`delete_on_second_signal`] for `folder`.
pub fn keep_on_second_signal(folder: &Path) {
    let mut folders = SCRATCH_FOLDERS.lock().unwrap_or_else(|e| e.into_inner());
    folders.retain(|f| f != folder);
}

/// Whether a signal asked the run to end (see [`stop_on_signals`]).
pub fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// The load of one run.
#[derive(Clone, Debug)]
pub struct Load {
    pub clients: u32,
    /// Batches each client keeps in flight (closed loop), or may have in flight (open loop).
    pub depth: u32,
    /// Requests per batch: one frame per node core they touch.
    pub batch: u32,
    /// Requests per second in all (open loop); None: closed loop.
    pub rate_per_s: Option<f64>,
    pub keys: u64,
    pub distribution: Distribution,
    pub zipf_theta: f64,
    pub value_bytes: usize,
    /// Percent of requests that are reads (the rest are puts).
    pub read_percent: u64,
    pub read: Consistency,
    pub warmup: Duration,
    pub duration: Duration,
    /// Print a line per second.
    pub live: bool,
    pub seed: u64,
    /// Threads the clients are spread over, each an executor of its own (at most one per
    /// client): one thread makes fewer requests a second than a cluster of several cores a
    /// node can answer.
    pub threads: u32,
}

/// What a run saw.
pub struct Run {
    pub recorder: Recorder,
    /// Seconds measured (warm-up excluded).
    pub seconds: f64,
    pub groups: u32,
    pub cores: u16,
    pub members: Vec<(u64, String)>,
    /// The node whose topology the run took, and what it says of itself: whether it syncs
    /// its log before it acknowledges (None: not said), and whether it serves lease reads.
    pub said_by: u64,
    pub syncs: Option<bool>,
    pub lease_reads: bool,
    /// The CPU of the measured interval: the generator's, the watched processes' and the
    /// machine's.
    pub cpu: CpuUse,
}

/// Generator threads for `clients` on this machine, where local nodes take `node_cores`
/// CPUs: the CPUs left, at least 1, at most one per client. Measured on 16 CPUs against 3
/// local nodes of 4 cores (16 clients × 16 batches of 64, fsync off): 1, 2, 4 and 8 threads
/// made 1.55, 2.49, 3.82 and 4.04 M requests/s.
pub fn threads_beside(node_cores: u32, clients: u32) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    threads_of(u32::try_from(cpus).unwrap_or(u32::MAX), node_cores, clients)
}

fn threads_of(cpus: u32, node_cores: u32, clients: u32) -> u32 {
    cpus.saturating_sub(node_cores).clamp(1, clients.max(1))
}

/// Runs `load` against the cluster that `seeds` belong to, on `load.threads` fresh executor
/// threads (client `i` on thread `i % threads`), and measures the CPU of the generator and
/// of the `watched` processes (a local cluster's nodes) over the same interval.
pub fn run(seeds: Vec<String>, load: Load, watched: Vec<Watched>) -> Result<Run, String> {
    let threads = load.threads.clamp(1, load.clients.max(1));
    let meeting = Arc::new(Meeting::new(threads));
    let mut started = Vec::new();
    let mut not_started = None;
    for thread in 0..threads {
        let (seeds, load, watched) = (seeds.clone(), load.clone(), watched.clone());
        // Dropped unused (the executor failed to start) or in a panic before the meeting,
        // the seat ends the meeting for the threads waiting there.
        let seat = Seat::new(Arc::clone(&meeting));
        let name = format!("cohort-bench-{thread}");
        let part = crate::node::start_executor(&name, move || {
            generate(Share { thread, threads }, seeds, load, watched, seat)
        });
        match part {
            Ok(handle) => started.push(handle),
            Err(error) => {
                meeting.fail(error.clone());
                not_started = Some(error);
                break;
            }
        }
    }
    // Every thread joined before any error is returned: none is left running the load.
    let parts: Vec<Result<Part, String>> = started
        .into_iter()
        .map(|handle| {
            (handle.join())
                .map_err(|e| format!("a generator thread failed: {e}"))
                .and_then(|part| part)
        })
        .collect();
    if let Some(error) = not_started {
        return Err(error);
    }
    // The error that says why, not that a thread ended early or was told another failed.
    let errors: Vec<&String> = parts
        .iter()
        .filter_map(|part| part.as_ref().err())
        .collect();
    if let Some(error) = (errors.iter())
        .find(|error| error.as_str() != ENDED_EARLY)
        .or(errors.first())
    {
        return Err((*error).clone());
    }
    let mut parts: Vec<Part> = parts.into_iter().flatten().collect();
    let first = parts.swap_remove(0);
    let (_, recorder) = Arc::into_inner(meeting)
        .and_then(Meeting::into_clock)
        .ok_or("the generator threads ended without a clock")?;
    let recorder = Arc::into_inner(recorder)
        .ok_or("load tasks still running")?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let seconds = (recorder.timeline.last().map_or(0.0, |s| s.at_s)).max(1e-9);
    let (before, after) = first
        .cpu
        .ok_or("the first generator thread took no CPU samples")?;
    let mut cpu = cpu::usage(&first.watched, &before, &after, seconds, recorder.requests);
    // Without nodes of its own to watch (--nodes), whether the nodes share this machine's
    // CPUs is not known: no ceiling is claimed from them.
    if watched.is_empty()
        && let Some(machine) = &mut cpu.machine
    {
        machine.ceiling_requests_per_s = None;
    }
    Ok(Run {
        recorder,
        seconds,
        groups: first.topology.groups,
        cores: first.topology.cores,
        members: first.topology.members,
        said_by: first.topology.node_id,
        syncs: first.topology.syncs,
        lease_reads: first.topology.timing.tick_us != 0 && first.topology.timing.lease_reads,
        cpu,
    })
}

/// Which of the generator threads this is.
#[derive(Clone, Copy)]
struct Share {
    thread: u32,
    threads: u32,
}

/// What one generator thread brings back: the first one also the CPU samples.
struct Part {
    topology: crate::proto::topology::Topology,
    watched: Vec<Watched>,
    cpu: Option<(cpu::Sample, cpu::Sample)>,
}

async fn generate(
    share: Share,
    seeds: Vec<String>,
    load: Load,
    watched: Vec<Watched>,
    seat: Seat,
) -> Result<Part, String> {
    let part = load_from_here(share, seeds, load, watched, seat).await;
    // Its clients are gone, whether the load ran or not: let their connections close before
    // the executor ends, or each run would leave their descriptors open in this process.
    if !crate::client::channels_closed(Duration::from_secs(2)).await {
        // Not `eprintln!`, which panics where stderr cannot be written.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"cohort bench: a generator thread's connections did not close within 2 s\n",
        );
    }
    part
}

async fn load_from_here(
    share: Share,
    seeds: Vec<String>,
    load: Load,
    watched: Vec<Watched>,
    mut seat: Seat,
) -> Result<Part, String> {
    let set_up = connect(share, seeds, &load, seat.meeting())
        .await
        .map(|(clients, topology)| {
            // Made before the clock starts: a table of a million keys and the zipfian set-up
            // (up to a million terms summed) take about 80 ms, which the first requests
            // would be late by.
            let names = Rc::new(Keys::new(load.keys, topology.groups));
            let keys = Rc::new(KeyChooser::new(
                load.distribution,
                load.keys,
                load.zipf_theta,
            ));
            (clients, topology, names, keys)
        });
    if let Err(error) = &set_up {
        seat.fail(error.clone());
    }
    let met = seat.meet(load.warmup, load.duration);
    let (clients, topology, names, keys) = set_up?;
    let (start, recorder) = met?;
    let mut watched = watched;
    watched.insert(
        0,
        Watched {
            name: "generator".to_string(),
            pid: std::process::id(),
        },
    );
    let measured = start + load.warmup;
    let end = measured + load.duration;
    // One thread closes the seconds and samples the CPU, of all threads alike.
    let ticker = (share.thread == 0).then(|| {
        glommio::spawn_local(tick(
            Arc::clone(&recorder),
            measured,
            end,
            load.live,
            watched.clone(),
        ))
    });
    let mut tasks = Vec::new();
    for (i, client) in clients {
        let source = Source {
            rng: Prng::new(load.seed ^ (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            keys: Rc::clone(&keys),
            names: Rc::clone(&names),
            value: Bytes::from(vec![b'v'; load.value_bytes]),
            load: load.clone(),
        };
        let recorder = Arc::clone(&recorder);
        tasks.extend(match load.rate_per_s {
            None => closed_loop(client, source, end, recorder),
            Some(rate) => {
                let first = start + Duration::from_secs_f64(f64::from(i) / rate);
                let every = Duration::from_secs_f64(f64::from(load.clients) / rate);
                assert!(
                    !every.is_zero(),
                    "--rate {rate} is checked to space requests"
                );
                vec![glommio::spawn_local(open_loop(
                    client, source, first, every, end, recorder,
                ))]
            }
        });
    }
    for task in tasks {
        task.await;
    }
    let cpu = match ticker {
        Some(ticker) => Some(ticker.await),
        None => None,
    };
    Ok(Part {
        topology,
        watched,
        cpu,
    })
}

/// Connects this thread's share of the clients (client `i` when `i % threads == thread`),
/// numbered, and waits until every group has a leader: the figures are of a running
/// cluster, not of its first election.
async fn connect(
    share: Share,
    seeds: Vec<String>,
    load: &Load,
    meeting: &Meeting,
) -> Result<(Vec<(u32, Client)>, crate::proto::topology::Topology), String> {
    let mut clients = Vec::new();
    for i in (share.thread..load.clients).step_by(share.threads as usize) {
        let options = ClientOptions::new(seeds.clone(), load.seed ^ u64::from(i) << 20 | 7);
        let client = Client::connect_retrying(options, Duration::from_secs(30));
        let client = unless_called_off(meeting, client).await?;
        let client = client.map_err(|e| e.to_string())?;
        if clients.is_empty() {
            let topology = client.topology();
            // Only cores that hold groups are sent to.
            let cores = u64::from(topology.cores).min(u64::from(topology.groups));
            connections_fit(load, topology.members.len() as u64 * cores, 0)?;
        }
        clients.push((i, client));
    }
    let topology = clients
        .first()
        .ok_or("a generator thread without clients")?
        .1
        .topology()
        .clone();
    // The nodes would serve them by ReadIndex, and the run be titled as what it did not
    // measure (a node that does not say its timing, an older one, is taken at its word).
    let timing = topology.timing;
    if load.read_percent > 0
        && load.read == Consistency::Lease
        && timing.tick_us != 0
        && !timing.lease_reads
    {
        return Err(
            "--read lease: the nodes run without --lease-reads (they would serve every read \
             by ReadIndex)"
                .to_string(),
        );
    }
    // Every client, not just one: a client opens its connection to a core on its first
    // request there, and 64 clients opening 192 connections at once on the clock made the
    // first requests wait 60–90 ms (the whole p99.9 of a 5 s demo).
    for (_, client) in &clients {
        unless_called_off(meeting, touch_every_group(client, topology.groups)).await??;
    }
    Ok((clients, topology))
}

/// Refuses `load` where this process cannot hold its connections: each client opens one to
/// each of the cluster's `places` (node cores that hold groups) and holds two descriptors of
/// it (the second shuts it down when it breaks); where the null server runs here, it holds
/// `null_listeners` listening sockets and one more descriptor for its end of each. Found by
/// a benchmarker: past the open-files limit, a run failed after 11–66 s of retries, its
/// error naming a redirect, not the limit.
pub fn connections_fit(load: &Load, places: u64, null_listeners: u64) -> Result<(), String> {
    // Where the limit cannot be read, a connection past it says so when it fails.
    let Ok(open_files) = crate::sys::raise_open_files_limit() else {
        return Ok(());
    };
    let connections = u64::from(load.clients) * places;
    let threads = u64::from(load.threads);
    let null_here = null_listeners > 0;
    let null_files = match null_here {
        true => connections + null_listeners,
        false => 0,
    };
    // Besides connections: standard streams, each generator (and null server) thread's
    // rings and timers.
    let kept = 64 + 16 * threads * if null_here { 2 } else { 1 };
    let files = 2 * connections + null_files + kept;
    if files <= open_files {
        return Ok(());
    }
    let null = match null_here {
        true => format!(", {null_files} for the null server's ends and listeners"),
        false => String::new(),
    };
    Err(format!(
        "{} clients × {places} node cores need {connections} connections: {files} open files \
         (two descriptors of each{null}, {kept} for {threads} generator thread(s) and the \
         rest), and this process may open {open_files}: raise its limit (`ulimit -n`; the \
         hard one with `ulimit -Hn` or LimitNOFILE=), or use fewer --clients (--depth and \
         --batch put more requests in flight on the same connections)",
        load.clients
    ))
}

/// Sleeps until `until`, or less once the run is interrupted (looked at every 100 ms: an
/// open loop of a low rate waits seconds between requests).
async fn sleep_unless_interrupted(until: Instant) {
    loop {
        let now = crate::clock::now();
        if now >= until || interrupted() {
            return;
        }
        glommio::timer::sleep((until - now).min(Duration::from_millis(100))).await;
    }
}

/// `work`, given up (its client half made, or its reads unanswered, harmlessly) once another
/// thread failed or Ctrl-C was pressed, looked at every 100 ms: a thread need not wait out
/// its connects (up to 30 s each) for a load that will not start.
async fn unless_called_off<T>(
    meeting: &Meeting,
    work: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    let called_off = async {
        loop {
            if interrupted() {
                return Err("interrupted before the load began".to_string());
            }
            if let Some(failure) = meeting.failure() {
                return Err(failure);
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
    };
    futures_lite::future::or(async { Ok(work.await) }, called_off).await
}

/// The recorder, whichever thread panicked while it held it.
fn locked(recorder: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(|e| e.into_inner())
}

/// One linearizable read in every group, so every group has a leader before the clock runs.
async fn touch_every_group(client: &Client, groups: u32) -> Result<(), String> {
    let mut seen = vec![false; groups as usize];
    let mut reads = Vec::new();
    for i in 0.. {
        if reads.len() == seen.len() {
            break;
        }
        let key = Bytes::from(format!("warm-up-{i}"));
        let group = group_of(&key, groups) as usize;
        if !std::mem::replace(&mut seen[group], true) {
            reads.push((smallvec![Op::Get { key }], Consistency::Linearizable));
        }
    }
    for result in client.execute_batch(reads).await {
        result.map_err(|e| format!("before the run, a read in every group: {e}"))?;
    }
    Ok(())
}

/// Makes the requests of one client.
struct Source {
    rng: Prng,
    keys: Rc<KeyChooser>,
    names: Rc<Keys>,
    value: Bytes,
    load: Load,
}

type Requests = Vec<(Ops, Consistency)>;

impl Source {
    /// `count` requests, and the group of each.
    fn batch(&mut self, count: usize) -> (Requests, Vec<u32>) {
        let mut requests = Vec::with_capacity(count);
        let mut groups = Vec::with_capacity(count);
        for _ in 0..count {
            let (key, group) = self.names.get(self.keys.next(&mut self.rng));
            groups.push(group);
            if self.rng.below(100) < self.load.read_percent {
                requests.push((smallvec![Op::Get { key }], self.load.read));
            } else {
                let value = self.value.clone();
                requests.push((smallvec![Op::Put { key, value }], Consistency::Linearizable));
            }
        }
        (requests, groups)
    }
}

fn closed_loop(
    client: Client,
    source: Source,
    end: Instant,
    recorder: Arc<Mutex<Recorder>>,
) -> Vec<glommio::Task<()>> {
    let (depth, batch) = (source.load.depth, source.load.batch as usize);
    let source = Rc::new(RefCell::new(source));
    (0..depth)
        .map(|_| {
            let (client, source, recorder) =
                (client.clone(), Rc::clone(&source), Arc::clone(&recorder));
            glommio::spawn_local(async move {
                while crate::clock::now() < end && !interrupted() {
                    let (requests, groups) = source.borrow_mut().batch(batch);
                    let sent = crate::clock::now();
                    let answers = client.execute_batch_traced(requests).await;
                    let mut recorder = locked(&recorder);
                    for (answer, group) in answers.into_iter().zip(groups) {
                        match answer.result {
                            Ok(_) => recorder.answered(group, answer.node, sent, sent, answer.at),
                            Err(error) => {
                                recorder.failed(group, answer.node, sent, answer.at, &error)
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// How long past the measured window an open loop that fell behind its rate still sends
/// what was due in it: the rest is recorded unsent ([`Recorder::unsent`]). Without a bound,
/// a rate ten times what the cluster answers ran ten times as long, silent after the window
/// (found in review).
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Requests of one client meant to start at `first`, `first + every`, … until `end`; each
/// batch of the ones that are due goes out as soon as one of the `depth` slots is free. One
/// due before `end` goes out however late, for its latency, up to [`DRAIN_GRACE`] after
/// `end`; the recorder counts its answer as throughput only if it arrives by `end`.
async fn open_loop(
    client: Client,
    mut source: Source,
    first: Instant,
    every: Duration,
    end: Instant,
    recorder: Arc<Mutex<Recorder>>,
) {
    let slots = Rc::new(Semaphore::new(u64::from(source.load.depth)));
    let batch = source.load.batch as usize;
    let mut next = first;
    let stop = end + DRAIN_GRACE;
    while next < end && !interrupted() {
        let now = crate::clock::now();
        if now >= stop {
            locked(&recorder).unsent(next, every, end, now);
            break;
        }
        if next > now {
            sleep_unless_interrupted(next).await;
            if interrupted() {
                break;
            }
        }
        let slot = async {
            let permit = slots.acquire_static_permit(1).await;
            Some(permit.expect("the semaphore is never closed"))
        };
        let stopped = async {
            glommio::timer::sleep(stop.saturating_duration_since(crate::clock::now())).await;
            None
        };
        let Some(permit) = futures_lite::future::or(slot, stopped).await else {
            continue;
        };
        // Everything due by now, up to a batch; its latency counts from when it was due.
        let now = crate::clock::now();
        let mut intended = Vec::with_capacity(batch);
        while next <= now && next < end && intended.len() < batch {
            intended.push(next);
            next += every;
        }
        let (requests, groups) = source.batch(intended.len());
        let (client, recorder) = (client.clone(), Arc::clone(&recorder));
        glommio::spawn_local(async move {
            let sent = crate::clock::now();
            let answers = client.execute_batch_traced(requests).await;
            drop(permit);
            let mut recorder = locked(&recorder);
            for ((answer, group), intended) in answers.into_iter().zip(groups).zip(intended) {
                match answer.result {
                    Ok(_) => recorder.answered(group, answer.node, intended, sent, answer.at),
                    Err(error) => recorder.failed(group, answer.node, intended, answer.at, &error),
                }
            }
        })
        .detach();
    }
    // Every batch holds a slot until answered: all slots back means all answered.
    let all = slots.acquire(u64::from(source.load.depth)).await;
    all.expect("the semaphore is never closed");
}

/// Closes each second of the timeline (and prints it when `live`); returns CPU samples of
/// `watched` taken as the measured interval begins and ends.
async fn tick(
    recorder: Arc<Mutex<Recorder>>,
    measured: Instant,
    end: Instant,
    live: bool,
    watched: Vec<Watched>,
) -> (cpu::Sample, cpu::Sample) {
    // Ctrl-C in a long warm-up stops the run at once (found in review).
    sleep_unless_interrupted(measured).await;
    let before = cpu::sample(&watched);
    let mut next = measured;
    while next < end && !interrupted() {
        next = (next + Duration::from_secs(1)).min(end);
        let now = crate::clock::now();
        if next > now {
            glommio::timer::sleep(next - now).await;
        }
        let second = locked(&recorder).close_interval(crate::clock::now());
        if live {
            // No answer: no latency to show, not 0 µs (found by a user).
            let latency = |us| match second.latencies {
                0 => "-".to_string(),
                _ => super::report::duration_text(us),
            };
            crate::node::say(&format!(
                "{:>6.1} s  {:>10.0} req/s  p50 {:>9}  p99 {:>9}  max {:>9}  errors {}",
                second.at_s,
                second.requests_per_s,
                latency(second.p50_us),
                latency(second.p99_us),
                latency(second.max_us),
                second.errors
            ));
        }
    }
    (before, cpu::sample(&watched))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator takes the CPUs local nodes leave, at least one, at most one a client.
    #[test]
    fn the_default_threads_are_the_cpus_the_nodes_leave() {
        assert_eq!(threads_of(16, 3, 16), 13);
        assert_eq!(threads_of(16, 12, 16), 4);
        assert_eq!(threads_of(16, 3, 8), 8);
        assert_eq!(threads_of(2, 3, 16), 1);
        assert_eq!(threads_of(4, 3, 16), 1);
        assert_eq!(threads_of(16, 0, 0), 1);
    }
}
