//! Generated configurations shared by the benches.

use portcullis::config::load::load_files;
use portcullis::config::source::SourceFile;
use portcullis::config::Resources;

/// One `*` Gateway on port 8080 and `n` VirtualServices (`svc-<i>.example.com`, every fourth one
/// a wildcard `*.team-<i>.example.com`), each with a header match, a prefix, a regex and a catch-all,
/// routed to a STATIC ServiceEntry.
pub fn generated(n: usize) -> Resources {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ['*']\n---\n\
         apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: backend}\nspec:\n  hosts: [backend.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n",
    );
    for i in 0..n {
        let host = if i % 4 == 3 {
            format!("'*.team-{i}.example.com'")
        } else {
            format!("svc-{i}.example.com")
        };
        yaml.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{i}}}\nspec:\n  hosts: [{host}]\n  gateways: [gw]\n  http:\n\
             \x20 - match: [{{headers: {{x-canary: {{exact: 'yes'}}}}}}]\n    route: [{{destination: {{host: backend.local}}}}]\n\
             \x20 - match: [{{uri: {{prefix: /api/v1/}}}}]\n    route: [{{destination: {{host: backend.local}}}}]\n\
             \x20 - match: [{{uri: {{regex: '/users/[0-9]+/profile'}}}}]\n    route: [{{destination: {{host: backend.local}}}}]\n\
             \x20 - route: [{{destination: {{host: backend.local}}}}]\n"
        ));
    }
    let (resources, diags) = load_files(vec![SourceFile {
        display: "generated.yaml".into(),
        path: "generated.yaml".into(),
        text: yaml,
    }]);
    assert!(!diags.has_errors(), "{diags}");
    resources
}
