//! Istio's `MeshConfig`: the `mesh` document of the `istio` ConfigMap, as mounted (plain YAML,
//! `meshconfig.MeshConfig` in istio/api `mesh/v1alpha1/config.proto`). `load` reads the file
//! (file and line of every problem, a warning naming each field Portcullis does not honour),
//! `validate` applies Istio's own rules (`pkg/config/validation/agent` `ValidateMeshConfig`)
//! for the fields modelled here. Defaults are Istio's (`pkg/config/mesh/mesh.go`
//! `DefaultMeshConfig`, `DefaultProxyConfig`) unless a field's doc says otherwise.
//! What the settings *do* is decided in `compile::mesh`.

pub mod load;
pub mod validate;

use serde::{Deserialize, Serialize};

use super::types::Duration;

pub use load::{load_mesh, parse_mesh, MeshFile};

/// The fields of `MeshConfig` Portcullis reads. Everything else is warned about by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MeshConfig {
    /// `""` (Istio's default): no access log; `/dev/stdout`; or a file path.
    pub access_log_file: Option<String>,
    /// `TEXT` (default) or `JSON`.
    pub access_log_encoding: Option<AccessLogEncoding>,
    /// Envoy format string (TEXT) or a JSON object of format strings (JSON); empty: Istio's.
    pub access_log_format: Option<String>,
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Istio's default: true.
    pub enable_tracing: Option<bool>,
    pub default_config: Option<ProxyConfig>,
    pub extension_providers: Vec<ExtensionProvider>,
    pub default_providers: Option<DefaultProviders>,
    /// Istio's default: `istio-system`.
    pub root_namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum AccessLogEncoding {
    #[serde(rename = "TEXT")]
    Text,
    #[serde(rename = "JSON")]
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OutboundTrafficPolicy {
    pub mode: Option<OutboundMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum OutboundMode {
    #[serde(rename = "REGISTRY_ONLY")]
    RegistryOnly,
    #[serde(rename = "ALLOW_ANY")]
    AllowAny,
}

/// `defaultConfig` (`meshconfig.ProxyConfig`): the parts a gateway proxy honours.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Istio's default: 45s.
    pub drain_duration: Option<Duration>,
    /// Istio's default: 5s.
    pub termination_drain_duration: Option<Duration>,
    pub gateway_topology: Option<GatewayTopology>,
    pub tracing: Option<Tracing>,
}

/// `defaultConfig.gatewayTopology` (`meshconfig.Topology`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayTopology {
    /// Envoy `xff_num_trusted_hops`.
    pub num_trusted_proxies: Option<u32>,
    /// Envoy `forward_client_cert_details`; Istio's gateway default is SANITIZE_SET.
    pub forward_client_cert_details: Option<ForwardClientCert>,
    /// Present (even `{}`): every listener requires a PROXY protocol header.
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// `meshconfig.Topology.ProxyProtocolConfiguration`: no fields; its presence turns it on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ProxyProtocol {}

/// Envoy's XFCC modes (`meshconfig.ForwardClientCertDetails`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ForwardClientCert {
    /// Istio maps UNDEFINED to its default, SANITIZE_SET.
    Undefined,
    Sanitize,
    ForwardOnly,
    AppendForward,
    SanitizeSet,
    AlwaysForwardOnly,
}

/// `defaultConfig.tracing` (`meshconfig.Tracing`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Tracing {
    /// Percentage of requests sampled, 0.0–100.0 (Istio's default: 1.0).
    pub sampling: Option<f64>,
    pub max_path_tag_length: Option<u32>,
    pub custom_tags: Option<serde_yaml::Value>,
    pub zipkin: Option<TracingAddress>,
    pub datadog: Option<TracingAddress>,
    pub lightstep: Option<TracingAddress>,
    pub stackdriver: Option<serde_yaml::Value>,
    pub open_census_agent: Option<TracingAddress>,
    pub tls_settings: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TracingAddress {
    pub address: String,
    pub access_token: Option<String>,
}

/// One `extensionProviders` entry: a name and exactly one provider kind.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExtensionProvider {
    pub name: String,
    pub opentelemetry: Option<ServiceProvider>,
    pub zipkin: Option<ServiceProvider>,
    pub datadog: Option<ServiceProvider>,
    pub lightstep: Option<ServiceProvider>,
    pub skywalking: Option<ServiceProvider>,
    pub opencensus: Option<ServiceProvider>,
    pub envoy_ext_authz_http: Option<ExtAuthzHttp>,
    pub envoy_ext_authz_grpc: Option<ExtAuthzGrpc>,
    pub envoy_otel_als: Option<ServiceProvider>,
    pub envoy_http_als: Option<ServiceProvider>,
    pub envoy_tcp_als: Option<ServiceProvider>,
    pub envoy_file_access_log: Option<FileAccessLogProvider>,
    pub prometheus: Option<serde_yaml::Value>,
    pub stackdriver: Option<serde_yaml::Value>,
}

/// The kinds an `ExtensionProvider` can be, in the order Istio's `validateExtensionProvider`
/// lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    EnvoyExtAuthzHttp,
    EnvoyExtAuthzGrpc,
    Zipkin,
    Lightstep,
    Datadog,
    Opencensus,
    Skywalking,
    Prometheus,
    Stackdriver,
    EnvoyFileAccessLog,
    EnvoyOtelAls,
    Opentelemetry,
    EnvoyHttpAls,
    EnvoyTcpAls,
}

impl ExtensionProvider {
    /// The provider kinds set on this entry (Istio's oneof: exactly one is valid).
    pub fn kinds(&self) -> Vec<ProviderKind> {
        use ProviderKind as K;
        let set = [
            (self.envoy_ext_authz_http.is_some(), K::EnvoyExtAuthzHttp),
            (self.envoy_ext_authz_grpc.is_some(), K::EnvoyExtAuthzGrpc),
            (self.zipkin.is_some(), K::Zipkin),
            (self.lightstep.is_some(), K::Lightstep),
            (self.datadog.is_some(), K::Datadog),
            (self.opencensus.is_some(), K::Opencensus),
            (self.skywalking.is_some(), K::Skywalking),
            (self.prometheus.is_some(), K::Prometheus),
            (self.stackdriver.is_some(), K::Stackdriver),
            (self.envoy_file_access_log.is_some(), K::EnvoyFileAccessLog),
            (self.envoy_otel_als.is_some(), K::EnvoyOtelAls),
            (self.opentelemetry.is_some(), K::Opentelemetry),
            (self.envoy_http_als.is_some(), K::EnvoyHttpAls),
            (self.envoy_tcp_als.is_some(), K::EnvoyTcpAls),
        ];
        set.into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, k)| k)
            .collect()
    }
}

/// A provider reached at `service:port` (tracing backends, access-log services).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceProvider {
    pub service: String,
    pub port: u32,
    pub max_tag_length: Option<u32>,
    /// Lightstep's token.
    pub access_token: Option<String>,
    /// OpenTelemetry: at most one of `grpc` and `http`.
    pub grpc: Option<serde_yaml::Value>,
    pub http: Option<serde_yaml::Value>,
    pub resource_detectors: Option<serde_yaml::Value>,
    pub dynatrace_sampler: Option<serde_yaml::Value>,
    pub sampling: Option<serde_yaml::Value>,
    pub log_name: Option<String>,
    pub log_format: Option<serde_yaml::Value>,
    pub path: Option<String>,
    pub trace_id128bit: Option<bool>,
    /// Zipkin: `USE_B3` (default) or `USE_B3_WITH_W3C_PROPAGATION`.
    pub trace_context_option: Option<String>,
    pub enable_64bit_trace_id: Option<bool>,
    pub timeout: Option<Duration>,
    pub headers: Option<serde_yaml::Value>,
}

/// `envoyExtAuthzHttp`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExtAuthzHttp {
    pub service: String,
    pub port: u32,
    pub timeout: Option<Duration>,
    pub path_prefix: Option<String>,
    pub fail_open: Option<bool>,
    pub status_on_error: Option<String>,
    pub include_request_headers_in_check: Vec<String>,
    pub include_additional_headers_in_check: std::collections::BTreeMap<String, String>,
    pub headers_to_upstream_on_allow: Vec<String>,
    pub headers_to_downstream_on_deny: Vec<String>,
    pub headers_to_downstream_on_allow: Vec<String>,
    pub include_request_body_in_check: Option<serde_yaml::Value>,
    pub clear_route_cache: Option<bool>,
}

/// `envoyExtAuthzGrpc`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExtAuthzGrpc {
    pub service: String,
    pub port: u32,
    pub timeout: Option<Duration>,
    pub fail_open: Option<bool>,
    pub status_on_error: Option<String>,
    pub include_request_body_in_check: Option<serde_yaml::Value>,
    pub clear_route_cache: Option<bool>,
}

/// `envoyFileAccessLog`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FileAccessLogProvider {
    pub path: String,
    pub log_format: Option<serde_yaml::Value>,
}

/// `defaultProviders`: provider names per telemetry kind.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DefaultProviders {
    pub tracing: Vec<String>,
    pub metrics: Vec<String>,
    pub access_logging: Vec<String>,
}

/// Top-level `MeshConfig` fields Istio defines that Portcullis does not honour (warned as
/// "not supported", not as misspelled). From istio/api `mesh/v1alpha1/config.proto`.
pub const UNSUPPORTED_MESH_FIELDS: &[&str] = &[
    "proxyListenPort",
    "proxyInboundListenPort",
    "proxyHttpPort",
    "connectTimeout",
    "protocolDetectionTimeout",
    "tcpKeepalive",
    "ingressClass",
    "ingressService",
    "ingressControllerMode",
    "ingressSelector",
    "enableEnvoyAccessLogService",
    "disableEnvoyListenerLog",
    "inboundTrafficPolicy",
    "configSources",
    "enableAutoMtls",
    "trustDomain",
    "trustDomainAliases",
    "caCertificates",
    "defaultServiceExportTo",
    "defaultVirtualServiceExportTo",
    "defaultDestinationRuleExportTo",
    "localityLbSetting",
    "dnsRefreshRate",
    "h2UpgradePolicy",
    "inboundClusterStatName",
    "outboundClusterStatName",
    "certificates",
    "serviceSettings",
    "enablePrometheusMerge",
    "verifyCertificateAtClient",
    "ca",
    "discoverySelectors",
    "pathNormalization",
    "defaultHttpRetryPolicy",
    "meshMTLS",
    "tlsDefaults",
    "serviceScopeConfigs",
    "zoneAwareLbSetting",
    "defaultTrafficPolicy",
    "defaultInboundHttpRetryPolicy",
    "thriftConfig",
];

/// `defaultConfig` (`ProxyConfig`) fields Istio defines that Portcullis does not honour.
pub const UNSUPPORTED_PROXY_FIELDS: &[&str] = &[
    "configPath",
    "binaryPath",
    "serviceCluster",
    "tracingServiceName",
    "parentShutdownDuration",
    "discoveryAddress",
    "discoveryRefreshDelay",
    "zipkinAddress",
    "statsdUdpAddress",
    "envoyMetricsServiceAddress",
    "proxyAdminPort",
    "availabilityZone",
    "controlPlaneAuthPolicy",
    "customConfigFile",
    "statNameLength",
    "concurrency",
    "proxyBootstrapTemplatePath",
    "interceptionMode",
    "sds",
    "envoyAccessLogService",
    "envoyMetricsService",
    "proxyMetadata",
    "runtimeValues",
    "statusPort",
    "extraStatTags",
    "meshId",
    "readinessProbe",
    "proxyStatsMatcher",
    "holdApplicationUntilProxyStarts",
    "caCertificatesPem",
    "image",
    "privateKeyProvider",
    "proxyHeaders",
    "fileFlushInterval",
    "fileFlushMinSize",
];
