//! Where a run's CPU went: each watched process's user and system time, and the whole
//! machine's busy, iowait and idle shares, read from /proc at the start and end of the
//! measured interval and given per answered request.
//!
//! CPU per request is the figure that survives a noisy machine: throughput swings with what
//! else runs, the work a request costs much less. And with the machine's CPU count it gives
//! the ceiling the CPUs put on throughput at that cost.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

/// A process to watch: a name for people and its pid.
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

/// CPU counters at one moment, in clock ticks.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Per watched process (same order): user and system ticks, `None` once it is gone.
    processes: Vec<Option<(u64, u64)>>,
    /// The machine's `cpu` line of /proc/stat: busy (user, nice, system, irq, softirq),
    /// steal, iowait and idle ticks, summed over its CPUs.
    machine: Option<MachineTicks>,
    /// When it was taken: two samples' ticks are over the time between them, which a busy
    /// generator's late wake-up makes longer than the measured seconds.
    at: std::time::Instant,
}

#[derive(Clone, Copy, Debug)]
struct MachineTicks {
    /// The CPUs the ticks are summed over: those this process may run on.
    cpus: usize,
    /// The `cpuN` lines: the host's CPUs.
    host_cpus: usize,
    busy: u64,
    /// Time a virtual CPU wanted to run while the host ran something else: not work done
    /// here, so not busy (it would raise the cost per request with the host's load).
    steal: u64,
    iowait: u64,
    idle: u64,
}

/// Takes a sample of the watched processes and the machine. Counters that cannot be read
/// (a process that exited, no /proc) are left out of the result rather than made up.
pub fn sample(watched: &[Watched]) -> Sample {
    Sample {
        processes: watched.iter().map(|w| process_ticks(w.pid)).collect(),
        machine: machine_ticks(),
        at: crate::clock::now(),
    }
}

/// One process's share of the run.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessUse {
    pub name: String,
    /// CPUs it kept busy on average (1.0: one whole CPU).
    pub cpus: f64,
    pub user_us_per_request: f64,
    pub system_us_per_request: f64,
}

/// The machine's part of the run (everything on it, not only cohort), over the CPUs this
/// process may run on: all of the host's unless a cpuset or affinity narrows them (then
/// another tenant's CPUs would count its work and its idle time).
#[derive(Clone, Debug, Serialize)]
pub struct MachineUse {
    pub cpus: usize,
    pub host_cpus: usize,
    pub busy_fraction: f64,
    /// Taken by the host of a virtual machine for others (0 on bare metal).
    pub steal_fraction: f64,
    /// Idle while some task waits for I/O. An executor parked in `io_uring_enter` with
    /// requests in flight (a socket read) counts here too, so on an io_uring engine this is
    /// mostly idle time, not a sign of a slow disk.
    pub iowait_fraction: f64,
    pub idle_fraction: f64,
    /// Busy CPU time per answered request, all processes and the kernel's interrupt work.
    pub busy_us_per_request: f64,
    /// What the CPUs allow at that cost with all of them busy: `cpus / busy time per request`.
    /// None where the nodes are not watched (`--nodes`): they may run elsewhere.
    pub ceiling_requests_per_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CpuUse {
    pub processes: Vec<ProcessUse>,
    pub machine: Option<MachineUse>,
}

/// The CPU of the interval between `before` and `after` (`seconds` long), per request.
pub fn usage(
    watched: &[Watched],
    before: &Sample,
    after: &Sample,
    seconds: f64,
    requests: u64,
) -> CpuUse {
    let ticks_per_s = crate::sys::clock_ticks_per_second() as f64;
    // Ticks are over the samples' window, the requests over the measured seconds: each
    // process's CPUs over the window, times the seconds, is its share of the requests
    // (found by a user: a busy generator sampled 8% late, and the machine's µs per request
    // summed to more CPUs than it has).
    let window = after
        .at
        .saturating_duration_since(before.at)
        .as_secs_f64()
        .max(1e-9);
    let per_request =
        |ticks: u64| ticks as f64 / ticks_per_s / window * seconds * 1e6 / requests.max(1) as f64;
    let processes = watched
        .iter()
        .zip(before.processes.iter().zip(&after.processes))
        .filter_map(|(w, pair)| match pair {
            (Some((u0, s0)), Some((u1, s1))) => {
                let (user, system) = (u1.saturating_sub(*u0), s1.saturating_sub(*s0));
                Some(ProcessUse {
                    name: w.name.clone(),
                    cpus: (user + system) as f64 / ticks_per_s / window,
                    user_us_per_request: per_request(user),
                    system_us_per_request: per_request(system),
                })
            }
            _ => None,
        })
        .collect();
    let machine = before.machine.zip(after.machine).map(|(b, a)| {
        let busy = a.busy.saturating_sub(b.busy);
        let steal = a.steal.saturating_sub(b.steal);
        let iowait = a.iowait.saturating_sub(b.iowait);
        let idle = a.idle.saturating_sub(b.idle);
        let total = (busy + steal + iowait + idle).max(1) as f64;
        let cpus = a.cpus;
        let busy_us_per_request = per_request(busy);
        MachineUse {
            cpus,
            host_cpus: a.host_cpus,
            busy_fraction: busy as f64 / total,
            steal_fraction: steal as f64 / total,
            iowait_fraction: iowait as f64 / total,
            idle_fraction: idle as f64 / total,
            busy_us_per_request,
            ceiling_requests_per_s: Some(cpus as f64 * 1e6 / busy_us_per_request.max(1e-9)),
        }
    });
    CpuUse { processes, machine }
}

/// The summary's lines for `cpu`: a row per process, then the machine.
pub fn summary_lines(cpu: &CpuUse) -> String {
    let mut out = String::new();
    if !cpu.processes.is_empty() {
        let _ = writeln!(
            out,
            "cpu         µs/request      user    system   CPUs busy"
        );
        for p in &cpu.processes {
            let _ = writeln!(
                out,
                "  {:<11} {:>8.2} {:>9.2} {:>9.2} {:>9.2}",
                p.name,
                p.user_us_per_request + p.system_us_per_request,
                p.user_us_per_request,
                p.system_us_per_request,
                p.cpus
            );
        }
    }
    if let Some(m) = &cpu.machine {
        let ceiling = match m.ceiling_requests_per_s {
            Some(ceiling) => format!("at this cost the CPUs allow at most {ceiling:.0} requests/s"),
            None => "the nodes (--nodes) are not watched: no ceiling for them".to_string(),
        };
        let steal = match m.steal_fraction {
            0.0 => String::new(),
            fraction => format!(", {:.0}% taken by the host", fraction * 100.0),
        };
        let cpus = if m.cpus == m.host_cpus {
            format!("{} CPUs", m.cpus)
        } else {
            format!(
                "the {} of the host's {} CPUs this process may use",
                m.cpus, m.host_cpus
            )
        };
        let _ = writeln!(
            out,
            "  machine     {:>8.2} busy in all ({cpus}: {:.0}% busy, {:.0}% iowait, {:.0}% \
             idle{steal}): {ceiling}",
            m.busy_us_per_request,
            m.busy_fraction * 100.0,
            m.iowait_fraction * 100.0,
            m.idle_fraction * 100.0,
        );
    }
    out
}

/// User and system ticks of `pid`, all its threads: fields 14 and 15 of /proc/PID/stat,
/// counted after the command name (which may hold spaces and parentheses).
fn process_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_ticks(&stat)
}

fn parse_process_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let mut fields = after_name.split_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some((user, system))
}

fn machine_ticks() -> Option<MachineTicks> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let allowed = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| parse_cpu_list(list.trim()));
    parse_machine_ticks(
        &std::fs::read_to_string("/proc/stat").ok()?,
        allowed.as_ref(),
    )
}

/// A CPU list as the kernel writes it ("0-3,8,10-11").
fn parse_cpu_list(list: &str) -> Option<BTreeSet<usize>> {
    let mut cpus = BTreeSet::new();
    for part in list.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        cpus.extend(first..=last.min(first + (1 << 16)));
    }
    Some(cpus)
}

/// The `cpuN` lines of the CPUs in `allowed` (all of them where None) summed: user nice
/// system idle iowait irq softirq steal (guest time is already in user and nice).
fn parse_machine_ticks(stat: &str, allowed: Option<&BTreeSet<usize>>) -> Option<MachineTicks> {
    // Where /proc/stat shows only this container's CPUs (lxcfs, numbered from 0 again), the
    // host's numbers of the allowed list name none or others of its lines: no filter then.
    let lines: BTreeSet<usize> = (stat.lines())
        .filter_map(|line| {
            line.split_whitespace()
                .next()?
                .strip_prefix("cpu")?
                .parse()
                .ok()
        })
        .collect();
    let allowed =
        allowed.filter(|allowed| allowed.len() < lines.len() && allowed.is_subset(&lines));
    let mut ticks = MachineTicks {
        cpus: 0,
        host_cpus: 0,
        busy: 0,
        steal: 0,
        iowait: 0,
        idle: 0,
    };
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|name| name.strip_prefix("cpu")) else {
            continue;
        };
        let Ok(cpu) = cpu.parse::<usize>() else {
            continue;
        };
        ticks.host_cpus += 1;
        if allowed.is_some_and(|allowed| !allowed.contains(&cpu)) {
            continue;
        }
        let values: Vec<u64> = fields
            .take(8)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = values[..] else {
            return None;
        };
        ticks.cpus += 1;
        ticks.busy += user + nice + system + irq + softirq;
        ticks.steal += steal;
        ticks.iowait += iowait;
        ticks.idle += idle;
    }
    (ticks.cpus > 0).then_some(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn process_ticks_are_read_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (cohort (x) 1) S 1 4242 4242 0 -1 4194560 3161 0 0 0 \
                    1234 567 0 0 20 0 9 0 123456 1000000 500 18446744073709551615";
        assert_eq!(parse_process_ticks(stat), Some((1234, 567)));
        assert_eq!(parse_process_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn machine_ticks_split_busy_steal_iowait_and_idle() {
        let stat = "cpu  150 7 60 1200 45 3 4 7 0 0\n\
                    cpu0 100 5 40 800 30 2 3 7 0 0\n\
                    cpu1 50 2 20 400 15 1 1 0 0 0\n";
        let ticks = parse_machine_ticks(stat, None).unwrap();
        // Steal is the host's doing, not this machine's work (found in review: it was busy).
        let split = |t: &MachineTicks| (t.cpus, t.host_cpus, t.busy, t.steal, t.iowait, t.idle);
        assert_eq!(split(&ticks), (2, 2, 150 + 74, 7, 45, 1200));
        // Only the CPUs this process may use (review 234: a cpuset of 4 of 64 CPUs counted
        // all 64, other tenants' work and idle time with them).
        let only_0 = parse_cpu_list("0").unwrap();
        let ticks = parse_machine_ticks(stat, Some(&only_0)).unwrap();
        assert_eq!(split(&ticks), (1, 2, 100 + 5 + 40 + 2 + 3, 7, 30, 800));
        assert!(parse_machine_ticks("cpu0 1 2 3\n", None).is_none());
        // Numbers of the host's CPUs that /proc/stat does not show (a container's view of
        // its own CPUs only): counted as they are (review 236).
        let host_numbers = parse_cpu_list("4-5").unwrap();
        let ticks = parse_machine_ticks(stat, Some(&host_numbers)).unwrap();
        assert_eq!(split(&ticks), (2, 2, 150 + 74, 7, 45, 1200));
        assert_eq!(
            parse_cpu_list("0-2,5,7-8")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [0, 1, 2, 5, 7, 8]
        );
        assert!(parse_cpu_list("x").is_none());
    }

    #[test]
    fn usage_is_per_request_and_the_ceiling_follows_from_it() {
        let watched = [Watched {
            name: "node 1".to_string(),
            pid: 1,
        }];
        let hz = crate::sys::clock_ticks_per_second();
        let start = crate::clock::now();
        let at = |user: u64, system: u64, busy: u64| Sample {
            at: start + Duration::from_secs(u64::from(busy > 0)),
            processes: vec![Some((user, system))],
            machine: Some(MachineTicks {
                cpus: 2,
                host_cpus: 2,
                busy,
                steal: 0,
                iowait: 0,
                idle: 0,
            }),
        };
        // One second of user and half a second of system time over 1,000,000 requests.
        let cpu = usage(
            &watched,
            &at(0, 0, 0),
            &at(hz, hz / 2, 2 * hz),
            1.0,
            1_000_000,
        );
        let p = &cpu.processes[0];
        assert!((p.user_us_per_request - 1.0).abs() < 1e-9);
        assert!((p.system_us_per_request - 0.5).abs() < 1e-9);
        assert!((p.cpus - 1.5).abs() < 1e-9);
        let m = cpu.machine.unwrap();
        assert!((m.busy_us_per_request - 2.0).abs() < 1e-9);
        assert!((m.ceiling_requests_per_s.unwrap() - 1_000_000.0).abs() < 1e-3);
        // Sampled over 1.25 s for 1 s measured: the ticks of 1 s are counted, and a process's
        // CPUs are over the 1.25 s.
        let late = Sample {
            at: start + Duration::from_millis(1_250),
            ..at(hz, hz / 2, 2 * hz)
        };
        let cpu = usage(&watched, &at(0, 0, 0), &late, 1.0, 1_000_000);
        assert!((cpu.processes[0].user_us_per_request - 0.8).abs() < 1e-9);
        assert!((cpu.processes[0].cpus - 1.2).abs() < 1e-9);
        let m = cpu.machine.unwrap();
        assert!((m.ceiling_requests_per_s.unwrap() - 1_250_000.0).abs() < 1e-3);
        // A process gone by the end is left out, not reported as zero.
        let gone = Sample {
            processes: vec![None],
            machine: None,
            at: start + Duration::from_secs(1),
        };
        assert!(
            usage(&watched, &at(0, 0, 0), &gone, 1.0, 10)
                .processes
                .is_empty()
        );
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = [Watched {
            name: "me".to_string(),
            pid: std::process::id(),
        }];
        let s = sample(&me);
        assert!(s.processes[0].is_some());
        assert!(s.machine.is_some());
    }
}
