//! Upstream connection pools: isolated per TLS policy (a connection made with one SNI or
//! client certificate never carries a request of another policy), and bounded by
//! `maxRequestsPerConnection`.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::support::client::http_client;

/// A VirtualService sending requests with `x-policy: <matched>` to subset `matched` of the API
/// host and every other request to subset `fallback`.
fn subset_by_policy_vs(matched: &str, fallback: &str) -> VirtualService {
    VirtualService::new("api")
        .hosts(&[API])
        .gateways(&["egressgateway"])
        .http(
            HttpRoute::new()
                .when(Match::new().header("x-policy", exact(matched)))
                .route(Destination::host(API).subset(matched)),
        )
        .http(HttpRoute::new().route(Destination::host(API).subset(fallback)))
}

/// Connection ids the backend saw, by the value of request header `x-policy`.
fn conns_by_policy(upstream: &Backend) -> BTreeMap<String, BTreeSet<u64>> {
    let mut out: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for r in upstream.requests_seen() {
        let policy = r.header("x-policy").unwrap_or("-").to_string();
        out.entry(policy).or_default().insert(r.conn);
    }
    out
}

fn assert_disjoint(by_policy: &BTreeMap<String, BTreeSet<u64>>, a: &str, b: &str) {
    let shared: Vec<_> = by_policy[a].intersection(&by_policy[b]).collect();
    assert!(
        shared.is_empty(),
        "policies {a} and {b} shared upstream connections {shared:?}: {by_policy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subsets_with_different_sni_never_share_a_connection() {
    let pki = Pki::new(&["a.example.test", "b.example.test"]);
    let upstream = https_upstream("api", &pki).await;
    let ca = pki.ca_path();
    // One host, one address; subsets differ only in the SNI they originate with.
    let sni = |name: &str| TrafficPolicy::new().tls(ClientTls::simple(&ca).sni(name));
    let dr = DestinationRule::new("api", API)
        .subset(Subset::named("a").policy(sni("a.example.test")))
        .subset(Subset::named("b").policy(sni("b.example.test")));
    let eg = egress(&[
        &service_entry("api", API, &[(80, "http", "HTTP", upstream.port())]),
        &dr,
        &subset_by_policy_vs("a", "b"),
    ])
    .await;

    for i in 0..20 {
        let policy = if i % 2 == 0 { "a" } else { "b" };
        let r = eg
            .raw_get(
                API,
                &format!("/{policy}/{i}"),
                &format!("x-policy: {policy}\r\n"),
            )
            .await;
        assert_eq!(r.status, 200, "{} {}", r.head, r.body);
        assert_eq!(r.json()["sni"], format!("{policy}.example.test"));
    }
    upstream.wait_for_requests(20, WAIT).await;
    for r in upstream.requests_seen() {
        let policy = r.header("x-policy").unwrap();
        assert_eq!(
            r.sni.as_deref(),
            Some(format!("{policy}.example.test").as_str())
        );
    }
    let by_policy = conns_by_policy(&upstream);
    assert_disjoint(&by_policy, "a", "b");
    // Pooling is on (else isolation would be trivial): each policy reused its connections.
    for p in ["a", "b"] {
        assert!(
            by_policy[p].len() <= 3,
            "policy {p} did not reuse: {by_policy:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_verified_under_one_trust_policy_never_serves_another() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    let rogue_ca = Ca::new("Rogue CA");
    let rogue_ca_file = rogue_ca.write_root_pem(pki.dir.path(), "rogue-ca.pem");
    // Same host, address and SNI; the subsets differ only in the CA they trust. The upstream's
    // certificate verifies under `trusted` and must not under `rogue`.
    let trusting = |ca: &str| TrafficPolicy::new().tls(ClientTls::simple(ca));
    let dr = DestinationRule::new("api", API)
        .subset(Subset::named("trusted").policy(trusting(&pki.ca_path())))
        .subset(Subset::named("rogue").policy(trusting(&rogue_ca_file.display().to_string())));
    let eg = egress(&[
        &service_entry("api", API, &[(80, "http", "HTTP", upstream.port())]),
        &dr,
        &subset_by_policy_vs("rogue", "trusted"),
    ])
    .await;

    for i in 0..3 {
        // A verified connection is now idle in the pool...
        let r = eg
            .raw_get(API, &format!("/trusted/{i}"), "x-policy: trusted\r\n")
            .await;
        assert_eq!(r.status, 200, "{} {}", r.head, r.body);
        // ...and must not carry a request whose policy would have refused the certificate.
        let r = eg
            .raw_get(API, &format!("/rogue/{i}"), "x-policy: rogue\r\n")
            .await;
        assert_eq!(
            r.status, 503,
            "rogue-trust request {i}: {} {}",
            r.head, r.body
        );
    }
    assert!(
        upstream
            .requests_seen()
            .iter()
            .all(|r| r.header("x-policy") == Some("trusted")),
        "{:?}",
        upstream
            .requests_seen()
            .iter()
            .map(|r| (r.path.clone(), r.conn))
            .collect::<Vec<_>>()
    );
    assert_eq!(upstream.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rules_with_different_client_certificates_never_share_a_connection() {
    let pki = Pki::new(&[]);
    let client_ca = Ca::new("Egress Client CA");
    let upstream = Backend::builder("mtls")
        .tls(pki.server.clone())
        .client_ca(client_ca.clone())
        .start()
        .await;
    // Two names for the same upstream address, same SNI, different client certificates.
    let mut entries = Vec::new();
    let mut rules = Vec::new();
    for who in ["one", "two"] {
        let host = format!("{who}.example.test");
        let (cert, key) = pki.client_cert_files(&client_ca, &format!("client-{who}"));
        entries.push(service_entry(
            who,
            &host,
            &[(80, "http", "HTTP", upstream.port())],
        ));
        let tls = ClientTls::mutual(&cert, &key, &pki.ca_path()).sni(API);
        rules.push(destination_rule(who, &host, TrafficPolicy::new().tls(tls)));
    }
    let eg = egress(&[docs(&entries), docs(&rules)].concat()).await;

    for i in 0..20 {
        let who = if i % 2 == 0 { "one" } else { "two" };
        let r = eg
            .raw_get(
                &format!("{who}.example.test"),
                &format!("/{i}"),
                &format!("x-policy: {who}\r\n"),
            )
            .await;
        assert_eq!(r.status, 200, "{} {}", r.head, r.body);
        assert_eq!(r.json()["client_cert_cn"], format!("client-{who}"));
    }
    upstream.wait_for_requests(20, WAIT).await;
    for r in upstream.requests_seen() {
        let who = r.header("x-policy").unwrap();
        assert_eq!(
            r.client_cert_cn.as_deref(),
            Some(format!("client-{who}").as_str())
        );
        assert_eq!(r.sni.as_deref(), Some(API));
    }
    let by_policy = conns_by_policy(&upstream);
    assert_disjoint(&by_policy, "one", "two");
    for p in ["one", "two"] {
        assert!(
            by_policy[p].len() <= 3,
            "policy {p} did not reuse: {by_policy:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_bounds_upstream_connection_reuse() {
    let pki = Pki::new(&["once.example.test", "twice.example.test"]);
    let once = https_upstream("once", &pki).await;
    let twice = https_upstream("twice", &pki).await;
    let pool = |n: u32| originate(&pki).pool(ConnectionPool::new().max_requests_per_connection(n));
    let eg = egress(&[
        &service_entry(
            "once",
            "once.example.test",
            &[(80, "http", "HTTP", once.port())],
        ),
        &destination_rule("once", "once.example.test", pool(1)),
        &service_entry(
            "twice",
            "twice.example.test",
            &[(80, "http", "HTTP", twice.port())],
        ),
        &destination_rule("twice", "twice.example.test", pool(2)),
    ])
    .await;

    // One keep-alive client, sequential requests: the gateway is free to reuse upstream
    // connections as far as the limit allows.
    let client = http_client();
    const N: usize = 8;
    for (host, backend) in [("once.example.test", &once), ("twice.example.test", &twice)] {
        for i in 0..N {
            let r = client
                .get(format!("http://127.0.0.1:{}/{i}", eg.port()))
                .header("host", host)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{host} request {i}");
        }
        backend.wait_for_requests(N as u64, WAIT).await;
    }

    // maxRequestsPerConnection: 1 → a new upstream connection (and TLS handshake) per request.
    let conns: Vec<u64> = once.requests_seen().iter().map(|r| r.conn).collect();
    assert_eq!(
        distinct(conns.clone()).len(),
        N,
        "one request per connection: {conns:?}"
    );
    assert_eq!(once.connections(), N as u64, "{conns:?}");

    // maxRequestsPerConnection: 2 → every connection carries at most two, and they are reused.
    let conns: Vec<u64> = twice.requests_seen().iter().map(|r| r.conn).collect();
    let mut per_conn: BTreeMap<u64, usize> = BTreeMap::new();
    for c in &conns {
        *per_conn.entry(*c).or_default() += 1;
    }
    assert!(per_conn.values().all(|n| *n <= 2), "{conns:?}");
    // Connections are reused up to the limit. (Not exactly N/2: a connection goes back to the
    // pool just after its response, so a quick next request may open a new one.)
    assert!(
        per_conn.values().any(|n| *n == 2) && distinct(conns.clone()).len() < N,
        "connections are reused up to two requests: {conns:?}"
    );
}
