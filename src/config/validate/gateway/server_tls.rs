//! A server's `tls` block: which protocols may or must have one, the modes a standalone gateway
//! can serve, certificate sources, protocol versions, client-certificate checks.

use super::super::rules::is_set;
use crate::config::diag::Reporter;
use crate::config::types::{Protocol, Server, ServerTls, ServerTlsMode, TlsProtocolVersion};

fn has_cert_fields(tls: &ServerTls) -> bool {
    tls.server_certificate.is_some()
        || tls.private_key.is_some()
        || tls.ca_certificates.is_some()
        || tls.ca_crl.is_some()
        || tls.credential_name.is_some()
        || !tls.credential_names.is_empty()
        || !tls.tls_certificates.is_empty()
}

/// Anything in `tls` beyond `httpsRedirect`.
fn has_tls_settings(tls: &ServerTls) -> bool {
    *tls != ServerTls {
        https_redirect: tls.https_redirect,
        ..ServerTls::default()
    }
}

fn mode_name(mode: ServerTlsMode) -> &'static str {
    match mode {
        ServerTlsMode::Passthrough => "PASSTHROUGH",
        ServerTlsMode::Simple => "SIMPLE",
        ServerTlsMode::Mutual => "MUTUAL",
        ServerTlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
        ServerTlsMode::IstioMutual => "ISTIO_MUTUAL",
        ServerTlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
    }
}

pub(super) fn check_server_tls(
    r: &mut Reporter,
    base: &str,
    server: &Server,
    protocol: Option<Protocol>,
) {
    let tls_path = format!("{base}.tls");
    let is_tls = matches!(protocol, Some(Protocol::Https | Protocol::Tls));
    let Some(tls) = &server.tls else {
        if is_tls {
            r.error(
                tls_path,
                "Required value: server must have TLS settings for HTTPS/TLS protocols (expected tls.mode SIMPLE or MUTUAL with a certificate, or PASSTHROUGH)",
            );
        }
        return;
    };
    if tls.https_redirect && !protocol.is_some_and(Protocol::is_http) {
        r.warn(
            format!("{tls_path}.httpsRedirect"),
            "tls.httpsRedirect should only be used with HTTP servers; it is ignored here (expected it on a plain HTTP server)",
        );
    }
    match protocol {
        None => return,
        Some(p) if p.is_http() => {
            if has_tls_settings(tls) {
                r.error(
                    tls_path,
                    format!(
                        "server cannot have TLS settings for plain text {p} ports (expected only tls.httpsRedirect, or protocol HTTPS)"
                    ),
                );
            }
            return;
        }
        Some(p) if !is_tls => {
            if has_tls_settings(tls) {
                r.error(
                    tls_path,
                    format!(
                        "server cannot have TLS settings for non HTTPS/TLS ports ({p}) (expected protocol HTTPS or TLS)"
                    ),
                );
            }
            return;
        }
        Some(_) => {}
    }
    let mode = tls.mode();
    let mode_path = format!("{tls_path}.mode");
    match mode {
        // Valid Istio config that a standalone gateway cannot serve: the server is left out
        // (its hosts fail the handshake), the rest of the Gateway serves.
        ServerTlsMode::IstioMutual => {
            r.error_part(
                None,
                mode_path,
                "ISTIO_MUTUAL needs Istio's mesh certificates, which a standalone gateway does not have, so this server is left out (use MUTUAL with caCertificates or credentialName)",
            );
            return;
        }
        ServerTlsMode::AutoPassthrough => {
            r.error_part(
                None,
                mode_path,
                "AUTO_PASSTHROUGH routes by Istio's internal SNI scheme for multi-network meshes and is not supported, so this server is left out (use PASSTHROUGH with VirtualService tls routes)",
            );
            return;
        }
        ServerTlsMode::Passthrough => {
            if has_cert_fields(tls) {
                r.warn(
                    tls_path.clone(),
                    "PASSTHROUGH mode does not use certificates, they will be ignored (expected mode SIMPLE or MUTUAL to terminate TLS)",
                );
            }
        }
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            check_cert_sources(r, &tls_path, tls, mode);
        }
    }
    let mutual = matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual);
    if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version) {
        if min != TlsProtocolVersion::Auto && max != TlsProtocolVersion::Auto && max < min {
            r.error(
                format!("{tls_path}.maxProtocolVersion"),
                format!(
                    "maxProtocolVersion {} is below minProtocolVersion {} (expected max >= min)",
                    version_name(max),
                    version_name(min)
                ),
            );
        }
    }
    if matches!(
        tls.min_protocol_version,
        Some(TlsProtocolVersion::V1_0 | TlsProtocolVersion::V1_1)
    ) && tls.cipher_suites.is_empty()
    {
        r.warn(
            format!("{tls_path}.minProtocolVersion"),
            "TLS versions below TLSV1_2 need cipherSuites that support them; the default suites do not (expected cipherSuites, or TLSV1_2)",
        );
    }
    if !mutual {
        for (field, set) in [
            ("subjectAltNames", !tls.subject_alt_names.is_empty()),
            (
                "verifyCertificateSpki",
                !tls.verify_certificate_spki.is_empty(),
            ),
            (
                "verifyCertificateHash",
                !tls.verify_certificate_hash.is_empty(),
            ),
        ] {
            if set {
                r.note(
                    format!("{tls_path}.{field}"),
                    format!(
                        "{field} checks client certificates, which only MUTUAL and OPTIONAL_MUTUAL request; it is ignored in {} mode",
                        mode_name(mode)
                    ),
                );
            }
        }
    }
}

fn version_name(v: TlsProtocolVersion) -> &'static str {
    match v {
        TlsProtocolVersion::Auto => "TLS_AUTO",
        TlsProtocolVersion::V1_0 => "TLSV1_0",
        TlsProtocolVersion::V1_1 => "TLSV1_1",
        TlsProtocolVersion::V1_2 => "TLSV1_2",
        TlsProtocolVersion::V1_3 => "TLSV1_3",
    }
}

/// SIMPLE / MUTUAL / OPTIONAL_MUTUAL: exactly one certificate source, a CA for mutual modes,
/// and no CRL where it cannot apply.
fn check_cert_sources(r: &mut Reporter, tls_path: &str, tls: &ServerTls, mode: ServerTlsMode) {
    let name = mode_name(mode);
    let files = is_set(&tls.server_certificate) || is_set(&tls.private_key);
    let mut sources = Vec::new();
    if files {
        sources.push("serverCertificate/privateKey");
    }
    if is_set(&tls.credential_name) {
        sources.push("credentialName");
    }
    if !tls.credential_names.is_empty() {
        sources.push("credentialNames");
    }
    if !tls.tls_certificates.is_empty() {
        sources.push("tlsCertificates");
    }
    match sources.len() {
        0 => r.error(
            tls_path,
            format!(
                "{name} TLS requires a server certificate (expected exactly one of serverCertificate with privateKey, credentialName, credentialNames or tlsCertificates)"
            ),
        ),
        1 => {}
        _ => r.error(
            tls_path,
            format!(
                "only one certificate source may be set, found {} (expected exactly one of serverCertificate with privateKey, credentialName, credentialNames or tlsCertificates)",
                sources.join(" and ")
            ),
        ),
    }
    if files {
        if !is_set(&tls.server_certificate) {
            r.error(
                format!("{tls_path}.serverCertificate"),
                format!("Required value: {name} TLS with privateKey also needs serverCertificate (expected a PEM file path)"),
            );
        }
        if !is_set(&tls.private_key) {
            r.error(
                format!("{tls_path}.privateKey"),
                format!("Required value: {name} TLS with serverCertificate also needs privateKey (expected a PEM file path)"),
            );
        }
    }
    if tls.credential_names.len() > 2 {
        r.error(
            format!("{tls_path}.credentialNames"),
            format!(
                "{} credentialNames given (expected at most 2: one RSA and one ECDSA certificate)",
                tls.credential_names.len()
            ),
        );
    }
    if tls.tls_certificates.len() > 2 {
        r.error(
            format!("{tls_path}.tlsCertificates"),
            format!(
                "{} tlsCertificates given (expected at most 2: one RSA and one ECDSA certificate)",
                tls.tls_certificates.len()
            ),
        );
    }
    for (k, c) in tls.tls_certificates.iter().enumerate() {
        for (field, v) in [
            ("serverCertificate", &c.server_certificate),
            ("privateKey", &c.private_key),
        ] {
            if !is_set(v) {
                r.error(
                    format!("{tls_path}.tlsCertificates[{k}].{field}"),
                    format!("Required value: each tlsCertificates entry needs {field} (expected a PEM file path)"),
                );
            }
        }
    }
    let credential = is_set(&tls.credential_name) || !tls.credential_names.is_empty();
    if matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual) {
        let ca = is_set(&tls.ca_certificates)
            || is_set(&tls.ca_cert_credential_name)
            || tls
                .tls_certificates
                .iter()
                .any(|c| is_set(&c.ca_certificates));
        if !ca && !credential {
            r.error(
                format!("{tls_path}.caCertificates"),
                format!(
                    "Required value: {name} TLS requires a client CA bundle (expected caCertificates, or a credentialName whose secret holds ca.crt)"
                ),
            );
        }
    }
    if is_set(&tls.ca_crl) {
        if credential {
            r.error(
                format!("{tls_path}.caCrl"),
                "CRL is not supported with credentialName (expected the CRL inside the credential, as ca.crl)",
            );
        }
        if mode == ServerTlsMode::Simple {
            r.error(
                format!("{tls_path}.caCrl"),
                "CRL is not supported with SIMPLE TLS: no client certificate is requested (expected mode MUTUAL or OPTIONAL_MUTUAL)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{http_server, GW};
    use crate::config::validate::testutil::{clean, expect};

    fn https(tls: &str) -> String {
        format!("servers:\n- port: {{number: 443, name: https, protocol: HTTPS}}\n  hosts: [a.com]\n  tls:\n{tls}")
    }

    #[test]
    fn server_tls_presence() {
        expect(
            GW,
            "gw",
            &[
                (
                    "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.com]\n",
                    &["t.yaml:6: Error [IST0106] Gateway default/gw: spec.servers[0].tls: Required value: server must have TLS settings for HTTPS/TLS protocols (expected tls.mode SIMPLE or MUTUAL with a certificate, or PASSTHROUGH)"],
                ),
                (
                    &http_server("  tls: {httpsRedirect: true, mode: SIMPLE}\n"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].tls: server cannot have TLS settings for plain text HTTP ports (expected only tls.httpsRedirect, or protocol HTTPS)"],
                ),
                (
                    "servers:\n- port: {number: 9000, name: tcp, protocol: TCP}\n  hosts: [a.com]\n  tls:\n    httpsRedirect: true\n",
                    &["t.yaml:9: Warning [IST0133] Gateway default/gw: spec.servers[0].tls.httpsRedirect: tls.httpsRedirect should only be used with HTTP servers; it is ignored here (expected it on a plain HTTP server)"],
                ),
                (
                    "servers:\n- port: {number: 9000, name: tcp, protocol: TCP}\n  hosts: [a.com]\n  tls: {mode: SIMPLE}\n",
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].tls: server cannot have TLS settings for non HTTPS/TLS ports (TCP) (expected protocol HTTPS or TLS)"],
                ),
            ],
        );
        clean(GW, "gw", &http_server("  tls: {httpsRedirect: true}\n"));
        clean(GW, "gw", &https("    mode: PASSTHROUGH\n"));
    }

    #[test]
    fn server_tls_modes() {
        expect(
            GW,
            "gw",
            &[
                (
                    &https("    mode: ISTIO_MUTUAL\n"),
                    &["t.yaml:9: Error Gateway default/gw: spec.servers[0].tls.mode: ISTIO_MUTUAL needs Istio's mesh certificates, which a standalone gateway does not have, so this server is left out (use MUTUAL with caCertificates or credentialName)"],
                ),
                (
                    &https("    mode: AUTO_PASSTHROUGH\n"),
                    &["t.yaml:9: Error Gateway default/gw: spec.servers[0].tls.mode: AUTO_PASSTHROUGH routes by Istio's internal SNI scheme for multi-network meshes and is not supported, so this server is left out (use PASSTHROUGH with VirtualService tls routes)"],
                ),
                (
                    &https("    credentialName: c\n"),
                    &["t.yaml:8: Warning [IST0133] Gateway default/gw: spec.servers[0].tls: PASSTHROUGH mode does not use certificates, they will be ignored (expected mode SIMPLE or MUTUAL to terminate TLS)"],
                ),
            ],
        );
    }

    #[test]
    fn server_tls_certificates() {
        expect(
            GW,
            "gw",
            &[
                (
                    &https("    mode: SIMPLE\n"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].tls: SIMPLE TLS requires a server certificate (expected exactly one of serverCertificate with privateKey, credentialName, credentialNames or tlsCertificates)"],
                ),
                (
                    &https("    mode: SIMPLE\n    credentialName: c\n    serverCertificate: /c.pem\n    privateKey: /k.pem\n"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].tls: only one certificate source may be set, found serverCertificate/privateKey and credentialName (expected exactly one of serverCertificate with privateKey, credentialName, credentialNames or tlsCertificates)"],
                ),
                (
                    &https("    mode: SIMPLE\n    serverCertificate: /c.pem\n"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].tls.privateKey: Required value: SIMPLE TLS with serverCertificate also needs privateKey (expected a PEM file path)"],
                ),
                (
                    &https("    mode: SIMPLE\n    credentialNames: [a, b, c]\n"),
                    &["t.yaml:10: Error [IST0106] Gateway default/gw: spec.servers[0].tls.credentialNames: 3 credentialNames given (expected at most 2: one RSA and one ECDSA certificate)"],
                ),
                (
                    &https("    mode: SIMPLE\n    tlsCertificates:\n    - serverCertificate: /rsa.pem\n"),
                    &["t.yaml:11: Error [IST0106] Gateway default/gw: spec.servers[0].tls.tlsCertificates[0].privateKey: Required value: each tlsCertificates entry needs privateKey (expected a PEM file path)"],
                ),
                (
                    &https("    mode: MUTUAL\n    serverCertificate: /c.pem\n    privateKey: /k.pem\n"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].tls.caCertificates: Required value: MUTUAL TLS requires a client CA bundle (expected caCertificates, or a credentialName whose secret holds ca.crt)"],
                ),
                (
                    &https("    mode: SIMPLE\n    serverCertificate: /c.pem\n    privateKey: /k.pem\n    caCrl: /crl.pem\n"),
                    &["t.yaml:12: Error [IST0106] Gateway default/gw: spec.servers[0].tls.caCrl: CRL is not supported with SIMPLE TLS: no client certificate is requested (expected mode MUTUAL or OPTIONAL_MUTUAL)"],
                ),
                (
                    &https("    mode: MUTUAL\n    credentialName: c\n    caCrl: /crl.pem\n"),
                    &["t.yaml:11: Error [IST0106] Gateway default/gw: spec.servers[0].tls.caCrl: CRL is not supported with credentialName (expected the CRL inside the credential, as ca.crl)"],
                ),
            ],
        );
        clean(
            GW,
            "gw",
            &https("    mode: OPTIONAL_MUTUAL\n    credentialName: c\n"),
        );
        clean(GW, "gw", &https("    mode: MUTUAL\n    serverCertificate: /c.pem\n    privateKey: /k.pem\n    caCertificates: /ca.pem\n    subjectAltNames: [client]\n"));
    }

    #[test]
    fn server_tls_versions_and_client_checks() {
        expect(
            GW,
            "gw",
            &[
                (
                    &https("    mode: SIMPLE\n    credentialName: c\n    minProtocolVersion: TLSV1_3\n    maxProtocolVersion: TLSV1_2\n"),
                    &["t.yaml:12: Error [IST0106] Gateway default/gw: spec.servers[0].tls.maxProtocolVersion: maxProtocolVersion TLSV1_2 is below minProtocolVersion TLSV1_3 (expected max >= min)"],
                ),
                (
                    &https("    mode: SIMPLE\n    credentialName: c\n    minProtocolVersion: TLSV1_0\n"),
                    &["t.yaml:11: Warning [IST0133] Gateway default/gw: spec.servers[0].tls.minProtocolVersion: TLS versions below TLSV1_2 need cipherSuites that support them; the default suites do not (expected cipherSuites, or TLSV1_2)"],
                ),
                (
                    &https("    mode: SIMPLE\n    credentialName: c\n    subjectAltNames: [x]\n"),
                    &["t.yaml:11: Warning Gateway default/gw: spec.servers[0].tls.subjectAltNames: subjectAltNames checks client certificates, which only MUTUAL and OPTIONAL_MUTUAL request; it is ignored in SIMPLE mode"],
                ),
            ],
        );
    }
}
