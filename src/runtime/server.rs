//! `portcullis run`: load, compile, bind, serve, reload on change, drain on SIGTERM.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::apps::http_app::HttpServer;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use super::listeners::{serve_app, Listeners};
use super::proxy::Edge;
use super::{RuntimeOptions, State};
use crate::cli::RunArgs;
use crate::config::load::ParseCache;
use crate::observe::access_log::AccessLog;
use crate::observe::admin::Admin;
use crate::reload::{load_and_compile_cached, ConfigSource, ReloadStatus, Reloader};
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
    };
    let stats = Arc::new(StatsRegistry::default());
    let started = Instant::now();
    let mut cache = ParseCache::default();
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
    for w in loaded.warnings.warnings() {
        warn!("{w}");
    }
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
    loaded: crate::reload::Loaded,
    cache: ParseCache,
    stats: Arc<StatsRegistry>,
) -> i32 {
    let options = RuntimeOptions {
        drain_timeout: args.drain_timeout,
        connect_sni_check: args.connect_sni_check,
    };
    let status = ReloadStatus::initial(&loaded);
    let state = match State::new(
        loaded.snapshot,
        AccessLog::stdout(args.log_format),
        stats,
        options,
        status,
    ) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    state.metrics.config_generation.set(1);

    let conf = ServerConf {
        threads: args.threads.unwrap_or_else(num_threads),
        // Idle upstream connections kept for reuse (shared by every upstream).
        upstream_keepalive_pool_size: 1024,
        ..Default::default()
    };
    let mut proxy = pingora_proxy::http_proxy(
        &Arc::new(conf),
        Edge {
            state: state.clone(),
        },
    );
    let mut opts = HttpServerOptions::default();
    opts.h2c = true;
    proxy.server_options = Some(opts);
    let listeners = Arc::new(Listeners::new(state.clone(), Arc::new(proxy)));

    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut sighup = signal(SignalKind::hangup()).ok();

    let admin_listener = match super::listeners::bind(args.admin, false) {
        Ok(l) => l,
        Err(e) => {
            error!("cannot listen on the admin address {}: {e}", args.admin);
            return 1;
        }
    };
    let admin = Arc::new(HttpServer::new_app(Admin {
        state: state.clone(),
    }));
    tokio::spawn(serve_app(admin_listener, admin));
    info!("admin listening on http://{}", args.admin);

    let snapshot = state.snapshot.load_full();
    match listeners.prepare(&snapshot) {
        Ok(prepared) => listeners.commit(prepared, &snapshot),
        Err(e) => {
            error!("{e}");
            return 1;
        }
    }
    tokio::spawn(state.dns.clone().refresh_loop());
    tokio::spawn(warn_expiring_certificates(state.clone()));
    let reloader = Arc::new(Reloader {
        source,
        state: state.clone(),
        listeners: listeners.clone(),
        cache: Arc::new(std::sync::Mutex::new(cache)),
    });
    let trigger = reloader.watch(args.watch);
    state.ready.store(true, Relaxed);
    info!("ready: {} listener(s) bound", listeners.addresses().len());

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
    state.ready.store(false, Relaxed);
    let in_flight = listeners.connections.load(Relaxed);
    info!(
        "shutting down: draining {in_flight} connection(s) for up to {:?}",
        state.options.drain_timeout
    );
    listeners.shutdown().await;
    let deadline = Instant::now() + state.options.drain_timeout;
    while listeners.connections.load(Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = listeners.connections.load(Relaxed);
    if left > 0 {
        warn!("drain timeout: closing {left} connection(s) still open");
    } else {
        info!("drained; exiting");
    }
    state.access_log.flush();
    0
}

/// A long-running gateway keeps warning while a served certificate nears its expiry (reloads
/// and start-up warn too).
async fn warn_expiring_certificates(state: Arc<State>) {
    use crate::compile::listener::{ChainAction, ListenerKind};
    let mut tick = tokio::time::interval(Duration::from_secs(6 * 3600));
    tick.tick().await;
    loop {
        tick.tick().await;
        let snapshot = state.snapshot.load_full();
        for l in snapshot.listeners.values() {
            let ListenerKind::Tls(chains) = &l.kind else {
                continue;
            };
            for c in &chains.chains {
                let tls = match &c.action {
                    ChainAction::TerminateHttp { tls, .. }
                    | ChainAction::TerminateTcp { tls, .. } => tls,
                    ChainAction::Passthrough { .. } => continue,
                };
                for cert in tls.certificates.iter() {
                    if let Some(w) = cert.expiry_warning() {
                        warn!(listener = %l.address, "{w}");
                    }
                }
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
