//! Istio's authorization model compiled into Envoy RBAC policies, and their evaluation.
//! A rule becomes one policy: OR of permissions (one per `to`), OR of principals (one per
//! `from`), each an AND of its fields; `values` are ORed, `notValues` negated; `when`
//! conditions join the permission or the principal side by key. A policy without rules never
//! matches. Sources: istio `pilot/pkg/security/authz/model/{model,generator}.go`,
//! `builder/builder.go`; envoy `source/extensions/filters/common/rbac/{matchers,engine_impl}.cc`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use super::claims::Claims;
use super::matchers::{Cidr, HeaderValueMatch, PathMatch, StrMatcher};
use crate::config::types::{AuthorizationAction, Rule};

/// What a policy looks at, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a str,
    /// `:authority` / Host as sent (with its port, if any).
    pub authority: &'a str,
    /// Path without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The TCP peer (`source.ip`, `ipBlocks`).
    pub peer: Option<IpAddr>,
    /// The client address (`remote.ip`, `remoteIpBlocks`; Envoy's `remote_ip`).
    pub client: Option<IpAddr>,
    /// The local address the connection arrived on (`destination.ip`, `ports`).
    pub local_ip: Option<IpAddr>,
    pub local_port: u16,
    pub sni: Option<&'a str>,
    /// The verified client certificate's names: URI SANs, DNS SANs, then the subject (what
    /// Envoy's `authenticated` principal matcher tries); `None` without a client certificate.
    pub peer_names: Option<&'a [String]>,
    /// The verified JWT payload (`request.auth.*`).
    pub claims: Option<&'a Claims>,
}

/// One compiled RBAC condition (Envoy `Permission` / `Principal`).
#[derive(Debug, Clone)]
pub enum Cond {
    Any,
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Header(HeaderName, HeaderValueMatch),
    Authority(HeaderValueMatch),
    Method(HeaderValueMatch),
    Path(PathMatch),
    DestinationPort(u16),
    DestinationIp(Cidr),
    Sni(StrMatcher),
    DirectRemoteIp(Cidr),
    RemoteIp(Cidr),
    /// The peer certificate's principal (`authenticated.principal_name`).
    Authenticated(StrMatcher),
    /// A JWT claim at `path` (Envoy metadata matcher on the jwt_authn payload): a string value
    /// matches a matcher, a list matches when one of its strings does.
    Claim(Vec<String>, Vec<StrMatcher>),
}

impl Cond {
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        match self {
            Cond::Any => true,
            Cond::And(all) => all.iter().all(|c| c.matches(f)),
            Cond::Or(any) => any.iter().any(|c| c.matches(f)),
            Cond::Not(c) => !c.matches(f),
            Cond::Header(name, m) => m.matches(joined(f.headers, name).as_deref()),
            Cond::Authority(m) => m.matches(Some(f.authority)),
            Cond::Method(m) => m.matches(Some(f.method)),
            Cond::Path(m) => m.matches(f.path),
            Cond::DestinationPort(p) => f.local_port == *p,
            Cond::DestinationIp(c) => f.local_ip.is_some_and(|ip| c.contains(ip)),
            Cond::Sni(m) => m.matches(f.sni.unwrap_or("")),
            Cond::DirectRemoteIp(c) => f.peer.is_some_and(|ip| c.contains(ip)),
            Cond::RemoteIp(c) => f.client.is_some_and(|ip| c.contains(ip)),
            Cond::Authenticated(m) => f
                .peer_names
                .is_some_and(|names| names.iter().any(|n| m.matches(n))),
            Cond::Claim(path, ms) => f
                .claims
                .is_some_and(|c| c.any_string_at(path, |v| ms.iter().any(|m| m.matches(v)))),
        }
    }
}

/// Envoy matches a repeated header against its values joined by `,`.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut it = headers.get_all(name).iter();
    let first = it.next()?;
    let mut out = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for v in it {
        out.push(',');
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(out)
}

/// One Envoy RBAC policy (an Istio rule): some permission and some principal match.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `ns[NS]-policy[NAME]-rule[N]`, as Istio names it.
    pub name: String,
    pub permissions: Vec<Cond>,
    pub principals: Vec<Cond>,
}

impl Policy {
    /// The policy Istio generates for `rules: []` or no rules: it never matches.
    pub fn never(name: String) -> Policy {
        Policy {
            name,
            permissions: vec![Cond::Not(Box::new(Cond::Any))],
            principals: vec![Cond::Not(Box::new(Cond::Any))],
        }
    }

    pub fn matches(&self, f: &Facts<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(f))
            && self.principals.iter().any(|p| p.matches(f))
    }
}

/// A key or value Istio's generators cannot turn into a matcher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("unknown attribute {0}")]
    UnknownKey(String),
    #[error("invalid value `{value}` for {key}")]
    BadValue { key: String, value: String },
}

/// Which side of an Envoy policy a key belongs to, and how it matches.
enum Field {
    Permission(fn(&str, &str) -> Result<Cond, RuleError>),
    Principal(fn(&str, &str) -> Result<Cond, RuleError>),
    /// Extended generators: all values make one matcher (JWT metadata).
    PrincipalSet(fn(&str, &[String]) -> Result<Cond, RuleError>),
}

fn bad(key: &str, value: &str) -> RuleError {
    RuleError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn cidr(key: &str, v: &str) -> Result<Cidr, RuleError> {
    Cidr::parse(v).ok_or_else(|| bad(key, v))
}

fn port(key: &str, v: &str) -> Result<Cond, RuleError> {
    v.parse::<u16>()
        .map(Cond::DestinationPort)
        .map_err(|_| bad(key, v))
}

/// `serviceAccountRegex` (istio model/generator.go).
fn service_account_regex(default_ns: &str, v: &str) -> String {
    let (ns, sa) = v.split_once('/').unwrap_or((default_ns, v));
    format!(
        "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
        regex::escape(ns),
        regex::escape(sa)
    )
}

fn trust_domain(v: &str) -> StrMatcher {
    if v == "*" {
        StrMatcher::Prefix("spiffe://".into(), false)
    } else if !v.contains('*') {
        StrMatcher::Prefix(format!("spiffe://{v}/"), false)
    } else {
        let (a, b) = v.split_once('*').unwrap_or((v, ""));
        StrMatcher::regex(&format!(
            "spiffe://{}[^/]*{}/.*",
            regex::escape(a),
            regex::escape(b)
        ))
    }
}

fn namespace(v: &str) -> StrMatcher {
    let quoted: Vec<String> = v.split('*').map(regex::escape).collect();
    StrMatcher::regex(&format!(".*/ns/{}/.*", quoted.join(".*")))
}

/// `request.auth.principal` / `requestPrincipals`: `iss/sub` split at the last `/`, with `*`
/// as prefix or suffix (istio generator.go `requestPrincipalGenerator`).
fn request_principals(_: &str, values: &[String]) -> Result<Cond, RuleError> {
    let any = || vec![StrMatcher::regex(".+")];
    let mut or = Vec::new();
    for v in values {
        let (iss, sub, found) = match v.rfind('/') {
            Some(i) => (&v[..i], &v[i + 1..], true),
            None => (v.as_str(), "", false),
        };
        let (mi, ms) = if v == "*" {
            (any(), any())
        } else if let Some(rest) = v.strip_prefix('*') {
            if found {
                let mi = if iss == "*" {
                    any()
                } else {
                    vec![StrMatcher::Suffix(
                        iss.trim_start_matches('*').into(),
                        false,
                    )]
                };
                (mi, vec![StrMatcher::Exact(sub.into(), false)])
            } else {
                (any(), vec![StrMatcher::Suffix(rest.into(), false)])
            }
        } else if let Some(rest) = v.strip_suffix('*') {
            if found {
                let ms = if sub == "*" {
                    any()
                } else {
                    vec![StrMatcher::Prefix(sub.trim_end_matches('*').into(), false)]
                };
                (vec![StrMatcher::Exact(iss.into(), false)], ms)
            } else {
                (vec![StrMatcher::Prefix(rest.into(), false)], any())
            }
        } else {
            (
                vec![StrMatcher::Exact(iss.into(), false)],
                vec![StrMatcher::Exact(sub.into(), false)],
            )
        };
        or.push(Cond::And(vec![
            Cond::Claim(vec!["iss".into()], mi),
            Cond::Claim(vec!["sub".into()], ms),
        ]));
    }
    Ok(if or.len() == 1 {
        or.remove(0)
    } else {
        Cond::Or(or)
    })
}

fn claim_values(path: Vec<String>, values: &[String]) -> Cond {
    Cond::Claim(
        path,
        values.iter().map(|v| StrMatcher::istio(v, "")).collect(),
    )
}

/// `request.auth.claims[a][b]` → `[a, b]` (istio util.go `extractNameInNestedBrackets`).
pub fn claim_path(key: &str) -> Option<Vec<String>> {
    let s = key.strip_prefix("request.auth.claims")?;
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        if inner[..end].contains('[') {
            break;
        }
        out.push(inner[..end].to_string());
        rest = &inner[end + 1..];
    }
    if !rest.is_empty() || out.is_empty() {
        // Not nested: the whole `[...]` is one name.
        let whole = s.strip_prefix('[')?.strip_suffix(']')?;
        return Some(vec![whole.to_string()]);
    }
    Some(out)
}

/// How a `when` key is matched; `Err` for a key Istio does not know.
fn field_for(key: &str) -> Result<Field, RuleError> {
    Ok(match key {
        "destination.ip" => Field::Permission(|k, v| Ok(Cond::DestinationIp(cidr(k, v)?))),
        "destination.port" => Field::Permission(port),
        "connection.sni" => Field::Permission(|_, v| Ok(Cond::Sni(StrMatcher::istio(v, "")))),
        "source.ip" => Field::Principal(|k, v| Ok(Cond::DirectRemoteIp(cidr(k, v)?))),
        "remote.ip" => Field::Principal(|k, v| Ok(Cond::RemoteIp(cidr(k, v)?))),
        "source.namespace" => Field::Principal(|_, v| Ok(Cond::Authenticated(namespace(v)))),
        "source.trustDomain" => Field::Principal(|_, v| Ok(Cond::Authenticated(trust_domain(v)))),
        "source.principal" => {
            Field::Principal(|_, v| Ok(Cond::Authenticated(StrMatcher::istio(v, "spiffe://"))))
        }
        "request.auth.principal" => Field::PrincipalSet(request_principals),
        "request.auth.audiences" => {
            Field::PrincipalSet(|_, vs| Ok(claim_values(vec!["aud".into()], vs)))
        }
        "request.auth.presenter" => {
            Field::PrincipalSet(|_, vs| Ok(claim_values(vec!["azp".into()], vs)))
        }
        k if k.starts_with("request.headers") => Field::Principal(|k, v| {
            let name = k
                .strip_prefix("request.headers[")
                .and_then(|n| n.strip_suffix(']'))
                .ok_or_else(|| RuleError::UnknownKey(k.to_string()))?;
            let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| RuleError::UnknownKey(k.to_string()))?;
            Ok(Cond::Header(name, HeaderValueMatch::istio(v, false)))
        }),
        k if k.starts_with("request.auth.claims") => Field::PrincipalSet(|k, vs| {
            let path = claim_path(k).ok_or_else(|| RuleError::UnknownKey(k.to_string()))?;
            Ok(claim_values(path, vs))
        }),
        other => return Err(RuleError::UnknownKey(other.to_string())),
    })
}

/// Builds one side's AND list for a key's `values` / `notValues`. For ALLOW an error drops the
/// whole rule (a smaller allow); for DENY and AUDIT only the bad value is skipped (a wider
/// deny), as istio model.go `checkError` does.
fn add(
    and: &mut Vec<Cond>,
    key: &str,
    values: &[String],
    not_values: &[String],
    field: &Field,
    strict: bool,
) -> Result<(), RuleError> {
    let kept = |r: Result<Cond, RuleError>| match r {
        Ok(c) => Ok(Some(c)),
        Err(e) if strict => Err(e),
        Err(_) => Ok(None),
    };
    for (list, negate) in [(values, false), (not_values, true)] {
        if list.is_empty() {
            continue;
        }
        let cond = match field {
            Field::PrincipalSet(g) => kept(g(key, list))?,
            Field::Permission(g) | Field::Principal(g) => {
                let mut or = Vec::new();
                for v in list {
                    if let Some(c) = kept(g(key, v))? {
                        or.push(c);
                    }
                }
                (!or.is_empty()).then_some(Cond::Or(or))
            }
        };
        if let Some(c) = cond {
            and.push(if negate { Cond::Not(Box::new(c)) } else { c });
        }
    }
    Ok(())
}

fn and(list: Vec<Cond>) -> Cond {
    if list.is_empty() {
        Cond::Any
    } else {
        Cond::And(list)
    }
}

/// Compiles one rule of a policy into an Envoy policy. `namespace` is the policy's own (the
/// default for `serviceAccounts`).
pub fn compile_rule(
    name: String,
    rule: &Rule,
    action: AuthorizationAction,
    namespace: &str,
) -> Result<Policy, RuleError> {
    let strict = action == AuthorizationAction::Allow;
    let mut base_perm = Vec::new();
    let mut base_princ = Vec::new();
    for w in &rule.when {
        let field = field_for(&w.key);
        let field = match field {
            Ok(f) => f,
            Err(e) if strict => return Err(e),
            Err(_) => continue,
        };
        let side = match field {
            Field::Permission(_) => &mut base_perm,
            _ => &mut base_princ,
        };
        add(side, &w.key, &w.values, &w.not_values, &field, strict)?;
    }
    let mut principals = Vec::new();
    for from in rule.from.iter().flatten() {
        let mut list = Vec::new();
        if let Some(s) = &from.source {
            let sa_ns = namespace.to_string();
            let fields: [(&str, &[String], &[String], Field); 6] = [
                (
                    "source.ip",
                    &s.ip_blocks,
                    &s.not_ip_blocks,
                    field_for("source.ip")?,
                ),
                (
                    "remote.ip",
                    &s.remote_ip_blocks,
                    &s.not_remote_ip_blocks,
                    field_for("remote.ip")?,
                ),
                (
                    "source.namespace",
                    &s.namespaces,
                    &s.not_namespaces,
                    field_for("source.namespace")?,
                ),
                (
                    "source.trustDomain",
                    &s.trust_domains,
                    &s.not_trust_domains,
                    field_for("source.trustDomain")?,
                ),
                (
                    "request.auth.principal",
                    &s.request_principals,
                    &s.not_request_principals,
                    field_for("request.auth.principal")?,
                ),
                (
                    "source.principal",
                    &s.principals,
                    &s.not_principals,
                    field_for("source.principal")?,
                ),
            ];
            for (key, values, not_values, field) in &fields {
                add(&mut list, key, values, not_values, field, strict)?;
            }
            for (values, negate) in [
                (&s.service_accounts, false),
                (&s.not_service_accounts, true),
            ] {
                if values.is_empty() {
                    continue;
                }
                let or = Cond::Or(
                    values
                        .iter()
                        .map(|v| {
                            Cond::Authenticated(StrMatcher::regex(&service_account_regex(
                                &sa_ns, v,
                            )))
                        })
                        .collect(),
                );
                list.push(if negate { Cond::Not(Box::new(or)) } else { or });
            }
        }
        list.extend(base_princ.iter().cloned());
        principals.push(and(list));
    }
    if rule.from.as_ref().is_none_or(Vec::is_empty) {
        principals.push(and(base_princ));
    }
    let mut permissions = Vec::new();
    for to in rule.to.iter().flatten() {
        let mut list = Vec::new();
        if let Some(o) = &to.operation {
            add(
                &mut list,
                "destination.port",
                &o.ports,
                &o.not_ports,
                &Field::Permission(port),
                strict,
            )?;
            let path: Field = Field::Permission(|_, v| Ok(Cond::Path(PathMatch::istio(v))));
            add(&mut list, "path", &o.paths, &o.not_paths, &path, strict)?;
            let method: Field =
                Field::Permission(|_, v| Ok(Cond::Method(HeaderValueMatch::istio(v, false))));
            add(
                &mut list,
                ":method",
                &o.methods,
                &o.not_methods,
                &method,
                strict,
            )?;
            let host: Field =
                Field::Permission(|_, v| Ok(Cond::Authority(HeaderValueMatch::istio(v, true))));
            add(
                &mut list,
                ":authority",
                &o.hosts,
                &o.not_hosts,
                &host,
                strict,
            )?;
        }
        list.extend(base_perm.iter().cloned());
        permissions.push(and(list));
    }
    if rule.to.as_ref().is_none_or(Vec::is_empty) {
        permissions.push(and(base_perm));
    }
    Ok(Policy {
        name,
        permissions,
        principals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_paths_follow_istio_brackets() {
        // istio model/util.go extractNameInNestedBrackets
        assert_eq!(
            claim_path("request.auth.claims[groups]").unwrap(),
            ["groups"]
        );
        assert_eq!(claim_path("request.auth.claims[a][b]").unwrap(), ["a", "b"]);
        assert_eq!(claim_path("request.auth.claims[a.b]").unwrap(), ["a.b"]);
        assert!(claim_path("request.auth.claims.x").is_none());
    }

    #[test]
    fn service_account_regex_follows_istio() {
        let re = StrMatcher::regex(&service_account_regex("default", "sleep"));
        assert!(re.matches("spiffe://cluster.local/ns/default/sa/sleep"));
        assert!(!re.matches("spiffe://cluster.local/ns/default/sa/sleep-x"));
        let re = StrMatcher::regex(&service_account_regex("default", "other/sleep"));
        assert!(re.matches("spiffe://td/ns/other/sa/sleep"));
    }

    #[test]
    fn namespaces_match_the_spiffe_path() {
        assert!(namespace("foo").matches("spiffe://td/ns/foo/sa/x"));
        assert!(!namespace("foo").matches("spiffe://td/ns/foobar/sa/x"));
        assert!(namespace("foo*").matches("spiffe://td/ns/foobar/sa/x"));
    }
}
