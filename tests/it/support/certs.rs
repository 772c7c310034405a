//! Test PKI made at test time with the `openssl` crate: CAs, intermediates, server and client
//! leaf certificates, fingerprints in Istio's formats, and writers for the on-disk layouts the
//! gateway reads (plain files, a mounted Kubernetes TLS Secret, and the kubelet's atomic
//! `..data` symlink layout).
//!
//! Keys are ECDSA P-256 unless asked otherwise; private keys are always written as PKCS#8 PEM.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509NameRef, X509};

pub use super::k8s::{k8s_volume_swap, k8s_volume_write};

/// Key algorithm of a generated certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyType {
    /// RSA 2048.
    Rsa,
    /// ECDSA P-256 (default: fast to generate).
    #[default]
    Ecdsa,
}

/// Options for [`Ca::server_cert_with`] / [`Ca::client_cert_with`].
#[derive(Clone, Debug)]
pub struct CertOpts {
    /// SANs: DNS names (wildcards allowed), IP literals (become IP SANs) or URIs (contain `://`).
    pub sans: Vec<String>,
    /// Subject CN; defaults to the first SAN (or "leaf").
    pub cn: Option<String>,
    pub key: KeyType,
    /// `notAfter` = now + this many days. Negative makes an already expired certificate.
    pub validity_days: i64,
    /// Set to `false` to omit the extended-key-usage extension entirely.
    pub with_eku: bool,
}

impl Default for CertOpts {
    fn default() -> Self {
        CertOpts {
            sans: Vec::new(),
            cn: None,
            key: KeyType::Ecdsa,
            validity_days: 90,
            with_eku: true,
        }
    }
}

impl CertOpts {
    /// Options with the given SANs and everything else default.
    pub fn sans(sans: &[&str]) -> Self {
        CertOpts {
            sans: sans.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
}

/// A certificate authority (root or intermediate) that can issue certificates.
#[derive(Clone)]
pub struct Ca {
    /// This CA's own certificate.
    pub cert: X509,
    pub key: PKey<Private>,
    /// This CA's certificate followed by its issuing intermediates, excluding the root.
    /// Empty for a root.
    pub intermediates: Vec<X509>,
    /// The self-signed root at the top of this CA's chain (== `cert` for a root).
    pub root: X509,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ca({})",
            subject_cn(self.cert.subject_name()).unwrap_or_default()
        )
    }
}

/// A leaf certificate with its key.
#[derive(Clone)]
pub struct CertKey {
    /// Leaf PEM followed by the intermediate PEMs (full chain, root excluded).
    pub cert_pem: String,
    /// PKCS#8 PEM private key.
    pub key_pem: String,
    pub leaf: X509,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CertKey({})",
            subject_cn(self.leaf.subject_name()).unwrap_or_default()
        )
    }
}

fn gen_key(kind: KeyType) -> PKey<Private> {
    match kind {
        KeyType::Rsa => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        KeyType::Ecdsa => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
        }
    }
}

fn name(cn: &str) -> X509Name {
    let mut b = X509Name::builder().unwrap();
    b.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Portcullis Test")
        .unwrap();
    b.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    b.build()
}

fn serial() -> Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(127, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Validity window: notBefore one hour ago (clock skew), notAfter `days` from now.
fn validity(days: i64) -> (Asn1Time, Asn1Time) {
    let now = now_unix();
    let not_after = now + days * 86_400;
    let not_before = (now - 3600).min(not_after - 86_400);
    (
        Asn1Time::from_unix(not_before).unwrap(),
        Asn1Time::from_unix(not_after).unwrap(),
    )
}

/// First CN of an X.509 name.
pub fn subject_cn(name: &X509NameRef) -> Option<String> {
    name.entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
}

/// SANs of a certificate as strings: DNS names and URIs verbatim, IPs formatted, emails verbatim.
pub fn cert_sans(cert: &X509) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(names) = cert.subject_alt_names() {
        for n in names.iter() {
            if let Some(d) = n.dnsname() {
                out.push(d.to_string());
            } else if let Some(u) = n.uri() {
                out.push(u.to_string());
            } else if let Some(ip) = n.ipaddress() {
                let ip = match ip.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(ip).unwrap()).to_string(),
                    16 => IpAddr::from(<[u8; 16]>::try_from(ip).unwrap()).to_string(),
                    _ => format!("{ip:?}"),
                };
                out.push(ip);
            } else if let Some(e) = n.email() {
                out.push(e.to_string());
            }
        }
    }
    out
}

/// Lower-case hex SHA-256 of a certificate's DER (Istio `verifyCertificateHash` format without colons).
pub fn cert_sha256_hex(cert: &X509) -> String {
    hex(&openssl::sha::sha256(&cert.to_der().unwrap()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pem(cert: &X509) -> String {
    String::from_utf8(cert.to_pem().unwrap()).unwrap()
}

impl Ca {
    /// A CRL (PEM) signed by this CA, revoking `revoked` (certificates this CA issued).
    pub fn crl(&self, revoked: &[&CertKey]) -> String {
        use openssl::x509::{X509CrlBuilder, X509RevokedBuilder};
        let mut b = X509CrlBuilder::new().unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_last_update(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_next_update(&Asn1Time::days_from_now(7).unwrap())
            .unwrap();
        for ck in revoked {
            let mut r = X509RevokedBuilder::new().unwrap();
            r.set_serial_number(ck.leaf.serial_number()).unwrap();
            r.set_revocation_date(&Asn1Time::days_from_now(0).unwrap())
                .unwrap();
            b.add_revoked(r.build()).unwrap();
        }
        // OpenSSL requires the Authority Key Identifier: SEQUENCE { [0] keyIdentifier }.
        let kid = match self.cert.subject_key_id() {
            Some(k) => k.as_slice().to_vec(),
            None => {
                openssl::sha::sha1(&self.cert.public_key().unwrap().public_key_to_der().unwrap())
                    .to_vec()
            }
        };
        let mut der = vec![0x30, kid.len() as u8 + 2, 0x80, kid.len() as u8];
        der.extend_from_slice(&kid);
        let aki = openssl::x509::X509Extension::new_from_der(
            &openssl::asn1::Asn1Object::from_str("2.5.29.35").unwrap(),
            false,
            &openssl::asn1::Asn1OctetString::new_from_bytes(&der).unwrap(),
        )
        .unwrap();
        b.append_extension(aki).unwrap();
        // CRL Number 1: INTEGER 1.
        let number = openssl::x509::X509Extension::new_from_der(
            &openssl::asn1::Asn1Object::from_str("2.5.29.20").unwrap(),
            false,
            &openssl::asn1::Asn1OctetString::new_from_bytes(&[0x02, 0x01, 0x01]).unwrap(),
        )
        .unwrap();
        b.append_extension(number).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().unwrap().to_pem().unwrap()).unwrap()
    }

    /// A new self-signed root CA (ECDSA P-256, 10 years).
    pub fn new(common_name: &str) -> Ca {
        Self::new_with_key(common_name, KeyType::Ecdsa)
    }

    /// A new self-signed root CA with the given key type.
    pub fn new_with_key(common_name: &str, key: KeyType) -> Ca {
        let key = gen_key(key);
        let cert = Self::build_ca_cert(common_name, &key, None);
        Ca {
            root: cert.clone(),
            cert,
            key,
            intermediates: Vec::new(),
        }
    }

    fn build_ca_cert(cn: &str, key: &PKey<Private>, issuer: Option<&Ca>) -> X509 {
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        let subject = name(cn);
        b.set_subject_name(&subject).unwrap();
        match issuer {
            Some(i) => b.set_issuer_name(i.cert.subject_name()).unwrap(),
            None => b.set_issuer_name(&subject).unwrap(),
        }
        let (nb, na) = validity(3650);
        b.set_not_before(&nb).unwrap();
        b.set_not_after(&na).unwrap();
        b.set_pubkey(key).unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .digital_signature()
                .build()
                .unwrap(),
        )
        .unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))
            .unwrap();
        b.append_extension(ski).unwrap();
        if let Some(i) = issuer {
            let aki = AuthorityKeyIdentifier::new()
                .keyid(false)
                .build(&b.x509v3_context(Some(&i.cert), None))
                .unwrap();
            b.append_extension(aki).unwrap();
        }
        let signer = issuer.map(|i| &i.key).unwrap_or(key);
        b.sign(signer, MessageDigest::sha256()).unwrap();
        b.build()
    }

    /// An intermediate CA signed by this CA. Leaves it issues carry the whole chain
    /// (leaf, this intermediate, any higher intermediates) in `cert_pem`.
    pub fn intermediate(&self, cn: &str) -> Ca {
        let key = gen_key(KeyType::Ecdsa);
        let cert = Self::build_ca_cert(cn, &key, Some(self));
        let mut intermediates = vec![cert.clone()];
        intermediates.extend(self.intermediates.iter().cloned());
        Ca {
            cert,
            key,
            intermediates,
            root: self.root.clone(),
        }
    }

    /// PEM of this CA's own certificate.
    pub fn cert_pem(&self) -> String {
        pem(&self.cert)
    }

    /// PEM of the self-signed root at the top of this CA's chain (what a verifier must trust).
    pub fn root_pem(&self) -> String {
        pem(&self.root)
    }

    /// Writes the root PEM to `dir/file_name` and returns its path (e.g. for a
    /// DestinationRule `caCertificates`).
    pub fn write_root_pem(&self, dir: &Path, file_name: &str) -> PathBuf {
        let p = dir.join(file_name);
        std::fs::write(&p, self.root_pem()).unwrap();
        p
    }

    /// Server leaf with the given SANs (DNS, wildcard DNS, or IP literals), serverAuth EKU,
    /// ECDSA key, valid 90 days.
    pub fn server_cert(&self, sans: &[&str]) -> CertKey {
        self.server_cert_with(CertOpts::sans(sans))
    }

    /// Server leaf with explicit options (key type, validity, CN).
    pub fn server_cert_with(&self, opts: CertOpts) -> CertKey {
        self.issue(opts, ExtendedKeyUsage::new().server_auth().build().unwrap())
    }

    /// Client leaf with clientAuth EKU; SANs may be URIs (`spiffe://td/ns/x/sa/y`) or DNS names.
    pub fn client_cert(&self, cn: &str, sans: &[&str]) -> CertKey {
        let mut opts = CertOpts::sans(sans);
        opts.cn = Some(cn.to_string());
        self.client_cert_with(opts)
    }

    /// Client leaf with explicit options.
    pub fn client_cert_with(&self, opts: CertOpts) -> CertKey {
        self.issue(opts, ExtendedKeyUsage::new().client_auth().build().unwrap())
    }

    fn issue(&self, opts: CertOpts, eku: openssl::x509::X509Extension) -> CertKey {
        let key = gen_key(opts.key);
        let cn = opts
            .cn
            .clone()
            .or_else(|| opts.sans.first().cloned())
            .unwrap_or_else(|| "leaf".into());
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name(&cn)).unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        let (nb, na) = validity(opts.validity_days);
        b.set_not_before(&nb).unwrap();
        b.set_not_after(&na).unwrap();
        b.set_pubkey(&key).unwrap();
        b.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        let mut ku = KeyUsage::new();
        ku.critical().digital_signature();
        if opts.key == KeyType::Rsa {
            ku.key_encipherment();
        }
        b.append_extension(ku.build().unwrap()).unwrap();
        if opts.with_eku {
            b.append_extension(eku).unwrap();
        }
        if !opts.sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for s in &opts.sans {
                if s.parse::<IpAddr>().is_ok() {
                    san.ip(s);
                } else if s.contains("://") {
                    san.uri(s);
                } else {
                    san.dns(s);
                }
            }
            let ext = san
                .build(&b.x509v3_context(Some(&self.cert), None))
                .unwrap();
            b.append_extension(ext).unwrap();
        }
        let aki = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&b.x509v3_context(Some(&self.cert), None))
            .unwrap();
        b.append_extension(aki).unwrap();
        // CRL Number 1: INTEGER 1.
        let number = openssl::x509::X509Extension::new_from_der(
            &openssl::asn1::Asn1Object::from_str("2.5.29.20").unwrap(),
            false,
            &openssl::asn1::Asn1OctetString::new_from_bytes(&[0x02, 0x01, 0x01]).unwrap(),
        )
        .unwrap();
        b.append_extension(number).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        let leaf = b.build();
        let mut cert_pem = pem(&leaf);
        for i in &self.intermediates {
            cert_pem.push_str(&pem(i));
        }
        CertKey {
            cert_pem,
            key_pem: String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
            leaf,
        }
    }
}

impl CertKey {
    /// Lower-case hex SHA-256 of the leaf DER (Istio `verifyCertificateHash`, without colons).
    pub fn sha256_hex(&self) -> String {
        cert_sha256_hex(&self.leaf)
    }

    /// Base64 of SHA-256 of the leaf's SubjectPublicKeyInfo DER (Istio `verifyCertificateSpki`).
    pub fn spki_sha256_b64(&self) -> String {
        let spki = self.leaf.public_key().unwrap().public_key_to_der().unwrap();
        openssl::base64::encode_block(&openssl::sha::sha256(&spki))
    }

    /// PEM of the leaf alone (no intermediates).
    pub fn leaf_pem(&self) -> String {
        pem(&self.leaf)
    }

    /// The certificates of `cert_pem` (leaf first).
    pub fn chain(&self) -> Vec<X509> {
        X509::stack_from_pem(self.cert_pem.as_bytes()).unwrap()
    }

    /// Subject CN of the leaf.
    pub fn cn(&self) -> Option<String> {
        subject_cn(self.leaf.subject_name())
    }

    /// SANs of the leaf (see [`cert_sans`]).
    pub fn sans(&self) -> Vec<String> {
        cert_sans(&self.leaf)
    }

    /// The private key.
    pub fn pkey(&self) -> PKey<Private> {
        PKey::private_key_from_pem(self.key_pem.as_bytes()).unwrap()
    }

    /// Writes `dir/name.crt` (chain) and `dir/name.key`; returns `(cert_path, key_path)`.
    pub fn write_files(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }
}

fn credential_files(ck: &CertKey, ca: Option<&Ca>) -> Vec<(String, String)> {
    let mut files = vec![
        ("tls.crt".to_string(), ck.cert_pem.clone()),
        ("tls.key".to_string(), ck.key_pem.clone()),
    ];
    if let Some(ca) = ca {
        files.push(("ca.crt".to_string(), ca.root_pem()));
    }
    files
}

/// Writes a mounted-Kubernetes-TLS-Secret-like credential as plain files:
/// `certs_dir/name/tls.crt` (chain), `tls.key` and, if `ca` is given, `ca.crt` (the root of
/// `ca`, i.e. what validates client certificates for MUTUAL). Returns `certs_dir/name`.
pub fn write_credential(certs_dir: &Path, name: &str, ck: &CertKey, ca: Option<&Ca>) -> PathBuf {
    let dir = certs_dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (f, c) in credential_files(ck, ca) {
        std::fs::write(dir.join(f), c).unwrap();
    }
    dir
}

/// Same content as [`write_credential`] but in the real kubelet Secret-volume layout
/// (timestamped `..2026_…` dir, `..data` symlink, top-level symlinks into `..data`).
/// Returns `certs_dir/name`.
pub fn write_credential_k8s_style(
    certs_dir: &Path,
    name: &str,
    ck: &CertKey,
    ca: Option<&Ca>,
) -> PathBuf {
    let dir = certs_dir.join(name);
    k8s_volume_write(&dir, &owned_pairs(&credential_files(ck, ca)));
    dir
}

/// Atomically replaces a credential written by [`write_credential_k8s_style`] the way kubelet
/// does (new timestamped dir, `..data_tmp` symlink renamed over `..data`, old dir removed).
pub fn swap_k8s_credential(certs_dir: &Path, name: &str, ck: &CertKey, ca: Option<&Ca>) {
    k8s_volume_swap(
        &certs_dir.join(name),
        &owned_pairs(&credential_files(ck, ca)),
    );
}

fn owned_pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}
