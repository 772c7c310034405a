//! Failures become answers in one place (as linkerd2-proxy's `ServerRescue` does): a Pingora
//! error from any phase maps to the local reply and response flag Envoy gives for it, and
//! local replies are written to the client here.

use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::{ErrorSource, ErrorType};
use pingora_proxy::Session;

use crate::compile::action::retry::Reset;
use crate::compile::action::HeaderOps;
use crate::compile::reply::{LocalReply, ResponseFlag};

/// Whether `e` is a failure to connect (or to complete the TLS handshake) to the upstream.
fn is_connect_failure(t: &ErrorType) -> bool {
    use ErrorType::*;
    matches!(
        t,
        ConnectTimedout
            | ConnectRefused
            | ConnectNoRoute
            | ConnectError
            | ConnectProxyFailure
            | TLSHandshakeFailure
            | TLSHandshakeTimedout
            | InvalidCert
            | HandshakeError
    )
}

fn is_tls_failure(t: &ErrorType) -> bool {
    use ErrorType::*;
    matches!(
        t,
        TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError
    )
}

/// The answer for a request that failed with `e`. `upstream_failure` is the transport failure
/// reason recorded when the connection failed, if any; `retried`: an earlier attempt failed
/// too (Envoy then says "retried and the latest reset reason").
pub fn rescue(e: &Error, upstream_failure: Option<&str>, retried: bool) -> LocalReply {
    use ErrorType::*;
    let source = e.esource();
    match (source, e.etype()) {
        (_, HTTPStatus(code)) => LocalReply::new(*code, None, "local_reply", ""),
        (ErrorSource::Upstream, ConnectTimedout) => LocalReply::connect_timeout(retried),
        (ErrorSource::Upstream, t) if is_connect_failure(t) => {
            let tls = is_tls_failure(t).then(|| upstream_failure.unwrap_or_default());
            LocalReply::connect_failure(tls, retried)
        }
        (_, ReadTimedout | WriteTimedout) if source != &ErrorSource::Downstream => {
            LocalReply::timeout()
        }
        (ErrorSource::Upstream, H2Error) => LocalReply::remote_reset(false, retried),
        (ErrorSource::Upstream, _) => LocalReply::upstream_reset(retried),
        // An HTTP/2 client resetting its stream went away too (Envoy: `DC`).
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed | H2Error) => {
            LocalReply::downstream_disconnect()
        }
        // Envoy `stream_idle_timeout` (`conn_manager_impl.cc` `onIdleTimeout`): 408.
        (ErrorSource::Downstream, ReadTimedout) => {
            LocalReply::new(408, None, "stream_idle_timeout", "stream timeout\n")
        }
        (ErrorSource::Downstream, _) => LocalReply::new(
            400,
            Some(ResponseFlag::DPE),
            "downstream_protocol_error",
            "Bad Request",
        ),
        _ => LocalReply::new(500, None, "internal_error", "Internal Server Error"),
    }
}

/// How an attempt that got no response failed, in Envoy's reset reasons, and whether request
/// bytes had been sent (for `reset-before-request`). A timeout before the route's deadline is
/// the per-try timeout, which Envoy treats as a local reset. `None`: not the upstream's doing
/// (the client went away, the route timeout passed, an internal error).
pub fn reset_of(e: &Error, deadline_passed: bool) -> Option<(Reset, bool)> {
    use ErrorType::*;
    if e.esource() != &ErrorSource::Upstream {
        return None;
    }
    Some(match e.etype() {
        t if is_connect_failure(t) => (Reset::ConnectFailure, false),
        ReadTimedout | WriteTimedout if deadline_passed => return None,
        ReadTimedout | WriteTimedout => (Reset::Other, true),
        // Pingora marks an HTTP/2 REFUSED_STREAM, or a GOAWAY that never processed the stream,
        // as safe to retry (`handle_read_header_error`).
        H2Error if e.retry() => (Reset::RefusedStream, true),
        // The request head could not be written: the upstream never took the request.
        WriteError => (Reset::Other, false),
        _ => (Reset::Other, true),
    })
}

/// Writes `reply`, with a route's response header operations applied. Errors mean the client
/// is gone; nothing else to do.
/// Envoy's local replies: `content-type: text/plain` when there is a body, the gateway's
/// `server` name (none when it passes the upstream's through).
pub async fn send(
    reply: &LocalReply,
    session: &mut Session,
    ops: Option<&HeaderOps>,
    server: Option<&HeaderValue>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(4 + reply.headers.len()))?;
    if !reply.body.is_empty() {
        resp.insert_header("content-type", "text/plain")?;
    }
    resp.insert_header("content-length", reply.body.len().to_string())?;
    if let Some(name) = server {
        resp.insert_header("server", name)?;
    }
    for (k, v) in &reply.headers {
        resp.insert_header(k.clone(), v.clone())?;
    }
    if let Some(ops) = ops {
        ops.apply_response(&mut resp);
    }
    let head_only = session.req_header().method == http::Method::HEAD || reply.body.is_empty();
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(reply.body.clone()), true)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(t: ErrorType) -> Box<Error> {
        Error::new_up(t)
    }

    fn body(r: &LocalReply) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    #[test]
    fn failures_map_to_envoys_answers() {
        // Envoy 1.40's bodies (router.cc `onUpstreamReset`), observed with the Istio-shaped
        // config in tests/it/ingress/envoy.rs: a refused connection has no transport reason.
        let r = rescue(
            &upstream(ErrorType::ConnectRefused),
            Some("ConnectRefused"),
            true,
        );
        assert_eq!((r.status, r.flag), (503, Some(ResponseFlag::UF)));
        assert_eq!(body(&r), "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure");
        let r = rescue(
            &upstream(ErrorType::TLSHandshakeFailure),
            Some("CERTIFICATE_VERIFY_FAILED"),
            false,
        );
        assert_eq!(body(&r), "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: CERTIFICATE_VERIFY_FAILED");
        let r = rescue(&upstream(ErrorType::ReadTimedout), None, false);
        assert_eq!((r.status, r.flag), (504, Some(ResponseFlag::UT)));
        assert_eq!(body(&r), "upstream request timeout");
        let r = rescue(&upstream(ErrorType::ConnectionClosed), None, false);
        assert_eq!((r.status, r.flag), (503, Some(ResponseFlag::UC)));
        assert_eq!(body(&r), "upstream connect error or disconnect/reset before headers. reset reason: connection termination");
        let r = rescue(&Error::new_down(ErrorType::ConnectionClosed), None, false);
        assert_eq!((r.status, r.flag), (0, Some(ResponseFlag::DC)));
        let r = rescue(&Error::new_down(ErrorType::H2Error), None, false);
        assert_eq!((r.status, r.flag), (0, Some(ResponseFlag::DC)));
        let r = rescue(&Error::new(ErrorType::HTTPStatus(502)), None, false);
        assert_eq!(r.status, 502);
    }

    #[test]
    fn resets_are_classified_as_envoy_does() {
        assert_eq!(
            reset_of(&upstream(ErrorType::ConnectRefused), false),
            Some((Reset::ConnectFailure, false))
        );
        assert_eq!(
            reset_of(&upstream(ErrorType::ReadTimedout), false),
            Some((Reset::Other, true)),
            "a per-try timeout is a local reset"
        );
        assert_eq!(
            reset_of(&upstream(ErrorType::ReadTimedout), true),
            None,
            "the route timeout is never retried"
        );
        let mut refused = upstream(ErrorType::H2Error);
        refused.set_retry(true);
        assert_eq!(
            reset_of(&refused, false),
            Some((Reset::RefusedStream, true))
        );
        assert_eq!(
            reset_of(&Error::new_down(ErrorType::ConnectionClosed), false),
            None,
            "the client went away"
        );
    }
}
