//! Observability, the sinks the runtime writes to: the access log (record, rendering, writer),
//! the metric registries (`metrics`: Istio's standard metrics over the label sets of
//! `telemetry`, Envoy's connection-manager counters, the process collector), gRPC message
//! counting, Envoy's stats views, the diagnostics log with its live-adjustable levels.

pub mod access_entry;
pub mod access_format;
pub mod access_log;
pub mod grpc;
pub mod logging;
pub mod metrics;
pub mod stats;
