//! Who this gateway is, as Istio's metrics name it: the source side of every metric a gateway
//! reports (`source_workload`, `source_workload_namespace`, `source_app`, `source_version`,
//! `source_cluster`, `source_canonical_service`, `source_canonical_revision`).
//!
//! Istio's stats filter takes them from the proxy's node metadata
//! (istio/proxy `source/extensions/filters/http/istio_stats/istio_stats.cc`: `WORKLOAD_NAME`,
//! `NAMESPACE`, `CLUSTER_ID` and the `LABELS` `app`, `version`,
//! `service.istio.io/canonical-name`, `service.istio.io/canonical-revision`), which istio-agent
//! fills from the pod's environment (istio/istio `pkg/bootstrap/config.go` `GetNodeMetaData`:
//! `ISTIO_META_*`, `POD_NAME`, `POD_NAMESPACE`). The injector sets the canonical labels with the
//! fallbacks of `pkg/kube/labels/labels.go` `CanonicalService` (`app.kubernetes.io/name`, then
//! `app`, then the workload name; `app.kubernetes.io/version`, then `version`, then `latest`)
//! and `ISTIO_META_WORKLOAD_NAME` with the deployment's name (`pkg/kube/util.go`
//! `GetDeployMetaFromPod`: the pod's ReplicaSet without its `pod-template-hash`).
//! `ISTIO_META_CLUSTER_ID` defaults to `Kubernetes` (the injection templates).
//!
//! Here the labels are `--labels`, the namespace `--namespace` (or `POD_NAMESPACE`), the cluster
//! `--cluster-id` (or `ISTIO_META_CLUSTER_ID`). Without `ISTIO_META_WORKLOAD_NAME` or `POD_NAME`
//! the workload is the name Istio's gateway charts give the deployment:
//! `istio-ingressgateway` (or `istio-egressgateway` for the egress role).

use std::collections::BTreeMap;

use serde::Serialize;

/// `service.istio.io/canonical-name` (`pkg/model/proxy.go`).
pub const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
/// `service.istio.io/canonical-revision`.
pub const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
/// `service.istio.io/workload-name` (istio/api `label.ServiceWorkloadName`).
pub const WORKLOAD_NAME: &str = "service.istio.io/workload-name";
/// The injection templates' `ISTIO_META_CLUSTER_ID` when no cluster name is configured.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// The gateway's identity in Istio's metrics (the source side of what it reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// The `app` label (empty when absent, as Istio reports it).
    pub app: String,
    /// The `version` label (empty when absent).
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
}

impl Default for Workload {
    fn default() -> Self {
        Workload::derive(
            &BTreeMap::new(),
            "istio-system",
            DEFAULT_CLUSTER_ID,
            "istio-ingressgateway",
            |_| None,
        )
    }
}

/// The first of `keys` present in `labels`.
fn first<'a>(labels: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| labels.get(*k).map(String::as_str))
}

/// `pkg/kube/labels/labels.go` `CanonicalService`: the canonical name and revision of a
/// workload with `labels`, falling back to `workload` and `latest`.
pub fn canonical_service(labels: &BTreeMap<String, String>, workload: &str) -> (String, String) {
    let name =
        first(labels, &[CANONICAL_NAME, "app.kubernetes.io/name", "app"]).unwrap_or(workload);
    let revision = first(
        labels,
        &[CANONICAL_REVISION, "app.kubernetes.io/version", "version"],
    )
    .unwrap_or("latest");
    (name.to_string(), revision.to_string())
}

/// The deployment a pod belongs to, as the injector derives it (`GetDeployMetaFromPod`): a
/// pod `<deployment>-<pod-template-hash>-<suffix>` belongs to `<deployment>`; any other pod
/// name is its own workload.
pub fn workload_of_pod(pod: &str, labels: &BTreeMap<String, String>) -> String {
    if let Some(hash) = labels.get("pod-template-hash").filter(|h| !h.is_empty()) {
        if let Some((replica_set, _suffix)) = pod.rsplit_once('-') {
            if let Some(deployment) = replica_set.strip_suffix(&format!("-{hash}")) {
                return deployment.to_string();
            }
        }
    }
    pod.to_string()
}

impl Workload {
    /// The identity from the instance's labels, namespace and cluster, with `env` for
    /// `ISTIO_META_WORKLOAD_NAME` and `POD_NAME`; `default_name` when neither is set.
    pub fn derive(
        labels: &BTreeMap<String, String>,
        namespace: &str,
        cluster: &str,
        default_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Workload {
        let set = |k: &str| env(k).filter(|v| !v.is_empty());
        let name = set("ISTIO_META_WORKLOAD_NAME")
            .or_else(|| labels.get(WORKLOAD_NAME).cloned())
            .or_else(|| set("POD_NAME").map(|pod| workload_of_pod(&pod, labels)))
            .unwrap_or_else(|| default_name.to_string());
        let (canonical_service, canonical_revision) = canonical_service(labels, &name);
        Workload {
            app: labels.get("app").cloned().unwrap_or_default(),
            version: labels.get("version").cloned().unwrap_or_default(),
            name,
            namespace: namespace.to_string(),
            canonical_service,
            canonical_revision,
            cluster: cluster.to_string(),
        }
    }

    /// [`Workload::derive`] with the process environment.
    pub fn from_env(
        labels: &BTreeMap<String, String>,
        namespace: &str,
        cluster: &str,
        default_name: &str,
    ) -> Workload {
        Workload::derive(labels, namespace, cluster, default_name, |k| {
            std::env::var(k).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn env<'a>(kv: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| kv.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    // istio/istio manifests/charts/gateways/istio-ingress: labels app=istio-ingressgateway,
    // istio=ingressgateway; ISTIO_META_WORKLOAD_NAME=istio-ingressgateway.
    #[test]
    fn an_istio_chart_gateway_reports_as_istio_ingressgateway() {
        let l = labels(&[("app", "istio-ingressgateway"), ("istio", "ingressgateway")]);
        let w = Workload::derive(
            &l,
            "istio-system",
            "Kubernetes",
            "istio-ingressgateway",
            env(&[("ISTIO_META_WORKLOAD_NAME", "istio-ingressgateway")]),
        );
        assert_eq!(w.name, "istio-ingressgateway");
        assert_eq!(w.app, "istio-ingressgateway");
        assert_eq!(w.version, "");
        assert_eq!(w.canonical_service, "istio-ingressgateway");
        assert_eq!(w.canonical_revision, "latest");
        assert_eq!(w.cluster, "Kubernetes");
    }

    // pkg/kube/labels/labels.go: canonical-name, then app.kubernetes.io/name, then app.
    #[test]
    fn canonical_labels_win_in_istios_order() {
        let l = labels(&[
            ("app", "a"),
            ("app.kubernetes.io/name", "k"),
            ("version", "v1"),
            ("app.kubernetes.io/version", "2.0"),
        ]);
        assert_eq!(canonical_service(&l, "w"), ("k".into(), "2.0".into()));
        let l = labels(&[
            (CANONICAL_NAME, "c"),
            ("app", "a"),
            (CANONICAL_REVISION, "r"),
        ]);
        assert_eq!(canonical_service(&l, "w"), ("c".into(), "r".into()));
        assert_eq!(
            canonical_service(&BTreeMap::new(), "w"),
            ("w".into(), "latest".into())
        );
    }

    // pkg/kube/util.go GetDeployMetaFromPod: the ReplicaSet name minus -<pod-template-hash>.
    #[test]
    fn a_deployments_pod_name_gives_the_deployment() {
        let l = labels(&[("pod-template-hash", "5d8f7c9b4")]);
        let w = Workload::derive(
            &l,
            "edge",
            "c1",
            "istio-ingressgateway",
            env(&[("POD_NAME", "portcullis-ingress-5d8f7c9b4-x2k7q")]),
        );
        assert_eq!(w.name, "portcullis-ingress");
        assert_eq!(w.canonical_service, "portcullis-ingress");
        assert_eq!(w.namespace, "edge");
        assert_eq!(w.cluster, "c1");
        assert_eq!(workload_of_pod("standalone", &l), "standalone");
        assert_eq!(workload_of_pod("a-b-c", &BTreeMap::new()), "a-b-c");
    }

    #[test]
    fn without_pod_environment_the_charts_deployment_name_is_used() {
        let w = Workload::derive(
            &labels(&[("istio", "egressgateway")]),
            "istio-system",
            DEFAULT_CLUSTER_ID,
            "istio-egressgateway",
            env(&[]),
        );
        assert_eq!(w.name, "istio-egressgateway");
        assert_eq!(Workload::default().name, "istio-ingressgateway");
    }
}
