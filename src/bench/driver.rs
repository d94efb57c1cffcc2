//! Drives load through the Rust client: a closed loop (each client keeps `depth` batches in
//! flight) or an open loop (requests meant to start at a fixed rate, latency measured from
//! each one's intended start so a stalled server cannot hide behind a stalled generator).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
use super::recorder::Recorder;

/// Set by SIGINT or SIGTERM once [`stop_on_signals`] was called.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Folders [`delete_on_second_signal`] names: deleted before a second signal ends the
/// process.
static SCRATCH_FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// From now on, SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) end a run's load
/// early instead of killing the process, so that the caller can stop the nodes it started and
/// delete their folder; a second one deletes the folders named by
/// [`delete_on_second_signal`] and ends the process at once (its nodes stop by themselves,
/// see `serve --stop-with-parent`). The signals are taken on a thread of their own.
pub fn stop_on_signals() -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut registered = Ok(());
    INTERRUPTED.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(mut signals) => {
                let first = Arc::clone(&flag);
                std::thread::spawn(move || {
                    for _ in signals.forever() {
                        if !first.swap(true, Ordering::SeqCst) {
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
}

/// What a run saw.
pub struct Run {
    pub recorder: Recorder,
    /// Seconds measured (warm-up excluded).
    pub seconds: f64,
    pub groups: u32,
    pub cores: u16,
    pub members: Vec<(u64, String)>,
    /// The CPU of the measured interval: the generator's, the watched processes' and the
    /// machine's.
    pub cpu: CpuUse,
}

/// Runs `load` against the cluster that `seeds` belong to, on a fresh executor thread, and
/// measures the CPU of the generator and of the `watched` processes (a local cluster's
/// nodes) over the same interval.
pub fn run(seeds: Vec<String>, load: Load, watched: Vec<Watched>) -> Result<Run, String> {
    crate::node::on_one_executor("cohort-bench", move || run_here(seeds, load, watched))?
}

async fn run_here(
    seeds: Vec<String>,
    load: Load,
    mut watched: Vec<Watched>,
) -> Result<Run, String> {
    watched.insert(
        0,
        Watched {
            name: "generator".to_string(),
            pid: std::process::id(),
        },
    );
    // Connect before the clock starts, and wait until every group has a leader: the figures
    // are of a running cluster, not of its first election.
    let mut clients = Vec::new();
    for i in 0..load.clients {
        if interrupted() {
            return Err("interrupted before the load began".to_string());
        }
        let options = ClientOptions::new(seeds.clone(), load.seed ^ u64::from(i) << 20 | 7);
        let client = Client::connect_retrying(options, Duration::from_secs(30)).await;
        clients.push(client.map_err(|e| e.to_string())?);
    }
    let topology = clients[0].topology().clone();
    // Every client, not just one: a client opens its connection to a core on its first
    // request there, and 64 clients opening 192 connections at once on the clock made the
    // first requests wait 60–90 ms (the whole p99.9 of a 5 s demo).
    for client in &clients {
        touch_every_group(client, topology.groups).await?;
    }

    // Made before the clock starts: a table of a million keys and the zipfian set-up (up to
    // a million terms summed) take about 80 ms, which the first requests would be late by.
    let names = Rc::new(Keys::new(load.keys, topology.groups));
    let keys = Rc::new(KeyChooser::new(
        load.distribution,
        load.keys,
        load.zipf_theta,
    ));
    let start = crate::clock::now();
    let measured = start + load.warmup;
    let end = measured + load.duration;
    let recorder = Rc::new(RefCell::new(Recorder::new(measured, end)));
    let ticker = glommio::spawn_local(tick(
        Rc::clone(&recorder),
        measured,
        end,
        load.live,
        watched.clone(),
    ));
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let source = Source {
            rng: Prng::new(load.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            keys: Rc::clone(&keys),
            names: Rc::clone(&names),
            value: Bytes::from(vec![b'v'; load.value_bytes]),
            load: load.clone(),
        };
        let recorder = Rc::clone(&recorder);
        tasks.extend(match load.rate_per_s {
            None => closed_loop(client, source, end, recorder),
            Some(rate) => {
                let first = start + Duration::from_secs_f64(i as f64 / rate);
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
    let (cpu_before, cpu_after) = ticker.await;
    let recorder = Rc::try_unwrap(recorder)
        .map_err(|_| "load tasks still running".to_string())?
        .into_inner();
    let seconds = (recorder.timeline.last().map_or(0.0, |s| s.at_s)).max(1e-9);
    let cpu = cpu::usage(
        &watched,
        &cpu_before,
        &cpu_after,
        seconds,
        recorder.requests,
    );
    Ok(Run {
        recorder,
        seconds,
        groups: topology.groups,
        cores: topology.cores,
        members: topology.members,
        cpu,
    })
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
    recorder: Rc<RefCell<Recorder>>,
) -> Vec<glommio::Task<()>> {
    let (depth, batch) = (source.load.depth, source.load.batch as usize);
    let source = Rc::new(RefCell::new(source));
    (0..depth)
        .map(|_| {
            let (client, source, recorder) =
                (client.clone(), Rc::clone(&source), Rc::clone(&recorder));
            glommio::spawn_local(async move {
                while crate::clock::now() < end && !interrupted() {
                    let (requests, groups) = source.borrow_mut().batch(batch);
                    let sent = crate::clock::now();
                    let answers = client.execute_batch_traced(requests).await;
                    let mut recorder = recorder.borrow_mut();
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

/// Requests of one client meant to start at `first`, `first + every`, … until `end`; each
/// batch of the ones that are due goes out as soon as one of the `depth` slots is free. One
/// due before `end` goes out however late, for its latency; the recorder counts its answer
/// as throughput only if it arrives by `end`.
async fn open_loop(
    client: Client,
    mut source: Source,
    first: Instant,
    every: Duration,
    end: Instant,
    recorder: Rc<RefCell<Recorder>>,
) {
    let slots = Rc::new(Semaphore::new(u64::from(source.load.depth)));
    let batch = source.load.batch as usize;
    let mut next = first;
    while next < end && !interrupted() {
        let now = crate::clock::now();
        if next > now {
            glommio::timer::sleep(next - now).await;
        }
        let permit = slots
            .acquire_static_permit(1)
            .await
            .expect("the semaphore is never closed");
        // Everything due by now, up to a batch; its latency counts from when it was due.
        let now = crate::clock::now();
        let mut intended = Vec::with_capacity(batch);
        while next <= now && next < end && intended.len() < batch {
            intended.push(next);
            next += every;
        }
        let (requests, groups) = source.batch(intended.len());
        let (client, recorder) = (client.clone(), Rc::clone(&recorder));
        glommio::spawn_local(async move {
            let sent = crate::clock::now();
            let answers = client.execute_batch_traced(requests).await;
            drop(permit);
            let mut recorder = recorder.borrow_mut();
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
    recorder: Rc<RefCell<Recorder>>,
    measured: Instant,
    end: Instant,
    live: bool,
    watched: Vec<Watched>,
) -> (cpu::Sample, cpu::Sample) {
    let now = crate::clock::now();
    if measured > now {
        glommio::timer::sleep(measured - now).await;
    }
    let before = cpu::sample(&watched);
    let mut next = measured;
    while next < end && !interrupted() {
        next = (next + Duration::from_secs(1)).min(end);
        let now = crate::clock::now();
        if next > now {
            glommio::timer::sleep(next - now).await;
        }
        let second = recorder.borrow_mut().close_interval(crate::clock::now());
        if live {
            println!(
                "{:>6.1} s  {:>10.0} req/s  p50 {:>9}  p99 {:>9}  max {:>9}  errors {}",
                second.at_s,
                second.requests_per_s,
                super::report::duration_text(second.p50_us),
                super::report::duration_text(second.p99_us),
                super::report::duration_text(second.max_us),
                second.errors
            );
        }
    }
    (before, cpu::sample(&watched))
}
