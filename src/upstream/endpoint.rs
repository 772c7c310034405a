//! A cluster's endpoints: fixed addresses, names resolved asynchronously, or the host the
//! request asked for.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoints {
    /// Fixed addresses (STATIC ServiceEntry endpoints, or an IP literal).
    Static(Vec<Endpoint>),
    /// Names resolved asynchronously, every address a host (Istio DNS / STRICT_DNS).
    Dns(Vec<DnsEndpoint>),
    /// Resolve the host the request asked for (NONE / DYNAMIC_DNS on wildcard entries, and
    /// ALLOW_ANY egress). Port 0 means the port the request asked for.
    RequestHost { port: u16 },
}

impl Endpoints {
    /// How many endpoints outlier detection's `maxEjectionPercent` is a share of.
    pub fn count(&self) -> usize {
        match self {
            Endpoints::Static(eps) => eps.len(),
            _ => 1,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub weight: u32,
    /// Requests in flight to this endpoint (LEAST_REQUEST); shared with the cluster stats so
    /// it survives reloads.
    #[serde(skip)]
    pub active: Arc<AtomicU64>,
}

impl Endpoint {
    pub fn new(address: SocketAddr, weight: u32) -> Endpoint {
        Endpoint {
            address,
            weight: weight.max(1),
            active: Arc::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DnsEndpoint {
    pub name: String,
    pub port: u16,
    pub weight: u32,
}
