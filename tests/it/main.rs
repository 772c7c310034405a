//! The single integration-test binary. Feature test modules are declared here; all of them
//! share `support` (see `support/mod.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code: a failed step panics

mod support;

mod check;
mod corpus;
mod deploy;
mod egress;
mod fuzz_smoke;
mod hardening;
mod ingress;
mod isolation;
mod layout;
mod mesh;
mod ops;
mod reload;
mod security;
mod support_selftest;
mod syscalls;
mod tls;
