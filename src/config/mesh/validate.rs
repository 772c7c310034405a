//! Istio's checks of a mesh config (`pkg/config/validation/agent/validation.go`
//! `ValidateMeshConfig`, `ValidateMeshConfigProxyConfig`, and `extensionprovider.go`), for the
//! fields Portcullis models. As in Istio, a bad extension provider is a warning ("can be ignored
//! if the given extension provider is not used"); a bad drain duration is an error.

use std::collections::HashSet;

use super::{ExtensionProvider, MeshFile, ProviderKind, ServiceProvider};
use crate::config::diag::{Diagnostic, Reporter};
use crate::config::types::Duration;
use crate::config::validate::rules::{check_fqdn, check_wildcard_domain, is_ip};

/// Providers every Istio mesh defines (`DefaultMeshConfig`), so `defaultProviders` may name them.
const BUILTIN_PROVIDERS: [&str; 3] = ["prometheus", "stackdriver", "envoy"];

/// Validates `mesh`; problems carry the mesh file's name and the field's line.
pub fn validate_mesh(mesh: &MeshFile) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut r = mesh.reporter(&mut out);
    let m = &mesh.config;
    if let Some(pc) = &m.default_config {
        if let Some(d) = pc.drain_duration {
            if let Err(e) = drain_duration(d) {
                r.error_config("defaultConfig.drainDuration", e);
            }
        }
        if let Some(d) = pc.termination_drain_duration {
            // Not checked by Istio beyond the type; a drain of nothing is what 0s says.
            if !d.get().subsec_nanos().is_multiple_of(1_000_000) {
                r.error_config(
                    "defaultConfig.terminationDrainDuration",
                    "only durations to ms precision are supported",
                );
            }
        }
        if let Some(s) = pc.tracing.as_ref().and_then(|t| t.sampling) {
            if !(0.0..=100.0).contains(&s) {
                r.note(
                    "defaultConfig.tracing.sampling",
                    format!("sampling {s} is outside 0.0–100.0 (a percentage of requests)"),
                );
            }
        }
    }
    let mut names = HashSet::new();
    for (i, p) in m.extension_providers.iter().enumerate() {
        extension_provider(p, &format!("extensionProviders[{i}]"), &mut names, &mut r);
    }
    if let Some(dp) = &m.default_providers {
        let kinds = [
            ("tracing", &dp.tracing),
            ("metrics", &dp.metrics),
            ("accessLogging", &dp.access_logging),
        ];
        for (kind, list) in kinds {
            for (i, name) in list.iter().enumerate() {
                if !names.contains(name.as_str()) && !BUILTIN_PROVIDERS.contains(&name.as_str()) {
                    r.note(
                        format!("defaultProviders.{kind}[{i}]"),
                        format!("provider `{name}` is not defined in extensionProviders"),
                    );
                }
            }
        }
    }
    out
}

/// Istio `ValidateDrainDuration`: at least 1ms, whole milliseconds, whole seconds.
fn drain_duration(d: Duration) -> Result<(), String> {
    let d = d.get();
    if d < std::time::Duration::from_millis(1) {
        return Err("invalid drain duration: duration must be greater than 1ms".into());
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("invalid drain duration: only durations to ms precision are supported".into());
    }
    if d.subsec_nanos() != 0 {
        return Err("drain time only supports durations to seconds precision".into());
    }
    Ok(())
}

fn extension_provider<'n>(
    p: &'n ExtensionProvider,
    at: &str,
    names: &mut HashSet<&'n str>,
    r: &mut Reporter<'_>,
) {
    let mut warn = |field: &str, msg: String| {
        let path = if field.is_empty() {
            at.to_string()
        } else {
            format!("{at}.{field}")
        };
        r.note(
            path,
            format!("invalid extension provider {}: {msg}", p.name),
        );
    };
    if p.name.is_empty() {
        warn("name", "empty extension provider name".into());
    } else if !names.insert(p.name.as_str()) {
        warn(
            "name",
            format!("duplicate extension provider name {}", p.name),
        );
    }
    let kinds = p.kinds();
    let Some(kind) = kinds.first() else {
        warn("", "unsupported provider: none of its kinds is set".into());
        return;
    };
    if kinds.len() > 1 {
        // A protobuf oneof: istiod refuses to parse such a mesh config at all.
        r.error_config(
            at.to_string(),
            format!(
                "extension provider {} sets {} provider kinds (expected exactly one)",
                p.name,
                kinds.len()
            ),
        );
        return;
    }
    use ProviderKind as K;
    let (field, target): (&str, Option<(&str, u32)>) = match kind {
        K::EnvoyExtAuthzHttp => {
            let h = p.envoy_ext_authz_http.as_ref();
            if let Some(h) = h {
                if let Err(e) = status_on_error(h.status_on_error.as_deref()) {
                    warn("envoyExtAuthzHttp.statusOnError", e);
                }
                if let Some(prefix) = h.path_prefix.as_deref().filter(|s| !s.is_empty()) {
                    if !prefix.starts_with('/') {
                        warn(
                            "envoyExtAuthzHttp.pathPrefix",
                            format!("pathPrefix should begin with `/` but found {prefix:?}"),
                        );
                    }
                }
            }
            ("envoyExtAuthzHttp", h.map(|h| (h.service.as_str(), h.port)))
        }
        K::EnvoyExtAuthzGrpc => {
            let g = p.envoy_ext_authz_grpc.as_ref();
            if let Some(Err(e)) = g.map(|g| status_on_error(g.status_on_error.as_deref())) {
                warn("envoyExtAuthzGrpc.statusOnError", e);
            }
            ("envoyExtAuthzGrpc", g.map(|g| (g.service.as_str(), g.port)))
        }
        K::Opentelemetry => {
            let o = p.opentelemetry.as_ref();
            if o.is_some_and(|o| o.grpc.is_some() && o.http.is_some()) {
                warn(
                    "opentelemetry",
                    "OpenTelemetryTracingProvider cannot specify both grpc and http".into(),
                );
            }
            ("opentelemetry", o.map(service))
        }
        K::Zipkin => ("zipkin", p.zipkin.as_ref().map(service)),
        K::Lightstep => {
            let l = p.lightstep.as_ref();
            if l.is_some_and(|l| l.access_token.as_deref().unwrap_or("").is_empty()) {
                warn("lightstep.accessToken", "access token is required".into());
            }
            ("lightstep", l.map(service))
        }
        K::Datadog => ("datadog", p.datadog.as_ref().map(service)),
        K::Opencensus => ("opencensus", p.opencensus.as_ref().map(service)),
        K::Skywalking => ("skywalking", p.skywalking.as_ref().map(service)),
        K::EnvoyOtelAls => ("envoyOtelAls", p.envoy_otel_als.as_ref().map(service)),
        K::EnvoyHttpAls => ("envoyHttpAls", p.envoy_http_als.as_ref().map(service)),
        K::EnvoyTcpAls => ("envoyTcpAls", p.envoy_tcp_als.as_ref().map(service)),
        K::Prometheus | K::Stackdriver | K::EnvoyFileAccessLog => ("", None),
    };
    if let Some((svc, port)) = target {
        if !(1..=65535).contains(&port) {
            warn(
                &format!("{field}.port"),
                format!("port number {port} must be in the range 1..65535"),
            );
        }
        if let Err(e) = provider_service(svc) {
            warn(&format!("{field}.service"), e);
        }
    }
}

/// Istio `validateExtensionProviderService`: an FQDN or an IP, or `namespace/host`.
fn provider_service(service: &str) -> Result<(), String> {
    if service.is_empty() {
        return Err("service must not be empty".into());
    }
    match service.split_once('/') {
        None => {
            if check_fqdn(service).is_err() && !is_ip(service) {
                return Err(format!(
                    "invalid service fmt {service}: {service} is not a valid IP"
                ));
            }
            Ok(())
        }
        Some((ns, host)) => {
            if host.contains('/')
                || (ns != "*" && ns != "." && !crate::config::validate::rules::is_dns1123_label(ns))
            {
                return Err(format!("invalid namespace `{ns}` in `{service}`"));
            }
            if host != "*" && !host.contains('.') {
                return Err("short names (non FQDN) are not allowed".into());
            }
            check_wildcard_domain(host)
        }
    }
}

/// Istio `validateExtensionProviderEnvoyExtAuthzStatusOnError`: an HTTP status Envoy knows.
fn status_on_error(status: Option<&str>) -> Result<(), String> {
    let Some(s) = status.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    match s.parse::<u16>() {
        Ok(code)
            if http::StatusCode::from_u16(code).is_ok_and(|c| c.canonical_reason().is_some()) =>
        {
            Ok(())
        }
        Ok(_) => Err(format!("unsupported statusOnError value {s}")),
        Err(e) => Err(format!("invalid statusOnError value {s}: {e}")),
    }
}

fn service(s: &ServiceProvider) -> (&str, u32) {
    (s.service.as_str(), s.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::mesh::parse_mesh;
    use crate::config::source::SourceFile;

    fn check(text: &str) -> String {
        let (mesh, diags) = parse_mesh(SourceFile {
            display: "mesh.yaml".into(),
            path: "mesh.yaml".into(),
            text: text.into(),
        });
        assert!(!diags.has_errors(), "{diags}");
        validate_mesh(&mesh.unwrap())
            .iter()
            .map(|d| format!("{d}\n"))
            .collect()
    }

    #[test]
    fn drain_duration_must_be_whole_seconds_as_istio_says() {
        let out = check("defaultConfig:\n  drainDuration: 1500ms\n");
        assert_eq!(
            out,
            "mesh.yaml:2: Error defaultConfig.drainDuration: drain time only supports durations to seconds precision\n"
        );
        assert_eq!(check("defaultConfig:\n  drainDuration: 45s\n"), "");
    }

    #[test]
    fn extension_providers_are_checked_like_istio_and_only_warned() {
        let out = check(
            "extensionProviders:\n- name: otel\n  opentelemetry:\n    service: otel-collector.observability.svc.cluster.local\n    port: 4317\n- name: authz\n  envoyExtAuthzHttp:\n    service: bad_host\n    port: 0\n    pathPrefix: check\n- name: otel\n  zipkin:\n    service: zipkin.istio-system.svc.cluster.local\n    port: 9411\ndefaultProviders:\n  tracing: [otel, missing]\n",
        );
        assert!(out.contains("mesh.yaml:9: Warning extensionProviders[1].envoyExtAuthzHttp.port: invalid extension provider authz: port number 0"), "{out}");
        assert!(out.contains("mesh.yaml:8: Warning extensionProviders[1].envoyExtAuthzHttp.service: invalid extension provider authz: invalid service fmt bad_host"), "{out}");
        assert!(out.contains("extensionProviders[1].envoyExtAuthzHttp.pathPrefix: invalid extension provider authz: pathPrefix should begin with `/`"), "{out}");
        assert!(out.contains("extensionProviders[2].name: invalid extension provider otel: duplicate extension provider name otel"), "{out}");
        assert!(
            out.contains("defaultProviders.tracing[1]: provider `missing` is not defined"),
            "{out}"
        );
        assert!(!out.contains("[0]"), "{out}");
    }

    #[test]
    fn a_provider_with_two_kinds_is_an_error() {
        let out = check(
            "extensionProviders:\n- name: two\n  zipkin: {service: z.ns.svc, port: 9411}\n  datadog: {service: d.ns.svc, port: 8126}\n",
        );
        assert!(
            out.starts_with(
                "mesh.yaml:2: Error extensionProviders[0]: extension provider two sets 2 provider kinds"
            ),
            "{out}"
        );
    }
}
