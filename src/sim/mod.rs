//! Deterministic simulator: many replicas in one thread over a faulty network and disk.
