//! The Istio rules that turn a name written in one object into what it refers to: a
//! VirtualService's gateway reference, a destination host, the DestinationRule of a host.
//! `validate` reports what they find and `compile` serves it, through these functions only, so
//! that `check` and `run` cannot disagree. Each is a port of istio/istio
//! `pilot/pkg/model/config.go`, with its test cases.

use std::borrow::Cow;
use std::collections::HashMap;

use super::load::{Resource, Resources};
use super::types::DestinationRule;

// ---- gateway references ----

/// The reference that means the mesh's sidecars, never a Gateway.
pub const MESH: &str = "mesh";

/// A resolved gateway reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayName {
    pub namespace: String,
    pub name: String,
    /// Written in the legacy `name.namespace[.svc.cluster.local]` form (`check` warns).
    pub legacy: bool,
}

impl GatewayName {
    /// `namespace/name`, as Istio keys Gateways.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Istio `resolveGatewayName` (pilot/pkg/model/config.go): `name` and `./name` are in the
/// VirtualService's namespace, `ns/name` is kept, and a name with a dot is the legacy FQDN
/// form, `name.ns` or `name.ns.svc.cluster.local` → `ns/name`. The caller leaves out
/// [`MESH`], as Istio's `ResolveVirtualServiceShortnames` does.
pub fn resolve_gateway_name(gwname: &str, vs_namespace: &str) -> GatewayName {
    let (namespace, name, legacy) = match gwname.split_once('/') {
        Some((".", name)) => (vs_namespace, name, false),
        Some((ns, name)) => (ns, name, false),
        None => match gwname.split_once('.') {
            None => (vs_namespace, gwname, false),
            // Everything up to the next dot is the namespace.
            Some((name, rest)) => (rest.split('.').next().unwrap_or(rest), name, true),
        },
    };
    GatewayName {
        namespace: namespace.to_string(),
        name: name.to_string(),
        legacy,
    }
}

// ---- destination hosts ----

/// The Kubernetes cluster domain Istio appends to short names (its default `meshConfig` domain).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Istio `ResolveShortnameToFQDN` (pilot/pkg/model/config.go): a name without a dot gets
/// `.<namespace>` and `.svc.<domain>` (each only when set); `*`, IP addresses and names with a
/// dot are kept.
pub fn resolve_shortname_to_fqdn(hostname: &str, namespace: &str, domain: &str) -> String {
    let mut out = hostname.to_string();
    if hostname.is_empty() || hostname == "*" || is_ip_address(hostname) {
        return out;
    }
    if !hostname.contains('.') {
        if !namespace.is_empty() {
            out.push('.');
            out.push_str(namespace);
        }
        if !domain.is_empty() {
            out.push_str(".svc.");
            out.push_str(domain);
        }
    }
    out
}

/// Go `netip.ParseAddr` (Istio `IsValidIPAddress`): an IPv4 or IPv6 address, IPv6 with an
/// optional `%zone`.
fn is_ip_address(s: &str) -> bool {
    match s.split_once('%') {
        Some((v6, zone)) => !zone.is_empty() && v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => s.parse::<std::net::IpAddr>().is_ok(),
    }
}

/// The name Istio gives a host written in `namespace` (a destination, a DestinationRule host):
/// [`resolve_shortname_to_fqdn`] in the cluster domain, after trimming and lower-casing (host
/// names compare without case).
pub fn service_fqdn(host: &str, namespace: &str) -> String {
    resolve_shortname_to_fqdn(&host.trim().to_ascii_lowercase(), namespace, CLUSTER_DOMAIN)
}

/// Looks up the service a destination host (written in `namespace`) refers to. Istio compares
/// its FQDN ([`service_fqdn`]) with ServiceEntry hosts; Portcullis also accepts a ServiceEntry
/// that lists the short name itself (Istio keeps ServiceEntry hosts as written), and one whose
/// wildcard covers the name. `exact(name)` finds what is registered under exactly `name`,
/// `covering(name)` what is registered under `name` or a wildcard that covers it. An exact
/// registration of either name wins over a wildcard; between two of a kind, the FQDN wins.
pub fn find_service<T>(
    host: &str,
    namespace: &str,
    exact: impl Fn(&str) -> Option<T>,
    covering: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let fqdn = fqdn_cow(host, namespace);
    let written = host.trim();
    if fqdn.eq_ignore_ascii_case(written) {
        return covering(&fqdn);
    }
    let written = written.to_ascii_lowercase();
    exact(&fqdn)
        .or_else(|| exact(&written))
        .or_else(|| covering(&fqdn))
        .or_else(|| covering(&written))
}

/// [`service_fqdn`] without an allocation for a name that is already one (the request path
/// looks up hosts this way).
fn fqdn_cow<'h>(host: &'h str, namespace: &str) -> Cow<'h, str> {
    let trimmed = host.trim();
    let lower = !trimmed.bytes().any(|b| b.is_ascii_uppercase());
    if lower && (trimmed.contains('.') || trimmed == "*") {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(service_fqdn(trimmed, namespace))
    }
}

// ---- DestinationRules ----

/// Istio `host.MoreSpecific` (pkg/config/host/names.go): exact names before wildcards, then
/// longer before shorter, then alphabetical.
pub fn more_specific(a: &str, b: &str) -> bool {
    match (a.starts_with('*'), b.starts_with('*')) {
        (true, false) => false,
        (false, true) => true,
        _ if a.len() == b.len() => a < b,
        _ => a.len() > b.len(),
    }
}

/// Istio `MostSpecificHostMatch` (pilot/pkg/model/config.go): the entry for `needle` itself,
/// else the most specific wildcard that covers it. `specific` holds exact host names,
/// `wildcard` names starting with `*`; a wildcard needle is only looked up among wildcards.
pub fn most_specific_host_match<'m, V>(
    needle: &str,
    specific: &'m HashMap<String, V>,
    wildcard: &'m HashMap<String, V>,
) -> Option<(&'m str, &'m V)> {
    let (exact, suffix) = match needle.strip_prefix('*') {
        Some(rest) => (wildcard.get_key_value(needle), rest),
        None => (specific.get_key_value(needle), needle),
    };
    if let Some((h, v)) = exact {
        return Some((h.as_str(), v));
    }
    let mut best: Option<(&'m str, &'m V)> = None;
    for (h, v) in wildcard {
        let Some(tail) = h.strip_prefix('*') else {
            continue;
        };
        if suffix.ends_with(tail) && best.is_none_or(|(b, _)| more_specific(h, b)) {
            best = Some((h.as_str(), v));
        }
    }
    best
}

/// DestinationRules by host, for the most-specific match (the DestinationRule part of Istio's
/// `PushContext.destinationRule`, without its per-namespace tiers: every rule is one tier).
#[derive(Debug, Default)]
pub struct DestinationRuleIndex<'a> {
    specific: HashMap<String, Vec<&'a Resource<DestinationRule>>>,
    wildcard: HashMap<String, Vec<&'a Resource<DestinationRule>>>,
}

impl<'a> DestinationRuleIndex<'a> {
    /// Each rule under its host resolved in its own namespace ([`service_fqdn`]), as Istio's
    /// `PushContext.setDestinationRules` does; rules without a host are left out.
    pub fn new(resources: &'a Resources) -> Self {
        let mut index = DestinationRuleIndex::default();
        for dr in &resources.destination_rules {
            if dr.spec.host.trim().is_empty() {
                continue;
            }
            let host = service_fqdn(&dr.spec.host, &dr.meta.namespace);
            let map = if host.starts_with('*') {
                &mut index.wildcard
            } else {
                &mut index.specific
            };
            map.entry(host).or_default().push(&**dr);
        }
        index
    }

    /// The rules for a destination host written in `namespace`: all of those with the most
    /// specific host that matches, in load order (Istio merges them; the first wins per field).
    pub fn for_host(&self, host: &str, namespace: &str) -> Vec<&'a Resource<DestinationRule>> {
        let fqdn = service_fqdn(host, namespace);
        most_specific_host_match(&fqdn, &self.specific, &self.wildcard)
            .map(|(_, rules)| rules.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_files;
    use crate::config::source::SourceFile;

    /// istio/istio pilot/pkg/model/virtualservice_test.go `gatewayNameTests`, then the issue's
    /// `edge.prod` and two more forms.
    #[test]
    fn gateway_names_resolve_like_istio() {
        let cases = [
            // (gateway, VirtualService namespace, resolved, legacy)
            ("./gateway", "default", "default/gateway", false),
            ("gateway", "default", "default/gateway", false),
            ("default/gateway", "foo", "default/gateway", false),
            ("gateway.default", "default", "default/gateway", true),
            ("gateway.default", "foo", "default/gateway", true),
            (
                "private.ingress.svc.cluster.local",
                "foo",
                "ingress/private",
                true,
            ),
            // Portcullis' own cases: the issue's `edge.prod`, and `ns/name` kept as written.
            ("edge.prod", "default", "prod/edge", true),
            ("edge.prod.svc", "default", "prod/edge", true),
            ("other/edge.prod", "default", "other/edge.prod", false),
        ];
        for (gateway, ns, resolved, legacy) in cases {
            let got = resolve_gateway_name(gateway, ns);
            assert_eq!(
                (got.key().as_str(), got.legacy),
                (resolved, legacy),
                "{gateway} in {ns}"
            );
        }
    }

    /// istio/istio pilot/pkg/model/config_test.go `TestResolveShortnameToFQDN`.
    #[test]
    fn short_names_resolve_like_istio() {
        let cases = [
            // (name, namespace, domain, out)
            ("*", "", "", "*"),
            ("*", "default", "cluster.local", "*"),
            (
                "foo",
                "default",
                "cluster.local",
                "foo.default.svc.cluster.local",
            ),
            ("foo.bar", "default", "cluster.local", "foo.bar"),
            ("foo", "", "cluster.local", "foo.svc.cluster.local"),
            ("foo", "default", "", "foo.default"),
            ("42.185.131.210", "default", "", "42.185.131.210"),
            ("42.185.131.210", "cluster.local", "", "42.185.131.210"),
            ("2a00:4000::614", "default", "", "2a00:4000::614"),
            ("2a00:4000::614", "cluster.local", "", "2a00:4000::614"),
        ];
        for (name, ns, domain, out) in cases {
            assert_eq!(
                resolve_shortname_to_fqdn(name, ns, domain),
                out,
                "{name} {ns} {domain}"
            );
        }
        assert_eq!(
            service_fqdn(" Reviews ", "shop"),
            "reviews.shop.svc.cluster.local"
        );
        assert_eq!(service_fqdn("fe80::1%eth0", "shop"), "fe80::1%eth0");
    }

    /// Which registration a destination host finds, among ServiceEntry hosts (`*` prefix =
    /// wildcard): the FQDN first, the name as written next, exact names before wildcards.
    #[test]
    fn destinations_find_their_service() {
        let cases: [(&str, &str, &[&str], Option<&str>); 8] = [
            // (host, namespace, registered hosts, found)
            (
                "reviews",
                "shop",
                &["reviews.shop.svc.cluster.local"],
                Some("reviews.shop.svc.cluster.local"),
            ),
            ("reviews", "shop", &["reviews"], Some("reviews")),
            (
                "reviews",
                "shop",
                &["reviews", "reviews.shop.svc.cluster.local"],
                Some("reviews.shop.svc.cluster.local"),
            ),
            ("reviews", "shop", &["*", "reviews"], Some("reviews")),
            (
                "reviews",
                "shop",
                &["*.svc.cluster.local"],
                Some("*.svc.cluster.local"),
            ),
            (
                "reviews",
                "other",
                &["reviews.shop.svc.cluster.local"],
                None,
            ),
            (
                "API.example.com",
                "shop",
                &["*.example.com", "*"],
                Some("*.example.com"),
            ),
            ("reviews.shop.svc.cluster.local", "shop", &["reviews"], None),
        ];
        for (host, ns, registered, found) in cases {
            let exact = |n: &str| registered.iter().find(|r| **r == n).copied();
            let covering = |n: &str| {
                exact(n).or_else(|| {
                    registered
                        .iter()
                        .filter_map(|r| Some((*r, r.strip_prefix('*')?)))
                        .filter(|(_, tail)| n.ends_with(tail))
                        .max_by_key(|(_, tail)| tail.len())
                        .map(|(r, _)| r)
                })
            };
            assert_eq!(
                find_service(host, ns, exact, covering),
                found,
                "{host} in {ns} among {registered:?}"
            );
        }
    }

    /// istio/istio pilot/pkg/model/config_test.go `TestMostSpecificHostMatch`.
    #[test]
    fn most_specific_host_matches_like_istio() {
        let cases: [(&[&str], &str, &str); 13] = [
            // (hosts, needle, want; "" = no match)
            (&[], "*", ""),
            (&["*.foo.com", "*.com"], "bar.foo.com", "*.foo.com"),
            (&["*.foo.com", "*.com"], "foo.com", "*.com"),
            (&["foo.com", "*.com"], "*.foo.com", "*.com"),
            (&["*.foo.com", "foo.com"], "foo.com", "foo.com"),
            (&["*.foo.com", "foo.com"], "*.foo.com", "*.foo.com"),
            (&["bar.com", "foo.com"], "*.com", ""),
            (&["bar.com", "*.foo.com"], "*foo.com", ""),
            (&["foo.com", "*.foo.com"], "*foo.com", ""),
            (&["*.bar.com", "foo.bar.com"], "foo.bar.com", "foo.bar.com"),
            (
                &["*.foo.bar.com", "bar.foo.bar.com"],
                "bar.foo.bar.com",
                "bar.foo.bar.com",
            ),
            (&["bar.foo.com", "foo.bar.com"], "*.foo.com", ""),
            (&["foo.bar.foo.com", "bar.foo.bar.com"], "*.bar.foo.com", ""),
        ];
        for (hosts, needle, want) in cases {
            let (wild, exact): (Vec<&str>, Vec<&str>) =
                hosts.iter().partition(|h| h.starts_with('*'));
            let map = |v: Vec<&str>| -> HashMap<String, String> {
                v.into_iter()
                    .map(|h| (h.to_string(), format!("value of {h}")))
                    .collect()
            };
            let (specific, wildcard) = (map(exact), map(wild));
            let got = most_specific_host_match(needle, &specific, &wildcard);
            assert_eq!(
                got.map(|(h, _)| h).unwrap_or(""),
                want,
                "{needle} among {hosts:?}"
            );
            if let Some((h, v)) = got {
                assert_eq!(*v, format!("value of {h}"));
            }
        }
        assert!(more_specific("a.com", "*.b.com"));
        assert!(more_specific("*.bb.com", "*.b.com"));
        assert!(more_specific("*.a.com", "*.b.com"));
    }

    #[test]
    fn destination_rules_resolve_short_hosts_and_merge_in_load_order() {
        let dr = |name: &str, ns: &str, host: &str| {
            format!("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  host: \"{host}\"\n")
        };
        let yaml = [
            dr("short", "shop", "reviews"),
            dr("fqdn", "other", "reviews.shop.svc.cluster.local"),
            dr("wild", "shop", "*.shop.svc.cluster.local"),
            dr("any", "shop", "*"),
        ]
        .concat();
        let (res, d) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml,
        }]);
        assert!(!d.has_errors(), "{d}");
        let index = DestinationRuleIndex::new(&res);
        let names = |host: &str, ns: &str| -> Vec<String> {
            index.for_host(host, ns).iter().map(|r| r.key()).collect()
        };
        assert_eq!(names("reviews", "shop"), ["shop/short", "other/fqdn"]);
        assert_eq!(names("ratings", "shop"), ["shop/wild"]);
        assert_eq!(names("reviews", "default"), ["shop/any"]);
        assert_eq!(names("*.shop.svc.cluster.local", "x"), ["shop/wild"]);
    }
}
