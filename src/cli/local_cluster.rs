//! A 3-node cluster of `cohort serve` child processes on loopback, for the demo, the load
//! generator's embedded mode, and the end-to-end tests (which kill, restart and add nodes).

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::ops::Range;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;

use crate::bench::cpu::Watched;
use crate::raft::Prng;

use super::serve::SyncFlag;

pub const NODES: u64 = 3;

/// What a node's log says once one of its cores listens (see `node::runtime`).
const LISTENING: &str = ": peers on ";

/// The `serve` flags every node of a local cluster gets.
#[derive(Args, Clone, Debug)]
pub struct NodeFlags {
    /// Cores per node.
    #[arg(long, default_value_t = 1)]
    pub cores: u16,
    /// Raft groups.
    #[arg(long, default_value_t = 8)]
    pub groups: u32,
    /// WAL durability of the nodes.
    #[arg(long, value_enum, default_value_t = SyncFlag::Always)]
    pub sync: SyncFlag,
    /// WAL segment size of the nodes, in MiB.
    #[arg(long, default_value_t = 64)]
    pub segment_mib: u64,
    /// Entries per group between snapshots (0: never).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_entries: u64,
    /// MiB of applied entries per group between snapshots, or the last snapshot's size if
    /// bigger (0: no byte bound).
    #[arg(long, default_value_t = 8)]
    pub snapshot_log_mib: u64,
    /// Entries a leader keeps behind each snapshot for followers a little behind (see
    /// `serve --snapshot-catch-up-entries`).
    #[arg(long, default_value_t = 5_000)]
    pub snapshot_catch_up_entries: u64,
    /// MiB of WAL per core above which groups holding old segments snapshot early (see
    /// `serve --wal-soft-limit-mib`).
    #[arg(long, default_value_t = 1024)]
    pub wal_soft_limit_mib: u64,
    /// Serve linearizable reads from the leader's lease (see `serve --lease-reads`).
    #[arg(long)]
    pub lease_reads: bool,
    /// Send a new commit index to followers at once (see `serve --broadcast-commit`).
    #[arg(long)]
    pub broadcast_commit: bool,
    /// Keep every group's timers running when it is idle (see `serve --no-quiesce`).
    #[arg(long)]
    pub no_quiesce: bool,
    /// Ticks without a leader before a follower campaigns (see `serve --election-ticks`).
    #[arg(long, default_value_t = 20)]
    pub election_ticks: u32,
    /// Leaders stay where elections put them (see `serve --no-leader-balance`).
    #[arg(long)]
    pub no_leader_balance: bool,
    /// Chunk size of the nodes' snapshot streams, in KiB.
    #[arg(long, default_value_t = 1024)]
    pub snapshot_chunk_kib: usize,
    /// MiB of keys and values each node may hold (see `serve --kv-quota-mib`) [default: a
    /// quarter of the memory this process may use, shared by the nodes].
    #[arg(long)]
    pub kv_quota_mib: Option<u64>,
}

impl NodeFlags {
    /// Checks the flags as a node started with them would, before any starts: a bad value
    /// is an error here, not nodes that exit at start.
    pub fn check(&self) -> Result<(), String> {
        // In u32: a --cores past the node's limit is refused by the check, not overflowed.
        let ports_per_node = 2 * u32::from(self.cores.max(1));
        let bases: Vec<String> = (0..NODES as u32)
            .map(|i| format!("127.0.0.1:{}", 20_000 + i * ports_per_node))
            .collect();
        super::serve::check_args(&bootstrap_args(Path::new("unused"), 1, self, &bases, 1))
    }
}

impl Default for NodeFlags {
    fn default() -> NodeFlags {
        NodeFlags {
            cores: 1,
            groups: 8,
            sync: SyncFlag::Always,
            segment_mib: 64,
            snapshot_entries: 100_000,
            snapshot_log_mib: 8,
            snapshot_catch_up_entries: 5_000,
            wal_soft_limit_mib: 1024,
            lease_reads: false,
            broadcast_commit: false,
            no_quiesce: false,
            election_ticks: 20,
            no_leader_balance: false,
            snapshot_chunk_kib: 1024,
            kv_quota_mib: None,
        }
    }
}

/// Why a local cluster did not start.
#[derive(Debug)]
pub struct StartFailure {
    pub message: String,
    /// A node exited or hung: its log says why (a scratch folder is kept for it).
    pub node_failed: bool,
}

impl StartFailure {
    fn of_node(message: String) -> StartFailure {
        StartFailure {
            message,
            node_failed: true,
        }
    }
}

impl From<String> for StartFailure {
    fn from(message: String) -> StartFailure {
        StartFailure {
            message,
            node_failed: false,
        }
    }
}

/// Killed (SIGKILL) if dropped without [`LocalCluster::stop`].
pub struct LocalCluster {
    pub dir: PathBuf,
    /// Base address of node i + 1.
    pub bases: Vec<String>,
    /// The `--cluster-id` its nodes were given: drawn at random for each cluster.
    pub cluster_id: u64,
    exe: PathBuf,
    flags: NodeFlags,
    args: Vec<Vec<String>>,
    children: Vec<Option<Child>>,
}

impl LocalCluster {
    /// Start `exe serve` three times on free loopback ports, data under `dir`, each with
    /// `flags`.
    pub fn start(exe: &Path, dir: &Path, flags: &NodeFlags) -> Result<LocalCluster, String> {
        Self::start_or_say(exe, dir, flags).map_err(|failure| failure.message)
    }

    /// As [`LocalCluster::start`], saying whether a node failed.
    pub fn start_or_say(
        exe: &Path,
        dir: &Path,
        flags: &NodeFlags,
    ) -> Result<LocalCluster, StartFailure> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        flags.check()?;
        let ports_per_node = 2 * flags.cores;
        let base = free_port_run(NODES as u16 * ports_per_node)?;
        let bases: Vec<String> = (0..NODES as u16)
            .map(|i| format!("127.0.0.1:{}", base + i * ports_per_node))
            .collect();
        // Its own cluster id: a node of another local cluster (another process's, which
        // probed ports at the same time) that dials one of these ports is refused at the
        // handshake, before it is taken for a member.
        let cluster_id =
            Prng::new(crate::clock::wall_nanos() as u64 ^ u64::from(std::process::id()))
                .below(1 << 48)
                + 1;
        let args = (1..=NODES)
            .map(|id| bootstrap_args(dir, id, flags, &bases, cluster_id))
            .collect();
        let mut cluster = LocalCluster {
            dir: dir.to_path_buf(),
            bases,
            cluster_id,
            exe: exe.to_path_buf(),
            flags: flags.clone(),
            args,
            children: (0..NODES).map(|_| None).collect(),
        };
        // All three start at once (each builds its first WAL segments), then each is waited for.
        let mut listening_before = Vec::new();
        let started = (1..=NODES).try_for_each(|id| {
            listening_before.push(cluster.spawn(id)?);
            Ok::<_, StartFailure>(())
        });
        let listening = started.and_then(|()| {
            (1..=NODES)
                .zip(listening_before)
                .try_for_each(|(id, before)| cluster.wait_listening(id, before))
        });
        match listening {
            Ok(()) => Ok(cluster),
            // Ctrl-C: the nodes that run stop as at the end of a run, with SIGTERM (found in
            // review: dropped, they were killed), and one that failed is named. Any other
            // failure kills them (dropped).
            Err(mut failure) if crate::bench::driver::interrupted() => {
                let died = cluster
                    .exit_statuses()
                    .iter()
                    .any(|(_, s)| !stopped_cleanly(s, Stage::Starting));
                if failure.node_failed || died {
                    // Its log is kept even if a second Ctrl-C comes during the stop.
                    crate::bench::driver::keep_on_second_signal(&cluster.dir);
                }
                if let Err(problems) = cluster.stop_with(Stage::Starting) {
                    failure.message = format!("{}; {problems}", failure.message);
                    failure.node_failed = true;
                }
                Err(failure)
            }
            Err(failure) => Err(failure),
        }
    }

    /// The running nodes' processes, to watch their CPU: "node ID" and its pid.
    pub fn watched(&self) -> Vec<Watched> {
        self.children
            .iter()
            .enumerate()
            .filter_map(|(i, child)| {
                Some(Watched {
                    name: format!("node {}", i + 1),
                    pid: child.as_ref()?.id(),
                })
            })
            .collect()
    }

    /// Start a new node (the next id) on free ports that joins the cluster through `via`
    /// (a member's id): `serve --join`. Returns its id; it is a voter once its log says
    /// `node ID: joined`.
    pub fn join(&mut self, via: u64) -> Result<u64, String> {
        let id = self.bases.len() as u64 + 1;
        let base = format!("127.0.0.1:{}", free_port_run(2 * self.flags.cores.max(1))?);
        let mut args = node_args(&self.dir, id, &self.flags, self.cluster_id);
        args.extend(
            ["--listen", &base, "--join", &self.bases[(via - 1) as usize]].map(String::from),
        );
        self.bases.push(base);
        self.args.push(args);
        self.children.push(None);
        self.restart(id)?;
        Ok(id)
    }

    /// Start node `id` (1-based) again with the same flags and data, and wait until it
    /// listens; appends to its log.
    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        let listening_before = self.spawn(id)?;
        self.wait_listening(id, listening_before)
            .map_err(|failure| failure.message)
    }

    /// The command line node `id` starts with, for a test to change before a restart.
    pub fn args_mut(&mut self, id: u64) -> &mut Vec<String> {
        &mut self.args[(id - 1) as usize]
    }

    /// Start the process of node `id`; returns how many times its log said it listens before
    /// (for [`LocalCluster::wait_listening`]).
    fn spawn(&mut self, id: u64) -> Result<usize, String> {
        let index = (id - 1) as usize;
        if self.children[index].is_some() {
            return Err(format!("node {id} is running"));
        }
        // After a Ctrl-C, start nothing: a second one deletes the folder and exits without
        // stopping the nodes (found in review: one started then made its data dir again).
        if crate::bench::driver::interrupted() {
            return Err(format!("interrupted before node {id} started"));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .map_err(|e| format!("cannot open the log of node {id}: {e}"))?;
        let listening_before = self.listening_lines(id);
        // In a process group of its own: a terminal's Ctrl-C goes to the process that runs
        // the cluster, which stops the nodes itself (and deletes their folder).
        let child = Command::new(&self.exe)
            .process_group(0)
            .env(super::serve::PARENT_PID_ENV, std::process::id().to_string())
            .args(&self.args[index])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start node {id}: {e}"))?;
        self.children[index] = Some(child);
        Ok(listening_before)
    }

    /// How many times node `id`'s log says a core of it listens.
    fn listening_lines(&self, id: u64) -> usize {
        self.log(id).matches(LISTENING).count()
    }

    /// Waits until every core of node `id` says it listens (its log had `before` such lines
    /// before this start). A node that exits first (a port taken, a damaged data dir) is an
    /// error with the end of its log, so no test goes on with a node short. Runs on the
    /// thread that launches the cluster, never on an executor: it may sleep.
    #[allow(clippy::disallowed_methods)]
    fn wait_listening(&mut self, id: u64, before: usize) -> Result<(), StartFailure> {
        const PATIENCE: Duration = Duration::from_secs(60);
        let started = crate::clock::now();
        let index = (id - 1) as usize;
        while self.listening_lines(id) < before + usize::from(self.flags.cores) {
            let child = self.children[index].as_mut().expect("just started");
            if let Ok(Some(status)) = child.try_wait() {
                self.children[index] = None;
                return Err(StartFailure::of_node(format!(
                    "node {id} exited at start ({status}); the end of its log:\n{}",
                    log_tail(&self.dir, id)
                )));
            }
            // Ctrl-C while a node starts ends the start (`start` stops what runs).
            if crate::bench::driver::interrupted() {
                return Err(format!("interrupted while node {id} started").into());
            }
            if started.elapsed() > PATIENCE {
                return Err(StartFailure::of_node(format!(
                    "node {id} does not listen after {PATIENCE:?}; the end of its log:\n{}",
                    log_tail(&self.dir, id)
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        log_path(&self.dir, id)
    }

    /// What node `id` printed so far.
    pub fn log(&self, id: u64) -> String {
        read_lossy(&self.log_path(id))
    }

    /// SIGKILL node `id`: no shutdown, no final sync.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freeze node `id` (SIGSTOP) until [`LocalCluster::resume`]: a stalled machine, its
    /// sockets open and its peers unanswered.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, crate::sys::Signal::Stop);
    }

    /// Let node `id` go on after [`LocalCluster::pause`].
    pub fn resume(&mut self, id: u64) {
        self.signal(id, crate::sys::Signal::Continue);
    }

    fn signal(&mut self, id: u64, signal: crate::sys::Signal) {
        if let Some(child) = &mut self.children[(id - 1) as usize] {
            signal_child(child, signal);
        }
    }

    /// SIGTERM node `id` and wait for it; an error if it did not exit cleanly.
    pub fn terminate(&mut self, id: u64) -> Result<(), String> {
        let Some(mut child) = self.children[(id - 1) as usize].take() else {
            return Ok(());
        };
        signal_child(&mut child, crate::sys::Signal::Terminate);
        // A paused node takes the signal only once it goes on.
        signal_child(&mut child, crate::sys::Signal::Continue);
        wait_stopped(&self.dir, id, child, Stage::Running)
    }

    /// Waits up to `patience` for node `id` to exit by itself: its status (it is no longer
    /// counted as running), or None if it still runs.
    #[allow(clippy::disallowed_methods)] // polls a child process, on no executor
    pub fn wait_exit(&mut self, id: u64, patience: Duration) -> Option<ExitStatus> {
        let slot = &mut self.children[(id - 1) as usize];
        let mut waited = Duration::ZERO;
        loop {
            match slot.as_mut().map(Child::try_wait)? {
                Ok(Some(status)) => {
                    *slot = None;
                    return Some(status);
                }
                Ok(None) if waited < patience => {
                    std::thread::sleep(Duration::from_millis(10));
                    waited += Duration::from_millis(10);
                }
                _ => return None,
            }
        }
    }

    /// Waits for node `id`, just removed from the cluster, to stop by itself as it does once
    /// its groups applied the change or a member told it (status 1, saying it was removed),
    /// and after `patience` stops it with SIGTERM. An error if it stopped otherwise.
    pub fn wait_removed(&mut self, id: u64, patience: Duration) -> Result<(), String> {
        let said_removed =
            |cluster: &LocalCluster| cluster.log(id).contains("was removed from the cluster");
        if let Some(status) = self.wait_exit(id, patience) {
            return match status.success() || said_removed(self) {
                true => Ok(()),
                false => Err(format!(
                    "node {id} exited with {status}; the end of its log:\n{}",
                    log_tail(&self.dir, id)
                )),
            };
        }
        let stopped = self.terminate(id);
        if stopped.is_err() && said_removed(self) {
            return Ok(());
        }
        stopped
    }

    /// SIGTERM node `id` twice in a row and wait for it: its exit status (a node that
    /// takes a second signal while it stops exits at once).
    pub fn terminate_twice(&mut self, id: u64) -> Result<std::process::ExitStatus, String> {
        let mut child = self.children[(id - 1) as usize]
            .take()
            .ok_or_else(|| format!("node {id} is not running"))?;
        signal_child(&mut child, crate::sys::Signal::Terminate);
        // A signal sent while the same one is pending is merged with it: the second waits
        // until the node has taken the first.
        let status = format!("/proc/{}/status", child.id());
        let sigterm_bit = 1u64 << (15 - 1);
        let pending = |line: &str| {
            (line
                .strip_prefix("SigPnd:\t")
                .or_else(|| line.strip_prefix("ShdPnd:\t")))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & sigterm_bit != 0)
        };
        for _ in 0..100_000 {
            match std::fs::read_to_string(&status) {
                Ok(text) if text.lines().any(pending) => std::hint::spin_loop(),
                _ => break,
            }
        }
        signal_child(&mut child, crate::sys::Signal::Terminate);
        child
            .wait()
            .map_err(|e| format!("cannot wait for node {id}: {e}"))
    }

    /// Nodes that exited on their own, with their status.
    pub fn exited(&mut self) -> Vec<String> {
        self.exit_statuses()
            .into_iter()
            .map(|(id, status)| format!("node {id} exited ({status})"))
            .collect()
    }

    /// The ids of nodes that exited on their own, with their status.
    pub fn exit_statuses(&mut self) -> Vec<(u64, ExitStatus)> {
        let mut exited = Vec::new();
        for (i, child) in self.children.iter_mut().enumerate() {
            if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                exited.push((i as u64 + 1, status));
            }
        }
        exited
    }

    /// SIGTERM every running node and wait; errors name nodes that did not exit cleanly.
    pub fn stop(self) -> Result<(), String> {
        self.stop_with(Stage::Running)
    }

    /// As [`LocalCluster::stop`], with the nodes at `stage`.
    fn stop_with(mut self, stage: Stage) -> Result<(), String> {
        let mut problems = Vec::new();
        for child in self.children.iter_mut().flatten() {
            signal_child(child, crate::sys::Signal::Terminate);
            signal_child(child, crate::sys::Signal::Continue);
        }
        for (i, child) in self.children.iter_mut().enumerate() {
            let Some(child) = child.take() else {
                continue;
            };
            if let Err(problem) = wait_stopped(&self.dir, i as u64 + 1, child, stage) {
                problems.push(problem);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `signal` to `child` unless it has been reaped ([`LocalCluster::exited`] reaps a
/// node that died): its pid may belong to another process by now. A child that exited and
/// was not reaped keeps its pid until it is.
fn signal_child(child: &mut Child, signal: crate::sys::Signal) {
    if matches!(child.try_wait(), Ok(None)) {
        crate::sys::send_signal(child.id(), signal);
    }
}

/// How long a node told to stop (SIGTERM) may take to exit before it is killed: its handovers
/// and last writes take up to two election timeouts, its last turn and sync milliseconds,
/// and its clients up to 2 s to read their last answers.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

/// Waits for node `id`, told to stop, to exit; an error if it did not exit cleanly, or not
/// within [`STOP_PATIENCE`] (then it is killed).
#[allow(clippy::disallowed_methods)] // polls a child process, on no executor
fn wait_stopped(dir: &Path, id: u64, mut child: Child, stage: Stage) -> Result<(), String> {
    let mut waited = Duration::ZERO;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if waited < STOP_PATIENCE => {
                std::thread::sleep(Duration::from_millis(10));
                waited += Duration::from_millis(10);
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "node {id} did not stop within {STOP_PATIENCE:?} of SIGTERM and was killed; \
                     the end of its log:\n{}",
                    log_tail(dir, id)
                ));
            }
            Err(error) => return Err(format!("node {id}: {error}")),
        }
    };
    if stopped_cleanly(&status, stage) {
        Ok(())
    } else {
        Err(format!(
            "node {id} exited with {status}; the end of its log:\n{}",
            log_tail(dir, id)
        ))
    }
}

/// Where the nodes a stop is for are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Each listened: it took SIGTERM over, and a stop exits 0.
    Running,
    /// Started, some perhaps before they took SIGTERM over (a start cut short).
    Starting,
}

/// Whether a node stopped as told: it exited 0, or, at `Stage::Starting`, SIGTERM's default
/// action ended it before it took the signal over (found in review: counted as a failure).
/// Once running, a node ended by SIGTERM itself never ran its stop.
fn stopped_cleanly(status: &ExitStatus, stage: Stage) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.success() || (stage == Stage::Starting && status.signal() == Some(libc::SIGTERM))
}

/// Whether any node of a cluster in `dir` has a log there.
pub fn any_log(dir: &Path) -> bool {
    (1..=NODES).any(|id| log_path(dir, id).exists())
}

fn log_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}.log"))
}

/// A node's log as text, whatever bytes it holds (a line cut off in a character by a full
/// disk made the whole log read as empty, and a start that failed showed no reason).
fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map_or_else(
        |_| String::new(),
        |bytes| String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// The last lines node `id` printed, for an error message.
fn log_tail(dir: &Path, id: u64) -> String {
    const LINES: usize = 15;
    let log = read_lossy(&log_path(dir, id));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// The flags of node `id` of a new cluster whose nodes listen at `bases`.
fn bootstrap_args(
    dir: &Path,
    id: u64,
    flags: &NodeFlags,
    bases: &[String],
    cluster_id: u64,
) -> Vec<String> {
    let peers: Vec<String> = bases
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{}={b}", i + 1))
        .collect();
    let mut args = node_args(dir, id, flags, cluster_id);
    args.extend(
        [
            "--peers",
            &peers.join(","),
            "--cores",
            &flags.cores.to_string(),
            "--groups",
            &flags.groups.to_string(),
        ]
        .map(String::from),
    );
    args
}

/// The flags of node `id` that do not depend on how it finds the cluster.
fn node_args(dir: &Path, id: u64, flags: &NodeFlags, cluster_id: u64) -> Vec<String> {
    let sync = match flags.sync {
        SyncFlag::Always => "always",
        SyncFlag::Never => "never",
    };
    let data = dir.join(format!("node-{id}"));
    let mut args = [
        "serve",
        "--id",
        &id.to_string(),
        "--data-dir",
        &data.to_string_lossy(),
        "--sync",
        sync,
        "--segment-mib",
        &flags.segment_mib.to_string(),
        "--snapshot-entries",
        &flags.snapshot_entries.to_string(),
        "--snapshot-log-mib",
        &flags.snapshot_log_mib.to_string(),
        "--snapshot-catch-up-entries",
        &flags.snapshot_catch_up_entries.to_string(),
        "--wal-soft-limit-mib",
        &flags.wal_soft_limit_mib.to_string(),
        "--snapshot-chunk-kib",
        &flags.snapshot_chunk_kib.to_string(),
        "--election-ticks",
        &flags.election_ticks.to_string(),
        "--stop-with-parent",
        "--cluster-id",
        &cluster_id.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if flags.lease_reads {
        args.push("--lease-reads".to_string());
    }
    if flags.broadcast_commit {
        args.push("--broadcast-commit".to_string());
    }
    if flags.no_quiesce {
        args.push("--no-quiesce".to_string());
    }
    if flags.no_leader_balance {
        args.push("--no-leader-balance".to_string());
    }
    // The nodes share one machine: each gets its share of the default quota (found in
    // review: each took a quarter of the machine's memory).
    // Where the system does not say its memory (0), none, as `serve` (review 275: 1 MiB).
    let memory_bytes = crate::sys::memory_bytes();
    let kv_quota_mib = (flags.kv_quota_mib)
        .or((memory_bytes > 0).then(|| ((memory_bytes / 4 / NODES) >> 20).max(1)));
    if let Some(mib) = kv_quota_mib {
        args.extend(["--kv-quota-mib".to_string(), mib.to_string()]);
    }
    args
}

/// Ports of local clusters start here, below Linux's default ephemeral range (32768–60999),
/// so the kernel does not hand one of them to an outgoing connection between the check that
/// it is free and the bind.
const FIRST: u16 = 20_000;
const EPHEMERAL: u16 = 32_768;

/// The first port of a run of `count` (less than `EPHEMERAL - FIRST`) that the random
/// `draw` picks, the whole run below the ephemeral ports.
fn run_base(count: u16, draw: u64) -> u16 {
    FIRST + (draw % u64::from(EPHEMERAL - FIRST - count)) as u16
}

/// A run of `count` consecutive free TCP ports on loopback, none of which this process
/// handed out before.
pub fn free_port_run(count: u16) -> Result<u16, String> {
    // Clusters started by one process (tests run in parallel) must not share ports: a probe
    // only sees ports that are bound now, not those of a cluster whose nodes are still
    // starting or are down for a restart.
    static HANDED_OUT: Mutex<Vec<Range<u16>>> = Mutex::new(Vec::new());
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut rng = Prng::new(u64::from(std::process::id()) << 16 ^ call);
    if count >= EPHEMERAL - FIRST {
        return Err(format!(
            "a run of {count} ports does not fit below the ephemeral ports ({FIRST}..{EPHEMERAL})"
        ));
    }
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..200 {
        let base = run_base(count, rng.below(u64::MAX));
        let run = base..base + count;
        let overlaps = handed_out
            .iter()
            .any(|r| r.start < run.end && run.start < r.end);
        if !overlaps
            && run
                .clone()
                .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            handed_out.push(run);
            return Ok(base);
        }
    }
    Err(format!("no run of {count} free ports found on 127.0.0.1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (review 235): a node's log with bytes that are not UTF-8 (a line cut off in a
    /// character) still shows its last lines; it read as empty.
    #[test]
    fn a_log_cut_off_in_a_character_still_shows_its_tail() {
        let dir = std::env::temp_dir().join(format!("cohort-log-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            log_path(&dir, 1),
            b"started\ncannot bind 127.0.0.1:7001 \xe2\x80\n",
        )
        .unwrap();
        let tail = log_tail(&dir, 1);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(tail.contains("cannot bind 127.0.0.1:7001"), "{tail:?}");
    }

    /// Goal (review 235): a run of ports stays below the kernel's ephemeral ports, or is
    /// refused; a long one reached into them.
    #[test]
    fn a_run_of_ports_stays_below_the_ephemeral_ports() {
        for draw in [0, 1, 12_767, 12_000 - 2_001, u64::MAX] {
            let base = run_base(2_000, draw);
            assert!(base >= 20_000 && base + 2_000 <= 32_768, "{draw}: {base}");
        }
        assert!(free_port_run(12_768).is_err());
    }
}
