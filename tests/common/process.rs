//! Running the `cohort` binary from a test, bounded in time: a command that runs on (a
//! refusal that regressed, so the node serves) fails its test rather than hanging the run.

use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, Output, Stdio};
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

/// As [`cohort_bounded`], with a soft limit of `open_files` open files (`ulimit -Sn`).
#[allow(dead_code)] // only some test binaries run one under a limit
pub fn cohort_bounded_with_open_files(open_files: u64, args: &[&str]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -Sn {open_files} && exec \"$0\" \"$@\""))
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

/// A child process a test started and signals itself: killed and reaped when dropped, so a
/// test that fails midway leaves none running; its end awaited within [`COMMAND_PATIENCE`].
#[allow(dead_code)] // only some test binaries start one
pub struct Spawned(Child);

#[allow(dead_code)]
impl Spawned {
    pub fn new(child: Child) -> Spawned {
        Spawned(child)
    }

    /// Waits for its end and its output (what of it the test did not take); killed, and the
    /// test failed, once it runs past [`COMMAND_PATIENCE`].
    #[allow(clippy::disallowed_methods)] // a test's own thread waits, not an executor
    pub fn wait_bounded(mut self) -> Output {
        let stdout = self.0.stdout.take().map(drain);
        let stderr = self.0.stderr.take().map(drain);
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                break status;
            }
            // Dropped on the way out: killed and reaped.
            assert!(
                waited < COMMAND_PATIENCE,
                "still ran after {COMMAND_PATIENCE:?}"
            );
            std::thread::sleep(step);
            waited += step;
        };
        let gathered = |pipe: Option<JoinHandle<Vec<u8>>>| {
            pipe.map(|pipe| pipe.join().expect("its output"))
                .unwrap_or_default()
        };
        Output {
            status,
            stdout: gathered(stdout),
            stderr: gathered(stderr),
        }
    }
}

impl Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
