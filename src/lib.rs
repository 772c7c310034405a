//! Portcullis: a standalone ingress/egress edge gateway on Pingora that serves Istio networking YAML.
//!
//! Data flows one way: `config` (load, validate) → `compile` (an immutable `Snapshot`) →
//! `runtime` (Pingora services reading the current snapshot) → `observe` (logs, metrics, admin).

pub mod admin;
pub mod app;
pub mod cli;
pub mod compile;
pub mod config;
pub mod dns;
pub mod http_client;
pub mod observe;
pub mod reload;
pub mod runtime;
pub mod telemetry;
pub mod tls;
pub mod upstream;
