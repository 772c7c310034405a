//! Compiled route actions: what happens once a route matched. Everything that can be decided
//! from config is decided here (header names parsed, regexes built, weights summed, CORS
//! header values made); each action's runtime behaviour lives with its type, and the proxy
//! only dispatches to it.

pub mod cors;
pub mod direct;
pub mod fault;
pub mod headers;
pub mod mirror;
pub mod redirect;
pub mod retry;
pub mod rewrite;

use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use cors::Cors;
pub use direct::DirectResponse;
pub use fault::Fault;
pub use headers::{HeaderOps, HeaderOrder};
pub use mirror::Mirror;
pub use redirect::Redirect;
pub use retry::RetryPolicy;
pub use rewrite::Rewrite;

use crate::upstream::balancer::Weights;
use crate::upstream::Cluster;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    DirectResponse(DirectResponse),
}

/// `route`: weighted destinations plus the rewrite applied on the way.
#[derive(Debug, Clone, Serialize)]
pub struct Forward {
    pub destinations: Vec<WeightedCluster>,
    #[serde(skip)]
    weights: Weights,
    #[serde(skip_serializing_if = "Rewrite::is_empty")]
    pub rewrite: Rewrite,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    /// More than one destination was written (Istio's weighted clusters): the route's header
    /// operations apply after the destination's (see [`HeaderOrder`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub weighted: bool,
    /// `mirror` / `mirrors`: fire-and-forget copies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightedCluster {
    #[serde(serialize_with = "cluster_name")]
    pub cluster: Arc<Cluster>,
    pub weight: u32,
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub request_headers: HeaderOps,
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub response_headers: HeaderOps,
    /// `Host`/`:authority` in the destination's `headers.request.set` (or `add`): an authority
    /// rewrite, unless the route rewrites the authority itself (`processDestination`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// An egress gateway under REGISTRY_ONLY and a destination no ServiceEntry lists: Istio has
    /// no cluster for it (503 `NC`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

pub(crate) fn cluster_name<S: Serializer>(c: &Arc<Cluster>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.name)
}

pub(crate) fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
        None => s.serialize_none(),
    }
}

impl Forward {
    /// `destinations` must be non-empty (validation guarantees it); weight-0 entries are dropped
    /// and relative weights kept, as Istio does.
    pub fn new(
        mut destinations: Vec<WeightedCluster>,
        rewrite: Rewrite,
        timeout: Option<Duration>,
        retry: RetryPolicy,
    ) -> Forward {
        let weighted = destinations.len() > 1;
        if destinations.len() == 1 {
            destinations[0].weight = destinations[0].weight.max(1);
        } else {
            destinations.retain(|d| d.weight > 0);
        }
        let weights = Weights::new(destinations.iter().map(|d| d.weight));
        Forward {
            destinations,
            weights,
            rewrite,
            timeout,
            retry,
            weighted,
            mirrors: Vec::new(),
        }
    }

    /// The index of a destination chosen in proportion to its weight.
    pub fn choose(&self) -> usize {
        self.weights.choose()
    }

    /// The request and response header operations of destination `i` with the route's `route`
    /// ops, in Istio's order.
    pub fn header_order<'a>(
        &'a self,
        route: &'a HeaderOps,
        destination: Option<usize>,
        response: bool,
    ) -> HeaderOrder<'a> {
        let dest = destination.and_then(|i| self.destinations.get(i));
        HeaderOrder {
            route,
            destination: dest.map(|d| {
                if response {
                    &d.response_headers
                } else {
                    &d.request_headers
                }
            }),
            weighted: self.weighted,
        }
    }

    /// The authority sent upstream instead of the client's: the route's rewrite (or `Host` in
    /// its header operations), else the chosen destination's.
    pub fn authority(&self, destination: Option<usize>) -> Option<&str> {
        self.rewrite.authority.as_deref().or_else(|| {
            destination
                .and_then(|i| self.destinations.get(i))
                .and_then(|d| d.authority.as_deref())
        })
    }
}
