//! The command line: `run`, `check`, `routes` and their flags. Types only; `app` runs them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::compile::access_log::LogFormat;
use crate::compile::security::ext_authz::ExtAuthzHttp;
use crate::compile::security::SecuritySettings;
use crate::compile::{Instance, OutboundPolicy, Role};
use crate::config::diag::Severity;
use crate::reload::watch::WatchMode;
use crate::runtime::limits::DownstreamLimits;
use crate::telemetry::istio::Workload;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An ingress/egress edge gateway that serves Istio networking YAML from a directory",
    long_about = "Portcullis reads Gateway, VirtualService, ServiceEntry and DestinationRule YAML \
(networking.istio.io v1alpha3, v1beta1, v1) from a directory and serves traffic by it, \
as istio-ingressgateway or istio-egressgateway would. Edit a file and it follows; no \
Kubernetes, no control plane."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve traffic by the config directory, reloading when it changes.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Validate the config directory (or files, or standard input) and print every problem as
    /// `istioctl analyze` would (exit 0 below the failure threshold, 1 at or above it, 2 usage).
    Check(CheckArgs),
    /// Print the compiled routing: listeners, virtual hosts, routes and clusters.
    Routes(RoutesArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Directory of Istio YAML, read recursively (*.yaml, *.yml).
    #[arg(long, default_value = "gateways", value_name = "DIR")]
    pub config: PathBuf,
    /// Directory of credentials: `credentialName: NAME` reads NAME/tls.crt, NAME/tls.key, NAME/ca.crt.
    #[arg(long, default_value = "certs", value_name = "DIR")]
    pub certs: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct InstanceArgs {
    /// This instance's labels; Gateways whose `selector` they satisfy are served.
    #[arg(long, default_value = "istio=ingressgateway", value_name = "K=V,..", value_parser = parse_labels)]
    pub labels: BTreeMap<String, String>,
    /// Listen on another port than the Gateway says, as the Kubernetes Service in front of
    /// istio-ingressgateway does: `80:8080,443:8443`.
    #[arg(long, default_value = "", value_name = "FROM:TO,..", value_parser = parse_port_map)]
    pub port_map: BTreeMap<u16, u16>,
    /// Address for servers without a `bind`.
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDR")]
    pub bind: IpAddr,
    /// ingress or egress; default: egress when the labels say istio=egressgateway.
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Egress: what happens to hosts no ServiceEntry lists (default REGISTRY_ONLY; wins over
    /// the mesh file's outboundTrafficPolicy.mode).
    #[arg(long, value_enum)]
    pub outbound_policy: Option<OutboundPolicy>,
    /// Seconds an idle upstream connection is kept at most, whatever `idleTimeout` says (Istio's
    /// default is 1 h); below the upstreams' own keep-alive limit, so they never close first.
    #[arg(long, default_value = "55", value_name = "SECS", value_parser = parse_secs)]
    pub upstream_idle_cap: Duration,
    /// The gateway's namespace: its AuthorizationPolicies and RequestAuthentications apply
    /// when their selector matches --labels, and its metrics report it as
    /// `source_workload_namespace`.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "istio-system",
        value_name = "NS"
    )]
    pub namespace: String,
    /// The cluster this gateway runs in, as Istio's metrics report it (`source_cluster`,
    /// `destination_cluster` of ServiceEntry endpoints); istio-agent's `ISTIO_META_CLUSTER_ID`.
    #[arg(long, env = "ISTIO_META_CLUSTER_ID", default_value = crate::telemetry::workload::DEFAULT_CLUSTER_ID, value_name = "ID")]
    pub cluster_id: String,
    /// The root namespace, whose security policies apply to every gateway (wins over the mesh
    /// file's `rootNamespace`; default istio-system).
    #[arg(long, value_name = "NS")]
    pub root_namespace: Option<String>,
    /// An HTTP ext_authz provider for CUSTOM AuthorizationPolicies, besides the mesh file's
    /// `extensionProviders` (wins over one of the same name):
    /// `NAME=http://HOST:PORT[/PREFIX][;failOpen=true;timeout=2s;...]` (see docs/security.md);
    /// repeat for several.
    #[arg(long = "ext-authz-provider", value_name = "NAME=URL;..", value_parser = parse_ext_authz)]
    pub ext_authz_providers: Vec<ExtAuthzHttp>,
}

fn parse_ext_authz(s: &str) -> Result<ExtAuthzHttp, String> {
    ExtAuthzHttp::parse(s).map_err(|e| e.to_string())
}

impl InstanceArgs {
    pub fn instance(&self, certs_dir: PathBuf) -> Instance {
        let role = self.role.unwrap_or_else(|| {
            if self.labels.get("istio").map(String::as_str) == Some("egressgateway") {
                Role::Egress
            } else {
                Role::Ingress
            }
        });
        Instance {
            labels: self.labels.clone(),
            port_map: self.port_map.clone(),
            bind: self.bind,
            certs_dir,
            role,
            outbound_policy: self.outbound_policy.unwrap_or(OutboundPolicy::RegistryOnly),
            upstream_idle_cap: self.upstream_idle_cap,
            credentials: Default::default(),
            security: SecuritySettings {
                root_namespace: self
                    .root_namespace
                    .clone()
                    .unwrap_or_else(|| "istio-system".into()),
                namespace: self.namespace.clone(),
                ext_authz_providers: self.ext_authz_providers.clone(),
                ..SecuritySettings::default()
            },
            // The workload as istio-agent derives it (ISTIO_META_WORKLOAD_NAME, POD_NAME),
            // else the deployment name of Istio's gateway charts.
            workload: Workload::from_env(
                &self.labels,
                &self.namespace,
                &self.cluster_id,
                match role {
                    Role::Ingress => "istio-ingressgateway",
                    Role::Egress => "istio-egressgateway",
                },
            ),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// Admin listener (Envoy's admin paths: /ready, /stats, /clusters, /config_dump, /logging,
    /// /drain_listeners, ...). Localhost only, as Envoy's admin under Istio.
    #[arg(long, default_value = "127.0.0.1:15000", value_name = "ADDR")]
    pub admin: SocketAddr,
    /// Istio's mesh config (the `mesh` key of the `istio` ConfigMap, as mounted): access log,
    /// outbound policy, gateway topology (trusted proxies, XFCC, PROXY protocol), drain and
    /// tracing settings. Watched and reloaded with --config.
    #[arg(long, value_name = "FILE")]
    pub mesh: Option<PathBuf>,
    /// Readiness probe, `/healthz/ready` (istio-ingressgateway's status port 15021); `off` for none.
    #[arg(long, default_value = "0.0.0.0:15021", value_name = "ADDR|off")]
    pub status_addr: ListenAddr,
    /// Prometheus scrape of the proxy's stats, `/stats/prometheus` (Envoy's 15090); `off` for none.
    #[arg(long, default_value = "0.0.0.0:15090", value_name = "ADDR|off")]
    pub prometheus_addr: ListenAddr,
    /// Merged Prometheus scrape, `/stats/prometheus` and `/metrics`: the proxy's stats plus the
    /// configuration (agent) metrics (istio-agent's 15020); `off` for none.
    #[arg(long, default_value = "0.0.0.0:15020", value_name = "ADDR|off")]
    pub merged_prometheus_addr: ListenAddr,
    /// Access log encoding: text (Envoy's default line) or json (default text; wins over the
    /// mesh file's accessLogEncoding).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Seconds the listeners keep accepting after SIGTERM or `/drain_listeners?graceful`,
    /// answering HTTP/1 with `Connection: close` and HTTP/2 with GOAWAY (Istio's
    /// `drainDuration`; default 45; wins over the mesh file).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub drain_duration: Option<Duration>,
    /// Seconds in-flight requests get to finish once the listeners stopped (and when a reload
    /// removes a port) (Istio's `terminationDrainDuration`; default 5; wins over the mesh file).
    /// `--drain-timeout` is the old name.
    #[arg(long, alias = "drain-timeout", value_name = "SECS", value_parser = parse_secs)]
    pub termination_drain_duration: Option<Duration>,
    /// Watch --config and --certs and reload on change: true (file notifications, polling if
    /// they are unavailable), poll, or false (SIGHUP still reloads).
    #[arg(
        long,
        value_enum,
        default_value = "true",
        value_name = "true|poll|false"
    )]
    pub watch: WatchMode,
    /// Worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Egress CONNECT: require the tunnelled ClientHello's SNI to equal the CONNECT host.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub connect_sni_check: bool,
    /// All or nothing: refuse the whole configuration on any error (start-up fails, a reload
    /// keeps the generation being served) instead of leaving out what is wrong and serving the
    /// rest.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The `server` header of every response, upstream ones overwritten (Istio's
    /// `proxyHeaders.server`); empty: pass the upstream's through.
    #[arg(long, default_value = "istio-envoy", value_name = "NAME", value_parser = parse_server_name)]
    pub server_header: String,
    /// Serve HTTP/1.0 requests (Istio's `PILOT_HTTP10`); by default they get 426.
    #[arg(long, default_value = "false", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub accept_http10: bool,
    /// Request bodies up to this many bytes are kept so a retry can send them again; a larger
    /// body is never retried (Envoy's per-connection buffer limit, Istio's
    /// `listenerPerConnectionBufferLimitBytes`). At most 65536: Pingora's retry buffer.
    #[arg(long, default_value = "65536", value_name = "BYTES", value_parser = parse_retry_buffer)]
    pub retry_buffer_limit: usize,
}

/// Downstream limits and timeouts (`docs/hardening.md`); a duration of 0 turns it off.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Downstream limits and timeouts")]
pub struct LimitArgs {
    /// Largest request head, request line and CRLFs included (Envoy `max_request_headers_kb`);
    /// HTTP/2: SETTINGS_MAX_HEADER_LIST_SIZE. Larger: 431.
    #[arg(long, default_value = "60", value_name = "KIB", value_parser = clap::value_parser!(u64).range(1..=8192))]
    pub max_request_headers_kb: u64,
    /// Most header fields in a request (Envoy `max_request_headers_count`). More: 431.
    #[arg(long, default_value = "100", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub max_request_headers_count: u64,
    /// Seconds a client has to send a whole request head (nginx `client_header_timeout`).
    /// Late: 408.
    #[arg(long, default_value = "30", value_name = "SECS", value_parser = parse_secs)]
    pub request_headers_timeout: Duration,
    /// Seconds an idle HTTP/1 keep-alive connection is kept between requests.
    #[arg(long, default_value = "60", value_name = "SECS", value_parser = parse_secs)]
    pub http1_idle_timeout: Duration,
    /// Seconds an HTTP/2 connection without open streams is kept (Envoy `idle_timeout`).
    #[arg(long, default_value = "3600", value_name = "SECS", value_parser = parse_secs)]
    pub http2_idle_timeout: Duration,
    /// Seconds a request may go without a byte read or written downstream (Envoy
    /// `stream_idle_timeout`).
    #[arg(long, default_value = "300", value_name = "SECS", value_parser = parse_secs)]
    pub stream_idle_timeout: Duration,
    /// Seconds a downstream connection may live before it drains (Envoy
    /// `max_connection_duration`; default 0: no limit).
    #[arg(long, default_value = "0", value_name = "SECS", value_parser = parse_secs)]
    pub max_connection_duration: Duration,
    /// Largest request body in bytes (default: no limit). Larger: 413.
    #[arg(long, value_name = "BYTES")]
    pub max_request_body_bytes: Option<u64>,
    /// Open downstream connections across all listeners (Envoy
    /// `global_downstream_max_connections`); more are closed at accept and readiness fails.
    /// Default: half the open-file limit.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Open downstream connections per listener address (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_connections_per_listener: Option<usize>,
    /// Memory all partly received request heads may hold together; past it new connections
    /// are refused, a head needing more gets 503, and readiness fails.
    #[arg(long, default_value = "65536", value_name = "KIB")]
    pub max_pending_headers_kb: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> DownstreamLimits {
        let some = |d: Duration| (!d.is_zero()).then_some(d);
        DownstreamLimits {
            max_request_headers_bytes: self.max_request_headers_kb as usize * 1024,
            max_request_headers_count: self.max_request_headers_count as usize,
            request_headers_timeout: some(self.request_headers_timeout),
            http1_idle_timeout: self.http1_idle_timeout,
            http2_idle_timeout: some(self.http2_idle_timeout),
            stream_idle_timeout: some(self.stream_idle_timeout),
            max_connection_duration: some(self.max_connection_duration),
            max_request_body_bytes: self.max_request_body_bytes,
            max_connections: self
                .max_connections
                .or_else(crate::runtime::limits::connections_within_file_limit),
            max_connections_per_listener: self.max_connections_per_listener,
            max_pending_headers_bytes: self.max_pending_headers_kb.saturating_mul(1024),
        }
    }
}

impl RunArgs {
    /// `--server-header` as a header value; `None` when empty (pass-through).
    pub fn server_name(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_str(&self.server_header)
            .ok()
            .filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Files and directories to check instead of --config; `-` reads standard input.
    #[arg(value_name = "FILE|DIR|-")]
    pub inputs: Vec<PathBuf>,
    /// Output format, as istioctl analyze's: log (one line per message), json or yaml.
    #[arg(short = 'o', long = "output", value_enum, default_value = "log")]
    pub output: OutputFormat,
    /// Do not report CODE for a resource: `CODE=Kind name.namespace` or `CODE=Kind
    /// namespace/name`, `*` matching any text (istioctl's --suppress); repeatable.
    #[arg(short = 'S', long = "suppress", value_name = "CODE=Kind name")]
    pub suppress: Vec<String>,
    /// The level at which check exits 1: Error, Warning or Info (istioctl's default: Error).
    #[arg(long, default_value = "Error", value_parser = parse_level, value_name = "LEVEL")]
    pub failure_threshold: Severity,
    /// Messages below this level are not printed: Error, Warning or Info (default Info).
    #[arg(long, default_value = "Info", value_parser = parse_level, value_name = "LEVEL")]
    pub output_threshold: Severity,
    /// Also validate this mesh config file (Istio's MeshConfig YAML).
    #[arg(long, value_name = "FILE")]
    pub mesh: Option<PathBuf>,
}

/// `check --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Log,
    Json,
    Yaml,
}

fn parse_level(s: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("`{s}` is not a level (expected Error, Warning or Info)"))
}

#[derive(Debug, Clone, Args)]
pub struct RoutesArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// The compiled snapshot as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

fn parse_port_map(s: &str) -> Result<BTreeMap<u16, u16>, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (from, to) = pair
            .split_once(':')
            .ok_or_else(|| format!("`{pair}` is not FROM:TO"))?;
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{p}` is not a port number"))
        };
        out.insert(port(from)?, port(to)?);
    }
    Ok(out)
}

/// A listening address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub Option<SocketAddr>);

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(ListenAddr(None));
        }
        s.parse()
            .map(|a| ListenAddr(Some(a)))
            .map_err(|_| format!("`{s}` is not an address (IP:PORT) or `off`"))
    }
}

/// Pingora keeps at most 64 KiB of a request body for a retry (`BODY_BUF_LIMIT`).
pub const MAX_RETRY_BUFFER: usize = 64 * 1024;

fn parse_retry_buffer(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_RETRY_BUFFER => Ok(n),
        Ok(n) => Err(format!(
            "{n} is more than Pingora's retry buffer keeps ({MAX_RETRY_BUFFER} bytes)"
        )),
        Err(_) => Err(format!("`{s}` is not a number of bytes")),
    }
}

fn parse_server_name(s: &str) -> Result<String, String> {
    http::HeaderValue::from_str(s)
        .map(|_| s.to_string())
        .map_err(|_| format!("`{s}` is not a valid header value"))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0 && v.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a number of seconds"))
}
