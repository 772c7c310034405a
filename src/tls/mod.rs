//! TLS: certificate loading, SNI selection, the ClientHello peek, upstream origination settings.

pub mod client_hello;
