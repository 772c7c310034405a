//! What a request is counted under, decided once per reload and shared by `compile` (which
//! resolves it per cluster and listener), the runtime (which counts) and `observe` (which
//! registers and serves the metrics): Istio's standard-metric label sets with their cached
//! handles, the gateway's own identity as istio-agent derives it, Envoy's stat names, and
//! Envoy's tracing at a gateway (`tracing`: the tracer compiled per reload, the request's
//! spans, and their export over OTLP or to Zipkin).
//! Imports nothing of the stages after `compile`.

pub mod envoy;
pub mod istio;
pub mod tracing;
pub mod workload;
