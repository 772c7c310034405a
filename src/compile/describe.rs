//! A snapshot as text a person can check by eye (`portcullis routes`).

use std::fmt::Write as _;

use super::action::redirect::{RedirectPath, RedirectPort};
use super::action::rewrite::PathRewrite;
use super::action::Action;
use super::listener::{ChainAction, ListenerKind, TcpRoute};
use super::route::Route;
use super::vhost::RouteTable;
use super::Snapshot;
use crate::config::types::{HttpMatchRequest, StringMatch};
use crate::upstream::endpoint::Endpoints;
use crate::upstream::Cluster;

pub fn describe(s: &Snapshot) -> String {
    let mut out = String::new();
    let i = &s.instance;
    let labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let policy = match i.role {
        super::Role::Egress => format!(", outbound policy {:?}", i.outbound_policy),
        super::Role::Ingress => String::new(),
    };
    let _ = writeln!(
        out,
        "Instance: {:?}, labels {}{policy}",
        i.role,
        labels.join(",")
    );
    if s.listeners.is_empty() {
        let _ = writeln!(out, "\nNo listeners: no Gateway selects these labels.");
    }
    for l in s.listeners.values() {
        let _ = writeln!(
            out,
            "\nListener {} (Gateway port {})",
            l.address, l.gateway_port
        );
        for srv in &l.servers {
            let _ = writeln!(out, "  from {srv}");
        }
        match &l.kind {
            ListenerKind::Http { routes } => table(&mut out, routes, "  "),
            ListenerKind::Tcp { route } => match route {
                Some(r) => tcp(&mut out, r, "  "),
                None => {
                    let _ = writeln!(out, "  TCP: no tcp route; connections are closed");
                }
            },
            ListenerKind::Tls(chains) => {
                for c in &chains.chains {
                    let _ = writeln!(out, "  SNI {}", c.server_names.join(", "));
                    match &c.action {
                        ChainAction::TerminateHttp { tls, routes } => {
                            let _ = writeln!(
                                out,
                                "    terminate TLS ({:?}; {})",
                                tls.mode,
                                tls.summary.join(" + ")
                            );
                            table(&mut out, routes, "    ");
                        }
                        ChainAction::TerminateTcp { tls, route } => {
                            let _ = writeln!(
                                out,
                                "    terminate TLS ({:?}; {}), then TCP",
                                tls.mode,
                                tls.summary.join(" + ")
                            );
                            if let Some(r) = route {
                                tcp(&mut out, r, "    ");
                            }
                        }
                        ChainAction::Passthrough { route } => {
                            let _ = writeln!(out, "    pass through (no termination)");
                            tcp(&mut out, route, "    ");
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "\nClusters");
    if s.clusters.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for c in s
        .clusters
        .values()
        .filter(|c| c.host != "*" || s.instance.role == super::Role::Egress)
    {
        cluster(&mut out, c);
    }
    out
}

fn table(out: &mut String, t: &RouteTable, indent: &str) {
    let _ = writeln!(out, "{indent}route table {}", t.name);
    if t.virtual_hosts.is_empty() {
        let _ = writeln!(out, "{indent}  (no virtual hosts: every request gets 404)");
    }
    for vh in &t.virtual_hosts {
        let redirect = vh
            .https_redirect
            .map(|r| format!("  [httpsRedirect → port {}]", r.port))
            .unwrap_or_default();
        let _ = writeln!(out, "{indent}  host {}{redirect}", vh.domain);
        if vh.routes.is_empty() && vh.https_redirect.is_none() {
            let _ = writeln!(out, "{indent}    (no routes: 404)");
        }
        for (n, r) in vh.routes.iter().enumerate() {
            route(out, n + 1, r, &format!("{indent}    "));
        }
    }
}

fn route(out: &mut String, n: usize, r: &Route, indent: &str) {
    let name = if r.name.is_empty() {
        String::new()
    } else {
        format!("[{}] ", r.name)
    };
    let _ = writeln!(
        out,
        "{indent}{n}. {name}{}",
        match_text(r.match_spec.as_ref())
    );
    let action = match &r.action {
        Action::Forward(f) => {
            let total: u32 = f.destinations.iter().map(|d| d.weight).sum::<u32>().max(1);
            let dests: Vec<String> = f
                .destinations
                .iter()
                .map(|d| {
                    if f.destinations.len() == 1 {
                        d.cluster.name.clone()
                    } else {
                        format!(
                            "{} ({:.0}%)",
                            d.cluster.name,
                            f64::from(d.weight) * 100.0 / f64::from(total)
                        )
                    }
                })
                .collect();
            let mut s = format!("→ {}", dests.join(", "));
            if let Some(p) = &f.rewrite.path {
                let _ = match p {
                    PathRewrite::Prefix {
                        prefix,
                        replacement,
                    } => write!(s, "; rewrite prefix {prefix} → {replacement}"),
                    PathRewrite::Full(path) => write!(s, "; rewrite path → {path}"),
                    PathRewrite::Regex {
                        pattern,
                        replacement,
                    } => write!(s, "; rewrite path ~ {} → {replacement}", pattern.as_str()),
                };
            }
            if let Some(a) = &f.rewrite.authority {
                let _ = write!(s, "; rewrite authority {a}");
            }
            if let Some(t) = f.timeout {
                let _ = write!(s, "; timeout {}ms", t.as_millis());
            }
            s
        }
        Action::Redirect(rd) => {
            let mut s = format!("redirect {}", rd.code);
            if let Some(sc) = &rd.scheme {
                let _ = write!(s, " scheme {sc}");
            }
            if let Some(a) = &rd.authority {
                let _ = write!(s, " authority {a}");
            }
            match &rd.path {
                Some(RedirectPath::Full(p)) => {
                    let _ = write!(s, " uri {p}");
                }
                Some(RedirectPath::PrefixRewrite {
                    prefix,
                    replacement,
                }) => {
                    let _ = write!(s, " prefix {prefix} → {replacement}");
                }
                None => {}
            }
            match rd.port {
                RedirectPort::Fixed(p) => {
                    let _ = write!(s, " port {p}");
                }
                RedirectPort::ProtocolDefault => s.push_str(" port (protocol default)"),
                RedirectPort::Keep => {}
            }
            s
        }
        Action::DirectResponse(d) => {
            let body = String::from_utf8_lossy(&d.body);
            let body = if body.len() > 40 {
                format!("{}…", &body[..body.floor_char_boundary(40)])
            } else {
                body.into_owned()
            };
            format!("direct response {} {:?}", d.status, body)
        }
    };
    let _ = writeln!(out, "{indent}   {action}   ({})", r.source);
}

fn sm(m: &StringMatch) -> String {
    if let Some(v) = &m.exact {
        format!("= {v}")
    } else if let Some(v) = &m.prefix {
        format!("prefix {v}")
    } else if let Some(v) = &m.regex {
        format!("~ {v}")
    } else {
        "present".into()
    }
}

fn match_text(m: Option<&HttpMatchRequest>) -> String {
    let Some(m) = m else {
        return "any request".into();
    };
    let mut parts = Vec::new();
    if let Some(u) = &m.uri {
        parts.push(format!(
            "uri {}{}",
            sm(u),
            if m.ignore_uri_case { " (any case)" } else { "" }
        ));
    }
    for (what, v) in [
        ("method", &m.method),
        ("scheme", &m.scheme),
        ("authority", &m.authority),
    ] {
        if let Some(v) = v {
            parts.push(format!("{what} {}", sm(v)));
        }
    }
    for (k, v) in &m.headers {
        parts.push(format!("header {k} {}", sm(v)));
    }
    for (k, v) in &m.without_headers {
        parts.push(format!("no header {k} {}", sm(v)));
    }
    for (k, v) in &m.query_params {
        parts.push(format!("query {k} {}", sm(v)));
    }
    if let Some(p) = m.port {
        parts.push(format!("port {p}"));
    }
    if parts.is_empty() {
        "any request".into()
    } else {
        parts.join(", ")
    }
}

fn tcp(out: &mut String, r: &TcpRoute, indent: &str) {
    let dests: Vec<String> = r
        .destinations
        .iter()
        .map(|d| format!("{} (weight {})", d.cluster.name, d.weight))
        .collect();
    let _ = writeln!(out, "{indent}TCP → {}   ({})", dests.join(", "), r.source);
}

fn cluster(out: &mut String, c: &Cluster) {
    let endpoints = match &c.endpoints {
        Endpoints::Static(eps) if eps.is_empty() => "no endpoints (503)".to_string(),
        Endpoints::Static(eps) => eps
            .iter()
            .map(|e| {
                if e.weight == 1 {
                    e.address.to_string()
                } else {
                    format!("{} w{}", e.address, e.weight)
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        Endpoints::Dns(names) => {
            let n: Vec<String> = names
                .iter()
                .map(|d| format!("{}:{}", d.name, d.port))
                .collect();
            format!("DNS {}", n.join(", "))
        }
        Endpoints::RequestHost { port } if *port == 0 => "the requested host and port (DNS)".into(),
        Endpoints::RequestHost { port } => format!("the requested host (DNS), port {port}"),
    };
    let mut extras = vec![format!("{:?}", c.lb)];
    if let Some(t) = &c.upstream.tls {
        extras.push(format!(
            "TLS {:?} sni {}",
            t.mode,
            t.sni.as_deref().unwrap_or("(the requested host)")
        ));
    }
    if c.upstream.http2 {
        extras.push("HTTP/2".into());
    }
    if let Some(m) = c.circuit_breaker.max_connections {
        extras.push(format!("maxConnections {m}"));
    }
    let source = match (&c.service_entry, &c.destination_rule) {
        (Some(se), Some(dr)) => format!("ServiceEntry {se}, DestinationRule {dr}"),
        (Some(se), None) => format!("ServiceEntry {se}"),
        (None, Some(dr)) => format!("not registered, DestinationRule {dr}"),
        (None, None) => "not registered".into(),
    };
    let _ = writeln!(
        out,
        "  {}\n    {endpoints}; {}; {source}",
        c.name,
        extras.join(", ")
    );
}
