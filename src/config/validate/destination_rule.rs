//! DestinationRule: host, subsets and traffic policies (Istio `ValidateDestinationRule`,
//! `validateTrafficPolicy` and `agent.ValidateTLS`).

use std::collections::HashMap;

use super::rules::{self, check_duration, check_port, is_dns1123_label, is_set};
use crate::config::diag::{Diagnostic, Reporter};
use crate::config::load::Resource;
use crate::config::types::{
    ClientTls, ClientTlsMode, ConnectionPoolSettings, DestinationRule, Duration, H2UpgradePolicy,
    LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};

pub(super) fn check(dr: &Resource<DestinationRule>, out: &mut Vec<Diagnostic>) {
    let mut r = dr.reporter(out);
    let spec = &dr.spec;
    if spec.host.is_empty() {
        r.error(
            "spec.host",
            "Required value: host is required (expected the ServiceEntry host this rule applies to)",
        );
    } else if let Err(m) = rules::check_wildcard_domain(&spec.host) {
        r.error("spec.host", format!("invalid host: {m}"));
    }
    if let Some(tp) = &spec.traffic_policy {
        check_traffic_policy(&mut r, "spec.trafficPolicy", tp);
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let p = format!("spec.subsets[{i}]");
        if subset.name.is_empty() {
            r.error(
                format!("{p}.name"),
                "Required value: subset name is required (expected a DNS-1123 label such as v1)",
            );
        } else if let Some(first) = names.get(subset.name.as_str()) {
            r.error(
                format!("{p}.name"),
                format!(
                    "Duplicate value: subset name `{}` is already used by spec.subsets[{first}] (expected unique subset names)",
                    subset.name
                ),
            );
        } else {
            names.insert(&subset.name, i);
            if !is_dns1123_label(&subset.name) {
                r.error(
                    format!("{p}.name"),
                    format!(
                        "subset name `{}` is invalid (expected a DNS-1123 label)",
                        subset.name
                    ),
                );
            }
        }
        if let Some(tp) = &subset.traffic_policy {
            check_traffic_policy(&mut r, &format!("{p}.trafficPolicy"), tp);
        }
    }
    rules::check_export_to(&mut r, "spec.exportTo", &dr.meta.namespace, &spec.export_to);
    if spec.workload_selector.is_some() {
        r.note(
            "spec.workloadSelector",
            "workloadSelector is mesh only (it picks sidecars); a standalone gateway ignores it and applies this rule (expected no workloadSelector)",
        );
    }
}

fn check_traffic_policy(r: &mut Reporter, path: &str, tp: &TrafficPolicy) {
    if tp.is_empty() {
        r.error(
            path,
            "traffic policy must have at least one field: an empty trafficPolicy: {} is rejected (expected loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings, tunnel or proxyProtocol, or no trafficPolicy)",
        );
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        r.error(
            format!("{path}.proxyProtocol"),
            "tunnel and proxyProtocol must not be set together (expected one of them)",
        );
    }
    check_policy_parts(
        r,
        path,
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        tp.tls.as_ref(),
    );
    let mut ports: HashMap<u32, usize> = HashMap::new();
    for (k, pl) in tp.port_level_settings.iter().enumerate() {
        let p = format!("{path}.portLevelSettings[{k}]");
        match pl.port {
            None => r.error(
                format!("{p}.port"),
                "Required value: portTrafficPolicy must have a port (expected port: {number: N})",
            ),
            Some(port) => {
                if let Err(m) = check_port(port.number) {
                    r.error(format!("{p}.port.number"), m);
                } else if let Some(first) = ports.get(&port.number) {
                    r.error(
                        format!("{p}.port.number"),
                        format!(
                            "Duplicate value: port {} already has settings in portLevelSettings[{first}] (expected each port once)",
                            port.number
                        ),
                    );
                } else {
                    ports.insert(port.number, k);
                }
            }
        }
        if pl.load_balancer.is_none()
            && pl.connection_pool.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            r.error(
                p.clone(),
                "port traffic policy must have at least one field (expected loadBalancer, connectionPool, outlierDetection or tls)",
            );
        }
        check_policy_parts(
            r,
            &p,
            pl.load_balancer.as_ref(),
            pl.connection_pool.as_ref(),
            pl.outlier_detection.as_ref(),
            pl.tls.as_ref(),
        );
    }
    if let Some(t) = &tp.tunnel {
        let p = format!("{path}.tunnel");
        if let Some(proto) = t
            .protocol
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "CONNECT" && *s != "POST")
        {
            r.error(
                format!("{p}.protocol"),
                format!(
                    "tunnel protocol `{proto}` is not supported (expected \"CONNECT\" or \"POST\")"
                ),
            );
        }
        if rules::check_fqdn(&t.target_host).is_err() && !rules::is_ip(&t.target_host) {
            r.error(
                format!("{p}.targetHost"),
                format!("tunnel target host `{}` is not a valid FQDN or IP address (expected e.g. proxy.example.com)", t.target_host),
            );
        }
        if let Err(m) = check_port(t.target_port) {
            r.error(format!("{p}.targetPort"), format!("tunnel target {m}"));
        }
    }
    if let Some(pp) = &tp.proxy_protocol {
        if let Some(v) = pp.version.as_deref().filter(|v| *v != "V1" && *v != "V2") {
            r.error(
                format!("{path}.proxyProtocol.version"),
                format!("proxy protocol version `{v}` is invalid (expected V1 or V2)"),
            );
        }
    }
}

fn check_policy_parts(
    r: &mut Reporter,
    path: &str,
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&OutlierDetection>,
    tls: Option<&ClientTls>,
) {
    if let Some(lb) = lb {
        check_load_balancer(r, &format!("{path}.loadBalancer"), lb);
    }
    if let Some(pool) = pool {
        check_pool(r, &format!("{path}.connectionPool"), pool);
    }
    if let Some(od) = outlier {
        check_outlier(r, &format!("{path}.outlierDetection"), od);
    }
    if let Some(tls) = tls {
        check_client_tls(r, &format!("{path}.tls"), tls);
    }
}

fn duration(r: &mut Reporter, path: String, d: Option<Duration>) {
    if let Some(d) = d {
        if let Err(m) = check_duration(d) {
            r.error(path, m);
        }
    }
}

fn non_negative(r: &mut Reporter, path: String, field: &str, v: Option<i64>) {
    if let Some(v) = v.filter(|v| *v < 0) {
        r.error(
            path,
            format!("{field} {v} must be non-negative (expected 0 or more)"),
        );
    }
}

/// Envoy's `isPrime` (Istio copies it), so the same table sizes pass.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let limit = (x as f64).sqrt() as u64;
    let mut f = 3;
    while f <= limit {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

const MAGLEV_MAX: u64 = 5_000_011;

fn check_load_balancer(r: &mut Reporter, path: &str, lb: &LoadBalancerSettings) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        r.error(
            format!("{path}.consistentHash"),
            "simple and consistentHash are mutually exclusive (expected one load balancing policy)",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        let p = format!("{path}.consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip.is_some(),
            ch.http_query_parameter_name.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if keys != 1 {
            r.error(
                p.clone(),
                format!(
                    "consistentHash sets {keys} hash keys (expected exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName)"
                ),
            );
        }
        if let Some(c) = &ch.http_cookie {
            if c.name.is_empty() {
                r.error(
                    format!("{p}.httpCookie.name"),
                    "Required value: name required for HttpCookie (expected the cookie name)",
                );
            }
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            r.error(
                format!("{p}.maglev"),
                "ringHash and maglev are mutually exclusive (expected one hash algorithm)",
            );
        }
        if ch.minimum_ring_size.is_some_and(|n| n != 0) {
            if ch.ring_hash.is_some() || ch.maglev.is_some() {
                r.error(
                    format!("{p}.minimumRingSize"),
                    "only one of minimumRingSize or maglev/ringHash can be specified (expected ringHash.minimumRingSize)",
                );
            } else {
                r.warn(
                    format!("{p}.minimumRingSize"),
                    "consistent hash minimumRingSize is deprecated (expected ringHash: {minimumRingSize: N})",
                );
            }
        }
        if let Some(m) = &ch.maglev {
            let mp = format!("{p}.maglev.tableSize");
            match m.table_size.unwrap_or(0) {
                0 => r.error(mp, "Required value: tableSize must be set for maglev (expected a prime below 5000011, e.g. 65537)"),
                n if n >= MAGLEV_MAX => r.error(
                    mp,
                    format!("tableSize {n} must be less than {MAGLEV_MAX} for maglev (expected e.g. 65537)"),
                ),
                n if !is_prime(n) => r.error(
                    mp,
                    format!("tableSize {n} must be a prime number for maglev (expected e.g. 65537)"),
                ),
                _ => {}
            }
        }
    }
    duration(
        r,
        format!("{path}.warmupDurationSecs"),
        lb.warmup_duration_secs,
    );
    if let Some(w) = &lb.warmup {
        let p = format!("{path}.warmup");
        match w.duration {
            None => r.error(
                format!("{p}.duration"),
                "Required value: warmup needs a duration (expected e.g. duration: 60s)",
            ),
            Some(d) => duration(r, format!("{p}.duration"), Some(d)),
        }
        if let Some(v) = w.minimum_percent.filter(|v| !(0.0..=100.0).contains(v)) {
            r.error(
                format!("{p}.minimumPercent"),
                format!(
                    "Invalid value: minimumPercent {v} (expected a percentage between 0 and 100)"
                ),
            );
        }
        if let Some(v) = w.aggression.filter(|v| v.is_nan() || *v < 0.0) {
            r.error(
                format!("{p}.aggression"),
                format!("Invalid value: aggression {v} (expected 0 or more; 1.0 ramps traffic up linearly)"),
            );
        }
    }
}

fn check_pool(r: &mut Reporter, path: &str, pool: &ConnectionPoolSettings) {
    if pool.tcp.is_none() && pool.http.is_none() {
        r.error(
            path,
            "connection pool must have at least one field (expected tcp or http settings)",
        );
    }
    if let Some(http) = &pool.http {
        let p = format!("{path}.http");
        for (field, v) in [
            ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries),
            ("maxConcurrentStreams", http.max_concurrent_streams),
        ] {
            non_negative(r, format!("{p}.{field}"), field, v);
        }
        duration(r, format!("{p}.idleTimeout"), http.idle_timeout);
        if http.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
            && http.use_client_protocol == Some(true)
        {
            r.error(
                format!("{p}.useClientProtocol"),
                "use client protocol must not be true when h2UpgradePolicy is UPGRADE (expected one of them)",
            );
        }
        if let Some(ka) = &http.http2_keep_alive {
            let kp = format!("{p}.http2KeepAlive");
            for (field, v) in [("interval", ka.interval), ("timeout", ka.timeout)] {
                match v {
                    None => r.error(
                        format!("{kp}.{field}"),
                        format!("Required value: http2KeepAlive needs {field} (expected both interval and timeout)"),
                    ),
                    Some(d) => duration(r, format!("{kp}.{field}"), Some(d)),
                }
            }
        }
    }
    if let Some(tcp) = &pool.tcp {
        let p = format!("{path}.tcp");
        non_negative(
            r,
            format!("{p}.maxConnections"),
            "maxConnections",
            tcp.max_connections,
        );
        duration(r, format!("{p}.connectTimeout"), tcp.connect_timeout);
        duration(
            r,
            format!("{p}.maxConnectionDuration"),
            tcp.max_connection_duration,
        );
        duration(r, format!("{p}.idleTimeout"), tcp.idle_timeout);
        if let Some(ka) = &tcp.tcp_keepalive {
            duration(r, format!("{p}.tcpKeepalive.time"), ka.time);
            duration(r, format!("{p}.tcpKeepalive.interval"), ka.interval);
        }
    }
}

fn check_outlier(r: &mut Reporter, path: &str, od: &OutlierDetection) {
    for (field, v) in [
        ("consecutiveErrors", od.consecutive_errors),
        (
            "consecutiveLocalOriginFailures",
            od.consecutive_local_origin_failures,
        ),
        ("consecutiveGatewayErrors", od.consecutive_gateway_errors),
        ("consecutive5xxErrors", od.consecutive_5xx_errors),
    ] {
        non_negative(r, format!("{path}.{field}"), field, v);
    }
    if od.consecutive_errors.is_some_and(|v| v != 0) {
        r.warn(
            format!("{path}.consecutiveErrors"),
            "outlier detection consecutiveErrors is deprecated (expected consecutiveGatewayErrors or consecutive5xxErrors)",
        );
    }
    if od.consecutive_local_origin_failures.is_some_and(|v| v > 0)
        && od.split_external_local_origin_errors != Some(true)
    {
        r.error(
            format!("{path}.consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false (expected splitExternalLocalOriginErrors: true)",
        );
    }
    duration(r, format!("{path}.interval"), od.interval);
    duration(r, format!("{path}.baseEjectionTime"), od.base_ejection_time);
    for (field, v) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = v.filter(|v| !(0..=100).contains(v)) {
            r.error(
                format!("{path}.{field}"),
                format!("{field} {v} is not in range 0..100 (expected a percentage)"),
            );
        }
    }
}

fn check_client_tls(r: &mut Reporter, path: &str, tls: &ClientTls) {
    if tls.mode == ClientTlsMode::IstioMutual {
        // Valid Istio config that a standalone gateway cannot originate: routes to the
        // destinations it applies to answer 503 (never plain text).
        r.error_part(
            None,
            format!("{path}.mode"),
            "ISTIO_MUTUAL needs Istio's mesh certificates, which a standalone gateway does not have, so requests to the destinations this policy applies to get 503 (use MUTUAL with clientCertificate and privateKey, or SIMPLE)",
        );
        return;
    }
    let credential = is_set(&tls.credential_name);
    if tls.insecure_skip_verify == Some(true) {
        let conflicting = match tls.mode {
            ClientTlsMode::Simple => {
                is_set(&tls.ca_certificates) || credential || !tls.subject_alt_names.is_empty()
            }
            ClientTlsMode::Mutual => {
                is_set(&tls.ca_certificates) || !tls.subject_alt_names.is_empty()
            }
            _ => false,
        };
        if conflicting {
            r.error(
                format!("{path}.insecureSkipVerify"),
                "cannot specify caCertificates, credentialName or subjectAltNames when insecureSkipVerify is set true (expected either verification settings or insecureSkipVerify)",
            );
        }
    }
    if matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual) && credential {
        if is_set(&tls.client_certificate)
            || is_set(&tls.private_key)
            || is_set(&tls.ca_certificates)
            || is_set(&tls.ca_crl)
        {
            r.error(
                format!("{path}.credentialName"),
                "cannot specify client certificates or CA certificate or CA CRL if credentialName is set (expected the credential to hold them)",
            );
        }
        return;
    }
    if tls.mode == ClientTlsMode::Mutual {
        for (field, v) in [
            ("clientCertificate", &tls.client_certificate),
            ("privateKey", &tls.private_key),
        ] {
            if !is_set(v) {
                r.error(
                    format!("{path}.{field}"),
                    format!("Required value: {field} required for mutual tls (expected a PEM file path, or credentialName)"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testutil::expect_in_context;

    const HOST: &str = "host: svc.example.com\n";

    fn e(line: u32, path: &str, msg: &str) -> String {
        format!("t.yaml:{line}: Error [IST0106] DestinationRule default/dr: {path}: {msg}")
    }

    fn w(line: u32, path: &str, msg: &str) -> String {
        format!("t.yaml:{line}: Warning [IST0133] DestinationRule default/dr: {path}: {msg}")
    }

    /// Portcullis' own note.
    fn n(line: u32, path: &str, msg: &str) -> String {
        format!("t.yaml:{line}: Warning DestinationRule default/dr: {path}: {msg}")
    }

    /// An error that leaves out only what it is about.
    fn part(line: u32, path: &str, msg: &str) -> String {
        format!("t.yaml:{line}: Error DestinationRule default/dr: {path}: {msg}")
    }

    /// Each case: the spec after `host: svc.example.com` (so it starts at line 6), and the
    /// lines expected.
    #[track_caller]
    fn check(cases: &[(&str, Vec<String>)]) {
        for (rest, lines) in cases {
            let spec = format!("{HOST}{rest}");
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            expect_in_context("DestinationRule", "dr", &[(&spec, &lines)]);
        }
    }

    #[test]
    fn a_complete_rule_is_clean() {
        check(&[(
            "trafficPolicy:
  loadBalancer:
    consistentHash: {httpCookie: {name: user, ttl: 0s}, maglev: {tableSize: 65537}}
  connectionPool:
    tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
    http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10, http2KeepAlive: {interval: 15s, timeout: 5s}}
  outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 50}
  tls: {mode: SIMPLE, sni: svc.example.com}
  portLevelSettings:
  - port: {number: 443}
    tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}
subsets:
- name: v1
  labels: {version: v1}
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 60s, minimumPercent: 10, aggression: 1.5}}}
",
            vec![],
        )]);
    }

    #[test]
    fn host_and_subsets() {
        expect_in_context(
            "DestinationRule",
            "dr",
            &[
                (
                    "subsets: [{name: v1}]\n",
                    &["t.yaml:4: Error [IST0106] DestinationRule default/dr: spec.host: Required value: host is required (expected the ServiceEntry host this rule applies to)"],
                ),
                (
                    "host: a_b.example.com\n",
                    &["t.yaml:5: Error [IST0106] DestinationRule default/dr: spec.host: invalid host: domain name `a_b.example.com` is invalid: label `a_b` (expected labels of letters, digits and '-', at most 63 characters each, and `*` only as the whole leftmost label)"],
                ),
            ],
        );
        check(&[
            (
                "subsets:\n- labels: {version: v1}\n",
                vec![e(7, "spec.subsets[0].name", "Required value: subset name is required (expected a DNS-1123 label such as v1)")],
            ),
            (
                "subsets:\n- name: V.1\n",
                vec![e(7, "spec.subsets[0].name", "subset name `V.1` is invalid (expected a DNS-1123 label)")],
            ),
            (
                "subsets:\n- name: v1\n- name: v1\n",
                vec![e(8, "spec.subsets[1].name", "Duplicate value: subset name `v1` is already used by spec.subsets[0] (expected unique subset names)")],
            ),
            (
                "exportTo: [shop, shop]\n",
                vec![e(6, "spec.exportTo[1]", "Duplicate value: exportTo lists `shop` twice (expected each namespace once)")],
            ),
            (
                "workloadSelector:\n  matchLabels: {app: db}\n",
                vec![n(6, "spec.workloadSelector", "workloadSelector is mesh only (it picks sidecars); a standalone gateway ignores it and applies this rule (expected no workloadSelector)")],
            ),
        ]);
    }

    #[test]
    fn traffic_policy_shape() {
        check(&[
            (
                "trafficPolicy: {}\n",
                vec![e(6, "spec.trafficPolicy", "traffic policy must have at least one field: an empty trafficPolicy: {} is rejected (expected loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings, tunnel or proxyProtocol, or no trafficPolicy)")],
            ),
            (
                "subsets:\n- name: v1\n  trafficPolicy: {}\n",
                vec![e(8, "spec.subsets[0].trafficPolicy", "traffic policy must have at least one field: an empty trafficPolicy: {} is rejected (expected loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings, tunnel or proxyProtocol, or no trafficPolicy)")],
            ),
            (
                "trafficPolicy:\n  tunnel: {protocol: PUT, targetHost: proxy.example.com, targetPort: 3128}\n  proxyProtocol: {version: V3}\n",
                vec![
                    e(7, "spec.trafficPolicy.tunnel.protocol", "tunnel protocol `PUT` is not supported (expected \"CONNECT\" or \"POST\")"),
                    e(8, "spec.trafficPolicy.proxyProtocol", "tunnel and proxyProtocol must not be set together (expected one of them)"),
                    e(8, "spec.trafficPolicy.proxyProtocol.version", "proxy protocol version `V3` is invalid (expected V1 or V2)"),
                ],
            ),
            (
                "trafficPolicy:\n  portLevelSettings:\n  - loadBalancer: {simple: RANDOM}\n  - port: {number: 80}\n    tls: {mode: SIMPLE}\n  - port: {number: 80}\n",
                vec![
                    e(8, "spec.trafficPolicy.portLevelSettings[0].port", "Required value: portTrafficPolicy must have a port (expected port: {number: N})"),
                    e(11, "spec.trafficPolicy.portLevelSettings[2].port.number", "Duplicate value: port 80 already has settings in portLevelSettings[1] (expected each port once)"),
                    e(11, "spec.trafficPolicy.portLevelSettings[2]", "port traffic policy must have at least one field (expected loadBalancer, connectionPool, outlierDetection or tls)"),
                ],
            ),
        ]);
    }

    #[test]
    fn load_balancers() {
        let lb = |v: &str| format!("trafficPolicy:\n  loadBalancer:\n{v}");
        check(&[
            (
                &lb("    simple: ROUND_ROBIN\n    consistentHash: {useSourceIp: true}\n"),
                vec![e(9, "spec.trafficPolicy.loadBalancer.consistentHash", "simple and consistentHash are mutually exclusive (expected one load balancing policy)")],
            ),
            (
                &lb("    consistentHash: {httpHeaderName: x-user, useSourceIp: true}\n"),
                vec![e(8, "spec.trafficPolicy.loadBalancer.consistentHash", "consistentHash sets 2 hash keys (expected exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName)")],
            ),
            (
                &lb("    consistentHash:\n      httpCookie: {ttl: 10s}\n"),
                vec![e(9, "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name", "Required value: name required for HttpCookie (expected the cookie name)")],
            ),
            (
                &lb("    consistentHash:\n      useSourceIp: true\n      maglev: {tableSize: 1000}\n"),
                vec![e(10, "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "tableSize 1000 must be a prime number for maglev (expected e.g. 65537)")],
            ),
            (
                &lb("    consistentHash:\n      useSourceIp: true\n      maglev: {tableSize: 5000011}\n"),
                vec![e(10, "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "tableSize 5000011 must be less than 5000011 for maglev (expected e.g. 65537)")],
            ),
            (
                &lb("    consistentHash:\n      useSourceIp: true\n      minimumRingSize: 1024\n      ringHash: {minimumRingSize: 1024}\n"),
                vec![e(10, "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "only one of minimumRingSize or maglev/ringHash can be specified (expected ringHash.minimumRingSize)")],
            ),
            (
                &lb("    consistentHash:\n      useSourceIp: true\n      minimumRingSize: 1024\n"),
                vec![w(10, "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "consistent hash minimumRingSize is deprecated (expected ringHash: {minimumRingSize: N})")],
            ),
            (
                &lb("    warmup:\n      minimumPercent: 5.0\n"),
                vec![e(8, "spec.trafficPolicy.loadBalancer.warmup.duration", "Required value: warmup needs a duration (expected e.g. duration: 60s)")],
            ),
            (
                &lb("    warmup:\n      duration: 300s\n      minimumPercent: 150.0\n      aggression: -0.1\n"),
                vec![
                    e(10, "spec.trafficPolicy.loadBalancer.warmup.minimumPercent", "Invalid value: minimumPercent 150 (expected a percentage between 0 and 100)"),
                    e(11, "spec.trafficPolicy.loadBalancer.warmup.aggression", "Invalid value: aggression -0.1 (expected 0 or more; 1.0 ramps traffic up linearly)"),
                ],
            ),
        ]);
    }

    #[test]
    fn connection_pools_and_outlier_detection() {
        let tp = |v: &str| format!("trafficPolicy:\n{v}");
        check(&[
            (
                &tp("  connectionPool: {}\n"),
                vec![e(7, "spec.trafficPolicy.connectionPool", "connection pool must have at least one field (expected tcp or http settings)")],
            ),
            (
                &tp("  connectionPool:\n    tcp: {maxConnections: -1, connectTimeout: 500us}\n"),
                vec![
                    e(8, "spec.trafficPolicy.connectionPool.tcp.maxConnections", "maxConnections -1 must be non-negative (expected 0 or more)"),
                    e(8, "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "duration 500us is below 1ms (expected at least 1ms)"),
                ],
            ),
            (
                &tp("  connectionPool:\n    http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}\n"),
                vec![e(8, "spec.trafficPolicy.connectionPool.http.useClientProtocol", "use client protocol must not be true when h2UpgradePolicy is UPGRADE (expected one of them)")],
            ),
            (
                &tp("  connectionPool:\n    http:\n      http2KeepAlive: {interval: 15s}\n"),
                vec![e(9, "spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout", "Required value: http2KeepAlive needs timeout (expected both interval and timeout)")],
            ),
            (
                &tp("  outlierDetection:\n    consecutiveLocalOriginFailures: 3\n    maxEjectionPercent: 150\n"),
                vec![
                    e(8, "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false (expected splitExternalLocalOriginErrors: true)"),
                    e(9, "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "maxEjectionPercent 150 is not in range 0..100 (expected a percentage)"),
                ],
            ),
            (
                &tp("  outlierDetection:\n    consecutiveErrors: 5\n    consecutive5xxErrors: -2\n"),
                vec![
                    w(8, "spec.trafficPolicy.outlierDetection.consecutiveErrors", "outlier detection consecutiveErrors is deprecated (expected consecutiveGatewayErrors or consecutive5xxErrors)"),
                    e(9, "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", "consecutive5xxErrors -2 must be non-negative (expected 0 or more)"),
                ],
            ),
        ]);
    }

    #[test]
    fn client_tls() {
        let tls = |v: &str| format!("trafficPolicy:\n  tls:\n{v}");
        check(&[
            (
                &tls("    mode: ISTIO_MUTUAL\n"),
                vec![part(8, "spec.trafficPolicy.tls.mode", "ISTIO_MUTUAL needs Istio's mesh certificates, which a standalone gateway does not have, so requests to the destinations this policy applies to get 503 (use MUTUAL with clientCertificate and privateKey, or SIMPLE)")],
            ),
            (
                &tls("    mode: MUTUAL\n    clientCertificate: /c.pem\n"),
                vec![e(7, "spec.trafficPolicy.tls.privateKey", "Required value: privateKey required for mutual tls (expected a PEM file path, or credentialName)")],
            ),
            (
                &tls("    mode: SIMPLE\n    insecureSkipVerify: true\n    subjectAltNames: [svc.example.com]\n"),
                vec![e(9, "spec.trafficPolicy.tls.insecureSkipVerify", "cannot specify caCertificates, credentialName or subjectAltNames when insecureSkipVerify is set true (expected either verification settings or insecureSkipVerify)")],
            ),
            (
                &tls("    mode: SIMPLE\n    credentialName: c\n    caCertificates: /ca.pem\n"),
                vec![e(9, "spec.trafficPolicy.tls.credentialName", "cannot specify client certificates or CA certificate or CA CRL if credentialName is set (expected the credential to hold them)")],
            ),
        ]);
    }
}
