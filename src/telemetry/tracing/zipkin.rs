//! Zipkin's API v2 (`POST /api/v2/spans`, a JSON array), as Envoy's Zipkin tracer reports a
//! gateway's spans to an Istio `zipkin` provider (`source/extensions/tracers/zipkin/`:
//! 128-bit trace ids, `shared_span_context: false`, `localEndpoint.serviceName` the node's
//! cluster, tags as strings).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Map, Value};

use super::{Identity, Kind, SpanRecord};

#[derive(Debug, thiserror::Error)]
pub enum ZipkinError {
    #[error("collector URL `{0}` is not http://HOST:PORT/PATH")]
    Url(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("collector answered {0}")]
    Status(http::StatusCode),
}

/// Posts span batches to one collector.
pub struct Client {
    /// `host:port` to connect to.
    address: String,
    path: String,
    host: String,
    timeout: Duration,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    service_name: String,
    tags: Vec<(String, String)>,
}

impl Client {
    pub fn new(
        url: &str,
        host: &str,
        timeout: Duration,
        headers: &[(String, String)],
        identity: &Identity,
    ) -> Result<Client, ZipkinError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ZipkinError::Url(url.into()))?;
        let (address, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(Client {
            address: address.to_string(),
            path: path.to_string(),
            host: host.to_string(),
            timeout,
            headers: headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).ok()?,
                        http::HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            service_name: identity.service_name.clone(),
            tags: identity.tags.clone(),
        })
    }

    pub async fn export(&self, spans: &[SpanRecord]) -> Result<(), ZipkinError> {
        let body: Vec<Value> = spans.iter().map(|s| self.encode(s)).collect();
        let body = Bytes::from(Value::Array(body).to_string());
        match tokio::time::timeout(self.timeout, self.post(body)).await {
            Ok(r) => r,
            Err(_) => Err(ZipkinError::Timeout(self.timeout)),
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), ZipkinError> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| ZipkinError::Connect(self.address.clone(), e))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = http::Request::post(self.path.as_str())
            .header(http::header::HOST, self.host.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let resp = send.send_request(req).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ZipkinError::Status(resp.status()))
        }
    }

    fn encode(&self, s: &SpanRecord) -> Value {
        let micros = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        };
        let start = micros(s.start);
        let mut tags = Map::new();
        // Envoy's Zipkin span keeps no tag with an empty value (`zone` without a zone).
        for (k, v) in s.tags.iter().filter(|(_, v)| !v.is_empty()) {
            tags.insert((*k).to_string(), Value::String(v.clone()));
        }
        for (k, v) in &self.tags {
            tags.insert(k.clone(), Value::String(v.clone()));
        }
        let mut span = json!({
            "traceId": format!("{:032x}", s.trace_id),
            "id": format!("{:016x}", s.span_id),
            "name": s.name,
            "kind": match s.kind { Kind::Server => "SERVER", Kind::Client => "CLIENT" },
            "timestamp": start,
            "duration": micros(s.end).saturating_sub(start).max(1),
            "localEndpoint": { "serviceName": self.service_name },
            "tags": tags,
        });
        if let (Some(p), Some(obj)) = (s.parent, span.as_object_mut()) {
            obj.insert("parentId".into(), Value::String(format!("{p:016x}")));
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_encode_as_zipkin_v2_json() {
        let identity = Identity {
            service_name: "istio-ingressgateway.istio-system".into(),
            node_id: String::new(),
            zone: String::new(),
            tags: vec![("istio.namespace".into(), "istio-system".into())],
        };
        let c = Client::new(
            "http://127.0.0.1:9411/api/v2/spans",
            "zipkin",
            Duration::from_secs(1),
            &[],
            &identity,
        )
        .unwrap();
        assert_eq!(
            (c.address.as_str(), c.path.as_str()),
            ("127.0.0.1:9411", "/api/v2/spans")
        );
        let t = SystemTime::now();
        let v = c.encode(&SpanRecord {
            trace_id: 0xab,
            span_id: 0xcd,
            parent: Some(0xef),
            kind: Kind::Server,
            name: "op".into(),
            start: t,
            end: t + Duration::from_millis(3),
            tags: vec![("http.method", "GET".into())],
            error: false,
        });
        assert_eq!(v["traceId"], "000000000000000000000000000000ab");
        assert_eq!(v["parentId"], "00000000000000ef");
        assert_eq!(v["kind"], "SERVER");
        assert_eq!(v["duration"], 3000);
        assert_eq!(v["tags"]["istio.namespace"], "istio-system");
        assert_eq!(
            v["localEndpoint"]["serviceName"],
            "istio-ingressgateway.istio-system"
        );
    }
}
