//! The single integration-test binary. Feature test modules are declared here; all of them
//! share `support` (see `support/mod.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code: a failed step panics

mod support;

mod check;
mod corpus;
mod egress;
mod ingress;
mod isolation;
mod layout;
mod reload;
mod support_selftest;
mod tls;
