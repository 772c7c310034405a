//! The command line: `run`, `check`, `routes` and their flags. Types only; `app` runs them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::compile::{Instance, OutboundPolicy, Role};
use crate::observe::access_log::LogFormat;
use crate::reload::watch::WatchMode;

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
    Run(RunArgs),
    /// Validate the config directory and print every problem (exit 0 valid, 1 errors, 2 usage).
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
    /// Egress: what happens to hosts no ServiceEntry lists.
    #[arg(long, value_enum, default_value = "REGISTRY_ONLY")]
    pub outbound_policy: OutboundPolicy,
    /// Seconds an idle upstream connection is kept at most, whatever `idleTimeout` says (Istio's
    /// default is 1 h); below the upstreams' own keep-alive limit, so they never close first.
    #[arg(long, default_value = "55", value_name = "SECS", value_parser = parse_secs)]
    pub upstream_idle_cap: Duration,
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
            outbound_policy: self.outbound_policy,
            upstream_idle_cap: self.upstream_idle_cap,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// Admin listener: /healthz/ready, /config_dump, /stats, /metrics.
    #[arg(long, default_value = "127.0.0.1:15000", value_name = "ADDR")]
    pub admin: SocketAddr,
    /// Access log format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Seconds in-flight requests get to finish on SIGTERM (and when a reload removes a port).
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = parse_secs)]
    pub drain_timeout: Duration,
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
