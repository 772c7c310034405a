//! Typed builders for the Istio resources the tests write: [`Gateway`], [`VirtualService`],
//! [`ServiceEntry`], [`DestinationRule`] and their parts, rendered to YAML text by
//! [`render`] (serde_json values through `serde_yaml`, keys in alphabetical order).
//!
//! Every builder is a JSON object underneath ([`Node`]): a typed method per field the tests
//! use, and [`Node::with`] as the escape hatch for any other field. Resources get
//! `apiVersion: networking.istio.io/v1` and `metadata: {name, namespace: default}`.
//!
//! ```ignore
//! let vs = VirtualService::new("site").hosts(&["*"]).gateways(&["gw"]).http(
//!     HttpRoute::new().when(Match::new().uri(prefix("/api"))).to("be.svc.local"),
//! );
//! config.write("vs.yaml", &render(&[&vs]));
//! ```

use serde::Serialize;
use serde_json::{json, Map, Value};

/// A builder that is a JSON object underneath.
pub trait Node: Sized {
    fn fields(&mut self) -> &mut Map<String, Value>;

    /// Sets `key` to `value` (any serializable value: the escape hatch for untyped fields).
    fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.fields().insert(key.to_string(), to_json(value));
        self
    }

    /// Sets the field at `path` (objects created on the way).
    fn with_in(mut self, path: &[&str], value: impl Serialize) -> Self {
        let (last, parents) = path.split_last().expect("a non-empty path");
        object_at(self.fields(), parents).insert(last.to_string(), to_json(value));
        self
    }

    /// Appends `value` to the list at `key` (created if absent).
    fn push(self, key: &str, value: impl Serialize) -> Self {
        self.push_in(&[key], value)
    }

    /// Appends `value` to the list at `path` (created if absent).
    fn push_in(mut self, path: &[&str], value: impl Serialize) -> Self {
        let (last, parents) = path.split_last().expect("a non-empty path");
        let list = object_at(self.fields(), parents)
            .entry(last.to_string())
            .or_insert(json!([]));
        list.as_array_mut()
            .expect("a list field")
            .push(to_json(value));
        self
    }
}

/// The object at `path` below `obj`, created on the way.
fn object_at<'a>(mut obj: &'a mut Map<String, Value>, path: &[&str]) -> &'a mut Map<String, Value> {
    for p in path {
        obj = obj
            .entry(p.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object on the path");
    }
    obj
}

fn to_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("test YAML values serialize")
}

/// Adders that append their argument to a list field: `adders!(Ty { name(ArgType) => "key"; })`.
macro_rules! adders {
    ($ty:ident { $($(#[$doc:meta])* $name:ident($arg:ty) => $key:literal;)* }) => {
        impl $ty {
            $(
                $(#[$doc])*
                pub fn $name(self, value: $arg) -> Self {
                    self.push($key, value)
                }
            )*
        }
    };
}

/// Setters that write their argument to a field (a path of keys for nested fields):
/// `setters!(Ty { /// doc\n name(ArgType) => "key" / "nested"; ... })`.
macro_rules! setters {
    ($ty:ident { $($(#[$doc:meta])* $name:ident($arg:ty) => $($key:literal)/+;)* }) => {
        impl $ty {
            $(
                $(#[$doc])*
                pub fn $name(self, value: $arg) -> Self {
                    self.with_in(&[$($key),+], value)
                }
            )*
        }
    };
}

/// Builders that are plain objects (parts of a resource spec).
macro_rules! nodes {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, Default, Serialize)]
        #[serde(transparent)]
        pub struct $name(Map<String, Value>);

        impl Node for $name {
            fn fields(&mut self) -> &mut Map<String, Value> {
                &mut self.0
            }
        }

        impl $name {
            pub fn new() -> Self {
                Self::default()
            }
        }
    )*};
}

/// A whole document: something [`render`] can write.
pub trait Resource {
    fn to_value(&self) -> Value;
}

impl Resource for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// A homogeneous list (`Vec<ServiceEntry>`, `Vec<Value>`...) as the documents [`render`] takes.
pub fn docs<R: Resource>(items: &[R]) -> Vec<&dyn Resource> {
    items.iter().map(|d| d as &dyn Resource).collect()
}

/// Documents as one multi-document YAML text.
pub fn render(docs: &[&dyn Resource]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(&d.to_value()).expect("test YAML renders"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Builders for whole resources: `metadata` plus a `spec` object (what [`Node`] edits).
macro_rules! resources {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            metadata: Map<String, Value>,
            spec: Map<String, Value>,
        }

        impl Node for $name {
            fn fields(&mut self) -> &mut Map<String, Value> {
                &mut self.spec
            }
        }

        impl Resource for $name {
            fn to_value(&self) -> Value {
                let api = match stringify!($name) {
                    "AuthorizationPolicy" | "RequestAuthentication" => "security.istio.io/v1",
                    _ => "networking.istio.io/v1",
                };
                json!({
                    "apiVersion": api,
                    "kind": stringify!($name),
                    "metadata": self.metadata,
                    "spec": self.spec,
                })
            }
        }

        impl $name {
            fn named(name: &str) -> Self {
                let mut metadata = Map::new();
                metadata.insert("name".into(), json!(name));
                metadata.insert("namespace".into(), json!("default"));
                $name { metadata, spec: Map::new() }
            }

            pub fn namespace(mut self, namespace: &str) -> Self {
                self.metadata.insert("namespace".into(), json!(namespace));
                self
            }

            /// `metadata.creationTimestamp` (orders VirtualServices sharing a host).
            pub fn created(mut self, timestamp: &str) -> Self {
                self.metadata.insert("creationTimestamp".into(), json!(timestamp));
                self
            }

            /// `metadata.annotations[key] = value`.
            pub fn annotation(mut self, key: &str, value: &str) -> Self {
                let annotations = self
                    .metadata
                    .entry("annotations".to_string())
                    .or_insert_with(|| json!({}));
                annotations[key] = json!(value);
                self
            }

            /// This resource alone as YAML text.
            pub fn yaml(&self) -> String {
                render(&[self])
            }
        }
    )*};
}

resources!(
    Gateway,
    VirtualService,
    ServiceEntry,
    DestinationRule,
    /// `security.istio.io/v1` AuthorizationPolicy (namespace `istio-system` by default, the
    /// root namespace): fields with `.with(key, json!(..))`.
    AuthorizationPolicy,
    /// `security.istio.io/v1` RequestAuthentication (namespace `istio-system` by default).
    RequestAuthentication,
);

impl AuthorizationPolicy {
    pub fn new(name: &str) -> Self {
        Self::named(name).namespace("istio-system")
    }
}

impl RequestAuthentication {
    pub fn new(name: &str) -> Self {
        Self::named(name).namespace("istio-system")
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway

nodes!(
    /// One Gateway server: `port`, `hosts`, `tls`, `bind`.
    Server,
    /// A server's `tls` block.
    ServerTls,
);

impl Gateway {
    /// A Gateway selecting `istio: ingressgateway`.
    pub fn new(name: &str) -> Self {
        Self::named(name).with("selector", json!({"istio": "ingressgateway"}))
    }

    /// A Gateway selecting `istio: egressgateway`.
    pub fn egress(name: &str) -> Self {
        Self::named(name).with("selector", json!({"istio": "egressgateway"}))
    }

    /// Adds a server; a port without a name gets `<protocol>-<index>` (unique in the Gateway).
    pub fn server(self, mut server: Server) -> Self {
        let index = self
            .spec
            .get("servers")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let port = &mut server.0["port"];
        if port.get("name").is_none() {
            let protocol = port["protocol"]
                .as_str()
                .unwrap_or("port")
                .to_ascii_lowercase();
            port["name"] = json!(format!("{protocol}-{index}"));
        }
        self.push("servers", server)
    }
}

impl Server {
    /// A server on (Gateway) port `number` speaking `protocol`, for every host (`*`).
    pub fn on(number: u16, protocol: &str) -> Self {
        Self::new()
            .with("port", json!({"number": number, "protocol": protocol}))
            .hosts(&["*"])
    }

    pub fn http(number: u16) -> Self {
        Self::on(number, "HTTP")
    }

    pub fn https(number: u16, tls: ServerTls) -> Self {
        Self::on(number, "HTTPS").tls(tls)
    }

    /// `tls: {httpsRedirect: true}` on a plain HTTP server.
    pub fn https_redirect(self) -> Self {
        self.with_in(&["tls", "httpsRedirect"], true)
    }
}

setters!(Server {
    hosts(&[&str]) => "hosts";
    port_name(&str) => "port" / "name";
    tls(ServerTls) => "tls";
    bind(&str) => "bind";
});

impl ServerTls {
    pub fn mode(mode: &str) -> Self {
        Self::new().with("mode", mode)
    }

    /// `{mode: SIMPLE, credentialName: credential}`.
    pub fn simple(credential: &str) -> Self {
        Self::mode("SIMPLE").credential(credential)
    }

    pub fn mutual(credential: &str) -> Self {
        Self::mode("MUTUAL").credential(credential)
    }

    pub fn optional_mutual(credential: &str) -> Self {
        Self::mode("OPTIONAL_MUTUAL").credential(credential)
    }

    pub fn passthrough() -> Self {
        Self::mode("PASSTHROUGH")
    }

    /// `serverCertificate` and `privateKey` file paths.
    pub fn files(self, certificate: &str, key: &str) -> Self {
        self.with("serverCertificate", certificate)
            .with("privateKey", key)
    }
}

setters!(ServerTls {
    credential(&str) => "credentialName";
    credential_names(&[&str]) => "credentialNames";
    subject_alt_names(&[&str]) => "subjectAltNames";
    verify_spki(&[&str]) => "verifyCertificateSpki";
    verify_hash(&[&str]) => "verifyCertificateHash";
    min_version(&str) => "minProtocolVersion";
    max_version(&str) => "maxProtocolVersion";
    cipher_suites(&[&str]) => "cipherSuites";
});

// ---------------------------------------------------------------------------------------------
// VirtualService

nodes!(
    /// One `http` rule.
    HttpRoute,
    /// One element of a rule's `match` list (`HTTPMatchRequest`; for `tls` rules, `sniHosts`).
    Match,
    /// A `StringMatch`: [`exact`], [`prefix`], [`regex`] or [`present`].
    StringMatch,
    /// One element of a `route` list: `destination`, `weight`, `headers`.
    Destination,
    /// `headers: {request: {set, add, remove}, response: {...}}`.
    Headers,
    /// `redirect`.
    Redirect,
    /// `directResponse`.
    DirectResponse,
    /// `rewrite`.
    Rewrite,
    /// `retries`.
    Retries,
    /// `fault`.
    Fault,
    /// `corsPolicy`.
    Cors,
    /// One `tcp` rule.
    TcpRoute,
    /// One `tls` rule.
    TlsRoute,
);

impl VirtualService {
    pub fn new(name: &str) -> Self {
        Self::named(name)
    }
}

adders!(VirtualService {
    http(HttpRoute) => "http";
    tcp(TcpRoute) => "tcp";
    tls(TlsRoute) => "tls";
});

setters!(VirtualService {
    hosts(&[&str]) => "hosts";
    gateways(&[&str]) => "gateways";
});

/// `{exact: value}`.
pub fn exact(value: &str) -> StringMatch {
    StringMatch::new().with("exact", value)
}

/// `{prefix: value}`.
pub fn prefix(value: &str) -> StringMatch {
    StringMatch::new().with("prefix", value)
}

/// `{regex: value}` (RE2, whole value).
pub fn regex(value: &str) -> StringMatch {
    StringMatch::new().with("regex", value)
}

/// `{}`: the header or parameter is present, whatever its value.
pub fn present() -> StringMatch {
    StringMatch::new()
}

impl HttpRoute {
    /// Routes to `host` (its only port).
    pub fn to(self, host: &str) -> Self {
        self.route(Destination::host(host))
    }

    /// `delegate: {name, namespace}`.
    pub fn delegate(self, name: &str, namespace: &str) -> Self {
        self.with("delegate", json!({"name": name, "namespace": namespace}))
    }
}

adders!(HttpRoute {
    /// Adds a match block (blocks are ORed, the conditions within one ANDed).
    when(Match) => "match";
    /// Adds a route destination.
    route(Destination) => "route";
});

setters!(HttpRoute {
    name(&str) => "name";
    redirect(Redirect) => "redirect";
    direct_response(DirectResponse) => "directResponse";
    rewrite(Rewrite) => "rewrite";
    headers(Headers) => "headers";
    retries(Retries) => "retries";
    fault(Fault) => "fault";
    cors(Cors) => "corsPolicy";
    /// `timeout` as Istio writes durations (`200ms`, `5s`).
    timeout(&str) => "timeout";
});

impl Match {
    pub fn ignore_uri_case(self) -> Self {
        self.with("ignoreUriCase", true)
    }

    pub fn header(self, name: &str, m: StringMatch) -> Self {
        self.with_in(&["headers", name], m)
    }

    pub fn without_header(self, name: &str, m: StringMatch) -> Self {
        self.with_in(&["withoutHeaders", name], m)
    }

    pub fn query_param(self, name: &str, m: StringMatch) -> Self {
        self.with_in(&["queryParams", name], m)
    }
}

setters!(Match {
    uri(StringMatch) => "uri";
    method(StringMatch) => "method";
    scheme(StringMatch) => "scheme";
    authority(StringMatch) => "authority";
    port(u16) => "port";
    gateways(&[&str]) => "gateways";
    sni_hosts(&[&str]) => "sniHosts";
});

impl Destination {
    /// `{destination: {host}}`.
    pub fn host(host: &str) -> Self {
        Self::new().with_in(&["destination", "host"], host)
    }
}

setters!(Destination {
    port(u16) => "destination" / "port" / "number";
    subset(&str) => "destination" / "subset";
    weight(u32) => "weight";
    /// Destination-level header operations.
    headers(Headers) => "headers";
});

impl Headers {
    fn op(self, side: &str, op: &str, name: &str, value: &str) -> Self {
        self.with_in(&[side, op, name], value)
    }

    fn remove(self, side: &str, name: &str) -> Self {
        self.push_in(&[side, "remove"], name)
    }

    pub fn request_set(self, name: &str, value: &str) -> Self {
        self.op("request", "set", name, value)
    }

    pub fn request_add(self, name: &str, value: &str) -> Self {
        self.op("request", "add", name, value)
    }

    pub fn request_remove(self, name: &str) -> Self {
        self.remove("request", name)
    }

    pub fn response_set(self, name: &str, value: &str) -> Self {
        self.op("response", "set", name, value)
    }

    pub fn response_add(self, name: &str, value: &str) -> Self {
        self.op("response", "add", name, value)
    }

    pub fn response_remove(self, name: &str) -> Self {
        self.remove("response", name)
    }
}

setters!(Redirect {
    uri(&str) => "uri";
    authority(&str) => "authority";
    port(u16) => "port";
    scheme(&str) => "scheme";
    /// `derivePort`: `FROM_PROTOCOL_DEFAULT` or `FROM_REQUEST_PORT`.
    derive_port(&str) => "derivePort";
    code(u16) => "redirectCode";
    prefix_rewrite(&str) => "prefixRewrite";
});

impl DirectResponse {
    pub fn status(status: u16) -> Self {
        Self::new().with("status", status)
    }
}

setters!(DirectResponse {
    /// `body: {string: text}`.
    body(&str) => "body" / "string";
    /// `body: {bytes: base64}`.
    body_bytes(&str) => "body" / "bytes";
});

impl Rewrite {
    /// `{uri: uri}` (replaces the matched prefix, or the whole path).
    pub fn uri(uri: &str) -> Self {
        Self::new().with("uri", uri)
    }

    pub fn authority(authority: &str) -> Self {
        Self::new().with("authority", authority)
    }

    /// `{uriRegexRewrite: {match, rewrite}}`.
    pub fn uri_regex(pattern: &str, rewrite: &str) -> Self {
        Self::new().with(
            "uriRegexRewrite",
            json!({"match": pattern, "rewrite": rewrite}),
        )
    }
}

impl Retries {
    pub fn attempts(attempts: u32) -> Self {
        Self::new().with("attempts", attempts)
    }
}

setters!(Retries {
    per_try_timeout(&str) => "perTryTimeout";
    retry_on(&str) => "retryOn";
});

impl Fault {
    /// `{delay: {fixedDelay, percentage: {value}}}`.
    pub fn delay(fixed_delay: &str, percent: f64) -> Self {
        Self::new().with(
            "delay",
            json!({"fixedDelay": fixed_delay, "percentage": {"value": percent}}),
        )
    }

    /// `{abort: {httpStatus, percentage: {value}}}`.
    pub fn abort(http_status: u16, percent: f64) -> Self {
        Self::new().with(
            "abort",
            json!({"httpStatus": http_status, "percentage": {"value": percent}}),
        )
    }
}

adders!(Cors {
    /// Adds an allowed origin (a [`StringMatch`]).
    allow_origin(StringMatch) => "allowOrigins";
});

setters!(Cors {
    allow_methods(&[&str]) => "allowMethods";
    allow_headers(&[&str]) => "allowHeaders";
    max_age(&str) => "maxAge";
});

adders!(TcpRoute {
    route(Destination) => "route";
});

impl TlsRoute {
    /// Adds a match block on `sniHosts`.
    pub fn sni_hosts(self, hosts: &[&str]) -> Self {
        self.push("match", Match::new().sni_hosts(hosts))
    }
}

adders!(TlsRoute {
    route(Destination) => "route";
});

// ---------------------------------------------------------------------------------------------
// ServiceEntry

nodes!(
    /// One ServiceEntry port.
    Port,
    /// One ServiceEntry endpoint (`WorkloadEntry` shape).
    Endpoint,
);

impl ServiceEntry {
    /// A ServiceEntry; add hosts, ports, `resolution`, `location` and endpoints.
    pub fn new(name: &str) -> Self {
        Self::named(name)
    }

    /// `host` as a `MESH_EXTERNAL` `STATIC` entry with one endpoint, 127.0.0.1, named after
    /// the host (dots as dashes).
    pub fn loopback(host: &str) -> Self {
        Self::new(&host.replace('.', "-"))
            .hosts(&[host])
            .location("MESH_EXTERNAL")
            .resolution("STATIC")
            .endpoint(Endpoint::address("127.0.0.1"))
    }
}

adders!(ServiceEntry {
    port(Port) => "ports";
    endpoint(Endpoint) => "endpoints";
});

setters!(ServiceEntry {
    hosts(&[&str]) => "hosts";
    /// `MESH_INTERNAL` or `MESH_EXTERNAL`.
    location(&str) => "location";
    /// `STATIC`, `DNS`, `DNS_ROUND_ROBIN` or `NONE`.
    resolution(&str) => "resolution";
});

impl Port {
    /// `{number, name, protocol}`.
    pub fn of(number: u16, name: &str, protocol: &str) -> Self {
        Self::new()
            .with("number", number)
            .with("name", name)
            .with("protocol", protocol)
    }

    /// `{number, name: http, protocol: HTTP}`.
    pub fn http(number: u16) -> Self {
        Self::of(number, "http", "HTTP")
    }
}

setters!(Port {
    target(u16) => "targetPort";
});

impl Endpoint {
    pub fn address(address: &str) -> Self {
        Self::new().with("address", address)
    }

    /// Maps the entry's port named `name` to `port` on this endpoint.
    pub fn port(self, name: &str, port: u16) -> Self {
        self.with_in(&["ports", name], port)
    }

    pub fn label(self, key: &str, value: &str) -> Self {
        self.with_in(&["labels", key], value)
    }
}

// ---------------------------------------------------------------------------------------------
// DestinationRule

nodes!(
    /// `trafficPolicy` (also per subset and per port).
    TrafficPolicy,
    /// A traffic policy's `tls` (origination).
    ClientTls,
    /// `connectionPool`.
    ConnectionPool,
    /// One DestinationRule subset.
    Subset,
);

impl DestinationRule {
    pub fn new(name: &str, host: &str) -> Self {
        Self::named(name).with("host", host)
    }
}

adders!(DestinationRule {
    subset(Subset) => "subsets";
});

setters!(DestinationRule {
    policy(TrafficPolicy) => "trafficPolicy";
});

impl TrafficPolicy {
    pub fn outlier_detection(
        self,
        consecutive_5xx: u32,
        base_ejection_time: &str,
        max_ejection_percent: u32,
    ) -> Self {
        self.with(
            "outlierDetection",
            json!({
                "consecutive5xxErrors": consecutive_5xx,
                "baseEjectionTime": base_ejection_time,
                "maxEjectionPercent": max_ejection_percent,
            }),
        )
    }

    /// A `portLevelSettings` entry for `port` with `policy`'s fields.
    pub fn port_level(self, port: u16, policy: TrafficPolicy) -> Self {
        let mut entry = policy.0;
        entry.insert("port".into(), json!({"number": port}));
        self.push("portLevelSettings", entry)
    }
}

setters!(TrafficPolicy {
    tls(ClientTls) => "tls";
    pool(ConnectionPool) => "connectionPool";
    /// `loadBalancer: {simple: policy}`.
    load_balancer(&str) => "loadBalancer" / "simple";
});

impl ClientTls {
    /// `{mode: SIMPLE, caCertificates: ca_file}`.
    pub fn simple(ca_file: &str) -> Self {
        Self::new()
            .with("mode", "SIMPLE")
            .with("caCertificates", ca_file)
    }

    /// `{mode: MUTUAL, clientCertificate, privateKey, caCertificates}`.
    pub fn mutual(certificate: &str, key: &str, ca_file: &str) -> Self {
        Self::new()
            .with("mode", "MUTUAL")
            .with("clientCertificate", certificate)
            .with("privateKey", key)
            .with("caCertificates", ca_file)
    }
}

setters!(ClientTls {
    sni(&str) => "sni";
    subject_alt_names(&[&str]) => "subjectAltNames";
});

setters!(ConnectionPool {
    max_connections(u32) => "tcp" / "maxConnections";
    http1_max_pending_requests(u32) => "http" / "http1MaxPendingRequests";
    max_requests_per_connection(u32) => "http" / "maxRequestsPerConnection";
    idle_timeout(&str) => "http" / "idleTimeout";
    /// `h2UpgradePolicy`: `UPGRADE` or `DO_NOT_UPGRADE`.
    h2_upgrade_policy(&str) => "http" / "h2UpgradePolicy";
});

impl Subset {
    pub fn named(name: &str) -> Self {
        Self::new().with("name", name)
    }

    pub fn label(self, key: &str, value: &str) -> Self {
        self.with_in(&["labels", key], value)
    }
}

setters!(Subset {
    policy(TrafficPolicy) => "trafficPolicy";
});
