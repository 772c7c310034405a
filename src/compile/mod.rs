//! Compile: valid [`Resources`] → one immutable [`Snapshot`] for this instance. Everything that
//! can be decided from config is decided here, once per reload: listeners and their route
//! tables, host indexes, compiled matchers, clusters with their policy, TLS acceptors.

pub mod access_log;
pub mod action;
pub mod cluster;
pub mod delegate;
pub mod describe;
pub mod egress;
pub mod error;
pub mod host_index;
pub mod listener;
pub mod matcher;
pub mod mesh;
pub mod registry;
pub mod reply;
pub mod route;
pub mod security;
pub mod telemetry;
pub mod tracing;
pub mod vhost;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::load::Resources;
use crate::upstream::{Cluster, StatsRegistry};
use cluster::ClusterBuilder;
use listener::{Listener, ListenerKind};
use registry::Registry;

/// Which door this instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// istio-ingressgateway: unknown hosts get 404.
    Ingress,
    /// istio-egressgateway: forward proxy and CONNECT, and only registered hosts go out.
    Egress,
}

/// What happens to hosts no ServiceEntry lists (meshConfig.outboundTrafficPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundPolicy {
    #[value(name = "REGISTRY_ONLY")]
    RegistryOnly,
    #[value(name = "ALLOW_ANY")]
    AllowAny,
}

/// The instance a snapshot is compiled for.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub labels: BTreeMap<String, String>,
    /// Gateway port → port actually listened on (what a Kubernetes Service would map).
    pub port_map: BTreeMap<u16, u16>,
    pub bind: IpAddr,
    pub certs_dir: PathBuf,
    pub role: Role,
    pub outbound_policy: OutboundPolicy,
    /// Upper bound on how long idle upstream connections are kept.
    #[serde(with = "humantime_ms")]
    pub upstream_idle_cap: std::time::Duration,
    /// The last good certificates, shared by the compiles of one running gateway.
    #[serde(skip)]
    pub credentials: listener::CredentialMemory,
    /// Root namespace, own namespace, ext_authz providers, the JWKS cache.
    pub security: security::SecuritySettings,
    /// Who this gateway is in Istio's metrics (the source side of every request).
    pub workload: crate::telemetry::istio::Workload,
}

mod humantime_ms {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
            port_map: BTreeMap::new(),
            bind: IpAddr::from([0, 0, 0, 0]),
            certs_dir: PathBuf::from("certs"),
            role: Role::Ingress,
            outbound_policy: OutboundPolicy::RegistryOnly,
            upstream_idle_cap: crate::upstream::peer::DEFAULT_IDLE_CAP,
            credentials: listener::CredentialMemory::default(),
            security: security::SecuritySettings::default(),
            workload: crate::telemetry::istio::Workload::default(),
        }
    }
}

/// Everything the data path serves from, swapped atomically as a whole.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub instance: Instance,
    pub listeners: BTreeMap<SocketAddr, Arc<Listener>>,
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    #[serde(skip)]
    pub registry: Registry,
    /// Implicit routes of an egress gateway: registered (host pattern, port) → cluster.
    #[serde(skip)]
    pub egress_clusters: HashMap<(String, u16), Arc<Cluster>>,
    /// Egress ALLOW_ANY: resolve whatever host was asked for.
    #[serde(skip)]
    pub passthrough: Arc<Cluster>,
    /// The mesh config's settings (access log, topology, drain, tracing); the pipeline sets
    /// them after `compile` (see `reload::load_and_compile_cached`).
    pub mesh: Arc<mesh::MeshSettings>,
    /// AuthorizationPolicy and RequestAuthentication, enforced before routing.
    #[serde(skip)]
    pub security: Arc<security::Security>,
    /// Istio's metric labels of requests that reached no cluster.
    #[serde(skip)]
    pub telemetry: Arc<telemetry::Telemetry>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub gateways: usize,
    pub virtual_services: usize,
    pub service_entries: usize,
    pub destination_rules: usize,
    pub authorization_policies: usize,
    pub request_authentications: usize,
    /// The security policies this instance applies (`namespace/name`).
    pub applied_policies: Vec<String>,
    pub files: usize,
    pub virtual_hosts: usize,
    pub routes: usize,
}

impl Snapshot {
    /// The listener a connection arrived on: the exact address, else the wildcard bind.
    pub fn listener(&self, local: SocketAddr) -> Option<&Arc<Listener>> {
        self.listeners.get(&local).or_else(|| {
            let any = match local.ip() {
                IpAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(_) => IpAddr::from([0, 0, 0, 0]),
                    None => IpAddr::from([0u16; 8]),
                },
            };
            self.listeners.get(&SocketAddr::new(any, local.port()))
        })
    }
}

/// Compiles a snapshot. An error (a certificate that does not load, a destination that cannot
/// be built) leaves out the part it is about and comes back with the snapshot, as the warnings
/// do; `Err` only when no snapshot can be built at all.
pub fn compile(
    resources: &Resources,
    instance: &Instance,
    stats: &StatsRegistry,
) -> Result<(Snapshot, Diagnostics), Diagnostics> {
    let mut diags: Vec<Diagnostic> = Vec::new();
    let registry = Registry::build(resources);
    let mut clusters = ClusterBuilder::new(resources, &registry, &instance.certs_dir, stats)
        .with_idle_cap(instance.upstream_idle_cap)
        .with_source(&instance.workload);
    let listeners = listener::build_listeners(resources, instance, &mut clusters, &mut diags);
    let first_security = diags.len();
    let security =
        security::Security::compile(resources, &instance.security, &instance.labels, &mut diags);
    unenforced_on_tcp(&security, &listeners, &mut diags);
    // A security policy that cannot be compiled as written is not left out: that would serve
    // what it protects. Its errors refuse the configuration (fail closed).
    for d in diags[first_security..].iter_mut().filter(|d| d.is_error()) {
        d.scope = crate::config::diag::Scope::Config;
    }

    let mut egress_clusters = HashMap::new();
    if instance.role == Role::Egress {
        for reg in registry.hosts() {
            for port in &reg.ports {
                match clusters.destination(
                    &reg.host,
                    Some(port.number),
                    None,
                    &reg.namespace,
                    port.number,
                ) {
                    Ok(c) => {
                        egress_clusters.insert((reg.host.clone(), port.number), c);
                    }
                    Err(e) => reg.entry.reporter(&mut diags).error_part(
                        None,
                        "spec.ports",
                        format!("{e}; egress to this host and port answers 503"),
                    ),
                }
            }
        }
    }
    let passthrough = match clusters.destination("*", Some(0), None, "default", 0) {
        Ok(c) => Some(c),
        Err(e) => {
            diags.push(Diagnostic::config_error(format!(
                "passthrough cluster: {e}"
            )));
            None
        }
    };
    let clusters: BTreeMap<String, Arc<Cluster>> = clusters
        .into_clusters()
        .into_values()
        .map(|c| (c.name.clone(), c))
        .collect();

    let mut diags = Diagnostics(diags);
    diags.sort();
    // Errors in a part (a server, a route, a destination) left that part out; only a snapshot
    // that cannot be built at all is refused.
    let Some(passthrough) = passthrough else {
        return Err(diags);
    };
    let (mut virtual_hosts, mut routes) = (0, 0);
    for l in listeners.values() {
        let tables: Vec<&vhost::RouteTable> = match &l.kind {
            ListenerKind::Http { routes } => vec![routes],
            ListenerKind::Tls(chains) => chains
                .chains
                .iter()
                .filter_map(|c| match &c.action {
                    listener::ChainAction::TerminateHttp { routes, .. } => Some(&**routes),
                    _ => None,
                })
                .collect(),
            ListenerKind::Tcp { .. } => vec![],
        };
        for t in tables {
            virtual_hosts += t.virtual_hosts.len();
            routes += t
                .virtual_hosts
                .iter()
                .map(|v| v.routes.len())
                .sum::<usize>();
        }
    }
    let summary = Summary {
        gateways: resources.gateways.len(),
        virtual_services: resources.virtual_services.len(),
        service_entries: resources.service_entries.len(),
        destination_rules: resources.destination_rules.len(),
        authorization_policies: resources.authorization_policies.len(),
        request_authentications: resources.request_authentications.len(),
        applied_policies: security.applied.clone(),
        files: resources.files.len(),
        virtual_hosts,
        routes,
    };
    Ok((
        Snapshot {
            instance: instance.clone(),
            listeners,
            clusters,
            registry,
            egress_clusters,
            passthrough,
            mesh: Arc::default(),
            security: Arc::new(security),
            telemetry: Arc::new(telemetry::Telemetry::new(&instance.workload)),
            summary,
        },
        diags,
    ))
}

/// Istio also enforces AuthorizationPolicy on TCP and TLS-passthrough servers (Envoy's network
/// RBAC filter); Portcullis enforces it on HTTP only, so a deciding policy on a gateway with
/// such servers is an error rather than a silent allow there.
fn unenforced_on_tcp(
    security: &security::Security,
    listeners: &BTreeMap<SocketAddr, Arc<Listener>>,
    diags: &mut Vec<Diagnostic>,
) {
    if !security.decides() {
        return;
    }
    let tcp: Vec<&str> = listeners
        .values()
        .filter(|l| match &l.kind {
            ListenerKind::Tcp { .. } => true,
            ListenerKind::Tls(chains) => chains
                .chains
                .iter()
                .any(|c| !matches!(c.action, listener::ChainAction::TerminateHttp { .. })),
            ListenerKind::Http { .. } => false,
        })
        .flat_map(|l| l.servers.iter().map(String::as_str))
        .collect();
    if tcp.is_empty() {
        return;
    }
    diags.push(Diagnostic::config_error(format!(
        "AuthorizationPolicies {} apply to this gateway, which also serves TCP or TLS streams ({}): Portcullis enforces authorization on HTTP requests only, and would let those streams through (expected the policies' selector to exclude this gateway, or HTTP servers only)",
        security.applied.join(", "),
        tcp.join(", ")
    )));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_files;
    use crate::config::source::SourceFile;

    fn snapshot(yaml: &str) -> Snapshot {
        let (res, diags) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml.into(),
        }]);
        assert!(!diags.has_errors(), "{diags}");
        compile(&res, &Instance::default(), &StatsRegistry::default())
            .expect("compiles")
            .0
    }

    fn vs(name: &str, created: &str, http: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, creationTimestamp: '{created}'}}\nspec:\n  hosts: [shop.example.com]\n  gateways: [gw]\n  http:\n{http}"
        )
    }

    const GATEWAY: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ['*']\n";

    #[test]
    fn routes_of_several_virtual_services_merge_by_creation_time_then_name_with_catch_alls_last() {
        let route = |n: &str| {
            format!("  - name: {n}\n    match: [{{uri: {{prefix: /{n}}}}}]\n    directResponse: {{status: 200}}\n")
        };
        let catch_all = "  - name: fallback\n    directResponse: {status: 404}\n";
        let yaml = format!(
            "{GATEWAY}{}{}{}{}",
            // Oldest, but its catch-all must still go last.
            vs(
                "zeta",
                "2020-01-01T00:00:00Z",
                &format!("{}{catch_all}", route("z1"))
            ),
            vs(
                "beta",
                "2021-01-01T00:00:00Z",
                &format!("{}{}", route("b1"), route("b2"))
            ),
            vs("alpha", "2021-01-01T00:00:00Z", &route("a1")),
            vs("gamma", "2022-01-01T00:00:00Z", &route("g1")),
        );
        let s = snapshot(&yaml);
        let listener = s.listeners.values().next().unwrap();
        let ListenerKind::Http { routes } = &listener.kind else {
            panic!()
        };
        let names: Vec<&str> = routes
            .find("shop.example.com")
            .unwrap()
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        // creation time first; equal times by name (alpha before beta); each keeps its own order.
        assert_eq!(names, ["z1", "a1", "b1", "b2", "g1", "fallback"]);
    }

    #[test]
    fn gateway_hosts_intersect_virtual_service_hosts_into_virtual_hosts() {
        let yaml = format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v}}\nspec:\n  hosts: ['*.example.com', other.org]\n  gateways: [gw]\n  http:\n  - directResponse: {{status: 200}}\n",
            GATEWAY.replace("hosts: ['*']", "hosts: [a.example.com, '*.b.example.com']")
        );
        let s = snapshot(&yaml);
        let ListenerKind::Http { routes } = &s.listeners.values().next().unwrap().kind else {
            panic!()
        };
        let domains: Vec<&str> = routes
            .virtual_hosts
            .iter()
            .map(|v| v.domain.as_str())
            .collect();
        // The narrower side of each overlap; other.org is not on this gateway.
        assert_eq!(domains, ["a.example.com", "*.b.example.com"]);
        assert!(routes.find("x.b.example.com").is_some());
        assert!(routes.find("c.example.com").is_none());
    }

    #[test]
    fn a_legacy_gateway_name_binds_the_gateway_check_resolves_it_to() {
        // `edge.prod` is Gateway prod/edge (Istio `resolveGatewayName`), not default/edge.prod.
        let yaml = format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: shop}}\nspec:\n  hosts: [shop.example.com]\n  gateways: [edge.prod]\n  http:\n  - name: served\n    directResponse: {{status: 200}}\n",
            GATEWAY.replace("name: gw}", "name: edge, namespace: prod}")
        );
        let s = snapshot(&yaml);
        let ListenerKind::Http { routes } = &s.listeners.values().next().unwrap().kind else {
            panic!()
        };
        let served = routes
            .find("shop.example.com")
            .expect("the VirtualService's host");
        let names: Vec<&str> = served.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["served"]);
    }

    #[test]
    fn a_deciding_policy_on_a_gateway_with_tcp_servers_is_an_error() {
        // Istio enforces it there with Envoy's network RBAC filter; Portcullis cannot.
        let yaml = format!(
            "{}  - port: {{number: 9000, name: tcp, protocol: TCP}}\n    hosts: ['*']\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny, namespace: istio-system}}\nspec: {{action: DENY, rules: [{{}}]}}\n",
            GATEWAY
        );
        let (res, diags) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml,
        }]);
        assert!(!diags.has_errors(), "{diags}");
        // Compile comes back with the error; its scope refuses the configuration (fail closed).
        let (_, diags) = compile(&res, &Instance::default(), &StatsRegistry::default())
            .expect("a snapshot, with the error");
        let err = diags.errors().next().expect("an error");
        assert_eq!(err.scope, crate::config::diag::Scope::Config, "{diags}");
        assert!(
            err.to_string().contains("AuthorizationPolicies istio-system/deny apply to this gateway, which also serves TCP or TLS streams"),
            "{err}"
        );
    }
}
