//! `cohort demo`: a 3-node cluster on loopback (three child processes, a temporary data
//! folder), a short mixed load, its throughput and latency, and a clean shutdown.

use std::path::Path;
use std::time::Duration;

use clap::Args;

use crate::bench::driver::{self, Load, Run};
use crate::bench::keys::Distribution;
use crate::bench::raw_disk::RawFdatasync;
use crate::bench::report::duration_text;
use crate::proto::client::Consistency;

use super::bench::check_load_shape;
use super::local_cluster::NodeFlags;
use super::scratch_cluster::ScratchCluster;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Concurrent clients; each has its own connections (one per node core) and
    /// exactly-once sessions.
    #[arg(long, default_value_t = 8)]
    pub clients: u32,
    /// Batches each client keeps in flight. A few clients with several batches each fill
    /// their frames and keep connections few: measured, 8 × 4 × 32 made 290 k requests/s at
    /// a p50 of 3.2 ms where 64 × 1 × 16, as many requests in flight, made 180 k at 5.3 ms.
    #[arg(long, default_value_t = 4)]
    pub depth: u32,
    /// Requests per batch, sent together (one frame per node core they go to).
    #[arg(long, default_value_t = 32)]
    pub batch: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 16)]
    pub value_bytes: usize,
    /// Percent of requests that are linearizable reads (the rest are writes).
    #[arg(long, default_value_t = 10)]
    pub read_percent: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    #[command(flatten)]
    pub nodes: NodeFlags,
    /// Keep the data folder and the nodes' logs instead of deleting them.
    #[arg(long)]
    pub keep: bool,
}

impl DemoArgs {
    fn load(&self) -> Result<Load, String> {
        check_load_shape(
            [self.clients, self.depth, self.batch],
            self.keys,
            self.read_percent,
            self.value_bytes,
        )?;
        if !(1..=86_400).contains(&self.seconds) {
            return Err(format!(
                "--seconds is {}, must be between 1 and 86400",
                self.seconds
            ));
        }
        self.nodes.check()?;
        Ok(Load {
            clients: self.clients,
            depth: self.depth,
            batch: self.batch,
            rate_per_s: None,
            keys: self.keys,
            distribution: Distribution::Uniform,
            zipf_theta: 0.99,
            value_bytes: self.value_bytes,
            read_percent: self.read_percent,
            read: Consistency::Linearizable,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(self.seconds),
            live: false,
            seed: 1,
            threads: driver::threads_beside(
                u32::from(self.nodes.cores) * super::local_cluster::NODES as u32,
                self.clients,
            ),
        })
    }
}

pub fn run(args: &DemoArgs) -> Result<(), String> {
    let load = args.load()?;
    super::bench::raise_open_files_limit();
    driver::stop_on_signals()?;
    let announce = |dir: &Path, fdatasync: &RawFdatasync| {
        outln!(
            "cohort demo: 3 nodes on 127.0.0.1, {} core(s) and {} groups each, sync {:?}; data \
             in {}",
            args.nodes.cores,
            args.nodes.groups,
            args.nodes.sync,
            dir.display()
        );
        outln!("raw limit: {}", fdatasync.words());
    };
    let (scratch, _) = ScratchCluster::start("demo", &args.nodes, args.keep, announce)?;
    let dir = scratch.dir().to_path_buf();
    outln!(
        "load: {} clients × {} batches of {} in flight on {} generator thread(s), {} s, {}% \
         linearizable reads, {} B values, {} keys",
        args.clients,
        args.depth,
        args.batch,
        load.threads,
        args.seconds,
        args.read_percent,
        args.value_bytes,
        args.keys
    );
    let run = driver::run(
        scratch.cluster.bases.clone(),
        load,
        scratch.cluster.watched(),
    );
    // A node that died explains a failed run better than the client's error does.
    scratch.close()?;
    let run = run?;
    if driver::interrupted() {
        return Err(format!(
            "interrupted: stopped the nodes{}",
            if args.keep {
                ""
            } else {
                " and deleted their folder"
            }
        ));
    }
    print_run(&run);
    if args.keep {
        outln!("kept {}", dir.display());
    }
    run.recorder.check_failures()
}

fn print_run(run: &Run) {
    let recorder = &run.recorder;
    outln!(
        "throughput: {:.0} requests/s ({} acknowledged in {:.2} s; {} requests failed)",
        recorder.requests as f64 / run.seconds,
        recorder.requests,
        run.seconds,
        recorder.error_count()
    );
    if let Some((kind, error)) = recorder.error_examples.iter().next() {
        outln!("first error ({kind}): {error}");
    }
    let h = &recorder.latency_us;
    let at = |q| duration_text(h.value_at_quantile(q));
    if h.is_empty() {
        outln!("latency: none, no request was answered");
    } else {
        outln!(
            "latency of the {} answered requests: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            h.len(),
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            duration_text(h.max())
        );
    }
    out!("{}", crate::bench::cpu::summary_lines(&run.cpu));
    outln!("(`cohort bench` measures more: open loop, percentiles to p99.99, plots, JSON)");
}
