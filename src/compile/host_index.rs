//! The host index: request Host → entry in O(labels) hash lookups, whatever the number of
//! hosts (exact map first, then wildcard suffixes longest first, then `*`). Used for virtual
//! hosts, the service registry and TLS server names alike.

use std::collections::HashMap;

use crate::config::host::HostPattern;

/// Finds the most specific entry for a host, Envoy's way.
#[derive(Debug, Default)]
pub struct HostIndex<T> {
    exact: HashMap<String, T>,
    /// Keyed by the text after `*` (`.example.com`).
    wildcard: HashMap<String, T>,
    any: Option<T>,
    /// True when some wildcard suffix does not start with a dot (`*foo.com`): lookups must then
    /// try every suffix, not only label boundaries.
    partial_wildcards: bool,
    /// Longest wildcard suffix, to bound the lookup.
    longest_suffix: usize,
}

impl<T> HostIndex<T> {
    pub fn new() -> Self {
        HostIndex {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
            partial_wildcards: false,
            longest_suffix: 0,
        }
    }

    /// Inserts unless the pattern is already present (first wins); returns whether it was new.
    pub fn insert(&mut self, pattern: &HostPattern, value: T) -> bool {
        match pattern {
            HostPattern::Exact(h) => {
                if self.exact.contains_key(h) {
                    return false;
                }
                self.exact.insert(h.clone(), value);
            }
            HostPattern::Wildcard(s) if s.is_empty() => {
                if self.any.is_some() {
                    return false;
                }
                self.any = Some(value);
            }
            HostPattern::Wildcard(s) => {
                if self.wildcard.contains_key(s) {
                    return false;
                }
                self.partial_wildcards |= !s.starts_with('.');
                self.longest_suffix = self.longest_suffix.max(s.len());
                self.wildcard.insert(s.clone(), value);
            }
        }
        true
    }

    pub fn get_mut(&mut self, pattern: &HostPattern) -> Option<&mut T> {
        match pattern {
            HostPattern::Exact(h) => self.exact.get_mut(h),
            HostPattern::Wildcard(s) if s.is_empty() => self.any.as_mut(),
            HostPattern::Wildcard(s) => self.wildcard.get_mut(s),
        }
    }

    /// `host` must already be normalised (lower-case, no port).
    pub fn lookup(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        if !self.wildcard.is_empty() {
            // Longest suffix first: walk start positions left to right, keeping at least one
            // character before the suffix (`*.a.com` does not match `.a.com`).
            let start = host.len().saturating_sub(self.longest_suffix).max(1);
            for (i, b) in host.bytes().enumerate().skip(start) {
                if (self.partial_wildcards || b == b'.') && host.is_char_boundary(i) {
                    if let Some(v) = self.wildcard.get(&host[i..]) {
                        return Some(v);
                    }
                }
            }
        }
        self.any.as_ref()
    }

    /// The `*` entry (also what a TLS client without SNI gets).
    pub fn any(&self) -> Option<&T> {
        self.any.as_ref()
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.any.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(patterns: &[&str]) -> HostIndex<String> {
        let mut idx = HostIndex::new();
        for p in patterns {
            idx.insert(&HostPattern::parse(p), p.to_string());
        }
        idx
    }

    #[test]
    fn exact_then_longest_wildcard_then_any() {
        let idx = index(&["*", "*.com", "*.b.com", "a.b.com"]);
        assert_eq!(idx.lookup("a.b.com").unwrap(), "a.b.com");
        assert_eq!(idx.lookup("x.b.com").unwrap(), "*.b.com");
        assert_eq!(idx.lookup("x.y.b.com").unwrap(), "*.b.com");
        assert_eq!(idx.lookup("c.com").unwrap(), "*.com");
        assert_eq!(idx.lookup("c.org").unwrap(), "*");
    }

    #[test]
    fn wildcard_does_not_match_its_bare_suffix() {
        let idx = index(&["*.b.com"]);
        assert!(idx.lookup("b.com").is_none());
    }

    #[test]
    fn partial_wildcards_match_inside_labels() {
        let idx = index(&["*foo.com"]);
        assert_eq!(idx.lookup("barfoo.com").unwrap(), "*foo.com");
        assert_eq!(idx.lookup("a.foo.com").unwrap(), "*foo.com");
        assert!(idx.lookup("foo.com").is_none());
    }

    #[test]
    fn first_insert_wins() {
        let mut idx = HostIndex::new();
        assert!(idx.insert(&HostPattern::parse("a.com"), 1));
        assert!(!idx.insert(&HostPattern::parse("A.com"), 2));
        assert_eq!(idx.lookup("a.com"), Some(&1));
    }
}
