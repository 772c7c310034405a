//! Edge request hygiene. Every request on an Istio gateway is an external one: Istio sets
//! `use_remote_address` and no `internal_address_config`, and Envoy ≥ 1.33 trusts no range by
//! default, so Envoy's `ConnectionManagerUtility::mutateRequestHeaders` treats the request as an
//! edge request:
//!
//! - the client's Envoy control headers are removed (`cleanInternalHeaders`), so a client can
//!   neither steer retries and timeouts nor forge Envoy's own annotations;
//! - `x-request-id` is always a new UUID (`generate_request_id` on,
//!   `preserve_external_request_id` off: Istio sets neither);
//! - `x-envoy-external-address` is the client's address;
//! - `x-forwarded-for` gets the client's address appended after a bare `,`
//!   (`Utility::appendXff` → `appendToHeader(.., ",")`).

use std::net::IpAddr;

use pingora::http::RequestHeader;

/// The request headers Envoy removes from an edge request (`cleanInternalHeaders`, with
/// `edge_request` true) and always (`x-envoy-internal`, `mutateRequestHeaders`).
pub const INTERNAL_HEADERS: [&str; 18] = [
    "x-envoy-internal",
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
];

/// Removes the client's Envoy control headers, before routing (Envoy cleans them before the
/// route is chosen).
pub fn clean_internal_headers(req: &mut RequestHeader) {
    for name in INTERNAL_HEADERS {
        req.remove_header(name);
    }
}

/// A new random (version 4) UUID for `x-request-id`. From a fast PRNG, not the OS: a request
/// id needs uniqueness, not secrecy, and a getrandom system call per request is measurable.
pub fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .to_string()
}

/// `x-forwarded-for` with the peer's address appended as Envoy appends it: after a bare `,`
/// (`203.0.113.7, 198.51.100.1,127.0.0.1`). `prev` holds the values the client sent (several
/// headers count as one list). `None` when the client address is unknown.
pub fn append_forwarded_for<'a>(
    prev: impl IntoIterator<Item = &'a str>,
    client: Option<IpAddr>,
) -> Option<String> {
    let ip = client?.to_string();
    let mut out = String::new();
    for v in prev.into_iter().filter(|v| !v.is_empty()) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(v);
    }
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(&ip);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_headers_are_removed_and_others_kept() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for h in INTERNAL_HEADERS {
            req.insert_header(h, "1").unwrap();
        }
        req.insert_header("x-envoy-foo", "kept").unwrap();
        clean_internal_headers(&mut req);
        assert_eq!(req.headers.len(), 1, "{:?}", req.headers);
        assert_eq!(req.headers["x-envoy-foo"], "kept");
    }

    #[test]
    fn forwarded_for_is_appended_after_a_bare_comma() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Envoy 1.40: `203.0.113.7, 198.51.100.1` from the client becomes
        // `203.0.113.7, 198.51.100.1,<client>`.
        assert_eq!(
            append_forwarded_for(["203.0.113.7, 198.51.100.1"], Some(ip)).as_deref(),
            Some("203.0.113.7, 198.51.100.1,127.0.0.1")
        );
        assert_eq!(
            append_forwarded_for(["a", "b"], Some(ip)).as_deref(),
            Some("a,b,127.0.0.1")
        );
        assert_eq!(
            append_forwarded_for([], Some(ip)).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(append_forwarded_for(["a"], None), None);
    }

    #[test]
    fn request_ids_are_fresh_uuids() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
    }
}
