//! What Portcullis accepts but does not act on. Each is a warning where the field would change
//! behaviour under Istio, so nobody is surprised that it does nothing here.

use super::super::diag::Diagnostic;
use super::super::load::Resources;
use super::super::types::{ConnectionPoolSettings, LoadBalancerSettings, TrafficPolicy};

pub fn check(resources: &Resources, out: &mut Vec<Diagnostic>) {
    for dr in &resources.destination_rules {
        let mut policies: Vec<(String, &TrafficPolicy)> = Vec::new();
        if let Some(tp) = &dr.spec.traffic_policy {
            policies.push(("spec.trafficPolicy".into(), tp));
        }
        for (i, s) in dr.spec.subsets.iter().enumerate() {
            if let Some(tp) = &s.traffic_policy {
                policies.push((format!("spec.subsets[{i}].trafficPolicy"), tp));
            }
        }
        for (path, tp) in policies {
            let mut warn = |field: &str, what: &str| {
                dr.reporter(out)
                    .note(format!("{path}.{field}"), what.to_string());
            };
            if tp.tunnel.is_some() {
                warn(
                    "tunnel",
                    "tunnelling TCP through an upstream CONNECT proxy is not supported; ignored",
                );
            }
            if tp.proxy_protocol.is_some() {
                warn(
                    "proxyProtocol",
                    "sending a PROXY protocol header upstream is not supported; ignored",
                );
            }
            if tp.retry_budget.is_some() {
                warn("retryBudget", "retry budgets are not supported; ignored");
            }
            lb_warnings(tp.load_balancer.as_ref(), &mut warn, "loadBalancer");
            pool_warnings(tp.connection_pool.as_ref(), &mut warn, "connectionPool");
            if tp.tls.as_ref().is_some_and(|t| t.ca_crl.is_some()) {
                warn(
                    "tls.caCrl",
                    "certificate revocation lists are not checked; ignored",
                );
            }
            for (j, pl) in tp.port_level_settings.iter().enumerate() {
                lb_warnings(
                    pl.load_balancer.as_ref(),
                    &mut warn,
                    &format!("portLevelSettings[{j}].loadBalancer"),
                );
                pool_warnings(
                    pl.connection_pool.as_ref(),
                    &mut warn,
                    &format!("portLevelSettings[{j}].connectionPool"),
                );
            }
        }
    }
    for gw in &resources.gateways {
        for (i, server) in gw.spec.servers.iter().enumerate() {
            let Some(tls) = &server.tls else { continue };
            if tls.insecure_skip_verify.is_some() {
                gw.reporter(out).note(
                    format!("spec.servers[{i}].tls.insecureSkipVerify"),
                    "not supported on a gateway server: client certificates are always verified",
                );
            }
        }
    }
}

fn lb_warnings(lb: Option<&LoadBalancerSettings>, warn: &mut impl FnMut(&str, &str), path: &str) {
    let Some(lb) = lb else { return };
    if lb.locality_lb_setting.is_some() {
        warn(
            &format!("{path}.localityLbSetting"),
            "locality load balancing needs mesh topology; ignored",
        );
    }
    if lb.warmup.is_some() || lb.warmup_duration_secs.is_some() {
        warn(
            &format!("{path}.warmup"),
            "slow-start warm-up is not supported; ignored",
        );
    }
}

fn pool_warnings(
    pool: Option<&ConnectionPoolSettings>,
    warn: &mut impl FnMut(&str, &str),
    path: &str,
) {
    let Some(pool) = pool else { return };
    if let Some(tcp) = &pool.tcp {
        if tcp.max_connection_duration.is_some() {
            warn(
                &format!("{path}.tcp.maxConnectionDuration"),
                "not supported; connections are closed only when idle",
            );
        }
    }
    if let Some(http) = &pool.http {
        if http.max_retries.is_some() {
            warn(
                &format!("{path}.http.maxRetries"),
                "a cluster-wide retry limit is not supported; ignored",
            );
        }
        if http.use_client_protocol == Some(true) {
            warn(&format!("{path}.http.useClientProtocol"), "not supported: the upstream protocol follows the port protocol and h2UpgradePolicy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::doc;
    use crate::config::load::load_files;
    use crate::config::source::SourceFile;

    fn support_warnings(yaml: &str) -> Vec<String> {
        let (res, _) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml.into(),
        }]);
        let mut out = Vec::new();
        super::check(&res, &mut out);
        out.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn mirrors_and_status_retries_are_served_without_a_warning() {
        let vs = doc(
            "VirtualService",
            "vs",
            "hosts: [a.com]\ngateways: [gw]\nhttp:\n- route: [{destination: {host: b}}]\n  mirror: {host: c}\n  retries: {attempts: 2, retryOn: '5xx,connect-failure'}\n",
        );
        assert!(support_warnings(&vs).is_empty());
    }

    #[test]
    fn destination_rule_features_without_effect_warn() {
        let dr = doc(
            "DestinationRule",
            "dr",
            "host: b.com\ntrafficPolicy:\n  outlierDetection: {consecutive5xxErrors: 3}\n  tunnel: {targetHost: x, targetPort: 1}\n",
        );
        let w = support_warnings(&dr);
        // outlierDetection is implemented: only the tunnel is reported.
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("spec.trafficPolicy.tunnel: tunnelling"),
            "{w:?}"
        );
    }
}
