//! Virtual hosts and route tables: request Host → virtual host through a [`HostIndex`].

use serde::Serialize;

use super::host_index::HostIndex;
use super::route::Route;
use crate::config::host::HostPattern;

/// Routes served for one domain (one Envoy virtual host).
#[derive(Debug, Serialize)]
pub struct VirtualHost {
    /// The domain as configured: `a.example.com`, `*.example.com` or `*`.
    pub domain: String,
    pub routes: Vec<Route>,
    /// `tls.httpsRedirect`: answer 301 to https before routing; `Some(port)` is the https port
    /// to put in the Location (`None` = 443, omitted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<HttpsRedirect>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct HttpsRedirect {
    pub port: u16,
}

/// One route configuration (Envoy RDS): the virtual hosts reachable through one HTTP port or
/// one terminating HTTPS server.
#[derive(Debug, Serialize)]
pub struct RouteTable {
    /// Istio's route-config name: `http.8080` or `https.443.https.my-gateway.default`.
    pub name: std::sync::Arc<str>,
    pub virtual_hosts: Vec<VirtualHost>,
    #[serde(skip)]
    index: HostIndex<usize>,
}

impl RouteTable {
    pub fn new(name: String, mut virtual_hosts: Vec<VirtualHost>) -> RouteTable {
        virtual_hosts.sort_by(|a, b| {
            HostPattern::parse(&a.domain).specificity_cmp(&HostPattern::parse(&b.domain))
        });
        let mut index = HostIndex::new();
        for (i, vh) in virtual_hosts.iter().enumerate() {
            index.insert(&HostPattern::parse(&vh.domain), i);
        }
        RouteTable {
            name: name.into(),
            virtual_hosts,
            index,
        }
    }

    /// The virtual host for a normalised request host.
    pub fn find(&self, host: &str) -> Option<&VirtualHost> {
        self.find_index(host).map(|i| &self.virtual_hosts[i])
    }

    pub fn find_index(&self, host: &str) -> Option<usize> {
        self.index.lookup(host).copied()
    }

    /// Whether any virtual host of this table serves `host` (used for the 421 check).
    pub fn serves(&self, host: &str) -> bool {
        self.index.lookup(host).is_some()
    }
}
