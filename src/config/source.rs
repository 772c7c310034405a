//! Where every document came from: the file, the document's place in it, and (only when a
//! diagnostic needs it) the line of a field path inside the document.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One configuration file as read from disk.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as it will be printed (relative to the config directory's parent when possible).
    pub display: String,
    pub path: PathBuf,
    pub text: String,
}

/// One document of a file: byte range and the (1-based) line where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSpan {
    pub index: usize,
    pub bytes: Range<usize>,
    pub first_line: usize,
}

/// Where a resource was defined. `item` is set for entries of a `kind: List`.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<SourceFile>,
    pub doc: DocSpan,
    pub item: Option<usize>,
}

impl Origin {
    /// The 1-based line in the file where `path` (e.g. `spec.http[0].match[1].uri`) is written,
    /// or the nearest enclosing field that is. Parses the document again: only called when a
    /// diagnostic is printed, so the happy path pays nothing.
    pub fn line_of(&self, path: &str) -> usize {
        let mut target = Vec::new();
        if let Some(item) = self.item {
            target.push(format!("items[{item}]"));
        }
        if !path.is_empty() {
            target.extend(split_path(path));
        }
        let target: Vec<String> = target.iter().flat_map(|s| split_path(s)).collect();
        let text = &self.file.text[self.doc.bytes.clone()];
        let mut locator = Locator {
            target: &target,
            path: Vec::new(),
            stack: Vec::new(),
            best: (0, 1),
        };
        let mut parser = Parser::new_from_str(text);
        // A parse error here only means we stop early and keep the best line found so far.
        let _ = parser.load(&mut locator, false);
        self.doc.first_line + locator.best.1 - 1
    }
}

/// Splits `a.b[2].c` into `["a", "b", "[2]", "c"]`.
fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        while let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(rest[..open].to_string());
            }
            let close = rest[open..].find(']').map_or(rest.len(), |c| open + c + 1);
            out.push(rest[open..close].to_string());
            rest = &rest[close..];
        }
        if !rest.is_empty() {
            out.push(rest.to_string());
        }
    }
    out
}

enum Frame {
    Map { expecting_key: bool },
    Seq { index: usize },
}

struct Locator<'a> {
    target: &'a [String],
    path: Vec<String>,
    stack: Vec<Frame>,
    /// (number of path segments matched, line within the document)
    best: (usize, usize),
}

impl Locator<'_> {
    fn consider(&mut self, mark: Marker) {
        let n = self.path.len();
        if n > self.best.0 && n <= self.target.len() && self.target[..n] == self.path[..] {
            self.best = (n, mark.line());
        }
    }

    fn begin_value(&mut self, mark: Marker) {
        if let Some(Frame::Seq { index }) = self.stack.last() {
            self.path.push(format!("[{index}]"));
            self.consider(mark);
        }
    }

    fn end_value(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { expecting_key }) => {
                self.path.pop();
                *expecting_key = true;
            }
            Some(Frame::Seq { index }) => {
                self.path.pop();
                *index += 1;
            }
            None => {}
        }
    }
}

impl MarkedEventReceiver for Locator<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { expecting_key }) = self.stack.last_mut() {
                    if *expecting_key {
                        *expecting_key = false;
                        self.path.push(value);
                        self.consider(mark);
                        return;
                    }
                }
                self.begin_value(mark);
                self.end_value();
            }
            Event::Alias(_) => {
                self.begin_value(mark);
                self.end_value();
            }
            Event::MappingStart(..) => {
                self.begin_value(mark);
                self.stack.push(Frame::Map {
                    expecting_key: true,
                });
            }
            Event::SequenceStart(..) => {
                self.begin_value(mark);
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.end_value();
            }
            _ => {}
        }
    }
}

/// Splits a multi-document YAML file at `---` lines. YAML forbids a document marker at column 0
/// inside any scalar, so a line-based split is exact; each piece keeps its own `---`.
pub fn split_documents(text: &str) -> Vec<DocSpan> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        // `---` or `...` alone, or followed by a space or tab (`--- !tag`, `--- {a: 1}`).
        let is_marker = |m: &str| {
            content
                .strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if is_marker("---") && offset > start {
            docs.push(DocSpan {
                index: docs.len(),
                bytes: start..offset,
                first_line: start_line,
            });
            start = offset;
            start_line = line_no + 1;
        } else if is_marker("...") {
            // An explicit end: the next document starts after this line.
            docs.push(DocSpan {
                index: docs.len(),
                bytes: start..offset,
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = line_no + 2;
        }
        offset += line.len();
    }
    if offset > start {
        docs.push(DocSpan {
            index: docs.len(),
            bytes: start..offset,
            first_line: start_line,
        });
    }
    docs
}

/// The largest YAML document read (Kubernetes stores an object of at most 1.5 MiB; a
/// `kind: List` of many objects is larger). A file may hold any number of documents.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// The largest file read at all.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The deepest nesting of mappings and sequences in a document. Istio objects nest about a
/// dozen levels; serde_yaml gives up at 128, but only after libyaml's scanner has spent time
/// quadratic in the depth of flow collections (60,000 nested `[` took ~10 s).
pub const MAX_DEPTH: usize = 64;

/// Why a document is not parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("document is {size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit")]
    TooLarge { size: usize },
    #[error("mappings and sequences nest deeper than {MAX_DEPTH} levels")]
    TooDeep {
        /// 1-based line within the document.
        line: usize,
    },
}

/// Checks a document's size, then its nesting depth with a streaming YAML scan that stops at
/// the first level past [`MAX_DEPTH`], before the parser that builds values runs: a hostile
/// document costs time linear in its size. Syntax errors are left to that parser, which
/// reports them with their line.
pub fn check_document(text: &str) -> Result<(), DocumentError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge { size: text.len() });
    }
    // Only flow brackets and block indentation can nest: a document without `[`/`{` and with
    // little indentation cannot be deep (the common case skips the scan).
    let indent = text
        .lines()
        .map(|l| l.len() - l.trim_start_matches([' ', '-']).len())
        .max()
        .unwrap_or(0);
    if !text.contains(['[', '{']) && indent < MAX_DEPTH {
        return Ok(());
    }
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::MappingStart(..) | Event::SequenceStart(..), mark)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DocumentError::TooDeep { line: mark.line() });
                }
            }
            Ok((Event::MappingEnd | Event::SequenceEnd, _)) => depth = depth.saturating_sub(1),
            // The scanner looks ahead past flow brackets and stops at 255 levels itself.
            Err(e) if e.info().contains("recursion limit") => {
                return Err(DocumentError::TooDeep {
                    line: e.marker().line(),
                })
            }
            Ok((Event::StreamEnd, _)) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Origin {
        let docs = split_documents(text);
        Origin {
            file: Arc::new(SourceFile {
                display: "f.yaml".into(),
                path: "f.yaml".into(),
                text: text.into(),
            }),
            doc: docs.last().unwrap().clone(),
            item: None,
        }
    }

    #[test]
    fn splits_documents_and_keeps_their_first_line() {
        let text = "a: 1\n---\nb: 2\n--- \nc: 3\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].first_line, 2);
        assert_eq!(&text[docs[2].bytes.clone()], "--- \nc: 3\n");
        assert_eq!(docs[2].first_line, 4);
    }

    #[test]
    fn a_leading_marker_does_not_make_an_empty_document() {
        let docs = split_documents("---\na: 1\n");
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn locates_a_nested_field_path() {
        let text =
            "x: 0\n---\nspec:\n  http:\n  - route: []\n  - match:\n    - uri:\n        prefx: /a\n";
        let o = origin(text);
        assert_eq!(o.line_of("spec.http[1].match[0].uri.prefx"), 8);
        assert_eq!(o.line_of("spec.http[1]"), 6);
        // A field that is not written points at its nearest written parent.
        assert_eq!(o.line_of("spec.http[1].match[0].uri.exact"), 7);
        assert_eq!(o.line_of(""), 2);
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let deep = format!("a: {}1{}\n", "[".repeat(60_000), "]".repeat(60_000));
        assert_eq!(
            check_document(&deep),
            Err(DocumentError::TooDeep { line: 1 })
        );
        let shallow = format!("a: {}1{}\n", "[".repeat(10), "]".repeat(10));
        assert_eq!(check_document(&shallow), Ok(()));
    }

    #[test]
    fn deep_block_nesting_is_refused_too() {
        let deep: String = (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(matches!(
            check_document(&deep),
            Err(DocumentError::TooDeep { .. })
        ));
        let compact = format!("{}x\n", "- ".repeat(100));
        assert!(matches!(
            check_document(&compact),
            Err(DocumentError::TooDeep { .. })
        ));
    }

    #[test]
    fn brackets_inside_scalars_and_comments_do_not_count() {
        let text = format!(
            "a: \"{}\"\nb: '{}'\n# {}\nc: |\n  {}\n",
            "[".repeat(200),
            "{".repeat(200),
            "[".repeat(200),
            "[".repeat(200)
        );
        assert_eq!(check_document(&text), Ok(()));
    }

    #[test]
    fn an_oversized_document_is_refused_by_its_size() {
        let big = "a".repeat(MAX_DOCUMENT_BYTES + 1);
        assert!(matches!(
            check_document(&big),
            Err(DocumentError::TooLarge { .. })
        ));
    }
}
