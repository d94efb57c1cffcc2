//! The load generator behind `cohort bench`: closed- and open-loop load through the Rust
//! client, HDR latency histograms (coordinated omission corrected in the open loop), per-node
//! and per-group breakdowns, reports (table, JSON, .hgrm) and SVG plots, and a null server
//! that measures the generator's own ceiling, and the CPU each request cost.
//!
//! ```text
//!   driver ──▶ client ──▶ cluster (or null_server)
//!     │
//!     ▼
//!   recorder (histograms, timeline, shares) ──▶ report (table, JSON, .hgrm), plot (SVG)
//! ```

pub mod cpu;
pub mod driver;
pub mod idle;
pub mod keys;
mod meeting;
pub mod null_server;
pub mod plot;
pub mod raw_disk;
pub mod recorder;
pub mod report;
