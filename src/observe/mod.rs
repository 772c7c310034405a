//! Observability: the access log (its formats in `access_format`), the metrics the runtime
//! writes to (Istio's standard metrics in `istio`, with the gateway's identity from `workload`
//! and gRPC message counting in `grpc`; the registries in `metrics`), Envoy's stats views over
//! them, and the diagnostics log with its live-adjustable levels. It imports no other module:
//! the stages before it hand it label sets and counters.

pub mod access_format;
pub mod access_log;
pub mod grpc;
pub mod istio;
pub mod logging;
pub mod metrics;
pub mod stats;
pub mod workload;
