//! TLS: certificate loading, the ClientHello peek, server-side settings per filter chain, and
//! upstream origination settings.

pub use error::TlsError;

pub mod certs;
pub mod client_hello;
pub mod error;
pub mod server;
pub mod upstream;
