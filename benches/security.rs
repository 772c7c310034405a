//! Per-request cost of edge security (`Security::enforce`, the one call the request phase
//! makes): no policy, an IP allow-list rule, and JWT verification with a cached key (RS256 and
//! ES256) followed by a `requestPrincipals` rule.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code: a failed step panics

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use portcullis::compile::security::{Connection, Security, SecuritySettings};
use portcullis::config::load::load_files;
use portcullis::config::source::SourceFile;

fn compiled(yaml: &str) -> Security {
    let (res, diags) = load_files(vec![SourceFile {
        display: "b.yaml".into(),
        path: "b.yaml".into(),
        text: yaml.into(),
    }]);
    assert!(!diags.has_errors(), "{diags}");
    let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let mut d = Vec::new();
    let s = Security::compile(&res, &SecuritySettings::default(), &labels, &mut d);
    assert!(d.is_empty(), "{d:?}");
    s
}

/// Polls the (synchronous without CUSTOM) future once.
fn now<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("enforce waited"),
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// (jwk JSON, encoding key, algorithm)
fn rsa() -> (String, jsonwebtoken::EncodingKey, jsonwebtoken::Algorithm) {
    let k = openssl::rsa::Rsa::generate(2048).unwrap();
    let jwk = format!(
        r#"{{"kty":"RSA","kid":"k","alg":"RS256","n":"{}","e":"{}"}}"#,
        b64(&k.n().to_vec()),
        b64(&k.e().to_vec())
    );
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&k.private_key_to_pem().unwrap()).unwrap();
    (jwk, key, jsonwebtoken::Algorithm::RS256)
}

fn ec() -> (String, jsonwebtoken::EncodingKey, jsonwebtoken::Algorithm) {
    use openssl::ec::{EcGroup, EcKey};
    let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let k = EcKey::generate(&group).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    k.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let jwk = format!(
        r#"{{"kty":"EC","kid":"k","alg":"ES256","crv":"P-256","x":"{}","y":"{}"}}"#,
        b64(&x.to_vec_padded(32).unwrap()),
        b64(&y.to_vec_padded(32).unwrap())
    );
    let pem = openssl::pkey::PKey::from_ec_key(k)
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();
    (
        jwk,
        jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        jsonwebtoken::Algorithm::ES256,
    )
}

const AP_IP: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ip, namespace: istio-system}\nspec:\n  rules:\n  - from: [{source: {ipBlocks: [10.0.0.0/8, 127.0.0.0/8]}}]\n";

fn security(c: &mut Criterion) {
    let mut g = c.benchmark_group("security_enforce");
    let headers = HeaderMap::new();
    let conn = Connection {
        peer: Some([127, 0, 0, 1].into()),
        client: Some([127, 0, 0, 1].into()),
        local: Some(([127, 0, 0, 1], 8080).into()),
        sni: None,
        xfcc: None,
        scheme: "http",
        authority: "shop.example.com",
    };
    // What the request phase does without policies: one check, no call.
    let none = compiled("");
    g.bench_function("no_policy", |b| {
        b.iter(|| {
            none.is_empty() || now(none.enforce("GET", "/api/items", &headers, &conn)).is_ok()
        })
    });
    let ip = compiled(AP_IP);
    g.bench_function("ip_rule", |b| {
        b.iter(|| now(ip.enforce("GET", "/api/items", &headers, &conn)).is_ok())
    });
    for (name, (jwk, key, alg)) in [
        ("jwt_rs256_cached_key", rsa()),
        ("jwt_es256_cached_key", ec()),
    ] {
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: istio-system}}\nspec:\n  jwtRules:\n  - issuer: iss\n    jwks: '{{\"keys\": [{jwk}]}}'\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: istio-system}}\nspec:\n  rules:\n  - from: [{{source: {{requestPrincipals: ['iss/*']}}}}]\n"
        );
        let jwt = compiled(&yaml);
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some("k".into());
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"iss": "iss", "sub": "alice", "exp": 4_000_000_000u64}),
            &key,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(now(jwt.enforce("GET", "/", &h, &conn)).is_ok());
        g.bench_function(name, |b| {
            b.iter(|| now(jwt.enforce("GET", "/", &h, &conn)).is_ok())
        });
    }
    g.finish();
}

criterion_group!(benches, security);
criterion_main!(benches);
