//! Running the `cohort` binary from a test, bounded in time: a command that runs on (a
//! refusal that regressed, so the node serves) fails its test rather than hanging the run.

use std::io::Read;
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a `cohort` command of the tests may run: each ends in seconds.
pub const COMMAND_PATIENCE: Duration = Duration::from_secs(120);

/// Runs `cohort` with `args` to its end, its output captured (stdin closed, as
/// `Command::output` has it); killed, and the test failed, once it runs past
/// [`COMMAND_PATIENCE`].
pub fn cohort_bounded(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cohort"));
    command.args(args);
    bounded(command, args)
}

/// As [`cohort_bounded`], `stdin` written to its standard input.
#[allow(dead_code)] // only some test binaries feed one
pub fn cohort_bounded_fed(args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cohort"));
    command.args(args);
    run_bounded(command, args, Some(stdin.to_vec()))
}

/// As [`cohort_bounded`], with a limit of `open_files` open files: the soft one only
/// (`ulimit -Sn`: cohort may raise it), or, where `hard`, both (`ulimit -n`).
#[allow(dead_code)] // only some test binaries run one under a limit
pub fn cohort_bounded_with_open_files(open_files: u64, hard: bool, args: &[&str]) -> Output {
    let which = if hard { "-n" } else { "-Sn" };
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit {which} {open_files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_cohort"))
        .args(args);
    bounded(command, args)
}

/// Runs `command` (given `args`, named in its failure) to its end, as [`cohort_bounded`]
/// does.
pub fn bounded(command: Command, args: &[&str]) -> Output {
    run_bounded(command, args, None)
}

/// [`bounded`], with `stdin` written to the command's standard input where given (closed
/// where not).
#[allow(clippy::disallowed_methods)] // a test's own thread waits, not an executor
fn run_bounded(mut command: Command, args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    let input = if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = command
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A command that stops reading (a refused value) breaks the pipe: its answer.
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut pipe, &bytes);
        });
    }
    // Read on threads of their own: a child that fills a pipe nobody reads would block.
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if waited >= COMMAND_PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            let said = stderr.join().unwrap_or_default();
            panic!(
                "{program} {args:?} still ran after {COMMAND_PATIENCE:?}: {}",
                String::from_utf8_lossy(&said)
            );
        }
        std::thread::sleep(step);
        waited += step;
    };
    Output {
        status,
        stdout: stdout.join().expect("its output"),
        stderr: stderr.join().expect("its errors"),
    }
}

/// A child process a test started and signals itself: killed once it has run for
/// [`COMMAND_PATIENCE`] (a test that reads its output waits no longer than that, whatever
/// it reads) and when dropped (a test that fails midway leaves none running). Its standard
/// error is read from the start, so that a child that writes much there never blocks. The
/// child is reaped only under its lock, which the watchdog takes to kill it: it never
/// signals a pid that another process took since.
#[allow(dead_code)] // only some test binaries start one
pub struct Spawned {
    child: Arc<Mutex<Child>>,
    pid: u32,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

#[allow(dead_code)]
impl Spawned {
    pub fn new(mut child: Child) -> Spawned {
        let stderr = child.stderr.take().map(drain);
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        let watched = Arc::downgrade(&child);
        std::thread::spawn(move || watchdog(&watched));
        Spawned { child, pid, stderr }
    }

    pub fn id(&self) -> u32 {
        self.pid
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its standard output, to read as it runs.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.locked().stdout.take().expect("stdout piped")
    }

    /// Its status, if it ended (then reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.locked().try_wait().expect("wait")
    }

    /// Kills it with SIGKILL, and reaps it.
    pub fn kill_and_reap(&mut self) {
        let mut child = self.locked();
        let _ = child.kill();
        child.wait().expect("reaped");
    }

    /// Waits for its end and its output (what of it the test did not take); killed, and the
    /// test failed, once it runs past [`COMMAND_PATIENCE`].
    #[allow(clippy::disallowed_methods)] // a test's own thread waits, not an executor
    pub fn wait_bounded(mut self) -> Output {
        let stdout = self.locked().stdout.take().map(drain);
        let stderr = self.stderr.take();
        // Not `wait` under the lock: the watchdog must be able to take it.
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let gathered = |pipe: Option<JoinHandle<Vec<u8>>>| {
            pipe.map(|pipe| pipe.join().expect("its output"))
                .unwrap_or_default()
        };
        let (stdout, stderr) = (gathered(stdout), gathered(stderr));
        // Killed by its watchdog (SIGKILL), not ended: the test fails saying so.
        assert!(
            std::os::unix::process::ExitStatusExt::signal(&status) != Some(libc::SIGKILL),
            "still ran after {COMMAND_PATIENCE:?}: {}",
            String::from_utf8_lossy(&stderr)
        );
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

/// Kills the child with SIGKILL once it has run for [`COMMAND_PATIENCE`], unless it was
/// reaped (or its [`Spawned`] dropped) before.
#[allow(clippy::disallowed_methods)] // a test's own thread waits, not an executor
fn watchdog(child: &std::sync::Weak<Mutex<Child>>) {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < COMMAND_PATIENCE {
        if child.strong_count() == 0 {
            return;
        }
        std::thread::sleep(step);
        waited += step;
    }
    if let Some(child) = child.upgrade() {
        let mut child = child.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let mut child = self.locked();
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
