//! HTTPS and TLS servers: filter chains chosen by SNI (terminate then route, terminate then
//! proxy TCP, or pass through), and each terminating server's certificates and TLS settings.

use std::sync::Arc;

use super::http::http_route_table;
use super::select::SelectedServer;
use super::tcp::{passthrough_routes, tcp_route};
use super::{ChainAction, FilterChain, TlsChains};
use crate::compile::cluster::ClusterBuilder;
use crate::compile::host_index::HostIndex;
use crate::compile::Instance;
use crate::config::diag::Diagnostic;
use crate::config::host::HostPattern;
use crate::config::load::Resources;
use crate::config::types::{Protocol, ServerTlsMode};
use crate::tls::certs::{load_certificates, resolve_credential, CertChain, Credential};
use crate::tls::server::{self as server_tls, ServerTls, ServerTlsSpec};

pub(super) fn tls_chains(
    servers: &[SelectedServer<'_>],
    resources: &Resources,
    instance: &Instance,
    clusters: &mut ClusterBuilder<'_>,
    diags: &mut Vec<Diagnostic>,
) -> TlsChains {
    let mut chains: Vec<FilterChain> = Vec::new();
    let mut index: HostIndex<usize> = HostIndex::new();
    let mut add = |chains: &mut Vec<FilterChain>,
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
                s.gateway.reporter(diags).warn(
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
                    add(&mut chains, names, chain, s, diags);
                }
            }
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
                let http = s.protocol == Protocol::Https;
                let Some(tls) = server_tls_for(s, instance, http, diags) else {
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
                add(&mut chains, names, chain, s, diags);
            }
            // Rejected by validation; nothing to serve.
            ServerTlsMode::AutoPassthrough | ServerTlsMode::IstioMutual => {}
        }
    }
    TlsChains { chains, index }
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
    let fail =
        |report: &mut crate::config::diag::Reporter<'_>, field: &str, e: &dyn std::fmt::Display| {
            report.error(format!("{path}.{field}"), e.to_string());
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
            Err(e) => fail(&mut report, &field, &e),
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
    let mut failed = false;
    for (cred, field) in &sources {
        match CertChain::load(&cred.cert, &cred.key) {
            Ok(chain) => {
                if let Some(w) = chain.expiry_warning() {
                    report.warn(format!("{path}.{field}"), w);
                }
                certificates.push(chain);
            }
            Err(e) => {
                failed = true;
                fail(&mut report, field, &e);
            }
        }
        if let Some(ca) = &cred.ca {
            match load_certificates(ca) {
                Ok(c) => client_ca.extend(c),
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
                report.warn(format!("{path}.cipherSuites"), w);
            }
            Some(Arc::new(server))
        }
        Err(e) => {
            fail(&mut report, "mode", &e);
            None
        }
    }
}
