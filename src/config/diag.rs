//! Diagnostics: every problem found while loading or validating, printed as
//! `FILE:LINE: Kind namespace/name: field.path: what is wrong (what was expected)`.

use std::fmt;

use super::source::Origin;
use super::types::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// The object a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
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
    pub origin: Option<Origin>,
    pub object: Option<ObjectRef>,
    /// Dotted field path inside the document, e.g. `spec.http[0].route[1].weight`.
    pub path: String,
    pub message: String,
}

/// The longest message and field path kept: a value echoed from a file (a 100 MB host name)
/// is cut in the middle, so the line still says what is wrong and what was expected.
pub const MAX_MESSAGE_CHARS: usize = 1024;
pub const MAX_PATH_CHARS: usize = 512;

impl Diagnostic {
    /// An error about no particular object (a file that cannot be read, invalid YAML).
    pub fn plain(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            origin: None,
            object: None,
            path: String::new(),
            message: clip(message.into(), MAX_MESSAGE_CHARS),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `FILE:LINE` of the field (computed on demand).
    pub fn location(&self) -> Option<String> {
        self.origin
            .as_ref()
            .map(|o| format!("{}:{}", o.file.display, o.line_of(&self.path)))
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location() {
            write!(f, "{loc}: ")?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let Some(obj) = &self.object {
            write!(f, "{obj}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", middle(&self.path, MAX_PATH_CHARS))?;
        }
        f.write_str(&middle(&self.message, MAX_MESSAGE_CHARS))
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

    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path.into(), message.into());
    }

    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path.into(), message.into());
    }

    fn push(&mut self, severity: Severity, path: String, message: String) {
        self.out.push(Diagnostic {
            severity,
            origin: self.origin.clone(),
            object: self.object.clone(),
            path: clip(path, MAX_PATH_CHARS),
            message: clip(message, MAX_MESSAGE_CHARS),
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

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    pub fn error_count(&self) -> usize {
        self.errors().count()
    }

    /// Stable order: by file, then line, errors before warnings at one place.
    pub fn sort(&mut self) {
        self.0.sort_by_cached_key(|d| {
            let (file, line) = d
                .origin
                .as_ref()
                .map(|o| (o.file.display.clone(), o.line_of(&d.path)))
                .unwrap_or_default();
            (file, line, d.severity)
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
    fn a_huge_echoed_value_is_cut_in_the_middle_keeping_both_ends() {
        let host = "h".repeat(100_000_000);
        let mut out = Vec::new();
        Reporter::new(&mut out, None, None).error(
            "spec.hosts[0]",
            format!("host `{host}` is not a valid FQDN (expected a DNS name)"),
        );
        let line = out[0].to_string();
        assert!(line.len() < 2 * MAX_MESSAGE_CHARS, "{} bytes", line.len());
        assert!(line.starts_with("spec.hosts[0]: host `hhh"), "{line}");
        assert!(
            line.ends_with("hhh` is not a valid FQDN (expected a DNS name)"),
            "{line}"
        );
        assert!(line.contains("bytes left out"), "{line}");
        let name = ObjectRef {
            kind: crate::config::types::Kind::Gateway,
            namespace: "default".into(),
            name: "n".repeat(10_000),
        };
        assert!(name.to_string().len() < 300);
    }

    #[test]
    fn shorten_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcdef", 3), "abc… (3 more bytes)");
        assert_eq!(shorten("ééé", 2), "éé… (2 more bytes)");
    }
}
