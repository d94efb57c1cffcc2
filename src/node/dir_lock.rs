//! One process per data dir: a node holds an exclusive lock on `lock` in its data dir for as
//! long as it runs. A second process started on the same dir by mistake would open the same
//! logs (and could zero the tail of the one in use) before failing on its ports; it is refused
//! first, with a message that says why.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const FILE_NAME: &str = "lock";

/// How long a start waits for a process that has ended, or is ending, to let go of the lock:
/// a node killed a moment ago holds it until the kernel has torn its io_uring down (tens of
/// milliseconds; found by an operator: a restart at once after `kill -9` was refused as a
/// second process on the dir).
const ENDED_HOLDER_WAIT: Duration = Duration::from_secs(10);

/// The lock on a data dir, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Locks `dir` (which must exist) for this process, or says which dir is in use. Waits up
/// to [`ENDED_HOLDER_WAIT`] while the process the lock names has ended or is ending, unless
/// `stop` is set meanwhile (None: a signal stopped the node before it started).
pub fn lock(dir: &Path, stop: &AtomicBool) -> Result<Option<DirLock>, String> {
    let path = dir.join(FILE_NAME);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| super::identity::cannot("open", &path, &e))?;
    let started = crate::clock::now();
    loop {
        match crate::sys::try_lock_exclusive(&file) {
            Ok(true) => {
                // Who holds it, for the next start to tell a process that ended from one
                // that runs (only a hint: the lock is what counts).
                let _ = file
                    .set_len(0)
                    .and_then(|()| writeln!(file, "{}", std::process::id()));
                return Ok(Some(DirLock { _file: file }));
            }
            Ok(false) => {
                let holder = std::fs::read_to_string(&path).ok();
                let holder = holder.and_then(|pid| pid.trim().parse::<u32>().ok());
                let ended = holder.is_some_and(has_ended);
                if !ended || started.elapsed() >= ENDED_HOLDER_WAIT {
                    let who = match (holder, ended) {
                        (Some(pid), true) => format!("process {pid}, which has ended"),
                        (Some(pid), false) => format!("process {pid}"),
                        (None, _) => "another process".to_string(),
                    };
                    return Err(format!(
                        "{} is in use by {who} (it holds a lock on {}): two processes on one \
                         data dir would write the same logs; stop the other one first",
                        dir.display(),
                        path.display()
                    ));
                }
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                #[allow(clippy::disallowed_methods)] // at start, before any executor runs
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(format!("cannot lock {}: {error}", path.display())),
        }
    }
}

/// Whether process `pid` has ended or is ending: gone, a zombie (the kernel may still tear
/// its io_uring down, and its files with it), exiting, or killed and not yet exiting (found
/// by a tester: a restart at once after `kill -9` met the holder still running, its exit
/// under way, and was refused about one time in fifteen).
fn has_ended(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ending_by_stat(&stat) || killed_by_status(&status)
}

/// The kernel's `PF_EXITING`: the process is in `exit`.
const PF_EXITING: u64 = 0x4;

/// Whether `/proc/PID/stat` says the process is a zombie, dead, or exiting.
fn ending_by_stat(stat: &str) -> bool {
    // The state follows the command name, which is in parentheses and may hold spaces; the
    // flags are the seventh field after it.
    let fields: Vec<&str> = (stat.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let flags = fields.get(6).and_then(|flags| flags.parse::<u64>().ok());
    matches!(fields.first(), Some(&("Z" | "X"))) || flags.is_some_and(|f| f & PF_EXITING != 0)
}

/// Whether `/proc/PID/status` says SIGKILL waits for the process (`ShdPnd`, the signals
/// pending for the whole process; signal 9 is bit 8).
fn killed_by_status(status: &str) -> bool {
    let pending = (status.lines())
        .find_map(|line| line.strip_prefix("ShdPnd:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok());
    pending.is_some_and(|mask| mask & (1 << 8) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_dir_is_refused_until_the_lock_is_dropped() {
        let dir = std::env::temp_dir().join(format!("cohort-dir-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let running = AtomicBool::new(false);
        let held = lock(&dir, &running).unwrap();
        let refused = lock(&dir, &running).unwrap_err();
        let me = format!("in use by process {}", std::process::id());
        assert!(refused.contains(&me), "at once: {refused}");
        drop(held);
        assert!(lock(&dir, &running).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Goal (review 298): a node stopped while it waits for a holder that is ending to let
    /// go of the lock stops at once, rather than waiting the holder out (signals are taken
    /// before this wait). Method: the lock held here, its file naming a pid that has ended,
    /// and the stop already set: no lock, and no wait.
    #[test]
    fn a_stop_ends_the_wait_for_an_ending_holder() {
        let dir = std::env::temp_dir().join(format!("cohort-dir-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = lock(&dir, &AtomicBool::new(false)).unwrap();
        // Pids stop below 2^22 on Linux: this one has ended.
        std::fs::write(dir.join(FILE_NAME), format!("{}\n", u32::MAX - 1)).unwrap();
        let started = crate::clock::now();
        assert!(lock(&dir, &AtomicBool::new(true)).unwrap().is_none());
        assert!(started.elapsed() < ENDED_HOLDER_WAIT / 2);
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_that_ended_or_is_ending_is_told_from_one_that_runs() {
        assert!(!has_ended(std::process::id()));
        // Pids stop below 2^22 on Linux.
        assert!(has_ended(u32::MAX - 1));
        // The flags a tester saw of a node killed a moment before (0x40040c: PF_EXITING
        // among them), its state still R; and those of a running one (0x400040).
        let stat = |state: &str, flags: u64| {
            format!("2196 (cohort x) {state} 1 2196 2196 0 -1 {flags} 5 0")
        };
        assert!(ending_by_stat(&stat("R", 0x0040_040c)));
        assert!(!ending_by_stat(&stat("R", 0x0040_0040)));
        assert!(ending_by_stat(&stat("Z", 0x0040_0040)));
        let status = |pending: &str| format!("Name:\tcohort\nSigPnd:\t0\nShdPnd:\t{pending}\n");
        assert!(killed_by_status(&status("0000000000000100")));
        assert!(!killed_by_status(&status("0000000000004000")));
        assert!(!killed_by_status("Name:\tcohort\n"));
    }
}
