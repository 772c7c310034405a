//! The single integration-test binary. Feature test modules are declared here; all of them
//! share `support` (see `support/mod.rs`).

mod support;

mod corpus;
mod egress;
mod ingress;
mod reload;
mod support_selftest;
mod tls;
