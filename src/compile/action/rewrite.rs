//! `rewrite`: the path (after a prefix, exact or regex match, or `uriRegexRewrite`) and the
//! authority, as Envoy's `prefix_rewrite` / `regex_rewrite` / `host_rewrite_literal` apply them.

use regex::Regex;
use serde::{Serialize, Serializer};

/// Path and authority rewrites (`rewrite`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

impl Rewrite {
    pub fn is_empty(&self) -> bool {
        self.path.is_none() && self.authority.is_none()
    }

    /// The rewritten path and query, if the path is rewritten (the query is kept as sent).
    pub fn path_and_query(&self, path: &str, query: Option<&str>) -> Option<String> {
        let mut out = self.path.as_ref()?.apply(path);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRewrite {
    /// After a prefix match: replace the matched prefix (Envoy `prefix_rewrite`).
    Prefix { prefix: String, replacement: String },
    /// After an exact or regex match: replace the whole path.
    Full(String),
    /// `uriRegexRewrite`: replace every match; `\1` groups already turned into `${1}`.
    Regex {
        #[serde(serialize_with = "regex_str")]
        pattern: Regex,
        replacement: String,
    },
}

fn regex_str<S: Serializer>(r: &Regex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

impl PathRewrite {
    /// The new path (query string untouched by the caller).
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathRewrite::Prefix {
                prefix,
                replacement,
            } => {
                let rest = if path.len() >= prefix.len() && path.is_char_boundary(prefix.len()) {
                    &path[prefix.len()..]
                } else {
                    path
                };
                let mut out = String::with_capacity(replacement.len() + rest.len());
                out.push_str(replacement);
                out.push_str(rest);
                out
            }
            PathRewrite::Full(p) => p.clone(),
            PathRewrite::Regex {
                pattern,
                replacement,
            } => pattern.replace_all(path, replacement.as_str()).into_owned(),
        }
    }
}

/// Converts an RE2/Envoy substitution (`\1`) into the regex crate's syntax (`${1}`).
pub fn re2_substitution(rewrite: &str) -> String {
    let mut out = String::with_capacity(rewrite.len());
    let mut chars = rewrite.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            '\\' if chars.peek() == Some(&'\\') => {
                chars.next();
                out.push('\\');
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrite_follows_envoy() {
        let r = |p: &str, rep: &str, path: &str| {
            PathRewrite::Prefix {
                prefix: p.into(),
                replacement: rep.into(),
            }
            .apply(path)
        };
        assert_eq!(r("/foo", "/bar", "/foo/x"), "/bar/x");
        assert_eq!(r("/foo", "/", "/foo/x"), "//x");
        assert_eq!(r("/", "/v2", "/x"), "/v2x");
    }

    #[test]
    fn regex_rewrite_uses_re2_groups() {
        let p = PathRewrite::Regex {
            pattern: Regex::new("^/service/([^/]+)(/.*)$").unwrap(),
            replacement: re2_substitution("\\2/instance/\\1"),
        };
        assert_eq!(p.apply("/service/foo/v1/api"), "/v1/api/instance/foo");
        assert_eq!(re2_substitution("$1"), "$$1");
    }

    #[test]
    fn the_query_is_kept_when_the_path_is_rewritten() {
        let r = Rewrite {
            path: Some(PathRewrite::Full("/new".into())),
            authority: None,
        };
        assert_eq!(
            r.path_and_query("/old", Some("a=1")).as_deref(),
            Some("/new?a=1")
        );
        assert_eq!(Rewrite::default().path_and_query("/old", None), None);
    }
}
