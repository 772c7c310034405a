//! Zipkin's API v2 (`POST /api/v2/spans`, a JSON array), as Envoy's Zipkin tracer reports a
//! gateway's spans to an Istio `zipkin` provider (`source/extensions/tracers/zipkin/`:
//! 128-bit trace ids, `shared_span_context: false`, `localEndpoint.serviceName` the node's
//! cluster, tags as strings).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{json, Map, Value};

use super::{Identity, Kind, SpanRecord};
use crate::http_client::{send, HttpError};

#[derive(Debug, thiserror::Error)]
pub enum ZipkinError {
    #[error("collector URL `{0}` is not http://HOST:PORT/PATH")]
    Url(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("collector answered {0}")]
    Status(http::StatusCode),
}

/// Posts span batches to one collector.
pub struct Client {
    /// `http://ADDRESS/PATH`: the address resolved from the provider's service.
    url: String,
    timeout: Duration,
    /// The provider's headers, `Host` (the service's name) and the JSON content type.
    headers: HeaderMap,
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
        if !url.starts_with("http://") {
            return Err(ZipkinError::Url(url.into()));
        }
        let mut request_headers: HeaderMap = headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        if let Ok(h) = HeaderValue::from_str(host) {
            request_headers.insert(http::header::HOST, h);
        }
        request_headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(Client {
            url: url.to_string(),
            timeout,
            headers: request_headers,
            service_name: identity.service_name.clone(),
            tags: identity.tags.clone(),
        })
    }

    pub async fn export(&self, spans: &[SpanRecord]) -> Result<(), ZipkinError> {
        let body: Vec<Value> = spans.iter().map(|s| self.encode(s)).collect();
        let body = Bytes::from(Value::Array(body).to_string());
        let resp = send(
            Method::POST,
            &self.url,
            self.headers.clone(),
            body,
            self.timeout,
        )
        .await?;
        if resp.status.is_success() {
            Ok(())
        } else {
            Err(ZipkinError::Status(resp.status))
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
            (
                c.url.as_str(),
                c.headers.get(http::header::HOST).unwrap().to_str().unwrap()
            ),
            ("http://127.0.0.1:9411/api/v2/spans", "zipkin")
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
