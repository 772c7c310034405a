//! Edge security policy, compiled once per reload from the `AuthorizationPolicy` and
//! `RequestAuthentication` objects that apply to this gateway, and enforced in the order of
//! Istio's gateway filter chain (istio `pilot/pkg/networking/core/listener_builder.go`):
//! CUSTOM (ext_authz) → `jwt_authn` → RBAC AUDIT → DENY → ALLOW. Which objects apply follows
//! istio `pilot/pkg/model/{authorization,policyattachment}.go`.
//!
//! `enforce` is the one call the request phase makes; everything it needs was decided here.

pub mod claims;
pub mod ext_authz;
pub mod jwks;
pub mod jwt;
pub mod matchers;
pub mod rbac;
pub mod status;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::compile::reply::LocalReply;
use crate::config::diag::Diagnostic;
use crate::config::load::{Meta, Resource, Resources};
use crate::config::types::{
    AuthorizationAction, AuthorizationPolicy, PolicyTargetReference, RequestAuthentication,
    Targeting,
};
use claims::Claims;
use ext_authz::{ExtAuthzHttp, Outcome};
use jwks::{JwksStore, KeySet};
use jwt::{JwtAuthn, Keys, Provider};
use rbac::{Facts, Policy};

/// The mesh settings security needs (interim flags until the mesh config maps onto them).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySettings {
    /// meshConfig `rootNamespace`: policies here apply to every gateway.
    pub root_namespace: String,
    /// The gateway's own namespace: its policies apply when their selector matches.
    pub namespace: String,
    /// meshConfig `extensionProviders` (HTTP ext_authz only).
    pub ext_authz_providers: Vec<ExtAuthzHttp>,
    /// JWKS fetched for `jwksUri`, kept across reloads.
    #[serde(skip)]
    pub jwks: Arc<JwksStore>,
}

impl SecuritySettings {
    /// The mesh file's `rootNamespace` (the flag already folded in) and its `envoyExtAuthzHttp`
    /// providers; a provider given by flag wins over the file's of the same name.
    pub fn apply_mesh(&mut self, mesh: &crate::compile::mesh::MeshSettings) {
        self.root_namespace = mesh.root_namespace.clone();
        for p in &mesh.tracing.providers {
            let Some(http) = &p.envoy_ext_authz_http else {
                continue;
            };
            if !self.ext_authz_providers.iter().any(|f| f.name == p.name) {
                self.ext_authz_providers
                    .push(ExtAuthzHttp::from_mesh(&p.name, http));
            }
        }
    }
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            root_namespace: "istio-system".into(),
            namespace: "istio-system".into(),
            ext_authz_providers: Vec::new(),
            jwks: Arc::new(JwksStore::default()),
        }
    }
}

/// The label Kubernetes Gateway API deployments carry; with it, policies attach by `targetRef`.
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// istio policyattachment.go `ShouldAttachPolicy` for a gateway: by selector, or (Gateway API
/// gateways) by a `targetRef` to the Gateway in the policy's own namespace.
fn attaches(
    meta: &Meta,
    t: Targeting<'_>,
    settings: &SecuritySettings,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Targeting {
        selector,
        target_ref,
        target_refs,
    } = t;
    if meta.namespace != settings.root_namespace && meta.namespace != settings.namespace {
        return false;
    }
    let refs: Vec<&PolicyTargetReference> = if target_refs.is_empty() {
        target_ref.into_iter().collect()
    } else {
        target_refs.iter().collect()
    };
    let selected =
        || selector.is_none_or(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let Some(gateway_name) = labels.get(GATEWAY_NAME_LABEL) else {
        return refs.is_empty() && selected();
    };
    if refs.is_empty() {
        return selected();
    }
    refs.iter().any(|r| {
        meta.namespace == settings.namespace
            && (r.namespace.is_empty() || r.namespace == settings.namespace)
            && r.kind == "Gateway"
            && r.group == "gateway.networking.k8s.io"
            && &r.name == gateway_name
    })
}

/// ALLOW, DENY or AUDIT: the enforced policies and the dry-run (shadow) ones.
#[derive(Debug, Default)]
struct Engine {
    enforce: Option<Vec<Policy>>,
    shadow: Option<Vec<Policy>>,
}

impl Engine {
    fn matched<'a>(policies: &'a Option<Vec<Policy>>, f: &Facts<'_>) -> Option<Option<&'a str>> {
        policies
            .as_ref()
            .map(|ps| ps.iter().find(|p| p.matches(f)).map(|p| p.name.as_str()))
    }
}

/// A CUSTOM provider and the rules that send requests to it.
#[derive(Debug)]
struct Custom {
    provider: String,
    /// `None`: the provider is not configured; matching requests are denied (Istio's
    /// `getBadCustomDenyRules`).
    server: Option<ExtAuthzHttp>,
    policies: Vec<Policy>,
}

/// Everything about security this snapshot enforces.
#[derive(Debug, Default)]
pub struct Security {
    custom: Vec<Custom>,
    jwt: JwtAuthn,
    audit: Engine,
    deny: Engine,
    allow: Engine,
    /// `namespace/name` of every applied policy, for the config dump.
    pub applied: Vec<String>,
}

/// The connection facts a policy may look at (the request's own come from its header).
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub peer: Option<IpAddr>,
    pub client: Option<IpAddr>,
    pub local: Option<std::net::SocketAddr>,
    pub sni: Option<&'a str>,
    /// The `x-forwarded-client-cert` the gateway made for a verified client certificate.
    pub xfcc: Option<&'a str>,
    /// `http` or `https`, for the `www-authenticate` realm.
    pub scheme: &'a str,
    pub authority: &'a str,
}

impl<'a> Connection<'a> {
    fn facts<'b>(
        &'b self,
        method: &'b str,
        path: &'b str,
        headers: &'b HeaderMap,
        peer_names: Option<&'b [String]>,
        claims: Option<&'b Claims>,
    ) -> Facts<'b> {
        Facts {
            method,
            authority: self.authority,
            path,
            headers,
            peer: self.peer,
            client: self.client,
            local_ip: self.local.map(|a| a.ip()),
            local_port: self.local.map_or(0, |a| a.port()),
            sni: self.sni,
            peer_names,
            claims,
        }
    }
}

/// A change to the request headers (token removed, payload and claim headers, ext_authz
/// headers), applied in order by the caller.
#[derive(Debug, Clone)]
pub enum Edit {
    Remove(HeaderName),
    Insert(HeaderName, HeaderValue),
    Append(HeaderName, HeaderValue),
}

impl Edit {
    pub fn apply(edits: &[Edit], headers: &mut HeaderMap) {
        for e in edits {
            match e {
                Edit::Remove(n) => {
                    headers.remove(n);
                }
                Edit::Insert(n, v) => {
                    headers.insert(n.clone(), v.clone());
                }
                Edit::Append(n, v) => {
                    headers.append(n.clone(), v.clone());
                }
            }
        }
    }
}

/// A request that may go on: its verified claims and the header changes to make.
#[derive(Debug, Default)]
pub struct Admitted {
    pub claims: Option<Arc<Claims>>,
    /// Changes to the request headers, in order.
    pub request_edits: Vec<Edit>,
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

/// The answer Envoy's RBAC filter gives a denied request.
pub fn rbac_denied() -> LocalReply {
    LocalReply::new(
        403,
        None,
        "rbac_access_denied_matched_policy[none]",
        "RBAC: access denied",
    )
}

impl Security {
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty()
            && self.jwt.is_empty()
            && self.audit.enforce.is_none()
            && self.audit.shadow.is_none()
            && self.deny.enforce.is_none()
            && self.deny.shadow.is_none()
            && self.allow.enforce.is_none()
            && self.allow.shadow.is_none()
    }

    /// Does any policy decide (deny, allow or ask ext_authz)? AUDIT and dry-run only log.
    pub fn decides(&self) -> bool {
        !self.custom.is_empty() || self.deny.enforce.is_some() || self.allow.enforce.is_some()
    }

    /// Compiles the policies that apply to the instance with `labels`.
    pub fn compile(
        resources: &Resources,
        settings: &SecuritySettings,
        labels: &BTreeMap<String, String>,
        diags: &mut Vec<Diagnostic>,
    ) -> Security {
        let mut s = Security::default();
        let applies_ap = |r: &Resource<AuthorizationPolicy>| {
            attaches(&r.meta, r.spec.targeting(), settings, labels)
        };
        // Root namespace first, then the gateway's own (istio authorization.go lookup order).
        let mut aps: Vec<&Arc<Resource<AuthorizationPolicy>>> = resources
            .authorization_policies
            .iter()
            .filter(|r| applies_ap(r))
            .collect();
        aps.sort_by_key(|r| r.meta.namespace != settings.root_namespace);
        let mut custom: BTreeMap<String, Custom> = BTreeMap::new();
        for ap in aps {
            s.applied.push(ap.key());
            let dry_run = ap
                .meta
                .annotations
                .get("istio.io/dry-run")
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1" || v == "t");
            let action = ap.spec.action;
            let policies = policies_of(ap, diags);
            match action {
                AuthorizationAction::Custom => {
                    let name = ap
                        .spec
                        .provider
                        .as_ref()
                        .map(|p| p.name.clone())
                        .unwrap_or_default();
                    let entry = custom.entry(name.clone()).or_insert_with(|| Custom {
                        server: settings
                            .ext_authz_providers
                            .iter()
                            .find(|p| p.name == name)
                            .cloned(),
                        provider: name.clone(),
                        policies: Vec::new(),
                    });
                    if entry.server.is_none() {
                        ap.reporter(diags).note(
                            "spec.provider.name",
                            format!("extension provider `{name}` is not configured: requests this policy matches are denied, as Istio does (expected a provider declared with --ext-authz-provider)"),
                        );
                    }
                    entry.policies.extend(policies);
                }
                other => {
                    let engine = match other {
                        AuthorizationAction::Allow => &mut s.allow,
                        AuthorizationAction::Deny => &mut s.deny,
                        _ => &mut s.audit,
                    };
                    let slot = if dry_run {
                        &mut engine.shadow
                    } else {
                        &mut engine.enforce
                    };
                    slot.get_or_insert_with(Vec::new).extend(policies);
                }
            }
        }
        s.custom = custom.into_values().collect();
        if s.custom.len() > 1 {
            // Istio without PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS: deny what they match.
            for c in &mut s.custom {
                c.server = None;
            }
        }
        s.jwt = jwt_of(resources, settings, labels, diags);
        s
    }

    /// Enforces every applied policy on one request: `Err` is the answer to send instead.
    pub async fn enforce(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        conn: &Connection<'_>,
    ) -> Result<Admitted, LocalReply> {
        let mut edited: Option<HeaderMap> = None;
        let mut admitted = Admitted::default();
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let peer_names = conn.xfcc.map(peer_names);
        // CUSTOM: the first provider whose rules match decides (RBAC shadow + ext_authz).
        {
            let f = conn.facts(method, path, headers, peer_names.as_deref(), None);
            for c in &self.custom {
                if !c.policies.iter().any(|p| p.matches(&f)) {
                    continue;
                }
                let Some(server) = &c.server else {
                    return Err(rbac_denied());
                };
                match server
                    .check(method, conn.authority, path_and_query, headers)
                    .await
                {
                    Outcome::Deny(reply) => return Err(reply),
                    Outcome::Allow {
                        upstream,
                        remove,
                        downstream,
                    } => {
                        let edits: Vec<Edit> = remove
                            .into_iter()
                            .map(Edit::Remove)
                            .chain(upstream.into_iter().map(|(k, v)| Edit::Insert(k, v)))
                            .collect();
                        if !edits.is_empty() {
                            let mut h = headers.clone();
                            Edit::apply(&edits, &mut h);
                            edited = Some(h);
                            admitted.request_edits.extend(edits);
                        }
                        admitted.response_headers.extend(downstream);
                    }
                }
                tracing::debug!(provider = %c.provider, "ext_authz allowed");
                break;
            }
        }
        let headers = edited.as_ref().unwrap_or(headers);
        // jwt_authn (a CORS preflight carries no credentials: Istio bypasses it).
        if !self.jwt.is_empty() && !is_cors_preflight(method, headers) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match self
                .jwt
                .authenticate(headers, query, now, &mut admitted.request_edits)
            {
                Ok(claims) => admitted.claims = claims,
                Err(status) => {
                    let uri = original_uri(conn.scheme, conn.authority, path_and_query);
                    return Err(LocalReply::new(
                        status.http_status(),
                        None,
                        status.details(),
                        status.message(),
                    )
                    .header_str(
                        ::http::header::WWW_AUTHENTICATE,
                        &status.www_authenticate(&uri),
                    ));
                }
            }
        }
        let f = conn.facts(
            method,
            path,
            headers,
            peer_names.as_deref(),
            admitted.claims.as_deref(),
        );
        for (action, engine) in [
            ("AUDIT", &self.audit),
            ("DENY", &self.deny),
            ("ALLOW", &self.allow),
        ] {
            if let Some(Some(name)) = Engine::matched(&engine.shadow, &f) {
                tracing::info!(target: "portcullis::authz", action, policy = name, "dry-run: policy matched (not enforced)");
            }
            let Some(matched) = Engine::matched(&engine.enforce, &f) else {
                continue;
            };
            match (action, matched) {
                ("AUDIT", Some(name)) => {
                    tracing::info!(target: "portcullis::authz", policy = name, "audit: policy matched")
                }
                ("DENY", Some(_)) | ("ALLOW", None) => return Err(rbac_denied()),
                _ => {}
            }
        }
        Ok(admitted)
    }
}

/// envoy jwt_authn filter.cc: `Http::Utility::buildOriginalUri` with a 256-byte path.
fn original_uri(scheme: &str, authority: &str, path_and_query: &str) -> String {
    let mut end = path_and_query.len().min(256);
    while !path_and_query.is_char_boundary(end) {
        end -= 1;
    }
    format!("{scheme}://{authority}{}", &path_and_query[..end])
}

fn is_cors_preflight(method: &str, headers: &HeaderMap) -> bool {
    method == "OPTIONS"
        && headers.get("origin").is_some_and(|v| !v.is_empty())
        && headers
            .get("access-control-request-method")
            .is_some_and(|v| !v.is_empty())
}

/// The names Envoy's `authenticated` matcher tries, from the XFCC the gateway made for the
/// verified client certificate: URI SANs, DNS SANs, then the subject.
pub fn peer_names(xfcc: &str) -> Vec<String> {
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    let mut subject = None;
    for part in xfcc.split(';') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        let v = v.trim_matches('"').to_string();
        match k {
            "URI" => uris.push(v),
            "DNS" => dns.push(v),
            "Subject" => subject = Some(v),
            _ => {}
        }
    }
    uris.extend(dns);
    uris.extend(subject);
    uris
}

/// The Envoy policies of one AuthorizationPolicy, named as Istio names them.
fn policies_of(ap: &Resource<AuthorizationPolicy>, diags: &mut Vec<Diagnostic>) -> Vec<Policy> {
    let name = |i: usize| {
        format!(
            "ns[{}]-policy[{}]-rule[{i}]",
            ap.meta.namespace, ap.meta.name
        )
    };
    let rules = ap.spec.rules.as_deref().unwrap_or(&[]);
    if rules.is_empty() {
        return vec![Policy::never(name(0))];
    }
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        match rbac::compile_rule(name(i), rule, ap.spec.action, &ap.meta.namespace) {
            Ok(p) => out.push(p),
            Err(e) => ap.reporter(diags).note(
                format!("spec.rules[{i}]"),
                format!("rule skipped, as Istio skips it: {e}"),
            ),
        }
    }
    out
}

/// Istio's jwt_authn providers from the RequestAuthentications that apply, sorted by issuer.
fn jwt_of(
    resources: &Resources,
    settings: &SecuritySettings,
    labels: &BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) -> JwtAuthn {
    let applies = |r: &Resource<RequestAuthentication>| {
        attaches(&r.meta, r.spec.targeting(), settings, labels)
    };
    let mut rules = Vec::new();
    for ra in resources
        .request_authentications
        .iter()
        .filter(|r| applies(r))
    {
        for (i, rule) in ra.spec.jwt_rules.iter().enumerate() {
            rules.push((ra, i, rule));
        }
    }
    rules.sort_by(|a, b| a.2.issuer.cmp(&b.2.issuer));
    let mut providers = Vec::new();
    for (ra, i, rule) in rules {
        let keys = if !rule.jwks.is_empty() {
            match KeySet::parse(&rule.jwks) {
                Ok(k) => Keys::Inline(Arc::new(k)),
                Err(e) => {
                    ra.reporter(diags).error(
                        format!("spec.jwtRules[{i}].jwks"),
                        format!(
                            "{e} (expected a JWKS with at least one RSA, EC or OKP public key)"
                        ),
                    );
                    continue;
                }
            }
        } else {
            let timeout = rule.timeout.map_or(Duration::from_secs(5), |t| t.get());
            Keys::Remote(
                settings.jwks.register(&rule.jwks_uri, timeout),
                settings.jwks.clone(),
            )
        };
        let headers: Vec<(String, String)> = rule
            .from_headers
            .iter()
            .map(|h| (h.name.clone(), h.prefix.clone()))
            .collect();
        let header = |h: &str| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok();
        providers.push(Provider {
            issuer: rule.issuer.clone(),
            audiences: rule.audiences.clone(),
            keys,
            locations: Provider::locations_for(&headers, &rule.from_params, &rule.from_cookies),
            forward: rule.forward_original_token,
            payload_header: (!rule.output_payload_to_header.is_empty())
                .then(|| header(&rule.output_payload_to_header))
                .flatten(),
            claim_to_headers: rule
                .output_claim_to_headers
                .iter()
                .filter_map(|c| {
                    Some((
                        header(&c.header)?,
                        c.claim.split('.').map(str::to_string).collect(),
                    ))
                })
                .collect(),
            space_delimited: Provider::space_delimited_for(&rule.space_delimited_claims),
        });
    }
    JwtAuthn { providers }
}
