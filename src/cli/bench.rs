//! `cohort bench`: load against a running cluster (`--nodes`) or a local 3-node cluster it
//! starts itself; the summary table, the JSON report, .hgrm files and SVG plots; the
//! generator's ceiling against a null server. `cohort bench sweep` runs a series of these.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::bench::driver::{self, Load, Run};
use crate::bench::keys::Distribution;
use crate::bench::null_server::{NullServer, Quirks, Shape};
use crate::bench::plot;
use crate::bench::raw_disk::RawFdatasync;
use crate::bench::recorder::Percentiles;
use crate::bench::report::{self, Ceiling, Report, duration_text, share_rows};
use crate::kv::limits::{KEY_BYTES_MAX, REPLIES_PER_SESSION_MAX, VALUE_BYTES_MAX};

use super::client_cmd::ReadMode;
use super::local_cluster::NodeFlags;
use super::scratch_cluster::ScratchCluster;

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchCommand {
    #[command(subcommand)]
    pub sweep: Option<SweepCommand>,
    #[command(flatten)]
    pub args: BenchArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SweepCommand {
    /// Run one bench per value of a setting and plot throughput against latency, one point
    /// per run: where latency turns up is the knee. Without --nodes, each point gets a fresh
    /// local cluster.
    Sweep {
        /// The setting to vary.
        #[arg(long, value_enum)]
        vary: Vary,
        /// Its values, in order (e.g. 1,4,16,64,256).
        #[arg(long, value_delimiter = ',', required = true)]
        values: Vec<String>,
        #[command(flatten)]
        args: BenchArgs,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Vary {
    Clients,
    Depth,
    Batch,
    /// The open loop's rate (requests/s).
    Rate,
    /// Raft groups (needs a local cluster).
    Groups,
    /// Cores of each node (needs a local cluster; the generator's default threads follow:
    /// the CPUs the nodes leave free).
    Cores,
    ValueBytes,
    ReadPercent,
    /// Threads of the load generator.
    GeneratorThreads,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Base addresses (HOST:PORT, as given to `serve --listen`) of members of a running
    /// cluster. Without it, a local 3-node cluster is started and stopped afterwards.
    #[arg(long, value_delimiter = ',', conflicts_with = "NodeFlags")]
    pub nodes: Vec<String>,
    /// Clients; each has its own connections and exactly-once sessions.
    #[arg(long, default_value_t = 16)]
    pub clients: u32,
    /// Batches each client keeps in flight (closed loop), or may have in flight (open loop).
    #[arg(long, default_value_t = 4)]
    pub depth: u32,
    /// Requests per batch (sent together, one frame per node core they go to).
    #[arg(long, default_value_t = 16)]
    pub batch: u32,
    /// Open loop: requests per second in all, each one's latency measured from when it was
    /// due (coordinated omission corrected). Without it: a closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// How keys are drawn.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,
    /// Skew of the zipfian distribution (0 < θ < 1; YCSB uses 0.99). Default: 0.99.
    /// Only with --distribution zipfian.
    #[arg(long)]
    pub zipf_theta: Option<f64>,
    /// Bytes per value written.
    #[arg(long, default_value_t = 16)]
    pub value_bytes: usize,
    /// Percent of requests that are reads (the rest are puts).
    #[arg(long, default_value_t = 10)]
    pub read_percent: u64,
    /// How fresh reads must be.
    #[arg(long, value_enum, default_value_t = ReadMode::Linearizable)]
    pub read: ReadMode,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// Seconds of the same load against a null server (answers without replicating) to
    /// measure the generator's own ceiling, in a closed loop even with --rate; 0 skips it.
    #[arg(long, default_value_t = 3.0)]
    pub ceiling_seconds: f64,
    /// Folder for the JSON report, .hgrm files and SVG plots.
    #[arg(long, default_value = "cohort-bench")]
    pub out: PathBuf,
    /// Seeds the keys and the read/write mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No line per second.
    #[arg(long)]
    pub quiet: bool,
    /// Threads of the load generator, each an executor with its share of the clients (at
    /// most one per client); the ceiling's null server gets as many. One thread makes at
    /// most about 0.45 M requests/s in batches of 16, 1.6–1.8 M in batches of 64 (measured
    /// on a 16-CPU machine). Default: the CPUs a local cluster's nodes leave free (with
    /// --nodes, every CPU), at least 1, at most --clients.
    #[arg(long)]
    pub generator_threads: Option<u32>,
    /// The local cluster's nodes (without --nodes).
    #[command(flatten, next_help_heading = "Local cluster (without --nodes)")]
    pub local: NodeFlags,
}

/// The zipfian skew without --zipf-theta: YCSB's.
const ZIPF_THETA_DEFAULT: f64 = 0.99;

/// Outstanding requests per client and group must stay under what a session remembers.
pub(super) const IN_FLIGHT_PER_CLIENT_MAX: u64 = REPLIES_PER_SESSION_MAX as u64 / 4;

impl BenchArgs {
    /// The load these flags describe, or what is wrong with them.
    pub fn load(&self) -> Result<Load, String> {
        check_load_shape(
            [self.clients, self.depth, self.batch],
            self.keys,
            self.read_percent,
            self.value_bytes,
        )?;
        let zipf_theta = match (self.distribution, self.zipf_theta) {
            (Distribution::Uniform, Some(_)) => {
                return Err("--zipf-theta needs --distribution zipfian".to_string());
            }
            (_, Some(theta)) if !(theta > 0.0 && theta < 1.0) => {
                return Err(format!(
                    "--zipf-theta is {theta}, must be between 0 and 1 (exclusive)"
                ));
            }
            (_, theta) => theta.unwrap_or(ZIPF_THETA_DEFAULT),
        };
        let seconds = |flag: &str, value: f64, least: f64| {
            if value.is_finite() && value >= least && value <= 86_400.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(format!(
                    "{flag} is {value}, must be between {least} and 86400"
                ))
            }
        };
        let duration = seconds("--seconds", self.seconds, 1.0)?;
        let warmup = seconds("--warmup-seconds", self.warmup_seconds, 0.0)?;
        // A ceiling of less than a second has too few answers to mean anything.
        if self.ceiling_seconds != 0.0 {
            seconds("--ceiling-seconds", self.ceiling_seconds, 1.0)
                .map_err(|e| format!("{e} (or 0 for none)"))?;
        }
        // Without --lease-reads the local nodes would serve these by ReadIndex, and the run
        // would be titled as what it did not measure.
        if self.nodes.is_empty() && matches!(self.read, ReadMode::Lease) && !self.local.lease_reads
        {
            return Err(
                "--read lease needs --lease-reads on the local cluster (without it its nodes \
                 serve every read by ReadIndex)"
                    .to_string(),
            );
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate >= 1.0) {
                return Err(format!("--rate is {rate}, must be at least 1 request/s"));
            }
            // The open loop spaces each client's requests `clients / rate` apart, in whole
            // nanoseconds: at 0 it would never move on.
            if Duration::from_secs_f64(f64::from(self.clients) / rate).is_zero() {
                return Err(format!(
                    "--rate is {rate}, more than a request per nanosecond for each of the {} \
                     client(s)",
                    self.clients
                ));
            }
        }
        if let Some(bad) = self.nodes.iter().find(|n| !is_host_port(n)) {
            return Err(format!("--nodes: {bad:?} is not HOST:PORT"));
        }
        Ok(Load {
            clients: self.clients,
            depth: self.depth,
            batch: self.batch,
            rate_per_s: self.rate,
            keys: self.keys,
            distribution: self.distribution,
            zipf_theta,
            value_bytes: self.value_bytes,
            read_percent: self.read_percent,
            read: self.read.into(),
            warmup,
            duration,
            live: !self.quiet,
            seed: self.seed,
            threads: self.generator_threads()?,
        })
    }

    fn generator_threads(&self) -> Result<u32, String> {
        match self.generator_threads {
            Some(0) => Err("--generator-threads must be at least 1".to_string()),
            Some(threads) if threads > self.clients => Err(format!(
                "--generator-threads is {threads}, more than the {} client(s) it spreads",
                self.clients
            )),
            Some(threads) => Ok(threads),
            None if self.nodes.is_empty() => Ok(driver::threads_beside(
                u32::from(self.local.cores) * super::local_cluster::NODES as u32,
                self.clients,
            )),
            None => Ok(driver::threads_beside(0, self.clients)),
        }
    }

    fn with(&self, vary: Vary, value: &str) -> Result<BenchArgs, String> {
        let mut args = self.clone();
        let bad =
            |e: &dyn std::fmt::Display| format!("--values: {value:?} for {}: {e}", vary_name(vary));
        match vary {
            Vary::Clients => args.clients = value.parse().map_err(|e| bad(&e))?,
            Vary::Depth => args.depth = value.parse().map_err(|e| bad(&e))?,
            Vary::Batch => args.batch = value.parse().map_err(|e| bad(&e))?,
            Vary::Rate => args.rate = Some(value.parse().map_err(|e| bad(&e))?),
            Vary::Groups => args.local.groups = value.parse().map_err(|e| bad(&e))?,
            Vary::Cores => args.local.cores = value.parse().map_err(|e| bad(&e))?,
            Vary::ValueBytes => args.value_bytes = value.parse().map_err(|e| bad(&e))?,
            Vary::ReadPercent => args.read_percent = value.parse().map_err(|e| bad(&e))?,
            Vary::GeneratorThreads => {
                args.generator_threads = Some(value.parse().map_err(|e| bad(&e))?)
            }
        }
        if matches!(vary, Vary::Groups | Vary::Cores) && !args.nodes.is_empty() {
            return Err(format!(
                "--vary {} needs a local cluster (no --nodes)",
                vary_name(vary)
            ));
        }
        if vary == Vary::Groups && args.local.groups == 0 {
            return Err("--values: a cluster needs at least 1 group".into());
        }
        Ok(args)
    }
}

impl Vary {
    /// The id of the flag that sets this setting (clap's: the field's name).
    pub fn arg_id(self) -> &'static str {
        match self {
            Vary::Clients => "clients",
            Vary::Depth => "depth",
            Vary::Batch => "batch",
            Vary::Rate => "rate",
            Vary::Groups => "groups",
            Vary::Cores => "cores",
            Vary::ValueBytes => "value_bytes",
            Vary::ReadPercent => "read_percent",
            Vary::GeneratorThreads => "generator_threads",
        }
    }
}

/// A setting's name as its flag is spelled: value-bytes, generator-threads.
fn vary_name(vary: Vary) -> String {
    vary.to_possible_value().map_or_else(
        || format!("{vary:?}").to_lowercase(),
        |name| name.get_name().to_string(),
    )
}

/// Checks the shape of a load, as `cohort bench` and `cohort demo` share it: clients, batches
/// in flight per client and requests per batch (`[clients, depth, batch]`), keys, the share
/// of reads and the value size.
pub fn check_load_shape(
    [clients, depth, batch]: [u32; 3],
    keys: u64,
    read_percent: u64,
    value_bytes: usize,
) -> Result<(), String> {
    let positive = [
        ("--clients", u64::from(clients)),
        ("--depth", u64::from(depth)),
        ("--batch", u64::from(batch)),
        ("--keys", keys),
    ];
    if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{flag} must be at least 1"));
    }
    let in_flight = u64::from(depth) * u64::from(batch);
    if in_flight > IN_FLIGHT_PER_CLIENT_MAX {
        return Err(format!(
            "--depth × --batch is {in_flight}, more than {IN_FLIGHT_PER_CLIENT_MAX} requests in \
             flight per client (a node remembers {REPLIES_PER_SESSION_MAX} answers per \
             session); use more --clients instead"
        ));
    }
    if read_percent > 100 {
        return Err(format!("--read-percent is {read_percent}, at most 100"));
    }
    if value_bytes > VALUE_BYTES_MAX {
        return Err(format!(
            "--value-bytes is {value_bytes}, more than the {VALUE_BYTES_MAX} bytes a value may \
             have"
        ));
    }
    if crate::bench::keys::key_name(keys - 1).len() > KEY_BYTES_MAX {
        return Err("--keys is too large for the key format".into());
    }
    Ok(())
}

fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Where the load goes: a running cluster, or a local one started for the run.
struct Target {
    seeds: Vec<String>,
    local: Option<ScratchCluster>,
    description: serde_json::Value,
    raw_fdatasync: Option<RawFdatasync>,
}

impl Target {
    fn open(args: &BenchArgs) -> Result<Target, String> {
        // Ctrl-C ends the run early, and the nodes a local run started are stopped and their
        // folder deleted; a run cut short prints no figures, a ceiling cut short is left out.
        driver::stop_on_signals()?;
        if !args.nodes.is_empty() {
            return Ok(Target {
                seeds: args.nodes.clone(),
                local: None,
                description: json!({ "nodes": args.nodes }),
                raw_fdatasync: None,
            });
        }
        // One folder per cluster this process starts (a sweep starts one per point).
        let flags = &args.local;
        let (cluster, fdatasync) = ScratchCluster::start("bench", flags, false, |_, _| {})?;
        let description = json!({
            "local": { "nodes": super::local_cluster::NODES, "cores": flags.cores,
                       "groups": flags.groups, "sync": format!("{:?}", flags.sync).to_lowercase(),
                       "segment_mib": flags.segment_mib, "snapshot_entries": flags.snapshot_entries,
                       "snapshot_log_mib": flags.snapshot_log_mib,
                       "snapshot_catch_up_entries": flags.snapshot_catch_up_entries,
                       "wal_soft_limit_mib": flags.wal_soft_limit_mib,
                       "lease_reads": flags.lease_reads,
                       "broadcast_commit": flags.broadcast_commit },
        });
        Ok(Target {
            seeds: cluster.cluster.bases.clone(),
            local: Some(cluster),
            description,
            raw_fdatasync: Some(fdatasync),
        })
    }

    fn words(&self, args: &BenchArgs) -> String {
        match &self.local {
            Some(_) => format!(
                "a local cluster of 3 nodes × {} core(s), {} groups, sync {:?}{}",
                args.local.cores,
                args.local.groups,
                args.local.sync,
                // Its linearizable reads are served from the leaders' leases (found by a user:
                // only the JSON said so).
                match args.local.lease_reads {
                    true => ", lease reads",
                    false => "",
                }
            ),
            None => format!("the cluster of {}", self.seeds.join(",")),
        }
    }

    /// Stop a local cluster; an error if a node had died or did not stop cleanly.
    fn close(self) -> Result<(), String> {
        self.local.map_or(Ok(()), ScratchCluster::close)
    }
}

/// A run and its ceiling.
struct Measured {
    report: Report,
    run: Run,
    ceiling: Option<Run>,
}

fn describe(load: &Load) -> String {
    let shape = format!(
        "{} clients × {} batches of {} in flight, on {} generator thread(s)",
        load.clients, load.depth, load.batch, load.threads
    );
    let reads = format!(
        "{}% {:?} reads, {} B values, {} {:?} keys",
        load.read_percent, load.read, load.value_bytes, load.keys, load.distribution
    );
    match load.rate_per_s {
        None => format!("closed loop, {shape}; {reads}"),
        Some(rate) => format!(
            "open loop at {rate:.0} requests/s ({} clients, up to {} batches of {} in flight \
             each, on {} generator thread(s)); {reads}",
            load.clients, load.depth, load.batch, load.threads
        ),
    }
    .replace("Linearizable", "linearizable")
    .replace("Lease", "lease")
    .replace("Stale", "stale")
    .replace("Uniform", "uniform")
    .replace("Zipfian", "zipfian")
}

fn measure(args: &BenchArgs, load: &Load, target: Target) -> Result<Measured, String> {
    let title = format!(
        "cohort bench: {} for {:.1} s after {:.1} s of warm-up, against {}",
        describe(load),
        load.duration.as_secs_f64(),
        load.warmup.as_secs_f64(),
        target.words(args)
    );
    if load.live {
        outln!("{title}");
    }
    let description = target.description.clone();
    let raw_fdatasync = target.raw_fdatasync;
    let watched = target
        .local
        .as_ref()
        .map_or_else(Vec::new, |local| local.cluster.watched());
    let run = driver::run(target.seeds.clone(), load.clone(), watched);
    let local = target.local.is_some();
    // A node that died explains a failed run better than the client's error does.
    target.close()?;
    let run = run?;
    if driver::interrupted() {
        return Err(if local {
            "interrupted: stopped the nodes this run started".to_string()
        } else {
            "interrupted: the run was cut short, and its figures are left out".to_string()
        });
    }
    // The run stands without its ceiling: a ceiling cut short or failing is left out, said so.
    let (ceiling, ceiling_left_out) = match measure_ceiling(args, load, &run) {
        Ok(ceiling) => (ceiling, None),
        Err(why) => (None, Some(why)),
    };
    let recorder = &run.recorder;
    // What a node of a cluster reached by --nodes says of itself (found by a user: a run
    // against nodes of --sync never read as one against durable nodes; one against nodes of
    // --lease-reads as linearizable reads by ReadIndex). One node's word: the others are not
    // asked, and the title says whose it is.
    let mut description = description;
    let mut said = Vec::new();
    if let (false, Some(syncs)) = (local, run.syncs) {
        let sync = if syncs { "always" } else { "never" };
        description["sync"] = json!(sync);
        said.push(format!("sync {sync}"));
    }
    if !local && run.lease_reads {
        description["lease_reads"] = json!(true);
        said.push("lease reads".to_string());
    }
    let title = match said.is_empty() {
        true => title,
        false => {
            description["said_by"] = json!(run.said_by);
            format!("{title} (node {} says: {})", run.said_by, said.join(", "))
        }
    };
    let report = Report {
        cohort_version: env!("CARGO_PKG_VERSION"),
        title,
        cluster: description,
        load: json!({
            "clients": load.clients, "depth": load.depth, "batch": load.batch,
            "rate_per_s": load.rate_per_s, "keys": load.keys, "distribution": load.distribution,
            "zipf_theta": matches!(load.distribution, Distribution::Zipfian)
                .then_some(load.zipf_theta),
            "value_bytes": load.value_bytes,
            "read_percent": load.read_percent,
            "read": format!("{:?}", load.read).to_lowercase(),
            "warmup_s": load.warmup.as_secs_f64(), "duration_s": load.duration.as_secs_f64(),
            "seed": load.seed, "generator_threads": load.threads,
        }),
        seconds: run.seconds,
        requests: recorder.requests,
        requests_per_s: recorder.requests as f64 / run.seconds,
        offered_requests_per_s: load.rate_per_s,
        unsent: recorder.unsent,
        errors: recorder.errors.clone(),
        error_examples: recorder.error_examples.clone(),
        latency: Percentiles::of(&recorder.latency_us),
        service_time: Percentiles::of(&recorder.service_us),
        latency_max_us: crate::bench::recorder::LATENCY_MAX_US,
        timeline: recorder.timeline.clone(),
        per_node: share_rows(&recorder.per_node, recorder.requests),
        per_group: share_rows(&recorder.per_group, recorder.requests),
        ceiling: ceiling.as_ref().map(|c| Ceiling {
            seconds: c.seconds,
            requests_per_s: c.recorder.requests as f64 / c.seconds,
            latency: Percentiles::of(&c.recorder.latency_us),
        }),
        ceiling_left_out,
        idle_cpus: crate::bench::idle::describe(),
        raw_fdatasync,
        cpu: run.cpu.clone(),
    };
    Ok(Measured {
        report,
        run,
        ceiling,
    })
}

/// The generator's own ceiling for `load` (the run `run` measured): the same load against a
/// null server shaped as the cluster. `Ok(None)`: none asked for; an error: why it is left out.
fn measure_ceiling(args: &BenchArgs, load: &Load, run: &Run) -> Result<Option<Run>, String> {
    if args.ceiling_seconds == 0.0 {
        return Ok(None);
    }
    if driver::interrupted() {
        return Err("interrupted before it ran".to_string());
    }
    // Shaped as the cluster: as many connections, requests spread over them alike.
    let shape = Shape {
        nodes: u16::try_from(run.members.len()).unwrap_or(u16::MAX),
        cores: run.cores,
        groups: run.groups,
    };
    let cores = u64::from(shape.cores).min(u64::from(shape.groups));
    let places = u64::from(shape.nodes) * cores;
    // Each of its threads listens on every node core, as does the socket each was cloned
    // from.
    let listeners = (u64::from(load.threads) + 1) * u64::from(shape.nodes) * u64::from(shape.cores);
    driver::connections_fit(load, places, listeners)?;
    let null = NullServer::start_shaped(shape, Quirks::default(), load.threads)?;
    // As fast as the generator goes with these clients: a closed loop, even where the run
    // offered a rate (the null server would only answer that rate back).
    let mut ceiling_load = load.clone();
    ceiling_load.rate_per_s = None;
    ceiling_load.duration = Duration::from_secs_f64(args.ceiling_seconds);
    ceiling_load.warmup = load.warmup.min(Duration::from_millis(500));
    ceiling_load.live = false;
    let ceiling = driver::run(vec![null.base.clone()], ceiling_load, Vec::new())?;
    // Cut short, its seconds are too few for its figures to mean anything.
    if driver::interrupted() {
        return Err("interrupted: the run against the null server was cut short".to_string());
    }
    ceiling
        .recorder
        .check_failures()
        .map_err(|e| format!("its requests to the null server failed: {e}"))?;
    Ok(Some(ceiling))
}

/// Write the JSON report, the .hgrm files and the plots of `measured` into `out`.
fn write_files(out: &Path, measured: &Measured) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    let mut write = |name: &str, text: String| -> Result<(), String> {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    let recorder = &measured.run.recorder;
    let json = serde_json::to_string_pretty(&measured.report).map_err(|e| e.to_string())?;
    write("report.json", json)?;
    write("latency.hgrm", report::hgrm(&recorder.latency_us))?;
    let open_loop = measured.report.service_time != measured.report.latency;
    // A file this run has no figures for goes, so that no earlier run's is read as this one's.
    let mut write_or_remove = |name: &str, text: Option<String>| match text {
        Some(text) => write(name, text),
        None => remove_if_there(&out.join(name)),
    };
    write_or_remove(
        "service-time.hgrm",
        open_loop.then(|| report::hgrm(&recorder.service_us)),
    )?;
    write_or_remove(
        "ceiling.hgrm",
        (measured.ceiling.as_ref()).map(|c| report::hgrm(&c.recorder.latency_us)),
    )?;
    let mut lines = vec![("requests (from intended start)", &recorder.latency_us)];
    if open_loop {
        lines.push(("service time (from send)", &recorder.service_us));
    }
    if let Some(ceiling) = &measured.ceiling {
        lines.push((
            "null server (generator ceiling)",
            &ceiling.recorder.latency_us,
        ));
    }
    let latency_svg = out.join("latency.svg");
    plot::latency_by_percentile(&latency_svg, "latency by percentile", &lines)?;
    let timeline_svg = out.join("timeline.svg");
    let timeline = &recorder.timeline;
    plot::timeline(&timeline_svg, "throughput and p99, per second", timeline)?;
    written.extend([latency_svg, timeline_svg]);
    Ok(written)
}

/// `cohort bench`.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let load = args.load()?;
    raise_open_files_limit();
    if args.nodes.is_empty() {
        args.local.check()?;
    }
    // Before anything starts, not after the run: an --out that cannot be a folder fails now.
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let target = Target::open(args)?;
    let measured = measure(args, &load, target)?;
    out!("{}", report::summary(&measured.report));
    let written = write_files(&args.out, &measured)?;
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    outln!("files       {}", names.join(", "));
    measured.run.recorder.check_failures()?;
    if driver::interrupted() {
        return Err(format!(
            "interrupted while the generator's ceiling was measured against the null server: \
             the run's report is written without it, in {}",
            args.out.display()
        ));
    }
    Ok(())
}

/// `cohort bench sweep`.
/// `flag_given`: the varied setting's own flag was given too (it would be overridden).
pub fn sweep(
    vary: Vary,
    values: &[String],
    args: &BenchArgs,
    flag_given: bool,
) -> Result<(), String> {
    raise_open_files_limit();
    if flag_given {
        return Err(format!(
            "--vary {name} sets --{name} at each point (from --values): leave out --{name}",
            name = vary_name(vary)
        ));
    }
    if let Some((at, value)) = (values.iter().enumerate()).find(|(at, v)| values[..*at].contains(v))
    {
        return Err(format!(
            "--values: {value:?} is given twice (the second time as value {})",
            at + 1
        ));
    }
    let points: Vec<BenchArgs> = values
        .iter()
        .map(|value| args.with(vary, value))
        .collect::<Result<_, _>>()?;
    // Every point's flags, before the first runs: a bad one found at its turn would leave
    // the sweep short of the points after it.
    for point in &points {
        point.load()?;
        if point.nodes.is_empty() {
            point.local.check()?;
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let vary_name = vary_name(vary);
    let mut sweep = Sweep {
        vary_name: vary_name.clone(),
        points: Vec::new(),
    };
    // No summary of an earlier sweep is left to be read as this one's.
    for name in SWEEP_FILES {
        remove_if_there(&args.out.join(name))?;
    }
    // Points whose requests failed, or that could not be measured: the sweep goes on (the
    // curve shows where), then fails.
    let mut failed = Vec::new();
    let mut written = None;
    let mut ran = 0;
    for (value, point) in values.iter().zip(&points) {
        let mut load = point.load()?;
        load.live = false;
        outln!("-- {vary_name} = {value}");
        ran += 1;
        // Nor the files of an earlier run of this point (only those a run writes).
        let dir = args.out.join(format!("{vary_name}-{value}"));
        for name in RUN_FILES {
            remove_if_there(&dir.join(name))?;
        }
        let measured = match Target::open(point).and_then(|target| measure(point, &load, target)) {
            Ok(measured) => measured,
            Err(error) => {
                outln!("failed: {error}");
                // A point cut short by Ctrl-C did not fail: it is among those not measured.
                if driver::interrupted() {
                    ran -= 1;
                    break;
                }
                failed.push(format!("{vary_name} = {value}: {error}"));
                continue;
            }
        };
        out!("{}", report::summary(&measured.report));
        write_files(&dir, &measured)?;
        let checked = measured.run.recorder.check_failures();
        if let Err(error) = &checked {
            failed.push(format!("{vary_name} = {value}: {error}"));
        }
        (sweep.points).push((value.clone(), measured.report, checked.is_err()));
        // After every point: a sweep that ends early keeps the summary of what it measured.
        written = Some(sweep.write(&args.out)?);
        if driver::interrupted() {
            break;
        }
    }
    let skipped = values.len() - ran;
    sweep.print_table();
    if let Some((json_path, svg_path)) = written {
        outln!(
            "files       {}, {}",
            json_path.display(),
            svg_path.display()
        );
    }
    let failures = failed.len();
    let mut why = failed;
    if driver::interrupted() {
        why.push(match skipped {
            // Ctrl-C during the last point's ceiling: its figures stand, without it.
            0 => "interrupted while the last point's ceiling was measured".to_string(),
            skipped => format!(
                "interrupted, {skipped} point(s) of {} not measured",
                values.len()
            ),
        });
    }
    match (failures, why.len()) {
        (_, 0) => Ok(()),
        (0, _) => Err(why.join("; ")),
        (failures, _) => Err(format!(
            "{failures} of {} points failed: {}",
            values.len(),
            why.join("; ")
        )),
    }
}

/// The files a run writes into its folder (see [`write_files`]).
const RUN_FILES: [&str; 6] = [
    "report.json",
    "latency.hgrm",
    "service-time.hgrm",
    "ceiling.hgrm",
    "latency.svg",
    "timeline.svg",
];

/// The summary files of a sweep, in its `--out`.
const SWEEP_FILES: [&str; 2] = ["sweep.json", "sweep.svg"];

/// Removes `path` if it is there.
fn remove_if_there(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The points a sweep has measured so far: each value with its run's report, and whether
/// too many of its requests failed for its latency to stand (`check_failures`).
struct Sweep {
    vary_name: String,
    points: Vec<(String, Report, bool)>,
}

impl Sweep {
    fn print_table(&self) {
        let vary_name = &self.vary_name;
        outln!("\nsweep of {vary_name}");
        outln!(
            "{:>17} {:>14} {:>10} {:>10} {:>10} {:>8} {:>8} {:>16}",
            vary_name,
            "requests/s",
            "p50",
            "p99",
            "p99.9",
            "errors",
            "unsent",
            "ceiling req/s"
        );
        for (value, report, _) in &self.points {
            let ceiling = (report.ceiling.as_ref())
                .map_or("-".to_string(), |c| format!("{:.0}", c.requests_per_s));
            outln!(
                "{value:>17} {:>14.0} {:>10} {:>10} {:>10} {:>8} {:>8} {ceiling:>16}",
                report.requests_per_s,
                duration_text(report.latency.p50_us),
                duration_text(report.latency.p99_us),
                duration_text(report.latency.p999_us),
                report.errors.values().sum::<u64>(),
                report.unsent,
            );
        }
    }

    /// Writes sweep.json and sweep.svg into `out`; returns their paths.
    fn write(&self, out: &Path) -> Result<(PathBuf, PathBuf), String> {
        let vary_name = &self.vary_name;
        let json_path = out.join(SWEEP_FILES[0]);
        let reports: Vec<serde_json::Value> = (self.points.iter())
            .map(|(value, report, failed)| {
                json!({ "value": value, "failed": failed, "report": report })
            })
            .collect();
        let json = json!({ "vary": vary_name, "points": reports });
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        // Whole or not at all: a sweep killed while it writes leaves the last one.
        let partial = out.join("sweep.json.tmp");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &json_path))
            .map_err(|e| format!("{}: {e}", json_path.display()))?;
        let svg_path = out.join(SWEEP_FILES[1]);
        let points: Vec<(String, f64, u64, u64)> = (self.points.iter())
            .map(|(value, r, failed)| {
                let latency = &r.latency;
                // Its latency is of the few answered: said on the picture too (found in
                // review: it was drawn as a good point).
                let failed = if *failed { " (failed)" } else { "" };
                let name = format!("{vary_name}={value}{failed}");
                (name, r.requests_per_s, latency.p50_us, latency.p99_us)
            })
            .collect();
        plot::sweep(
            &svg_path,
            &format!("throughput vs latency, varying {vary_name}"),
            &points,
        )?;
        Ok((json_path, svg_path))
    }
}

/// Raises this process's soft limit of open files to the hard one, as a node does: each
/// client holds a connection to each node core it sends to, and the ceiling's null server as
/// many again, beyond a soft limit of 1,024 from a few hundred clients. One that cannot be
/// raised stays, and a connection past it fails with "Too many open files".
pub(super) fn raise_open_files_limit() {
    if let Err(error) = crate::sys::raise_open_files_limit() {
        super::say_err(&format!(
            "cohort: the limit of open files stays as it is ({error})"
        ));
    }
}
