//! The per-core TCP transport between nodes (see `transport/mod.rs`).
