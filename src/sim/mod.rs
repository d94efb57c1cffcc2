//! Deterministic simulator: many replicas in one thread over a faulty network and disk.
//!
//! [`Cluster`] runs the replicas of one group on simulated nodes: a seeded network that drops,
//! duplicates, delays, reorders and partitions; disks that keep only what a completed Ready wrote
//! (a crash loses the Ready in flight, a torn sync its hard state); and a [`Checker`] that verifies
//! Raft's safety properties after every step (log matching, which compares whole logs, every 64
//! units of simulated time and at the end). [`run`] drives a seeded random workload over it, each
//! node ticking by its own clock, at a rate a little off the others' ([`SkewedClock`]). A failure
//! prints `SEED=<n>`; `COHORT_SIM_SEED=<n>` replays exactly that run. [`check_register`] checks a
//! key's client history for linearizability (the end-to-end history tests use it on real
//! processes).

mod checker;
mod clock;
mod cluster;
mod disk;
mod liveness;
mod network;
mod register;
mod workload;

pub use checker::Checker;
pub use clock::{SkewedClock, lease_safe_skew_permille, skewed_clocks};
pub use cluster::{Cluster, ConfigFn, SimNode};
pub use disk::{Disk, StateMachine};
pub use liveness::Liveness;
pub use network::{Network, NetworkFaults};
pub use register::{Operation, RegisterError, RegisterOp, check_register};
pub use workload::{SimFailure, SimOptions, SimReport, panic_message, run};
