//! What an HTTP rule does besides routing, and how: redirect, direct response, rewrite,
//! retries, fault injection, CORS.

use base64::Engine as _;

use super::super::rules::{
    check_cors_header_name, check_duration, check_percent, check_port, check_regex,
    check_string_match, is_set, MatchUse,
};
use crate::config::diag::Reporter;
use crate::config::types::{
    CorsPolicy, HttpDirectResponse, HttpFaultInjection, HttpMatchRequest, HttpRedirect, HttpRetry,
    HttpRewrite, GRPC_STATUS_NAMES,
};

pub(super) fn check_redirect(
    r: &mut Reporter,
    path: &str,
    redirect: &HttpRedirect,
    matches: &[HttpMatchRequest],
) {
    if redirect.uri.is_some() && redirect.prefix_rewrite.is_some() {
        r.error(
            format!("{path}.prefixRewrite"),
            "uri and prefixRewrite are mutually exclusive (expected one of them)",
        );
    }
    if redirect.prefix_rewrite.is_some() {
        if let Some(j) = matches.iter().position(|m| {
            m.uri
                .as_ref()
                .is_some_and(|u| u.prefix.is_none() || u.set_count() != 1)
        }) {
            r.error(
                format!("{path}.prefixRewrite"),
                format!(
                    "prefixRewrite needs every uri match of the rule to be a prefix match, but match[{j}] is not (expected uri.prefix, or redirect.uri)"
                ),
            );
        }
    }
    if !is_set(&redirect.uri)
        && redirect.prefix_rewrite.is_none()
        && !is_set(&redirect.authority)
        && !is_set(&redirect.scheme)
        && redirect.port.is_none()
        && redirect.derive_port.is_none()
    {
        r.error(
            path,
            "redirect must change at least one of uri, prefixRewrite, authority, scheme, port or derivePort (expected a redirect that points somewhere else)",
        );
    }
    if let Some(code) = redirect.redirect_code {
        if ![301, 302, 303, 307, 308].contains(&code) {
            r.error(
                format!("{path}.redirectCode"),
                format!("unsupported redirect code {code} (expected 301, 302, 303, 307 or 308; Istio drops such routes)"),
            );
        }
    }
    if let Some(s) = redirect
        .scheme
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "http" && *s != "https")
    {
        r.error(
            format!("{path}.scheme"),
            format!("invalid redirect scheme `{s}` (expected \"http\" or \"https\")"),
        );
    }
    if let Some(port) = redirect.port.filter(|p| *p != 0) {
        if let Err(m) = check_port(port) {
            r.error(format!("{path}.port"), m);
        }
        if redirect.derive_port.is_some() {
            r.error(
                format!("{path}.derivePort"),
                "port and derivePort are mutually exclusive (expected one of them)",
            );
        }
    }
}

const MIB: usize = 1024 * 1024;

const KIB: usize = 1024;

pub(super) fn check_direct_response(r: &mut Reporter, path: &str, dr: &HttpDirectResponse) {
    if !(200..=599).contains(&dr.status) {
        r.error(
            format!("{path}.status"),
            format!("HTTP status {} is not in range 200-599 (expected a status such as 200, 404 or 503)", dr.status),
        );
    }
    let Some(body) = &dr.body else { return };
    let bpath = format!("{path}.body");
    if body.string.is_some() && body.bytes.is_some() {
        r.error(
            bpath.clone(),
            "body.string and body.bytes are mutually exclusive (expected one of them)",
        );
    }
    let mut size = body.string.as_ref().map_or(0, String::len);
    if let Some(b64) = &body.bytes {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        match engines.iter().find_map(|e| e.decode(b64.trim()).ok()) {
            Some(bytes) => size = size.max(bytes.len()),
            None => r.error(
                format!("{bpath}.bytes"),
                "body.bytes is not valid base64 (expected base64 of the body, e.g. aGVsbG8=)",
            ),
        }
    }
    if size > MIB {
        r.error(
            bpath,
            format!("direct response body is {size} bytes, above 1 MiB (expected a smaller body; large direct responses are rejected)"),
        );
    } else if size > 100 * KIB {
        r.warn(
            bpath,
            format!("direct response body is {size} bytes, above 100 KiB; every copy of the route table holds it (expected a smaller body)"),
        );
    }
}

pub(super) fn check_rewrite(r: &mut Reporter, path: &str, rw: &HttpRewrite) {
    if !is_set(&rw.uri) && rw.uri_regex_rewrite.is_none() && !is_set(&rw.authority) {
        r.error(
            path,
            "rewrite must specify at least one of uri, uriRegexRewrite or authority (expected one of them)",
        );
    }
    if is_set(&rw.uri) && rw.uri_regex_rewrite.is_some() {
        r.error(
            format!("{path}.uriRegexRewrite"),
            "rewrite may only contain one of uri or uriRegexRewrite (expected one of them)",
        );
    }
    if let Some(re) = &rw.uri_regex_rewrite {
        let p = format!("{path}.uriRegexRewrite");
        if re.pattern.is_empty() || re.rewrite.is_empty() {
            r.error(
                p.clone(),
                "uriRegexRewrite requires both rewrite and match fields to be specified (expected match: <RE2 regex>, rewrite: <replacement>)",
            );
        }
        if !re.pattern.is_empty() {
            if let Err(m) = check_regex(&re.pattern) {
                r.error(format!("{p}.match"), m);
            }
        }
    }
}

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(super) fn check_retries(r: &mut Reporter, path: &str, retries: &HttpRetry) {
    if retries.attempts < 0 {
        r.error(
            format!("{path}.attempts"),
            format!(
                "attempts {} cannot be negative (expected 0 to disable retries, or more)",
                retries.attempts
            ),
        );
    }
    if retries.attempts == 0
        && (retries.per_try_timeout.is_some()
            || is_set(&retries.retry_on)
            || retries.retry_remote_localities.is_some()
            || retries.retry_ignore_previous_hosts.is_some()
            || retries.backoff.is_some())
    {
        r.error(
            path,
            "http retry policy configured when attempts are set to 0 (disabled) (expected attempts of 1 or more, or no other retry fields)",
        );
    }
    for (field, d) in [
        ("perTryTimeout", retries.per_try_timeout),
        ("backoff", retries.backoff),
    ] {
        if let Some(d) = d {
            if let Err(m) = check_duration(d) {
                r.error(format!("{path}.{field}"), m);
            }
        }
    }
    if let Some(on) = retries.retry_on.as_deref().filter(|s| !s.is_empty()) {
        for token in on.split(',') {
            let code =
                token.len() == 3 && token.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
            if !code && !RETRY_ON.contains(&token) {
                r.error(
                    format!("{path}.retryOn"),
                    format!(
                        "{token:?} is not a valid retryOn policy (expected a comma list of {}, or 3-digit status codes)",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
}

pub(super) fn check_fault(r: &mut Reporter, path: &str, fault: &HttpFaultInjection) {
    if fault.abort.is_none() && fault.delay.is_none() {
        r.error(
            path,
            "HTTP fault injection must have an abort and/or a delay (expected fault.abort or fault.delay)",
        );
    }
    if let Some(abort) = &fault.abort {
        let p = format!("{path}.abort");
        let kinds = [
            abort.http_status.is_some(),
            abort.grpc_status.is_some(),
            abort.http2_error.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 => r.error(
                p.clone(),
                "abort needs an error type (expected exactly one of httpStatus or grpcStatus)",
            ),
            1 => {}
            n => r.error(
                p.clone(),
                format!(
                    "abort sets {n} error types (expected exactly one of httpStatus or grpcStatus)"
                ),
            ),
        }
        if let Some(s) = abort.http_status {
            if !(200..=599).contains(&s) {
                r.error(
                    format!("{p}.httpStatus"),
                    format!("HTTP status {s} is not in range 200-599 (expected e.g. 503)"),
                );
            }
        }
        if let Some(g) = &abort.grpc_status {
            if !GRPC_STATUS_NAMES.contains(&g.as_str()) {
                r.error(
                    format!("{p}.grpcStatus"),
                    format!("gRPC status {g:?} is not supported (expected a status name such as UNAVAILABLE or NOT_FOUND)"),
                );
            }
        }
        if abort.http2_error.is_some() {
            r.error(
                format!("{p}.http2Error"),
                "HTTP/2 abort fault injection is not supported (expected httpStatus or grpcStatus)",
            );
        }
        if let Some(pc) = abort.percentage {
            if let Err(m) = check_percent(pc) {
                r.error(format!("{p}.percentage.value"), m);
            }
        }
    }
    if let Some(delay) = &fault.delay {
        let p = format!("{path}.delay");
        if delay.exponential_delay.is_some() {
            r.error(
                format!("{p}.exponentialDelay"),
                "exponentialDelay is not supported (expected fixedDelay)",
            );
        } else if delay.fixed_delay.is_none() {
            r.error(
                format!("{p}.fixedDelay"),
                "Required value: delay needs fixedDelay (expected e.g. fixedDelay: 5s)",
            );
        }
        if let Some(d) = delay.fixed_delay {
            if let Err(m) = check_duration(d) {
                r.error(format!("{p}.fixedDelay"), m);
            }
        }
        if let Some(pc) = delay.percentage {
            if let Err(m) = check_percent(pc) {
                r.error(format!("{p}.percentage.value"), m);
            }
        }
        if let Some(pc) = delay.percent {
            if !(0..=100).contains(&pc) {
                r.error(
                    format!("{p}.percent"),
                    format!("percent {pc} is out of range (expected 0 to 100)"),
                );
            }
        }
    }
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

pub(super) fn check_cors(r: &mut Reporter, path: &str, cors: &CorsPolicy) {
    for (k, origin) in cors.allow_origins.iter().enumerate() {
        let p = format!("{path}.allowOrigins[{k}]");
        let value = origin
            .exact
            .as_deref()
            .or(origin.prefix.as_deref())
            .or(origin.regex.as_deref());
        // Istio `validateAllowOrigins`: no match type, or an empty one, is an error.
        if origin.set_count() <= 1 && value.unwrap_or("").is_empty() {
            r.error(
                p.clone(),
                "'' is not a valid match type for CORS allow origins (expected a non-empty exact, prefix or regex)",
            );
            continue;
        }
        check_string_match(r, &p, origin, MatchUse::Other);
    }
    for (k, m) in cors.allow_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            r.error(
                format!("{path}.allowMethods[{k}]"),
                format!("{m:?} is not a supported HTTP method (expected GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE or *)"),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for (k, h) in list.iter().enumerate() {
            if let Err(m) = check_cors_header_name(h) {
                r.error(format!("{path}.{field}[{k}]"), m);
            }
        }
    }
    if let Some(age) = cors.max_age {
        if let Err(m) = check_duration(age) {
            r.error(format!("{path}.maxAge"), m);
        } else if age.get().subsec_nanos() != 0 {
            r.error(
                format!("{path}.maxAge"),
                format!("maxAge {age} is not a whole number of seconds (expected seconds precision, e.g. 24h or 300s)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, ROUTE};

    #[test]
    fn redirects() {
        let r = |redirect: &str| format!("http:\n- redirect:\n{redirect}");
        check(&[
            (
                &r("    uri: /a\n    prefixRewrite: /b\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].redirect.prefixRewrite: uri and prefixRewrite are mutually exclusive (expected one of them)"],
            ),
            (
                "http:\n- match: [{uri: {exact: /a}}]\n  redirect: {prefixRewrite: /b}\n",
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].redirect.prefixRewrite: prefixRewrite needs every uri match of the rule to be a prefix match, but match[0] is not (expected uri.prefix, or redirect.uri)"],
            ),
            (
                &r("    redirectCode: 302\n"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].redirect: redirect must change at least one of uri, prefixRewrite, authority, scheme, port or derivePort (expected a redirect that points somewhere else)"],
            ),
            (
                &r("    uri: /a\n    redirectCode: 305\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].redirect.redirectCode: unsupported redirect code 305 (expected 301, 302, 303, 307 or 308; Istio drops such routes)"],
            ),
            (
                &r("    scheme: ftp\n"),
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].redirect.scheme: invalid redirect scheme `ftp` (expected \"http\" or \"https\")"],
            ),
            (
                &r("    port: 8443\n    derivePort: FROM_REQUEST_PORT\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].redirect.derivePort: port and derivePort are mutually exclusive (expected one of them)"],
            ),
        ]);
    }

    #[test]
    fn direct_responses() {
        let big = "x".repeat(101 * 1024);
        let huge = "x".repeat(1024 * 1024 + 1);
        let d = |body: &str| format!("http:\n- directResponse:\n{body}");
        check(&[
            (
                &d("    status: 99\n"),
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].directResponse.status: HTTP status 99 is not in range 200-599 (expected a status such as 200, 404 or 503)"],
            ),
            (
                &d("    status: 200\n    body: {string: a, bytes: YQ==}\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].directResponse.body: body.string and body.bytes are mutually exclusive (expected one of them)"],
            ),
            (
                &d("    status: 200\n    body: {bytes: \"not base64!\"}\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].directResponse.body.bytes: body.bytes is not valid base64 (expected base64 of the body, e.g. aGVsbG8=)"],
            ),
            (
                &d(&format!("    status: 200\n    body: {{string: {big}}}\n")),
                &["t.yaml:10: Warning [IST0133] VirtualService default/vs: spec.http[0].directResponse.body: direct response body is 103424 bytes, above 100 KiB; every copy of the route table holds it (expected a smaller body)"],
            ),
            (
                &d(&format!("    status: 200\n    body: {{string: {huge}}}\n")),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].directResponse.body: direct response body is 1048577 bytes, above 1 MiB (expected a smaller body; large direct responses are rejected)"],
            ),
        ]);
    }

    #[test]
    fn rewrites() {
        let w = |rw: &str| format!("http:\n- rewrite:\n{rw}{ROUTE}");
        check(&[
            (
                "http:\n- rewrite: {}\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].rewrite: rewrite must specify at least one of uri, uriRegexRewrite or authority (expected one of them)"],
            ),
            (
                &w("    uri: /a\n    uriRegexRewrite: {match: a, rewrite: b}\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].rewrite.uriRegexRewrite: rewrite may only contain one of uri or uriRegexRewrite (expected one of them)"],
            ),
            (
                &w("    uriRegexRewrite: {match: \"^/a(.*)\"}\n"),
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].rewrite.uriRegexRewrite: uriRegexRewrite requires both rewrite and match fields to be specified (expected match: <RE2 regex>, rewrite: <replacement>)"],
            ),
            (
                &w("    uriRegexRewrite:\n      match: \"(a\"\n      rewrite: b\n"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].rewrite.uriRegexRewrite.match: regex `(a` does not compile: unclosed group (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
        ]);
    }

    #[test]
    fn durations_retries_and_cors() {
        let rule = |extra: &str| format!("http:\n- {extra}\n{ROUTE}");
        check(&[
            (
                &rule("timeout: 500us"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].timeout: duration 500us is below 1ms (expected at least 1ms)"],
            ),
            (
                &rule("retries: {attempts: 2, perTryTimeout: 1500us}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].retries.perTryTimeout: duration 1500us is not a whole number of milliseconds (expected millisecond precision)"],
            ),
            (
                &rule("retries: {attempts: -1}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].retries.attempts: attempts -1 cannot be negative (expected 0 to disable retries, or more)"],
            ),
            (
                &rule("retries: {retryOn: 5xx}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].retries: http retry policy configured when attempts are set to 0 (disabled) (expected attempts of 1 or more, or no other retry fields)"],
            ),
            (
                &rule("retries: {attempts: 1, retryOn: \"5xx,bogus\"}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].retries.retryOn: \"bogus\" is not a valid retryOn policy (expected a comma list of 5xx, gateway-error, reset, reset-before-request, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, envoy-ratelimited, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, or 3-digit status codes)"],
            ),
            (
                &rule("corsPolicy: {maxAge: 1500ms}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].corsPolicy.maxAge: maxAge 1500ms is not a whole number of seconds (expected seconds precision, e.g. 24h or 300s)"],
            ),
            (
                &rule("corsPolicy: {allowOrigins: [{exact: \"\"}], allowMethods: [FETCH]}"),
                &[
                    "t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].corsPolicy.allowOrigins[0]: '' is not a valid match type for CORS allow origins (expected a non-empty exact, prefix or regex)",
                    "t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].corsPolicy.allowMethods[0]: \"FETCH\" is not a supported HTTP method (expected GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE or *)",
                ],
            ),
        ]);
    }

    #[test]
    fn faults_and_mirrors() {
        let rule = |extra: &str| format!("http:\n- {extra}\n{ROUTE}");
        check(&[
            (
                &rule("fault: {}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].fault: HTTP fault injection must have an abort and/or a delay (expected fault.abort or fault.delay)"],
            ),
            (
                &rule("fault: {abort: {httpStatus: 600, percentage: {value: 150}}}"),
                &[
                    "t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].fault.abort.httpStatus: HTTP status 600 is not in range 200-599 (expected e.g. 503)",
                    "t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].fault.abort.percentage.value: percentage 150 is out of range (expected 0 to 100)",
                ],
            ),
            (
                &rule("fault: {abort: {grpcStatus: BOGUS}}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].fault.abort.grpcStatus: gRPC status \"BOGUS\" is not supported (expected a status name such as UNAVAILABLE or NOT_FOUND)"],
            ),
            (
                &rule("fault: {abort: {http2Error: REFUSED_STREAM}}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].fault.abort.http2Error: HTTP/2 abort fault injection is not supported (expected httpStatus or grpcStatus)"],
            ),
            (
                &rule("fault: {abort: {percentage: {value: 10}}}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].fault.abort: abort needs an error type (expected exactly one of httpStatus or grpcStatus)"],
            ),
            (
                &rule("fault: {delay: {exponentialDelay: 1s}}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].fault.delay.exponentialDelay: exponentialDelay is not supported (expected fixedDelay)"],
            ),
            (
                &rule("fault: {delay: {percentage: {value: 10}}}"),
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.http[0].fault.delay.fixedDelay: Required value: delay needs fixedDelay (expected e.g. fixedDelay: 5s)"],
            ),
            (
                &rule("mirror: {host: svc.example.com}\n  mirrorPercentage: {value: 101}"),
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].mirrorPercentage.value: mirrorPercentage: percentage 101 is out of range (expected 0 to 100)"],
            ),
        ]);
    }
}
