//! Certificate files: PEM chains and keys from paths, and `credentialName` resolved to a folder
//! under `--certs` with the layout of a mounted Kubernetes TLS Secret.

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
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<CertChain, String> {
        let certs = load_certificates(cert_path)?;
        let key_pem = std::fs::read(key_path)
            .map_err(|e| format!("cannot read private key {}: {e}", key_path.display()))?;
        let key = PKey::private_key_from_pem(&key_pem).map_err(|e| {
            format!(
                "{} is not a PEM private key: {}",
                key_path.display(),
                first_ssl_error(&e)
            )
        })?;
        let mut iter = certs.into_iter();
        let leaf = iter
            .next()
            .ok_or_else(|| format!("{} has no certificate", cert_path.display()))?;
        let public = leaf
            .public_key()
            .map_err(|e| format!("{}: unreadable public key: {e}", cert_path.display()))?;
        if !public.public_eq(&key) {
            return Err(format!(
                "private key {} does not belong to certificate {}",
                key_path.display(),
                cert_path.display()
            ));
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
pub fn load_certificates(path: &Path) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read certificate {}: {e}", path.display()))?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| {
        format!(
            "{} is not a PEM certificate: {}",
            path.display(),
            first_ssl_error(&e)
        )
    })?;
    if certs.is_empty() {
        return Err(format!("{} contains no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn first_ssl_error(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|e| e.reason().map(str::to_string))
        .unwrap_or_else(|| e.to_string())
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
pub fn resolve_credential(certs_dir: &Path, name: &str) -> Result<Credential, String> {
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
        _ if !dir.is_dir() => Err(format!(
            "credential `{name}` not found: expected a folder {} with tls.crt and tls.key",
            dir.display()
        )),
        _ => Err(format!(
            "credential `{name}`: {} must hold tls.crt and tls.key (or cert and key)",
            dir.display()
        )),
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
pub fn load_crl(path: &Path, cas: &[X509]) -> Result<openssl::x509::X509Crl, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read CRL {}: {e}", path.display()))?;
    let crl = openssl::x509::X509Crl::from_pem(&bytes)
        .or_else(|_| openssl::x509::X509Crl::from_der(&bytes))
        .map_err(|e| {
            format!(
                "{} is not a PEM or DER CRL: {}",
                path.display(),
                first_ssl_error(&e)
            )
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
        return Err(format!(
            "CRL {} is not signed by any of the client CA certificates",
            path.display()
        ));
    }
    Ok(crl)
}
