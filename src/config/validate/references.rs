//! Checks across objects, as `istioctl analyze` makes them (istio/istio
//! `pkg/config/analysis/analyzers/virtualservice/{gateways,destinationrules,destinationhosts}.go`,
//! `destinationrule/subset.go`, `serviceentry/conflictingserviceentries.go`): VirtualService →
//! Gateway, → DestinationRule subset, → delegate VirtualService, → ServiceEntry host;
//! DestinationRule → ServiceEntry; ServiceEntries that disagree about a port's protocol.
//!
//! Each is a warning with istioctl's code: the webhook admits these resources, and Istio serves
//! them as they are (a VirtualService naming a missing Gateway binds nothing; a route to a
//! subset no DestinationRule defines answers 503 `NC`; a missing delegate's rule is skipped).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::rules::{check_gateway_name, check_port, is_dns1123_label};
use super::service_entry::port_protocol;
use super::virtual_service::bound_to_gateway;
use super::{exported_to, Index};
use crate::config::diag::{code, Diagnostic, Reporter, Severity};
use crate::config::host::{HostPattern, ServerHost};
use crate::config::load::{Resource, Resources};
use crate::config::resolve::{resolve_gateway_name, service_fqdn, MESH};
use crate::config::types::{Destination, Gateway, ServiceEntry, VirtualService};

pub(super) fn check(resources: &Resources, index: &Index, out: &mut Vec<Diagnostic>) {
    // Delegates that a gateway-bound VirtualService includes are served through it.
    let mut included: HashSet<(String, String)> = HashSet::new();
    for vs in resources
        .virtual_services
        .iter()
        .filter(|vs| bound_to_gateway(&vs.spec))
    {
        for d in vs.spec.http.iter().filter_map(|h| h.delegate.as_ref()) {
            let ns = d
                .namespace
                .clone()
                .unwrap_or_else(|| vs.meta.namespace.clone());
            included.insert((ns, d.name.clone()));
        }
    }
    for vs in &resources.virtual_services {
        let served = bound_to_gateway(&vs.spec)
            || (vs.spec.hosts.is_empty()
                && included.contains(&(vs.meta.namespace.clone(), vs.meta.name.clone())));
        check_virtual_service(vs, index, served, out);
    }
    for dr in &resources.destination_rules {
        check_destination_rule(dr, index, out);
    }
    check_service_entry_protocols(&resources.service_entries, out);
}

/// Does Istio's webhook reject `list[i]`? `validateGatewayNames` checks the names up to the
/// first one without a namespace.
fn webhook_rejects(list: &[String], i: usize) -> bool {
    list[..i].iter().all(|g| g.contains('/')) && check_gateway_name(&list[i]).is_err()
}

fn lookup_gateway<'a>(
    r: &mut Reporter,
    index: &Index<'a>,
    path: &str,
    name: &str,
    vs_ns: &str,
    rejected: bool,
) -> Option<&'a Resource<Gateway>> {
    if name == MESH || rejected {
        return None; // `mesh` is special; the webhook already rejects a malformed name
    }
    let gw = resolve_gateway_name(name, vs_ns);
    if gw.legacy {
        r.warn(
            path,
            format!("using legacy gatewayName format `{name}` (expected the <namespace>/<name> format: `{}`)", gw.key()),
        );
    }
    let found = index
        .gateways
        .get(&(gw.namespace.as_str(), gw.name.as_str()))
        .copied();
    if found.is_none() {
        r.finding(
            Severity::Warning,
            code::REFERENCED_RESOURCE_NOT_FOUND,
            path,
            format!("gateway {} does not exist, so this reference binds nothing (expected a Gateway loaded from the config directory, or `mesh`)", gw.key()),
        );
    }
    found
}

/// Does a server host of `gw` that admits `vs_ns` overlap `host`? (IST0132)
fn host_in_gateway(gw: &Resource<Gateway>, host: &HostPattern, vs_ns: &str) -> bool {
    gw.spec.servers.iter().flat_map(|s| &s.hosts).any(|h| {
        let sh = ServerHost::parse(h, &gw.meta.namespace);
        sh.admits_namespace(vs_ns) && sh.host.matches(host)
    })
}

fn check_virtual_service(
    vs: &Resource<VirtualService>,
    index: &Index,
    served: bool,
    out: &mut Vec<Diagnostic>,
) {
    let mut r = vs.reporter(out);
    let spec = &vs.spec;
    let ns = vs.meta.namespace.as_str();
    let delegate = spec.hosts.is_empty();
    let vs_hosts: Vec<HostPattern> = spec.hosts.iter().map(|h| HostPattern::parse(h)).collect();

    let mut bound: Vec<&Resource<Gateway>> = Vec::new();
    for (i, g) in spec.gateways.iter().enumerate() {
        let path = format!("spec.gateways[{i}]");
        let rejected = webhook_rejects(&spec.gateways, i);
        if let Some(gw) = lookup_gateway(&mut r, index, &path, g, ns, rejected) {
            bound.push(gw);
        }
    }
    // IST0132 for each host that no bound Gateway serves (istioctl reports a Gateway only
    // when none of the hosts matches it).
    if !delegate && !bound.is_empty() {
        for (i, host) in vs_hosts.iter().enumerate() {
            if bound.iter().any(|gw| host_in_gateway(gw, host, ns)) {
                continue;
            }
            let offered: Vec<String> = bound
                .iter()
                .map(|gw| {
                    let mut hosts: Vec<&str> = gw
                        .spec
                        .servers
                        .iter()
                        .flat_map(|s| &s.hosts)
                        .map(String::as_str)
                        .collect();
                    hosts.sort_unstable();
                    hosts.dedup();
                    format!("{} [{}]", gw.key(), hosts.join(", "))
                })
                .collect();
            r.finding(
                Severity::Warning,
                code::VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY,
                format!("spec.hosts[{i}]"),
                format!(
                    "host `{}` is not found in any bound Gateway that admits namespace {ns} ({}), so requests for it are not served (expected a host listed in a Gateway's servers[].hosts)",
                    spec.hosts[i],
                    offered.join("; ")
                ),
            );
        }
    }

    let mut match_gateways: Vec<(String, &String, bool)> = Vec::new();
    for (i, route) in spec.http.iter().enumerate() {
        for (j, m) in route.matches.iter().enumerate() {
            for (k, g) in m.gateways.iter().enumerate() {
                match_gateways.push((
                    format!("spec.http[{i}].match[{j}].gateways[{k}]"),
                    g,
                    webhook_rejects(&m.gateways, k),
                ));
            }
        }
    }
    for (i, route) in spec.tls.iter().enumerate() {
        for (j, m) in route.matches.iter().enumerate() {
            for (k, g) in m.gateways.iter().enumerate() {
                match_gateways.push((
                    format!("spec.tls[{i}].match[{j}].gateways[{k}]"),
                    g,
                    webhook_rejects(&m.gateways, k),
                ));
            }
        }
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        for (j, m) in route.matches.iter().enumerate() {
            for (k, g) in m.gateways.iter().enumerate() {
                match_gateways.push((
                    format!("spec.tcp[{i}].match[{j}].gateways[{k}]"),
                    g,
                    webhook_rejects(&m.gateways, k),
                ));
            }
        }
    }
    for (path, g, rejected) in match_gateways {
        lookup_gateway(&mut r, index, &path, g, ns, rejected);
    }

    // Istio skips a rule whose delegate does not exist, has hosts, or is not exported to this
    // namespace (`virtualservice_controller.go`).
    for (i, route) in spec.http.iter().enumerate() {
        let Some(d) = &route.delegate else { continue };
        let dns = d.namespace.as_deref().unwrap_or(ns);
        let why = match index.virtual_services.get(&(dns, d.name.as_str())) {
            None => format!(
                "delegate VirtualService {dns}/{} does not exist, so this rule is skipped (expected a VirtualService without hosts loaded from the config directory)",
                d.name
            ),
            Some(target) if !target.spec.hosts.is_empty() => format!(
                "delegate VirtualService {} has hosts, so it is not a delegate and this rule is skipped (expected a VirtualService without hosts)",
                target.key()
            ),
            Some(target)
                if !exported_to(&target.spec.export_to, &target.meta.namespace, ns) =>
            {
                format!(
                    "delegate VirtualService {} is not exported to namespace {ns}, so this rule is skipped (expected exportTo including {ns})",
                    target.key()
                )
            }
            Some(_) => continue,
        };
        r.finding(
            Severity::Warning,
            code::REFERENCED_RESOURCE_NOT_FOUND,
            format!("spec.http[{i}].delegate"),
            why,
        );
    }

    let mut dests: Vec<(String, &Destination)> = Vec::new();
    for (i, route) in spec.http.iter().enumerate() {
        for (k, rd) in route.route.iter().enumerate() {
            if let Some(d) = &rd.destination {
                dests.push((format!("spec.http[{i}].route[{k}].destination"), d));
            }
        }
        if let Some(m) = &route.mirror {
            dests.push((format!("spec.http[{i}].mirror"), m));
        }
        for (k, m) in route.mirrors.iter().enumerate() {
            if let Some(d) = &m.destination {
                dests.push((format!("spec.http[{i}].mirrors[{k}].destination"), d));
            }
        }
    }
    for (kind, routes) in [
        ("tls", spec.tls.iter().map(|t| &t.route).collect::<Vec<_>>()),
        ("tcp", spec.tcp.iter().map(|t| &t.route).collect::<Vec<_>>()),
    ] {
        for (i, route) in routes.into_iter().enumerate() {
            for (k, rd) in route.iter().enumerate() {
                if let Some(d) = &rd.destination {
                    dests.push((format!("spec.{kind}[{i}].route[{k}].destination"), d));
                }
            }
        }
    }
    for (path, d) in dests {
        if d.host.is_empty() || d.host == "*" {
            continue;
        }
        // Malformed subsets and ports are reported by the VirtualService rules already.
        if let Some(subset) = d.subset.as_deref().filter(|s| is_dns1123_label(s)) {
            let why = match (served, delegate) {
                (true, _) => None,
                (false, true) => Some("no gateway-bound VirtualService delegates to this one, so Portcullis never serves it"),
                (false, false) => Some("this VirtualService is mesh-only, so Portcullis never serves it"),
            };
            check_subset(&mut r, index, &path, d, subset, ns, why);
        }
        if served || delegate {
            check_service_host(&mut r, index, &path, d, ns);
        }
    }
}

fn check_subset(
    r: &mut Reporter,
    index: &Index,
    path: &str,
    d: &Destination,
    subset: &str,
    ns: &str,
    unserved: Option<&str>,
) {
    let drs: Vec<_> = index
        .destination_rules
        .for_host(&d.host, ns)
        .into_iter()
        .filter(|dr| exported_to(&dr.spec.export_to, &dr.meta.namespace, ns))
        .collect();
    if drs
        .iter()
        .any(|dr| dr.spec.subsets.iter().any(|s| s.name == subset))
    {
        return;
    }
    let mut msg = if drs.is_empty() {
        format!(
            "subset `{subset}` of host `{}` is not defined: no DestinationRule covers this host (expected a DestinationRule for `{}` with subset {subset})",
            d.host, d.host
        )
    } else {
        let names: BTreeSet<&str> = drs
            .iter()
            .flat_map(|dr| dr.spec.subsets.iter().map(|s| s.name.as_str()))
            .collect();
        let keys: Vec<String> = drs.iter().map(|dr| dr.key()).collect();
        format!(
            "subset `{subset}` of host `{}` is not defined by DestinationRule {} (it defines: {}) (expected a subset named {subset})",
            d.host,
            keys.join(", "),
            if names.is_empty() { "no subsets".to_string() } else { names.into_iter().collect::<Vec<_>>().join(", ") }
        )
    };
    match unserved {
        None => msg.push_str("; requests routed to it get 503 NC, as Envoy answers a route whose cluster does not exist"),
        Some(why) => {
            msg.push_str("; ");
            msg.push_str(why);
        }
    }
    r.finding(
        Severity::Warning,
        code::REFERENCED_RESOURCE_NOT_FOUND,
        format!("{path}.subset"),
        msg,
    );
}

fn check_service_host(r: &mut Reporter, index: &Index, path: &str, d: &Destination, ns: &str) {
    let ses = index.services(&d.host, ns, |se| {
        exported_to(&se.spec.export_to, &se.meta.namespace, ns)
    });
    if ses.is_empty() {
        r.finding(
            Severity::Warning,
            code::REFERENCED_RESOURCE_NOT_FOUND,
            format!("{path}.host"),
            format!(
                "destination host `{}` is not defined by any ServiceEntry visible from namespace {ns}: an ingress gateway resolves it as a DNS name, an egress gateway under REGISTRY_ONLY answers 503 (expected a ServiceEntry with this host)",
                d.host
            ),
        );
        return;
    }
    if let Some(port) = d.port.filter(|p| check_port(p.number).is_ok()) {
        let with_ports: Vec<&&Resource<ServiceEntry>> =
            ses.iter().filter(|se| !se.spec.ports.is_empty()).collect();
        if with_ports.len() == ses.len()
            && !with_ports
                .iter()
                .any(|se| se.spec.ports.iter().any(|p| p.number == port.number))
        {
            let ports: Vec<String> = with_ports
                .iter()
                .flat_map(|se| se.spec.ports.iter().map(|p| p.number.to_string()))
                .collect();
            r.finding(
                Severity::Warning,
                code::REFERENCED_RESOURCE_NOT_FOUND,
                format!("{path}.port.number"),
                format!(
                    "port {} is not a port of ServiceEntry {} (ports: {}) (expected one of its ports)",
                    port.number,
                    with_ports.iter().map(|se| se.key()).collect::<Vec<_>>().join(", "),
                    ports.join(", ")
                ),
            );
        }
    }
}

fn check_destination_rule(
    dr: &Resource<crate::config::types::DestinationRule>,
    index: &Index,
    out: &mut Vec<Diagnostic>,
) {
    if super::rules::check_wildcard_domain(&dr.spec.host).is_err() {
        return; // missing or malformed: reported by the DestinationRule rules
    }
    let host = service_fqdn(&dr.spec.host, &dr.meta.namespace);
    let pattern = HostPattern::parse(&host);
    let ses = index.services(&dr.spec.host, &dr.meta.namespace, |_| true);
    let literal = dr.spec.host.to_ascii_lowercase();
    let under_wildcard = pattern.is_wildcard() && index.service_entries.any_under(&pattern);
    let mut r = dr.reporter(out);
    if ses.is_empty() && !under_wildcard {
        r.finding(
            Severity::Warning,
            code::UNKNOWN_DESTINATION_RULE_HOST,
            "spec.host",
            format!(
                "no ServiceEntry defines host `{}`; it applies only if a route sends to this host by its DNS name (expected a ServiceEntry with this host)",
                dr.spec.host
            ),
        );
        return;
    }
    // IST0173: subsets whose labels select none of the endpoints of the service.
    let exact: Vec<_> = ses
        .iter()
        .filter(|se| se.spec.workload_selector.is_none() && !se.spec.endpoints.is_empty())
        .filter(|se| {
            se.spec.hosts.iter().any(|h| {
                service_fqdn(h, &se.meta.namespace) == host || h.eq_ignore_ascii_case(&literal)
            })
        })
        .collect();
    if exact.is_empty() || exact.len() != ses.len() {
        return;
    }
    for (i, subset) in dr.spec.subsets.iter().enumerate() {
        if subset.labels.is_empty() {
            continue;
        }
        let selects = exact.iter().any(|se| {
            se.spec.endpoints.iter().any(|ep| {
                subset
                    .labels
                    .iter()
                    .all(|(k, v)| ep.labels.get(k) == Some(v))
            })
        });
        if !selects {
            let labels: Vec<String> = subset
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            r.finding(
                Severity::Warning,
                code::SUBSET_SELECTS_NOTHING,
                format!("spec.subsets[{i}].labels"),
                format!(
                    "subset `{}` ({}) selects no endpoint of ServiceEntry {}, so routes to it get 503 (expected labels that some endpoint carries)",
                    subset.name,
                    labels.join(", "),
                    exact.iter().map(|se| se.key()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

/// Namespaces an object is exported to; `None` = every namespace.
fn export_set(se: &Resource<ServiceEntry>) -> Option<BTreeSet<&str>> {
    if se.spec.export_to.is_empty() || se.spec.export_to.iter().any(|e| e == "*") {
        return None;
    }
    Some(
        se.spec
            .export_to
            .iter()
            .filter(|e| *e != "~")
            .map(|e| {
                if e == "." {
                    se.meta.namespace.as_str()
                } else {
                    e.as_str()
                }
            })
            .collect(),
    )
}

fn visible_together(a: &Resource<ServiceEntry>, b: &Resource<ServiceEntry>) -> bool {
    match (export_set(a), export_set(b)) {
        (None, None) => true,
        (None, Some(s)) | (Some(s), None) => !s.is_empty(),
        (Some(x), Some(y)) => x.intersection(&y).next().is_some(),
    }
}

/// IST0177: one host and port declared with different protocols by ServiceEntries that some
/// namespace sees together.
fn check_service_entry_protocols(
    ses: &[std::sync::Arc<Resource<ServiceEntry>>],
    out: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<(String, u32), Vec<(usize, String)>> = HashMap::new();
    let mut findings = Vec::new();
    for (s, se) in ses.iter().enumerate() {
        for h in &se.spec.hosts {
            for (k, port) in se.spec.ports.iter().enumerate() {
                let proto = port_protocol(&port.protocol)
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let entry = seen
                    .entry((h.to_ascii_lowercase(), port.number))
                    .or_default();
                if let Some((first, first_proto)) = entry
                    .iter()
                    .find(|(o, p)| *o != s && *p != proto && visible_together(&ses[*o], se))
                {
                    findings.push((
                        s,
                        k,
                        h.clone(),
                        port.number,
                        proto.clone(),
                        *first,
                        first_proto.clone(),
                    ));
                }
                entry.push((s, proto));
            }
        }
    }
    findings.sort();
    findings.dedup_by_key(|f| (f.0, f.1));
    for (s, k, host, number, proto, first, first_proto) in findings {
        let show = |p: &str| {
            if p.is_empty() {
                "unset".to_string()
            } else {
                p.to_string()
            }
        };
        ses[s].reporter(out).finding(
            Severity::Warning,
            code::CONFLICTING_SERVICE_ENTRY_PROTOCOL,
            format!("spec.ports[{k}].protocol"),
            format!(
                "port {number} of host `{host}` is {} here but {} in ServiceEntry {} (expected one protocol per host and port)",
                show(&proto),
                show(&first_proto),
                ses[first].key()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testutil::{diags, CONTEXT};

    /// Documents joined as one file; CONTEXT (Gateway default/gw, ServiceEntry svc.example.com,
    /// DestinationRule with subset v1) comes last so the lines above it do not move.
    fn file(docs: &[&str]) -> String {
        format!("{}{CONTEXT}", docs.join("---\n"))
    }

    #[test]
    fn gateway_references() {
        let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [a.example.com]
  gateways: [missing, other/gw, gw.default.svc.cluster.local, mesh]
  http:
  - match: [{gateways: [nowhere]}]
    route: [{destination: {host: svc.example.com}}]
";
        assert_eq!(
            diags(&file(&[vs])),
            [
                "t.yaml:6: Warning [IST0101] VirtualService default/vs: spec.gateways[0]: gateway default/missing does not exist, so this reference binds nothing (expected a Gateway loaded from the config directory, or `mesh`)",
                "t.yaml:6: Warning [IST0101] VirtualService default/vs: spec.gateways[1]: gateway other/gw does not exist, so this reference binds nothing (expected a Gateway loaded from the config directory, or `mesh`)",
                "t.yaml:6: Warning [IST0133] VirtualService default/vs: spec.gateways[2]: using legacy gatewayName format `gw.default.svc.cluster.local` (expected the <namespace>/<name> format: `default/gw`)",
                "t.yaml:8: Warning [IST0101] VirtualService default/vs: spec.http[0].match[0].gateways[0]: gateway default/nowhere does not exist, so this reference binds nothing (expected a Gateway loaded from the config directory, or `mesh`)",
            ]
        );
    }

    #[test]
    fn subsets_need_a_destination_rule() {
        let bound = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bound}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.example.com, subset: v2}}]
";
        let mesh = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mesh}
spec:
  hosts: [b.example.com]
  http:
  - route: [{destination: {host: other.example.com, subset: v1}}]
";
        assert_eq!(
            diags(&file(&[bound, mesh])),
            [
                "t.yaml:8: Warning [IST0101] VirtualService default/bound: spec.http[0].route[0].destination.subset: subset `v2` of host `svc.example.com` is not defined by DestinationRule default/svc (it defines: v1) (expected a subset named v2); requests routed to it get 503 NC, as Envoy answers a route whose cluster does not exist",
                "t.yaml:13: Warning VirtualService default/mesh: spec.gateways: mesh-only: spec.gateways names no Gateway (an empty list means `mesh`), so this VirtualService binds only to sidecars and Portcullis never serves it (expected spec.gateways naming a Gateway)",
                "t.yaml:16: Warning [IST0101] VirtualService default/mesh: spec.http[0].route[0].destination.subset: subset `v1` of host `other.example.com` is not defined: no DestinationRule covers this host (expected a DestinationRule for `other.example.com` with subset v1); this VirtualService is mesh-only, so Portcullis never serves it",
            ]
        );
    }

    #[test]
    fn short_names_resolve_in_the_namespace() {
        let yaml = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets: [{name: v1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: shop}
spec:
  hosts: [a.example.com]
  gateways: [default/gw]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews.shop.svc.cluster.local, subset: v1}
      weight: 50
";
        assert_eq!(diags(&file(&[yaml])), Vec::<String>::new());
    }

    #[test]
    fn delegates() {
        let root = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /shop}}]
    delegate: {name: sub, namespace: shop}
  - delegate: {name: root}
";
        let sub = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sub, namespace: shop}
spec:
  http:
  - route: [{destination: {host: svc.example.com, subset: v9}}]
";
        assert_eq!(
            diags(&file(&[root, sub])),
            [
                "t.yaml:10: Warning [IST0101] VirtualService default/root: spec.http[1].delegate: delegate VirtualService default/root has hosts, so it is not a delegate and this rule is skipped (expected a VirtualService without hosts)",
                "t.yaml:17: Warning [IST0101] VirtualService shop/sub: spec.http[0].route[0].destination.subset: subset `v9` of host `svc.example.com` is not defined by DestinationRule default/svc (it defines: v1) (expected a subset named v9); requests routed to it get 503 NC, as Envoy answers a route whose cluster does not exist",
            ]
        );
    }

    #[test]
    fn hosts_a_gateway_does_not_offer() {
        let yaml = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [\"shop/*.shop.com\"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [www.shop.com]
  gateways: [edge]
  http:
  - route: [{destination: {host: svc.example.com}}]
";
        assert_eq!(
            diags(&file(&[yaml])),
            ["t.yaml:13: Warning [IST0132] VirtualService default/vs: spec.hosts[0]: host `www.shop.com` is not found in any bound Gateway that admits namespace default (default/edge [shop/*.shop.com]), so requests for it are not served (expected a host listed in a Gateway's servers[].hosts)"]
        );
    }

    /// IST0132 for each host no bound Gateway offers, even when another host of the same
    /// VirtualService is offered (istioctl reports a Gateway only when it offers none).
    #[test]
    fn each_host_no_bound_gateway_offers_is_reported() {
        let yaml = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [\"*.shop.com\"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [www.shop.com, www.other.com, api.shop.com]
  gateways: [shop, gw]
  http:
  - route: [{destination: {host: svc.example.com}}]
";
        // `gw` (the context) offers `*`, so nothing is missing with both gateways bound.
        assert!(diags(&file(&[yaml])).is_empty());
        let only_shop = yaml.replace("gateways: [shop, gw]", "gateways: [shop]");
        assert_eq!(
            diags(&file(&[&only_shop])),
            ["t.yaml:13: Warning [IST0132] VirtualService default/vs: spec.hosts[1]: host `www.other.com` is not found in any bound Gateway that admits namespace default (default/shop [*.shop.com]), so requests for it are not served (expected a host listed in a Gateway's servers[].hosts)"]
        );
    }

    #[test]
    fn destination_hosts_need_a_service_entry() {
        let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {host: unknown.example.com}
      weight: 1
    - destination: {host: svc.example.com, port: {number: 8080}}
      weight: 1
";
        assert_eq!(
            diags(&file(&[vs])),
            [
                "t.yaml:9: Warning [IST0101] VirtualService default/vs: spec.http[0].route[0].destination.host: destination host `unknown.example.com` is not defined by any ServiceEntry visible from namespace default: an ingress gateway resolves it as a DNS name, an egress gateway under REGISTRY_ONLY answers 503 (expected a ServiceEntry with this host)",
                "t.yaml:11: Warning [IST0101] VirtualService default/vs: spec.http[0].route[1].destination.port.number: port 8080 is not a port of ServiceEntry default/svc (ports: 80, 443, 9000) (expected one of its ports)",
            ]
        );
    }

    #[test]
    fn destination_rules_need_a_service_and_endpoints() {
        let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pool}
spec:
  hosts: [pool.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pool}
spec:
  host: pool.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost}
spec:
  host: ghost.example.com
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
";
        assert_eq!(
            diags(&file(&[yaml])),
            [
                "t.yaml:17: Warning [IST0173] DestinationRule default/pool: spec.subsets[1].labels: subset `v2` (version=v2) selects no endpoint of ServiceEntry default/pool, so routes to it get 503 (expected labels that some endpoint carries)",
                "t.yaml:23: Warning [IST0174] DestinationRule default/ghost: spec.host: no ServiceEntry defines host `ghost.example.com`; it applies only if a route sends to this host by its DNS name (expected a ServiceEntry with this host)",
            ]
        );
    }

    #[test]
    fn service_entries_agree_on_protocols() {
        let se = |name: &str, ns: &str, proto: &str, export: &str| {
            format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [api.example.com]\n  ports: [{{number: 8443, name: p, protocol: {proto}}}]\n  resolution: DNS\n  exportTo: [{export}]\n")
        };
        let a = se("a", "one", "HTTPS", "\"*\"");
        let b = se("b", "two", "HTTP", "\".\"");
        let c = se("c", "three", "TCP", "\".\"");
        assert_eq!(
            diags(&file(&[&a, &b, &c])),
            [
                "t.yaml:15: Warning [IST0177] ServiceEntry two/b: spec.ports[0].protocol: port 8443 of host `api.example.com` is HTTP here but HTTPS in ServiceEntry one/a (expected one protocol per host and port)",
                "t.yaml:24: Warning [IST0177] ServiceEntry three/c: spec.ports[0].protocol: port 8443 of host `api.example.com` is TCP here but HTTPS in ServiceEntry one/a (expected one protocol per host and port)",
            ]
        );
    }
}
