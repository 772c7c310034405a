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
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
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

impl Diagnostic {
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
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
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
            path,
            message,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcdef", 3), "abc… (3 more bytes)");
        assert_eq!(shorten("ééé", 2), "éé… (2 more bytes)");
    }
}
