//! Observability: the access log, the metrics the runtime writes to, Envoy's stats views over
//! them, and the diagnostics log with its live-adjustable levels.

pub mod access_log;
pub mod logging;
pub mod metrics;
pub mod stats;
