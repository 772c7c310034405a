//! Observability: the access log (its formats in `access_format`) and the metrics the runtime
//! writes to.

pub mod access_format;
pub mod access_log;
pub mod metrics;
