//! A real Prometheus (the Debian package `prometheus`, installed by `./scripts/setup`; or
//! `$PROMETHEUS`) scraping the gateway as Istio's Prometheus scrapes a gateway pod, and a
//! PromQL client for its HTTP API.
//!
//! ```ignore
//! let prom = Prometheus::start(&[Scrape::new("kubernetes-pods", gw.merged_prometheus_addr())]).await;
//! let rows = prom.query_until("sum(istio_requests_total)", |r| !r.is_empty()).await;
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::eventually;
use super::ports::free_port;

/// The Prometheus binary, or a panic that says how to get it.
pub fn prometheus_binary() -> PathBuf {
    if let Ok(p) = std::env::var("PROMETHEUS") {
        return PathBuf::from(p);
    }
    for p in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "Prometheus is missing: run ./scripts/setup (Debian package `prometheus`) or set \
         PROMETHEUS=/path/to/prometheus"
    );
}

/// One scrape job: `job_name`, one target, `metrics_path`, and an optional regex of the metric
/// names to keep (`metric_relabel_configs`).
pub struct Scrape {
    pub job: String,
    pub target: SocketAddr,
    pub path: String,
    pub keep: Option<String>,
}

impl Scrape {
    /// `/stats/prometheus` on `target`, every metric kept.
    pub fn new(job: &str, target: SocketAddr) -> Scrape {
        Scrape {
            job: job.to_string(),
            target,
            path: "/stats/prometheus".to_string(),
            keep: None,
        }
    }

    /// Keeps only the metrics whose name matches `regex`.
    pub fn keep(mut self, regex: &str) -> Scrape {
        self.keep = Some(regex.to_string());
        self
    }

    fn yaml(&self) -> String {
        let mut s = format!(
            "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: ['{}']\n",
            self.job, self.path, self.target
        );
        if let Some(k) = &self.keep {
            s.push_str(&format!(
                "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: '{k}'\n        action: keep\n"
            ));
        }
        s
    }
}

/// A running Prometheus (killed on drop).
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone)]
pub struct Row {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

impl Row {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).and_then(Value::as_str).unwrap_or("")
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every second; returns once it is ready.
    pub async fn start(jobs: &[Scrape]) -> Prometheus {
        let bin = prometheus_binary();
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for j in jobs {
            config.push_str(&j.yaml());
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let p = Prometheus {
            child,
            addr,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            _dir: dir,
        };
        let url = format!("http://{addr}/-/ready");
        let client = p.client.clone();
        eventually(Duration::from_secs(60), "Prometheus ready", async || {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        p
    }

    /// The instant vector of `promql` now (panics on an API error: the query is wrong).
    pub async fn query(&self, promql: &str) -> Vec<Row> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let body = self
            .client
            .get(&url)
            .query(&[("query", promql)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{promql}: {e}: {body}"));
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| Row {
                        labels: r["metric"].as_object().cloned().unwrap_or_default(),
                        value: r["value"][1]
                            .as_str()
                            .unwrap_or("NaN")
                            .parse()
                            .unwrap_or(f64::NAN),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `promql` polled until `done` holds for its result (up to 60 s, a few scrapes).
    pub async fn query_until(&self, promql: &str, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let last = self.query(promql).await;
            if done(&last) {
                return last;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{promql}: not as expected within 60 s, last result {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
