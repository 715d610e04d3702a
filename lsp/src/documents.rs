//! The open documents: text as a rope, the incrementally re-parsed tree and its analysis.
//!
//! Edits are applied synchronously inside the `didChange` handler (before any `.await`), so every
//! request that arrives after a change sees it; requests read immutable [`Snapshot`]s, so the
//! ranges they answer with always belong to one version of the text.

use std::sync::{Arc, OnceLock};

use compart_analysis::scaling::ScalingReport;
use compart_analysis::{Analysis, Analyzer, SyntaxTree, TextRange};
use dashmap::DashMap;
use ropey::Rope;
use tower_lsp_server::ls_types::{TextDocumentContentChangeEvent, Uri};

use crate::converters::{rope_offset, OutOfRange};

pub struct Document {
    pub version: i32,
    pub rope: Rope,
    pub analysis: Arc<Analysis>,
    scaling: Arc<OnceLock<ScalingReport>>,
    /// Keeps what the last analysis lowered, so an edit re-lowers only the components it touched.
    analyzer: Analyzer,
}

/// One version of one document, cheap to clone and safe to read while edits go on.
#[derive(Clone)]
pub struct Snapshot {
    pub uri: Uri,
    pub version: i32,
    pub analysis: Arc<Analysis>,
    /// Computed on first use (inlay hints, hover, code actions), once per version.
    scaling: Arc<OnceLock<ScalingReport>>,
}

impl Snapshot {
    /// The whole-program report if some request already computed it for this version.
    pub fn scaling_if_computed(&self) -> Option<&ScalingReport> {
        self.scaling.get()
    }

    pub fn scaling(&self) -> &ScalingReport {
        self.scaling.get_or_init(|| compart_analysis::scaling::classify(&self.analysis.program))
    }
}

impl Document {
    fn snapshot(&self, uri: &Uri) -> Snapshot {
        Snapshot {
            uri: uri.clone(),
            version: self.version,
            analysis: self.analysis.clone(),
            scaling: self.scaling.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentError {
    NotOpen(String),
    /// LSP versions only grow; an older one means a reordered or repeated notification.
    StaleVersion {
        uri: String,
        current: i32,
        received: i32,
    },
    OutOfRange(String, OutOfRange),
}

impl std::fmt::Display for DocumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocumentError::NotOpen(uri) => write!(f, "{uri} is not open"),
            DocumentError::StaleVersion { uri, current, received } => {
                write!(f, "{uri}: change for version {received} ignored, the document is at version {current}")
            }
            DocumentError::OutOfRange(uri, e) => write!(f, "{uri}: edit ignored: {e}"),
        }
    }
}

#[derive(Default)]
pub struct Documents {
    map: DashMap<Uri, Document>,
}

impl Documents {
    pub fn open(&self, uri: Uri, version: i32, text: &str) -> Snapshot {
        let mut analyzer = Analyzer::default();
        let analysis = Arc::new(analyzer.analyze(SyntaxTree::parse(text)));
        let doc = Document { version, rope: Rope::from_str(text), analysis, scaling: Default::default(), analyzer };
        let snapshot = doc.snapshot(&uri);
        self.map.insert(uri, doc);
        snapshot
    }

    /// Apply a `didChange`: every change in order, to the rope and to the tree (incremental
    /// re-parse), then analyse once. Nothing is applied if any change is invalid.
    pub fn change(
        &self,
        uri: &Uri,
        version: i32,
        changes: &[TextDocumentContentChangeEvent],
    ) -> Result<Snapshot, DocumentError> {
        let mut doc = self.map.get_mut(uri).ok_or_else(|| DocumentError::NotOpen(uri.to_string()))?;
        if version <= doc.version {
            return Err(DocumentError::StaleVersion { uri: uri.to_string(), current: doc.version, received: version });
        }
        let mut rope = doc.rope.clone();
        let mut syntax = doc.analysis.syntax.clone();
        for change in changes {
            match change.range {
                None => {
                    rope = Rope::from_str(&change.text);
                    syntax = SyntaxTree::parse(change.text.as_str());
                }
                Some(range) => {
                    let err = |e| DocumentError::OutOfRange(uri.to_string(), e);
                    let start = rope_offset(&rope, range.start).map_err(err)?;
                    let end = rope_offset(&rope, range.end).map_err(err)?.max(start);
                    let (start_char, end_char) = (rope.byte_to_char(start), rope.byte_to_char(end));
                    rope.remove(start_char..end_char);
                    rope.insert(start_char, &change.text);
                    syntax = syntax.edit(TextRange::new(start, end), &change.text);
                }
            }
        }
        debug_assert_eq!(rope.len_bytes(), syntax.text.len());
        let analysis = Arc::new(doc.analyzer.analyze(syntax));
        doc.version = version;
        doc.rope = rope;
        doc.analysis = analysis;
        doc.scaling = Default::default();
        Ok(doc.snapshot(uri))
    }

    pub fn close(&self, uri: &Uri) -> bool {
        self.map.remove(uri).is_some()
    }

    pub fn snapshot(&self, uri: &Uri) -> Option<Snapshot> {
        self.map.get(uri).map(|d| d.snapshot(uri))
    }

    pub fn version(&self, uri: &Uri) -> Option<i32> {
        self.map.get(uri).map(|d| d.version)
    }

    pub fn text(&self, uri: &Uri) -> Option<String> {
        self.map.get(uri).map(|d| d.rope.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_lsp_server::ls_types::{Position, Range};

    fn edit(range: Option<((u32, u32), (u32, u32))>, text: &str) -> TextDocumentContentChangeEvent {
        TextDocumentContentChangeEvent {
            range: range.map(|(s, e)| Range::new(Position::new(s.0, s.1), Position::new(e.0, e.1))),
            range_length: None,
            text: text.into(),
        }
    }

    #[test]
    fn incremental_changes_match_a_fresh_parse() {
        let docs = Documents::default();
        let uri: Uri = "file:///t.ded".parse().unwrap();
        docs.open(uri.clone(), 1, "component c {\n    table t(x: int)\n    t(1).\n}\n");
        // Two changes in one notification: the second's position is relative to the first's result.
        let snap = docs
            .change(&uri, 2, &[edit(Some(((2, 6), (2, 7))), "42"), edit(Some(((2, 4), (2, 4))), "/* é𝄞 */ ")])
            .unwrap();
        let text = snap.analysis.text().to_string();
        assert_eq!(text, "component c {\n    table t(x: int)\n    /* é𝄞 */ t(42).\n}\n");
        assert_eq!(docs.text(&uri).unwrap(), text);
        let fresh = compart_analysis::analyze(&text);
        assert_eq!(snap.analysis.diagnostics, fresh.diagnostics);
        assert_eq!(snap.analysis.syntax.root().to_sexp(), fresh.syntax.root().to_sexp());
        // A UTF-16 column after the astral character.
        let snap = docs.change(&uri, 3, &[edit(Some(((2, 13), (2, 14))), "")]).unwrap();
        assert!(snap.analysis.text().contains("/* é𝄞 */t(42)."), "{}", snap.analysis.text());
    }

    #[test]
    fn bad_changes_are_errors_and_change_nothing() {
        let docs = Documents::default();
        let uri: Uri = "file:///t.ded".parse().unwrap();
        let other: Uri = "file:///other.ded".parse().unwrap();
        docs.open(uri.clone(), 5, "component c {}\n");
        assert!(matches!(docs.change(&other, 6, &[edit(None, "")]), Err(DocumentError::NotOpen(_))));
        assert!(matches!(docs.change(&uri, 5, &[edit(None, "")]), Err(DocumentError::StaleVersion { .. })));
        let err = docs.change(&uri, 6, &[edit(Some(((0, 0), (0, 1))), "x"), edit(Some(((7, 0), (7, 0))), "y")]);
        assert!(matches!(err, Err(DocumentError::OutOfRange(..))));
        assert_eq!(docs.text(&uri).unwrap(), "component c {}\n");
        assert_eq!(docs.version(&uri), Some(5));
        assert!(docs.close(&uri));
        assert!(!docs.close(&uri));
    }
}
