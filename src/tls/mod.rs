//! TLS: certificate loading, the ClientHello peek, server-side settings per filter chain, and
//! upstream origination settings.

pub mod certs;
pub mod client_hello;
pub mod server;
pub mod upstream;
