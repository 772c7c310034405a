//! The fuzz targets: each takes arbitrary bytes and must never panic (a panic on the request
//! path would end a worker's connections; on the config path, a reload). Where a property
//! holds for every input, the target asserts it too. Shared by `fuzz/main.rs` (the long runs)
//! and the smoke run in `tests/it/fuzz_smoke.rs`.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::compile::egress::Addressing;
use portcullis::compile::{compile, Instance, OutboundPolicy, Role, Snapshot};
use portcullis::config::host::{
    normalize_request_host, parse_authority, split_authority, HostPattern,
};
use portcullis::config::load::load_files;
use portcullis::config::source::SourceFile;
use portcullis::config::validate::validate;
use portcullis::runtime::downstream::normalize_path;
use portcullis::runtime::routing::decide;
use portcullis::upstream::StatsRegistry;

/// A target: a name, what it takes, the function, and seed inputs.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "client_hello",
        run: client_hello,
        seeds: client_hello_seeds,
    },
    Target {
        name: "config",
        run: config,
        seeds: config_seeds,
    },
    Target {
        name: "path",
        run: path,
        seeds: path_seeds,
    },
    Target {
        name: "authority",
        run: authority,
        seeds: authority_seeds,
    },
    Target {
        name: "routing",
        run: routing,
        seeds: routing_seeds,
    },
];

/// Tokens the mutator splices in: what the parsers treat specially.
pub const DICTIONARY: &[&[u8]] = &[
    b"..",
    b".",
    b"/",
    b"\\",
    b";",
    b"%2e",
    b"%2E",
    b"%",
    b"%00",
    b"%25",
    b"..;",
    b"?",
    b"#",
    b":",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\r\n",
    b"\n",
    b"- ",
    b": ",
    b"*",
    b"'",
    b"\"",
    b"&",
    b"!",
    b"\x16\x03\x01",
    b"\x00\x00",
    b"\xff\xff",
    b"65535",
    b"65536",
    b"0",
    b"::1",
    b"xn--",
];

fn client_hello(data: &[u8]) {
    let _ = portcullis::tls::client_hello::parse(data);
}

fn client_hello_seeds() -> Vec<Vec<u8>> {
    // A TLS 1.2 ClientHello for `a.example` with ALPN h2, as openssl sends it (trimmed).
    let name = b"a.example";
    let sni_ext = {
        let mut e = vec![0x00, 0x00];
        let list_len = name.len() + 3;
        e.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        e.extend_from_slice(&(list_len as u16).to_be_bytes());
        e.push(0);
        e.extend_from_slice(&(name.len() as u16).to_be_bytes());
        e.extend_from_slice(name);
        e
    };
    let alpn_ext = [0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'2'];
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    let exts: Vec<u8> = [sni_ext.as_slice(), &alpn_ext].concat();
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![0x01, 0x00];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    vec![
        rec,
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x16, 0x03, 0x01, 0xff, 0xff],
    ]
}

fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let (resources, mut diags) = load_files(vec![SourceFile {
        display: "fuzz.yaml".into(),
        path: "fuzz.yaml".into(),
        text,
    }]);
    diags.0.extend(validate(&resources));
    for d in &diags.0 {
        // Printing computes the line of the field (a second parse) and cuts long values.
        let line = d.to_string();
        assert!(line.len() < 8 * 1024, "a {}-byte diagnostic", line.len());
    }
    if !diags.has_errors() {
        let _ = compile(&resources, &Instance::default(), &StatsRegistry::default());
    }
}

fn config_seeds() -> Vec<Vec<u8>> {
    vec![
        routing_yaml().into_bytes(),
        b"apiVersion: networking.istio.io/v1\nkind: List\nitems:\n- {kind: ServiceEntry, apiVersion: networking.istio.io/v1, metadata: {name: s}, spec: {hosts: [a.b], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}}\n".to_vec(),
        b"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: a.b\n  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 1}}\n    outlierDetection: {consecutive5xxErrors: 1, interval: 1s}\n  subsets: [{name: v1, labels: {v: '1'}}]\n".to_vec(),
        b"a: [[[[[1]]]]]\n---\n...\n--- !tag\nb: &x 1\nc: *x\n".to_vec(),
    ]
}

fn path(data: &[u8]) {
    let Ok(p) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = normalize_path(p) else {
        return;
    };
    let once = out.unwrap_or_else(|| p.to_string());
    assert!(once.starts_with('/'), "{p:?} → {once:?}");
    let twice = normalize_path(&once)
        .unwrap_or_else(|e| panic!("{p:?} → {once:?} → {e}"))
        .unwrap_or_else(|| once.clone());
    assert_eq!(once, twice, "not stable for {p:?}");
    for seg in once.split('/') {
        let dot = seg == "." || seg == ".." || seg.starts_with(".;") || seg.starts_with("..;");
        assert!(!dot, "a dot segment is left in {once:?} (from {p:?})");
    }
}

fn path_seeds() -> Vec<Vec<u8>> {
    [
        "/public/..;/admin",
        "/public\\..\\admin",
        "/a/%2e%2E/b",
        "/%%30%30",
        "/a/b/../../../../c",
        "/x\\..;/y?q=1",
        "/é/%7e/%c0%af",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn authority(data: &[u8]) {
    let Ok(a) = std::str::from_utf8(data) else {
        return;
    };
    let host = normalize_request_host(a);
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()));
    match parse_authority(a) {
        Ok((h, port)) => {
            assert!(a.starts_with(h), "{a:?}: host {h:?}");
            assert_ne!(port, Some(0), "{a:?}");
        }
        Err(e) => assert!(e.to_string().len() < 200, "{a:?}: a long error"),
    }
    let _ = split_authority(a);
    let pattern = HostPattern::parse(a);
    for other in ["*", "*.example.com", "a.example.com", ""] {
        let o = HostPattern::parse(other);
        assert_eq!(
            pattern.matches(&o),
            o.matches(&pattern),
            "matches is symmetric"
        );
        let _ = pattern.subset_of(&o);
        let _ = o.covers(&host);
    }
}

fn authority_seeds() -> Vec<Vec<u8>> {
    [
        "a.example.com:8443",
        "[::1]:443",
        "A.COM.",
        "x:65616",
        "[::1",
        "*.b.c",
        ":80",
        "a:b:c",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn routing_yaml() -> String {
    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n---\n\
     apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: be}\nspec:\n  hosts: [be.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n---\n\
     apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: wild}\nspec:\n  hosts: ['*.wild.test']\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n---\n\
     apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: ['a.example.com', '*.b.example.com', '*']\n  gateways: [gw]\n  http:\n\
     \x20 - match: [{uri: {exact: /x}, method: {exact: POST}}, {headers: {x-a: {prefix: v}}, queryParams: {q: {regex: '[0-9]+'}}}]\n    route: [{destination: {host: be.local}}]\n\
     \x20 - match: [{uri: {prefix: /API/}, ignoreUriCase: true, withoutHeaders: {x-b: {exact: ''}}}]\n    route: [{destination: {host: be.local}, weight: 1}, {destination: {host: be.local}, weight: 3}]\n\
     \x20 - match: [{uri: {regex: '/users/[^/]+/p(rofile)?'}, authority: {regex: '.*example.*'}, port: 80}]\n    redirect: {uri: /r, authority: b.example.com}\n\
     \x20 - match: [{uri: {prefix: /wild}}]\n    route: [{destination: {host: '*.wild.test'}}]\n\
     \x20 - match: [{scheme: {exact: https}}]\n    directResponse: {status: 418}\n\
     \x20 - route: [{destination: {host: be.local}}]\n"
        .to_string()
}

fn snapshots() -> &'static [Snapshot] {
    static SNAPSHOTS: OnceLock<Vec<Snapshot>> = OnceLock::new();
    SNAPSHOTS.get_or_init(|| {
        let (resources, diags) = load_files(vec![SourceFile {
            display: "routing.yaml".into(),
            path: "routing.yaml".into(),
            text: routing_yaml(),
        }]);
        assert!(!diags.has_errors(), "{diags}");
        let stats = StatsRegistry::default();
        let ingress = compile(&resources, &Instance::default(), &stats).expect("ingress");
        let egress = Instance {
            role: Role::Egress,
            outbound_policy: OutboundPolicy::AllowAny,
            ..Instance::default()
        };
        let egress = compile(&resources, &egress, &stats).expect("egress");
        vec![ingress.0, egress.0]
    })
}

/// Bytes → a request: lines `method`, `authority`, `path[?query]`, then `name: value` fields.
fn routing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("GET");
    let authority = lines.next().unwrap_or("");
    let target = lines.next().unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            ) {
                headers.append(n, v);
            }
        }
    }
    let host = normalize_request_host(authority);
    let port = split_authority(authority).1.unwrap_or(80);
    for snapshot in snapshots() {
        let Some(listener) = snapshot.listeners.values().next() else {
            continue;
        };
        for scheme in ["http", "https"] {
            let view = portcullis::compile::matcher::RequestView {
                method,
                scheme,
                authority,
                path,
                query,
                headers: &headers,
                claims: None,
            };
            for addressing in [Addressing::Host, Addressing::ForwardProxy] {
                let _ = decide(snapshot, listener, None, &view, &host, port, addressing);
            }
        }
    }
}

fn routing_seeds() -> Vec<Vec<u8>> {
    [
        "POST\na.example.com\n/x\nx-a: v1",
        "GET\nq.b.example.com:80\n/api/v?q=12\nx-b: 1",
        "GET\nx.example.org\n/users/7/profile",
        "GET\nhost.wild.test\n/wild/a",
        "CONNECT\n[::1]:443\n*",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
