//! The instance settings that come from Istio's mesh config (`--mesh`), compiled once per
//! reload into [`MeshSettings`] and carried by the snapshot: the access log (target and
//! compiled format), the gateway topology (trusted proxies, XFCC, PROXY protocol), the
//! outbound policy, drain durations and tracing settings. Command-line flags given explicitly
//! win over the file ([`MeshOverrides`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use pingora::http::RequestHeader;
use serde::Serialize;

use super::access_log::{AccessFormat, AccessLogSettings, LogFormat, LogTarget};
use super::OutboundPolicy;
use crate::config::diag::Diagnostic;
use crate::config::mesh::{
    AccessLogEncoding, DefaultProviders, ExtensionProvider, ForwardClientCert, MeshFile,
    OutboundMode,
};
use crate::telemetry::tracing::Tracer;

/// Flags given on the command line; each wins over the mesh file.
#[derive(Debug, Clone, Default)]
pub struct MeshOverrides {
    pub log_format: Option<LogFormat>,
    pub outbound_policy: Option<OutboundPolicy>,
    pub root_namespace: Option<String>,
}

/// Istio's `DefaultProxyConfig` drain durations.
pub const DEFAULT_DRAIN_DURATION: Duration = Duration::from_secs(45);
pub const DEFAULT_TERMINATION_DRAIN_DURATION: Duration = Duration::from_secs(5);

/// What the mesh config (or its absence) says for this instance.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSettings {
    /// The mesh file read, if any.
    pub file: Option<String>,
    #[serde(skip)]
    pub access_log: AccessLogSettings,
    /// Where the access log goes (`null`: off).
    pub access_log_target: Option<LogTarget>,
    pub topology: Topology,
    /// `outboundTrafficPolicy.mode`, if the file says it (the instance's policy in force is
    /// `instance.outbound_policy`).
    pub outbound_policy: Option<OutboundPolicy>,
    #[serde(serialize_with = "secs")]
    pub drain_duration: Duration,
    #[serde(serialize_with = "secs")]
    pub termination_drain_duration: Duration,
    pub tracing: TracingSettings,
    pub root_namespace: String,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs_f64()))
}

/// `defaultConfig.gatewayTopology`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    pub num_trusted_proxies: u32,
    pub forward_client_cert: ForwardClientCert,
    pub proxy_protocol: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            num_trusted_proxies: 0,
            // Istio's gateways: UNDEFINED means SANITIZE_SET (pilot's gateway listener builder).
            forward_client_cert: ForwardClientCert::SanitizeSet,
            proxy_protocol: false,
        }
    }
}

/// Tracing settings: what the mesh file says, and the tracer compiled from it (with the
/// registry, after the snapshot: `compile::tracing::tracer`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingSettings {
    pub enabled: bool,
    /// Percentage of requests sampled (Istio's default 1.0).
    pub sampling: f64,
    /// The tracer in force; `None`: no spans, trace headers pass through untouched.
    pub tracer: Option<Arc<Tracer>>,
    #[serde(skip)]
    pub providers: Vec<ExtensionProvider>,
    pub provider_names: Vec<String>,
    #[serde(skip)]
    pub default_providers: DefaultProviders,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            file: None,
            access_log: AccessLogSettings::stdout(LogFormat::Text),
            access_log_target: Some(LogTarget::Stdout),
            topology: Topology::default(),
            outbound_policy: None,
            drain_duration: DEFAULT_DRAIN_DURATION,
            termination_drain_duration: DEFAULT_TERMINATION_DRAIN_DURATION,
            tracing: TracingSettings {
                enabled: true,
                sampling: 1.0,
                tracer: None,
                providers: Vec::new(),
                provider_names: Vec::new(),
                default_providers: DefaultProviders::default(),
            },
            root_namespace: "istio-system".into(),
        }
    }
}

impl MeshSettings {
    /// Compiles the mesh file (or, without one, the command line's access log). Errors: an
    /// access-log format Envoy would refuse.
    pub fn compile(
        mesh: Option<&MeshFile>,
        overrides: &MeshOverrides,
    ) -> (MeshSettings, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let Some(file) = mesh else {
            let mut s = MeshSettings {
                access_log: AccessLogSettings::stdout(overrides.log_format.unwrap_or_default()),
                ..MeshSettings::default()
            };
            if let Some(ns) = &overrides.root_namespace {
                s.root_namespace = ns.clone();
            }
            return (s, diags);
        };
        let m = &file.config;
        let mut report = file.reporter(&mut diags);
        let target = LogTarget::from_mesh(m.access_log_file.as_deref().unwrap_or(""));
        let json = match overrides.log_format {
            Some(f) => f == LogFormat::Json,
            None => m.access_log_encoding == Some(AccessLogEncoding::Json),
        };
        let custom = m.access_log_format.as_deref().filter(|f| !f.is_empty());
        let format = match (custom, json) {
            (None, false) => AccessFormat::istio_text(),
            (None, true) => AccessFormat::istio_json(),
            (Some(f), false) => AccessFormat::text(f).unwrap_or_else(|e| {
                report.error_config("accessLogFormat", e.to_string());
                AccessFormat::istio_text()
            }),
            // Istio: "error parsing provided json log format, default log format will be used".
            (Some(f), true) => AccessFormat::json(f).unwrap_or_else(|e| {
                report.note(
                    "accessLogFormat",
                    format!("{e}; Istio's default JSON format is used"),
                );
                AccessFormat::istio_json()
            }),
        };
        let pc = m.default_config.clone().unwrap_or_default();
        let topo = pc.gateway_topology.clone().unwrap_or_default();
        let tracing = pc.tracing.clone().unwrap_or_default();
        let settings =
            MeshSettings {
                file: Some(file.origin.file.display.clone()),
                access_log_target: target.clone(),
                access_log: AccessLogSettings {
                    target: target.map(Arc::new),
                    format: Arc::new(format),
                },
                topology: Topology {
                    num_trusted_proxies: topo.num_trusted_proxies.unwrap_or(0),
                    forward_client_cert: match topo.forward_client_cert_details {
                        None | Some(ForwardClientCert::Undefined) => ForwardClientCert::SanitizeSet,
                        Some(mode) => mode,
                    },
                    proxy_protocol: topo.proxy_protocol.is_some(),
                },
                outbound_policy: m.outbound_traffic_policy.as_ref().and_then(|p| p.mode).map(
                    |mode| match mode {
                        OutboundMode::RegistryOnly => OutboundPolicy::RegistryOnly,
                        OutboundMode::AllowAny => OutboundPolicy::AllowAny,
                    },
                ),
                drain_duration: pc
                    .drain_duration
                    .map_or(DEFAULT_DRAIN_DURATION, |d| d.get()),
                termination_drain_duration: pc
                    .termination_drain_duration
                    .map_or(DEFAULT_TERMINATION_DRAIN_DURATION, |d| d.get()),
                tracing: TracingSettings {
                    enabled: m.enable_tracing.unwrap_or(true),
                    sampling: tracing.sampling.unwrap_or(1.0),
                    tracer: None,
                    provider_names: m
                        .extension_providers
                        .iter()
                        .map(|p| p.name.clone())
                        .collect(),
                    providers: m.extension_providers.clone(),
                    default_providers: m.default_providers.clone().unwrap_or_default(),
                },
                root_namespace: overrides
                    .root_namespace
                    .clone()
                    .or_else(|| m.root_namespace.clone().filter(|n| !n.is_empty()))
                    .unwrap_or_else(|| "istio-system".into()),
            };
        (settings, diags)
    }
}

impl Topology {
    /// The client's address as Envoy decides it with `use_remote_address: true` and
    /// `xff_num_trusted_hops: N` (source/common/http/conn_manager_utility.cc
    /// `mutateRequestHeaders`, `Utility::getLastAddressFromXFF(headers, N - 1)`): the Nth
    /// address from the right of `x-forwarded-for` as received, port 0; else the peer
    /// (the TCP peer, or the PROXY protocol source).
    pub fn client_address(
        &self,
        xff: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        if self.num_trusted_proxies > 0 {
            if let Some(ip) =
                xff.and_then(|x| nth_from_right(x, self.num_trusted_proxies as usize - 1))
            {
                return Some(SocketAddr::new(ip, 0));
            }
        }
        peer
    }
}

/// Envoy `getLastAddressFromXFF`: skip `skip` entries from the right and parse the next one;
/// `None` if there are not enough entries or it is not an IP address.
fn nth_from_right(xff: &str, skip: usize) -> Option<IpAddr> {
    let entry = xff.rsplit(',').nth(skip)?;
    entry.trim().parse().ok()
}

impl Topology {
    /// `forwardClientCertDetails` on the request to the upstream, as Envoy's
    /// `mutateXfccRequestHeader` does (conn_manager_utility.cc). `details`: this connection's
    /// client certificate as XFCC (`Hash=..;Subject=..;URI=..;DNS=..`), if one was presented.
    pub fn apply_xfcc(
        &self,
        upstream: &mut RequestHeader,
        details: Option<&str>,
    ) -> pingora::Result<()> {
        use ForwardClientCert as F;
        const XFCC: &str = "x-forwarded-client-cert";
        match (self.forward_client_cert, details) {
            (F::AlwaysForwardOnly, _) => {}
            (F::Sanitize, _) | (_, None) => {
                upstream.remove_header(XFCC);
            }
            (F::ForwardOnly, Some(_)) => {}
            (F::AppendForward, Some(d)) => {
                let value = match upstream.headers.get(XFCC).and_then(|v| v.to_str().ok()) {
                    Some(prev) if !prev.is_empty() => format!("{prev},{d}"),
                    _ => d.to_string(),
                };
                upstream.insert_header(XFCC, value)?;
            }
            (F::SanitizeSet | F::Undefined, Some(d)) => {
                upstream.insert_header(XFCC, d)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::mesh::parse_mesh;
    use crate::config::source::SourceFile;

    fn topo(n: u32) -> Topology {
        Topology {
            num_trusted_proxies: n,
            ..Topology::default()
        }
    }

    fn peer() -> Option<SocketAddr> {
        Some("10.0.0.9:4242".parse().unwrap())
    }

    #[test]
    fn the_client_is_the_nth_xff_address_from_the_right() {
        let xff = Some("198.51.100.1, 203.0.113.7,10.1.1.1");
        assert_eq!(
            topo(1).client_address(xff, peer()),
            Some("10.1.1.1:0".parse().unwrap())
        );
        assert_eq!(
            topo(2).client_address(xff, peer()),
            Some("203.0.113.7:0".parse().unwrap())
        );
        assert_eq!(
            topo(3).client_address(xff, peer()),
            Some("198.51.100.1:0".parse().unwrap())
        );
    }

    #[test]
    fn too_few_or_broken_xff_entries_leave_the_peer() {
        assert_eq!(
            topo(3).client_address(Some("1.2.3.4, 5.6.7.8"), peer()),
            peer()
        );
        assert_eq!(
            topo(1).client_address(Some("1.2.3.4, unknown"), peer()),
            peer()
        );
        assert_eq!(topo(1).client_address(None, peer()), peer());
        // Without trusted proxies the header is never believed.
        assert_eq!(topo(0).client_address(Some("1.2.3.4"), peer()), peer());
    }

    fn xfcc(
        mode: ForwardClientCert,
        incoming: Option<&str>,
        details: Option<&str>,
    ) -> Option<String> {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(v) = incoming {
            req.insert_header("x-forwarded-client-cert", v).unwrap();
        }
        let t = Topology {
            forward_client_cert: mode,
            ..Topology::default()
        };
        t.apply_xfcc(&mut req, details).unwrap();
        req.headers
            .get("x-forwarded-client-cert")
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn xfcc_modes_follow_envoy() {
        use ForwardClientCert as F;
        let (inc, mine) = (Some("By=a"), Some("Hash=h"));
        assert_eq!(xfcc(F::SanitizeSet, inc, mine).as_deref(), Some("Hash=h"));
        assert_eq!(
            xfcc(F::AppendForward, inc, mine).as_deref(),
            Some("By=a,Hash=h")
        );
        assert_eq!(xfcc(F::ForwardOnly, inc, mine).as_deref(), Some("By=a"));
        assert_eq!(xfcc(F::Sanitize, inc, mine), None);
        // Not mutual TLS: removed, except ALWAYS_FORWARD_ONLY.
        assert_eq!(xfcc(F::ForwardOnly, inc, None), None);
        assert_eq!(
            xfcc(F::AlwaysForwardOnly, inc, None).as_deref(),
            Some("By=a")
        );
    }

    fn compile(text: &str) -> (MeshSettings, Vec<Diagnostic>) {
        let (mesh, d) = parse_mesh(SourceFile {
            display: "mesh.yaml".into(),
            path: "mesh.yaml".into(),
            text: text.into(),
        });
        assert!(!d.has_errors(), "{d}");
        MeshSettings::compile(mesh.as_ref(), &MeshOverrides::default())
    }

    #[test]
    fn istio_defaults_apply_when_the_file_is_silent() {
        let (s, d) = compile("{}\n");
        assert!(d.is_empty());
        assert!(
            s.access_log.target.is_none(),
            "Istio's accessLogFile default is off"
        );
        assert_eq!(s.drain_duration, DEFAULT_DRAIN_DURATION);
        assert_eq!(
            s.topology.forward_client_cert,
            ForwardClientCert::SanitizeSet
        );
        assert_eq!(s.outbound_policy, None);
        assert_eq!(s.root_namespace, "istio-system");
    }

    #[test]
    fn a_bad_text_format_is_an_error_and_a_bad_json_one_a_warning() {
        let (_, d) = compile("accessLogFile: /dev/stdout\naccessLogFormat: '%NOPE%'\n");
        assert!(
            d[0].is_error()
                && d[0]
                    .to_string()
                    .starts_with("mesh.yaml:2: Error accessLogFormat"),
            "{:?}",
            d
        );
        let (s, d) = compile(
            "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\naccessLogFormat: 'nope'\n",
        );
        assert!(!d[0].is_error());
        assert_eq!(*s.access_log.format, AccessFormat::istio_json());
    }
}
