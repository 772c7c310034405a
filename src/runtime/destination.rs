//! Which addresses a destination taken from the request may have.
//!
//! Most destinations are named by the config: a ServiceEntry's endpoints, or a route's
//! destination host (a DNS name or an IP literal the route writes). One kind is not: a
//! wildcard ServiceEntry with `resolution: NONE` (or `DYNAMIC_DNS`), and the ALLOW_ANY
//! passthrough on an egress gateway, connect to the host the *request* names (Envoy's original
//! destination / dynamic forward proxy). There the client picks the address, so:
//!
//! - on an ingress gateway, such a destination is never a loopback, unspecified, link-local
//!   (cloud metadata, `169.254.169.254`), multicast or broadcast address: a client on the
//!   internet must not reach the services that listen on the gateway's own host, or its
//!   admin listener, through a `Host` header. A route that names such an address still
//!   reaches it;
//! - on any gateway, it is never the admin listener.

use std::net::{IpAddr, SocketAddr};

use crate::compile::reply::LocalReply;
use crate::compile::Role;
use crate::upstream::endpoint::Endpoints;
use crate::upstream::Cluster;

/// The answer for a refused request-derived destination (403: the address is not one this
/// gateway will connect a client to).
pub fn destination_refused(why: &'static str) -> LocalReply {
    LocalReply::new(
        403,
        None,
        "destination_not_allowed",
        format!("the requested host resolves to {why}, which this gateway does not connect to\n"),
    )
}

/// Whether `cluster` connects to an address the request chose.
pub fn request_derived(cluster: &Cluster) -> bool {
    matches!(cluster.endpoints, Endpoints::RequestHost { .. })
}

/// Why a request-derived destination `addr` is refused, if it is.
pub fn refused(addr: SocketAddr, role: Role, admin: Option<SocketAddr>) -> Option<&'static str> {
    let ip = canonical(addr.ip());
    if let Some(admin) = admin {
        let admin_ip = canonical(admin.ip());
        let same_host = ip == admin_ip || ip.is_loopback() || ip.is_unspecified();
        if addr.port() == admin.port() && (same_host || admin_ip.is_unspecified()) {
            return Some("the admin listener");
        }
    }
    if role == Role::Ingress && internal(ip) {
        return Some("a loopback, link-local or local-only address");
    }
    None
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ingress_never_connects_a_request_chosen_host_to_local_addresses() {
        for addr in [
            "127.0.0.1:80",
            "127.1.2.3:8080",
            "0.0.0.0:80",
            "169.254.169.254:80",
            "[::1]:80",
            "[::]:80",
            "[::ffff:127.0.0.1]:80",
            "[fe80::1]:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
        ] {
            assert!(refused(a(addr), Role::Ingress, None).is_some(), "{addr}");
            assert!(refused(a(addr), Role::Egress, None).is_none(), "{addr}");
        }
        assert!(refused(a("10.0.0.5:80"), Role::Ingress, None).is_none());
        assert!(refused(a("93.184.216.34:443"), Role::Ingress, None).is_none());
    }

    #[test]
    fn no_gateway_connects_a_request_chosen_host_to_its_admin_listener() {
        let admin = Some(a("127.0.0.1:15000"));
        for addr in [
            "127.0.0.1:15000",
            "127.0.0.2:15000",
            "[::1]:15000",
            "0.0.0.0:15000",
        ] {
            assert_eq!(
                refused(a(addr), Role::Egress, admin),
                Some("the admin listener"),
                "{addr}"
            );
        }
        assert!(refused(a("127.0.0.1:8080"), Role::Egress, admin).is_none());
        assert!(refused(a("10.0.0.5:15000"), Role::Egress, admin).is_none());
        let everywhere = Some(a("0.0.0.0:15000"));
        assert!(refused(a("10.0.0.5:15000"), Role::Egress, everywhere).is_some());
    }
}
