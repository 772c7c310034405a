//! The ingress data path, end to end: the real `portcullis` process on loopback ports, real
//! HTTP backends behind ServiceEntries, real clients.
//!
//! Every test builds its config with [`IngressBuilder`] (one Gateway, ServiceEntries for its
//! backends, VirtualServices bound to the Gateway) so the YAML shapes live here only; `binding`,
//! about how a VirtualService names its Gateway, writes its own Gateway and VirtualService.
//! Submodules, by concept: `binding` (which Gateway a VirtualService binds to), `matching`
//! (which route a request takes), `actions` (what a route does), `failures` (what the gateway
//! answers when it cannot proxy), `hygiene` (what the backend sees, upgrades, h2c),
//! `access_log`, `lifecycle` (admin, SIGTERM drain), `httpbin` (Istio's own sample).

mod access_log;
mod actions;
mod binding;
mod failures;
mod httpbin;
mod hygiene;
mod lifecycle;
mod matching;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::support::client::http_client;
use crate::support::*;

/// How long a log line may take to show up.
pub const LOG_WAIT: Duration = Duration::from_secs(10);

/// The Gateway every test uses; VirtualServices bind to it by this name.
pub const GATEWAY: &str = "ingress";

/// Indents every non-empty line of `text` by `n` spaces (to nest YAML written at column 0).
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.trim_matches('\n')
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A YAML mapping written at column 0 as a list item (`- ` before the first line, the rest
/// indented two spaces).
pub fn list_item(mapping: &str) -> String {
    let mut out = String::new();
    for (i, line) in mapping.trim_matches('\n').lines().enumerate() {
        match (i, line.trim().is_empty()) {
            (0, _) => out.push_str(&format!("- {line}\n")),
            (_, true) => out.push('\n'),
            _ => out.push_str(&format!("  {line}\n")),
        }
    }
    out
}

/// One VirtualService `http` rule, as a YAML list item. `name` is left out when empty and
/// `match` when `matches` is empty; each element of `matches` is one match block (a mapping);
/// `body` says what the rule does (`route:`, `redirect:`, `rewrite:`, `headers:`...), written
/// at column 0.
pub fn rule(name: &str, matches: &[&str], body: &str) -> String {
    let mut m = String::new();
    if !name.is_empty() {
        m.push_str(&format!("name: {name}\n"));
    }
    if !matches.is_empty() {
        m.push_str("match:\n");
        for block in matches {
            m.push_str(&list_item(block));
        }
    }
    m.push_str(body.trim_matches('\n'));
    list_item(&m)
}

/// A rule body sending the request to backend `name` (its ServiceEntry host).
pub fn route_to(name: &str) -> String {
    format!("route:\n- destination: {{host: {}}}", svc(name))
}

/// A catch-all rule to backend `name`.
pub fn all_to(name: &str) -> String {
    rule("", &[], &route_to(name))
}

/// The ServiceEntry host a backend named `name` is registered under.
pub fn svc(name: &str) -> String {
    format!("{name}.svc.local")
}

/// A ServiceEntry for `host` (port 80, HTTP, STATIC) whose one endpoint is `127.0.0.1:port`.
pub fn service_entry_yaml(name: &str, host: &str, port: u16) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
  namespace: default
spec:
  hosts: ["{host}"]
  location: MESH_INTERNAL
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {{http: {port}}}
"#
    )
}

/// One Gateway server: the port the YAML declares, and its hosts.
struct Server {
    port: u16,
    hosts: Vec<String>,
}

/// Builds the config directory and starts the gateway. Defaults: one HTTP server on (YAML)
/// port 80 for `*`, mapped to a free loopback port.
pub struct IngressBuilder {
    servers: Vec<Server>,
    backends: Vec<Backend>,
    docs: Vec<(String, String)>,
    args: Vec<String>,
}

impl Default for IngressBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl IngressBuilder {
    pub fn new() -> Self {
        IngressBuilder {
            servers: Vec::new(),
            backends: Vec::new(),
            docs: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Adds a plain-HTTP server on YAML port `port` for `hosts` (replaces the default server).
    pub fn server(mut self, port: u16, hosts: &[&str]) -> Self {
        self.servers.push(Server {
            port,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        });
        self
    }

    /// Registers `backend` as host `<name>.svc.local` (port 80) and keeps it running for as
    /// long as the [`Ingress`] lives.
    pub fn backend(mut self, backend: Backend) -> Self {
        let name = backend.name().to_string();
        self.docs.push((
            format!("se-{name}.yaml"),
            service_entry_yaml(&name, &svc(&name), backend.port()),
        ));
        self.backends.push(backend);
        self
    }

    /// Registers host `<name>.svc.local` with an endpoint at `127.0.0.1:port` (nothing need
    /// listen there).
    pub fn service_at(mut self, name: &str, port: u16) -> Self {
        self.docs.push((
            format!("se-{name}.yaml"),
            service_entry_yaml(name, &svc(name), port),
        ));
        self
    }

    /// A VirtualService `name` for `hosts`, bound to the Gateway, with `http` (a YAML list of
    /// HTTP rules written at column 0).
    pub fn vs(self, name: &str, hosts: &[&str], http: &str) -> Self {
        self.vs_with_meta(name, "", hosts, http)
    }

    /// [`vs`](Self::vs) with extra `metadata` lines (e.g. `creationTimestamp: ...`).
    pub fn vs_with_meta(mut self, name: &str, meta: &str, hosts: &[&str], http: &str) -> Self {
        let meta = if meta.is_empty() {
            String::new()
        } else {
            format!("\n{}", indent(meta, 2))
        };
        self.docs.push((
            format!("vs-{name}.yaml"),
            format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default{meta}\nspec:\n  hosts: [{}]\n  gateways: [{GATEWAY}]\n  http:\n{}\n",
                quoted_list(hosts),
                indent(http, 2)
            ),
        ));
        self
    }

    /// One VirtualService named `routes` for every host (`*`).
    pub fn routes(self, http: &str) -> Self {
        self.vs("routes", &["*"], http)
    }

    /// Any other file for the config directory.
    pub fn file(mut self, name: &str, yaml: &str) -> Self {
        self.docs.push((name.to_string(), yaml.to_string()));
        self
    }

    /// Extra `portcullis run` arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    fn gateway_yaml(servers: &[Server]) -> String {
        let servers: String = servers
            .iter()
            .map(|s| {
                format!(
                    "  - port: {{number: {p}, name: http-{p}, protocol: HTTP}}\n    hosts: [{}]\n",
                    quoted_list(&s.hosts.iter().map(String::as_str).collect::<Vec<_>>()),
                    p = s.port
                )
            })
            .collect();
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: {GATEWAY}\n  namespace: default\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n{servers}"
        )
    }

    /// Writes the config and starts the gateway (waits for readiness).
    pub fn start(mut self) -> Ingress {
        if self.servers.is_empty() {
            self.servers.push(Server {
                port: 80,
                hosts: vec!["*".into()],
            });
        }
        let cfg = ConfigDir::new();
        cfg.write("gateway.yaml", &Self::gateway_yaml(&self.servers));
        for (name, doc) in &self.docs {
            cfg.write(name, doc);
        }
        let ports: Vec<(u16, u16)> = self.servers.iter().map(|s| (s.port, free_port())).collect();
        Ingress::spawn(cfg, ports, self.backends, self.args)
    }
}

/// A running gateway with its config and backends.
pub struct Ingress {
    pub gw: Gateway,
    /// The config directory (removed when the gateway is dropped).
    _cfg: ConfigDir,
    /// (YAML port, listening port), first = the default server.
    ports: Vec<(u16, u16)>,
    backends: Vec<Backend>,
    /// A keep-alive client (10 s timeout, no redirects followed).
    pub client: reqwest::Client,
}

impl Ingress {
    /// Starts `portcullis run --bind 127.0.0.1 --port-map <ports> <args>` on `cfg`.
    pub fn spawn(
        cfg: ConfigDir,
        ports: Vec<(u16, u16)>,
        backends: Vec<Backend>,
        args: Vec<String>,
    ) -> Ingress {
        let mut extra_args = vec!["--bind".to_string(), "127.0.0.1".to_string()];
        extra_args.extend(args);
        let gw = Gateway::start(GatewayOpts {
            port_map: Some(gateway::port_map(&ports)),
            extra_args,
            ..GatewayOpts::new(cfg.path())
        });
        Ingress {
            gw,
            _cfg: cfg,
            ports,
            backends,
            client: http_client(),
        }
    }

    /// The listening address of the server declared on YAML port `yaml_port`.
    pub fn addr_of(&self, yaml_port: u16) -> SocketAddr {
        let (_, p) = self
            .ports
            .iter()
            .find(|(y, _)| *y == yaml_port)
            .unwrap_or_else(|| panic!("no server on port {yaml_port}"));
        SocketAddr::from(([127, 0, 0, 1], *p))
    }

    /// The default (first) server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[0].1))
    }

    /// `http://127.0.0.1:<port><path>` on the default server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> &Backend {
        self.backends
            .iter()
            .find(|b| b.name() == name)
            .unwrap_or_else(|| panic!("no backend {name}"))
    }

    /// A request to the default server with `Host: host`.
    pub fn request(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header(reqwest::header::HOST, host)
    }

    /// `GET path` with `Host: host`.
    pub async fn get(&self, host: &str, path: &str) -> Response {
        send(self.request(Method::GET, host, path)).await
    }

    /// Who answered `GET path` for `host`: the backend's name, or `status NNN` when the
    /// gateway answered itself.
    pub async fn who(&self, host: &str, path: &str) -> String {
        who(self.get(host, path).await)
    }

    /// The access-log line containing `needle` (e.g. a request id), parsed.
    pub fn log_line(&self, needle: &str) -> AccessLine {
        AccessLine::parse(&self.gw.wait_for_log(needle, LOG_WAIT))
    }
}

/// Sends and panics on transport errors (with the error chain).
pub async fn send(req: RequestBuilder) -> Response {
    match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            panic!("request failed: {msg}")
        }
    }
}

/// The backend that answered (`x-backend`), or `status NNN` for a gateway reply.
pub fn who(resp: Response) -> String {
    match resp.headers().get("x-backend") {
        Some(b) => b.to_str().unwrap().to_string(),
        None => format!("status {}", resp.status().as_u16()),
    }
}

/// The backend's JSON echo of the request it received.
pub async fn echo(resp: Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not a backend echo ({status}): {e}: {text:?}"))
}

/// All values the backend received for header `name` (echo body).
pub fn echoed_header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The addresses of an `x-forwarded-for` value, in order (`a, b,c` → `[a, b, c]`).
pub fn xff_list(value: &str) -> Vec<String> {
    value.split(',').map(|a| a.trim().to_string()).collect()
}

/// A fresh request id, unique in this test run.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The names of the default access-log fields, in Envoy's order (and Istio's JSON keys).
pub const ACCESS_LOG_FIELDS: [&str; 24] = [
    "start_time",
    "method",
    "path",
    "protocol",
    "response_code",
    "response_flags",
    "response_code_details",
    "connection_termination_details",
    "upstream_transport_failure_reason",
    "bytes_received",
    "bytes_sent",
    "duration",
    "upstream_service_time",
    "x_forwarded_for",
    "user_agent",
    "request_id",
    "authority",
    "upstream_host",
    "upstream_cluster",
    "upstream_local_address",
    "downstream_local_address",
    "downstream_remote_address",
    "requested_server_name",
    "route_name",
];

/// One access-log line, text or JSON, as field name → value (`-` when absent, as Envoy prints).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine(pub BTreeMap<String, String>);

impl AccessLine {
    /// Parses a text line (`[time] "GET /p HTTP/1.1" 200 ...`) or a JSON line.
    pub fn parse(line: &str) -> AccessLine {
        if line.trim_start().starts_with('{') {
            Self::parse_json(line)
        } else {
            Self::parse_text(line)
        }
    }

    fn parse_text(line: &str) -> AccessLine {
        let rest = line
            .strip_prefix('[')
            .unwrap_or_else(|| panic!("not an access-log line: {line}"));
        let (time, rest) = rest.split_once("] ").unwrap();
        let mut tokens = vec![time.to_string()];
        let mut chars = rest.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c == ' ' {
                chars.next();
            } else if c == '"' {
                chars.next();
                let t: String = chars.by_ref().take_while(|c| *c != '"').collect();
                tokens.push(t);
            } else {
                let mut t = String::new();
                while let Some(&c) = chars.peek().filter(|c| **c != ' ') {
                    t.push(c);
                    chars.next();
                }
                tokens.push(t);
            }
        }
        // The request line is one quoted token: split it into method, path, protocol.
        let request: Vec<String> = tokens[1].splitn(3, ' ').map(str::to_string).collect();
        assert_eq!(request.len(), 3, "request line in {line}");
        let mut values = vec![tokens[0].clone()];
        values.extend(request);
        values.extend(tokens[2..].iter().cloned());
        assert_eq!(
            values.len(),
            ACCESS_LOG_FIELDS.len(),
            "field count of {line}: {values:?}"
        );
        let map = ACCESS_LOG_FIELDS
            .iter()
            .zip(values)
            .map(|(k, v)| (k.to_string(), if v.is_empty() { "-".into() } else { v }))
            .collect();
        AccessLine(map)
    }

    fn parse_json(line: &str) -> AccessLine {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let obj = v.as_object().unwrap();
        let map = ACCESS_LOG_FIELDS
            .iter()
            .map(|k| {
                let value = match obj.get(*k) {
                    None => panic!("JSON access log lacks {k}: {line}"),
                    Some(Value::Null) => "-".to_string(),
                    Some(Value::String(s)) if s.is_empty() => "-".to_string(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                (k.to_string(), value)
            })
            .collect();
        AccessLine(map)
    }

    pub fn get(&self, field: &str) -> &str {
        self.0
            .get(field)
            .unwrap_or_else(|| panic!("no field {field}"))
    }
}
