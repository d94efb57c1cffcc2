//! Helpers for the end-to-end tests: local clusters of `cohort serve` processes, a client on
//! its own executor, the `cohort` command line.

use std::path::PathBuf;
use std::time::Duration;

use cohort::cli::local_cluster::{LocalCluster, NodeFlags};
use cohort::client::{Client, ClientOptions};

pub const GROUPS: u32 = 6;

/// A cluster with 1 MiB WAL segments, so the tests rotate, build segments off the loop and
/// recover across several segments; `snapshot_entries` per group between snapshots.
pub fn start_with(name: &str, snapshot_entries: u64) -> LocalCluster {
    start_with_flags(
        name,
        NodeFlags {
            snapshot_entries,
            ..NodeFlags::default()
        },
    )
}

/// A cluster with 1 MiB WAL segments, `GROUPS` groups, and `flags` otherwise.
pub fn start_with_flags(name: &str, flags: NodeFlags) -> LocalCluster {
    let dir = std::env::temp_dir().join(format!("cohort-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_cohort"));
    let flags = NodeFlags {
        groups: GROUPS,
        segment_mib: 1,
        ..flags
    };
    LocalCluster::start(&exe, &dir, &flags).expect("cluster starts")
}

pub fn finish(cluster: LocalCluster) {
    let dir = cluster.dir.clone();
    cluster.stop().expect("every node exits cleanly on SIGTERM");
    let _ = std::fs::remove_dir_all(dir);
}

/// Run `work` with a client of `bases` on a glommio executor.
pub fn with_client<T: Send + 'static>(
    bases: &[String],
    seed: u64,
    work: impl AsyncFnOnce(&mut Client) -> T + Send + 'static,
) -> T {
    let bases = bases.to_vec();
    cohort::node::on_one_executor("test-client", move || async move {
        let mut options = ClientOptions::new(bases, seed);
        options.request_timeout = Duration::from_secs(20);
        options.attempt_timeout = Duration::from_millis(500);
        let mut client = Client::connect_retrying(options, Duration::from_secs(20))
            .await
            .expect("the cluster answers");
        work(&mut client).await
    })
    .expect("client executor")
}

#[allow(clippy::disallowed_methods)]
pub fn wait_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

pub fn cohort_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(args)
        .output()
        .expect("cohort runs")
}
