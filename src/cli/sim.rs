//! `cohort sim`: the deterministic simulator from the command line. Seeded random runs of a
//! Raft group under crashes, partitions, message loss, membership changes and compaction,
//! each checked for Raft's safety properties at every step and for convergence after healing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;

use crate::sim::{SimFailure, SimOptions, SimReport, run as run_seed};

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Seeds to run, from --from on.
    #[arg(long, default_value_t = 1_000)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Threads running seeds (0: one per CPU).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub threads: u16,
    /// Replay this one seed and print what it did (overrides --seeds and --from).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The sum of what passing seeds did.
#[derive(Default)]
struct Totals {
    seeds: u64,
    elections: u64,
    committed: u64,
    writes_applied: u64,
    reads_checked: u64,
    crashes: u64,
    conf_changes: u64,
    readies_pipelined: u64,
    quiet_heartbeats: u64,
}

impl Totals {
    fn add(&mut self, report: &SimReport) {
        self.seeds += 1;
        self.elections += report.elections;
        self.committed += report.committed;
        self.writes_applied += report.writes_applied;
        self.reads_checked += report.reads_checked;
        self.crashes += report.crashes;
        self.conf_changes += report.conf_changes;
        self.readies_pipelined += report.readies_pipelined;
        self.quiet_heartbeats += report.quiet_heartbeats;
    }
}

/// Runs the seeds; Err names the first failing seed (the lowest, whatever thread found it)
/// and how to replay it.
pub fn run(args: &SimArgs) -> Result<(), String> {
    if let Some(seed) = args.seed {
        let options = SimOptions::for_seed(seed);
        outln!("seed {seed}: {options:?}");
        let report = run_seed(&options).map_err(|f| f.to_string())?;
        outln!("seed {seed} passed: {report:?}");
        return Ok(());
    }
    if args.seeds == 0 {
        return Err("--seeds must be at least 1".to_string());
    }
    let end = args
        .from
        .checked_add(args.seeds)
        .ok_or("--from + --seeds overflows")?;
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => usize::from(n),
    };
    let started = crate::clock::now();
    let next = AtomicU64::new(args.from);
    let totals = Mutex::new(Totals::default());
    let failures: Mutex<Vec<SimFailure>> = Mutex::new(Vec::new());
    // The lowest seed that failed so far: a seed below it, taken by a thread that then
    // waited for the CPU, still runs, so the lowest failing seed is the one reported.
    let failed_lowest = AtomicU64::new(u64::MAX);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    // Never past `end`: near u64::MAX an add would wrap to seed 0.
                    let taken = next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n < end).then_some(n + 1)
                    });
                    let Ok(seed) = taken else { return };
                    if seed > failed_lowest.load(Ordering::Relaxed) {
                        return;
                    }
                    match run_seed(&SimOptions::for_seed(seed)) {
                        Ok(report) => totals.lock().expect("not poisoned").add(&report),
                        Err(failure) => {
                            failed_lowest.fetch_min(seed, Ordering::Relaxed);
                            failures.lock().expect("not poisoned").push(failure);
                        }
                    }
                }
            });
        }
    });
    let totals = totals.into_inner().expect("not poisoned");
    let mut failures = failures.into_inner().expect("not poisoned");
    failures.sort_by_key(|f| f.seed);
    outln!(
        "cohort sim: {} seeds passed in {:.1} s on {threads} threads: {} elections, {} entries \
         committed, {} client writes applied, {} reads checked, {} crashes, {} membership \
         changes, {} Readies pipelined, {} heartbeats that quieted a group",
        totals.seeds,
        started.elapsed().as_secs_f64(),
        totals.elections,
        totals.committed,
        totals.writes_applied,
        totals.reads_checked,
        totals.crashes,
        totals.conf_changes,
        totals.readies_pipelined,
        totals.quiet_heartbeats,
    );
    match failures.first() {
        None => Ok(()),
        Some(failure) => Err(format!("{failure}\nor: cohort sim --seed {}", failure.seed)),
    }
}
