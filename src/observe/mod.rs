//! Observability: the access log and the metrics the runtime writes to.

pub mod access_log;
pub mod metrics;
