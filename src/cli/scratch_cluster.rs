//! A local cluster started for one run (the demo, `cohort bench` without `--nodes`) in a
//! folder of its own under the system temp dir, deleted when the run ends, however it ends
//! (done, an error, Ctrl-C), unless a node died or hung, at start or later (the folder keeps
//! its logs), or the user asked to keep it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::bench::driver;
use crate::bench::raw_disk::RawFdatasync;

use super::local_cluster::{LocalCluster, NODES, NodeFlags};

/// The cluster's nodes, then its folder: dropped in this order, the nodes are killed before
/// their folder goes.
pub struct ScratchCluster {
    pub cluster: LocalCluster,
    dir: ScratchDir,
}

impl ScratchCluster {
    /// Starts three nodes with `flags` in a fresh folder `cohort-NAME-PID-N`, after measuring
    /// the raw durable write of its disk (the limit the run is set against) and telling
    /// `announce` both.
    pub fn start(
        name: &str,
        flags: &NodeFlags,
        keep: bool,
        announce: impl FnOnce(&Path, &RawFdatasync),
    ) -> Result<(ScratchCluster, RawFdatasync), String> {
        flags.check()?;
        let mut dir = ScratchDir::create(name, keep)?;
        // One WAL per core that holds a group, on each node.
        let wals = NODES as usize * usize::from(flags.cores).min(flags.groups as usize);
        let in_play = flags.sync == super::serve::SyncFlag::Always;
        let fdatasync = RawFdatasync::measure(&dir.path, wals, in_play)
            .map_err(|e| format!("cannot measure the disk under {}: {e}", dir.path.display()))?;
        announce(&dir.path, &fdatasync);
        let exe = std::env::current_exe().map_err(|e| format!("cannot find cohort itself: {e}"))?;
        let cluster = match LocalCluster::start_or_say(&exe, &dir.path, flags) {
            Ok(cluster) => cluster,
            // A node that died or hung at start: its log says why, beyond the lines quoted
            // (found in review: a Ctrl-C meanwhile deleted it).
            Err(failure)
                if failure.node_failed
                    || (!driver::interrupted() && super::local_cluster::any_log(&dir.path)) =>
            {
                dir.keep();
                return Err(format!(
                    "{}\nlogs kept in {}",
                    failure.message,
                    dir.path.display()
                ));
            }
            Err(failure) => return Err(failure.message),
        };
        Ok((ScratchCluster { cluster, dir }, fdatasync))
    }

    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// Stops the nodes (SIGTERM) and deletes the folder, unless it is kept; an error if a
    /// node had died or did not stop cleanly, and the folder is then kept for its logs.
    pub fn close(self) -> Result<(), String> {
        let ScratchCluster {
            mut cluster,
            mut dir,
        } = self;
        // A node that exited cleanly while the run was interrupted was stopped with it (a
        // signal to the whole process group, as a service manager sends): it did as told.
        let interrupted = driver::interrupted();
        let died: Vec<String> = cluster
            .exit_statuses()
            .into_iter()
            .filter(|(_, status)| !(interrupted && status.success()))
            .map(|(id, status)| format!("node {id} exited ({status})"))
            .collect();
        if !died.is_empty() {
            // Now, not after the stop: a second Ctrl-C while the others stop must not
            // delete its logs.
            dir.keep();
        }
        let stopped = cluster.stop();
        if !died.is_empty() {
            return Err(format!(
                "{} during the run; logs kept in {}",
                died.join("; "),
                dir.path.display()
            ));
        }
        stopped.map_err(|e| {
            dir.keep();
            format!("{e}; logs kept in {}", dir.path.display())
        })
    }
}

/// A folder made for one run, deleted when dropped unless `keep`, and deleted by a second
/// Ctrl-C too (see [`driver::stop_on_signals`]).
struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// A folder no one else uses: a leftover of an earlier process with the same pid would
    /// hold nodes' data that names other ports.
    fn create(name: &str, keep: bool) -> Result<ScratchDir, String> {
        static MADE: AtomicU32 = AtomicU32::new(0);
        loop {
            let n = MADE.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("cohort-{name}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    if !keep {
                        driver::delete_on_second_signal(&path);
                    }
                    return Ok(ScratchDir { path, keep });
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(format!("{}: {error}", path.display())),
            }
        }
    }
}

impl ScratchDir {
    /// Keeps the folder (a node died: its logs say why), a second Ctrl-C included.
    fn keep(&mut self) {
        self.keep = true;
        driver::keep_on_second_signal(&self.path);
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
            driver::keep_on_second_signal(&self.path);
        }
    }
}
