//! Local replies: answers the gateway gives itself (no route, refused egress, redirects,
//! upstream failures), each with Envoy's response flag and a short plain-text body.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora_proxy::Session;

use super::headers::apply_response_ops;
use crate::compile::action::HeaderOps;

/// Envoy response flags, as they appear in the access log.
pub mod flags {
    /// No route configured.
    pub const NR: &str = "NR";
    /// No cluster (destination not in the registry).
    pub const NC: &str = "NC";
    /// No healthy upstream.
    pub const UH: &str = "UH";
    /// Upstream connection failure.
    pub const UF: &str = "UF";
    /// Upstream overflow (circuit breaker).
    pub const UO: &str = "UO";
    /// Upstream request timeout.
    pub const UT: &str = "UT";
    /// Upstream connection termination.
    pub const UC: &str = "UC";
    /// Upstream reset.
    pub const UR: &str = "UR";
    /// Downstream connection termination.
    pub const DC: &str = "DC";
    /// Injected fault: delay / abort.
    pub const DI: &str = "DI";
    pub const FI: &str = "FI";
    /// Downstream protocol error.
    pub const DPE: &str = "DPE";
}

#[derive(Debug, Clone)]
pub struct LocalReply {
    pub status: u16,
    pub flag: Option<&'static str>,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub details: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl LocalReply {
    pub fn new(
        status: u16,
        flag: Option<&'static str>,
        details: &'static str,
        body: impl Into<String>,
    ) -> Self {
        LocalReply {
            status,
            flag,
            details,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn no_route(host: &str, path: &str) -> Self {
        LocalReply::new(
            404,
            Some(flags::NR),
            "route_not_found",
            format!("no route for {host}{path}\n"),
        )
    }

    pub fn misdirected(host: &str) -> Self {
        LocalReply::new(
            421,
            Some(flags::NR),
            "misdirected_request",
            format!("{host} is not served with the certificate this connection negotiated; retry on a new connection\n"),
        )
    }

    pub fn no_healthy_upstream(reason: impl std::fmt::Display) -> Self {
        LocalReply::new(
            503,
            Some(flags::UH),
            "no_healthy_upstream",
            format!("no healthy upstream: {reason}\n"),
        )
    }

    pub fn overflow(cluster: &str) -> Self {
        LocalReply::new(
            503,
            Some(flags::UO),
            "upstream_overflow",
            format!("upstream connect error or disconnect/reset before headers. reset reason: overflow ({cluster})\n"),
        )
    }

    pub fn connect_failure(reason: &str) -> Self {
        LocalReply::new(
            503,
            Some(flags::UF),
            "upstream_reset_before_response_started{connection_failure}",
            format!("upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: {reason}\n"),
        )
    }

    pub fn timeout() -> Self {
        LocalReply::new(
            504,
            Some(flags::UT),
            "upstream_response_timeout",
            "upstream request timeout\n",
        )
    }

    /// Writes the reply. Errors mean the client is gone; nothing else to do.
    pub async fn send(&self, session: &mut Session) -> Result<()> {
        self.send_with(session, None).await
    }

    /// Writes the reply with a route's response header operations applied.
    pub async fn send_with(&self, session: &mut Session, ops: Option<&HeaderOps>) -> Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(4 + self.headers.len()))?;
        resp.insert_header("content-type", "text/plain; charset=utf-8")?;
        resp.insert_header("content-length", self.body.len().to_string())?;
        resp.insert_header("server", "portcullis")?;
        for (k, v) in &self.headers {
            resp.insert_header(*k, v.as_str())?;
        }
        if let Some(ops) = ops {
            apply_response_ops(&mut resp, ops);
        }
        let head_only = session.req_header().method == http::Method::HEAD || self.body.is_empty();
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session
                .write_response_body(Some(Bytes::from(self.body.clone())), true)
                .await?;
        }
        Ok(())
    }
}
