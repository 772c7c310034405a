//! Certificate files: PEM chains and keys from paths, and `credentialName` resolved to a folder
//! under `--certs` with the layout of a mounted Kubernetes TLS Secret.

use super::error::{first_ssl_error, TlsError};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

/// Warn when a served certificate expires within this many days.
pub const EXPIRY_WARNING_DAYS: u32 = 30;

/// A certificate chain (leaf first) and its private key.
#[derive(Clone)]
pub struct CertChain {
    pub leaf: X509,
    pub intermediates: Vec<X509>,
    pub key: PKey<Private>,
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for CertChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertChain")
            .field("cert_path", &self.cert_path)
            .field("subject", &subject_summary(&self.leaf))
            .finish()
    }
}

impl CertChain {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<CertChain, TlsError> {
        let certs = load_certificates(cert_path)?;
        let key_pem = std::fs::read(key_path).map_err(|source| TlsError::Read {
            what: "private key",
            path: key_path.into(),
            source,
        })?;
        let key = PKey::private_key_from_pem(&key_pem).map_err(|e| TlsError::Parse {
            what: "PEM private key",
            path: key_path.into(),
            reason: first_ssl_error(&e),
        })?;
        let mut iter = certs.into_iter();
        let leaf = iter
            .next()
            .ok_or_else(|| TlsError::NoCertificate(cert_path.into()))?;
        let matches = leaf.public_key().is_ok_and(|public| public.public_eq(&key));
        if !matches {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.into(),
                key: key_path.into(),
            });
        }
        Ok(CertChain {
            leaf,
            intermediates: iter.collect(),
            key,
            cert_path: cert_path.to_path_buf(),
        })
    }

    /// A warning if the leaf expires within [`EXPIRY_WARNING_DAYS`] (or has expired).
    pub fn expiry_warning(&self) -> Option<String> {
        expiry_warning(&self.leaf, &self.cert_path)
    }
}

pub fn expiry_warning(cert: &X509, path: &Path) -> Option<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    let now = Asn1Time::from_unix(now).ok()?;
    let diff = now.diff(cert.not_after()).ok()?;
    if diff.days < 0 || (diff.days == 0 && diff.secs < 0) {
        return Some(format!(
            "certificate {} ({}) expired on {}",
            path.display(),
            subject_summary(cert),
            cert.not_after()
        ));
    }
    if diff.days < EXPIRY_WARNING_DAYS as i32 {
        return Some(format!(
            "certificate {} ({}) expires in {} days, on {}",
            path.display(),
            subject_summary(cert),
            diff.days,
            cert.not_after()
        ));
    }
    None
}

/// All certificates in a PEM file (a chain or a CA bundle).
pub fn load_certificates(path: &Path) -> Result<Vec<X509>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "certificate",
        path: path.into(),
        source,
    })?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| TlsError::Parse {
        what: "PEM certificate",
        path: path.into(),
        reason: first_ssl_error(&e),
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.into()));
    }
    Ok(certs)
}

/// `CN=…, SAN=…` for logs.
pub fn subject_summary(cert: &X509) -> String {
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| asn1_text(e.data()))
        .unwrap_or_default();
    let sans: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if sans.is_empty() {
        format!("CN={cn}")
    } else {
        format!("CN={cn}, SAN={}", sans.join(","))
    }
}

/// The files of a `credentialName` under the certs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    /// `ca.crl` beside the CA: client certificates it revokes are refused.
    pub crl: Option<PathBuf>,
}

/// Resolves `credentialName: NAME` to `<certs>/NAME/{tls.crt,tls.key[,ca.crt]}`, also accepting
/// `cert`/`key`/`cacert` and a companion `<certs>/NAME-cacert/` folder, as Istio's SDS does for
/// Kubernetes Secrets.
pub fn resolve_credential(certs_dir: &Path, name: &str) -> Result<Credential, TlsError> {
    let name = name
        .strip_prefix("kubernetes://")
        .or_else(|| name.strip_prefix("kubernetes-gateway://"))
        .unwrap_or(name);
    // A `namespace/name` reference uses the name (one certs directory per instance).
    let name = name.rsplit('/').next().unwrap_or(name);
    let dir = certs_dir.join(name);
    let first =
        |dir: &Path, names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| p.is_file());
    let cert = first(&dir, &["tls.crt", "cert"]);
    let key = first(&dir, &["tls.key", "key"]);
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Credential {
            cert,
            key,
            ca: first(&dir, &["ca.crt", "cacert"]).or_else(|| {
                first(
                    &certs_dir.join(format!("{name}-cacert")),
                    &["ca.crt", "cacert"],
                )
            }),
            crl: first(&dir, &["ca.crl"])
                .or_else(|| first(&certs_dir.join(format!("{name}-cacert")), &["ca.crl"])),
        }),
        _ if !dir.is_dir() => Err(TlsError::CredentialNotFound {
            name: name.to_string(),
            dir,
        }),
        _ => Err(TlsError::CredentialIncomplete {
            name: name.to_string(),
            dir,
        }),
    }
}

/// Only the CA of a credential (`NAME` or `NAME-cacert`), for `caCertCredentialName` and
/// DestinationRule credentials that carry only a CA.
pub fn resolve_ca_credential(certs_dir: &Path, name: &str) -> Option<PathBuf> {
    [name.to_string(), format!("{name}-cacert")]
        .iter()
        .flat_map(|n| ["ca.crt", "cacert"].map(|f| certs_dir.join(n).join(f)))
        .find(|p| p.is_file())
}

/// An ASN.1 string as text (lossy for non-UTF-8 content).
pub fn asn1_text(s: &openssl::asn1::Asn1StringRef) -> String {
    String::from_utf8_lossy(s.as_slice()).into_owned()
}

/// A certificate revocation list (PEM or DER), checked against the CAs that may have signed it.
pub fn load_crl(path: &Path, cas: &[X509]) -> Result<openssl::x509::X509Crl, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "CRL",
        path: path.into(),
        source,
    })?;
    let crl = openssl::x509::X509Crl::from_pem(&bytes)
        .or_else(|_| openssl::x509::X509Crl::from_der(&bytes))
        .map_err(|e| TlsError::Parse {
            what: "PEM or DER CRL",
            path: path.into(),
            reason: first_ssl_error(&e),
        })?;
    let signed = cas.iter().any(|ca| {
        ca.subject_name()
            .try_cmp(crl.issuer_name())
            .is_ok_and(|o| o.is_eq())
            && ca
                .public_key()
                .and_then(|k| crl.verify(&k))
                .unwrap_or(false)
    });
    if !signed {
        return Err(TlsError::CrlNotSigned(path.into()));
    }
    Ok(crl)
}
