//! The admin, status and Prometheus listeners of `run`, at the addresses istio-ingressgateway
//! uses (admin 127.0.0.1:15000; status 15021, Prometheus 15090 and merged Prometheus 15020 on
//! every interface), each overridable by its flag. All are bound before the gateway starts, so
//! a port that cannot be bound stops start-up with a message naming it and its flag.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pingora::apps::http_app::HttpServer;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::info;

use crate::admin::ports::{Port, PortApp};
use crate::admin::Admin;
use crate::cli::RunArgs;
use crate::observe::logging::LogControl;
use crate::reload::ReloadStatus;
use crate::runtime::listeners::{bind, serve_app};
use crate::runtime::server::Gateway;

/// A process port that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on the {what} address {addr} (set another with {flag}): {source}")]
pub struct PortError {
    what: &'static str,
    flag: &'static str,
    addr: SocketAddr,
    source: std::io::Error,
}

/// The bound sockets, not yet serving.
pub struct Ports {
    admin: (SocketAddr, TcpListener),
    probes: Vec<(Port, SocketAddr, TcpListener)>,
}

/// Binds the admin address and every probe address that is not `off`.
pub fn bind_ports(args: &RunArgs) -> Result<Ports, PortError> {
    let open = |what, flag, addr: SocketAddr| {
        bind(addr, false).map_err(|source| PortError {
            what,
            flag,
            addr,
            source,
        })
    };
    let admin = (args.admin, open("admin", "--admin", args.admin)?);
    let mut probes = Vec::new();
    for (port, what, flag, addr) in [
        (Port::Status, "status", "--status-addr", args.status_addr.0),
        (
            Port::Prometheus,
            "Prometheus",
            "--prometheus-addr",
            args.prometheus_addr.0,
        ),
        (
            Port::Merged,
            "merged Prometheus",
            "--merged-prometheus-addr",
            args.merged_prometheus_addr.0,
        ),
    ] {
        if let Some(addr) = addr {
            probes.push((port, addr, open(what, flag, addr)?));
        }
    }
    Ok(Ports { admin, probes })
}

impl Ports {
    /// Starts serving the admin endpoints and the probe/scrape ports.
    pub fn serve(
        self,
        args: &RunArgs,
        gateway: Arc<Gateway>,
        reload: Arc<Mutex<ReloadStatus>>,
        logs: Arc<LogControl>,
    ) {
        let (addr, listener) = self.admin;
        let admin = Admin {
            gateway: gateway.clone(),
            reload,
            logs,
            command_line: command_line(args),
        };
        tokio::spawn(serve_app(listener, Arc::new(HttpServer::new_app(admin))));
        info!("admin listening on http://{addr}");
        for (port, addr, listener) in self.probes {
            let app = PortApp {
                port,
                gateway: gateway.clone(),
            };
            tokio::spawn(serve_app(listener, Arc::new(HttpServer::new_app(app))));
            let paths = match port {
                Port::Status => "/healthz/ready",
                Port::Prometheus => "/stats/prometheus",
                Port::Merged => "/stats/prometheus, /metrics (merged), /healthz/ready",
            };
            info!("{port:?} port listening on http://{addr} ({paths})");
        }
    }
}

/// The command line as `/server_info` shows it.
fn command_line(args: &RunArgs) -> serde_json::Value {
    let addr = |a: Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    json!({
        "config": args.config.config,
        "certs": args.config.certs,
        "labels": args.instance.labels,
        "bind": args.instance.bind,
        "admin_address": args.admin.to_string(),
        "status_address": addr(args.status_addr.0),
        "prometheus_address": addr(args.prometheus_addr.0),
        "merged_prometheus_address": addr(args.merged_prometheus_addr.0),
    })
}
