//! Failures become answers in one place (as linkerd2-proxy's `ServerRescue` does): a Pingora
//! error from any phase maps to the local reply and response flag Envoy gives for it, and
//! local replies are written to the client here.

use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::{ErrorSource, ErrorType};
use pingora_proxy::Session;

use crate::compile::action::HeaderOps;
use crate::compile::reply::LocalReply;

/// The answer for a request that failed with `e`. `upstream_failure` is the transport failure
/// reason recorded when the connection failed, if any.
pub fn rescue(e: &Error, upstream_failure: Option<&str>) -> LocalReply {
    use ErrorType::*;
    let source = e.esource();
    match (source, e.etype()) {
        (_, HTTPStatus(code)) => LocalReply::new(*code, None, "local_reply", format!("{code}\n")),
        (
            ErrorSource::Upstream,
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
            | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError,
        ) => match upstream_failure {
            Some(reason) => LocalReply::connect_failure(reason),
            None => LocalReply::connect_failure(&e.to_string()),
        },
        (_, ReadTimedout | WriteTimedout) if source != &ErrorSource::Downstream => {
            LocalReply::timeout()
        }
        (ErrorSource::Upstream, _) => LocalReply::upstream_reset(),
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => {
            LocalReply::downstream_disconnect()
        }
        // Envoy `stream_idle_timeout` (`conn_manager_impl.cc` `onIdleTimeout`): 408.
        (ErrorSource::Downstream, ReadTimedout) => {
            LocalReply::new(408, None, "stream_idle_timeout", "stream timeout\n")
        }
        (ErrorSource::Downstream, _) => LocalReply::new(
            400,
            Some(crate::compile::reply::ResponseFlag::DPE),
            "downstream_protocol_error",
            "bad request\n",
        ),
        _ => LocalReply::new(500, None, "internal_error", "internal error\n"),
    }
}

/// Writes `reply`, with a route's response header operations applied. Errors mean the client
/// is gone; nothing else to do.
pub async fn send(
    reply: &LocalReply,
    session: &mut Session,
    ops: Option<&HeaderOps>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(4 + reply.headers.len()))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", reply.body.len().to_string())?;
    resp.insert_header("server", "portcullis")?;
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
    use crate::compile::reply::ResponseFlag;

    fn upstream(t: ErrorType) -> Box<Error> {
        Error::new_up(t)
    }

    #[test]
    fn failures_map_to_envoys_answers() {
        let r = rescue(
            &upstream(ErrorType::ConnectRefused),
            Some("connection refused"),
        );
        assert_eq!((r.status, r.flag), (503, Some(ResponseFlag::UF)));
        assert!(String::from_utf8_lossy(&r.body).contains("connection refused"));
        let r = rescue(&upstream(ErrorType::ReadTimedout), None);
        assert_eq!((r.status, r.flag), (504, Some(ResponseFlag::UT)));
        let r = rescue(&upstream(ErrorType::ConnectionClosed), None);
        assert_eq!((r.status, r.flag), (503, Some(ResponseFlag::UC)));
        let r = rescue(&Error::new_down(ErrorType::ConnectionClosed), None);
        assert_eq!((r.status, r.flag), (0, Some(ResponseFlag::DC)));
        let r = rescue(&Error::new(ErrorType::HTTPStatus(502)), None);
        assert_eq!(r.status, 502);
    }
}
