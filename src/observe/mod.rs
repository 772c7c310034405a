//! Observability: access log, metrics, per-cluster stats and the admin listener.

pub mod access_log;
pub mod admin;
pub mod metrics;
