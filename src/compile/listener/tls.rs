//! HTTPS and TLS servers: filter chains chosen by SNI (terminate then route, terminate then
//! proxy TCP, or pass through), and each terminating server's certificates and TLS settings.
//!
//! A terminating server whose certificate cannot be loaded (a missing or broken credential) is
//! left out with an error while the other servers on its port keep serving, as Envoy serves a
//! listener while SDS has no secret for one of its filter chains: the server's names stay
//! claimed, so a client asking for them fails the handshake instead of reaching another
//! server's certificate (`*`). The same holds for the modes a standalone gateway cannot serve
//! (ISTIO_MUTUAL, AUTO_PASSTHROUGH).
//!
//! A certificate file that was loaded before and now cannot be (a rotation to a broken file)
//! keeps serving its last good contents ([`CredentialMemory`]), as Envoy rejects an SDS update
//! it cannot use and keeps the secret it has.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openssl::x509::X509;

use super::http::http_route_table;
use super::select::SelectedServer;
use super::tcp::{passthrough_routes, tcp_route};
use super::{ChainAction, FilterChain, TlsChains};
use crate::compile::cluster::ClusterBuilder;
use crate::compile::host_index::HostIndex;
use crate::compile::Instance;
use crate::config::diag::code::INVALID_GATEWAY_CREDENTIAL;
use crate::config::diag::Diagnostic;
use crate::config::host::HostPattern;
use crate::config::load::Resources;
use crate::config::types::{Protocol, ServerTlsMode};
use crate::tls::certs::{load_certificates, resolve_credential, CertChain, Credential};
use crate::tls::server::{self as server_tls, ServerTls, ServerTlsSpec};
use crate::tls::TlsError;

pub(super) fn tls_chains(
    servers: &[SelectedServer<'_>],
    resources: &Resources,
    instance: &Instance,
    clusters: &mut ClusterBuilder<'_>,
    diags: &mut Vec<Diagnostic>,
) -> TlsChains {
    let mut chains: Vec<FilterChain> = Vec::new();
    let mut index: HostIndex<usize> = HostIndex::new();
    let add = |chains: &mut Vec<FilterChain>,
               index: &mut HostIndex<usize>,
               names: Vec<HostPattern>,
               chain: FilterChain,
               s: &SelectedServer<'_>,
               diags: &mut Vec<Diagnostic>| {
        let i = chains.len();
        let mut used = Vec::new();
        for n in names {
            if index.insert(&n, i) {
                used.push(n.to_string());
            } else {
                s.gateway.reporter(diags).note(
                    format!("{}.hosts", s.path()),
                    format!(
                        "host {n} is already served on {} by an earlier server; duplicate skipped",
                        s.address
                    ),
                );
            }
        }
        if !used.is_empty() {
            chains.push(FilterChain {
                server_names: used,
                ..chain
            });
        }
    };
    for s in servers {
        let key = s.key();
        let mode = s.tls_mode();
        let table_name = format!(
            "https.{}.{}.{}.{}",
            s.gateway_port,
            s.server
                .port
                .as_ref()
                .map(|p| p.name.as_str())
                .unwrap_or(""),
            s.gateway.meta.name,
            s.gateway.meta.namespace
        );
        match mode {
            ServerTlsMode::Passthrough => {
                for (names, route) in
                    passthrough_routes(s, &key, resources, instance, clusters, diags)
                {
                    let chain = FilterChain {
                        name: format!("{table_name}.passthrough"),
                        server_names: Vec::new(),
                        action: ChainAction::Passthrough { route },
                    };
                    add(&mut chains, &mut index, names, chain, s, diags);
                }
            }
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
                let http = s.protocol == Protocol::Https;
                let Some(tls) = server_tls_for(s, instance, http, diags) else {
                    claim_unavailable(&mut index, s);
                    continue;
                };
                let names: Vec<HostPattern> = s.hosts().into_iter().map(|h| h.host).collect();
                let action = if http {
                    let routes = http_route_table(
                        table_name.clone(),
                        std::slice::from_ref(s),
                        resources,
                        instance,
                        clusters,
                        &[],
                        diags,
                    );
                    ChainAction::TerminateHttp {
                        tls,
                        routes: Arc::new(routes),
                    }
                } else {
                    ChainAction::TerminateTcp {
                        tls,
                        route: tcp_route(s, resources, instance, clusters, diags),
                    }
                };
                let chain = FilterChain {
                    name: table_name,
                    server_names: Vec::new(),
                    action,
                };
                add(&mut chains, &mut index, names, chain, s, diags);
            }
            // Reported by validation (the server is left out); its names still fail.
            ServerTlsMode::AutoPassthrough | ServerTlsMode::IstioMutual => {
                claim_unavailable(&mut index, s)
            }
        }
    }
    TlsChains { chains, index }
}

/// Keeps a left-out server's names: a handshake for them fails (see [`TlsChains::select`])
/// rather than falling through to a wildcard server.
fn claim_unavailable(index: &mut HostIndex<usize>, s: &SelectedServer<'_>) {
    for h in s.hosts() {
        index.insert(&h.host, TlsChains::UNAVAILABLE);
    }
}

/// The last good certificate chain and CA bundle loaded from each file, shared by the compiles
/// of one running gateway (it travels in [`Instance`]).
#[derive(Clone, Default)]
pub struct CredentialMemory(Arc<Mutex<Memory>>);

#[derive(Default)]
struct Memory {
    chains: HashMap<(PathBuf, PathBuf), CertChain>,
    cas: HashMap<PathBuf, Vec<X509>>,
}

impl std::fmt::Debug for CredentialMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialMemory")
    }
}

/// A load, or the last good one of the same file when this one failed (with why).
type Remembered<T> = Result<(T, Option<TlsError>), TlsError>;

impl CredentialMemory {
    fn chain(&self, cert: &Path, key: &Path) -> Remembered<CertChain> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let k = (cert.to_path_buf(), key.to_path_buf());
        match CertChain::load(cert, key) {
            Ok(chain) => {
                m.chains.insert(k, chain.clone());
                Ok((chain, None))
            }
            Err(e) => match m.chains.get(&k) {
                Some(previous) => Ok((previous.clone(), Some(e))),
                None => Err(e),
            },
        }
    }

    fn cas(&self, path: &Path) -> Remembered<Vec<X509>> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match load_certificates(path) {
            Ok(cas) => {
                m.cas.insert(path.to_path_buf(), cas.clone());
                Ok((cas, None))
            }
            Err(e) => match m.cas.get(path) {
                Some(previous) => Ok((previous.clone(), Some(e))),
                None => Err(e),
            },
        }
    }
}

/// Loads a terminating server's certificates and builds its acceptor.
fn server_tls_for(
    s: &SelectedServer<'_>,
    instance: &Instance,
    http: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arc<ServerTls>> {
    let tls = s.server.tls.as_ref()?;
    let path = format!("{}.tls", s.path());
    let mut report = s.gateway.reporter(diags);
    let mut sources: Vec<(Credential, String)> = Vec::new();
    let fail = |report: &mut crate::config::diag::Reporter<'_>,
                field: &str,
                e: &dyn std::fmt::Display| {
        report.error_part(
                Some(INVALID_GATEWAY_CREDENTIAL),
                format!("{path}.{field}"),
                format!("{e}; this server is left out (its hosts fail the TLS handshake) while the rest of the port serves"),
            );
    };
    if let (Some(cert), Some(key)) = (&tls.server_certificate, &tls.private_key) {
        sources.push((
            Credential {
                cert: cert.into(),
                key: key.into(),
                ca: tls.ca_certificates.as_ref().map(Into::into),
                crl: tls.ca_crl.as_ref().map(Into::into),
            },
            "serverCertificate".into(),
        ));
    }
    let mut unresolved = false;
    let names: Vec<&String> = tls
        .credential_name
        .iter()
        .chain(tls.credential_names.iter())
        .collect();
    for (i, name) in names.iter().enumerate() {
        let field = if tls.credential_name.is_some() && i == 0 {
            "credentialName".to_string()
        } else {
            format!(
                "credentialNames[{}]",
                i - usize::from(tls.credential_name.is_some())
            )
        };
        match resolve_credential(&instance.certs_dir, name) {
            Ok(c) => sources.push((c, field)),
            Err(e) => {
                unresolved = true;
                fail(&mut report, &field, &e);
            }
        }
    }
    for (i, tc) in tls.tls_certificates.iter().enumerate() {
        if let (Some(cert), Some(key)) = (&tc.server_certificate, &tc.private_key) {
            sources.push((
                Credential {
                    cert: cert.into(),
                    key: key.into(),
                    ca: tc.ca_certificates.as_ref().map(Into::into),
                    crl: None,
                },
                format!("tlsCertificates[{i}]"),
            ));
        }
    }
    let mut certificates = Vec::new();
    let mut client_ca = Vec::new();
    let mut failed = unresolved;
    let memory = &instance.credentials;
    let kept = |report: &mut crate::config::diag::Reporter<'_>, field: &str, e: TlsError| {
        report.finding(
            crate::config::Severity::Warning,
            INVALID_GATEWAY_CREDENTIAL,
            format!("{path}.{field}"),
            format!("{e}; its last good contents keep serving until the file is fixed"),
        );
    };
    for (cred, field) in &sources {
        match memory.chain(&cred.cert, &cred.key) {
            Ok((chain, stale)) => {
                if let Some(e) = stale {
                    kept(&mut report, field, e);
                } else if let Some(w) = chain.expiry_warning() {
                    report.note(format!("{path}.{field}"), w);
                }
                certificates.push(chain);
            }
            Err(e) => {
                failed = true;
                fail(&mut report, field, &e);
            }
        }
        if let Some(ca) = &cred.ca {
            match memory.cas(ca) {
                Ok((c, stale)) => {
                    if let Some(e) = stale {
                        kept(&mut report, field, e);
                    }
                    client_ca.extend(c)
                }
                Err(e) => {
                    failed = true;
                    fail(&mut report, field, &e);
                }
            }
        }
    }
    if let Some(name) = &tls.ca_cert_credential_name {
        match crate::tls::certs::resolve_ca_credential(&instance.certs_dir, name)
            .map(|p| load_certificates(&p))
        {
            Some(Ok(c)) => client_ca = c,
            Some(Err(e)) => {
                failed = true;
                fail(&mut report, "caCertCredentialName", &e);
            }
            None => {
                failed = true;
                fail(
                    &mut report,
                    "caCertCredentialName",
                    &format!("no ca.crt found for credential `{name}`"),
                );
            }
        }
    }
    let mut crls = Vec::new();
    if matches!(
        tls.mode(),
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    ) {
        for (cred, field) in &sources {
            let Some(path) = &cred.crl else { continue };
            let field = if tls.ca_crl.is_some() && field == "serverCertificate" {
                "caCrl"
            } else {
                field
            };
            match crate::tls::certs::load_crl(path, &client_ca) {
                Ok(crl) => crls.push(crl),
                Err(e) => {
                    failed = true;
                    fail(&mut report, field, &e);
                }
            }
        }
    }
    if failed {
        return None;
    }
    if certificates.is_empty() {
        fail(
            &mut report,
            "mode",
            &format!(
                "{:?} needs a certificate (serverCertificate and privateKey, or credentialName)",
                tls.mode()
            ),
        );
        return None;
    }
    let spec = ServerTlsSpec {
        crls,
        mode: tls.mode(),
        certificates,
        client_ca,
        min_version: tls.min_protocol_version,
        max_version: tls.max_protocol_version,
        cipher_suites: tls.cipher_suites.clone(),
        ecdh_curves: tls.ecdh_curves.clone(),
        subject_alt_names: tls.subject_alt_names.clone(),
        verify_spki: tls.verify_certificate_spki.clone(),
        verify_hash: tls.verify_certificate_hash.clone(),
        http_alpn: http,
    };
    match server_tls::build(spec) {
        Ok((server, warnings)) => {
            for w in warnings {
                report.note(format!("{path}.cipherSuites"), w);
            }
            Some(Arc::new(server))
        }
        Err(e) => {
            fail(&mut report, "mode", &e);
            None
        }
    }
}
