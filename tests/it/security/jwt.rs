//! RequestAuthentication: Envoy's `jwt_authn` filter as Istio configures it (istio
//! `pilot/pkg/security/authn/policy_applier.go`; envoy `jwt_authn/{filter,authenticator,
//! extractor}.cc`, `source/common/jwt/{jwt,verify,status}.cc`).

use super::*;

const ISS: &str = "https://issuer.example.com";

fn inline(signers: &[&Signer]) -> RequestAuthentication {
    RequestAuthentication::new("jwt").with(
        "jwtRules",
        json!([{"issuer": ISS, "jwks": jwks(signers), "outputPayloadToHeader": "x-jwt-payload"}]),
    )
}

fn require_token() -> AuthorizationPolicy {
    AuthorizationPolicy::new("require-jwt").with(
        "rules",
        json!([{"from": [{"source": {"requestPrincipals": ["*"]}}]}]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_rsa_token_passes_and_is_removed_before_the_upstream() {
    // authenticator.cc handleGoodJwt: payload to `forward_payload_header`; the token header is
    // removed unless forwardOriginalToken.
    let rsa = Signer::rsa("r1");
    let h = gateway_with(&[&inline(&[&rsa])], &[]).await;
    let token = rsa.token(ISS, "alice", json!({}));
    let resp = send(
        h.request(reqwest::Method::GET, HOST, "/")
            .header("authorization", format!("Bearer {token}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let seen = h.backend("be").last_request().unwrap();
    assert!(seen.header("authorization").is_none(), "{:?}", seen.headers);
    let payload = seen.header("x-jwt-payload").expect("payload header");
    assert_eq!(payload, token.split('.').nth(1).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_envoys_401_bodies_and_www_authenticate() {
    // filter.cc onComplete: 401 with the status message and `www-authenticate: Bearer
    // realm="<original uri>", error="invalid_token"`; status.cc messages.
    let rsa = Signer::rsa("r1");
    let stranger = Signer::rsa("r1");
    let h = gateway_with(&[&inline(&[&rsa])], &[]).await;
    let cases = [
        (
            rsa.sign(json!({"iss": ISS, "sub": "a", "exp": now() - 120})),
            "Jwt is expired",
        ),
        (
            rsa.sign(json!({"iss": ISS, "sub": "a", "nbf": now() + 120})),
            "Jwt not yet valid",
        ),
        (
            stranger.token(ISS, "a", json!({})),
            "Jwt verification fails",
        ),
        (
            rsa.token("https://other.example.com", "a", json!({})),
            "Jwt issuer is not configured",
        ),
        (
            format!("{}c2ln", unsigned(json!({"iss": ISS, "sub": "a"}))),
            "Jwt header [alg] is not supported",
        ),
        // jwt.cc splits skipping empty sections: `alg: none` without a signature is malformed.
        (
            unsigned(json!({"iss": ISS, "sub": "a"})),
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            "not-a-jwt".to_string(),
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
    ];
    for (token, body) in cases {
        let resp = send(
            h.request(reqwest::Method::GET, HOST, "/a?b=1")
                .header("authorization", format!("Bearer {token}")),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 401, "{body}");
        let www = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            www,
            format!("Bearer realm=\"http://{HOST}/a?b=1\", error=\"invalid_token\"")
        );
        assert_eq!(resp.text().await.unwrap(), body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_within_the_60_second_clock_skew_is_still_valid() {
    // jwt.cc verifyTimeConstraint with kClockSkewInSecond = 60.
    let rsa = Signer::rsa("r1");
    let h = gateway_with(&[&inline(&[&rsa])], &[]).await;
    let t = rsa.sign(json!({"iss": ISS, "sub": "a", "exp": now() - 20, "nbf": now() + 20}));
    assert_eq!(with_token(&h, "/", &t).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_audience_is_403() {
    // filter.cc: JwtAudienceNotAllowed is Forbidden (what istio tests/integration/security/jwt
    // expect).
    let ec = Signer::ec("e1");
    let ra = RequestAuthentication::new("jwt").with(
        "jwtRules",
        json!([{"issuer": ISS, "jwks": jwks(&[&ec]), "audiences": ["shop"]}]),
    );
    let h = gateway_with(&[&ra], &[]).await;
    for t in [
        ec.token(ISS, "a", json!({"aud": "other"})),
        ec.token(ISS, "a", json!({})),
    ] {
        let (status, body) = with_token(&h, "/", &t).await;
        assert_eq!(
            (status, body.as_str()),
            (403, "Audiences in Jwt are not allowed")
        );
    }
    assert_eq!(
        with_token(&h, "/", &ec.token(ISS, "a", json!({"aud": ["x", "shop"]})))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_requests_pass_unless_a_policy_requires_a_principal() {
    // policy_applier.go: `{provider OR allow_missing}`; Istio documents requestPrincipals: ["*"]
    // to require a token.
    let rsa = Signer::rsa("r1");
    let h = gateway_with(&[&inline(&[&rsa])], &[]).await;
    assert_eq!(h.who(HOST, "/").await, "be");
    drop(h);
    let h = gateway_with(&[&inline(&[&rsa]), &require_token()], &[]).await;
    assert_eq!(h.who(HOST, "/").await, "status 403");
    assert_eq!(
        with_token(&h, "/", &rsa.token(ISS, "a", json!({}))).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_principals_and_claims_conditions_use_the_verified_token() {
    // generator.go requestPrincipalGenerator (iss/sub, `*` affixes) and requestClaimGenerator
    // (nested claims, lists match by element); scope is space-delimited.
    let rsa = Signer::rsa("r1");
    let allow = AuthorizationPolicy::new("claims").with(
        "rules",
        json!([
            {"from": [{"source": {"requestPrincipals": [format!("{ISS}/alice")]}}], "to": [{"operation": {"paths": ["/alice"]}}]},
            {"to": [{"operation": {"paths": ["/admins"]}}], "when": [{"key": "request.auth.claims[groups]", "values": ["admin"]}]},
            {"to": [{"operation": {"paths": ["/nested"]}}], "when": [{"key": "request.auth.claims[org][id]", "values": ["7"]}]},
            {"to": [{"operation": {"paths": ["/scoped"]}}], "when": [{"key": "request.auth.claims[scope]", "values": ["write"]}]},
            {"to": [{"operation": {"paths": ["/aud"]}}], "when": [{"key": "request.auth.audiences", "values": ["shop"]}]}
        ]),
    );
    let h = gateway_with(&[&inline(&[&rsa]), &allow], &[]).await;
    let alice = rsa.token(ISS, "alice", json!({"groups": ["dev", "admin"], "org": {"id": "7"}, "scope": "read write", "aud": "shop"}));
    let bob = rsa.token(ISS, "bob", json!({"groups": ["dev"]}));
    for path in ["/alice", "/admins", "/nested", "/scoped", "/aud"] {
        assert_eq!(with_token(&h, path, &alice).await.0, 200, "{path}");
        assert_eq!(with_token(&h, path, &bob).await.0, 403, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_headers_with_prefix_params_and_cookies() {
    // extractor.cc: from_headers (value after the prefix), from_params, from_cookies; with a
    // location set, the default Authorization header is not read.
    let rsa = Signer::rsa("r1");
    let ra = RequestAuthentication::new("jwt").with(
        "jwtRules",
        json!([{"issuer": ISS, "jwks": jwks(&[&rsa]), "fromHeaders": [{"name": "x-token", "prefix": "Token "}],
                "fromParams": ["tok"], "fromCookies": ["session"], "forwardOriginalToken": true}]),
    );
    let h = gateway_with(&[&ra, &require_token()], &[]).await;
    let t = rsa.token(ISS, "a", json!({}));
    assert_eq!(
        get_with(&h, "/", &[("x-token", &format!("Token {t}"))])
            .await
            .0,
        200
    );
    assert!(
        h.backend("be")
            .last_request()
            .unwrap()
            .header("x-token")
            .is_some(),
        "forwardOriginalToken keeps it"
    );
    assert_eq!(get_with(&h, &format!("/?tok={t}"), &[]).await.0, 200);
    assert_eq!(
        get_with(&h, "/", &[("cookie", &format!("a=b; session={t}"))])
            .await
            .0,
        200
    );
    assert_eq!(
        with_token(&h, "/", &t).await.0,
        403,
        "Authorization is not a location here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_claim_to_headers_copies_claims_for_the_upstream() {
    // authenticator.cc addJWTClaimToHeader; extractor.cc sanitizes those headers first.
    let ec = Signer::ec("e1");
    let ra = RequestAuthentication::new("jwt").with(
        "jwtRules",
        json!([{"issuer": ISS, "jwks": jwks(&[&ec]), "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]}]),
    );
    let h = gateway_with(&[&ra], &[]).await;
    let t = ec.token(ISS, "carol", json!({}));
    let (status, _) = get_with(
        &h,
        "/",
        &[
            ("authorization", &format!("Bearer {t}")),
            ("x-sub", "forged"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        h.backend("be").last_request().unwrap().header_all("x-sub"),
        ["carol"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_uri_keys_are_fetched_kept_when_the_server_goes_down_and_rotated_by_kid() {
    // jwks_resolver.go: fetched off the request path, kept on refresh failures; a new kid is
    // fetched early in the background (envoy's refetch_jwks_on_kid_mismatch, rate-limited).
    let k1 = Signer::ec("k1");
    let k2 = Signer::rsa("k2");
    let server = JwksServer::start(jwks(&[&k1])).await;
    let ra = RequestAuthentication::new("jwt").with(
        "jwtRules",
        json!([{"issuer": ISS, "jwksUri": server.uri()}]),
    );
    let h = gateway_with(&[&ra, &require_token()], &[]).await;
    let t1 = k1.token(ISS, "a", json!({}));
    eventually(Duration::from_secs(10), "first JWKS fetch", async || {
        with_token(&h, "/", &t1).await.0 == 200
    })
    .await;

    server.set_down(true);
    let fetches = server.fetches();
    let t2 = k2.token(ISS, "a", json!({}));
    let (status, body) = with_token(&h, "/", &t2).await;
    assert_eq!(
        (status, body.as_str()),
        (401, "Jwks doesn't have key to match kid or alg from Jwt")
    );
    eventually(
        Duration::from_secs(10),
        "refetch on unknown kid",
        async || server.fetches() > fetches,
    )
    .await;
    assert_eq!(
        with_token(&h, "/", &t1).await.0,
        200,
        "the cached keys outlive a failed refresh"
    );

    server.set_down(false);
    server.set(jwks(&[&k1, &k2]));
    // Rate-limited: the next unknown-kid refetch comes at most 30 s after the last.
    eventually(Duration::from_secs(45), "rotated key", async || {
        with_token(&h, "/", &t2).await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_service_routes_on_verified_claims() {
    // route.go translateMetadataMatch: `@request.auth.claims.NAME` and nested `a.b` match the
    // jwt_authn payload, on gateways only.
    let rsa = Signer::rsa("r1");
    let admin = HttpRoute::new()
        .when(Match::new().header("@request.auth.claims.group", exact("admin")))
        .to(&svc("admin"));
    let nested = HttpRoute::new()
        .when(Match::new().header("@request.auth.claims.org.tier", exact("gold")))
        .to(&svc("admin"));
    let h = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .backend(Backend::http("admin").await)
        .routes(vec![admin, nested, all_to("be")])
        .resources("jwt.yaml", &[&inline(&[&rsa])])
        .start()
        .await;
    let who_with = async |t: &str| {
        let resp = send(
            h.request(reqwest::Method::GET, HOST, "/")
                .header("authorization", format!("Bearer {t}")),
        )
        .await;
        crate::support::who(resp)
    };
    assert_eq!(
        who_with(&rsa.token(ISS, "a", json!({"group": "admin"}))).await,
        "admin"
    );
    assert_eq!(
        who_with(&rsa.token(ISS, "a", json!({"org": {"tier": "gold"}}))).await,
        "admin"
    );
    assert_eq!(
        who_with(&rsa.token(ISS, "a", json!({"group": "dev"}))).await,
        "be"
    );
    assert_eq!(h.who(HOST, "/").await, "be", "no token, no claim");
}
