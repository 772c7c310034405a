//! Tracing compiled once per reload: the tracer the mesh settings name (Istio
//! `pilot/pkg/networking/core/tracing.go`, `pilot/pkg/model/telemetry.go` `Tracing`) and each
//! route's operation name (`pilot/pkg/networking/core/route/route.go` `GetRouteOperation`, the
//! decorator Istio puts on every gateway route).
//!
//! Which tracer: none unless `enableTracing` (default true) and a provider: the first of
//! `defaultProviders.tracing` (an `extensionProviders` entry of kind `opentelemetry` or
//! `zipkin`), or, without default providers, the legacy `defaultConfig.tracing.zipkin.address`
//! (istio-agent's bootstrap Zipkin tracer). Sampling: `defaultConfig.tracing.sampling` when
//! not 0 (above 100 means 1), else Istio's `PILOT_TRACE_SAMPLING` default, 1%
//! (`proxyConfigSamplingValue`). The provider's `service` is looked up as `LookupCluster`
//! does (`ns/host` or `host`) among the ServiceEntries, whose first endpoint receives the
//! spans; a host no ServiceEntry lists is resolved by DNS.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::action::Action;
use super::registry::Registry;
use super::Instance;
use crate::config::diag::Diagnostic;
use crate::config::mesh::MeshFile;
use crate::config::types::{HttpMatchRequest, Resolution};
use crate::telemetry::tracing::{
    ExporterConfig, Identity, Propagation, Sampling, Tracer, DEFAULT_EXPORT_TIMEOUT,
    DEFAULT_MAX_PATH_TAG_LENGTH,
};

/// Istio's `PILOT_TRACE_SAMPLING` default.
pub const DEFAULT_SAMPLING: f64 = 1.0;
/// OTLP's default export timeout.
const OTLP_TIMEOUT: Duration = Duration::from_secs(10);

/// `GetRouteOperation`: `host:port` of the one destination (else `vsName:gatewayPort`), then
/// the match's path: `prefix*`, the exact path or the regex; `/*` without a uri match.
pub fn operation(
    match_spec: Option<&HttpMatchRequest>,
    action: &Action,
    vs_name: &str,
    gateway_port: u16,
) -> String {
    let uri = match_spec.and_then(|m| m.uri.as_ref());
    let path = match uri {
        Some(u) if u.prefix.is_some() => format!("{}*", u.prefix.as_deref().unwrap_or("")),
        Some(u) if u.exact.is_some() => u.exact.clone().unwrap_or_default(),
        Some(u) if u.regex.is_some() => u.regex.clone().unwrap_or_default(),
        _ => "/*".to_string(),
    };
    match action {
        Action::Forward(f) if f.destinations.len() == 1 => {
            let c = &f.destinations[0].cluster;
            format!("{}:{}{path}", c.host, c.port)
        }
        _ => format!("{vs_name}:{gateway_port}{path}"),
    }
}

/// The instance's tracer, or `None` (tracing off: trace headers pass through untouched).
pub fn tracer(
    mesh: Option<&MeshFile>,
    registry: &Registry,
    instance: &Instance,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arc<Tracer>> {
    let file = mesh?;
    let m = &file.config;
    if !m.enable_tracing.unwrap_or(true) {
        return None;
    }
    let pc = m.default_config.clone().unwrap_or_default();
    let legacy = pc.tracing.clone().unwrap_or_default();
    let mut sampling = legacy
        .sampling
        .filter(|s| *s != 0.0)
        .unwrap_or(DEFAULT_SAMPLING);
    if sampling > 100.0 {
        sampling = 1.0;
    }
    let mut report = file.reporter(diags);
    let namespace = &instance.security.namespace;
    let identity = identity(instance);
    let defaults = m
        .default_providers
        .as_ref()
        .map(|d| d.tracing.clone())
        .unwrap_or_default();
    let Some(name) = defaults.first() else {
        // No Telemetry provider: the proxy's bootstrap tracer (Zipkin), if one is addressed.
        let zipkin = legacy.zipkin.filter(|z| !z.address.is_empty())?;
        let (connect, host) = match zipkin.address.rsplit_once(':') {
            Some((h, p)) => {
                let port = p.parse().unwrap_or(9411);
                (resolve(h, port, registry, namespace).0, h.to_string())
            }
            None => (format!("{}:9411", zipkin.address), zipkin.address.clone()),
        };
        return Some(Arc::new(Tracer {
            provider: "defaultConfig.tracing.zipkin".into(),
            propagation: Propagation::B3 { w3c: false },
            sampling: Sampling::from_percent(sampling),
            max_path_tag_length: path_tag_length(legacy.max_path_tag_length),
            spawn_upstream: false,
            identity,
            exporter: ExporterConfig::Zipkin {
                url: format!("http://{connect}/api/v2/spans"),
                host,
                timeout: DEFAULT_EXPORT_TIMEOUT,
                headers: Vec::new(),
            },
        }));
    };
    let Some((i, p)) = m
        .extension_providers
        .iter()
        .enumerate()
        .find(|(_, p)| &p.name == name)
    else {
        report.warn(
            "defaultProviders.tracing[0]",
            format!("tracing provider `{name}` is not defined in extensionProviders: no spans are made (as Istio disables tracing)"),
        );
        return None;
    };
    let at = format!("extensionProviders[{i}]");
    let (propagation, sp, exporter) = if let Some(o) = &p.opentelemetry {
        let (connect, host) = resolve(&o.service, o.port, registry, namespace);
        let exporter = match &o.http {
            Some(http) => {
                let path = yaml_str(http, "path").unwrap_or_else(|| "/v1/traces".into());
                let path = if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                };
                ExporterConfig::OtlpHttp {
                    url: format!("http://{connect}{path}"),
                    host,
                    timeout: yaml_duration(http, "timeout").unwrap_or(DEFAULT_EXPORT_TIMEOUT),
                    headers: name_values(http.get("headers")),
                }
            }
            None => ExporterConfig::OtlpGrpc {
                endpoint: format!("http://{connect}"),
                timeout: o
                    .grpc
                    .as_ref()
                    .and_then(|g| yaml_duration(g, "timeout"))
                    .unwrap_or(OTLP_TIMEOUT),
                metadata: name_values(o.grpc.as_ref().and_then(|g| g.get("initialMetadata"))),
            },
        };
        (Propagation::W3c, o, exporter)
    } else if let Some(z) = &p.zipkin {
        let (connect, host) = resolve(&z.service, z.port, registry, namespace);
        let path = z.path.clone().filter(|p| !p.is_empty());
        let w3c = z.trace_context_option.as_deref() == Some("USE_B3_WITH_W3C_PROPAGATION");
        let exporter = ExporterConfig::Zipkin {
            url: format!(
                "http://{connect}{}",
                path.as_deref().unwrap_or("/api/v2/spans")
            ),
            host,
            timeout: z.timeout.map_or(DEFAULT_EXPORT_TIMEOUT, |t| t.get()),
            headers: name_values(z.headers.as_ref()),
        };
        (Propagation::B3 { w3c }, z, exporter)
    } else {
        report.warn(
            at,
            format!("tracing provider `{name}` is of a kind Portcullis does not trace with (opentelemetry and zipkin are supported): no spans are made"),
        );
        return None;
    };
    Some(Arc::new(Tracer {
        provider: name.clone(),
        propagation,
        sampling: Sampling::from_percent(sampling),
        max_path_tag_length: path_tag_length(sp.max_tag_length.or(legacy.max_path_tag_length)),
        spawn_upstream: true,
        identity,
        exporter,
    }))
}

fn path_tag_length(configured: Option<u32>) -> usize {
    configured
        .filter(|n| *n > 0)
        .map_or(DEFAULT_MAX_PATH_TAG_LENGTH, |n| n as usize)
}

/// `LookupCluster`: the provider's `service` (`ns/host` or `host`) in the registry; the
/// address to send to (`host:port`) and the host name (for `Host` / `:authority`).
fn resolve(service: &str, port: u32, registry: &Registry, namespace: &str) -> (String, String) {
    let (ns, host) = match service.split_once('/') {
        Some((ns, host)) => (ns, host),
        None => (namespace, service),
    };
    let port16 = u16::try_from(port).unwrap_or(0);
    let Some(reg) = registry.lookup(host, ns) else {
        return (format!("{host}:{port}"), host.to_string());
    };
    let svc_port = reg.port(port16);
    let target = svc_port.and_then(|p| p.target_port).unwrap_or(port16);
    let se = &reg.entry.spec;
    let endpoint = match se.resolution() {
        Resolution::Static | Resolution::Dns | Resolution::DnsRoundRobin => se.endpoints.first(),
        Resolution::None | Resolution::DynamicDns => None,
    };
    let connect = match endpoint {
        Some(ep) => {
            let p = svc_port
                .and_then(|sp| ep.ports.get(&sp.name))
                .and_then(|n| u16::try_from(*n).ok())
                .unwrap_or(target);
            match ep.address.parse::<std::net::IpAddr>() {
                Ok(ip) => std::net::SocketAddr::new(ip, p).to_string(),
                Err(_) => format!("{}:{p}", ep.address),
            }
        }
        None => format!("{host}:{target}"),
    };
    (connect, host.to_string())
}

/// The proxy's identity as istio-agent and istiod derive it for a gateway pod: the service
/// name is the node's cluster (`pkg/bootstrap/config.go` `serviceClusterOrDefault`: the `app`
/// label, else the workload name, then `.namespace`); the workload name is
/// `ISTIO_META_WORKLOAD_NAME`, else `istio-<istio label>` (the name Istio's gateway charts give
/// a gateway with that label); Istio's service tags (`buildServiceTags`) with the canonical
/// name and revision as the injector labels the pod (`pkg/kube/labels` `CanonicalService`),
/// `ISTIO_META_MESH_ID` (default the trust domain, `cluster.local`) and
/// `ISTIO_META_CLUSTER_ID` (default `Kubernetes`).
pub fn identity(instance: &Instance) -> Identity {
    identity_from(&instance.labels, &instance.security.namespace, |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })
}

fn identity_from(
    labels: &BTreeMap<String, String>,
    namespace: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Identity {
    let label = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k).cloned());
    let workload = env("ISTIO_META_WORKLOAD_NAME")
        .or_else(|| labels.get("istio").map(|v| format!("istio-{v}")))
        .unwrap_or_else(|| "istio-proxy".into());
    let app = label(&[
        "app",
        "app.kubernetes.io/name",
        "service.istio.io/canonical-name",
    ]);
    let service_name = format!("{}.{namespace}", app.unwrap_or_else(|| workload.clone()));
    let canonical = label(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| workload.clone());
    let revision = label(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".into());
    let pod = env("POD_NAME")
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| workload.clone());
    let ip = env("INSTANCE_IP").unwrap_or_else(|| "127.0.0.1".into());
    let mut tags = vec![
        ("istio.canonical_revision".to_string(), revision),
        ("istio.canonical_service".to_string(), canonical),
        (
            "istio.cluster_id".to_string(),
            env("ISTIO_META_CLUSTER_ID").unwrap_or_else(|| "Kubernetes".into()),
        ),
        (
            "istio.mesh_id".to_string(),
            env("ISTIO_META_MESH_ID").unwrap_or_else(|| "cluster.local".into()),
        ),
        ("istio.namespace".to_string(), namespace.to_string()),
    ];
    tags.sort();
    Identity {
        service_name,
        node_id: format!("router~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local"),
        zone: String::new(),
        tags,
    }
}

fn yaml_str(v: &serde_yaml::Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_string)
}

fn yaml_duration(v: &serde_yaml::Value, key: &str) -> Option<Duration> {
    let s = v.get(key)?.as_str()?;
    crate::config::types::Duration::parse(s)
        .ok()
        .map(|d| d.get())
}

/// Istio's `[{name, value}]` header lists (`headers`, `initialMetadata`).
fn name_values(v: Option<&serde_yaml::Value>) -> Vec<(String, String)> {
    v.and_then(|v| v.as_sequence())
        .map(|items| {
            items
                .iter()
                .filter_map(|h| Some((yaml_str(h, "name")?, yaml_str(h, "value")?)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_reports_as_istios_ingress_gateway() {
        let labels = BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]);
        let id = identity_from(&labels, "istio-system", |_| None);
        assert_eq!(id.service_name, "istio-ingressgateway.istio-system");
        let tag = |k: &str| {
            id.tags
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(tag("istio.canonical_service"), Some("istio-ingressgateway"));
        assert_eq!(tag("istio.canonical_revision"), Some("latest"));
        assert_eq!(tag("istio.mesh_id"), Some("cluster.local"));
        assert_eq!(tag("istio.namespace"), Some("istio-system"));
        // The chart's `app` label wins for the service name, as in serviceClusterOrDefault.
        let labels = BTreeMap::from([("app".to_string(), "edge".to_string())]);
        let env = |k: &str| (k == "ISTIO_META_MESH_ID").then(|| "mesh1".to_string());
        let id = identity_from(&labels, "gw", env);
        assert_eq!(id.service_name, "edge.gw");
        assert!(id.tags.contains(&("istio.mesh_id".into(), "mesh1".into())));
    }

    #[test]
    fn name_value_lists_are_read() {
        let v: serde_yaml::Value =
            serde_yaml::from_str("[{name: x-token, value: abc}, {name: bad}]").unwrap();
        assert_eq!(
            name_values(Some(&v)),
            vec![("x-token".into(), "abc".into())]
        );
    }
}
