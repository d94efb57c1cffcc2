//! `cohort demo`: a 3-node cluster on loopback (three child processes, a temporary data
//! folder), a short mixed load, its throughput and latency, and a clean shutdown.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;

use crate::client::{Client, ClientOptions};
use crate::kv::Op;
use crate::proto::client::Consistency;
use crate::raft::Prng;

use super::local_cluster::LocalCluster;
use super::serve::SyncFlag;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Concurrent clients, each with one batch outstanding.
    #[arg(long, default_value_t = 64)]
    pub clients: u32,
    /// Requests each client sends at once (one frame per node core it touches).
    #[arg(long, default_value_t = 16)]
    pub batch: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Raft groups.
    #[arg(long, default_value_t = 8)]
    pub groups: u32,
    /// Cores per node.
    #[arg(long, default_value_t = 1)]
    pub cores: u16,
    /// Bytes per value.
    #[arg(long, default_value_t = 16)]
    pub value_bytes: usize,
    /// Percent of requests that are linearizable reads (the rest are writes).
    #[arg(long, default_value_t = 10)]
    pub read_percent: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// WAL durability of the nodes.
    #[arg(long, value_enum, default_value_t = SyncFlag::Always)]
    pub sync: SyncFlag,
    /// WAL segment size of the nodes, in MiB.
    #[arg(long, default_value_t = 64)]
    pub segment_mib: u64,
    /// Entries per group between snapshots (0: never).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_entries: u64,
    /// Keep the data folder and the nodes' logs instead of deleting them.
    #[arg(long)]
    pub keep: bool,
}

/// What a load run measured.
pub struct LoadReport {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Request latency in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Closed-loop load: `clients` clients, each one request at a time, for `seconds`.
pub fn run_load(bases: &[String], args: &DemoArgs) -> Result<LoadReport, String> {
    let (bases, args) = (bases.to_vec(), args.clone());
    crate::node::on_one_executor("cohort-load", move || async move {
        let report = Rc::new(RefCell::new(LoadReport {
            requests: 0,
            errors: 0,
            first_error: None,
            seconds: args.seconds as f64,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }));
        // Connect before the clock starts, and wait until every group has a leader: the
        // figures are of a running cluster, not of its first election.
        let mut clients = Vec::new();
        for i in 0..args.clients {
            let options = ClientOptions::new(bases.clone(), u64::from(i) << 20 | 7);
            let client = Client::connect_retrying(options, Duration::from_secs(30)).await;
            clients.push(client.map_err(|e| e.to_string())?);
        }
        let groups = clients[0].topology().groups;
        let mut seen = vec![false; groups as usize];
        let mut warm_up = Vec::new();
        for i in 0.. {
            if warm_up.len() == seen.len() {
                break;
            }
            let key = Bytes::from(format!("warm-up-{i}"));
            let group = crate::proto::topology::group_of(&key, groups) as usize;
            if !std::mem::replace(&mut seen[group], true) {
                warm_up.push((vec![Op::Get { key }], Consistency::Linearizable));
            }
        }
        for result in clients[0].execute_batch(warm_up).await {
            result.map_err(|e| format!("warm-up: {e}"))?;
        }
        let start = crate::clock::now();
        let end = start + Duration::from_secs(args.seconds);
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let report = Rc::clone(&report);
                let args = args.clone();
                glommio::spawn_local(drive(client, i as u64, args, end, report))
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let mut report = Rc::try_unwrap(report)
            .map_err(|_| "load tasks still running".to_string())?
            .into_inner();
        report.seconds = elapsed;
        Ok(report)
    })?
}

async fn drive(
    mut client: Client,
    seed: u64,
    args: DemoArgs,
    end: std::time::Instant,
    report: Rc<RefCell<LoadReport>>,
) {
    let mut rng = Prng::new(seed ^ 0xD3A0);
    let value = Bytes::from(vec![b'v'; args.value_bytes]);
    while crate::clock::now() < end {
        let requests = (0..args.batch.max(1))
            .map(|_| {
                let key = Bytes::from(format!("key-{}", rng.below(args.keys.max(1))));
                if rng.below(100) < args.read_percent {
                    (vec![Op::Get { key }], Consistency::Linearizable)
                } else {
                    let op = Op::Put {
                        key,
                        value: value.clone(),
                    };
                    (vec![op], Consistency::Linearizable)
                }
            })
            .collect();
        let started = crate::clock::now();
        let results = client.execute_batch(requests).await;
        let micros = started.elapsed().as_micros() as u64;
        let mut report = report.borrow_mut();
        for result in results {
            match result {
                Ok(_) => {
                    report.requests += 1;
                    let _ = report.latency_us.record(micros.max(1));
                }
                Err(error) => {
                    report.errors += 1;
                    report.first_error.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

pub fn run(args: &DemoArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("cohort-demo-{}", std::process::id()));
    println!(
        "cohort demo: 3 nodes on 127.0.0.1, {} core(s) and {} groups each, sync {:?}; data in {}",
        args.cores,
        args.groups,
        args.sync,
        dir.display()
    );
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let fdatasync = super::disk::fdatasync_median_micros(&dir, 200)
        .map_err(|e| format!("cannot measure the disk under {}: {e}", dir.display()))?;
    println!(
        "raw limit: 4 KiB write + fdatasync in that folder takes {fdatasync} µs (median of 200)"
    );
    let exe = std::env::current_exe().map_err(|e| format!("cannot find cohort itself: {e}"))?;
    let mut cluster = LocalCluster::start(
        &exe,
        &dir,
        args.cores,
        args.groups,
        args.sync,
        args.segment_mib,
        args.snapshot_entries,
    )?;
    println!(
        "load: {} clients × batches of {}, {} s, {}% linearizable reads, {} B values, {} keys",
        args.clients, args.batch, args.seconds, args.read_percent, args.value_bytes, args.keys
    );
    let load = run_load(&cluster.bases, args);
    let exited = cluster.exited();
    let stopped = cluster.stop();
    let report = load?;
    if !exited.is_empty() {
        return Err(format!(
            "{}; see the logs in {}",
            exited.join("; "),
            dir.display()
        ));
    }
    stopped?;
    print_report(&report);
    if args.keep {
        println!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

pub fn print_report(report: &LoadReport) {
    let h = &report.latency_us;
    println!(
        "throughput: {:.0} requests/s ({} acknowledged in {:.2} s, {} errors)",
        report.requests as f64 / report.seconds,
        report.requests,
        report.seconds,
        report.errors
    );
    if let Some(error) = &report.first_error {
        println!("first error: {error}");
    }
    println!(
        "latency µs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}
