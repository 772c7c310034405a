//! The service registry: ServiceEntry hosts indexed like virtual hosts. Destinations resolve
//! through it, and on an egress gateway it is the allow-list of what may leave.

use std::sync::Arc;

use serde::Serialize;

use super::host_index::HostIndex;
use crate::config::host::HostPattern;
use crate::config::load::{Resource, Resources};
use crate::config::resolve::find_service;
use crate::config::types::{Protocol, Resolution, ServiceEntry};

/// One ServiceEntry host, with what the registry needs to answer "may this go out, and how".
#[derive(Debug, Serialize)]
pub struct RegisteredHost {
    pub host: String,
    /// `namespace/name` of the ServiceEntry.
    pub service_entry: String,
    pub namespace: String,
    pub ports: Vec<RegisteredPort>,
    pub resolution: Resolution,
    #[serde(skip)]
    pub entry: Arc<Resource<ServiceEntry>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisteredPort {
    pub number: u16,
    pub name: String,
    pub protocol: Option<Protocol>,
    pub target_port: Option<u16>,
}

impl RegisteredHost {
    pub fn port(&self, number: u16) -> Option<&RegisteredPort> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// May a CONNECT tunnel or TLS passthrough reach this port? Only ports declared as TLS or HTTPS.
    pub fn allows_tls_port(&self, number: u16) -> bool {
        self.port(number)
            .is_some_and(|p| matches!(p.protocol, Some(Protocol::Tls) | Some(Protocol::Https)))
    }
}

#[derive(Debug)]
pub struct Registry {
    index: HostIndex<Arc<RegisteredHost>>,
    hosts: Vec<Arc<RegisteredHost>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            index: HostIndex::new(),
            hosts: Vec::new(),
        }
    }
}

impl Registry {
    pub fn build(resources: &Resources) -> Registry {
        let mut registry = Registry {
            index: HostIndex::new(),
            hosts: Vec::new(),
        };
        for se in &resources.service_entries {
            let entry = Arc::clone(se);
            let ports: Vec<RegisteredPort> = se
                .spec
                .ports
                .iter()
                .filter_map(|p| {
                    Some(RegisteredPort {
                        number: u16::try_from(p.number).ok()?,
                        name: p.name.clone(),
                        protocol: p.protocol.as_deref().and_then(Protocol::parse),
                        target_port: p.target_port.and_then(|t| u16::try_from(t).ok()),
                    })
                })
                .collect();
            for host in &se.spec.hosts {
                let pattern = HostPattern::parse(host);
                let registered = Arc::new(RegisteredHost {
                    host: pattern.to_string(),
                    service_entry: se.key(),
                    namespace: se.meta.namespace.clone(),
                    ports: ports.clone(),
                    resolution: se.spec.resolution(),
                    entry: entry.clone(),
                });
                // The first ServiceEntry to declare a host wins, as in load order.
                if registry.index.insert(&pattern, registered.clone()) {
                    registry.hosts.push(registered);
                }
            }
        }
        registry
    }

    /// The registry entry for a concrete host written in `namespace`, by the rule `check` uses
    /// (its FQDN, then a short name as written; exact entries before wildcards).
    pub fn lookup(&self, host: &str, namespace: &str) -> Option<&Arc<RegisteredHost>> {
        find_service(
            host,
            namespace,
            |n| self.index.lookup(n).filter(|r| r.host == n),
            |n| self.index.lookup(n),
        )
    }

    /// The entry for exactly this pattern (a wildcard destination host names a wildcard entry).
    pub fn lookup_pattern(
        &self,
        pattern: &HostPattern,
        namespace: &str,
    ) -> Option<&Arc<RegisteredHost>> {
        match pattern {
            HostPattern::Exact(h) => self.lookup(h, namespace),
            HostPattern::Wildcard(_) => self
                .hosts
                .iter()
                .find(|h| HostPattern::parse(&h.host) == *pattern),
        }
    }

    pub fn hosts(&self) -> &[Arc<RegisteredHost>] {
        &self.hosts
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}
