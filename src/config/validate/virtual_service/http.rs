//! One HTTP rule (Istio `validateHTTPRoute`, `validateHTTPRouteConflict`): what it does
//! (route, redirect, direct response or delegate, and which of them may be combined), its
//! mirrors, and the checks of each part in its stage.

use super::super::rules::{check_duration, check_percent, is_set};
use super::actions::{
    check_cors, check_direct_response, check_fault, check_redirect, check_retries, check_rewrite,
};
use super::destinations::{check_destination, check_http_destinations};
use super::headers::check_headers;
use super::matches::check_match;
use crate::config::diag::Reporter;
use crate::config::types::HttpRoute;

pub(super) fn check_http_route(
    r: &mut Reporter,
    base: &str,
    route: &HttpRoute,
    delegate_vs: bool,
    to_gateway: bool,
) {
    // Istio `getHTTPRouteType`: a rule of a delegate VirtualService is a delegate route even
    // when it delegates itself; a rule with `delegate` elsewhere is a root route, which may
    // only not route or redirect (its directResponse, rewrite, timeout … are inherited).
    let root = route.delegate.is_some() && !delegate_vs;
    if delegate_vs && route.delegate.is_some() {
        r.error(
            format!("{base}.delegate"),
            "delegate HTTP route cannot contain delegate (expected one level of delegation: a delegate VirtualService routes itself)",
        );
    }
    if root {
        for (field, present) in [
            ("route", !route.route.is_empty()),
            ("redirect", route.redirect.is_some()),
        ] {
            if present {
                r.error(
                    format!("{base}.{field}"),
                    format!(
                        "root HTTP route with delegate must not specify {field} (expected the delegate VirtualService to decide how requests are answered)"
                    ),
                );
            }
        }
    } else {
        if route.route.is_empty() && route.redirect.is_none() && route.direct_response.is_none() {
            r.error(
                base,
                "HTTP route or redirect is required (expected route, redirect, directResponse or delegate)",
            );
        }
        // A redirect or a direct response answers the request itself: nothing else may.
        let excluded: &[(&str, bool)] = &[
            ("route", !route.route.is_empty()),
            ("rewrite", route.rewrite.is_some()),
            ("fault", route.fault.is_some()),
            ("directResponse", route.direct_response.is_some()),
        ];
        let answer = if route.redirect.is_some() {
            Some(("redirect", excluded))
        } else if route.direct_response.is_some() {
            Some(("directResponse", &excluded[..3])) // all but itself
        } else {
            None
        };
        if let Some((way, excluded)) = answer {
            for (field, _) in excluded.iter().filter(|(_, present)| *present) {
                r.error(
                    format!("{base}.{way}"),
                    format!("HTTP route cannot contain both {field} and {way} (expected one way to answer the request)"),
                );
            }
        }
    }
    if !root && route.mirror.is_some() && !route.mirrors.is_empty() {
        r.error(
            format!("{base}.mirrors"),
            "mirror and mirrors cannot both be set (expected mirrors alone; it replaces mirror)",
        );
    }
    for (j, m) in route.matches.iter().enumerate() {
        check_match(r, &format!("{base}.match[{j}]"), m, to_gateway);
    }
    let mut authority: Vec<String> = Vec::new();
    if route
        .rewrite
        .as_ref()
        .is_some_and(|rw| is_set(&rw.authority))
    {
        authority.push(format!("{base}.rewrite.authority"));
    }
    check_headers(
        r,
        &format!("{base}.headers"),
        route.headers.as_ref(),
        &mut authority,
    );
    if let Some(t) = route.timeout {
        if let Err(m) = check_duration(t) {
            r.error(format!("{base}.timeout"), m);
        }
    }
    if let Some(retries) = &route.retries {
        check_retries(r, &format!("{base}.retries"), retries);
    }
    if let Some(fault) = &route.fault {
        check_fault(r, &format!("{base}.fault"), fault);
    }
    if let Some(cors) = &route.cors_policy {
        check_cors(r, &format!("{base}.corsPolicy"), cors);
    }
    if let Some(m) = &route.mirror {
        check_destination(r, &format!("{base}.mirror"), m);
    }
    if let Some(p) = route.mirror_percentage {
        if let Err(m) = check_percent(p) {
            r.error(
                format!("{base}.mirrorPercentage.value"),
                format!("mirrorPercentage: {m}"),
            );
        }
    }
    if let Some(p) = route.mirror_percent {
        if p > 100 {
            r.error(
                format!("{base}.mirrorPercent"),
                format!("mirrorPercent {p} is above 100 (expected 0 to 100)"),
            );
        }
        r.warn(
            format!("{base}.mirrorPercent"),
            "mirrorPercent is deprecated (expected mirrorPercentage: {value: N})",
        );
    }
    for (k, mirror) in route.mirrors.iter().enumerate() {
        let p = format!("{base}.mirrors[{k}]");
        match &mirror.destination {
            None => r.error(
                format!("{p}.destination"),
                "Required value: destination is required for mirrors (expected host and optional subset/port)",
            ),
            Some(d) => check_destination(r, &format!("{p}.destination"), d),
        }
        if let Some(pc) = mirror.percentage {
            if let Err(m) = check_percent(pc) {
                r.error(
                    format!("{p}.percentage.value"),
                    format!("mirror percentage: {m}"),
                );
            }
        }
    }
    if let Some(redirect) = &route.redirect {
        check_redirect(r, &format!("{base}.redirect"), redirect, &route.matches);
    }
    if let Some(dr) = &route.direct_response {
        check_direct_response(r, &format!("{base}.directResponse"), dr);
    }
    if let Some(rw) = &route.rewrite {
        check_rewrite(r, &format!("{base}.rewrite"), rw);
    }
    check_http_destinations(r, base, &route.route);
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;

    #[test]
    fn rule_kinds_conflict() {
        check(&[
            (
                "http:\n- match: [{uri: {prefix: /a}}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0]: HTTP route or redirect is required (expected route, redirect, directResponse or delegate)"],
            ),
            (
                "http:\n- redirect: {uri: /b}\n  rewrite: {uri: /c}\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].redirect: HTTP route cannot contain both rewrite and redirect (expected one way to answer the request)"],
            ),
            (
                "http:\n- redirect: {uri: /b}\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].redirect: HTTP route cannot contain both route and redirect (expected one way to answer the request)"],
            ),
            (
                "http:\n- directResponse: {status: 503}\n  fault: {abort: {httpStatus: 500}}\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].directResponse: HTTP route cannot contain both fault and directResponse (expected one way to answer the request)"],
            ),
            (
                "http:\n- route: [{destination: {host: svc.example.com}}]\n  mirror: {host: svc.example.com}\n  mirrors: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].mirrors: mirror and mirrors cannot both be set (expected mirrors alone; it replaces mirror)"],
            ),
        ]);
    }

    #[test]
    fn delegation() {
        check(&[
            (
                "http:\n- delegate: {name: \"\"}\n  route: [{destination: {host: svc.example.com}}]\n",
                &[
                    "t.yaml:8: Warning [IST0101] VirtualService default/vs: spec.http[0].delegate: delegate VirtualService default/ does not exist, so this rule is skipped (expected a VirtualService without hosts loaded from the config directory)",
                    "t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].route: root HTTP route with delegate must not specify route (expected the delegate VirtualService to decide how requests are answered)",
                ],
            ),
            // Istio rejects neither regex matches around delegation nor a root's
            // directResponse (the delegate inherits it); a missing delegate only skips the rule.
            (
                "http:\n- match: [{uri: {regex: \"/a.*\"}}]\n  delegate: {name: reviews}\n  directResponse: {status: 418}\n",
                &["t.yaml:9: Warning [IST0101] VirtualService default/vs: spec.http[0].delegate: delegate VirtualService default/reviews does not exist, so this rule is skipped (expected a VirtualService without hosts loaded from the config directory)"],
            ),
        ]);
    }
}
