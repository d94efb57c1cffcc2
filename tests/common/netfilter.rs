//! Network partitions on loopback: iptables rules that drop every TCP segment to or from a
//! port, so the connections through it go silent (no reset, no error) as across a cut cable.
//!
//! Needs root and iptables. [`available`] says why not, so a test can say it was skipped;
//! `.ci/run` installs iptables where it can. Each partition lives in its own chain, named
//! after this process, and is removed when dropped; chains of processes that are gone (a test
//! killed midway) are removed before a new one is made, so their rules cannot catch the
//! ports of later tests.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const CHAIN_PREFIX: &str = "cohort-cut-";

/// Chains made by this process so far: each gets its own name.
static CHAINS_MADE: AtomicU32 = AtomicU32::new(0);

/// A chain name no other chain of this process has, with the pid that orphan removal reads.
fn fresh_chain() -> String {
    let n = CHAINS_MADE.fetch_add(1, Ordering::Relaxed);
    format!("{CHAIN_PREFIX}{}-{n}", std::process::id())
}

fn iptables(args: &[&str]) -> Result<String, String> {
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether partitions can be made here (a chain with a TCP port rule can be made and
/// removed); `Err` says why not.
pub fn available() -> Result<(), String> {
    let probe = fresh_chain();
    iptables(&["-N", &probe])?;
    let rule = iptables(&["-A", &probe, "-p", "tcp", "--dport", "9", "-j", "DROP"]);
    remove_chain(&probe);
    rule.map(|_| ())
}

/// Whether a test can make partitions; if not, says the test was skipped and why.
pub fn available_or_skip() -> bool {
    match available() {
        Ok(()) => true,
        Err(why) => {
            super::skipped(&format!("partitions need root and iptables ({why})"));
            false
        }
    }
}

/// TCP on loopback to or from a port is dropped while this lives.
pub struct Partition {
    chain: String,
}

impl Partition {
    /// Every segment to or from `port`.
    pub fn isolate_port(port: u16) -> Result<Partition, String> {
        Partition::dropping(port, &["--dport", "--sport"])
    }

    /// Every segment sent from `port` (a server's answers), none sent to it.
    pub fn drop_from_port(port: u16) -> Result<Partition, String> {
        Partition::dropping(port, &["--sport"])
    }

    fn dropping(port: u16, sides: &[&str]) -> Result<Partition, String> {
        remove_orphans();
        let chain = fresh_chain();
        iptables(&["-N", &chain])?;
        let partition = Partition { chain };
        let port = port.to_string();
        for side in sides {
            let rule = [
                "-A",
                &partition.chain,
                "-p",
                "tcp",
                side,
                &port,
                "-j",
                "DROP",
            ];
            iptables(&rule)?;
        }
        // Dropped on arrival (INPUT), not on the way out: a segment OUTPUT drops fails the
        // sender's transmit, which TCP retries every 500 ms as local congestion, where a
        // segment lost on the wire is retransmitted with an exponential backoff.
        iptables(&["-I", "INPUT", "-i", "lo", "-j", &partition.chain])?;
        Ok(partition)
    }
}

impl Partition {
    /// Segments its rules dropped so far: whether the partition cut anything.
    pub fn dropped_segments(&self) -> u64 {
        let listing = iptables(&["-L", &self.chain, "-v", "-x", "-n"]).unwrap_or_default();
        // After the chain's two header lines, a rule a line: its packet count first.
        (listing.lines().skip(2))
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        remove_chain(&self.chain);
    }
}

fn remove_chain(chain: &str) {
    while iptables(&["-D", "INPUT", "-i", "lo", "-j", chain]).is_ok() {}
    let _ = iptables(&["-F", chain]);
    let _ = iptables(&["-X", chain]);
}

/// Removes the chains of processes that no longer run.
fn remove_orphans() {
    let Ok(listing) = iptables(&["-S"]) else {
        return;
    };
    for line in listing.lines() {
        let Some(chain) = line.strip_prefix("-N ") else {
            continue;
        };
        let Some(rest) = chain.strip_prefix(CHAIN_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_chain(chain);
        }
    }
}
