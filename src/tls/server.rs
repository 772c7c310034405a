//! Server-side TLS for one terminating Gateway server (one SNI filter chain): an `SslAcceptor`
//! built at compile time with the server's protocol versions, ciphers, ALPN and client-cert
//! policy, plus its certificates, installed per handshake by [`ChainHandshake`].

use super::error::TlsError;
use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use openssl::hash::MessageDigest;
use openssl::ssl::{
    select_next_proto, AlpnError, SniError, SslAcceptor, SslAlert, SslMethod, SslOptions, SslRef,
    SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509Ref, X509StoreContextRef, X509VerifyResult, X509};
use pingora::listeners::TlsAccept;
use pingora::tls::ext;

use super::certs::{subject_summary, CertChain};
use crate::config::types::{ServerTlsMode, TlsProtocolVersion};

/// What a terminating server asks of TLS, already resolved to files and parsed.
pub struct ServerTlsSpec {
    pub mode: ServerTlsMode,
    /// Revocation lists for client certificates (`caCrl`, or `ca.crl` in the credential).
    pub crls: Vec<openssl::x509::X509Crl>,
    /// One, or two (RSA + ECDSA) certificate chains.
    pub certificates: Vec<CertChain>,
    pub client_ca: Vec<X509>,
    pub min_version: Option<TlsProtocolVersion>,
    pub max_version: Option<TlsProtocolVersion>,
    pub cipher_suites: Vec<String>,
    pub ecdh_curves: Vec<String>,
    pub subject_alt_names: Vec<String>,
    pub verify_spki: Vec<String>,
    pub verify_hash: Vec<String>,
    /// Offer h2 and http/1.1 (HTTP servers); TLS-then-TCP servers offer nothing.
    pub http_alpn: bool,
}

/// A compiled terminating server.
pub struct ServerTls {
    pub acceptor: SslAcceptor,
    pub certificates: Arc<[CertChain]>,
    pub mode: ServerTlsMode,
    /// Human summary for `routes` / config dump.
    pub summary: Vec<String>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mode", &self.mode)
            .field("certificates", &self.summary)
            .finish()
    }
}

impl serde::Serialize for ServerTls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ServerTls", 2)?;
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("certificates", &self.summary)?;
        st.end()
    }
}

fn ssl_version(v: TlsProtocolVersion) -> Option<SslVersion> {
    match v {
        TlsProtocolVersion::Auto => None,
        TlsProtocolVersion::V1_0 => Some(SslVersion::TLS1),
        TlsProtocolVersion::V1_1 => Some(SslVersion::TLS1_1),
        TlsProtocolVersion::V1_2 => Some(SslVersion::TLS1_2),
        TlsProtocolVersion::V1_3 => Some(SslVersion::TLS1_3),
    }
}

/// Builds the acceptor. Warnings (ignored cipher names) are returned beside it.
pub fn build(spec: ServerTlsSpec) -> Result<(ServerTls, Vec<String>), TlsError> {
    let mut warnings = Vec::new();
    let err = |what: &'static str, source| TlsError::Setting { what, source };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| err("TLS setup", e))?;
    // The server's cipher order decides, as in Envoy (which makes `cipherSuites` a preference
    // list); ChaCha20 still wins for clients that put it first (no AES hardware).
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE | SslOptions::PRIORITIZE_CHACHA);
    // Istio's default minimum is TLS 1.2 (Mozilla intermediate would allow nothing older anyway).
    let min = spec
        .min_version
        .and_then(ssl_version)
        .unwrap_or(SslVersion::TLS1_2);
    b.set_min_proto_version(Some(min))
        .map_err(|e| err("minProtocolVersion", e))?;
    b.set_max_proto_version(spec.max_version.and_then(ssl_version))
        .map_err(|e| err("maxProtocolVersion", e))?;
    // Mozilla intermediate disables TLS 1.0/1.1 by option (the minimum version alone does
    // not re-enable them), and OpenSSL 3 refuses them at its default security level.
    if matches!(min, SslVersion::TLS1 | SslVersion::TLS1_1) {
        b.clear_options(SslOptions::NO_TLSV1 | SslOptions::NO_TLSV1_1);
        b.set_cipher_list("DEFAULT:@SECLEVEL=0")
            .map_err(|e| err("cipherSuites", e))?;
    }
    if !spec.cipher_suites.is_empty() {
        let mut valid = Vec::new();
        for c in &spec.cipher_suites {
            let mut probe = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
                .map_err(|e| err("TLS setup", e))?;
            if probe.set_cipher_list(c).is_ok() {
                valid.push(c.as_str());
            } else {
                warnings.push(format!(
                    "cipher suite `{c}` is unknown to OpenSSL and ignored"
                ));
            }
        }
        if !valid.is_empty() {
            b.set_cipher_list(&valid.join(":"))
                .map_err(|e| err("cipherSuites", e))?;
        }
    }
    if !spec.ecdh_curves.is_empty() {
        b.set_groups_list(&spec.ecdh_curves.join(":"))
            .map_err(|e| err("ecdhCurves", e))?;
    }
    if spec.http_alpn {
        b.set_alpn_select_callback(|_, client| {
            select_next_proto(b"\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK)
        });
    }
    b.set_session_id_context(b"portcullis")
        .map_err(|e| err("TLS setup", e))?;

    let mode = spec.mode;
    if matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual) {
        if spec.client_ca.is_empty() {
            return Err(TlsError::Unsupported(
                "MUTUAL needs a client CA (caCertificates, or ca.crt in the credential)",
            ));
        }
        let mut store = X509StoreBuilder::new().map_err(|e| err("client CA", e))?;
        let mut names = openssl::stack::Stack::new().map_err(|e| err("client CA", e))?;
        for ca in &spec.client_ca {
            store
                .add_cert(ca.clone())
                .map_err(|e| err("client CA", e))?;
            names
                .push(
                    ca.subject_name()
                        .to_owned()
                        .map_err(|e| err("client CA", e))?,
                )
                .ok();
        }
        b.set_verify_cert_store(store.build())
            .map_err(|e| err("client CA", e))?;
        b.set_client_ca_list(names);
        let verify_mode = if mode == ServerTlsMode::Mutual {
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
        } else {
            SslVerifyMode::PEER
        };
        let checks = ClientCertChecks {
            crls: spec.crls,
            subject_alt_names: spec.subject_alt_names.clone(),
            spki: spec.verify_spki.clone(),
            hash: spec
                .verify_hash
                .iter()
                .map(|h| h.replace(':', "").to_ascii_lowercase())
                .collect(),
        };
        b.set_verify_callback(verify_mode, move |ok, ctx| {
            if !ok {
                return false;
            }
            match checks.verify(ctx) {
                Ok(()) => true,
                Err(reason) => {
                    // Without an error code OpenSSL answers `internal_error`, as if the gateway
                    // were broken; this is a certificate it refuses on purpose.
                    ctx.set_error(reason);
                    false
                }
            }
        });
    }
    let summary = spec
        .certificates
        .iter()
        .map(|c| subject_summary(&c.leaf))
        .collect();
    Ok((
        ServerTls {
            acceptor: b.build(),
            certificates: spec.certificates.into(),
            mode,
            summary,
        },
        warnings,
    ))
}

/// Istio's extra client-certificate checks, applied to the leaf during verification so a
/// failure is a handshake alert, not a later reset.
struct ClientCertChecks {
    crls: Vec<openssl::x509::X509Crl>,
    subject_alt_names: Vec<String>,
    spki: Vec<String>,
    hash: Vec<String>,
}

impl ClientCertChecks {
    fn verify(&self, ctx: &mut X509StoreContextRef) -> Result<(), X509VerifyResult> {
        const REFUSED: X509VerifyResult = X509VerifyResult::APPLICATION_VERIFICATION;
        let Some(cert) = ctx.current_cert() else {
            return Err(REFUSED);
        };
        // Every certificate of the chain is checked against the revocation lists.
        let cert_owned = cert.to_owned();
        if self.crls.iter().any(|crl| {
            matches!(
                crl.get_by_cert(&cert_owned),
                openssl::x509::CrlStatus::Revoked(_)
            )
        }) {
            // SAFETY: a constant OpenSSL verify code; from_raw only wraps the integer.
            return Err(unsafe {
                X509VerifyResult::from_raw(pingora::tls::ssl_sys::X509_V_ERR_CERT_REVOKED)
            });
        }
        if ctx.error_depth() != 0 {
            return Ok(());
        }
        if !self.subject_alt_names.is_empty() {
            let sans = cert_sans(cert);
            if !sans.iter().any(|s| self.subject_alt_names.contains(s)) {
                return Err(REFUSED);
            }
        }
        if self.spki.is_empty() && self.hash.is_empty() {
            return Ok(());
        }
        // Either pin list may match (Istio: SPKI or hash).
        let spki_ok = !self.spki.is_empty()
            && cert
                .public_key()
                .and_then(|k| k.public_key_to_der())
                .map(|der| openssl::base64::encode_block(&openssl::sha::sha256(&der)))
                .is_ok_and(|b64| self.spki.contains(&b64));
        let hash_ok = !self.hash.is_empty()
            && cert
                .digest(MessageDigest::sha256())
                .map(|d| hex(&d))
                .is_ok_and(|h| self.hash.contains(&h));
        if spki_ok || hash_ok {
            Ok(())
        } else {
            Err(REFUSED)
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// DNS and URI subject alternative names.
pub fn cert_sans(cert: &X509Ref) -> Vec<String> {
    cert.subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().or_else(|| n.uri()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The downstream TLS facts a request needs, attached to the connection's `SslDigest`.
#[derive(Debug, Clone)]
pub struct DownstreamTls {
    /// The filter chain (server) whose certificate was presented, and its route table.
    pub chain: usize,
    pub route_table: Arc<str>,
    pub sni: Option<String>,
    /// `x-forwarded-client-cert` value for a verified client certificate.
    pub xfcc: Option<String>,
}

/// Per-handshake callbacks for one chain: install its certificates, then record what the
/// request phase needs.
pub struct ChainHandshake {
    pub certificates: Arc<[CertChain]>,
    pub chain: usize,
    pub route_table: Arc<str>,
}

#[async_trait]
impl TlsAccept for ChainHandshake {
    async fn certificate_callback(&self, ssl: &mut SslRef) {
        for chain in self.certificates.iter() {
            // Each certificate's chain attaches to it (RSA and ECDSA may have different chains).
            let ok = ext::ssl_use_certificate(ssl, &chain.leaf).is_ok()
                && ext::ssl_use_private_key(ssl, &chain.key).is_ok()
                && chain
                    .intermediates
                    .iter()
                    .all(|i| ext::ssl_add_chain_cert(ssl, i).is_ok());
            if !ok {
                tracing::error!(cert = %chain.cert_path.display(), "failed to install certificate");
            }
        }
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &SslRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let sni = ssl
            .servername(openssl::ssl::NameType::HOST_NAME)
            .map(|s| s.to_ascii_lowercase());
        let xfcc = ssl.peer_certificate().map(|c| xfcc_value(&c));
        Some(Arc::new(DownstreamTls {
            chain: self.chain,
            route_table: self.route_table.clone(),
            sni,
            xfcc,
        }))
    }
}

/// Envoy's `x-forwarded-client-cert` for the current client: Hash, Subject, URI and DNS SANs.
pub fn xfcc_value(cert: &X509Ref) -> String {
    let hash = cert
        .digest(MessageDigest::sha256())
        .map(|d| hex(&d))
        .unwrap_or_default();
    let subject: Vec<String> = cert
        .subject_name()
        .entries()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = super::certs::asn1_text(e.data());
            format!("{key}={value}")
        })
        .collect();
    let mut out = format!(
        "Hash={hash};Subject=\"{}\"",
        subject.join(",").replace('"', "\\\"")
    );
    if let Some(names) = cert.subject_alt_names() {
        for n in names.iter() {
            if let Some(uri) = n.uri() {
                out.push_str(&format!(";URI={uri}"));
            }
        }
        for n in names.iter() {
            if let Some(dns) = n.dnsname() {
                out.push_str(&format!(";DNS={dns}"));
            }
        }
    }
    out
}

/// An acceptor that fails every handshake with `unrecognized_name`: used when no filter chain
/// matches the SNI and there is no `*` server.
pub fn reject_unknown_sni() -> Result<SslAcceptor, TlsError> {
    let mut b =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(|source| {
            TlsError::Setting {
                what: "TLS setup",
                source,
            }
        })?;
    b.set_servername_callback(|_, alert| {
        *alert = SslAlert::UNRECOGNIZED_NAME;
        Err(SniError::ALERT_FATAL)
    });
    Ok(b.build())
}
