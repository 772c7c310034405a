//! What can go wrong preparing TLS: reading and parsing certificates, keys and CRLs, finding
//! a credential, and building the OpenSSL contexts. Messages name the file and what was
//! expected, as `check` prints them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a {what}: {reason}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{} contains no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("private key {} does not belong to certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("credential `{name}` not found: expected a folder {} with tls.crt and tls.key", dir.display())]
    CredentialNotFound { name: String, dir: PathBuf },
    #[error("credential `{name}`: {} must hold tls.crt and tls.key (or cert and key)", dir.display())]
    CredentialIncomplete { name: String, dir: PathBuf },
    #[error("CRL {} is not signed by any of the client CA certificates", .0.display())]
    CrlNotSigned(PathBuf),
    /// A setting OpenSSL refuses (`what` is the field: cipherSuites, minProtocolVersion …).
    #[error("{what}: {source}")]
    Setting {
        what: &'static str,
        source: openssl::error::ErrorStack,
    },
    /// A combination of settings that cannot work (the message says what is needed).
    #[error("{0}")]
    Unsupported(&'static str),
}

/// The first OpenSSL error's reason, which is what a person can act on.
pub(crate) fn first_ssl_error(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|e| e.reason().map(str::to_string))
        .unwrap_or_else(|| e.to_string())
}
