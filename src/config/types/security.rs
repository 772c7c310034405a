//! `security.istio.io` kinds a gateway enforces: `AuthorizationPolicy` and
//! `RequestAuthentication` (`v1`, `v1beta1`). Reference: istio/api security/v1beta1/
//! authorization.proto, request_authentication.proto, type/v1beta1/selector.proto.

use serde::{Deserialize, Serialize};

use super::common::{Duration, PolicyWorkloadSelector};

/// `istio.type.v1beta1.PolicyTargetReference` (`targetRef`, `targetRefs`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyTargetReference {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationAction {
    #[default]
    Allow,
    Deny,
    Audit,
    Custom,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    pub selector: Option<PolicyWorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Vec<PolicyTargetReference>,
    /// `None` is `rules` left out (DENY and CUSTOM without rules are invalid); `Some([])`
    /// written as `rules: []`.
    pub rules: Option<Vec<Rule>>,
    pub action: AuthorizationAction,
    pub provider: Option<ExtensionProvider>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ExtensionProvider {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Rule {
    /// `None`: not written; `Some([])`: `from: []` (invalid).
    pub from: Option<Vec<RuleFrom>>,
    pub to: Option<Vec<RuleTo>>,
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RuleFrom {
    pub source: Option<Source>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RuleTo {
    pub operation: Option<Operation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Source {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
    pub trust_domains: Vec<String>,
    pub not_trust_domains: Vec<String>,
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestAuthentication {
    pub selector: Option<PolicyWorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Vec<PolicyTargetReference>,
    pub jwt_rules: Vec<JwtRule>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: String,
    pub jwks: String,
    pub from_headers: Vec<JwtHeader>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    pub output_payload_to_header: String,
    pub forward_original_token: bool,
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    pub space_delimited_claims: Vec<String>,
    /// How long a JWKS fetch may take (default 5 s).
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct JwtHeader {
    pub name: String,
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}

/// How a policy names the workloads it applies to (istio `TargetablePolicy`): shared by both
/// kinds.
#[derive(Debug, Clone, Copy)]
pub struct Targeting<'a> {
    pub selector: Option<&'a PolicyWorkloadSelector>,
    pub target_ref: Option<&'a PolicyTargetReference>,
    pub target_refs: &'a [PolicyTargetReference],
}

impl AuthorizationPolicy {
    pub fn targeting(&self) -> Targeting<'_> {
        Targeting {
            selector: self.selector.as_ref(),
            target_ref: self.target_ref.as_ref(),
            target_refs: &self.target_refs,
        }
    }
}

impl RequestAuthentication {
    pub fn targeting(&self) -> Targeting<'_> {
        Targeting {
            selector: self.selector.as_ref(),
            target_ref: self.target_ref.as_ref(),
            target_refs: &self.target_refs,
        }
    }
}
