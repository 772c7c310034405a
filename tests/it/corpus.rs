//! Real Istio YAML (`../shared/corpus/istio`, see its SOURCES.txt) through `load_files` +
//! `validate`: valid files load without errors, `crd-validation/*-invalid.yaml` documents are all
//! rejected, analyzer cases report the finding they exist for, and every file a standalone
//! gateway legitimately rejects is listed below with the reason.
//!
//! These tests need the shared Istio YAML corpus at `../shared/corpus/istio` relative to the
//! crate root (every developer and CI run has `../shared` beside the project). When that
//! directory is missing, each test fails saying so, naming the path it looked for.
//!
//! `CORPUS_VERBOSE=1 cargo test --test it corpus` prints every diagnostic.

mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portcullis::config::source::{split_documents, SourceFile};
use portcullis::config::validate::validate;
use portcullis::config::{load_files, Diagnostic};

/// Files (relative to the corpus) with documents Portcullis leaves out on purpose (each error
/// leaves out its resource, or the part it is about, and the rest is served), loaded on their
/// own:
/// (file, substring every such error contains, why). Every error of a listed file must match
/// one of its entries, and every entry must match at least one error. `file@N` is the document
/// starting at line N of a `crd-validation/*-valid.yaml` file loaded alone.
const EXPECTED_REJECTIONS: &[(&str, &str, &str)] = &[
    // --- the loader ---
    (
        "crd-validation/destinationrule-valid.yaml",
        "duplicate DestinationRule default/bookinfo-ratings",
        "each document is a separate webhook test case reusing one name; in one config directory names are unique per kind and namespace (each document alone loads cleanly, see file@N below)",
    ),
    (
        "crd-validation/serviceentry-valid.yaml",
        "invalid YAML: found unexpected ':'",
        "`addresses: [1.2.3.4, 001:db8::]`: serde_yaml (libyaml, YAML 1.1) rejects `:` inside a plain scalar in a flow sequence, which YAML 1.2 parsers (Go yaml.v3) accept; a loader limitation, the block form `- \"001:db8::\"` loads",
    ),
    (
        "crd-validation/serviceentry-valid.yaml@1",
        "invalid YAML: found unexpected ':'",
        "the same YAML 1.1 limitation, for the document alone",
    ),
    // --- mesh-only features a standalone gateway cannot honour ---
    (
        "samples/bookinfo/networking/destination-rule-all-mtls.yaml",
        "ISTIO_MUTUAL needs Istio's mesh certificates",
        "ISTIO_MUTUAL origination needs the mesh's SPIFFE certificates, which only istiod issues",
    ),
    (
        "xds-benchmark-templates/gateways.yaml",
        "ISTIO_MUTUAL needs Istio's mesh certificates",
        "the benchmark's HTTPS servers use ISTIO_MUTUAL (mesh mTLS), which needs istiod's certificates",
    ),
    (
        "xds-benchmark-templates/gateways-shared.yaml",
        "ISTIO_MUTUAL needs Istio's mesh certificates",
        "the benchmark's HTTPS server uses ISTIO_MUTUAL (mesh mTLS), which needs istiod's certificates",
    ),
    // References to objects a file leaves to a sibling file (a Gateway, a DestinationRule
    // subset) are `istioctl analyze` findings, warnings since Istio serves them as they are
    // (IST0101): such files load, and are no longer listed here.
    // --- analyzer cases that exist to trigger an error (see ANALYZER_CASES) ---
    (
        "analyzer-cases/conflicting-gateways-invalid-port.yaml",
        "port: Required value",
        "both servers have no port, which the webhook rejects; the case checks that the analyzer does not crash",
    ),
    (
        "analyzer-cases/conflicting-gateways-multiple-ports.yaml",
        "Duplicate value: port name",
        "each Gateway reuses one port name for two servers, which the webhook rejects (port names are unique per Gateway)",
    ),
    (
        "analyzer-cases/gateway-no-workload.yaml",
        "gateway must have at least one server",
        "a Gateway with a selector and no servers; the webhook rejects it",
    ),
    (
        "analyzer-cases/gateway-secrets.yaml",
        "SIMPLE TLS requires a server certificate",
        "defaultgateway-nocredential is SIMPLE with no certificate at all; the webhook rejects it (the case only exercises the secret analyzer)",
    ),
    (
        "analyzer-cases/virtualservice_destinationhosts.yaml",
        "hostname cannot be wildcard",
        "ServiceEntry service-entry-ignore has host `*`, which the webhook rejects",
    ),
    (
        "analyzer-cases/virtualservice_destinationhosts.yaml",
        "destination is required",
        "reviews-bogushost has a route entry `{}` (\"test destination null\")",
    ),
    (
        "analyzer-cases/virtualservice_destinationhosts.yaml",
        "total destination weight = 0",
        "reviews-bogushost has two destinations and no weights: the webhook rejects a zero total",
    ),
    (
        "analyzer-cases/virtualservice_gateways.yaml",
        "gateway must have at least one server",
        "the \"broken config\" Gateways have no servers",
    ),
    (
        "analyzer-cases/virtualservice_gateways.yaml",
        "http, tcp or tls must be provided",
        "the VirtualServices have hosts and gateways but no routes",
    ),
    (
        "analyzer-cases/virtualservice_gateways.yaml",
        "wildcard host * is not allowed for virtual services bound to the mesh gateway",
        "httpbin-mesh binds host `*` to `mesh`, which the webhook rejects",
    ),
    (
        "analyzer-cases/virtualservice_host_not_found_gateway.yaml",
        "Duplicate value: port name `http`",
        "testing-gateway-01-test-04 has two servers named http, which the webhook rejects",
    ),
    (
        "analyzer-cases/virtualservice_host_not_found_gateway_beta.yaml",
        "Duplicate value: port name `http`",
        "testing-gateway-01-test-04 has two servers named http, which the webhook rejects",
    ),
    (
        "analyzer-cases/virtualservice_internal_gateway_ref.yaml",
        "invalid gateway name `gateway~istio-autogenerated-k8s-gateway~foo`",
        "IST0165: a reference to a Gateway that Istio generates from a Kubernetes Gateway; not a DNS-1123 name, and Portcullis generates no such Gateways",
    ),
];

/// Errors that only appear when a whole directory is loaded at once.
const EXPECTED_DIR_REJECTIONS: &[(&str, &str, &str)] = &[
    (
        "samples/bookinfo/networking/",
        "duplicate VirtualService default/",
        "the bookinfo task files are alternative versions of the same VirtualServices (one per tutorial step), applied one after the other, never together",
    ),
    (
        "samples/bookinfo/networking/",
        "duplicate DestinationRule default/",
        "destination-rule-all.yaml and destination-rule-all-mtls.yaml are alternatives for the same services",
    ),
    (
        "samples/tcp-echo/",
        "duplicate VirtualService default/tcp-echo",
        "tcp-echo-20-v2.yaml replaces the VirtualService of tcp-echo-all-v1.yaml (a traffic-shift step)",
    ),
    (
        "validation-dataset/",
        "duplicate ",
        "the same four objects in the three API versions v1alpha3, v1beta1 and v1",
    ),
];

/// `analyzer-cases/`: (file, substrings that must appear in some error or warning, substrings
/// that must not appear, the finding the file exists for and what Portcullis does about it).
type AnalyzerCase = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
);
const ANALYZER_CASES: &[AnalyzerCase] = &[
    (
        "analyzer-cases/conflicting-gateways-invalid-port.yaml",
        &["port: Required value"],
        &["IST0145"],
        "IST0145 must not fire for servers without a port; Portcullis rejects the missing ports instead",
    ),
    (
        "analyzer-cases/conflicting-gateways-multiple-ports.yaml",
        &["conflicting gateways: host `foo.bar` on port 90"],
        &["on port 80", "on port 70"],
        "IST0145 on the one shared port (90, TCP vs HTTP)",
    ),
    (
        "analyzer-cases/conflicting-gateways-subSelector.yaml",
        &["conflicting gateways: host `foo.bar` on port 80"],
        &[],
        "IST0145 when one selector is a subset of the other",
    ),
    (
        "analyzer-cases/conflicting-gateways.yaml",
        &["conflicting gateways: host `foo.bar` on port 80"],
        &[],
        "IST0145: TCP and HTTP servers on one port with the same host",
    ),
    (
        "analyzer-cases/destinationrule-compound-mutual-simple.yaml",
        &[],
        &["caCertificates"],
        "IST0128/IST0129 (TLS origination without caCertificates does not verify the server): not applicable, Portcullis verifies against the system trust store when caCertificates is empty",
    ),
    (
        "analyzer-cases/destinationrule-compound-simple-mutual.yaml",
        &[],
        &["caCertificates"],
        "IST0128/IST0129: not applicable (system trust store)",
    ),
    (
        "analyzer-cases/destinationrule-empty-topology-labels.yaml",
        &["IST0174"],
        &[],
        "IST0173 (a subset whose node topology label selects no pod): Portcullis has no pods or nodes, subsets select ServiceEntry endpoints; with no ServiceEntry for the host it reports IST0174",
    ),
    (
        "analyzer-cases/destinationrule-mutual-destination.yaml",
        &[],
        &["caCertificates"],
        "IST0128: not applicable (system trust store)",
    ),
    (
        "analyzer-cases/destinationrule-mutual-port.yaml",
        &[],
        &["caCertificates"],
        "IST0129: not applicable (system trust store)",
    ),
    (
        "analyzer-cases/destinationrule-simple-destination-credentialname-selector.yaml",
        &["workloadSelector is mesh only"],
        &["caCertificates"],
        "no IST0128 with credentialName; the sidecar workloadSelector is ignored with a warning",
    ),
    (
        "analyzer-cases/destinationrule-simple-destination-credentialname.yaml",
        &[],
        &["caCertificates"],
        "no IST0128 with credentialName",
    ),
    (
        "analyzer-cases/destinationrule-simple-destination.yaml",
        &[],
        &["caCertificates"],
        "IST0128: not applicable (system trust store)",
    ),
    (
        "analyzer-cases/destinationrule-simple-port-credentialname-selector.yaml",
        &["workloadSelector is mesh only"],
        &["caCertificates"],
        "no IST0129 with credentialName; the sidecar workloadSelector is ignored with a warning",
    ),
    (
        "analyzer-cases/destinationrule-simple-port-credentialname.yaml",
        &[],
        &["caCertificates"],
        "no IST0129 with credentialName",
    ),
    (
        "analyzer-cases/destinationrule-simple-port.yaml",
        &[],
        &["caCertificates"],
        "IST0129: not applicable (system trust store)",
    ),
    (
        "analyzer-cases/destinationrule-subsets-not-select-pods.yaml",
        &["IST0174"],
        &[],
        "IST0173 (subset selects no pods): no pods here; the host has no ServiceEntry, so Portcullis reports IST0174 (it reports IST0173 when a ServiceEntry's endpoints miss the subset labels)",
    ),
    (
        "analyzer-cases/destinationrule-subsets-with-topology-labels.yaml",
        &["IST0174"],
        &["IST0173"],
        "IST0173 must not fire for topology labels; no ServiceEntry, so IST0174",
    ),
    (
        "analyzer-cases/destinationrule-with-ca.yaml",
        &[],
        &["caCertificates"],
        "no IST0128/IST0129 when caCertificates is set",
    ),
    (
        "analyzer-cases/destinationrule-with-fake-host.yaml",
        &["no ServiceEntry defines host `fake-svc.default.svc.cluster.local`"],
        &[],
        "IST0174: DestinationRule host that no service defines",
    ),
    (
        "analyzer-cases/gateway-correct-port.yaml",
        &[],
        &[],
        "IST0104 (Gateway port not exposed by the gateway's Kubernetes Service): not applicable, Portcullis listens on the Gateway ports itself",
    ),
    (
        "analyzer-cases/gateway-custom-ingressgateway-badport-notarget.yaml",
        &[],
        &[],
        "IST0104: not applicable (no Kubernetes Service in front of Portcullis)",
    ),
    (
        "analyzer-cases/gateway-custom-ingressgateway-badport.yaml",
        &[],
        &[],
        "IST0104: not applicable",
    ),
    (
        "analyzer-cases/gateway-custom-ingressgateway-svcselector.yaml",
        &[],
        &[],
        "IST0104: not applicable",
    ),
    (
        "analyzer-cases/gateway-custom-ingressgateway-translation.yaml",
        &[],
        &[],
        "IST0104 port translation: not applicable",
    ),
    (
        "analyzer-cases/gateway-custom-ingressgateway.yaml",
        &[],
        &[],
        "IST0104: not applicable",
    ),
    (
        "analyzer-cases/gateway-different-port.yaml",
        &[],
        &["IST0145"],
        "no IST0145 when the same host is on different ports",
    ),
    (
        "analyzer-cases/gateway-duplicate-certificate.yaml",
        &[
            "[IST0138] Gateway istio-system/gateway-02-test-01: spec.servers[0].tls:",
            "[IST0138] Gateway istio-system/gateway-02-test-02: spec.servers[0].tls:",
            "[IST0138] Gateway istio-system/gateway-02-test-03: spec.servers[0].tls:",
        ],
        &["test-04", "test-05", "test-06"],
        "IST0138: two HTTPS servers on one port sharing a certificate (HTTP/2 coalescing → 421)",
    ),
    (
        "analyzer-cases/gateway-no-port.yaml",
        &[],
        &[],
        "IST0104 (port 8004 not on the Service): not applicable",
    ),
    (
        "analyzer-cases/gateway-no-workload.yaml",
        &["gateway must have at least one server"],
        &[],
        "IST0101 (selector matches no gateway pod): no pods; the Gateway also has no servers, which Portcullis rejects",
    ),
    (
        "analyzer-cases/gateway-secrets-validation.yaml",
        &[],
        &[],
        "IST0161 (invalid credential Secret): not applicable at validation time, Portcullis reads credentialName from certs/<name>/ files when it serves and reports bad files there",
    ),
    (
        "analyzer-cases/gateway-secrets.yaml",
        &["SIMPLE TLS requires a server certificate"],
        &[],
        "IST0101/IST0161 (missing credential Secret): not applicable (files, not Secrets); the SIMPLE server without any certificate is rejected",
    ),
    (
        "analyzer-cases/serviceentry-address-allocated.yaml",
        &[],
        &[],
        "no IST0134 when addresses are auto-allocated",
    ),
    (
        "analyzer-cases/serviceentry-address-required-lowercase.yaml",
        &[],
        &[],
        "IST0134 (TCP ServiceEntry without addresses): not applicable, addresses are the VIPs sidecars capture; Portcullis routes TCP by gateway port and VirtualService tcp rules",
    ),
    (
        "analyzer-cases/serviceentry-address-required-uppercase.yaml",
        &[],
        &[],
        "IST0134: not applicable",
    ),
    (
        "analyzer-cases/serviceentry-conflicting-exportto.yaml",
        &[],
        &["IST0177"],
        "no IST0177 when the two ServiceEntries are exported to disjoint namespaces",
    ),
    (
        "analyzer-cases/serviceentry-conflicting-protocol.yaml",
        &["port 13835 of host `example.com` is HTTP here but HTTPS"],
        &["other.com"],
        "IST0177: one host and port declared with two protocols",
    ),
    (
        "analyzer-cases/serviceentry-missing-addresses-protocol.yaml",
        &["port 443 of host `istio.io`"],
        &[],
        "IST0134 (no addresses for a TCP or unset protocol): not applicable; the file's ServiceEntries also give istio.io:443 different protocols, which Portcullis reports (IST0177)",
    ),
    (
        "analyzer-cases/serviceentry-no-conflict-protocol.yaml",
        &[],
        &["IST0177"],
        "no IST0177 when the protocols agree",
    ),
    (
        "analyzer-cases/virtualservice_conflictingmeshgatewayhosts.yaml",
        &["mesh-only"],
        &[],
        "IST0109 (mesh VirtualServices sharing a host): not applicable, Portcullis never serves mesh VirtualServices and says so",
    ),
    (
        "analyzer-cases/virtualservice_conflictingmeshgatewayhosts_with_exportto.yaml",
        &["mesh-only"],
        &[],
        "IST0109: not applicable (mesh only)",
    ),
    (
        "analyzer-cases/virtualservice_destinationhosts.yaml",
        &[
            "destination host `reviews-bogus`",
            "destination host `other.bookinfo.com` is not defined by any ServiceEntry visible from namespace default",
        ],
        &["destination host `abc.bookinfo.com`", "destination host `external-reviews.org`", "destination host `reviews.eu.bookinfo.com`"],
        "IST0101: destination hosts no ServiceEntry defines (or exports to the namespace)",
    ),
    (
        "analyzer-cases/virtualservice_destinationrules.yaml",
        &["subset `bogus` of host `reviews` is not defined by DestinationRule default/reviews"],
        &["subset `v1`"],
        "IST0101: a subset no DestinationRule defines",
    ),
    (
        "analyzer-cases/virtualservice_dupmatches.yaml",
        &["IST0131", "IST0130"],
        &[],
        "IST0131/IST0130: repeated matches and rules after a catch-all",
    ),
    (
        "analyzer-cases/virtualservice_gateways.yaml",
        &["gateway default/httpbin-gateway-bogus does not exist"],
        &["gateway default/httpbin-gateway does not exist", "gateway another/crossnamespace-gw does not exist"],
        "IST0101: a gateway that does not exist",
    ),
    (
        "analyzer-cases/virtualservice_host_not_found_gateway.yaml",
        &["[IST0132] VirtualService default/testing-service-02-test-01: spec.hosts[0]:", "[IST0132] VirtualService default/testing-service-03-test-04: spec.hosts[1]:"],
        &["testing-service-01-test-01: spec.hosts[0]", "testing-service-01-test-03: spec.hosts"],
        "IST0132: VirtualService hosts that the Gateway's servers do not offer, reported for each host (istioctl reports a Gateway once, and only when it offers none of the hosts)",
    ),
    (
        "analyzer-cases/virtualservice_host_not_found_gateway_beta.yaml",
        &["[IST0132] VirtualService default/testing-service-02-test-01: spec.hosts[0]:"],
        &[],
        "IST0132",
    ),
    (
        "analyzer-cases/virtualservice_host_not_found_gateway_with_ns_prefix.yaml",
        &["[IST0132] VirtualService default/testing-service-01-test-01: spec.hosts[0]:"],
        &["istio-system/testing-service-01-test-01: spec.hosts"],
        "IST0132: a `./host` server offers its host only to the Gateway's namespace",
    ),
    (
        "analyzer-cases/virtualservice_host_not_found_gateway_with_ns_prefix_beta.yaml",
        &["[IST0132] VirtualService default/testing-service-01-test-01: spec.hosts[0]:"],
        &[],
        "IST0132",
    ),
    (
        "analyzer-cases/virtualservice_internal_gateway_ref.yaml",
        &["invalid gateway name `gateway~istio-autogenerated-k8s-gateway~foo`"],
        &[],
        "IST0165: reference to a generated internal gateway; rejected as an invalid name",
    ),
    (
        "analyzer-cases/virtualservice_jwtclaimroute.yaml",
        &["IST0149"],
        &[],
        "IST0149: JWT claim routing without a RequestAuthentication",
    ),
    (
        "analyzer-cases/virtualservice_kubernetes_gateways.yaml",
        &["gateway default/my-gateway does not exist"],
        &[],
        "IST0132 for a Kubernetes Gateway API gateway: Portcullis does not load gateway.networking.k8s.io, so the reference itself is reported (IST0101, a warning: it binds nothing)",
    ),
    (
        "analyzer-cases/virtualservice_overlappingmatches.yaml",
        &[
            "[IST0131] VirtualService default/non-method-get: spec.http[0].match[1]:",
            "[IST0131] VirtualService default/overlapping-in-single-match: spec.http[0].match[1]:",
            "[IST0131] VirtualService default/overlapping-in-two-matches: spec.http[1].match[0]:",
            "[IST0131] VirtualService default/overlapping-mathes-with-different-methods: spec.http[1].match[0]:",
        ],
        &["spec.http[1].match[1]: IST0131"],
        "IST0131: a prefix match shadowed by a shorter prefix before it (different methods do not overlap)",
    ),
    (
        "analyzer-cases/virtualservice_route_rule_no_effects_ingress.yaml",
        &["VirtualService default/ratings-01: spec.gateways: mesh-only"],
        &[],
        "IST0168-like (mesh routing rules have no effect on traffic from the ingress gateway): Portcullis warns that the mesh VirtualService is never served",
    ),
];

/// The corpus directory; panics with what is missing and where when it is not there.
fn corpus() -> PathBuf {
    crate::support::istio_corpus()
}

fn rel(path: &Path) -> String {
    path.strip_prefix(corpus())
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

fn yaml_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                out.extend(yaml_files(&p, true));
            }
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    out
}

fn source(display: &str, text: String) -> SourceFile {
    SourceFile {
        display: display.to_string(),
        path: PathBuf::from(display),
        text,
    }
}

fn read(path: &Path) -> SourceFile {
    source(&rel(path), std::fs::read_to_string(path).unwrap())
}

/// Loads and validates; returns every diagnostic (loading and validation).
fn run(files: Vec<SourceFile>) -> Vec<Diagnostic> {
    run_counting(files).1
}

/// Like [`run`], also counting the objects loaded.
fn run_counting(files: Vec<SourceFile>) -> (usize, Vec<Diagnostic>) {
    let (resources, load) = load_files(files);
    let mut all = load.0;
    all.extend(validate(&resources));
    (resources.len(), all)
}

fn verbose() -> bool {
    std::env::var_os("CORPUS_VERBOSE").is_some()
}

fn dump(what: &str, diags: &[Diagnostic]) {
    if verbose() && !diags.is_empty() {
        eprintln!("== {what}");
        for d in diags {
            eprintln!("{d}");
        }
    }
}

fn errors(diags: &[Diagnostic]) -> Vec<&Diagnostic> {
    diags.iter().filter(|d| d.is_error()).collect()
}

fn file_of(d: &Diagnostic) -> String {
    d.origin
        .as_ref()
        .map(|o| o.file.display.clone())
        .unwrap_or_default()
}

/// Checks the errors of `key` loaded alone against `EXPECTED_REJECTIONS`; returns problems.
fn check_file_errors(key: &str, diags: &[Diagnostic], problems: &mut Vec<String>) {
    let expected: Vec<_> = EXPECTED_REJECTIONS
        .iter()
        .filter(|(f, _, _)| *f == key)
        .collect();
    let errs = errors(diags);
    let unexpected: Vec<String> = errs
        .iter()
        .map(|e| e.to_string())
        .filter(|text| !expected.iter().any(|(_, sub, _)| text.contains(sub)))
        .collect();
    for text in unexpected.iter().take(5) {
        problems.push(format!("{key}: unexpected error: {text}"));
    }
    if unexpected.len() > 5 {
        problems.push(format!(
            "{key}: … and {} more unexpected errors",
            unexpected.len() - 5
        ));
    }
    for (_, sub, why) in &expected {
        if !errs.iter().any(|e| e.to_string().contains(sub)) {
            problems.push(format!(
                "{key}: expected an error containing {sub:?} ({why}), none reported"
            ));
        }
    }
}

fn finish(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The files that must load without errors (apart from `EXPECTED_REJECTIONS`).
fn valid_files() -> Vec<PathBuf> {
    let root = corpus();
    let mut files: Vec<PathBuf> = yaml_files(&root.join("crd-validation"), false)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-valid.yaml"))
        .collect();
    files.extend(yaml_files(&root.join("samples"), true));
    files.extend(yaml_files(&root.join("validation-dataset"), false));
    files.extend(yaml_files(&root.join("testdata-config"), false));
    files.extend(yaml_files(&root.join("analyzer-cases"), false));
    files
}

#[test]
fn every_file_loads_alone_without_unexpected_errors() {
    let mut problems = Vec::new();
    let files = valid_files();
    assert!(
        files.len() > 100,
        "only {} files in the corpus at {}",
        files.len(),
        corpus().display()
    );
    for path in files {
        let key = rel(&path);
        let diags = run(vec![read(&path)]);
        dump(&key, &diags);
        check_file_errors(&key, &diags, &mut problems);
    }
    for (file, _, _) in EXPECTED_REJECTIONS {
        let file = file.split('@').next().unwrap();
        let path = corpus().join(file);
        if !file.starts_with("xds-benchmark-templates/") && !path.is_file() {
            problems.push(format!(
                "EXPECTED_REJECTIONS names {file}, which does not exist"
            ));
        }
    }
    finish(problems);
}

/// Directories whose files are meant to be applied together.
fn whole_directories() -> Vec<PathBuf> {
    let root = corpus();
    let mut dirs = vec![
        root.join("testdata-config"),
        root.join("validation-dataset"),
    ];
    let mut stack = vec![root.join("samples")];
    while let Some(d) = stack.pop() {
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        if !yaml_files(&d, false).is_empty() {
            dirs.push(d.clone());
        }
        stack.extend(subdirs);
    }
    dirs.sort();
    dirs
}

#[test]
fn every_directory_loads_as_a_whole() {
    let mut problems = Vec::new();
    let mut used = vec![false; EXPECTED_DIR_REJECTIONS.len()];
    for dir in whole_directories() {
        let key = format!("{}/", rel(&dir));
        let files: Vec<SourceFile> = yaml_files(&dir, false).iter().map(|p| read(p)).collect();
        let diags = run(files);
        dump(&key, &diags);
        for e in errors(&diags) {
            let text = e.to_string();
            let file = file_of(e);
            let by_file = EXPECTED_REJECTIONS
                .iter()
                .any(|(f, sub, _)| *f == file && text.contains(sub));
            let by_dir = EXPECTED_DIR_REJECTIONS
                .iter()
                .enumerate()
                .filter(|(_, (d, sub, _))| *d == key && text.contains(sub))
                .map(|(i, _)| used[i] = true)
                .count()
                > 0;
            if !by_file && !by_dir {
                problems.push(format!("{key}: unexpected error: {text}"));
            }
        }
    }
    for (i, (dir, sub, why)) in EXPECTED_DIR_REJECTIONS.iter().enumerate() {
        if !used[i] {
            problems.push(format!(
                "{dir}: expected an error containing {sub:?} ({why}), none reported"
            ));
        }
    }
    finish(problems);
}

fn templates() -> Vec<PathBuf> {
    yaml_files(&corpus().join("xds-benchmark-templates"), false)
}

#[test]
fn benchmark_templates_expand_and_load() {
    let mut problems = Vec::new();
    let files = templates();
    assert_eq!(files.len(), 7);
    for path in files {
        let key = rel(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        for n in [1, 1000] {
            let expanded = template::expand(
                &text,
                template::Params {
                    services: n,
                    instances: n,
                },
            )
            .unwrap_or_else(|e| panic!("{key}: {e}"));
            let display = format!("{key}@N={n}");
            let (loaded, diags) = run_counting(vec![source(&display, expanded)]);
            // Every template creates at least one ServiceEntry or VirtualService per service.
            if loaded <= n as usize {
                problems.push(format!("{display}: only {loaded} objects loaded"));
            }
            if n == 1 {
                dump(&display, &diags);
            }
            check_file_errors(&key, &diags, &mut problems);
        }
    }
    finish(problems);
}

/// `_err`, kind, `namespace/name` of one document.
fn document_identity(text: &str) -> Option<(Option<String>, String, String)> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    if v.is_null() {
        return None;
    }
    let kind = v.get("kind")?.as_str()?.to_string();
    let meta = v.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_string();
    let ns = meta
        .get("namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    let err = v.get("_err").and_then(|e| e.as_str()).map(str::to_string);
    Some((err, kind, format!("{ns}/{name}")))
}

/// Each document of a `crd-validation/*-valid.yaml` file is a test case of its own.
#[test]
fn every_valid_crd_document_loads_alone() {
    let mut problems = Vec::new();
    let files: Vec<PathBuf> = yaml_files(&corpus().join("crd-validation"), false)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-valid.yaml"))
        .collect();
    assert_eq!(files.len(), 2);
    let mut checked = 0;
    for path in files {
        let key = rel(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in split_documents(&text) {
            let doc_text = &text[doc.bytes.clone()];
            if doc_text.lines().all(|l| {
                l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---"
            }) {
                continue;
            }
            checked += 1;
            let alone = format!("{}{}", "\n".repeat(doc.first_line - 1), doc_text);
            let doc_key = format!("{key}@{}", doc.first_line);
            let diags = run(vec![source(&key, alone)]);
            dump(&doc_key, &diags);
            check_file_errors(&doc_key, &diags, &mut problems);
        }
    }
    assert!(checked >= 9, "only {checked} valid documents found");
    finish(problems);
}

#[test]
fn every_invalid_crd_document_is_rejected() {
    let mut problems = Vec::new();
    let mut checked = 0;
    let files: Vec<PathBuf> = yaml_files(&corpus().join("crd-validation"), false)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-invalid.yaml"))
        .collect();
    assert_eq!(files.len(), 2);
    for path in files {
        let key = rel(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        // Whole file: every document has an error of its own.
        let whole = run(vec![source(&key, text.clone())]);
        dump(&key, &whole);
        for doc in split_documents(&text) {
            let doc_text = &text[doc.bytes.clone()];
            let Some((err, kind, name)) = document_identity(doc_text) else {
                continue;
            };
            checked += 1;
            let here = format!("{key}:{}", doc.first_line);
            if !errors(&whole)
                .iter()
                .any(|e| e.origin.as_ref().is_some_and(|o| o.doc.index == doc.index))
            {
                problems.push(format!(
                    "{here}: {kind} {name} is not rejected when the whole file is loaded"
                ));
            }
            // The document alone (padded so line numbers stay those of the file): the error names
            // the object and carries Istio's wording.
            let alone = format!("{}{}", "\n".repeat(doc.first_line - 1), doc_text);
            let diags = run(vec![source(&key, alone)]);
            let who = format!("{kind} {name}: ");
            let errs = errors(&diags);
            let matching: Vec<_> = errs
                .iter()
                .map(|e| e.to_string())
                .filter(|e| e.contains(&who) && err.as_ref().is_none_or(|m| e.contains(m.as_str())))
                .collect();
            if matching.is_empty() {
                problems.push(format!(
                    "{here}: expected an error naming `{kind} {name}`{}; got:\n  {}",
                    err.map(|m| format!(" containing {m:?}"))
                        .unwrap_or_default(),
                    errs.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n  ")
                ));
            }
        }
    }
    assert!(checked >= 14, "only {checked} invalid documents found");
    finish(problems);
}

#[test]
fn analyzer_cases_report_their_finding() {
    let mut problems = Vec::new();
    let files: BTreeMap<String, PathBuf> = yaml_files(&corpus().join("analyzer-cases"), false)
        .into_iter()
        .map(|p| (rel(&p), p))
        .collect();
    for key in files.keys() {
        if !ANALYZER_CASES.iter().any(|(f, _, _, _)| f == key) {
            problems.push(format!(
                "{key}: not in ANALYZER_CASES (decide which finding it exists for)"
            ));
        }
    }
    for (file, findings, absent, why) in ANALYZER_CASES {
        let Some(path) = files.get(*file) else {
            problems.push(format!("ANALYZER_CASES names {file}, which does not exist"));
            continue;
        };
        let diags = run(vec![read(path)]);
        let texts: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        for f in *findings {
            if !texts.iter().any(|t| t.contains(f)) {
                problems.push(format!(
                    "{file}: expected a finding containing {f:?} ({why}); got:\n  {}",
                    texts.join("\n  ")
                ));
            }
        }
        for f in *absent {
            if let Some(t) = texts.iter().find(|t| t.contains(f)) {
                problems.push(format!(
                    "{file}: nothing should contain {f:?} ({why}), but: {t}"
                ));
            }
        }
    }
    finish(problems);
}
