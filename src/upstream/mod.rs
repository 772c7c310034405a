//! The upstream leg, one home for everything that happens between "this cluster" and a
//! connection: endpoint choice (`balancer`), circuit-breaker admission (`breaker`), outlier
//! detection (`outlier`), the `HttpPeer` for an attempt (`peer`), and the long-lived
//! per-cluster counters (`stats`). `cluster` ties them together as the compiled type the data
//! path holds. Nothing here knows about routes, listeners or the CLI.

pub mod balancer;
pub mod breaker;
pub mod cluster;
pub mod cookie;
pub mod endpoint;
pub mod outlier;
pub mod peer;
pub mod stats;

pub use cluster::{Cluster, ClusterSpec, PickError, PickInput, Picked};
pub use stats::{ClusterStats, StatsRegistry};
