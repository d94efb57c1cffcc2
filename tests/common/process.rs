//! Running the `cohort` binary from a test, bounded in time: a command that runs on (a
//! refusal that regressed, so the node serves) fails its test rather than hanging the run.

use std::io::Read;
use std::process::{Command, Output, Stdio};
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
#[allow(clippy::disallowed_methods)] // a test's own thread waits, not an executor
pub fn bounded(mut command: Command, args: &[&str]) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
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

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
