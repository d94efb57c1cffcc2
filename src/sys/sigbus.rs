//! A SIGBUS from a read of a file mapping (a WAL segment's page the device could not read, or
//! a file cut while mapped) reported with the file and offset before the process dies of it.
//!
//! A process cannot go on after such a fault: the read has no value to return. Without this
//! report it dies with no word of why. The report is written from the signal handler with
//! async-signal-safe calls only (`open`, `read`, `write`, `close` of /proc/self/maps and
//! stderr, no allocation), and the read runs again: where it fails again (at the same page)
//! the process dies of SIGBUS, under the default action. A fault of no file mapping goes on to
//! the action that was there before (the Rust runtime's stack-overflow check).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

/// The SIGBUS action in place before ours; ours hands every signal on to it.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

thread_local! {
    /// The page of this thread's last fault reported (0: none), and when (monotonic ms): the
    /// same page faulting again within [`RETRY_WINDOW_MS`] is its read run again and failed
    /// again, which the process dies of; later, it is another fault, whose read runs again
    /// too (found in review). Per thread (found in review: one for the process, two threads
    /// faulting on two pages overwrote each other's, and both reported and retried for
    /// ever). A `const` thread-local of a `Cell` is a plain TLS slot: no allocation, no
    /// destructor, safe in a signal handler.
    static LAST_REPORTED: Cell<(usize, u64)> = const { Cell::new((0, 0)) };
}

/// How soon a fault at the page just reported is its read run again (a retry follows its
/// fault at once; a second second later is a new read).
const RETRY_WINDOW_MS: u64 = 1000;

/// Installs the report, once per process (later calls only return the first call's outcome).
pub fn report_mapped_read_faults() -> io::Result<()> {
    static INSTALLED: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    installed
        .get_or_insert_with(|| install().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn install() -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value (no flags, empty mask), and sigaction(2)
    // only reads `action` and writes `previous`, both ours for the call. PREVIOUS is set
    // before our handler is, so the handler always finds it.
    unsafe {
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        let _ = PREVIOUS.set(previous);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as usize;
        // On the thread's own stack, not the small alternate one Rust sets up for its
        // stack-overflow check (the kernel's signal frame and this handler's 1 KiB of
        // buffers may not fit there): a stack overflow raises SIGSEGV, not SIGBUS.
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo; for a fault si_addr is
    // the address whose access failed. sigaction(2) and raise(3) are async-signal-safe, and
    // PREVIOUS holds a sigaction the kernel gave us.
    unsafe {
        // Kept for the code the signal interrupted, which goes on where the read succeeds
        // when tried again.
        let errno = *libc::__errno_location();
        let (code, address) = ((*info).si_code, (*info).si_addr() as usize);
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        let now_ms = monotonic_ms();
        let decided = LAST_REPORTED.with(|last| next_action(code, address, now_ms, last, report));
        let next = match decided {
            Next::Stay => None,
            Next::Default => Some(&default),
            Next::Previous => Some(PREVIOUS.get().unwrap_or(&default)),
        };
        if let Some(next) = next {
            libc::sigaction(libc::SIGBUS, next, std::ptr::null_mut());
        }
        // A signal that does not come back by itself is sent again, under the default action
        // (it waits until we return).
        if !faults_again(code) {
            libc::raise(signal);
        }
        *libc::__errno_location() = errno;
    }
}

/// What the handler leaves in place for the signal's next delivery.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// This handler: a fault reported, whose read runs again (found in review: the default
    /// action was put back at the first report, so where the read succeeded when run again,
    /// a later fault killed the node without a word).
    Stay,
    /// The default action: the process dies of the signal.
    Default,
    /// The action in place before ours (the Rust runtime's stack-overflow check).
    Previous,
}

/// The action for a SIGBUS of `code` at `address` at `now_ms`, `last` the page and time of
/// this thread's last fault reported; `report` writes the report of a fault at an address
/// (true if a file is mapped there).
fn next_action(
    code: libc::c_int,
    address: usize,
    now_ms: u64,
    last: &Cell<(usize, u64)>,
    report: impl FnOnce(usize) -> bool,
) -> Next {
    let page = address & !(PAGE_BYTES - 1);
    // A fault comes back when the access runs again on return; anything else (a signal sent
    // by a process, a memory-failure notice) does not, and is sent again under the default
    // action: Rust's action would return and lose it.
    if !faults_again(code) {
        return Next::Default;
    }
    // Reported, run again, failed again: the process cannot go on. Reported again, as the
    // page may be another file's by now (a segment mapped where another was), or the first
    // report hours old (found in review).
    let (last_page, at_ms) = last.get();
    if last_page == page && now_ms.saturating_sub(at_ms) < RETRY_WINDOW_MS {
        report(address);
        return Next::Default;
    }
    if report(address) {
        last.set((page, now_ms));
        Next::Stay
    } else {
        Next::Previous
    }
}

/// CLOCK_MONOTONIC in milliseconds (clock_gettime is async-signal-safe); 0 if it fails.
fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass; async-signal-safe.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return 0;
    }
    (now.tv_sec as u64).saturating_mul(1000) + now.tv_nsec as u64 / 1_000_000
}

/// The smallest page a fault address is rounded to (a huge page's faults stay in one).
const PAGE_BYTES: usize = 4096;

/// Whether a SIGBUS of this `si_code` comes from an access that faults again when it runs
/// again.
fn faults_again(code: libc::c_int) -> bool {
    matches!(
        code,
        libc::BUS_ADRALN | libc::BUS_ADRERR | libc::BUS_OBJERR | libc::BUS_MCEERR_AR
    )
}

/// Writes the report for a fault at `address` if a file is mapped there, or where that cannot
/// be known (/proc/self/maps cannot be opened: no file descriptor left, say); true if so.
fn report(address: usize) -> bool {
    let mut line = [0u8; LINE_BYTES];
    let (path, offset) = match find_file_mapping(address, &mut line) {
        Ok(Some(found)) => found,
        Ok(None) => return false,
        Err(()) => {
            let mut digits = [0u8; 20];
            for part in [
                b"cohort: a read at address ".as_slice(),
                decimal(address as u64, &mut digits),
                b" failed (SIGBUS), and /proc/self/maps could not be read to name its file (no \
                  file descriptor left?): a WAL page the device could not read, most likely\n",
            ] {
                // SAFETY: write(2) reads `part.len()` bytes of our memory; async-signal-safe.
                unsafe { libc::write(libc::STDERR_FILENO, part.as_ptr().cast(), part.len()) };
            }
            return true;
        }
    };
    let mut digits = [0u8; 20];
    for part in [
        b"cohort: a read of ".as_slice(),
        &line[path],
        b" at offset ",
        decimal(offset, &mut digits),
        b" failed (SIGBUS): the device could not read that page (the kernel log, `dmesg`, says \
          more), or the file was cut while this process mapped it. The process stops here \
          (unless the read succeeds when tried again); what it synced before stays on the \
          device.\n",
    ] {
        // SAFETY: write(2) reads `part.len()` bytes of our memory; async-signal-safe.
        unsafe { libc::write(libc::STDERR_FILENO, part.as_ptr().cast(), part.len()) };
    }
    true
}

/// Longer lines of /proc/self/maps are cut (a path longer than about 450 bytes).
const LINE_BYTES: usize = 512;

/// Reads /proc/self/maps for the file mapped at `address`: the line is left in `line`, with
/// where the path is in it and the file offset of `address`. None where no file is mapped
/// there (or the maps end early); an error where they cannot be opened.
fn find_file_mapping(
    address: usize,
    line: &mut [u8; LINE_BYTES],
) -> Result<Option<(Range<usize>, u64)>, ()> {
    // SAFETY: open/read/close of a path we give as a C string, into a buffer of ours; all
    // async-signal-safe.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(());
    }
    let mut chunk = [0u8; 256];
    let mut line_len = 0;
    let mut found = None;
    'read: loop {
        // SAFETY: as above.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        let n = match usize::try_from(n) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &byte in &chunk[..n] {
            if byte != b'\n' {
                if line_len < line.len() {
                    line[line_len] = byte;
                    line_len += 1;
                }
                continue;
            }
            found = parse_maps_line(&line[..line_len], address);
            if found.is_some() {
                break 'read;
            }
            line_len = 0;
        }
    }
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    Ok(found)
}

/// From one /proc/self/maps line (`start-end perms offset dev inode path`) that maps a file
/// at `address`: where the path is in the line, and the file offset of `address`.
fn parse_maps_line(line: &[u8], address: usize) -> Option<(Range<usize>, u64)> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let (range, _perms, offset, _dev, _inode, path) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let mut ends = range.splitn(2, |&b| b == b'-');
    let (start, end) = (parse_hex(ends.next()?)?, parse_hex(ends.next()?)?);
    let offset = parse_hex(offset)?;
    let address = address as u64;
    let path_start = line.len() - path.trim_ascii_start().len();
    if !(start..end).contains(&address) || line.get(path_start) != Some(&b'/') {
        return None;
    }
    Some((path_start..line.len(), offset + (address - start)))
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        let nibble = (digit as char).to_digit(16)?;
        Some(value << 4 | u64::from(nibble))
    })
}

/// `value` in decimal, in `digits`.
fn decimal(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &digits[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    /// Set in the child process this test runs: what it does to die.
    const CHILD: &str = "COHORT_TEST_SIGBUS";

    #[test]
    fn a_maps_line_gives_the_file_and_offset_of_an_address() {
        let line = b"7f0000001000-7f0000005000 r--s 00002000 fd:01 1234        /data/x y.wal";
        let (path, offset) = parse_maps_line(line, 0x7f00_0000_3010).expect("a file");
        assert_eq!(&line[path], b"/data/x y.wal");
        assert_eq!(offset, 0x2000 + 0x2010);
        assert_eq!(
            parse_maps_line(line, 0x7f00_0000_5000),
            None,
            "past the end"
        );
        let anonymous = b"7f0000001000-7f0000005000 rw-p 00000000 00:00 0 ";
        assert_eq!(parse_maps_line(anonymous, 0x7f00_0000_3000), None);
        let stack = b"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0   [stack]";
        assert_eq!(parse_maps_line(stack, 0x7ffc_0000_0010), None);
        let mut digits = [0; 20];
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(decimal(u64::MAX, &mut digits), b"18446744073709551615");
        assert!(faults_again(libc::BUS_ADRERR) && faults_again(libc::BUS_MCEERR_AR));
        assert!(!faults_again(libc::SI_USER) && !faults_again(libc::BUS_MCEERR_AO));
    }

    /// Goal (found in review): a reported fault leaves the report in place, so that where
    /// its read succeeds when run again, a later fault elsewhere is reported too; the same
    /// page faulting again (the read failed again) takes the default action, and the process
    /// dies. Method: the decision for a run of faults.
    #[test]
    fn a_fault_reported_keeps_the_report_for_the_next_and_dies_when_it_comes_back() {
        let file_page = |_| true;
        let (one, two) = (Cell::new((0, 0)), Cell::new((0, 0)));
        let at = |ms, address, last: &Cell<(usize, u64)>| {
            next_action(libc::BUS_ADRERR, address, ms, last, file_page)
        };
        assert_eq!(at(5_000, 0x7000_1010, &one), Next::Stay);
        // Its read ran again and succeeded; later, another page fails: reported too.
        assert_eq!(at(5_200, 0x7000_5000, &one), Next::Stay);
        // Another thread's fault on another page meanwhile keeps its own page.
        assert_eq!(at(5_201, 0x8000_0000, &two,), Next::Stay);
        // Run again at once, it fails again: reported again, and the default action.
        let reports = Cell::new(0);
        let counted = |_| {
            reports.set(reports.get() + 1);
            true
        };
        let again = next_action(libc::BUS_ADRERR, 0x7000_5ff8, 5_201, &one, counted);
        assert_eq!((again, reports.get()), (Next::Default, 1));
        // The same page failing an hour later is a new fault: its read runs again.
        assert_eq!(at(3_605_201, 0x8000_0008, &two), Next::Stay);
        let elsewhere = next_action(libc::BUS_ADRERR, 0x9000_0000, 5_300, &one, |_| false);
        assert_eq!(elsewhere, Next::Previous);
        let sent = next_action(libc::SI_USER, 0x7000_9000, 5_300, &one, file_page);
        assert_eq!(sent, Next::Default);
    }

    /// In the child: it dies of SIGBUS, which dumps core by default; not here.
    fn no_core_dump() {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct we pass.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    }

    /// Runs this test binary again, running only `test` with `CHILD` set to `what`.
    fn child(test: &str, what: &str) -> std::process::Output {
        Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, what)
            .output()
            .expect("run the child")
    }

    #[test]
    fn a_read_past_a_cut_mapped_file_dies_of_sigbus_naming_file_and_offset() {
        if let Some(path) = std::env::var_os(CHILD) {
            no_core_dump();
            report_mapped_read_faults().expect("install");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .expect("file");
            file.set_len(8192).expect("grow");
            // SAFETY: a map of a file this test owns; cutting it under the map is the point.
            let map = unsafe { memmap2::Mmap::map(&file) }.expect("map");
            file.set_len(0).expect("cut");
            // SAFETY: inside the map; the read faults (the page is past the file's end).
            let byte = unsafe { std::ptr::read_volatile(map.as_ptr().add(4096)) };
            panic!("read {byte} past the end of a cut file without a SIGBUS");
        }
        // /proc/self/maps names the file by its resolved path.
        let dir = std::fs::canonicalize(std::env::temp_dir()).expect("temp dir");
        let path = dir.join(format!("cohort-sigbus-{}.wal", std::process::id()));
        let output = child(
            "sys::sigbus::tests::a_read_past_a_cut_mapped_file_dies_of_sigbus_naming_file_and_offset",
            path.to_str().expect("a UTF-8 temp path"),
        );
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.signal(), Some(libc::SIGBUS), "{stderr}");
        let report = format!(
            "cohort: a read of {} at offset 4096 failed (SIGBUS)",
            path.display()
        );
        assert!(stderr.contains(&report), "{stderr}");
    }

    #[test]
    fn a_sigbus_sent_by_another_process_still_ends_the_process_and_reports_nothing() {
        if std::env::var_os(CHILD).is_some() {
            no_core_dump();
            report_mapped_read_faults().expect("install");
            // SAFETY: raise(3) with a plain signal number.
            unsafe { libc::raise(libc::SIGBUS) };
            panic!("a sent SIGBUS was swallowed");
        }
        let output = child(
            "sys::sigbus::tests::a_sigbus_sent_by_another_process_still_ends_the_process_and_reports_nothing",
            "raise",
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.signal(), Some(libc::SIGBUS), "{stderr}");
        assert!(!stderr.contains("cohort: a read of"), "{stderr}");
    }
}
