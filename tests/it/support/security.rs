//! Test-time identity for the security tests: signing keys made with OpenSSL (RSA 2048, EC
//! P-256) and their JWKS, tokens signed by the `jsonwebtoken` crate, a JWKS server on loopback
//! that can rotate keys and go down, and an HTTP ext_authz server that allows, denies or fails.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{json, Value};
use tokio::net::TcpListener;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key with its `kid`, and its public JWK.
pub struct Signer {
    pub kid: String,
    alg: Algorithm,
    key: EncodingKey,
    pub jwk: Value,
}

impl Signer {
    /// RS256 with a fresh RSA 2048 key.
    pub fn rsa(kid: &str) -> Signer {
        let rsa = Rsa::generate(2048).unwrap();
        let jwk = json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec()),
        });
        let pem = rsa.private_key_to_pem().unwrap();
        Signer {
            kid: kid.into(),
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_pem(&pem).unwrap(),
            jwk,
        }
    }

    /// ES256 with a fresh P-256 key.
    pub fn ec(kid: &str) -> Signer {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let (mut x, mut y) = (
            openssl::bn::BigNum::new().unwrap(),
            openssl::bn::BigNum::new().unwrap(),
        );
        ec.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let jwk = json!({
            "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
            "x": b64(&x.to_vec_padded(32).unwrap()), "y": b64(&y.to_vec_padded(32).unwrap()),
        });
        let pem = PKey::from_ec_key(ec)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        Signer {
            kid: kid.into(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_pem(&pem).unwrap(),
            jwk,
        }
    }

    /// A signed token with these claims.
    pub fn sign(&self, claims: Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    /// A token for `iss`/`sub` valid for an hour, with `extra` claims merged in.
    pub fn token(&self, iss: &str, sub: &str, extra: Value) -> String {
        let mut claims = json!({"iss": iss, "sub": sub, "iat": now(), "exp": now() + 3600});
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        self.sign(claims)
    }
}

/// `{"keys": [...]}` for these signers.
pub fn jwks(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// Serves `handler` on a loopback port until dropped.
async fn serve<F>(handler: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let h = handler.clone();
                    async move { Ok::<_, Infallible>(h(req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A JWKS endpoint: `set` replaces the document, `down` makes it answer 503.
pub struct JwksServer {
    pub addr: SocketAddr,
    body: Arc<Mutex<String>>,
    down: Arc<AtomicBool>,
    fetches: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(jwks: String) -> JwksServer {
        let body = Arc::new(Mutex::new(jwks));
        let down = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicU64::new(0));
        let (b, d, f) = (body.clone(), down.clone(), fetches.clone());
        let (addr, task) = serve(move |_req| {
            f.fetch_add(1, Ordering::SeqCst);
            if d.load(Ordering::SeqCst) {
                return Response::builder()
                    .status(503)
                    .body(Full::new(Bytes::from("down")))
                    .unwrap();
            }
            let text = b.lock().unwrap().clone();
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(text)))
                .unwrap()
        })
        .await;
        JwksServer {
            addr,
            body,
            down,
            fetches,
            _task: task,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn set(&self, jwks: String) {
        *self.body.lock().unwrap() = jwks;
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// One check request as the ext_authz server received it.
#[derive(Clone, Debug)]
pub struct Check {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// An HTTP ext_authz server: a path containing `/deny` is refused (403, body `denied by
/// authz`, `x-authz-reason: policy`), `/fail` answers 500, anything else is allowed (200 with
/// `x-user: alice` for the upstream and `x-authz-said: yes` for the client).
pub struct AuthzServer {
    pub addr: SocketAddr,
    pub checks: Arc<Mutex<Vec<Check>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl AuthzServer {
    pub async fn start() -> AuthzServer {
        let checks = Arc::new(Mutex::new(Vec::new()));
        let c = checks.clone();
        let (addr, task) = serve(move |req| {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            c.lock().unwrap().push(Check {
                method: req.method().to_string(),
                path: path.clone(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect(),
            });
            if path.contains("/deny") {
                return Response::builder()
                    .status(403)
                    .header("x-authz-reason", "policy")
                    .body(Full::new(Bytes::from("denied by authz")))
                    .unwrap();
            }
            if path.contains("/fail") {
                return Response::builder()
                    .status(500)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
            }
            Response::builder()
                .header("x-user", "alice")
                .header("x-authz-said", "yes")
                .body(Full::new(Bytes::new()))
                .unwrap()
        })
        .await;
        AuthzServer {
            addr,
            checks,
            _task: task,
        }
    }

    pub fn checks(&self) -> Vec<Check> {
        self.checks.lock().unwrap().clone()
    }
}
