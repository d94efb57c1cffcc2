//! The `cohort` command line: flags, and what each subcommand runs.

/// `println!` that never panics: a reader that went away (`cohort demo | head -3`) or a full
/// disk loses the line, not the run (its cleanup, its files and its exit status go on).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics (see `outln!`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(&format!($($arg)*))
    };
}

pub mod bench;
pub mod check;
pub mod client_cmd;
pub mod demo;
mod join;
pub mod local_cluster;
mod scratch_cluster;
pub mod serve;
pub mod sim;

/// Writes `text` to standard output; an error loses it (see `outln!`).
pub(crate) fn write_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Writes `line` and a newline to standard error, never panicking as `eprintln!` does when
/// it cannot be written. On a full disk (a log beside a node's data) room often comes back a
/// moment later, as a segment that could not be made is removed: the line is tried again
/// for up to 0.2 s, then lost.
pub fn say_err(line: &str) {
    use std::io::Write;
    let line = format!("{line}\n");
    for _ in 0..20 {
        match std::io::stderr().write_all(line.as_bytes()) {
            Err(error) if error.kind() == std::io::ErrorKind::StorageFull => {
                #[allow(clippy::disallowed_methods)] // a command's last words: nothing to block
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => break,
        }
    }
}
