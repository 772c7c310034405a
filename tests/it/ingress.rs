//! The ingress data path, end to end: the real `portcullis` process on loopback ports, real
//! HTTP backends behind ServiceEntries, real clients.
//!
//! Every test builds its config with [`IngressBuilder`] (one Gateway, ServiceEntries for its
//! backends, VirtualServices bound to the Gateway, all typed YAML builders) on the shared
//! [`Harness`]; what stays here is ingress-specific: that convention and the access-log parser.
//! `binding`, about how a VirtualService names its Gateway, writes its own Gateway.
//! Submodules, by concept: `binding` (which Gateway a VirtualService binds to), `matching`
//! (which route a request takes), `actions` (what a route does), `composition` (header
//! operation order, delegation), `retries`, `mirroring`, `affinity` (cookie hashing),
//! `failures` (what the gateway answers when it cannot proxy), `identity` (server name, local
//! replies, HTTP/1.0, Envoy's headers), `hygiene` (what the backend sees, upgrades, h2c),
//! `envoy` (side by side with Envoy), `access_log`, `lifecycle` (admin, SIGTERM drain),
//! `httpbin` (Istio's own sample).

mod access_log;
mod actions;
mod affinity;
mod binding;
mod composition;
mod envoy;
mod failures;
mod header_keys;
mod httpbin;
mod hygiene;
mod identity;
mod lifecycle;
mod matching;
mod mirroring;
mod retries;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Response;
use serde_json::Value;

pub use crate::support::client::send;
pub use crate::support::harness::who;
pub use crate::support::yaml::*;
use crate::support::*;

/// How long a log line may take to show up.
pub const LOG_WAIT: Duration = Duration::from_secs(10);

/// The Gateway every test uses; VirtualServices bind to it by this name.
pub const GATEWAY: &str = "ingress";

/// A catch-all rule to backend `name`.
pub fn all_to(name: &str) -> HttpRoute {
    HttpRoute::new().to(&svc(name))
}

/// A rule with the one match block `m` routing to backend `name`.
pub fn when_to(m: Match, name: &str) -> HttpRoute {
    HttpRoute::new().when(m).to(&svc(name))
}

/// Builds the config directory and starts the gateway: one Gateway ([`GATEWAY`]), backends
/// registered as `<name>.svc.local`, VirtualServices bound to the Gateway. Defaults: one HTTP
/// server on (YAML) port 80 for `*`, mapped to a free loopback port.
#[derive(Default)]
pub struct IngressBuilder {
    harness: HarnessBuilder,
    gateway: Option<Gateway>,
}

impl IngressBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plain-HTTP server on YAML port `port` for `hosts` (replaces the default server).
    pub fn server(mut self, port: u16, hosts: &[&str]) -> Self {
        let gateway = self.gateway.take().unwrap_or_else(|| Gateway::new(GATEWAY));
        self.gateway = Some(gateway.server(Server::http(port).hosts(hosts)));
        self.harness = self.harness.port(port);
        self
    }

    /// Registers `backend` as host `<name>.svc.local` (port 80) and keeps it running for as
    /// long as the gateway lives.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.harness = self.harness.backend(backend);
        self
    }

    /// Registers host `<name>.svc.local` with an endpoint at `127.0.0.1:port` (nothing need
    /// listen there).
    pub fn service_at(self, name: &str, port: u16) -> Self {
        let entry = harness::backend_entry(name, port);
        self.resources(&format!("se-{name}.yaml"), &[&entry])
    }

    /// A VirtualService `name` for `hosts` with these HTTP rules.
    pub fn vs(self, name: &str, hosts: &[&str], rules: Vec<HttpRoute>) -> Self {
        let vs = rules
            .into_iter()
            .fold(VirtualService::new(name).hosts(hosts), VirtualService::http);
        self.virtual_service(name, vs)
    }

    /// `vs` (named `name`), bound to the Gateway, in its own file.
    pub fn virtual_service(self, name: &str, vs: VirtualService) -> Self {
        self.resources(&format!("vs-{name}.yaml"), &[&vs.gateways(&[GATEWAY])])
    }

    /// One VirtualService named `routes` for every host (`*`).
    pub fn routes(self, rules: Vec<HttpRoute>) -> Self {
        self.vs("routes", &["*"], rules)
    }

    /// Any other documents, as file `name`.
    pub fn resources(mut self, name: &str, docs: &[&dyn Resource]) -> Self {
        self.harness = self.harness.resources(name, docs);
        self
    }

    /// Extra `portcullis run` arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.harness = self.harness.args(args);
        self
    }

    /// Writes the config and starts the gateway (waits for readiness).
    pub async fn start(self) -> Harness {
        let (harness, gateway) = match self.gateway {
            Some(g) => (self.harness, g),
            None => (
                self.harness.port(80),
                Gateway::new(GATEWAY).server(Server::http(80)),
            ),
        };
        harness.resources("gateway.yaml", &[&gateway]).start().await
    }
}

/// The access-log line containing `needle` (e.g. a request id), parsed.
pub async fn access_line(h: &Harness, needle: &str) -> AccessLine {
    AccessLine::parse(&h.gw.wait_for_log(needle, LOG_WAIT).await)
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
