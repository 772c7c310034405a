//! `run`: load and compile, start the runtime and the admin listener, feed reloads to the
//! runtime, drain on SIGTERM.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pingora::apps::http_app::HttpServer;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use crate::admin::Admin;
use crate::cli::RunArgs;
use crate::observe::access_log::AccessLog;
use crate::reload::watch::watch;
use crate::reload::{
    load_and_compile_cached, Applied, ConfigSource, Loaded, Pipeline, ReloadStatus,
};
use crate::runtime::listeners::{bind, serve_app};
use crate::runtime::server::Gateway;
use crate::runtime::{RuntimeOptions, State};
use crate::upstream::StatsRegistry;

pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .try_init();
}

pub fn run(args: RunArgs) -> i32 {
    init_logging();
    let source = ConfigSource {
        config_dir: args.config.config.clone(),
        instance: args.instance.instance(args.config.certs.clone()),
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
    let code = runtime.block_on(serve(args, source, loaded, cache, stats));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn serve(
    args: RunArgs,
    source: ConfigSource,
    loaded: Loaded,
    cache: Pipeline,
    stats: Arc<StatsRegistry>,
) -> i32 {
    let options = RuntimeOptions {
        drain_timeout: args.drain_timeout,
        connect_sni_check: args.connect_sni_check,
    };
    let status = Arc::new(Mutex::new(ReloadStatus::initial(&loaded)));
    let loaded_counts = loaded.left_out.counts();
    let state = match State::new(
        loaded.snapshot,
        AccessLog::stdout(args.log_format),
        stats,
        options,
    ) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    state.metrics.config_generation.set(1);
    let (kinds, parts, stale) = &loaded_counts;
    state.metrics.left_out(kinds, *parts, *stale);

    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut sighup = signal(SignalKind::hangup()).ok();

    let admin_listener = match bind(args.admin, false) {
        Ok(l) => l,
        Err(e) => {
            error!("cannot listen on the admin address {}: {e}", args.admin);
            return 1;
        }
    };
    let admin = Arc::new(HttpServer::new_app(Admin {
        state: state.clone(),
        reload: status.clone(),
    }));
    tokio::spawn(serve_app(admin_listener, admin));
    info!("admin listening on http://{}", args.admin);

    let threads = args.threads.unwrap_or_else(num_threads);
    let gateway = match Gateway::start(state.clone(), threads) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    let reloader = Arc::new(Reloader {
        source,
        gateway: gateway.clone(),
        status,
        cache: Arc::new(Mutex::new(cache)),
    });
    let dirs = vec![
        reloader.source.config_dir.clone(),
        reloader.source.instance.certs_dir.clone(),
    ];
    let trigger = watch(dirs, args.watch, move |reason| {
        let reloader = reloader.clone();
        async move { reloader.reload(reason).await }
    });
    state.ready.store(true, Relaxed);
    info!("ready: {} listener(s) bound", gateway.addresses().len());

    loop {
        tokio::select! {
            _ = recv(&mut sighup) => {
                info!("SIGHUP: reloading");
                let _ = trigger.send("SIGHUP").await;
            }
            _ = recv(&mut sigterm) => break,
            _ = recv(&mut sigint) => break,
        }
    }
    // Fail readiness first so load balancers stop sending, then stop accepting and drain.
    gateway.shutdown().await;
    0
}

/// Rebuilds the snapshot off the request path and hands it to the running gateway; never
/// leaves a half-applied config (all or nothing).
struct Reloader {
    source: ConfigSource,
    gateway: Arc<Gateway>,
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
                self.gateway
                    .apply(loaded.snapshot)
                    .map(|()| applied)
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
