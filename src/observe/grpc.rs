//! gRPC on a request, for Istio's metrics: the messages each way (Envoy's `grpc_stats` filter
//! with `emit_filter_state`, which Istio adds to every HTTP connection manager, pilot
//! `pkg/xds/filters/filters.go` `GrpcStats`; frames counted as Envoy's `Grpc::FrameInspector`
//! does, `source/common/grpc/codec.cc`: a 5-byte prefix, flag and big-endian length, per
//! message) and the `grpc-status` of the response trailers.

use bytes::Bytes;
use http::HeaderMap;
use pingora::http::RequestHeader;

use crate::telemetry::istio::is_grpc;

/// Counts length-prefixed gRPC messages in one direction of a stream, whatever the chunking.
#[derive(Debug, Default, Clone)]
pub struct MessageCounter {
    pub messages: u64,
    /// Prefix bytes of the current frame seen so far (0: at a frame boundary).
    prefix: usize,
    length: u32,
    /// Payload bytes of the current frame still to come.
    payload: u64,
}

impl MessageCounter {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.payload > 0 {
                let skip = data
                    .len()
                    .min(usize::try_from(self.payload).unwrap_or(usize::MAX));
                self.payload -= skip as u64;
                data = &data[skip..];
                continue;
            }
            if self.prefix == 0 {
                // A frame starts: Envoy counts the message here.
                self.messages += 1;
                self.length = 0;
            }
            if self.prefix >= 1 {
                self.length = (self.length << 8) | u32::from(data[0]);
            }
            self.prefix += 1;
            data = &data[1..];
            if self.prefix == 5 {
                self.prefix = 0;
                self.payload = u64::from(self.length);
            }
        }
    }
}

/// What a gRPC request's metrics need, carried with the request (nothing for other requests).
#[derive(Debug, Default)]
pub struct GrpcTelemetry(Option<Box<GrpcStream>>);

#[derive(Debug, Default)]
pub struct GrpcStream {
    pub requests: MessageCounter,
    pub responses: MessageCounter,
    /// `grpc-status` of the upstream's trailers.
    pub trailer_status: Option<String>,
}

impl GrpcTelemetry {
    /// Follows the request if it is gRPC (Envoy's `isGrpcRequestHeaders`).
    pub fn of(req: &RequestHeader) -> GrpcTelemetry {
        let ct = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes());
        GrpcTelemetry(is_grpc(ct).then(Box::default))
    }

    pub fn is_grpc(&self) -> bool {
        self.0.is_some()
    }

    pub fn request_body(&mut self, body: Option<&Bytes>) {
        if let (Some(g), Some(b)) = (self.0.as_mut(), body) {
            g.requests.feed(b);
        }
    }

    pub fn response_body(&mut self, body: Option<&Bytes>) {
        if let (Some(g), Some(b)) = (self.0.as_mut(), body) {
            g.responses.feed(b);
        }
    }

    pub fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(g) = self.0.as_mut() {
            g.trailer_status = trailers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
    }

    /// Messages received from and sent to the client.
    pub fn messages(&self) -> (u64, u64) {
        self.0
            .as_ref()
            .map_or((0, 0), |g| (g.requests.messages, g.responses.messages))
    }

    pub fn trailer_status(&self) -> Option<&str> {
        self.0.as_ref().and_then(|g| g.trailer_status.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn messages_are_counted_across_any_chunking() {
        let mut stream = frame(b"hello");
        stream.extend(frame(b""));
        stream.extend(frame(&[7u8; 300]));
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let mut c = MessageCounter::default();
            for part in stream.chunks(chunk) {
                c.feed(part);
            }
            assert_eq!(c.messages, 3, "chunks of {chunk}");
        }
    }

    #[test]
    fn only_grpc_requests_are_followed() {
        let mut req = RequestHeader::build("POST", b"/pkg.Svc/Call", None).unwrap();
        assert!(!GrpcTelemetry::of(&req).is_grpc());
        req.insert_header("content-type", "application/grpc")
            .unwrap();
        let mut g = GrpcTelemetry::of(&req);
        assert!(g.is_grpc());
        g.request_body(Some(&Bytes::from(frame(b"x"))));
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        g.trailers(&t);
        assert_eq!(g.messages(), (1, 0));
        assert_eq!(g.trailer_status(), Some("0"));
    }
}
