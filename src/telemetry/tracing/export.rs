//! Finished spans leave the request path here: [`SpanSink::submit`] never waits (a bounded
//! queue of [`QUEUE`] requests' spans; when it is full the spans are dropped and counted in
//! `portcullis_tracing_spans_dropped_total`), and one background task batches them to the
//! exporter the current mesh settings name, rebuilt when they change (`configure`, called by
//! the reload loop). Batching follows Envoy's OpenTelemetry tracer (`tracer.cc`: a flush every
//! 5 s, or as soon as 5 spans wait), taking whatever else is already queued into the same
//! batch.
//!
//! Exporters: OTLP over gRPC (tonic) or HTTP/protobuf, with `opentelemetry-otlp`; Zipkin's
//! JSON v2 API for a `zipkin` provider (what Envoy's Zipkin tracer posts).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::{zipkin, Identity, Kind, SpanRecord, Tracer};

/// Requests whose spans may wait for the exporter (the OpenTelemetry SDK's default queue).
pub const QUEUE: usize = 2048;
/// Envoy's `tracing.opentelemetry.flush_interval_ms` and `min_flush_spans`.
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
const MIN_FLUSH_SPANS: usize = 5;
/// The most spans in one export call.
const MAX_BATCH: usize = 512;

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "protocol")]
pub enum ExporterConfig {
    /// OTLP/gRPC to `endpoint` (`http://host:port`), with `initialMetadata`.
    OtlpGrpc {
        endpoint: String,
        #[serde(skip)]
        timeout: Duration,
        metadata: Vec<(String, String)>,
    },
    /// OTLP/HTTP (protobuf) POSTed to `url`, with `Host: host` and the provider's headers.
    OtlpHttp {
        url: String,
        host: String,
        #[serde(skip)]
        timeout: Duration,
        headers: Vec<(String, String)>,
    },
    /// Zipkin JSON v2 POSTed to `url`.
    Zipkin {
        url: String,
        host: String,
        #[serde(skip)]
        timeout: Duration,
        headers: Vec<(String, String)>,
    },
}

/// The queue between the requests and the exporter task.
pub struct SpanSink {
    tx: mpsc::Sender<Vec<SpanRecord>>,
    rx: Mutex<Option<mpsc::Receiver<Vec<SpanRecord>>>>,
    tracer: watch::Sender<Option<Arc<Tracer>>>,
    dropped: IntCounter,
}

impl SpanSink {
    /// A sink counting what it drops in `dropped`; nothing is exported before
    /// [`configure`](Self::configure).
    pub fn new(dropped: IntCounter) -> SpanSink {
        let (tx, rx) = mpsc::channel(QUEUE);
        SpanSink {
            tx,
            rx: Mutex::new(Some(rx)),
            tracer: watch::Sender::new(None),
            dropped,
        }
    }

    /// Hands a request's finished spans over without waiting.
    pub fn submit(&self, spans: Vec<SpanRecord>) {
        let n = spans.len() as u64;
        if self.tx.try_send(spans).is_err() {
            self.dropped.inc_by(n);
        }
    }

    /// Points the exporter at `tracer`'s (or nowhere); starts the export task on first use.
    /// Call from within the Tokio runtime.
    pub fn configure(&self, tracer: Option<Arc<Tracer>>) {
        self.tracer.send_if_modified(|current| {
            let changed = current.as_ref().map(|t| (&t.exporter, &t.identity))
                != tracer.as_ref().map(|t| (&t.exporter, &t.identity));
            *current = tracer;
            changed
        });
        if let Some(rx) = self.take_receiver() {
            tokio::spawn(run(rx, self.tracer.subscribe()));
        }
    }

    /// The queue's receiving end, once (the export task takes it; tests and benches may instead).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Vec<SpanRecord>>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

enum Exporter {
    Otlp(opentelemetry_otlp::SpanExporter),
    Zipkin(zipkin::Client),
}

/// Why an exporter could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("exporter header `{0}` is not a valid header")]
    Header(String),
    #[error("Zipkin exporter: {0}")]
    Zipkin(#[from] zipkin::ZipkinError),
}

fn build(tracer: &Tracer) -> Result<Exporter, ExportError> {
    let mut exporter = match &tracer.exporter {
        ExporterConfig::OtlpGrpc {
            endpoint,
            timeout,
            metadata,
        } => {
            let mut headers = http::HeaderMap::new();
            for (k, v) in metadata {
                let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                    http::HeaderValue::from_str(v),
                ) else {
                    return Err(ExportError::Header(k.clone()));
                };
                headers.insert(name, value);
            }
            let map = opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(*timeout)
                .with_metadata(map)
                .build()?
        }
        ExporterConfig::OtlpHttp {
            url,
            host,
            timeout,
            headers,
        } => {
            let mut h: std::collections::HashMap<String, String> =
                headers.iter().cloned().collect();
            h.insert("host".into(), host.clone());
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url.clone())
                .with_timeout(*timeout)
                .with_headers(h)
                .build()?
        }
        ExporterConfig::Zipkin {
            url,
            host,
            timeout,
            headers,
        } => {
            return Ok(Exporter::Zipkin(zipkin::Client::new(
                url,
                host,
                *timeout,
                headers,
                &tracer.identity,
            )?))
        }
    };
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name(tracer.identity.service_name.clone())
            .build(),
    );
    Ok(Exporter::Otlp(exporter))
}

/// The export task: batches spans and sends them to the configured exporter.
async fn run(
    mut rx: mpsc::Receiver<Vec<SpanRecord>>,
    mut config: watch::Receiver<Option<Arc<Tracer>>>,
) {
    let mut exporter: Option<(Exporter, Arc<Tracer>)> = None;
    let mut batch: Vec<SpanRecord> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    config.mark_changed();
    loop {
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
                let tracer = config.borrow_and_update().clone();
                exporter = tracer.and_then(|t| match build(&t) {
                    Ok(e) => {
                        tracing::info!(provider = %t.provider, exporter = ?t.exporter, "tracing: exporting spans");
                        Some((e, t))
                    }
                    Err(e) => {
                        tracing::warn!(provider = %t.provider, "tracing: no exporter: {e}");
                        None
                    }
                });
            }
            spans = rx.recv() => {
                let Some(spans) = spans else { break };
                batch.extend(spans);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                if batch.len() >= MIN_FLUSH_SPANS {
                    flush(&mut batch, exporter.as_ref()).await;
                }
            }
            _ = tick.tick() => flush(&mut batch, exporter.as_ref()).await,
        }
    }
}

async fn flush(batch: &mut Vec<SpanRecord>, exporter: Option<&(Exporter, Arc<Tracer>)>) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let Some((exporter, tracer)) = exporter else {
        return;
    };
    let result = match exporter {
        Exporter::Otlp(e) => {
            let data = spans
                .iter()
                .map(|s| span_data(s, &tracer.identity))
                .collect();
            e.export(data).await.map_err(|e| e.to_string())
        }
        Exporter::Zipkin(z) => z.export(&spans).await.map_err(|e| e.to_string()),
    };
    if let Err(e) = result {
        tracing::debug!(provider = %tracer.provider, "tracing: export of {} spans failed: {e}", spans.len());
    }
}

/// A span as the OpenTelemetry SDK hands it to an OTLP exporter: Envoy's string tags as
/// attributes, then Istio's custom tags; status ERROR when Envoy tags `error`.
fn span_data(s: &SpanRecord, identity: &Identity) -> SpanData {
    let mut attributes: Vec<KeyValue> = s
        .tags
        .iter()
        .map(|(k, v)| KeyValue::new(*k, v.clone()))
        .collect();
    attributes.extend(
        identity
            .tags
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(s.trace_id.to_be_bytes()),
            SpanId::from_bytes(s.span_id.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from_bytes(s.parent.unwrap_or(0).to_be_bytes()),
        parent_span_is_remote: s.kind == Kind::Server && s.parent.is_some(),
        span_kind: match s.kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
        },
        name: Cow::Owned(s.name.clone()),
        start_time: s.start,
        end_time: s.end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if s.error {
            Status::error("")
        } else {
            Status::Unset
        },
        instrumentation_scope: InstrumentationScope::builder("envoy").build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dropped = IntCounter::new("dropped", "dropped").unwrap();
        let sink = SpanSink::new(dropped.clone());
        let span = || SpanRecord {
            trace_id: 1,
            span_id: 2,
            parent: None,
            kind: Kind::Server,
            name: "op".into(),
            start: std::time::SystemTime::now(),
            end: std::time::SystemTime::now(),
            tags: Vec::new(),
            error: false,
        };
        for _ in 0..QUEUE {
            sink.submit(vec![span()]);
        }
        assert_eq!(dropped.get(), 0);
        sink.submit(vec![span(), span()]);
        assert_eq!(dropped.get(), 2);
    }

    #[test]
    fn span_data_keeps_ids_kind_and_istio_tags() {
        let identity = Identity {
            service_name: "gw.ns".into(),
            node_id: String::new(),
            zone: String::new(),
            tags: vec![("istio.mesh_id".into(), "cluster.local".into())],
        };
        let s = SpanRecord {
            trace_id: 0xabc,
            span_id: 0x12,
            parent: Some(0x34),
            kind: Kind::Server,
            name: "op".into(),
            start: std::time::SystemTime::now(),
            end: std::time::SystemTime::now(),
            tags: vec![("http.method", "GET".into())],
            error: true,
        };
        let d = span_data(&s, &identity);
        assert_eq!(
            d.span_context.trace_id().to_string(),
            format!("{:032x}", 0xabc)
        );
        assert_eq!(d.parent_span_id.to_string(), "0000000000000034");
        assert_eq!(d.span_kind, SpanKind::Server);
        assert_eq!(d.attributes.len(), 2);
        assert!(matches!(d.status, Status::Error { .. }));
    }
}
