//! The operating-system calls cohort needs that no safe wrapper offers: raising the locked
//! memory and open files limits, handing sockets tuned with socket2 to glommio, a second
//! descriptor of a glommio socket, the clock tick /proc counts CPU time in, a lock on a data
//! dir, and a report of a SIGBUS from a mapped file (`sigbus.rs`).
//!
//! This is the only module outside the WAL's mapping code allowed `unsafe`; each block says
//! why it is sound.

mod sigbus;

pub use sigbus::report_mapped_read_faults;

use std::io;
use std::os::fd::IntoRawFd;

/// Bytes of locked memory a glommio executor needs: its io_uring rings plus the `io_memory`
/// it registers with the kernel (10 MiB by default). 512 MiB leaves room for many executors.
pub const MEMLOCK_BYTES_WANTED: u64 = 512 << 20;

/// The least locked memory glommio starts an executor with (its own check). Below
/// [`MEMLOCK_BYTES_WANTED`] it still runs: where the buffers it registers with io_uring do
/// not fit the limit, it uses them unregistered (a copy more per I/O), and kernels since
/// 5.12 do not charge the rings themselves to the limit.
pub const MEMLOCK_BYTES_LEAST: u64 = 512 << 10;

/// Raises `RLIMIT_MEMLOCK` so glommio executors can lock their io_uring memory.
///
/// The soft limit is raised to at least [`MEMLOCK_BYTES_WANTED`], and the hard limit with it
/// when the process may do so (`CAP_SYS_RESOURCE`); a limit already high enough is left
/// alone. Where the hard limit cannot be raised (an ordinary user's 8 MiB, a container
/// without the capability), the soft limit goes up to the hard one, and a run goes on, with
/// a warning, if the soft limit then holds glommio's least ([`MEMLOCK_BYTES_LEAST`]; found in
/// review: the demo and every command refused to start for a user who was not root). The
/// error names the limit and how to raise it by hand.
pub fn raise_memlock_limit() -> io::Result<()> {
    let current = memlock_limit()?;
    if current.rlim_cur == libc::RLIM_INFINITY || current.rlim_cur >= MEMLOCK_BYTES_WANTED {
        return Ok(());
    }
    let hard_enough =
        current.rlim_max == libc::RLIM_INFINITY || current.rlim_max >= MEMLOCK_BYTES_WANTED;
    let wanted = libc::rlimit {
        rlim_cur: MEMLOCK_BYTES_WANTED,
        rlim_max: if hard_enough {
            current.rlim_max
        } else {
            MEMLOCK_BYTES_WANTED
        },
    };
    let Err(error) = set_memlock_limit(&wanted) else {
        return Ok(());
    };
    // Raising the hard limit needs CAP_SYS_RESOURCE. The soft limit may go up to the hard
    // one all the same (where setrlimit is allowed at all), and glommio checks the soft one.
    let most = libc::rlimit {
        rlim_cur: current.rlim_max,
        rlim_max: current.rlim_max,
    };
    let _ = set_memlock_limit(&most);
    let soft = memlock_limit()?.rlim_cur;
    if soft >= MEMLOCK_BYTES_LEAST {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!(
                "locked memory is limited to {} KiB (RLIMIT_MEMLOCK), not the {} MiB wanted: \
                 io_uring's buffers may go unregistered (their pages pinned at each I/O); \
                 raise it with `ulimit -l unlimited` as root, or `memlock` in \
                 /etc/security/limits.conf",
                soft >> 10,
                MEMLOCK_BYTES_WANTED >> 20
            );
        });
        return Ok(());
    }
    Err(io::Error::new(
        error.kind(),
        format!(
            "cannot raise RLIMIT_MEMLOCK from {soft} bytes to glommio's least, \
             {MEMLOCK_BYTES_LEAST} ({MEMLOCK_BYTES_WANTED} wanted; {error}): run `ulimit -l \
             unlimited` as root, or set `memlock` in /etc/security/limits.conf or \
             LimitMEMLOCK= in the unit"
        ),
    ))
}

/// The unit of the CPU times in /proc (`USER_HZ`, 100 on every Linux ABI cohort runs on;
/// asked rather than assumed).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a configuration value; it takes no pointers.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The machine's physical memory, in bytes (0 if the system does not say).
pub fn physical_memory_bytes() -> u64 {
    // SAFETY: sysconf reads configuration values; it takes no pointers.
    #[allow(unsafe_code)]
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (pages, page) = (
        u64::try_from(pages).unwrap_or(0),
        u64::try_from(page).unwrap_or(0),
    );
    pages.saturating_mul(page)
}

/// The memory this process may use: the machine's, or less where its cgroup limits it (v2
/// `memory.max`, v1 `memory.limit_in_bytes`: a container's limit, which the machine's count
/// ignores); 0 if the system does not say.
pub fn memory_bytes() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroups = read("/proc/self/cgroup").unwrap_or_default();
    let limit = cgroup_memory_limit(&cgroups, read).unwrap_or(u64::MAX);
    physical_memory_bytes().min(limit)
}

/// The smallest memory limit of the cgroups `cgroups` (as `/proc/self/cgroup` lists them)
/// names and of every cgroup above them (a systemd slice's `MemoryMax`, a pod's limit: the
/// leaf may say none), read with `read`; None where none is set. A path the process's mount
/// namespace does not show (a container's) leaves the hierarchy's root, which is then its own.
fn cgroup_memory_limit(cgroups: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let mut limit: Option<u64> = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (root, file) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            }
            _ => continue,
        };
        let mut path = path.trim_end_matches('/');
        loop {
            // "max" (v2) sets none; v1 says none with a huge number, which the machine's
            // bounds.
            let found = read(&format!("{root}{path}/{file}"));
            if let Some(bytes) = found.and_then(|text| text.trim().parse::<u64>().ok()) {
                limit = Some(limit.map_or(bytes, |l| l.min(bytes)));
            }
            match path.rfind('/') {
                Some(parent) => path = &path[..parent],
                None => break,
            }
        }
    }
    limit
}

/// CLOCK_BOOTTIME: monotonic, and counting the time the machine was suspended, which
/// CLOCK_MONOTONIC (`Instant`) leaves out.
pub fn boot_time() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is, and keeps no pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    // Fails only for a clock the kernel lacks: CLOCK_BOOTTIME is in every Linux since 2.6.39.
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Raises the soft limit of open files (`RLIMIT_NOFILE`) to the hard one, as servers do
/// (each client holds a socket; a soft limit of 1,024 is common), and returns the soft limit
/// in force. One that cannot be raised stays as it was.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, writable local.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // No process may open more than the kernel's nr_open (1,048,576 by default), whatever
    // an unlimited hard limit says.
    let wanted = limit.rlim_max.min(1 << 20);
    if limit.rlim_cur >= wanted {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` through a pointer to a live local; it has no other
    // effect on memory.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    Ok(if rc == 0 { wanted } else { limit.rlim_cur })
}

fn memlock_limit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, writable local.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc == 0 {
        Ok(limit)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_memlock_limit(limit: &libc::rlimit) -> io::Result<()> {
    // SAFETY: setrlimit reads one `rlimit` through a pointer to a live local; it has no other
    // effect on memory.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, limit) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `signal` is ignored (`SIG_IGN`, as `nohup` leaves SIGHUP): false where it cannot
/// be read.
pub fn signal_ignored(signal: i32) -> bool {
    // SAFETY: an all-zero sigaction is a valid value; sigaction(2) with a null new action
    // only writes the current one into `current`, a live, writable local.
    #[allow(unsafe_code)]
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

/// The CPUs this process may run on (its affinity mask: `taskset`, a cgroup's cpuset).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    #[allow(unsafe_code)]
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into `set`, a
    // live, writable local of that size.
    #[allow(unsafe_code)]
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let cpus = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set only, at an index below its size.
    #[allow(unsafe_code)]
    Ok((0..cpus)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Hands a bound, listening socket tuned with socket2 to glommio, which can only build its
/// listener itself (without our socket options) or from a raw descriptor.
///
/// Must be called on a glommio executor thread (the listener registers with its reactor).
pub fn glommio_listener(socket: socket2::Socket) -> glommio::net::TcpListener {
    use std::os::fd::FromRawFd;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is an open, bound, listening TCP socket whose ownership `into_raw_fd` just
    // gave up, so the listener becomes its only owner and closes it exactly once.
    #[allow(unsafe_code)]
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
    listener
}

/// Hands a TCP socket tuned with socket2 (connected or connecting) to glommio. glommio 0.9
/// converts only from its own socket2 release (0.4), not ours, so the descriptor is passed.
///
/// Must be called on a glommio executor thread.
pub fn glommio_stream(socket: socket2::Socket) -> glommio::net::TcpStream {
    use std::os::fd::FromRawFd;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is an open TCP socket whose ownership `into_raw_fd` just gave up, so the
    // stream becomes its only owner and closes it exactly once.
    #[allow(unsafe_code)]
    let stream = unsafe { glommio::net::TcpStream::from_raw_fd(fd) };
    stream
}

/// A second descriptor of `stream`'s socket, so its owner can shut the connection down
/// (waking a task blocked reading it) without owning the stream.
pub fn socket_handle(stream: &glommio::net::TcpStream) -> io::Result<socket2::Socket> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: dup(2) takes an integer; `stream` is borrowed, so its descriptor is open.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    #[allow(unsafe_code)]
    let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
    Ok(socket)
}

/// The signals cohort sends to processes it started (nodes of a local cluster).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: stop gracefully.
    Terminate,
    /// SIGHUP: the terminal closed (a node stops gracefully, as on SIGTERM).
    Hangup,
    /// SIGSTOP: freeze at once, as a stalled machine would (tests).
    Stop,
    /// SIGCONT: go on after [`Signal::Stop`].
    Continue,
}

/// Sends `signal` to process `pid`. Errors (it already exited) are ignored: the caller waits
/// for the process either way.
pub fn send_signal(pid: u32, signal: Signal) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    let number = match signal {
        Signal::Terminate => libc::SIGTERM,
        Signal::Hangup => libc::SIGHUP,
        Signal::Stop => libc::SIGSTOP,
        Signal::Continue => libc::SIGCONT,
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::kill(pid, number) };
}

/// Bytes an unprivileged writer may still take on the file system of `path` (statvfs(3):
/// available blocks times the fragment size).
pub fn available_bytes(path: &std::path::Path) -> io::Result<u64> {
    let stats = statvfs(path)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Files an unprivileged writer may still make on the file system of `path` (statvfs(3):
/// its free inodes; 0 where they are used up, though bytes may be free).
pub fn available_inodes(path: &std::path::Path) -> io::Result<u64> {
    Ok(statvfs(path)?.f_favail)
}

fn statvfs(path: &std::path::Path) -> io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: statvfs(3) reads a NUL-terminated path and writes one plain struct, zeroed here.
    #[allow(unsafe_code)]
    let (result, stats) = unsafe {
        let mut stats: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(path.as_ptr(), &mut stats), stats)
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats)
}

/// Takes an exclusive `flock(2)` on `file` without waiting: `Ok(false)` if another open file
/// description holds one. The lock lasts while the file stays open (the kernel drops it when
/// the process ends, however it ends).
pub fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) takes a descriptor `file` keeps open for the call and plain flags.
    #[allow(unsafe_code)]
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (review 274): a container's memory limit, or one on a cgroup above the
    /// process's, bounds what the node counts on, in either cgroup version, and a limit of
    /// "max" or no memory controller bounds nothing.
    #[test]
    fn a_cgroup_memory_limit_is_found_in_either_version() {
        let files = |path: &str| match path {
            "/sys/fs/cgroup/app/memory.max" => Some("2147483648\n".to_string()),
            "/sys/fs/cgroup/memory/memory.limit_in_bytes" => Some("1073741824\n".to_string()),
            "/sys/fs/cgroup/free/memory.max" => Some("max\n".to_string()),
            "/sys/fs/cgroup/user.slice/memory.max" => Some("536870912\n".to_string()),
            "/sys/fs/cgroup/user.slice/app.scope/memory.max" => Some("max\n".to_string()),
            _ => None,
        };
        assert_eq!(cgroup_memory_limit("0::/app\n", files), Some(2 << 30));
        // A slice's limit bounds the scopes under it, which say none (review 275).
        assert_eq!(
            cgroup_memory_limit("0::/user.slice/app.scope\n", files),
            Some(1 << 29)
        );
        // v1, its path not shown in this namespace: the root's file.
        assert_eq!(
            cgroup_memory_limit("4:memory:/docker/abc\n", files),
            Some(1 << 30)
        );
        assert_eq!(cgroup_memory_limit("0::/free\n", files), None);
        assert_eq!(cgroup_memory_limit("3:cpuset:/\n", files), None);
        assert!(memory_bytes() > 0);
    }

    /// Goal: the affinity mask is read whole. Method: std counts the same mask (less a cgroup
    /// quota, if any), and the process runs on at least one CPU of it.
    #[test]
    fn the_allowed_cpus_are_the_affinity_mask() {
        let allowed = super::allowed_cpus().expect("sched_getaffinity");
        let parallelism = std::thread::available_parallelism().expect("parallelism");
        assert!(allowed.len() >= parallelism.get(), "{allowed:?}");
        assert!(
            allowed.windows(2).all(|pair| pair[0] < pair[1]),
            "{allowed:?}"
        );
    }
}
