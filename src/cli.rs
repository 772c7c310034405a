//! The command line: `run`, `check`, `routes` and their flags. Types only; `app` runs them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::compile::{Instance, OutboundPolicy, Role};
use crate::config::diag::Severity;
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
            credentials: Default::default(),
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
    /// All or nothing: refuse the whole configuration on any error (start-up fails, a reload
    /// keeps the generation being served) instead of leaving out what is wrong and serving the
    /// rest.
    #[arg(long)]
    pub strict: bool,
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

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0 && v.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a number of seconds"))
}
