//! `run`: load and compile, start the runtime, the admin and probe listeners, feed reloads to
//! the runtime, drain on SIGTERM (Envoy's drain under istio-agent: `runtime::drain`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use super::ports::bind_ports;
use crate::cli::RunArgs;
use crate::compile::mesh::MeshOverrides;
use crate::compile::mesh::MeshSettings;
use crate::observe::access_log::AccessLog;
use crate::observe::logging::LogControl;
use crate::reload::watch::watch;
use crate::reload::{
    load_and_compile_cached, Applied, ConfigSource, Loaded, Pipeline, ReloadStatus,
};
use crate::runtime::server::Gateway;
use crate::runtime::{DrainSettings, RuntimeOptions, State};
use crate::upstream::StatsRegistry;

/// Installs the diagnostics log (stderr, `RUST_LOG`, levels changeable by `/logging`).
pub fn init_logging() -> Arc<LogControl> {
    let ansi = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    Arc::new(LogControl::install(ansi))
}

pub fn run(args: RunArgs) -> i32 {
    let logs = init_logging();
    let source = ConfigSource {
        config_dir: args.config.config.clone(),
        instance: args.instance.instance(args.config.certs.clone()),
        mesh_file: args.mesh.clone(),
        overrides: MeshOverrides {
            log_format: args.log_format,
            outbound_policy: args.instance.outbound_policy,
            root_namespace: args.instance.root_namespace.clone(),
        },
        strict: args.strict,
    };
    let stats = Arc::new(StatsRegistry::default());
    let started = Instant::now();
    let mut cache = Pipeline::default();
    let loaded = match load_and_compile_cached(&source, &stats, &mut cache) {
        Ok(l) => l,
        Err(diags) => {
            eprint!("{diags}");
            error!(
                "{} error(s) in {}; not starting",
                diags.error_count(),
                source.config_dir.display()
            );
            return 1;
        }
    };
    loaded.log();
    let s = &loaded.snapshot.summary;
    info!(
        "loaded {} in {} ms: {} Gateways, {} VirtualServices, {} ServiceEntries, {} DestinationRules from {} files; {} listeners, {} virtual hosts, {} routes ({:?}, labels {:?})",
        source.config_dir.display(),
        started.elapsed().as_millis(),
        s.gateways,
        s.virtual_services,
        s.service_entries,
        s.destination_rules,
        s.files,
        loaded.snapshot.listeners.len(),
        s.virtual_hosts,
        s.routes,
        loaded.snapshot.instance.role,
        loaded.snapshot.instance.labels,
    );
    if s.files == 0 {
        // The container image ships an empty config directory: say what to do about it.
        warn!(
            "{} has no Istio YAML (*.yaml, *.yml): nothing is served until files appear there; the directory is watched, so mount or copy your Gateways, VirtualServices, ServiceEntries and DestinationRules into it",
            source.config_dir.display()
        );
    }
    let mesh = &loaded.snapshot.mesh;
    if let Some(file) = &mesh.file {
        info!(
            "mesh {file}: access log {:?}, outbound policy {:?}, numTrustedProxies {}, forwardClientCertDetails {:?}, proxyProtocol {}",
            mesh.access_log_target,
            loaded.snapshot.instance.outbound_policy,
            mesh.topology.num_trusted_proxies,
            mesh.topology.forward_client_cert,
            mesh.topology.proxy_protocol,
        );
    }
    // One worker needs no work-stealing scheduler: a current-thread runtime saves its
    // cross-thread wake-ups (the blocking pool for reloads exists either way).
    let mut builder = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().thread_name("portcullis-worker");
    if let Some(n) = args.threads.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(serve(args, source, loaded, cache, stats, logs));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn serve(
    args: RunArgs,
    source: ConfigSource,
    loaded: Loaded,
    cache: Pipeline,
    stats: Arc<StatsRegistry>,
    logs: Arc<LogControl>,
) -> i32 {
    crate::runtime::limits::raise_file_limit();
    // Istio's defaults, then the mesh file, then the flags.
    let drain_flags = (args.drain_duration, args.termination_drain_duration);
    let drain = drain_settings(&loaded.snapshot.mesh, drain_flags);
    let options = RuntimeOptions {
        drain,
        connect_sni_check: args.connect_sni_check,
        limits: args.limits.limits(),
        admin: Some(args.admin),
        server_name: args.server_name(),
        accept_http10: args.accept_http10,
        retry_buffer_limit: args.retry_buffer_limit,
    };
    let status = Arc::new(Mutex::new(ReloadStatus::initial(&loaded)));
    let loaded_counts = loaded.left_out.counts();
    let access_log = AccessLog::start(loaded.snapshot.mesh.access_log.clone());
    let state = match State::new(loaded.snapshot, access_log, stats, options) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    state.metrics.config_generation.set(1);
    let (kinds, parts, stale) = &loaded_counts;
    state.metrics.left_out(kinds, *parts, *stale);
    // The span exporter follows the mesh settings (each reload below re-points it).
    state
        .spans
        .configure(state.snapshot.load().mesh.tracing.tracer.clone());
    // jwksUri keys: fetched and refreshed in the background, never on the request path.
    source.instance.security.jwks.spawn();

    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut sighup = signal(SignalKind::hangup()).ok();

    // Admin, status and Prometheus ports first: one that cannot be bound stops start-up.
    let ports = match bind_ports(&args) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    let threads = args.threads.unwrap_or_else(num_threads);
    let gateway = match Gateway::start(state.clone(), threads) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    ports.serve(&args, gateway.clone(), status.clone(), logs);
    let reloader = Arc::new(Reloader {
        source,
        gateway: gateway.clone(),
        drain_flags,
        status,
        cache: Arc::new(Mutex::new(cache)),
    });
    let mut dirs = vec![
        reloader.source.config_dir.clone(),
        reloader.source.instance.certs_dir.clone(),
    ];
    // The mesh file's directory: a ConfigMap mount swaps its `..data` symlink there.
    if let Some(mesh) = &reloader.source.mesh_file {
        dirs.push(match mesh.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        });
    }
    let trigger = watch(dirs, args.watch, move |reason| {
        let reloader = reloader.clone();
        async move { reloader.reload(reason).await }
    });
    state.readiness.initialized();
    info!("ready: {} listener(s) bound", gateway.addresses().len());

    // SIGTERM drains (Istio's pod shutdown); SIGINT and /quitquitquit skip the drain duration.
    let graceful = loop {
        tokio::select! {
            _ = recv(&mut sighup) => {
                info!("SIGHUP: reloading");
                let _ = trigger.send("SIGHUP").await;
            }
            _ = recv(&mut sigterm) => break true,
            _ = recv(&mut sigint) => break false,
            _ = gateway.quit_requested() => break false,
        }
    };
    // A second signal cuts the drain duration short.
    let hurry = async {
        tokio::select! {
            _ = recv(&mut sigterm) => {}
            _ = recv(&mut sigint) => {}
        }
    };
    gateway.shutdown(graceful, hurry).await;
    0
}

/// Rebuilds the snapshot off the request path and hands it to the running gateway; never
/// leaves a half-applied config (all or nothing).
struct Reloader {
    source: ConfigSource,
    gateway: Arc<Gateway>,
    /// `--drain-duration`, `--termination-drain-duration`: they win over the mesh file.
    drain_flags: (Option<Duration>, Option<Duration>),
    status: Arc<Mutex<ReloadStatus>>,
    /// What the last load keeps for the next: the parse of every file (a reload re-parses
    /// changed files only), last good file contents, last accepted resources.
    cache: Arc<Mutex<Pipeline>>,
}

impl Reloader {
    async fn reload(&self, reason: &str) {
        let start = Instant::now();
        let state = &self.gateway.state;
        let (source, stats, cache) = (self.source.clone(), state.stats.clone(), self.cache.clone());
        let built = tokio::task::spawn_blocking(move || {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            load_and_compile_cached(&source, &stats, &mut cache)
        })
        .await;
        let result = match built {
            Ok(Ok(mut loaded)) => {
                loaded.log();
                let applied = Applied::of(&mut loaded);
                let snapshot = loaded.snapshot;
                let access_log = snapshot.mesh.access_log.clone();
                let tracer = snapshot.mesh.tracing.tracer.clone();
                let drain = drain_settings(&snapshot.mesh, self.drain_flags);
                self.gateway
                    .apply(snapshot)
                    .map(|()| {
                        state.access_log.configure(access_log);
                        state.spans.configure(tracer);
                        state.drain.set_settings(drain);
                        applied
                    })
                    .map_err(|e| e.to_string())
            }
            Ok(Err(diags)) => Err(format!("{} error(s):\n{diags}", diags.error_count())),
            Err(e) => Err(format!("config build task failed: {e}")),
        };
        let elapsed = start.elapsed();
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(applied) => {
                let counts = applied.left_out.counts();
                let changes = status.succeeded(applied, elapsed).summary();
                state.metrics.left_out(&counts.0, counts.1, counts.2);
                info!(
                    "reload {} ({reason}): generation {} in {} ms, files {}: {changes}",
                    status.last_result,
                    status.generation,
                    elapsed.as_millis(),
                    status.files_hash,
                );
                state
                    .metrics
                    .reloads
                    .with_label_values(&[status.last_result.as_str()])
                    .inc();
                state
                    .metrics
                    .config_generation
                    .set(status.generation as i64);
            }
            Err(e) => {
                error!(
                    "reload failed ({reason}) in {} ms; still serving generation {}: {e}",
                    elapsed.as_millis(),
                    status.generation
                );
                status.failed(e, elapsed);
                state.metrics.reloads.with_label_values(&["error"]).inc();
            }
        }
    }
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn num_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The drain durations: the mesh file's (Istio's defaults when it says nothing), then the flags.
fn drain_settings(
    mesh: &MeshSettings,
    (drain, termination): (Option<Duration>, Option<Duration>),
) -> DrainSettings {
    DrainSettings {
        drain_duration: mesh.drain_duration,
        termination_drain_duration: mesh.termination_drain_duration,
    }
    .overridden_by(drain, termination)
}
