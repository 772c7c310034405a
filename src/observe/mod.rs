//! Observability: access log, metrics, per-cluster stats and the admin listener.

pub mod stats;
