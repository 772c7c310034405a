//! The egress checkpoint's answer for hosts no route names: a registered host goes to its own
//! cluster, any other host to the passthrough cluster under ALLOW_ANY or is refused under
//! REGISTRY_ONLY (Istio's BlackHoleCluster: 403 to proxy clients, 502 to host-addressed ones).
//! An ingress gateway answers 404. Decided from the snapshot alone.

use std::sync::Arc;

use super::reply::{LocalReply, ResponseFlag};
use super::{OutboundPolicy, Role, Snapshot};
use crate::upstream::Cluster;

/// How the client addressed an egress request (decides the refusal status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Addressing {
    /// Host header (DNS or /etc/hosts points the name at the gateway).
    #[default]
    Host,
    /// Absolute-form request from an `HTTP_PROXY` client.
    ForwardProxy,
    /// A `CONNECT` tunnel from an `HTTPS_PROXY` client.
    Connect,
}

impl Addressing {
    pub fn metric_label(self) -> &'static str {
        match self {
            Addressing::Host => "host",
            Addressing::ForwardProxy => "forward_proxy",
            Addressing::Connect => "connect",
        }
    }
}

/// Where a request for a host without a route goes.
pub enum Unrouted {
    Cluster(Arc<Cluster>),
    /// Not in the registry (REGISTRY_ONLY): refused.
    Refused(LocalReply),
    /// An ingress gateway: no route.
    NotFound,
}

impl Snapshot {
    /// The answer for `host:port` when no route serves it.
    pub fn unrouted(&self, host: &str, port: u16, addressing: Addressing) -> Unrouted {
        if self.instance.role != Role::Egress {
            return Unrouted::NotFound;
        }
        if let Some(cluster) = self.egress_cluster(host, port) {
            return Unrouted::Cluster(cluster.clone());
        }
        match self.instance.outbound_policy {
            OutboundPolicy::AllowAny => Unrouted::Cluster(self.passthrough.clone()),
            OutboundPolicy::RegistryOnly => {
                Unrouted::Refused(self.not_in_registry(host, port, addressing))
            }
        }
    }

    /// The cluster a `CONNECT host:port` tunnel may go to: only a registered host on a TLS or
    /// HTTPS port (or any host under ALLOW_ANY); refused with 403 otherwise.
    pub fn connect_target(&self, host: &str, port: u16) -> Result<Arc<Cluster>, LocalReply> {
        let registered = self.registry.lookup(host, "default");
        let cluster = match (registered, self.instance.outbound_policy) {
            (Some(r), _) if r.allows_tls_port(port) => self.egress_cluster(host, port).cloned(),
            (None, OutboundPolicy::AllowAny) => Some(self.passthrough.clone()),
            _ => None,
        };
        match cluster.filter(|_| self.instance.role == Role::Egress) {
            Some(c) => Ok(c),
            None => {
                let mut reply = self.not_in_registry(host, port, Addressing::Connect);
                if registered.is_some() {
                    reply.body = format!("{host}:{port} is not a TLS or HTTPS port of a ServiceEntry for {host}; CONNECT is refused\n").into();
                }
                Err(reply)
            }
        }
    }

    /// The cluster an egress request for `host:port` goes to when no route names it: the
    /// registered host's own cluster.
    pub fn egress_cluster(&self, host: &str, port: u16) -> Option<&Arc<Cluster>> {
        let registered = self.registry.lookup(host, "default")?;
        self.egress_clusters.get(&(registered.host.clone(), port))
    }

    fn not_in_registry(&self, host: &str, port: u16, addressing: Addressing) -> LocalReply {
        let status = match addressing {
            Addressing::ForwardProxy | Addressing::Connect => 403,
            Addressing::Host => 502,
        };
        let why = match self.registry.lookup(host, "default") {
            Some(r) => format!(
                "{host}:{port} is not allowed: ServiceEntry {} lists {} but not port {port}",
                r.service_entry, r.host
            ),
            None => format!("{host} is not in the registry: no ServiceEntry lists it (outbound policy REGISTRY_ONLY)"),
        };
        LocalReply::new(
            status,
            Some(ResponseFlag::NR),
            "host_not_in_registry",
            format!("{why}\n"),
        )
    }
}
