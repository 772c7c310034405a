//! Header operations (set, add, remove) at route and destination level, and the single
//! authority rewrite.

use super::super::rules::{check_header_value, is_http_token};
use crate::config::diag::Reporter;
use crate::config::types::{HeaderOperations, Headers};

/// Validates route- or destination-level header operations; `authority` collects the paths
/// that rewrite the authority (Host) so a second one can be rejected.
pub(super) fn check_headers(
    r: &mut Reporter,
    path: &str,
    headers: Option<&Headers>,
    authority: &mut Vec<String>,
) {
    let Some(h) = headers else { return };
    if let Some(ops) = &h.request {
        check_header_ops(r, &format!("{path}.request"), ops, true, authority);
    }
    if let Some(ops) = &h.response {
        check_header_ops(r, &format!("{path}.response"), ops, false, authority);
    }
}

fn check_header_ops(
    r: &mut Reporter,
    path: &str,
    ops: &HeaderOperations,
    request: bool,
    authority: &mut Vec<String>,
) {
    for (kind, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            let p = format!("{path}.{kind}.{name}");
            let lower = name.to_ascii_lowercase();
            if request && (lower == ":authority" || lower == "host") {
                if let Some(first) = authority.first() {
                    r.error(
                        p.clone(),
                        format!(
                            "authority header cannot be set multiple times: already set by {first} (expected a single host/:authority header or rewrite.authority)"
                        ),
                    );
                }
                authority.push(p.clone());
            } else if let Err(m) = check_op_name(name, !request) {
                r.error(p.clone(), m);
            }
            if let Err(m) = check_header_value(value) {
                r.error(p, m);
            }
        }
    }
    for (k, name) in ops.remove.iter().enumerate() {
        if let Err(m) = check_op_name(name, true) {
            r.error(format!("{path}.remove[{k}]"), m);
        }
    }
}

/// A header name in set/add/remove. `no_host`: the Host header may not be touched here
/// (request remove, all response operations).
fn check_op_name(name: &str, no_host: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty (expected a header name)".into());
    }
    if name.starts_with(':') {
        return Err(format!(
            "invalid header `{name}`: header cannot have \":\" prefix; pseudo-headers other than :authority cannot be changed (expected a regular header name)"
        ));
    }
    if no_host && name.eq_ignore_ascii_case("host") {
        return Err(format!(
            "invalid header `{name}`: the Host header cannot be removed or set here (expected rewrite.authority to change the authority)"
        ));
    }
    if !is_http_token(name) {
        return Err(format!(
            "`{name}` is not a valid header name (expected an HTTP token: letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, ROUTE};

    #[test]
    fn header_operations() {
        let h = |ops: &str| format!("http:\n- headers:\n{ops}{ROUTE}");
        check(&[
            (
                &h("    request:\n      set: {\":path\": /x}\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].headers.request.set.:path: invalid header `:path`: header cannot have \":\" prefix; pseudo-headers other than :authority cannot be changed (expected a regular header name)"],
            ),
            (
                &h("    request:\n      remove: [Host]\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].headers.request.remove[0]: invalid header `Host`: the Host header cannot be removed or set here (expected rewrite.authority to change the authority)"],
            ),
            (
                &h("    response:\n      set: {host: x}\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].headers.response.set.host: invalid header `host`: the Host header cannot be removed or set here (expected rewrite.authority to change the authority)"],
            ),
            (
                &h("    request:\n      add: {\"x y\": v}\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].headers.request.add.x y: `x y` is not a valid header name (expected an HTTP token: letters, digits and !#$%&'*+-.^_`|~)"],
            ),
            (
                &h("    request:\n      set: {x-a: \"a\\x01b\"}\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].headers.request.set.x-a: header value \"a\\u{1}b\" contains control character '\\u{1}' (expected printable text)"],
            ),
            (
                &h("    request:\n      set: {x-a: \"50%\"}\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].headers.request.set.x-a: header value \"50%\" has an unescaped `%` (expected `%%` for a literal percent sign, or a formatter such as %HOSTNAME%)"],
            ),
            (
                "http:\n- rewrite: {authority: b.example.com}\n  headers:\n    request:\n      set: {\":authority\": c.example.com}\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:11: Error [IST0106] VirtualService default/vs: spec.http[0].headers.request.set.:authority: authority header cannot be set multiple times: already set by spec.http[0].rewrite.authority (expected a single host/:authority header or rewrite.authority)"],
            ),
        ]);
    }
}
