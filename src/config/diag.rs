//! Diagnostics: every problem found while loading, validating or compiling, printed as
//! `FILE:LINE: Severity [CODE] Kind namespace/name: field.path: what is wrong (what was expected)`.
//!
//! The severity words and codes are `istioctl analyze`'s (istio/istio
//! `pkg/config/analysis/msg/messages.yaml`, `pkg/config/analysis/diag/level.go`): what Istio's
//! admission webhook rejects is `Error [IST0106]` (SchemaValidationError), a webhook warning is
//! `Warning [IST0133]` (SchemaWarning), an analyzer finding carries the analyzer's code.
//! Portcullis' own notes (a field it does not act on) carry no code.
//!
//! An error also says what it leaves out of what is served ([`Scope`]): the resource (a
//! webhook rejection, as if `kubectl apply` of that one resource failed), a part of it (a
//! Gateway server, a route's destination), or the whole configuration.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

use super::source::Origin;
use super::types::Kind;

/// istioctl's levels, worst first (`Ord`: `Error < Warning < Info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
            Severity::Info => "Info",
        }
    }

    /// istioctl `MessageThreshold.Set`: case-insensitive level names.
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_uppercase().as_str() {
            "ERROR" => Some(Severity::Error),
            "WARNING" => Some(Severity::Warning),
            "INFO" => Some(Severity::Info),
            _ => None,
        }
    }

    /// istioctl `Level.IsWorseThanOrEqualTo`.
    pub fn at_least(self, threshold: Severity) -> bool {
        self <= threshold
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `istioctl analyze` codes Portcullis reports (istio/istio
/// `pkg/config/analysis/msg/messages.yaml`).
pub mod code {
    /// ReferencedResourceNotFound: a gateway, host, subset or delegate that does not exist.
    pub const REFERENCED_RESOURCE_NOT_FOUND: &str = "IST0101";
    /// SchemaValidationError: what the admission webhook rejects.
    pub const SCHEMA_VALIDATION_ERROR: &str = "IST0106";
    /// VirtualServiceUnreachableRule.
    pub const VIRTUAL_SERVICE_UNREACHABLE_RULE: &str = "IST0130";
    /// VirtualServiceIneffectiveMatch.
    pub const VIRTUAL_SERVICE_INEFFECTIVE_MATCH: &str = "IST0131";
    /// VirtualServiceHostNotFoundInGateway.
    pub const VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY: &str = "IST0132";
    /// SchemaWarning: what the admission webhook accepts with a warning.
    pub const SCHEMA_WARNING: &str = "IST0133";
    /// GatewayDuplicateCertificate.
    pub const GATEWAY_DUPLICATE_CERTIFICATE: &str = "IST0138";
    /// ConflictingGateways.
    pub const CONFLICTING_GATEWAYS: &str = "IST0145";
    /// JwtClaimBasedRoutingWithoutRequestAuthN.
    pub const JWT_CLAIM_ROUTING_WITHOUT_REQUEST_AUTHN: &str = "IST0149";
    /// InvalidGatewayCredential.
    pub const INVALID_GATEWAY_CREDENTIAL: &str = "IST0161";
    /// ReferencedInternalGateway.
    pub const REFERENCED_INTERNAL_GATEWAY: &str = "IST0165";
    /// DestinationRuleSubsetNotSelectPods.
    pub const SUBSET_SELECTS_NOTHING: &str = "IST0173";
    /// UnknownDestinationRuleHost.
    pub const UNKNOWN_DESTINATION_RULE_HOST: &str = "IST0174";
    /// ConflictingServiceEntryProtocol.
    pub const CONFLICTING_SERVICE_ENTRY_PROTOCOL: &str = "IST0177";

    /// Every code in Istio's message catalogue, so `check --suppress` can warn about a code
    /// that does not exist, as istioctl does.
    pub const KNOWN: &[&str] = &[
        "IST0001", "IST0002", "IST0101", "IST0102", "IST0103", "IST0104", "IST0105", "IST0106",
        "IST0107", "IST0108", "IST0109", "IST0110", "IST0111", "IST0112", "IST0113", "IST0114",
        "IST0115", "IST0116", "IST0117", "IST0118", "IST0119", "IST0120", "IST0121", "IST0122",
        "IST0123", "IST0125", "IST0126", "IST0127", "IST0128", "IST0129", "IST0130", "IST0131",
        "IST0132", "IST0133", "IST0134", "IST0135", "IST0136", "IST0137", "IST0138", "IST0139",
        "IST0140", "IST0141", "IST0142", "IST0143", "IST0144", "IST0145", "IST0146", "IST0147",
        "IST0148", "IST0149", "IST0150", "IST0151", "IST0152", "IST0153", "IST0154", "IST0155",
        "IST0156", "IST0157", "IST0158", "IST0159", "IST0160", "IST0161", "IST0162", "IST0163",
        "IST0164", "IST0165", "IST0166", "IST0167", "IST0168", "IST0169", "IST0170", "IST0171",
        "IST0172", "IST0173", "IST0174", "IST0175", "IST0176", "IST0177",
    ];
}

/// What an error leaves out of what is served (warnings and infos leave out nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole resource: Istio's webhook would reject it, so it is not served (on a reload
    /// its last accepted version keeps serving, as a failed `kubectl apply` keeps the old one).
    Resource,
    /// A part that compile leaves out by itself (a Gateway server, a route, a destination).
    Part,
    /// The whole configuration: nothing of it can be applied (an unreadable directory, a
    /// security policy Portcullis cannot enforce).
    Config,
}

/// The object a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `VirtualService`, or the kind of an object Portcullis does not serve
    /// (`AuthorizationPolicy`).
    pub kind: Cow<'static, str>,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: Cow::Borrowed(kind.as_str()),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Kubernetes names are at most 253 characters; anything longer is cut.
        let (ns, name) = (shorten(&self.namespace, 253), shorten(&self.name, 253));
        write!(f, "{} {ns}/{name}", self.kind)
    }
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// istioctl's message code, where Istio has one.
    pub code: Option<&'static str>,
    /// What an error leaves out; meaningless for warnings.
    pub scope: Scope,
    pub origin: Option<Origin>,
    pub object: Option<ObjectRef>,
    /// Dotted field path inside the document, e.g. `spec.http[0].route[1].weight`.
    pub path: String,
    pub message: String,
    /// The line, when it is known better than from `path` (a YAML syntax error).
    pub line: Option<usize>,
}

/// The longest message and field path kept: a value echoed from a file (a 100 MB host name)
/// is cut in the middle, so the line still says what is wrong and what was expected.
pub const MAX_MESSAGE_CHARS: usize = 1024;
pub const MAX_PATH_CHARS: usize = 512;

impl Diagnostic {
    /// An error about the configuration as a whole (no file or object).
    pub fn config_error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code: None,
            scope: Scope::Config,
            origin: None,
            object: None,
            path: String::new(),
            message: clip(message.into(), MAX_MESSAGE_CHARS),
            line: None,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The 1-based line of the field (computed on demand).
    pub fn line(&self) -> Option<usize> {
        match (self.line, &self.origin) {
            (Some(l), _) => Some(l),
            (None, Some(o)) => Some(o.line_of(&self.path)),
            (None, None) => None,
        }
    }

    /// `FILE:LINE` of the field (computed on demand).
    pub fn location(&self) -> Option<String> {
        let o = self.origin.as_ref()?;
        Some(format!("{}:{}", o.file.display, self.line().unwrap_or(1)))
    }

    /// The diagnostic without its location: `Severity [CODE] Kind ns/name: path: message`.
    pub fn describe(&self) -> String {
        let mut s = self.severity.as_str().to_string();
        if let Some(code) = self.code {
            s.push_str(" [");
            s.push_str(code);
            s.push(']');
        }
        if let Some(obj) = &self.object {
            s.push_str(&format!(" {obj}:"));
        }
        if !self.path.is_empty() {
            s.push_str(&format!(" {}:", middle(&self.path, MAX_PATH_CHARS)));
        }
        s.push(' ');
        s.push_str(&middle(&self.message, MAX_MESSAGE_CHARS));
        s
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location() {
            write!(f, "{loc}: ")?;
        }
        f.write_str(&self.describe())
    }
}

/// Collects diagnostics about one object, so rules only say the path and the message.
pub struct Reporter<'a> {
    out: &'a mut Vec<Diagnostic>,
    origin: Option<Origin>,
    object: Option<ObjectRef>,
}

impl<'a> Reporter<'a> {
    pub fn new(
        out: &'a mut Vec<Diagnostic>,
        origin: Option<Origin>,
        object: Option<ObjectRef>,
    ) -> Self {
        Reporter {
            out,
            origin,
            object,
        }
    }

    /// What Istio's admission webhook rejects: `Error [IST0106]`, and the resource is left out.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(
            Severity::Error,
            Some(code::SCHEMA_VALIDATION_ERROR),
            Scope::Resource,
            path.into(),
            message.into(),
        );
    }

    /// An error that leaves out only part of the resource (compile leaves that part out).
    pub fn error_part(
        &mut self,
        code: Option<&'static str>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(
            Severity::Error,
            code,
            Scope::Part,
            path.into(),
            message.into(),
        );
    }

    /// An error that stops the whole configuration from being applied.
    pub fn error_config(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(
            Severity::Error,
            None,
            Scope::Config,
            path.into(),
            message.into(),
        );
    }

    /// What the admission webhook accepts with a warning: `Warning [IST0133]`.
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(
            Severity::Warning,
            Some(code::SCHEMA_WARNING),
            Scope::Part,
            path.into(),
            message.into(),
        );
    }

    /// An analyzer finding (`istioctl analyze`) with its code and level.
    pub fn finding(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(
            severity,
            Some(code),
            Scope::Part,
            path.into(),
            message.into(),
        );
    }

    /// Portcullis' own note (a field it does not act on, a mesh-only setting): a warning
    /// without an Istio code.
    pub fn note(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(
            Severity::Warning,
            None,
            Scope::Part,
            path.into(),
            message.into(),
        );
    }

    /// An informational note without an Istio code.
    pub fn info(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(
            Severity::Info,
            None,
            Scope::Part,
            path.into(),
            message.into(),
        );
    }

    fn push(
        &mut self,
        severity: Severity,
        code: Option<&'static str>,
        scope: Scope,
        path: String,
        message: String,
    ) {
        self.out.push(Diagnostic {
            severity,
            code,
            scope,
            origin: self.origin.clone(),
            object: self.object.clone(),
            path: clip(path, MAX_PATH_CHARS),
            message: clip(message, MAX_MESSAGE_CHARS),
            line: None,
        });
    }
}

/// All diagnostics of one load, errors first in file order.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// Warnings and infos.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    pub fn error_count(&self) -> usize {
        self.errors().count()
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.0.iter().filter(|d| d.severity == severity).count()
    }

    /// Stable order: by file, then line, errors before warnings at one place.
    pub fn sort(&mut self) {
        self.0.sort_by_cached_key(|d| {
            let file = d
                .origin
                .as_ref()
                .map(|o| o.file.display.clone())
                .unwrap_or_default();
            (file, d.line().unwrap_or(0), d.severity)
        });
    }

    /// Drops repeated diagnostics (the same place, field and message), keeping the first.
    /// Compared without computing lines, which re-parses the document.
    pub fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.0.retain(|d| {
            let place = d
                .origin
                .as_ref()
                .map(|o| (o.file.display.clone(), o.doc.index, o.item));
            seen.insert((
                place,
                d.line,
                d.severity,
                d.code,
                d.object.as_ref().map(ToString::to_string),
                d.path.clone(),
                d.message.clone(),
            ))
        });
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// `text` cut to at most `max` characters with `…` and the number of bytes left out, for
/// echoing a value a client or a config file supplied into a log line or a diagnostic.
pub fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => std::borrow::Cow::Owned(format!(
            "{}… ({} more bytes)",
            &text[..cut],
            text.len() - cut
        )),
    }
}

/// `text` with its middle cut when it has more than `max` characters: two thirds of `max` from
/// the start, a third from the end, and how many bytes were left out between.
pub fn middle(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    let chars = text.chars().count();
    if chars <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let head_end = text
        .char_indices()
        .nth(max * 2 / 3)
        .map_or(text.len(), |(i, _)| i);
    let tail_start = text
        .char_indices()
        .nth(chars - max / 3)
        .map_or(text.len(), |(i, _)| i);
    std::borrow::Cow::Owned(format!(
        "{}… ({} bytes left out) …{}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    ))
}

/// [`middle`] for an owned string (no copy when it fits).
fn clip(text: String, max: usize) -> String {
    match middle(&text, max) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cut) => cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse_as_istioctl_levels() {
        assert!(Severity::Error.at_least(Severity::Warning));
        assert!(Severity::Warning.at_least(Severity::Warning));
        assert!(!Severity::Info.at_least(Severity::Warning));
        assert_eq!(Severity::parse("warning"), Some(Severity::Warning));
        assert_eq!(Severity::parse("INFO"), Some(Severity::Info));
        assert_eq!(Severity::parse("fatal"), None);
    }

    #[test]
    fn a_config_error_has_no_location() {
        let d = Diagnostic::config_error("gateways: not a directory");
        assert_eq!(d.to_string(), "Error gateways: not a directory");
    }

    #[test]
    fn a_huge_echoed_value_is_cut_in_the_middle_keeping_both_ends() {
        let host = "h".repeat(100_000_000);
        let mut out = Vec::new();
        Reporter::new(&mut out, None, None).error(
            "spec.hosts[0]",
            format!("host `{host}` is not a valid FQDN (expected a DNS name)"),
        );
        let line = out[0].to_string();
        assert!(line.len() < 2 * MAX_MESSAGE_CHARS, "{} bytes", line.len());
        assert!(
            line.starts_with("Error [IST0106] spec.hosts[0]: host `hhh"),
            "{line}"
        );
        assert!(
            line.ends_with("hhh` is not a valid FQDN (expected a DNS name)"),
            "{line}"
        );
        assert!(line.contains("bytes left out"), "{line}");
        let name = ObjectRef::new(Kind::Gateway, "default", &"n".repeat(10_000));
        assert!(name.to_string().len() < 300);
    }

    #[test]
    fn shorten_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcdef", 3), "abc… (3 more bytes)");
        assert_eq!(shorten("ééé", 2), "éé… (2 more bytes)");
    }
}
