//! A real span receiver for the tracing tests: OTLP over gRPC (the collector's `TraceService`,
//! served by tonic) or over HTTP/protobuf (`POST /v1/traces`, decoded with prost), both with
//! the `opentelemetry-proto` definitions; and Zipkin's API v2 JSON (`POST /api/v2/spans`, as
//! the OpenTelemetry Collector's zipkin receiver takes it) on the HTTP one.
//!
//! Like [`super::backend`], each receiver runs on its own thread with its own runtime and stops
//! when dropped. Every span received is kept, flattened with its resource's `service.name` and
//! the headers (gRPC metadata) of the export call that carried it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::eventually;

/// One span as the receiver got it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `grpc`, `http` or `zipkin`.
    pub via: &'static str,
    /// The resource's `service.name` (Zipkin: `localEndpoint.serviceName`).
    pub service_name: String,
    /// Lower-case hex, as on the wire of the trace headers.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `SERVER`, `CLIENT`, ...
    pub kind: String,
    /// String values of the attributes (Zipkin: the tags).
    pub attributes: BTreeMap<String, String>,
    /// OTLP status ERROR (Zipkin: an `error` tag).
    pub error: bool,
    /// The export call's request headers (gRPC: metadata), lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The export call's path.
    pub path: String,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

type Store = Arc<Mutex<Vec<ReceivedSpan>>>;

/// A running receiver.
pub struct SpanReceiver {
    addr: SocketAddr,
    spans: Store,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SpanReceiver {
    /// An OTLP/gRPC receiver.
    pub async fn grpc() -> SpanReceiver {
        Self::start(true).await
    }

    /// An OTLP/HTTP (protobuf) and Zipkin v2 (JSON) receiver.
    pub async fn http() -> SpanReceiver {
        Self::start(false).await
    }

    async fn start(grpc: bool) -> SpanReceiver {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("receiver address");
        let spans: Store = Arc::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let store = spans.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                if grpc {
                    serve_grpc(listener, store, stopped).await;
                } else {
                    serve_http(listener, store, stopped).await;
                }
            });
        });
        SpanReceiver {
            addr,
            spans,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of `trace_id` (hex), once there are at least `n`.
    pub async fn wait_trace(
        &self,
        trace_id: &str,
        n: usize,
        within: Duration,
    ) -> Vec<ReceivedSpan> {
        let of_trace = || {
            self.spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect::<Vec<_>>()
        };
        eventually(
            within,
            &format!("{n} spans of trace {trace_id} received"),
            async || of_trace().len() >= n,
        )
        .await;
        of_trace()
    }

    /// The first span `pick` accepts, once one arrived.
    pub async fn wait_span(
        &self,
        within: Duration,
        what: &str,
        pick: impl Fn(&ReceivedSpan) -> bool,
    ) -> ReceivedSpan {
        eventually(within, what, async || self.spans().iter().any(&pick)).await;
        self.spans().into_iter().find(|s| pick(s)).unwrap()
    }
}

impl Drop for SpanReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string_attrs(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

const KINDS: [&str; 6] = [
    "UNSPECIFIED",
    "INTERNAL",
    "SERVER",
    "CLIENT",
    "PRODUCER",
    "CONSUMER",
];

fn flatten(
    req: ExportTraceServiceRequest,
    via: &'static str,
    headers: BTreeMap<String, String>,
    path: &str,
) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .map(|r| string_attrs(&r.attributes))
            .unwrap_or_default();
        let service_name = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(ReceivedSpan {
                    via,
                    service_name: service_name.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind: KINDS
                        .get(s.kind as usize)
                        .copied()
                        .unwrap_or("?")
                        .to_string(),
                    attributes: string_attrs(&s.attributes),
                    // opentelemetry.proto.trace.v1.Status.StatusCode: 2 = ERROR.
                    error: s.status.is_some_and(|st| st.code == 2),
                    headers: headers.clone(),
                    path: path.to_string(),
                });
            }
        }
    }
    out
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let spans = flatten(
            request.into_inner(),
            "grpc",
            headers,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        );
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn serve_grpc(listener: TcpListener, store: Store, stopped: oneshot::Receiver<()>) {
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Grpc(store)))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async {
                let _ = stopped.await;
            },
        )
        .await
        .expect("OTLP gRPC receiver");
}

async fn serve_http(listener: TcpListener, store: Store, mut stopped: oneshot::Receiver<()>) {
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let store = store.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle_http(req, store.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle_http(
    req: Request<hyper::body::Incoming>,
    store: Store,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let json = headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    let spans = if json {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => zipkin(&v, headers, &path),
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
        }
    } else {
        match ExportTraceServiceRequest::decode(body) {
            Ok(r) => flatten(r, "http", headers, &path),
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
        }
    };
    store.lock().unwrap().extend(spans);
    let mut resp = Response::new(Full::new(Bytes::from(
        ExportTraceServiceResponse::default().encode_to_vec(),
    )));
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(resp)
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// Zipkin v2 JSON spans (`[{traceId, id, parentId, name, kind, localEndpoint, tags}]`).
fn zipkin(v: &Value, headers: BTreeMap<String, String>, path: &str) -> Vec<ReceivedSpan> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    v.as_array()
        .into_iter()
        .flatten()
        .map(|span| {
            let attributes: BTreeMap<String, String> = span
                .get("tags")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            ReceivedSpan {
                via: "zipkin",
                service_name: span
                    .get("localEndpoint")
                    .map(|e| s(e, "serviceName"))
                    .unwrap_or_default(),
                trace_id: s(span, "traceId"),
                span_id: s(span, "id"),
                parent_span_id: s(span, "parentId"),
                name: s(span, "name"),
                kind: s(span, "kind"),
                error: attributes.contains_key("error"),
                attributes,
                headers: headers.clone(),
                path: path.to_string(),
            }
        })
        .collect()
}
