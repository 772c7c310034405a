//! VirtualService: hosts, gateways, HTTP/TLS/TCP rules (Istio `ValidateVirtualService` and
//! `validateHTTPRoute`), and the analyzer findings inside one VirtualService: IST0130
//! (unreachable rule) and IST0131 (ineffective match).

use std::collections::BTreeMap;

use base64::Engine as _;

use super::rules::{
    self, check_duration, check_gateway_name, check_header_value, check_match_header_name,
    check_percent, check_port, check_regex, check_string_match, is_dns1123_label, is_http_token,
    is_ip,
};
use crate::config::diag::{Diagnostic, Reporter};
use crate::config::host::HostPattern;
use crate::config::load::Resource;
use crate::config::types::{
    Destination, HeaderOperations, Headers, HttpMatchRequest, HttpRoute, HttpRouteDestination,
    L4MatchAttributes, RouteDestination, StringMatch, TcpRoute, TlsMatchAttributes, TlsRoute,
    VirtualService,
};

/// Istio `isGateway`: gateways are listed and `mesh` is not among them.
fn gateway_only(spec: &VirtualService) -> bool {
    !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == "mesh")
}

/// Bound to at least one real gateway (so Portcullis serves it).
pub(super) fn bound_to_gateway(spec: &VirtualService) -> bool {
    spec.gateways.iter().any(|g| g != "mesh")
}

pub(super) fn check(vs: &Resource<VirtualService>, out: &mut Vec<Diagnostic>) {
    let mut r = vs.reporter(out);
    let spec = &vs.spec;
    let delegate = spec.hosts.is_empty();
    if delegate {
        let why = "a VirtualService without hosts is a delegate, included by another VirtualService's http[].delegate";
        if !spec.gateways.is_empty() {
            r.error(
                "spec.gateways",
                format!("delegate virtual service must have no gateways specified ({why}; expected hosts, or no gateways)"),
            );
        }
        if !spec.tls.is_empty() {
            r.error(
                "spec.tls",
                format!("delegate virtual service must have no tls route specified ({why}; expected hosts, or http routes only)"),
            );
        }
        if !spec.tcp.is_empty() {
            r.error(
                "spec.tcp",
                format!("delegate virtual service must have no tcp route specified ({why}; expected hosts, or http routes only)"),
            );
        }
    }
    for (i, g) in spec.gateways.iter().enumerate() {
        if let Err(m) = check_gateway_name(g) {
            r.error(format!("spec.gateways[{i}]"), m);
        }
    }
    if !delegate && !bound_to_gateway(spec) {
        r.warn(
            "spec.gateways",
            "mesh-only: spec.gateways names no Gateway (an empty list means `mesh`), so this VirtualService binds only to sidecars and Portcullis never serves it (expected spec.gateways naming a Gateway)",
        );
    }
    let to_gateway = gateway_only(spec);
    let to_mesh = !to_gateway;
    let mut hosts_valid = true;
    for (i, h) in spec.hosts.iter().enumerate() {
        if let Err(m) = rules::check_wildcard_domain(h) {
            if !is_ip(h) {
                r.error(
                    format!("spec.hosts[{i}]"),
                    format!("invalid host: {m}; a VirtualService host is an FQDN, a leftmost wildcard such as *.example.com, or an IP"),
                );
                hosts_valid = false;
            }
        } else if to_mesh && h == "*" {
            r.error(
                format!("spec.hosts[{i}]"),
                "wildcard host * is not allowed for virtual services bound to the mesh gateway (expected gateways that name a Gateway, without `mesh`, or specific hosts)",
            );
            hosts_valid = false;
        }
    }
    if hosts_valid {
        let patterns: Vec<HostPattern> = spec.hosts.iter().map(|h| HostPattern::parse(h)).collect();
        for j in 1..patterns.len() {
            if let Some(i) = (0..j).find(|&i| patterns[i].matches(&patterns[j])) {
                r.error(
                    format!("spec.hosts[{j}]"),
                    format!(
                        "duplicate hosts in virtual service: `{}` & `{}` overlap (expected each host once; a wildcard such as `*.com` already covers `*.foo.com`)",
                        spec.hosts[i], spec.hosts[j]
                    ),
                );
            }
        }
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        r.error(
            "spec",
            "http, tcp or tls must be provided in virtual service (expected at least one route list)",
        );
    }
    for (i, route) in spec.http.iter().enumerate() {
        check_http_route(
            &mut r,
            &format!("spec.http[{i}]"),
            route,
            delegate,
            to_gateway,
        );
    }
    for (i, route) in spec.tls.iter().enumerate() {
        check_tls_route(&mut r, &format!("spec.tls[{i}]"), route, spec);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        check_tcp_route(&mut r, &format!("spec.tcp[{i}]"), route);
    }
    rules::check_export_to(&mut r, "spec.exportTo", &vs.meta.namespace, &spec.export_to);
    analyze_http(&mut r, &spec.http);
    analyze_l4(
        &mut r,
        "tcp",
        &spec
            .tcp
            .iter()
            .map(|t| t.matches.as_slice())
            .collect::<Vec<_>>(),
        |m: &L4MatchAttributes| *m == L4MatchAttributes::default(),
    );
    analyze_l4(
        &mut r,
        "tls",
        &spec
            .tls
            .iter()
            .map(|t| t.matches.as_slice())
            .collect::<Vec<_>>(),
        |_: &TlsMatchAttributes| false,
    );
}

const JWT_CLAIM_PREFIX: &str = "@request.auth.claims.";

fn rule_name(i: usize, name: &Option<String>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("#{i} ({n:?})"),
        _ => format!("#{i}"),
    }
}

fn set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

fn check_http_route(
    r: &mut Reporter,
    base: &str,
    route: &HttpRoute,
    delegate_vs: bool,
    to_gateway: bool,
) {
    let root = route.delegate.is_some();
    let delegating = root || delegate_vs;
    if let Some(d) = &route.delegate {
        if delegate_vs {
            r.error(
                format!("{base}.delegate"),
                "delegate HTTP route cannot contain delegate (expected one level of delegation: a delegate VirtualService routes itself)",
            );
        }
        if d.name.is_empty() {
            r.error(
                format!("{base}.delegate.name"),
                "Required value: delegate name is required (expected the name of a VirtualService without hosts)",
            );
        }
        if let Some(ns) = d.namespace.as_deref().filter(|ns| !is_dns1123_label(ns)) {
            r.error(
                format!("{base}.delegate.namespace"),
                format!("invalid delegate namespace `{ns}` (expected a DNS-1123 label)"),
            );
        }
        for (field, present) in [
            ("route", !route.route.is_empty()),
            ("redirect", route.redirect.is_some()),
            ("directResponse", route.direct_response.is_some()),
        ] {
            if present {
                r.error(
                    format!("{base}.{field}"),
                    format!(
                        "root HTTP route with delegate must not specify {field} (expected the delegate VirtualService to decide how requests are answered)"
                    ),
                );
            }
        }
    } else {
        if route.route.is_empty() && route.redirect.is_none() && route.direct_response.is_none() {
            r.error(
                base,
                "HTTP route or redirect is required (expected route, redirect, directResponse or delegate)",
            );
        }
        if route.redirect.is_some() {
            for (field, present) in [
                ("route", !route.route.is_empty()),
                ("rewrite", route.rewrite.is_some()),
                ("fault", route.fault.is_some()),
                ("directResponse", route.direct_response.is_some()),
            ] {
                if present {
                    r.error(
                        format!("{base}.redirect"),
                        format!("HTTP route cannot contain both {field} and redirect (expected one way to answer the request)"),
                    );
                }
            }
        } else if route.direct_response.is_some() {
            for (field, present) in [
                ("route", !route.route.is_empty()),
                ("rewrite", route.rewrite.is_some()),
                ("fault", route.fault.is_some()),
            ] {
                if present {
                    r.error(
                        format!("{base}.directResponse"),
                        format!(
                            "HTTP route cannot contain both {field} and directResponse (expected one way to answer the request)"
                        ),
                    );
                }
            }
        }
    }
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        r.error(
            format!("{base}.mirrors"),
            "mirror and mirrors cannot both be set (expected mirrors alone; it replaces mirror)",
        );
    }
    for (j, m) in route.matches.iter().enumerate() {
        check_match(r, &format!("{base}.match[{j}]"), m, delegating, to_gateway);
    }
    let mut authority: Vec<String> = Vec::new();
    if route.rewrite.as_ref().is_some_and(|rw| set(&rw.authority)) {
        authority.push(format!("{base}.rewrite.authority"));
    }
    check_headers(
        r,
        &format!("{base}.headers"),
        route.headers.as_ref(),
        &mut authority,
    );
    if let Some(t) = route.timeout {
        if let Err(m) = check_duration(t) {
            r.error(format!("{base}.timeout"), m);
        }
    }
    if let Some(retries) = &route.retries {
        check_retries(r, &format!("{base}.retries"), retries);
    }
    if let Some(fault) = &route.fault {
        check_fault(r, &format!("{base}.fault"), fault);
    }
    if let Some(cors) = &route.cors_policy {
        check_cors(r, &format!("{base}.corsPolicy"), cors);
    }
    if let Some(m) = &route.mirror {
        check_destination(r, &format!("{base}.mirror"), m);
    }
    if let Some(p) = route.mirror_percentage {
        if let Err(m) = check_percent(p) {
            r.error(
                format!("{base}.mirrorPercentage.value"),
                format!("mirrorPercentage: {m}"),
            );
        }
    }
    if let Some(p) = route.mirror_percent {
        if p > 100 {
            r.error(
                format!("{base}.mirrorPercent"),
                format!("mirrorPercent {p} is above 100 (expected 0 to 100)"),
            );
        }
        r.warn(
            format!("{base}.mirrorPercent"),
            "mirrorPercent is deprecated (expected mirrorPercentage: {value: N})",
        );
    }
    for (k, mirror) in route.mirrors.iter().enumerate() {
        let p = format!("{base}.mirrors[{k}]");
        match &mirror.destination {
            None => r.error(
                format!("{p}.destination"),
                "Required value: destination is required for mirrors (expected host and optional subset/port)",
            ),
            Some(d) => check_destination(r, &format!("{p}.destination"), d),
        }
        if let Some(pc) = mirror.percentage {
            if let Err(m) = check_percent(pc) {
                r.error(
                    format!("{p}.percentage.value"),
                    format!("mirror percentage: {m}"),
                );
            }
        }
    }
    if let Some(redirect) = &route.redirect {
        check_redirect(r, &format!("{base}.redirect"), redirect, &route.matches);
    }
    if let Some(dr) = &route.direct_response {
        check_direct_response(r, &format!("{base}.directResponse"), dr);
    }
    if let Some(rw) = &route.rewrite {
        check_rewrite(r, &format!("{base}.rewrite"), rw);
    }
    check_http_destinations(r, base, &route.route);
}

fn check_match(
    r: &mut Reporter,
    base: &str,
    m: &HttpMatchRequest,
    delegating: bool,
    to_gateway: bool,
) {
    for (field, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            let p = format!("{base}.{field}");
            check_string_match(r, &p, sm, true);
            if delegating && sm.regex.is_some() {
                r.error(
                    format!("{p}.regex"),
                    format!("{field} match does not support regex match for delegating (expected exact or prefix in delegate routes)"),
                );
            }
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let p = format!("{base}.{field}.{name}");
            if name.starts_with(JWT_CLAIM_PREFIX) {
                if to_gateway {
                    r.warn(
                        p.clone(),
                        format!(
                            "IST0149 JWT claim routing (`{name}`) needs a RequestAuthentication, which Portcullis does not load: this match never matches (expected a plain header match)"
                        ),
                    );
                } else {
                    r.error(
                        p.clone(),
                        format!(
                            "JWT claim based routing (key: {name}) is only supported for gateway (expected spec.gateways naming a Gateway, without `mesh`)"
                        ),
                    );
                }
            } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
                r.error(
                    p.clone(),
                    format!(
                        "header name `{name}` must be lower-case (expected `{}`)",
                        name.to_ascii_lowercase()
                    ),
                );
            } else if let Err(msg) = check_match_header_name(name) {
                r.error(p.clone(), msg);
            }
            if matches!(name.as_str(), "uri" | "scheme" | "method" | "authority") {
                r.warn(
                    p.clone(),
                    format!("header `{name}` is ignored by Istio's header matching (expected match.{name})"),
                );
            }
            check_string_match(r, &p, sm, false);
            if delegating && sm.regex.is_some() {
                r.error(
                    format!("{p}.regex"),
                    format!("{field} match {name} does not support regex match for delegating (expected exact or prefix)"),
                );
            }
        }
    }
    for (name, sm) in &m.query_params {
        let p = format!("{base}.queryParams.{name}");
        check_string_match(r, &p, sm, false);
        if delegating && sm.regex.is_some() {
            r.error(
                format!("{p}.regex"),
                format!("query param match {name} does not support regex match for delegating (expected exact or prefix)"),
            );
        }
    }
    if let Some(port) = m.port.filter(|p| *p != 0) {
        if let Err(msg) = check_port(port) {
            r.error(format!("{base}.port"), msg);
        }
    }
    if !m.source_labels.is_empty() {
        r.warn(
            format!("{base}.sourceLabels"),
            "selects proxies, not requests: on a gateway the block applies only when these labels match the instance's labels (expected gateways, port or request attributes)",
        );
    }
    if m.source_namespace.is_some() {
        r.warn(
            format!("{base}.sourceNamespace"),
            "mesh-only: selects sidecars, ignored by a gateway (expected gateways, port or request attributes)",
        );
    }
    for (k, g) in m.gateways.iter().enumerate() {
        if let Err(msg) = check_gateway_name(g) {
            r.error(format!("{base}.gateways[{k}]"), msg);
        }
    }
}

/// Validates route- or destination-level header operations; `authority` collects the paths
/// that rewrite the authority (Host) so a second one can be rejected.
fn check_headers(
    r: &mut Reporter,
    path: &str,
    headers: Option<&Headers>,
    authority: &mut Vec<String>,
) {
    let Some(h) = headers else { return };
    if let Some(ops) = &h.request {
        check_header_ops(r, &format!("{path}.request"), ops, true, authority);
    }
    if let Some(ops) = &h.response {
        check_header_ops(r, &format!("{path}.response"), ops, false, authority);
    }
}

fn check_header_ops(
    r: &mut Reporter,
    path: &str,
    ops: &HeaderOperations,
    request: bool,
    authority: &mut Vec<String>,
) {
    for (kind, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            let p = format!("{path}.{kind}.{name}");
            let lower = name.to_ascii_lowercase();
            if request && (lower == ":authority" || lower == "host") {
                if let Some(first) = authority.first() {
                    r.error(
                        p.clone(),
                        format!(
                            "authority header cannot be set multiple times: already set by {first} (expected a single host/:authority header or rewrite.authority)"
                        ),
                    );
                }
                authority.push(p.clone());
            } else if let Err(m) = check_op_name(name, !request) {
                r.error(p.clone(), m);
            }
            if let Err(m) = check_header_value(value) {
                r.error(p, m);
            }
        }
    }
    for (k, name) in ops.remove.iter().enumerate() {
        if let Err(m) = check_op_name(name, true) {
            r.error(format!("{path}.remove[{k}]"), m);
        }
    }
}

/// A header name in set/add/remove. `no_host`: the Host header may not be touched here
/// (request remove, all response operations).
fn check_op_name(name: &str, no_host: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty (expected a header name)".into());
    }
    if name.starts_with(':') {
        return Err(format!(
            "invalid header `{name}`: header cannot have \":\" prefix; pseudo-headers other than :authority cannot be changed (expected a regular header name)"
        ));
    }
    if no_host && name.eq_ignore_ascii_case("host") {
        return Err(format!(
            "invalid header `{name}`: the Host header cannot be removed or set here (expected rewrite.authority to change the authority)"
        ));
    }
    if !is_http_token(name) {
        return Err(format!(
            "`{name}` is not a valid header name (expected an HTTP token: letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    Ok(())
}

fn check_destination(r: &mut Reporter, path: &str, d: &Destination) {
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

fn check_http_destinations(r: &mut Reporter, base: &str, routes: &[HttpRouteDestination]) {
    let mut total: i64 = 0;
    for (k, rd) in routes.iter().enumerate() {
        let p = format!("{base}.route[{k}]");
        match &rd.destination {
            None => r.error(
                format!("{p}.destination"),
                "Required value: destination is required (expected host and optional subset/port)",
            ),
            Some(d) => check_destination(r, &format!("{p}.destination"), d),
        }
        check_weight(r, &p, rd.weight);
        total += i64::from(rd.weight);
        let mut authority = Vec::new();
        check_headers(
            r,
            &format!("{p}.headers"),
            rd.headers.as_ref(),
            &mut authority,
        );
    }
    check_total_weight(r, base, routes.len(), total);
}

fn check_weight(r: &mut Reporter, path: &str, weight: i32) {
    if weight < 0 {
        r.error(
            format!("{path}.weight"),
            format!("weight {weight} is negative (expected 0 or more; weights are relative)"),
        );
    }
}

fn check_total_weight(r: &mut Reporter, base: &str, n: usize, total: i64) {
    if n > 1 && total == 0 {
        r.error(
            format!("{base}.route"),
            format!(
                "total destination weight = 0 across {n} destinations (expected at least one positive weight; weights are relative)"
            ),
        );
    }
}

fn check_l4_destinations(r: &mut Reporter, base: &str, kind: &str, routes: &[RouteDestination]) {
    if routes.is_empty() {
        r.error(
            format!("{base}.route"),
            format!("Required value: {kind} route is required (expected at least one destination)"),
        );
    }
    let mut total: i64 = 0;
    for (k, rd) in routes.iter().enumerate() {
        let p = format!("{base}.route[{k}]");
        match &rd.destination {
            None => r.error(
                format!("{p}.destination"),
                "Required value: destination is required (expected host and optional subset/port)",
            ),
            Some(d) => check_destination(r, &format!("{p}.destination"), d),
        }
        check_weight(r, &p, rd.weight);
        total += i64::from(rd.weight);
    }
    check_total_weight(r, base, routes.len(), total);
}

fn check_redirect(
    r: &mut Reporter,
    path: &str,
    redirect: &crate::config::types::HttpRedirect,
    matches: &[HttpMatchRequest],
) {
    if redirect.uri.is_some() && redirect.prefix_rewrite.is_some() {
        r.error(
            format!("{path}.prefixRewrite"),
            "uri and prefixRewrite are mutually exclusive (expected one of them)",
        );
    }
    if redirect.prefix_rewrite.is_some() {
        if let Some(j) = matches.iter().position(|m| {
            m.uri
                .as_ref()
                .is_some_and(|u| u.prefix.is_none() || u.set_count() != 1)
        }) {
            r.error(
                format!("{path}.prefixRewrite"),
                format!(
                    "prefixRewrite needs every uri match of the rule to be a prefix match, but match[{j}] is not (expected uri.prefix, or redirect.uri)"
                ),
            );
        }
    }
    if !set(&redirect.uri)
        && redirect.prefix_rewrite.is_none()
        && !set(&redirect.authority)
        && !set(&redirect.scheme)
        && redirect.port.is_none()
        && redirect.derive_port.is_none()
    {
        r.error(
            path,
            "redirect must change at least one of uri, prefixRewrite, authority, scheme, port or derivePort (expected a redirect that points somewhere else)",
        );
    }
    if let Some(code) = redirect.redirect_code {
        if ![301, 302, 303, 307, 308].contains(&code) {
            r.error(
                format!("{path}.redirectCode"),
                format!("unsupported redirect code {code} (expected 301, 302, 303, 307 or 308; Istio drops such routes)"),
            );
        }
    }
    if let Some(s) = redirect
        .scheme
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "http" && *s != "https")
    {
        r.error(
            format!("{path}.scheme"),
            format!("invalid redirect scheme `{s}` (expected \"http\" or \"https\")"),
        );
    }
    if let Some(port) = redirect.port.filter(|p| *p != 0) {
        if let Err(m) = check_port(port) {
            r.error(format!("{path}.port"), m);
        }
        if redirect.derive_port.is_some() {
            r.error(
                format!("{path}.derivePort"),
                "port and derivePort are mutually exclusive (expected one of them)",
            );
        }
    }
}

const MIB: usize = 1024 * 1024;
const KIB: usize = 1024;

fn check_direct_response(
    r: &mut Reporter,
    path: &str,
    dr: &crate::config::types::HttpDirectResponse,
) {
    if !(200..=599).contains(&dr.status) {
        r.error(
            format!("{path}.status"),
            format!("HTTP status {} is not in range 200-599 (expected a status such as 200, 404 or 503)", dr.status),
        );
    }
    let Some(body) = &dr.body else { return };
    let bpath = format!("{path}.body");
    if body.string.is_some() && body.bytes.is_some() {
        r.error(
            bpath.clone(),
            "body.string and body.bytes are mutually exclusive (expected one of them)",
        );
    }
    let mut size = body.string.as_ref().map_or(0, String::len);
    if let Some(b64) = &body.bytes {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        match engines.iter().find_map(|e| e.decode(b64.trim()).ok()) {
            Some(bytes) => size = size.max(bytes.len()),
            None => r.error(
                format!("{bpath}.bytes"),
                "body.bytes is not valid base64 (expected base64 of the body, e.g. aGVsbG8=)",
            ),
        }
    }
    if size > MIB {
        r.error(
            bpath,
            format!("direct response body is {size} bytes, above 1 MiB (expected a smaller body; large direct responses are rejected)"),
        );
    } else if size > 100 * KIB {
        r.warn(
            bpath,
            format!("direct response body is {size} bytes, above 100 KiB; every copy of the route table holds it (expected a smaller body)"),
        );
    }
}

fn check_rewrite(r: &mut Reporter, path: &str, rw: &crate::config::types::HttpRewrite) {
    if !set(&rw.uri) && rw.uri_regex_rewrite.is_none() && !set(&rw.authority) {
        r.error(
            path,
            "rewrite must specify at least one of uri, uriRegexRewrite or authority (expected one of them)",
        );
    }
    if set(&rw.uri) && rw.uri_regex_rewrite.is_some() {
        r.error(
            format!("{path}.uriRegexRewrite"),
            "rewrite may only contain one of uri or uriRegexRewrite (expected one of them)",
        );
    }
    if let Some(re) = &rw.uri_regex_rewrite {
        let p = format!("{path}.uriRegexRewrite");
        if re.pattern.is_empty() || re.rewrite.is_empty() {
            r.error(
                p.clone(),
                "uriRegexRewrite requires both rewrite and match fields to be specified (expected match: <RE2 regex>, rewrite: <replacement>)",
            );
        }
        if !re.pattern.is_empty() {
            if let Err(m) = check_regex(&re.pattern) {
                r.error(format!("{p}.match"), m);
            }
        }
    }
}

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

fn check_retries(r: &mut Reporter, path: &str, retries: &crate::config::types::HttpRetry) {
    if retries.attempts < 0 {
        r.error(
            format!("{path}.attempts"),
            format!(
                "attempts {} cannot be negative (expected 0 to disable retries, or more)",
                retries.attempts
            ),
        );
    }
    if retries.attempts == 0
        && (retries.per_try_timeout.is_some()
            || set(&retries.retry_on)
            || retries.retry_remote_localities.is_some()
            || retries.retry_ignore_previous_hosts.is_some()
            || retries.backoff.is_some())
    {
        r.error(
            path,
            "http retry policy configured when attempts are set to 0 (disabled) (expected attempts of 1 or more, or no other retry fields)",
        );
    }
    for (field, d) in [
        ("perTryTimeout", retries.per_try_timeout),
        ("backoff", retries.backoff),
    ] {
        if let Some(d) = d {
            if let Err(m) = check_duration(d) {
                r.error(format!("{path}.{field}"), m);
            }
        }
    }
    if let Some(on) = retries.retry_on.as_deref().filter(|s| !s.is_empty()) {
        for token in on.split(',') {
            let code =
                token.len() == 3 && token.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
            if !code && !RETRY_ON.contains(&token) {
                r.error(
                    format!("{path}.retryOn"),
                    format!(
                        "{token:?} is not a valid retryOn policy (expected a comma list of {}, or 3-digit status codes)",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
}

fn check_fault(r: &mut Reporter, path: &str, fault: &crate::config::types::HttpFaultInjection) {
    if fault.abort.is_none() && fault.delay.is_none() {
        r.error(
            path,
            "HTTP fault injection must have an abort and/or a delay (expected fault.abort or fault.delay)",
        );
    }
    if let Some(abort) = &fault.abort {
        let p = format!("{path}.abort");
        let kinds = [
            abort.http_status.is_some(),
            abort.grpc_status.is_some(),
            abort.http2_error.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 => r.error(
                p.clone(),
                "abort needs an error type (expected exactly one of httpStatus or grpcStatus)",
            ),
            1 => {}
            n => r.error(
                p.clone(),
                format!(
                    "abort sets {n} error types (expected exactly one of httpStatus or grpcStatus)"
                ),
            ),
        }
        if let Some(s) = abort.http_status {
            if !(200..=599).contains(&s) {
                r.error(
                    format!("{p}.httpStatus"),
                    format!("HTTP status {s} is not in range 200-599 (expected e.g. 503)"),
                );
            }
        }
        if let Some(g) = &abort.grpc_status {
            if !crate::config::types::GRPC_STATUS_NAMES.contains(&g.as_str()) {
                r.error(
                    format!("{p}.grpcStatus"),
                    format!("gRPC status {g:?} is not supported (expected a status name such as UNAVAILABLE or NOT_FOUND)"),
                );
            }
        }
        if abort.http2_error.is_some() {
            r.error(
                format!("{p}.http2Error"),
                "HTTP/2 abort fault injection is not supported (expected httpStatus or grpcStatus)",
            );
        }
        if let Some(pc) = abort.percentage {
            if let Err(m) = check_percent(pc) {
                r.error(format!("{p}.percentage.value"), m);
            }
        }
    }
    if let Some(delay) = &fault.delay {
        let p = format!("{path}.delay");
        if delay.exponential_delay.is_some() {
            r.error(
                format!("{p}.exponentialDelay"),
                "exponentialDelay is not supported (expected fixedDelay)",
            );
        } else if delay.fixed_delay.is_none() {
            r.error(
                format!("{p}.fixedDelay"),
                "Required value: delay needs fixedDelay (expected e.g. fixedDelay: 5s)",
            );
        }
        if let Some(d) = delay.fixed_delay {
            if let Err(m) = check_duration(d) {
                r.error(format!("{p}.fixedDelay"), m);
            }
        }
        if let Some(pc) = delay.percentage {
            if let Err(m) = check_percent(pc) {
                r.error(format!("{p}.percentage.value"), m);
            }
        }
        if let Some(pc) = delay.percent {
            if !(0..=100).contains(&pc) {
                r.error(
                    format!("{p}.percent"),
                    format!("percent {pc} is out of range (expected 0 to 100)"),
                );
            }
        }
    }
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

fn check_cors(r: &mut Reporter, path: &str, cors: &crate::config::types::CorsPolicy) {
    for (k, origin) in cors.allow_origins.iter().enumerate() {
        let p = format!("{path}.allowOrigins[{k}]");
        let value = origin
            .exact
            .as_deref()
            .or(origin.prefix.as_deref())
            .or(origin.regex.as_deref());
        if origin.set_count() == 1 && value == Some("") {
            r.error(
                p.clone(),
                "'' is not a valid match type for CORS allow origins (expected a non-empty exact, prefix or regex)",
            );
            continue;
        }
        check_string_match(r, &p, origin, true);
    }
    for (k, m) in cors.allow_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            r.error(
                format!("{path}.allowMethods[{k}]"),
                format!("{m:?} is not a supported HTTP method (expected GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE or *)"),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for (k, h) in list.iter().enumerate() {
            if h != "*" {
                if let Err(m) = check_match_header_name(h) {
                    r.error(format!("{path}.{field}[{k}]"), m);
                }
            }
        }
    }
    if let Some(age) = cors.max_age {
        if let Err(m) = check_duration(age) {
            r.error(format!("{path}.maxAge"), m);
        } else if age.get().subsec_nanos() != 0 {
            r.error(
                format!("{path}.maxAge"),
                format!("maxAge {age} is not a whole number of seconds (expected seconds precision, e.g. 24h or 300s)"),
            );
        }
    }
}

fn check_tls_route(r: &mut Reporter, base: &str, route: &TlsRoute, vs: &VirtualService) {
    if route.matches.is_empty() {
        r.error(
            format!("{base}.match"),
            "Required value: TLS route must have at least one match condition (expected match with sniHosts)",
        );
    }
    let vs_hosts: Vec<HostPattern> = vs.hosts.iter().map(|h| HostPattern::parse(h)).collect();
    for (j, m) in route.matches.iter().enumerate() {
        let p = format!("{base}.match[{j}]");
        if m.sni_hosts.is_empty() {
            r.error(
                format!("{p}.sniHosts"),
                "Required value: TLS match must have at least one SNI host (expected sniHosts)",
            );
        }
        for (k, sni) in m.sni_hosts.iter().enumerate() {
            let sp = format!("{p}.sniHosts[{k}]");
            if let Err(msg) = rules::check_wildcard_domain(sni) {
                if is_ip(sni) {
                    r.warn(
                        sp,
                        format!("using an IP address ({sni:?}) goes against the SNI spec and most clients do not send it (expected a host name)"),
                    );
                } else {
                    r.error(sp, format!("invalid SNI host: {msg}"));
                }
                continue;
            }
            let pattern = HostPattern::parse(sni);
            if !vs_hosts.iter().any(|h| pattern.subset_of(h)) {
                r.error(
                    sp,
                    format!(
                        "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}] (expected an SNI host that one of spec.hosts covers)",
                        vs.hosts.join(", ")
                    ),
                );
            }
        }
        for (k, s) in m.destination_subnets.iter().enumerate() {
            if let Err(msg) = rules::check_ip_or_cidr(s) {
                r.error(format!("{p}.destinationSubnets[{k}]"), msg);
            }
        }
        check_l4_match_common(
            r,
            &p,
            m.port,
            &m.source_labels,
            m.source_namespace.as_deref(),
            &m.gateways,
        );
    }
    check_l4_destinations(r, base, "TLS", &route.route);
}

fn check_tcp_route(r: &mut Reporter, base: &str, route: &TcpRoute) {
    for (j, m) in route.matches.iter().enumerate() {
        let p = format!("{base}.match[{j}]");
        for (k, s) in m.destination_subnets.iter().enumerate() {
            if let Err(msg) = rules::check_ip_or_cidr(s) {
                r.error(format!("{p}.destinationSubnets[{k}]"), msg);
            }
        }
        if let Some(s) = &m.source_subnet {
            if let Err(msg) = rules::check_ip_or_cidr(s) {
                r.error(format!("{p}.sourceSubnet"), msg);
            }
        }
        check_l4_match_common(
            r,
            &p,
            m.port,
            &m.source_labels,
            m.source_namespace.as_deref(),
            &m.gateways,
        );
    }
    check_l4_destinations(r, base, "TCP", &route.route);
}

fn check_l4_match_common(
    r: &mut Reporter,
    p: &str,
    port: Option<u32>,
    source_labels: &BTreeMap<String, String>,
    source_namespace: Option<&str>,
    gateways: &[String],
) {
    if let Some(port) = port.filter(|p| *p != 0) {
        if let Err(m) = check_port(port) {
            r.error(format!("{p}.port"), m);
        }
    }
    if !source_labels.is_empty() {
        r.warn(
            format!("{p}.sourceLabels"),
            "mesh-only: selects sidecars, ignored by a gateway (expected gateways or port)",
        );
    }
    if source_namespace.is_some() {
        r.warn(
            format!("{p}.sourceNamespace"),
            "mesh-only: selects sidecars, ignored by a gateway (expected gateways or port)",
        );
    }
    for (k, g) in gateways.iter().enumerate() {
        if let Err(m) = check_gateway_name(g) {
            r.error(format!("{p}.gateways[{k}]"), m);
        }
    }
}

// ---- IST0130 / IST0131 ----

/// A block that matches every request: no conditions, or only `uri: {prefix: /}` /
/// `uri: {regex: .*}`.
fn is_catch_all(m: &HttpMatchRequest) -> bool {
    let mut rest = m.clone();
    rest.name = None;
    rest.stat_prefix = None;
    rest.ignore_uri_case = false;
    let uri = rest.uri.take();
    rest == HttpMatchRequest::default()
        && match uri {
            None => true,
            Some(u) => {
                u == StringMatch {
                    prefix: Some("/".into()),
                    ..Default::default()
                } || u
                    == StringMatch {
                        regex: Some(".*".into()),
                        ..Default::default()
                    }
            }
        }
}

fn without_name(m: &HttpMatchRequest) -> HttpMatchRequest {
    HttpMatchRequest {
        name: None,
        stat_prefix: None,
        ..m.clone()
    }
}

/// Does string match `a` accept everything `b` accepts? (`None` = no condition.)
fn string_match_covers(a: &Option<StringMatch>, b: &Option<StringMatch>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => {
            if a == b || (a.set_count() == 0 && b.set_count() <= 1) {
                return true;
            }
            match (&a.prefix, a.set_count(), b.set_count()) {
                (Some(p), 1, 1) if b.regex.is_none() => b
                    .exact
                    .as_deref()
                    .or(b.prefix.as_deref())
                    .is_some_and(|s| s.starts_with(p.as_str())),
                _ => false,
            }
        }
    }
}

fn map_covers(a: &BTreeMap<String, StringMatch>, b: &BTreeMap<String, StringMatch>) -> bool {
    a.iter().all(|(k, va)| {
        b.get(k)
            .is_some_and(|vb| string_match_covers(&Some(va.clone()), &Some(vb.clone())))
    })
}

/// Does match block `a` accept every request block `b` accepts? Conservative: unknown
/// combinations count as not covered.
fn match_covers(a: &HttpMatchRequest, b: &HttpMatchRequest) -> bool {
    string_match_covers(&a.uri, &b.uri)
        && (a.uri.is_none() || a.ignore_uri_case || !b.ignore_uri_case)
        && string_match_covers(&a.scheme, &b.scheme)
        && string_match_covers(&a.method, &b.method)
        && string_match_covers(&a.authority, &b.authority)
        && map_covers(&a.headers, &b.headers)
        && map_covers(&a.query_params, &b.query_params)
        && a.without_headers
            .iter()
            .all(|(k, v)| b.without_headers.get(k) == Some(v))
        && (a.port.is_none() || a.port == b.port)
        && (a.gateways.is_empty()
            || (!b.gateways.is_empty() && b.gateways.iter().all(|g| a.gateways.contains(g))))
        && (a.source_labels.is_empty() || a.source_labels == b.source_labels)
        && (a.source_namespace.is_none() || a.source_namespace == b.source_namespace)
}

fn analyze_http(r: &mut Reporter, http: &[HttpRoute]) {
    let mut prior: Vec<(usize, usize, HttpMatchRequest)> = Vec::new();
    let mut catch_all: Option<usize> = None;
    for (i, route) in http.iter().enumerate() {
        let name = rule_name(i, &route.name);
        if let Some(c) = catch_all {
            r.warn(
                format!("spec.http[{i}]"),
                format!(
                    "IST0130 rule {name} is unreachable: rule {} before it matches every request (expected catch-all rules last)",
                    rule_name(c, &http[c].name)
                ),
            );
            continue;
        }
        if route.matches.is_empty() {
            catch_all = Some(i);
            continue;
        }
        let mut covered_by_earlier_rules = 0;
        for (j, m) in route.matches.iter().enumerate() {
            let bare = without_name(m);
            let found = prior
                .iter()
                .find(|(_, _, p)| *p == bare)
                .map(|x| (x, true))
                .or_else(|| {
                    prior
                        .iter()
                        .find(|(_, _, p)| match_covers(p, &bare))
                        .map(|x| (x, false))
                });
            if let Some(((pi, pj, _), identical)) = found {
                let what = if identical {
                    "duplicates"
                } else {
                    "is covered by"
                };
                let other = if *pi == i {
                    format!("match[{pj}] of the same rule")
                } else {
                    format!("match[{pj}] of rule {}", rule_name(*pi, &http[*pi].name))
                };
                r.warn(
                    format!("spec.http[{i}].match[{j}]"),
                    format!(
                        "IST0131 match[{j}] of rule {name} {what} {other}, which comes first, so it never matches (expected more specific matches first, and no repeated matches)"
                    ),
                );
                if *pi != i {
                    covered_by_earlier_rules += 1;
                }
            }
            prior.push((i, j, bare));
        }
        if covered_by_earlier_rules == route.matches.len() {
            r.warn(
                format!("spec.http[{i}]"),
                format!(
                    "IST0130 rule {name} is unreachable: all its matches are used by prior rules (expected the rule before the rules that shadow it, or removed)"
                ),
            );
        }
        if route.matches.iter().any(is_catch_all) {
            catch_all = Some(i);
        }
    }
}

/// The same analysis for TCP and TLS rules: identical matches, and rules after a match-less one.
fn analyze_l4<M: PartialEq>(
    r: &mut Reporter,
    kind: &str,
    rules: &[&[M]],
    catch_all_block: impl Fn(&M) -> bool,
) {
    let mut prior: Vec<(usize, usize, &M)> = Vec::new();
    let mut catch_all: Option<usize> = None;
    for (i, matches) in rules.iter().enumerate() {
        if let Some(c) = catch_all {
            r.warn(
                format!("spec.{kind}[{i}]"),
                format!("IST0130 rule #{i} is unreachable: rule #{c} before it matches every connection (expected catch-all rules last)"),
            );
            continue;
        }
        if matches.is_empty() {
            catch_all = Some(i);
            continue;
        }
        let mut dups = 0;
        for (j, m) in matches.iter().enumerate() {
            if let Some((pi, pj, _)) = prior.iter().find(|(_, _, p)| *p == m) {
                let other = if *pi == i {
                    format!("match[{pj}] of the same rule")
                } else {
                    format!("match[{pj}] of rule #{pi}")
                };
                r.warn(
                    format!("spec.{kind}[{i}].match[{j}]"),
                    format!(
                        "IST0131 match[{j}] of rule #{i} duplicates {other}, which comes first, so it never matches (expected no repeated matches)"
                    ),
                );
                if *pi != i {
                    dups += 1;
                }
            }
            prior.push((i, j, m));
        }
        if dups == matches.len() {
            r.warn(
                format!("spec.{kind}[{i}]"),
                format!("IST0130 rule #{i} is unreachable: all its matches are used by prior rules (expected it removed or moved first)"),
            );
        }
        if matches.iter().any(&catch_all_block) {
            catch_all = Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testutil::{diags, doc, expect_in_context, CONTEXT};

    const VS: &str = "VirtualService";
    /// Lines 5-6; rules start at line 7.
    const BOUND: &str = "hosts: [a.example.com]\ngateways: [gw]\n";

    fn bound(rest: &str) -> String {
        format!("{BOUND}{rest}")
    }

    fn check(cases: &[(&str, &[&str])]) {
        let owned: Vec<(String, &[&str])> = cases.iter().map(|(s, e)| (bound(s), *e)).collect();
        let refs: Vec<(&str, &[&str])> = owned.iter().map(|(s, e)| (s.as_str(), *e)).collect();
        expect_in_context(VS, "vs", &refs);
    }

    const ROUTE: &str = "  route:\n  - destination: {host: svc.example.com}\n";

    #[test]
    fn a_complete_virtual_service_is_clean() {
        check(&[(
            "http:
- name: api
  match:
  - uri: {prefix: /api}
    headers: {x-user: {exact: jason}, x-any: {}}
    queryParams: {v: {regex: \"[0-9]+\"}}
  rewrite: {uri: /v1}
  timeout: 10s
  retries: {attempts: 3, perTryTimeout: 2s, retryOn: \"5xx,connect-failure,503\"}
  headers:
    request: {set: {x-env: prod, host: b.example.com}, remove: [x-debug]}
    response: {add: {x-served-by: \"%HOSTNAME%\"}}
  route:
  - destination: {host: svc.example.com, subset: v1, port: {number: 80}}
    weight: 90
  - destination: {host: svc.example.com}
    weight: 10
  mirror: {host: svc.example.com}
  mirrorPercentage: {value: 5}
  corsPolicy: {allowOrigins: [{exact: \"https://a.example.com\"}], allowMethods: [GET], maxAge: 24h}
- redirect: {scheme: https, redirectCode: 308}
",
            &[],
        )]);
    }

    #[test]
    fn hosts_gateways_and_route_lists() {
        expect_in_context(
            VS,
            "vs",
            &[
                (
                    BOUND,
                    &["t.yaml:4: VirtualService default/vs: spec: http, tcp or tls must be provided in virtual service (expected at least one route list)"],
                ),
                (
                    "hosts: [\"a.*.com\"]\ngateways: [gw]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &["t.yaml:5: VirtualService default/vs: spec.hosts[0]: invalid host: domain name `a.*.com` is invalid: label `*` (expected labels of letters, digits and '-', at most 63 characters each); a VirtualService host is an FQDN, a leftmost wildcard such as *.example.com, or an IP"],
                ),
                (
                    "hosts: [\"*\"]\ngateways: [mesh]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &[
                        "t.yaml:5: VirtualService default/vs: spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway (expected gateways that name a Gateway, without `mesh`, or specific hosts)",
                        "t.yaml:6: warning: VirtualService default/vs: spec.gateways: mesh-only: spec.gateways names no Gateway (an empty list means `mesh`), so this VirtualService binds only to sidecars and Portcullis never serves it (expected spec.gateways naming a Gateway)",
                    ],
                ),
                (
                    "hosts: [\"*.foo.com\", \"*.com\"]\ngateways: [gw]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &["t.yaml:5: VirtualService default/vs: spec.hosts[1]: duplicate hosts in virtual service: `*.foo.com` & `*.com` overlap (expected each host once; a wildcard such as `*.com` already covers `*.foo.com`)"],
                ),
                (
                    "hosts: [a.example.com]\ngateways: [\"ns/bad_gw\"]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &["t.yaml:6: VirtualService default/vs: spec.gateways[0]: invalid gateway name `bad_gw` in gateway reference `ns/bad_gw` (expected a DNS-1123 label)"],
                ),
                (
                    "gateways: [gw]\ntcp:\n- route: [{destination: {host: svc.example.com, port: {number: 9000}}}]\n",
                    &[
                        "t.yaml:5: VirtualService default/vs: spec.gateways: delegate virtual service must have no gateways specified (a VirtualService without hosts is a delegate, included by another VirtualService's http[].delegate; expected hosts, or no gateways)",
                        "t.yaml:6: VirtualService default/vs: spec.tcp: delegate virtual service must have no tcp route specified (a VirtualService without hosts is a delegate, included by another VirtualService's http[].delegate; expected hosts, or http routes only)",
                    ],
                ),
                (
                    "hosts: [a.example.com]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &["t.yaml:4: warning: VirtualService default/vs: spec.gateways: mesh-only: spec.gateways names no Gateway (an empty list means `mesh`), so this VirtualService binds only to sidecars and Portcullis never serves it (expected spec.gateways naming a Gateway)"],
                ),
            ],
        );
    }

    #[test]
    fn rule_kinds_conflict() {
        check(&[
            (
                "http:\n- match: [{uri: {prefix: /a}}]\n",
                &["t.yaml:8: VirtualService default/vs: spec.http[0]: HTTP route or redirect is required (expected route, redirect, directResponse or delegate)"],
            ),
            (
                "http:\n- redirect: {uri: /b}\n  rewrite: {uri: /c}\n",
                &["t.yaml:8: VirtualService default/vs: spec.http[0].redirect: HTTP route cannot contain both rewrite and redirect (expected one way to answer the request)"],
            ),
            (
                "http:\n- redirect: {uri: /b}\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: VirtualService default/vs: spec.http[0].redirect: HTTP route cannot contain both route and redirect (expected one way to answer the request)"],
            ),
            (
                "http:\n- directResponse: {status: 503}\n  fault: {abort: {httpStatus: 500}}\n",
                &["t.yaml:8: VirtualService default/vs: spec.http[0].directResponse: HTTP route cannot contain both fault and directResponse (expected one way to answer the request)"],
            ),
            (
                "http:\n- route: [{destination: {host: svc.example.com}}]\n  mirror: {host: svc.example.com}\n  mirrors: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:10: VirtualService default/vs: spec.http[0].mirrors: mirror and mirrors cannot both be set (expected mirrors alone; it replaces mirror)"],
            ),
        ]);
    }

    #[test]
    fn string_matches() {
        let m = |cond: &str| format!("http:\n- match:\n  - {cond}\n{ROUTE}");
        check(&[
            (
                &m("uri:\n      regex: \"(?!admin).*\""),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].match[0].uri.regex: regex `(?!admin).*` does not compile: look-around, including look-ahead and look-behind, is not supported (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
            (
                &m("uri: {exact: /a, prefix: /a}"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].match[0].uri: sets 2 of exact, prefix and regex (expected exactly one)"],
            ),
            (
                &m("method: {}"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].match[0].method: sets none of exact, prefix and regex (expected exactly one)"],
            ),
            (
                &m("uri:\n      prefix: \"\""),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].match[0].uri.prefix: prefix string match should not be empty (expected e.g. `/`)"],
            ),
            (
                &m("queryParams:\n      id:\n        regex: \"[\""),
                &["t.yaml:11: VirtualService default/vs: spec.http[0].match[0].queryParams.id.regex: regex `[` does not compile: unclosed character class (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
            (
                &m("headers:\n      X-User: {exact: a}"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].match[0].headers.X-User: header name `X-User` must be lower-case (expected `x-user`)"],
            ),
            (
                &m("withoutHeaders:\n      x-a: {exact: a, regex: b}"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].match[0].withoutHeaders.x-a: sets 2 of exact, prefix and regex (expected exactly one)"],
            ),
            (
                &m("headers:\n      uri: {exact: /a}"),
                &["t.yaml:10: warning: VirtualService default/vs: spec.http[0].match[0].headers.uri: header `uri` is ignored by Istio's header matching (expected match.uri)"],
            ),
        ]);
    }

    #[test]
    fn match_attributes() {
        let m = |cond: &str| format!("http:\n- match:\n  - {cond}\n{ROUTE}");
        check(&[
            (
                &m("port: 70000"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].match[0].port: port number 70000 is out of range (expected 1-65535)"],
            ),
            (
                &m("sourceLabels: {app: web}"),
                &["t.yaml:9: warning: VirtualService default/vs: spec.http[0].match[0].sourceLabels: selects proxies, not requests: on a gateway the block applies only when these labels match the instance's labels (expected gateways, port or request attributes)"],
            ),
            (
                &m("sourceNamespace: web"),
                &["t.yaml:9: warning: VirtualService default/vs: spec.http[0].match[0].sourceNamespace: mesh-only: selects sidecars, ignored by a gateway (expected gateways, port or request attributes)"],
            ),
            (
                &m("headers: {\"@request.auth.claims.group\": {exact: admin}}"),
                &["t.yaml:9: warning: VirtualService default/vs: spec.http[0].match[0].headers.@request.auth.claims.group: IST0149 JWT claim routing (`@request.auth.claims.group`) needs a RequestAuthentication, which Portcullis does not load: this match never matches (expected a plain header match)"],
            ),
        ]);
    }

    #[test]
    fn destinations_and_weights() {
        check(&[
            (
                "http:\n- route:\n  - destination: {host: svc.example.com}\n    weight: 10\n  - destination: {host: svc.example.com}\n    weight: -5\n",
                &["t.yaml:12: VirtualService default/vs: spec.http[0].route[1].weight: weight -5 is negative (expected 0 or more; weights are relative)"],
            ),
            (
                "http:\n- route:\n  - destination: {host: svc.example.com}\n  - destination: {host: svc.example.com}\n",
                &["t.yaml:8: VirtualService default/vs: spec.http[0].route: total destination weight = 0 across 2 destinations (expected at least one positive weight; weights are relative)"],
            ),
            (
                "http:\n- route:\n  - weight: 100\n",
                &["t.yaml:9: VirtualService default/vs: spec.http[0].route[0].destination: Required value: destination is required (expected host and optional subset/port)"],
            ),
            (
                "http:\n- route:\n  - destination: {host: \"*\"}\n",
                &["t.yaml:9: VirtualService default/vs: spec.http[0].route[0].destination.host: invalid destination host `*` (expected a ServiceEntry host, not a wildcard for everything)"],
            ),
            (
                "http:\n- route:\n  - destination: {host: svc.example.com, subset: v_1, port: {number: 0}}\n",
                &[
                    "t.yaml:9: VirtualService default/vs: spec.http[0].route[0].destination.subset: subset name `v_1` is invalid (expected a DNS-1123 label)",
                    "t.yaml:9: VirtualService default/vs: spec.http[0].route[0].destination.port.number: port number 0 is out of range (expected 1-65535)",
                ],
            ),
        ]);
    }

    #[test]
    fn header_operations() {
        let h = |ops: &str| format!("http:\n- headers:\n{ops}{ROUTE}");
        check(&[
            (
                &h("    request:\n      set: {\":path\": /x}\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].headers.request.set.:path: invalid header `:path`: header cannot have \":\" prefix; pseudo-headers other than :authority cannot be changed (expected a regular header name)"],
            ),
            (
                &h("    request:\n      remove: [Host]\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].headers.request.remove[0]: invalid header `Host`: the Host header cannot be removed or set here (expected rewrite.authority to change the authority)"],
            ),
            (
                &h("    response:\n      set: {host: x}\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].headers.response.set.host: invalid header `host`: the Host header cannot be removed or set here (expected rewrite.authority to change the authority)"],
            ),
            (
                &h("    request:\n      add: {\"x y\": v}\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].headers.request.add.x y: `x y` is not a valid header name (expected an HTTP token: letters, digits and !#$%&'*+-.^_`|~)"],
            ),
            (
                &h("    request:\n      set: {x-a: \"a\\x01b\"}\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].headers.request.set.x-a: header value \"a\\u{1}b\" contains control character '\\u{1}' (expected printable text)"],
            ),
            (
                &h("    request:\n      set: {x-a: \"50%\"}\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].headers.request.set.x-a: header value \"50%\" has an unescaped `%` (expected `%%` for a literal percent sign, or a formatter such as %HOSTNAME%)"],
            ),
            (
                "http:\n- rewrite: {authority: b.example.com}\n  headers:\n    request:\n      set: {\":authority\": c.example.com}\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:11: VirtualService default/vs: spec.http[0].headers.request.set.:authority: authority header cannot be set multiple times: already set by spec.http[0].rewrite.authority (expected a single host/:authority header or rewrite.authority)"],
            ),
        ]);
    }

    #[test]
    fn redirects() {
        let r = |redirect: &str| format!("http:\n- redirect:\n{redirect}");
        check(&[
            (
                &r("    uri: /a\n    prefixRewrite: /b\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].redirect.prefixRewrite: uri and prefixRewrite are mutually exclusive (expected one of them)"],
            ),
            (
                "http:\n- match: [{uri: {exact: /a}}]\n  redirect: {prefixRewrite: /b}\n",
                &["t.yaml:9: VirtualService default/vs: spec.http[0].redirect.prefixRewrite: prefixRewrite needs every uri match of the rule to be a prefix match, but match[0] is not (expected uri.prefix, or redirect.uri)"],
            ),
            (
                &r("    redirectCode: 302\n"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].redirect: redirect must change at least one of uri, prefixRewrite, authority, scheme, port or derivePort (expected a redirect that points somewhere else)"],
            ),
            (
                &r("    uri: /a\n    redirectCode: 305\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].redirect.redirectCode: unsupported redirect code 305 (expected 301, 302, 303, 307 or 308; Istio drops such routes)"],
            ),
            (
                &r("    scheme: ftp\n"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].redirect.scheme: invalid redirect scheme `ftp` (expected \"http\" or \"https\")"],
            ),
            (
                &r("    port: 8443\n    derivePort: FROM_REQUEST_PORT\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].redirect.derivePort: port and derivePort are mutually exclusive (expected one of them)"],
            ),
        ]);
    }

    #[test]
    fn direct_responses() {
        let big = "x".repeat(101 * 1024);
        let huge = "x".repeat(1024 * 1024 + 1);
        let d = |body: &str| format!("http:\n- directResponse:\n{body}");
        check(&[
            (
                &d("    status: 99\n"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].directResponse.status: HTTP status 99 is not in range 200-599 (expected a status such as 200, 404 or 503)"],
            ),
            (
                &d("    status: 200\n    body: {string: a, bytes: YQ==}\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].directResponse.body: body.string and body.bytes are mutually exclusive (expected one of them)"],
            ),
            (
                &d("    status: 200\n    body: {bytes: \"not base64!\"}\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].directResponse.body.bytes: body.bytes is not valid base64 (expected base64 of the body, e.g. aGVsbG8=)"],
            ),
            (
                &d(&format!("    status: 200\n    body: {{string: {big}}}\n")),
                &["t.yaml:10: warning: VirtualService default/vs: spec.http[0].directResponse.body: direct response body is 103424 bytes, above 100 KiB; every copy of the route table holds it (expected a smaller body)"],
            ),
            (
                &d(&format!("    status: 200\n    body: {{string: {huge}}}\n")),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].directResponse.body: direct response body is 1048577 bytes, above 1 MiB (expected a smaller body; large direct responses are rejected)"],
            ),
        ]);
    }

    #[test]
    fn rewrites() {
        let w = |rw: &str| format!("http:\n- rewrite:\n{rw}{ROUTE}");
        check(&[
            (
                "http:\n- rewrite: {}\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: VirtualService default/vs: spec.http[0].rewrite: rewrite must specify at least one of uri, uriRegexRewrite or authority (expected one of them)"],
            ),
            (
                &w("    uri: /a\n    uriRegexRewrite: {match: a, rewrite: b}\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].rewrite.uriRegexRewrite: rewrite may only contain one of uri or uriRegexRewrite (expected one of them)"],
            ),
            (
                &w("    uriRegexRewrite: {match: \"^/a(.*)\"}\n"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].rewrite.uriRegexRewrite: uriRegexRewrite requires both rewrite and match fields to be specified (expected match: <RE2 regex>, rewrite: <replacement>)"],
            ),
            (
                &w("    uriRegexRewrite:\n      match: \"(a\"\n      rewrite: b\n"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].rewrite.uriRegexRewrite.match: regex `(a` does not compile: unclosed group (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
        ]);
    }

    #[test]
    fn durations_retries_and_cors() {
        let rule = |extra: &str| format!("http:\n- {extra}\n{ROUTE}");
        check(&[
            (
                &rule("timeout: 500us"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].timeout: duration 500us is below 1ms (expected at least 1ms)"],
            ),
            (
                &rule("retries: {attempts: 2, perTryTimeout: 1500us}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].retries.perTryTimeout: duration 1500us is not a whole number of milliseconds (expected millisecond precision)"],
            ),
            (
                &rule("retries: {attempts: -1}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].retries.attempts: attempts -1 cannot be negative (expected 0 to disable retries, or more)"],
            ),
            (
                &rule("retries: {retryOn: 5xx}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].retries: http retry policy configured when attempts are set to 0 (disabled) (expected attempts of 1 or more, or no other retry fields)"],
            ),
            (
                &rule("retries: {attempts: 1, retryOn: \"5xx,bogus\"}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].retries.retryOn: \"bogus\" is not a valid retryOn policy (expected a comma list of 5xx, gateway-error, reset, reset-before-request, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, envoy-ratelimited, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, or 3-digit status codes)"],
            ),
            (
                &rule("corsPolicy: {maxAge: 1500ms}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].corsPolicy.maxAge: maxAge 1500ms is not a whole number of seconds (expected seconds precision, e.g. 24h or 300s)"],
            ),
            (
                &rule("corsPolicy: {allowOrigins: [{exact: \"\"}], allowMethods: [FETCH]}"),
                &[
                    "t.yaml:8: VirtualService default/vs: spec.http[0].corsPolicy.allowOrigins[0]: '' is not a valid match type for CORS allow origins (expected a non-empty exact, prefix or regex)",
                    "t.yaml:8: VirtualService default/vs: spec.http[0].corsPolicy.allowMethods[0]: \"FETCH\" is not a supported HTTP method (expected GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE or *)",
                ],
            ),
        ]);
    }

    #[test]
    fn faults_and_mirrors() {
        let rule = |extra: &str| format!("http:\n- {extra}\n{ROUTE}");
        check(&[
            (
                &rule("fault: {}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].fault: HTTP fault injection must have an abort and/or a delay (expected fault.abort or fault.delay)"],
            ),
            (
                &rule("fault: {abort: {httpStatus: 600, percentage: {value: 150}}}"),
                &[
                    "t.yaml:8: VirtualService default/vs: spec.http[0].fault.abort.httpStatus: HTTP status 600 is not in range 200-599 (expected e.g. 503)",
                    "t.yaml:8: VirtualService default/vs: spec.http[0].fault.abort.percentage.value: percentage 150 is out of range (expected 0 to 100)",
                ],
            ),
            (
                &rule("fault: {abort: {grpcStatus: BOGUS}}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].fault.abort.grpcStatus: gRPC status \"BOGUS\" is not supported (expected a status name such as UNAVAILABLE or NOT_FOUND)"],
            ),
            (
                &rule("fault: {abort: {http2Error: REFUSED_STREAM}}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].fault.abort.http2Error: HTTP/2 abort fault injection is not supported (expected httpStatus or grpcStatus)"],
            ),
            (
                &rule("fault: {abort: {percentage: {value: 10}}}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].fault.abort: abort needs an error type (expected exactly one of httpStatus or grpcStatus)"],
            ),
            (
                &rule("fault: {delay: {exponentialDelay: 1s}}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].fault.delay.exponentialDelay: exponentialDelay is not supported (expected fixedDelay)"],
            ),
            (
                &rule("fault: {delay: {percentage: {value: 10}}}"),
                &["t.yaml:8: VirtualService default/vs: spec.http[0].fault.delay.fixedDelay: Required value: delay needs fixedDelay (expected e.g. fixedDelay: 5s)"],
            ),
            (
                &rule("mirror: {host: svc.example.com}\n  mirrorPercentage: {value: 101}"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].mirrorPercentage.value: mirrorPercentage: percentage 101 is out of range (expected 0 to 100)"],
            ),
        ]);
    }

    #[test]
    fn delegation() {
        check(&[
            (
                "http:\n- delegate: {name: \"\"}\n  route: [{destination: {host: svc.example.com}}]\n",
                &[
                    "t.yaml:8: VirtualService default/vs: spec.http[0].delegate.name: Required value: delegate name is required (expected the name of a VirtualService without hosts)",
                    "t.yaml:9: VirtualService default/vs: spec.http[0].route: root HTTP route with delegate must not specify route (expected the delegate VirtualService to decide how requests are answered)",
                ],
            ),
            (
                "http:\n- match: [{uri: {regex: \"/a.*\"}}]\n  delegate: {name: reviews}\n",
                &[
                    "t.yaml:8: VirtualService default/vs: spec.http[0].match[0].uri.regex: uri match does not support regex match for delegating (expected exact or prefix in delegate routes)",
                    "t.yaml:9: VirtualService default/vs: spec.http[0].delegate: delegate VirtualService default/reviews does not exist (expected a VirtualService without hosts loaded from the config directory)",
                ],
            ),
        ]);
    }

    #[test]
    fn tls_and_tcp_routes() {
        check(&[
            (
                "tls:\n- route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: VirtualService default/vs: spec.tls[0].match: Required value: TLS route must have at least one match condition (expected match with sniHosts)"],
            ),
            (
                "tls:\n- match: [{port: 443}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: VirtualService default/vs: spec.tls[0].match[0].sniHosts: Required value: TLS match must have at least one SNI host (expected sniHosts)"],
            ),
            (
                "tls:\n- match: [{sniHosts: [b.example.com]}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: VirtualService default/vs: spec.tls[0].match[0].sniHosts[0]: SNI host \"b.example.com\" is not a compatible subset of any of the virtual service hosts: [a.example.com] (expected an SNI host that one of spec.hosts covers)"],
            ),
            (
                "tls:\n- match: [{sniHosts: [a.example.com]}]\n",
                &["t.yaml:8: VirtualService default/vs: spec.tls[0].route: Required value: TLS route is required (expected at least one destination)"],
            ),
            (
                "tcp:\n- match: [{port: 9000}]\n",
                &["t.yaml:8: VirtualService default/vs: spec.tcp[0].route: Required value: TCP route is required (expected at least one destination)"],
            ),
        ]);
    }

    #[test]
    fn export_to() {
        check(&[
            (
                &format!("exportTo: [\".\", default]\nhttp:\n-{}", &ROUTE[1..]),
                &["t.yaml:7: VirtualService default/vs: spec.exportTo[1]: Duplicate value: exportTo lists . and the own namespace `default` twice (expected each namespace once)"],
            ),
            (
                &format!("exportTo: [\"*\", shop]\nhttp:\n-{}", &ROUTE[1..]),
                &["t.yaml:7: VirtualService default/vs: spec.exportTo[0]: `*` cannot be combined with other exportTo values (expected `*` alone)"],
            ),
        ]);
    }

    #[test]
    fn unreachable_rules_and_duplicate_matches() {
        check(&[
            (
                "http:\n- match: [{uri: {prefix: /}}]\n  route: [{destination: {host: svc.example.com}}]\n- name: late\n  match: [{uri: {prefix: /a}}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:10: warning: VirtualService default/vs: spec.http[1]: IST0130 rule #1 (\"late\") is unreachable: rule #0 before it matches every request (expected catch-all rules last)"],
            ),
            (
                "http:\n- match: [{uri: {prefix: /a}, name: first}]\n  route: [{destination: {host: svc.example.com}}]\n- match: [{uri: {prefix: /a}}, {uri: {prefix: /b}}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:10: warning: VirtualService default/vs: spec.http[1].match[0]: IST0131 match[0] of rule #1 duplicates match[0] of rule #0, which comes first, so it never matches (expected more specific matches first, and no repeated matches)"],
            ),
            (
                "http:\n- match: [{uri: {prefix: /api}}]\n  route: [{destination: {host: svc.example.com}}]\n- match: [{uri: {prefix: /api/v2}, headers: {x-a: {exact: b}}}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &[
                    "t.yaml:10: warning: VirtualService default/vs: spec.http[1].match[0]: IST0131 match[0] of rule #1 is covered by match[0] of rule #0, which comes first, so it never matches (expected more specific matches first, and no repeated matches)",
                    "t.yaml:10: warning: VirtualService default/vs: spec.http[1]: IST0130 rule #1 is unreachable: all its matches are used by prior rules (expected the rule before the rules that shadow it, or removed)",
                ],
            ),
            (
                "tcp:\n- route: [{destination: {host: svc.example.com, port: {number: 9000}}}]\n- match: [{port: 9000}]\n  route: [{destination: {host: svc.example.com, port: {number: 9000}}}]\n",
                &["t.yaml:9: warning: VirtualService default/vs: spec.tcp[1]: IST0130 rule #1 is unreachable: rule #0 before it matches every connection (expected catch-all rules last)"],
            ),
        ]);
        // A more specific match first is fine, and so is a catch-all last.
        check(&[(
            "http:\n- match: [{uri: {prefix: /api/v2}}]\n  route: [{destination: {host: svc.example.com}}]\n- match: [{uri: {prefix: /api}}]\n  route: [{destination: {host: svc.example.com}}]\n- route: [{destination: {host: svc.example.com}}]\n",
            &[],
        )]);
    }

    #[test]
    fn context_is_clean() {
        assert!(diags(&format!(
            "{}{CONTEXT}",
            doc(VS, "vs", &bound(&format!("http:\n-{}", &ROUTE[1..])))
        ))
        .is_empty());
    }
}
