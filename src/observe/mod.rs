//! Observability: the access log (its formats in `access_format`), the metrics the runtime
//! writes to, Envoy's stats views over them, and the diagnostics log with its live-adjustable
//! levels; tracing (Envoy's spans at a gateway, exported over OTLP).

pub mod access_format;
pub mod access_log;
pub mod logging;
pub mod metrics;
pub mod stats;
pub mod tracing;
