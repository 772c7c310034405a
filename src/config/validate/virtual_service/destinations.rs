//! Route destinations (host, subset, port) and their relative weights, for HTTP, TLS and TCP
//! rules.

use super::super::rules::{self, check_port, is_dns1123_label};
use super::headers::check_headers;
use crate::config::diag::Reporter;
use crate::config::types::{Destination, HttpRouteDestination, RouteDestination};

pub(super) fn check_destination(r: &mut Reporter, path: &str, d: &Destination) {
    if d.host.is_empty() {
        r.error(
            format!("{path}.host"),
            "Required value: destination host is required (expected a ServiceEntry host)",
        );
    } else if d.host == "*" {
        r.error(
            format!("{path}.host"),
            "invalid destination host `*` (expected a ServiceEntry host, not a wildcard for everything)",
        );
    } else if d.host.parse::<std::net::IpAddr>().is_ok() {
        // Portcullis reaches an unregistered destination by its IP literal (Istio needs a
        // service name; a standalone gateway has no registry to require one).
    } else if let Err(m) = rules::check_wildcard_domain(&d.host) {
        r.error(
            format!("{path}.host"),
            format!("invalid destination host: {m}"),
        );
    }
    if let Some(subset) = &d.subset {
        if subset.is_empty() {
            r.error(
                format!("{path}.subset"),
                "subset name cannot be empty (expected a DestinationRule subset name, or no subset)",
            );
        } else if !is_dns1123_label(subset) {
            r.error(
                format!("{path}.subset"),
                format!("subset name `{subset}` is invalid (expected a DNS-1123 label)"),
            );
        }
    }
    if let Some(port) = d.port {
        if let Err(m) = check_port(port.number) {
            r.error(format!("{path}.port.number"), m);
        }
    }
}

pub(super) fn check_http_destinations(
    r: &mut Reporter,
    base: &str,
    routes: &[HttpRouteDestination],
) {
    check_weighted(
        r,
        base,
        routes,
        |rd| (rd.destination.as_ref(), rd.weight),
        |r, p, rd| {
            // Each destination may rewrite the authority once, whatever its route does.
            let mut authority = Vec::new();
            check_headers(
                r,
                &format!("{p}.headers"),
                rd.headers.as_ref(),
                &mut authority,
            );
        },
    );
}

pub(super) fn check_l4_destinations(
    r: &mut Reporter,
    base: &str,
    kind: &str,
    routes: &[RouteDestination],
) {
    if routes.is_empty() {
        r.error(
            format!("{base}.route"),
            format!("Required value: {kind} route is required (expected at least one destination)"),
        );
    }
    check_weighted(
        r,
        base,
        routes,
        |rd| (rd.destination.as_ref(), rd.weight),
        |_, _, _| {},
    );
}

/// Each entry of a `route` list (its destination, its weight, then what `extra` checks), and
/// the total weight.
fn check_weighted<T>(
    r: &mut Reporter,
    base: &str,
    routes: &[T],
    parts: impl Fn(&T) -> (Option<&Destination>, i32),
    mut extra: impl FnMut(&mut Reporter, &str, &T),
) {
    let mut total: i64 = 0;
    for (k, rd) in routes.iter().enumerate() {
        let p = format!("{base}.route[{k}]");
        let (destination, weight) = parts(rd);
        match destination {
            None => r.error(
                format!("{p}.destination"),
                "Required value: destination is required (expected host and optional subset/port)",
            ),
            Some(d) => check_destination(r, &format!("{p}.destination"), d),
        }
        if weight < 0 {
            r.error(
                format!("{p}.weight"),
                format!("weight {weight} is negative (expected 0 or more; weights are relative)"),
            );
        }
        total += i64::from(weight);
        extra(r, &p, rd);
    }
    if routes.len() > 1 && total == 0 {
        r.error(
            format!("{base}.route"),
            format!(
                "total destination weight = 0 across {} destinations (expected at least one positive weight; weights are relative)",
                routes.len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;

    #[test]
    fn destinations_and_weights() {
        check(&[
            (
                "http:\n- route:\n  - destination: {host: svc.example.com}\n    weight: 10\n  - destination: {host: svc.example.com}\n    weight: -5\n",
                &["t.yaml:12: Error [IST0106] VirtualService default/vs: spec.http[0].route[1].weight: weight -5 is negative (expected 0 or more; weights are relative)"],
            ),
            (
                "http:\n- route:\n  - destination: {host: svc.example.com}\n  - destination: {host: svc.example.com}\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].route: total destination weight = 0 across 2 destinations (expected at least one positive weight; weights are relative)"],
            ),
            (
                "http:\n- route:\n  - weight: 100\n",
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].route[0].destination: Required value: destination is required (expected host and optional subset/port)"],
            ),
            (
                "http:\n- route:\n  - destination: {host: \"*\"}\n",
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].route[0].destination.host: invalid destination host `*` (expected a ServiceEntry host, not a wildcard for everything)"],
            ),
            (
                "http:\n- route:\n  - destination: {host: svc.example.com, subset: v_1, port: {number: 0}}\n",
                &[
                    "t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].route[0].destination.subset: subset name `v_1` is invalid (expected a DNS-1123 label)",
                    "t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].route[0].destination.port.number: port number 0 is out of range (expected 1-65535)",
                ],
            ),
        ]);
    }
}
