//! What can make a resource impossible to compile even though it passed validation: values
//! only checked here (regexes, header values, base64 bodies, ports), and what the files it
//! names hold (certificates). Each is reported on the resource and field it comes from.

use crate::compile::action::headers::HeaderError;
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{field}: {source}")]
    Regex { field: String, source: regex::Error },
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("`{0}` is not a valid header value")]
    HeaderValue(String),
    #[error("{what} port {port} out of range")]
    PortOutOfRange { what: &'static str, port: i64 },
    #[error("directResponse.body.bytes: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("no destination to route to")]
    NoDestination,
    #[error("subset `{subset}` of {host} is not defined by any DestinationRule")]
    UndefinedSubset { subset: String, host: String },
    #[error("{cluster}: DNS resolution needs endpoints for a wildcard host")]
    WildcardDns { cluster: String },
    #[error("{cluster}: {source}")]
    Tls { cluster: String, source: TlsError },
}
