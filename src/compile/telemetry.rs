//! The labels Istio's metrics give a request, decided once per reload: for each cluster the
//! destination side as Istio's gateway reports it, joined with the gateway's own identity (the
//! source side) into the label sets `telemetry::istio` counts with; and the label sets of a
//! request that reached no cluster.
//!
//! Where the values come from in Istio:
//! - `destination_service` and `destination_service_name`: the cluster's `istio.services`
//!   metadata (pilot `core/cluster_builder.go` `addTelemetryMetadata`, `core/cluster.go`
//!   `buildServiceMetadata`): the service's host and name. A ServiceEntry's service is named
//!   after its host (`serviceregistry/serviceentry/conversion.go` `convertServices`:
//!   `Attributes.Name = host`). A gateway never falls back to the `Host` header
//!   (`pilot/pkg/model/telemetry.go` `disableHostHeaderFallback`), so a request that reached no
//!   cluster reports `unknown`; `PassthroughCluster` and `BlackHoleCluster` are named as such.
//! - the rest of the destination side: the endpoint's `istio.workload` metadata
//!   (`util.go` `AppendLbEndpointMetadata`: `workload;namespace;canonical;revision;cluster`),
//!   which a ServiceEntry's endpoints get from `conversion.go`: endpoint `i` of ServiceEntry
//!   `se` is workload `se-i` (`convertWorkloadEntryToWorkloadInstance`), a DNS entry without
//!   endpoints is workload `se`, both in the entry's namespace and cluster, their canonical
//!   service from the endpoint's labels (`CanonicalService`). `NONE` resolution has no
//!   endpoints, so nothing is known. The client side reports the endpoint's namespace as
//!   `destination_service_namespace` too (istio_stats.cc, `Reporter::ClientSidecar`), and has no
//!   app or version for it (`unknown`).
//! - `source_principal`: the URI SAN of the certificate the gateway presents upstream.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::config::types::Resolution;
use crate::telemetry::istio::{Destination, LabelSet, PeerLabels, Workload, UNKNOWN};
use crate::telemetry::workload::canonical_service;
use crate::upstream::endpoint::Endpoints;
use crate::upstream::peer::Upstream;

use super::registry::RegisteredHost;

/// The label sets of requests that reached no cluster.
#[derive(Debug)]
pub struct Telemetry {
    /// No route, a direct response, a redirect, a request refused before routing.
    pub unknown: LabelSet,
    /// Egress refused by REGISTRY_ONLY (Envoy's `BlackHoleCluster`).
    pub blackhole: LabelSet,
}

impl Telemetry {
    pub fn new(source: &Workload) -> Telemetry {
        let mut blackhole = Destination::unknown();
        blackhole.service_name = "BlackHoleCluster".into();
        Telemetry {
            unknown: LabelSet::new(source, UNKNOWN, &Destination::unknown()),
            blackhole: LabelSet::new(source, UNKNOWN, &blackhole),
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(&Workload::default())
    }
}

/// What a cluster is, for its labels.
pub struct ClusterFacts<'a> {
    pub host: &'a str,
    pub registered: Option<&'a RegisteredHost>,
    /// The DestinationRule subset's labels, which select the ServiceEntry's endpoints.
    pub subset_labels: Option<&'a BTreeMap<String, String>>,
    pub endpoints: &'a Endpoints,
    pub upstream: &'a Upstream,
}

/// The service side of a cluster: host, name, and the namespace its endpoints report.
fn service(host: &str, registered: Option<&RegisteredHost>) -> Destination {
    let mut d = Destination::unknown();
    if host == "*" {
        d.service_name = "PassthroughCluster".into();
        return d;
    }
    d.service = host.to_string();
    d.service_name = host.to_string();
    if registered.is_none() {
        // A Kubernetes service name: `<name>.<namespace>.svc.<domain>`, its endpoints in
        // `<namespace>`.
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() >= 4 && labels[2] == "svc" && host.parse::<IpAddr>().is_err() {
            d.service_name = labels[0].to_string();
            d.workload_namespace = labels[1].to_string();
            d.service_namespace = labels[1].to_string();
        }
    }
    d
}

/// The destination as endpoint `index` of the registered ServiceEntry reports it (`None`: the
/// entry's own host, a DNS entry without endpoints).
fn endpoint(
    base: &Destination,
    reg: &RegisteredHost,
    index: Option<usize>,
    labels: &BTreeMap<String, String>,
    cluster: &str,
) -> Destination {
    let se_name = reg
        .service_entry
        .rsplit_once('/')
        .map_or(reg.service_entry.as_str(), |(_, n)| n);
    let workload = match index {
        Some(i) => format!("{se_name}-{i}"),
        None => se_name.to_string(),
    };
    let (canonical, revision) = canonical_service(labels, &workload);
    Destination {
        workload,
        workload_namespace: reg.namespace.clone(),
        service_namespace: reg.namespace.clone(),
        cluster: cluster.to_string(),
        canonical_service: canonical,
        canonical_revision: revision,
        ..base.clone()
    }
}

/// The URI SAN of the client certificate the cluster presents upstream, else `unknown`.
fn source_principal(upstream: &Upstream) -> String {
    upstream
        .tls
        .as_ref()
        .and_then(|t| t.client_cert.as_ref())
        .and_then(|ck| ck.leaf().subject_alt_names())
        .and_then(|sans| sans.iter().find_map(|n| n.uri().map(str::to_string)))
        .unwrap_or_else(|| UNKNOWN.to_string())
}

/// The label sets of a cluster, per endpoint where its endpoints differ.
pub fn cluster_labels(source: &Workload, c: &ClusterFacts) -> PeerLabels {
    let principal = source_principal(c.upstream);
    let base = service(c.host, c.registered);
    let Some(reg) = c.registered else {
        return PeerLabels::new(LabelSet::new(source, &principal, &base));
    };
    if matches!(reg.resolution, Resolution::None | Resolution::DynamicDns) {
        return PeerLabels::new(LabelSet::new(source, &principal, &base));
    }
    let se = &reg.entry.spec;
    let selected = se.endpoints.iter().enumerate().filter(|(_, ep)| {
        c.subset_labels
            .is_none_or(|want| want.iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
    });
    let no_labels = BTreeMap::new();
    let mut per_endpoint: Vec<(Option<SocketAddr>, Destination)> = Vec::new();
    match c.endpoints {
        // The built endpoints follow the selected ones whose address is an IP, in order.
        Endpoints::Static(eps) => {
            let ips = selected.filter(|(_, ep)| ep.address.parse::<IpAddr>().is_ok());
            for ((i, ep), built) in ips.zip(eps.iter()) {
                let d = endpoint(&base, reg, Some(i), &ep.labels, &source.cluster);
                per_endpoint.push((Some(built.address), d));
            }
        }
        _ if se.endpoints.is_empty() => {
            per_endpoint.push((
                None,
                endpoint(&base, reg, None, &no_labels, &source.cluster),
            ));
        }
        _ => {
            for (i, ep) in selected {
                let d = endpoint(&base, reg, Some(i), &ep.labels, &source.cluster);
                per_endpoint.push((None, d));
            }
        }
    }
    let Some(first) = per_endpoint.first().map(|(_, d)| d.clone()) else {
        return PeerLabels::new(LabelSet::new(source, &principal, &base));
    };
    let common = per_endpoint.iter().fold(first, |acc, (_, d)| acc.common(d));
    let default = LabelSet::new(source, &principal, &common);
    let differ = per_endpoint.iter().any(|(_, d)| *d != common);
    let endpoints = per_endpoint
        .into_iter()
        .filter(|_| differ)
        .filter_map(|(addr, d)| Some((addr?, LabelSet::new(source, &principal, &d))))
        .collect();
    PeerLabels { default, endpoints }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::registry::Registry;
    use crate::config::load::{load_files, Resources};
    use crate::config::source::SourceFile;
    use std::path::Path;
    use std::sync::Arc;

    fn labels_of(yaml: &str, host: &str, subset: Option<&str>) -> Arc<PeerLabels> {
        let (res, d): (Resources, _) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml.into(),
        }]);
        assert!(!d.has_errors(), "{d}");
        let registry = Registry::build(&res);
        let stats = crate::upstream::StatsRegistry::default();
        let mut b =
            super::super::cluster::ClusterBuilder::new(&res, &registry, Path::new("certs"), &stats);
        let c = b.destination(host, None, subset, "default", 80).unwrap();
        c.telemetry.clone()
    }

    const SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: 10.0.0.1
  - address: 10.0.0.2
    labels: {app: api, version: v2}
";

    // conversion.go: endpoint i of ServiceEntry `api` is workload `api-i` in its namespace;
    // the service is named after its host (Attributes.Name = host).
    #[test]
    fn service_entry_endpoints_report_their_workload_per_endpoint() {
        let p = labels_of(SE, "api.example.com", None);
        let d = &p.default;
        assert_eq!(d.value("destination_service"), Some("api.example.com"));
        assert_eq!(d.value("destination_service_name"), Some("api.example.com"));
        assert_eq!(d.value("destination_service_namespace"), Some("shop"));
        assert_eq!(d.value("destination_workload"), Some(UNKNOWN));
        assert_eq!(d.value("destination_workload_namespace"), Some("shop"));
        assert_eq!(d.value("destination_cluster"), Some("Kubernetes"));
        assert_eq!(d.value("destination_app"), Some(UNKNOWN));
        let first = p.of(Some("10.0.0.1:80".parse().unwrap()));
        assert_eq!(first.value("destination_workload"), Some("api-0"));
        assert_eq!(first.value("destination_canonical_service"), Some("api-0"));
        assert_eq!(
            first.value("destination_canonical_revision"),
            Some("latest")
        );
        let second = p.of(Some("10.0.0.2:80".parse().unwrap()));
        assert_eq!(second.value("destination_workload"), Some("api-1"));
        assert_eq!(second.value("destination_canonical_service"), Some("api"));
        assert_eq!(second.value("destination_canonical_revision"), Some("v2"));
        assert_eq!(
            second.value("source_workload"),
            Some("istio-ingressgateway")
        );
        assert_eq!(second.value("reporter"), Some("source"));
    }

    #[test]
    fn a_dns_entry_without_endpoints_is_its_own_workload_and_none_knows_nothing() {
        let dns = SE
            .replace("resolution: STATIC", "resolution: DNS")
            .split("  endpoints:")
            .next()
            .unwrap()
            .to_string();
        let p = labels_of(&dns, "api.example.com", None);
        assert_eq!(p.default.value("destination_workload"), Some("api"));
        assert!(p.endpoints.is_empty());
        let none = dns.replace("resolution: DNS", "resolution: NONE");
        let p = labels_of(&none, "api.example.com", None);
        assert_eq!(p.default.value("destination_workload"), Some(UNKNOWN));
        assert_eq!(
            p.default.value("destination_service_namespace"),
            Some(UNKNOWN)
        );
        assert_eq!(
            p.default.value("destination_service"),
            Some("api.example.com")
        );
    }

    #[test]
    fn kubernetes_service_names_give_name_and_namespace() {
        let d = service("reviews.bookinfo.svc.cluster.local", None);
        assert_eq!(d.service_name, "reviews");
        assert_eq!(d.service_namespace, "bookinfo");
        let d = service("example.org", None);
        assert_eq!(d.service_name, "example.org");
        assert_eq!(d.service_namespace, UNKNOWN);
        assert_eq!(service("*", None).service_name, "PassthroughCluster");
        assert_eq!(service("*", None).service, UNKNOWN);
    }

    #[test]
    fn requests_without_a_cluster_are_unknown_or_blackhole() {
        let t = Telemetry::default();
        assert_eq!(t.unknown.value("destination_service"), Some(UNKNOWN));
        assert_eq!(
            t.unknown.value("destination_canonical_revision"),
            Some("latest")
        );
        assert_eq!(
            t.blackhole.value("destination_service_name"),
            Some("BlackHoleCluster")
        );
    }
}
