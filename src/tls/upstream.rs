//! TLS the gateway originates towards upstreams (DestinationRule `trafficPolicy.tls`), prepared
//! once per compile: CA bundle, client certificate, SNI, SAN checks, and the pool key part.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use openssl::x509::X509;
use pingora::utils::tls::CertKey;

use super::certs::{load_certificates, resolve_credential, CertChain};
use super::error::TlsError;
use crate::config::types::{ClientTls, ClientTlsMode};

/// Compiled origination settings for one cluster.
#[derive(Clone)]
pub struct OriginationTls {
    /// The SNI to send: the DR's `sni`, else the destination host (filled in by the cluster
    /// build); `None` only for wildcard or IP destinations, which use the request's host.
    pub sni: Option<String>,
    pub verify: bool,
    /// `None`: the system trust store.
    pub ca: Option<Arc<Box<[X509]>>>,
    pub client_cert: Option<Arc<CertKey>>,
    /// Names accepted in the upstream certificate besides the SNI (DR `subjectAltNames`).
    pub subject_alt_names: Vec<String>,
    /// Distinguishes pools of connections made with different CA/client cert/SNI settings.
    pub policy_key: u64,
    /// Checks `subject_alt_names` when a connection is made (see [`SanCheck`]).
    pub san_check: Option<pingora::protocols::tls::HandshakeCompleteHook>,
    pub mode: ClientTlsMode,
}

impl std::fmt::Debug for OriginationTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginationTls")
            .field("mode", &self.mode)
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("custom_ca", &self.ca.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .field("subject_alt_names", &self.subject_alt_names)
            .finish()
    }
}

impl serde::Serialize for OriginationTls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("OriginationTls", 6)?;
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("sni", &self.sni)?;
        st.serialize_field("verify", &self.verify)?;
        st.serialize_field("custom_ca", &self.ca.is_some())?;
        st.serialize_field("client_certificate", &self.client_cert.is_some())?;
        st.serialize_field("subject_alt_names", &self.subject_alt_names)?;
        st.end()
    }
}

impl OriginationTls {
    /// `Ok(None)` for `DISABLE` (or no TLS settings).
    pub fn compile(
        tls: &ClientTls,
        certs_dir: &Path,
        se_sans: &[String],
    ) -> Result<Option<OriginationTls>, TlsError> {
        let mode = tls.mode;
        if matches!(mode, ClientTlsMode::Disable) {
            return Ok(None);
        }
        if matches!(mode, ClientTlsMode::IstioMutual) {
            return Err(TlsError::Unsupported(
                "ISTIO_MUTUAL needs Istio's mesh certificates; use SIMPLE or MUTUAL",
            ));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let credential = match &tls.credential_name {
            Some(name) => Some(resolve_credential(certs_dir, name)?),
            None => None,
        };
        let ca_path = tls
            .ca_certificates
            .as_deref()
            .filter(|p| !p.is_empty() && *p != "system")
            .map(std::path::PathBuf::from)
            .or_else(|| credential.as_ref().and_then(|c| c.ca.clone()));
        let ca = match &ca_path {
            Some(path) => {
                let certs = load_certificates(path)?;
                for c in &certs {
                    c.to_der().unwrap_or_default().hash(&mut hasher);
                }
                Some(Arc::new(certs.into_boxed_slice()))
            }
            None => None,
        };
        let client_cert = if matches!(mode, ClientTlsMode::Mutual) {
            let (cert, key) = match (&tls.client_certificate, &tls.private_key, &credential) {
                (Some(c), Some(k), _) => (c.into(), k.into()),
                (_, _, Some(cred)) => (cred.cert.clone(), cred.key.clone()),
                _ => return Err(TlsError::Unsupported(
                    "MUTUAL origination needs clientCertificate and privateKey, or credentialName",
                )),
            };
            let chain = CertChain::load(&cert, &key)?;
            chain.leaf.to_der().unwrap_or_default().hash(&mut hasher);
            let mut certs = vec![chain.leaf];
            certs.extend(chain.intermediates);
            Some(Arc::new(CertKey::new(certs, chain.key)))
        } else {
            None
        };
        let verify = !tls.insecure_skip_verify.unwrap_or(false);
        let subject_alt_names = if tls.subject_alt_names.is_empty() {
            se_sans.to_vec()
        } else {
            tls.subject_alt_names.clone()
        };
        tls.sni.hash(&mut hasher);
        verify.hash(&mut hasher);
        subject_alt_names.hash(&mut hasher);
        let san_check =
            (verify && !subject_alt_names.is_empty()).then(|| SanCheck::hook(&subject_alt_names));
        Ok(Some(OriginationTls {
            san_check,
            sni: tls.sni.clone().filter(|s| !s.is_empty()),
            verify,
            ca,
            client_cert,
            subject_alt_names,
            policy_key: hasher.finish(),
            mode,
        }))
    }
}

/// Istio: with DestinationRule `subjectAltNames`, the upstream certificate must carry one of
/// them (the SNI alone is not enough). Pingora can only add names to its hostname check, so the
/// chain is verified by OpenSSL and the SANs by this hook, whose result the proxy reads from the
/// connection's digest ([`SanCheck::failure`]).
#[derive(Debug)]
pub struct SanCheck {
    pub ok: bool,
    pub presented: Vec<String>,
    pub wanted: Arc<[String]>,
}

impl SanCheck {
    fn hook(wanted: &[String]) -> pingora::protocols::tls::HandshakeCompleteHook {
        let wanted: Arc<[String]> = wanted.into();
        Arc::new(move |ssl| {
            let presented = ssl
                .peer_certificate()
                .map(|c| super::server::cert_sans(&c))
                .unwrap_or_default();
            let ok = presented
                .iter()
                .any(|s| wanted.iter().any(|w| san_matches(w, s)));
            Some(Arc::new(SanCheck {
                ok,
                presented,
                wanted: wanted.clone(),
            }) as Arc<dyn std::any::Any + Send + Sync>)
        })
    }

    /// The failure reason for a connection whose certificate carries none of the wanted names.
    pub fn failure(digest: Option<&pingora::protocols::Digest>) -> Option<String> {
        let check = digest?.ssl_digest.as_ref()?.extension.get::<SanCheck>()?;
        (!check.ok).then(|| {
            format!(
                "upstream certificate SANs [{}] include none of subjectAltNames [{}]",
                check.presented.join(", "),
                check.wanted.join(", ")
            )
        })
    }
}

/// A DR subjectAltNames entry against a certificate SAN (a `*.` SAN covers one label).
fn san_matches(wanted: &str, presented: &str) -> bool {
    if wanted.eq_ignore_ascii_case(presented) {
        return true;
    }
    match presented.strip_prefix("*.") {
        Some(suffix) => wanted
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => false,
    }
}
