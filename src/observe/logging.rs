//! The diagnostics log on stderr, with levels that change while the gateway runs: Envoy's admin
//! `/logging` (Envoy `source/server/admin/logs_handler.cc`): `?level=L` sets every logger,
//! `?<logger>=L` one, `?paths=a:L,b:L` several; the listing is `active loggers:` then
//! `  name: level` lines. Envoy's loggers become named groups of `tracing` targets (the modules
//! of this crate, Pingora's crates, ...); a Rust target path such as `portcullis::runtime::proxy`
//! is accepted wherever a logger name is (Envoy's fine-grain loggers take a file path there).
//! The start-up levels come from `RUST_LOG` (default `info`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Mutex;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Envoy-style logger names and the `tracing` targets each one covers.
pub const LOGGERS: &[(&str, &[&str])] = &[
    ("admin", &["portcullis::admin"]),
    ("app", &["portcullis::app"]),
    ("compile", &["portcullis::compile"]),
    ("config", &["portcullis::config"]),
    (
        "dns",
        &["portcullis::dns", "hickory_resolver", "hickory_proto"],
    ),
    ("observe", &["portcullis::observe"]),
    ("reload", &["portcullis::reload", "notify"]),
    ("runtime", &["portcullis::runtime"]),
    ("tls", &["portcullis::tls"]),
    ("upstream", &["portcullis::upstream"]),
    (
        "pingora",
        &[
            "pingora_core",
            "pingora_proxy",
            "pingora_pool",
            "pingora_load_balancing",
        ],
    ),
    ("http2", &["h2"]),
];

/// Envoy's level names, most verbose first.
const LEVELS: [&str; 7] = [
    "trace", "debug", "info", "warning", "error", "critical", "off",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("invalid number of parameters")]
    Parameters,
    #[error("unknown logger name `{0}`")]
    UnknownLogger(String),
    #[error("unknown level `{0}` (expected one of {levels})", levels = LEVELS.join(", "))]
    Level(String),
    #[error("empty logger name or empty logger level")]
    Empty,
    #[error("the log filter cannot be changed: {0}")]
    Apply(String),
}

fn parse_level(s: &str) -> Result<LevelFilter, LogError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warning" | "warn" => LevelFilter::WARN,
        "error" | "critical" | "err" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => return Err(LogError::Level(s.to_string())),
    })
}

fn level_name(l: LevelFilter) -> &'static str {
    match l {
        LevelFilter::TRACE => "trace",
        LevelFilter::DEBUG => "debug",
        LevelFilter::INFO => "info",
        LevelFilter::WARN => "warning",
        LevelFilter::ERROR => "error",
        _ => "off",
    }
}

/// The levels in force: a default, per-target levels, and `RUST_LOG` directives that are more
/// than `target=level` (span or field filters), kept verbatim.
#[derive(Debug, Clone, PartialEq)]
struct Levels {
    default: LevelFilter,
    targets: BTreeMap<String, LevelFilter>,
    verbatim: Vec<String>,
}

impl Levels {
    fn parse(directives: &str) -> Levels {
        let mut levels = Levels {
            default: LevelFilter::INFO,
            targets: BTreeMap::new(),
            verbatim: Vec::new(),
        };
        for d in directives
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            match d.split_once('=') {
                None => match parse_level(d) {
                    Ok(l) => levels.default = l,
                    // A bare target means "everything" for it.
                    Err(_) if !d.contains(['[', '{']) => {
                        levels.targets.insert(d.to_string(), LevelFilter::TRACE);
                    }
                    Err(_) => levels.verbatim.push(d.to_string()),
                },
                Some((target, level)) => match parse_level(level) {
                    Ok(l) if !target.contains(['[', '{']) => {
                        levels.targets.insert(target.to_string(), l);
                    }
                    _ => levels.verbatim.push(d.to_string()),
                },
            }
        }
        levels
    }

    fn directives(&self) -> String {
        let mut parts = vec![level_name_tracing(self.default).to_string()];
        parts.extend(
            self.targets
                .iter()
                .map(|(t, l)| format!("{t}={}", level_name_tracing(*l))),
        );
        parts.extend(self.verbatim.iter().cloned());
        parts.join(",")
    }

    /// The level a target logs at: its most specific directive, else the default.
    fn level_of(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .filter(|(t, _)| {
                target == t.as_str()
                    || target
                        .strip_prefix(t.as_str())
                        .is_some_and(|rest| rest.starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |(_, l)| *l)
    }

    /// Sets every target of `name` (a logger or a target path) and drops the directives below.
    fn set(&mut self, name: &str, level: LevelFilter) -> Result<(), LogError> {
        let targets: Vec<&str> = match LOGGERS.iter().find(|(n, _)| *n == name) {
            Some((_, targets)) => targets.to_vec(),
            None if is_target_path(name) => vec![name],
            None => return Err(LogError::UnknownLogger(name.to_string())),
        };
        for t in targets {
            self.targets
                .retain(|k, _| !(k == t || k.starts_with(&format!("{t}::"))));
            self.targets.insert(t.to_string(), level);
        }
        Ok(())
    }

    fn set_all(&mut self, level: LevelFilter) {
        self.default = level;
        self.targets.clear();
    }
}

fn level_name_tracing(l: LevelFilter) -> &'static str {
    match l {
        LevelFilter::TRACE => "trace",
        LevelFilter::DEBUG => "debug",
        LevelFilter::INFO => "info",
        LevelFilter::WARN => "warn",
        LevelFilter::ERROR => "error",
        _ => "off",
    }
}

/// A Rust module path of this crate or a crate it logs through (`a`, `a::b`, `a_b::c`).
fn is_target_path(s: &str) -> bool {
    !s.is_empty()
        && s.split("::")
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && (s.starts_with("portcullis")
            || LOGGERS
                .iter()
                .flat_map(|(_, t)| t.iter())
                .any(|t| s == *t || s.starts_with(&format!("{t}::"))))
}

type Apply = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The live log levels: lists them and changes them for the running process.
pub struct LogControl {
    levels: Mutex<Levels>,
    apply: Apply,
}

impl LogControl {
    /// Installs the process-wide subscriber (stderr; levels from `RUST_LOG`, default `info`)
    /// and returns the control over its levels. Events of the `log` crate (Pingora's) are
    /// forwarded at every level, so raising a level reaches them too.
    pub fn install(ansi: bool) -> LogControl {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::reload;
        let levels = Levels::parse(&std::env::var("RUST_LOG").unwrap_or_default());
        let filter =
            EnvFilter::try_new(levels.directives()).unwrap_or_else(|_| EnvFilter::new("info"));
        let (filter, handle) = reload::Layer::new(filter);
        let subscriber = tracing_subscriber::registry().with(filter).with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi),
        );
        if tracing::subscriber::set_global_default(subscriber).is_ok() {
            let _ = tracing_log::LogTracer::builder()
                .with_max_level(tracing_log::log::LevelFilter::Trace)
                .init();
        }
        LogControl {
            levels: Mutex::new(levels),
            apply: Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
        }
    }

    /// Envoy's listing: `active loggers:` and one `  name: level` line per logger.
    pub fn list(&self) -> String {
        let levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from("active loggers:\n");
        for (name, targets) in LOGGERS {
            let level = targets
                .first()
                .map_or(levels.default, |t| levels.level_of(t));
            out.push_str(&format!("  {name}: {}\n", level_name(level)));
        }
        for (target, level) in &levels.targets {
            let covered = LOGGERS.iter().any(|(_, ts)| ts.contains(&target.as_str()));
            if !covered {
                out.push_str(&format!("  {target}: {}\n", level_name(*level)));
            }
        }
        out
    }

    /// Applies one `/logging` query (`level=L`, `paths=a:L,b:L` or `<logger>=L`), all or nothing.
    pub fn change(&self, params: &[(String, String)]) -> Result<(), LogError> {
        let [(key, value)] = params else {
            return Err(LogError::Parameters);
        };
        let mut levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = levels.clone();
        match key.as_str() {
            "level" => next.set_all(parse_level(value)?),
            "paths" => {
                for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (name, level) = pair.rsplit_once(':').ok_or(LogError::Empty)?;
                    let (name, level) = (name.trim(), level.trim());
                    if name.is_empty() || level.is_empty() {
                        return Err(LogError::Empty);
                    }
                    next.set(name, parse_level(level)?)?;
                }
            }
            name => next.set(name, parse_level(value)?)?,
        }
        let filter =
            EnvFilter::from_str(&next.directives()).map_err(|e| LogError::Apply(e.to_string()))?;
        (self.apply)(filter).map_err(LogError::Apply)?;
        tracing::info!("log levels changed: {}", next.directives());
        *levels = next;
        Ok(())
    }

    /// A control that changes nothing but its own record (for tests of the admin endpoint).
    pub fn detached(directives: &str) -> LogControl {
        LogControl {
            levels: Mutex::new(Levels::parse(directives)),
            apply: Box::new(|_| Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn lists_every_logger_with_its_level_from_rust_log() {
        let c = LogControl::detached("warn,portcullis::runtime=debug");
        let list = c.list();
        assert!(list.starts_with("active loggers:\n"), "{list}");
        assert!(list.contains("  runtime: debug\n"), "{list}");
        assert!(list.contains("  admin: warning\n"), "{list}");
        assert!(list.contains("  pingora: warning\n"), "{list}");
    }

    // Envoy logs_handler.cc changeLogLevel: level= sets all, paths= several, name= one; an
    // unknown logger or level is refused and nothing changes.
    #[test]
    fn changes_all_one_or_several_and_refuses_unknown_names() {
        let c = LogControl::detached("info");
        c.change(&p("level", "debug")).unwrap();
        assert!(c.list().contains("  tls: debug\n"));
        c.change(&p("runtime", "error")).unwrap();
        assert!(c.list().contains("  runtime: error\n"));
        c.change(&p("paths", "tls:warning,portcullis::runtime::proxy:trace"))
            .unwrap();
        let list = c.list();
        assert!(list.contains("  tls: warning\n"), "{list}");
        assert!(
            list.contains("  portcullis::runtime::proxy: trace\n"),
            "{list}"
        );
        assert_eq!(
            c.change(&p("nosuch", "debug")),
            Err(LogError::UnknownLogger("nosuch".into()))
        );
        assert_eq!(
            c.change(&p("level", "loud")),
            Err(LogError::Level("loud".into()))
        );
        assert_eq!(
            c.change(&[("a".into(), "b".into()), ("c".into(), "d".into())]),
            Err(LogError::Parameters)
        );
        assert!(
            c.list().contains("  tls: warning\n"),
            "unchanged by refusals"
        );
    }

    #[test]
    fn directives_rebuild_the_filter_with_the_most_specific_target_winning() {
        let mut l = Levels::parse("info,portcullis::runtime::proxy=trace,x[span]=debug");
        assert_eq!(l.level_of("portcullis::runtime::proxy"), LevelFilter::TRACE);
        assert_eq!(
            l.level_of("portcullis::runtime::listeners"),
            LevelFilter::INFO
        );
        l.set("runtime", LevelFilter::WARN).unwrap();
        assert_eq!(l.level_of("portcullis::runtime::proxy"), LevelFilter::WARN);
        assert_eq!(
            l.directives(),
            "info,portcullis::runtime=warn,x[span]=debug"
        );
        assert!(EnvFilter::try_new(l.directives()).is_ok());
    }
}
