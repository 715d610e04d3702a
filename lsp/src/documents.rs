//! The open documents: the text with its incrementally re-parsed tree and its analysis.
//!
//! The text is kept once, in the [`SyntaxTree`], and incoming edits are located with the same
//! [`LineIndex`] and conversion ([`converters::offset`]) as every position the server reports, so
//! the server's lines are the client's (`\n`, `\r\n`, `\r`; not U+2028 or form feeds).
//!
//! Edits are applied synchronously inside the `didChange` handler (before any `.await`), so every
//! request that arrives after a change sees it; requests read immutable [`Snapshot`]s, so the
//! ranges they answer with always belong to one version of the text.

use std::sync::{Arc, OnceLock};

use compart_analysis::scaling::ScalingReport;
use compart_analysis::{Analysis, Analyzer, LineIndex, SyntaxTree, TextRange};
use dashmap::DashMap;
use tower_lsp_server::ls_types::{TextDocumentContentChangeEvent, Uri};

use crate::converters::{self, OutOfRange};
use crate::stale::{Edit, LastGood, Stale};

pub struct Document {
    pub version: i32,
    pub analysis: Arc<Analysis>,
    scaling: Arc<OnceLock<ScalingReport>>,
    /// Keeps what the last analysis lowered, so an edit re-lowers only the components it touched.
    analyzer: Analyzer,
    /// Each component's last version without errors, moved through the edits since.
    last_good: LastGood,
    stale: Stale,
}

/// One version of one document, cheap to clone and safe to read while edits go on.
#[derive(Clone)]
pub struct Snapshot {
    pub uri: Uri,
    pub version: i32,
    pub analysis: Arc<Analysis>,
    /// Computed on first use (inlay hints, hover, code actions), once per version.
    scaling: Arc<OnceLock<ScalingReport>>,
    /// The last clean versions of the components that have errors in this one.
    pub stale: Stale,
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
            stale: self.stale.clone(),
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
    /// Deployment files (`.toml`) a client syncs: their text only (version, text), which the Run
    /// and Simulate lenses run instead of the file on disk. They are not programs: no analysis.
    deployments: DashMap<Uri, (i32, String)>,
}

/// Whether a document is a deployment file rather than a program.
pub fn is_deployment(uri: &Uri) -> bool {
    uri.path().as_str().ends_with(".toml")
}

impl Documents {
    pub fn open_deployment(&self, uri: Uri, version: i32, text: &str) {
        self.deployments.insert(uri, (version, text.to_string()));
    }

    /// Apply a `didChange` to a deployment file: all the changes or none.
    pub fn change_deployment(
        &self,
        uri: &Uri,
        version: i32,
        changes: &[TextDocumentContentChangeEvent],
    ) -> Result<(), DocumentError> {
        let mut doc = self.deployments.get_mut(uri).ok_or_else(|| DocumentError::NotOpen(uri.to_string()))?;
        if version <= doc.0 {
            return Err(DocumentError::StaleVersion { uri: uri.to_string(), current: doc.0, received: version });
        }
        let mut text = doc.1.clone();
        for change in changes {
            match change.range {
                None => text = change.text.clone(),
                Some(range) => {
                    let r = converters::text_range(&text, &LineIndex::new(&text), range)
                        .map_err(|e| DocumentError::OutOfRange(uri.to_string(), e))?;
                    text.replace_range(r.start as usize..r.end as usize, &change.text);
                }
            }
        }
        *doc = (version, text);
        Ok(())
    }

    /// The client's text of an open deployment file and its version.
    pub fn deployment(&self, uri: &Uri) -> Option<(i32, String)> {
        self.deployments.get(uri).map(|d| d.clone())
    }

    pub fn open(&self, uri: Uri, version: i32, text: &str) -> Snapshot {
        let mut analyzer = Analyzer::default();
        let analysis = Arc::new(analyzer.analyze(SyntaxTree::parse(text)));
        let mut last_good = LastGood::default();
        let stale = last_good.update(&analysis, &[]);
        let doc = Document { version, analysis, scaling: Default::default(), analyzer, last_good, stale };
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
        // The text after the changes so far; `None` while it is still the analysed one.
        let mut edited: Option<SyntaxTree> = None;
        let mut edits = Vec::with_capacity(changes.len());
        for change in changes {
            let current = edited.as_ref().unwrap_or(&doc.analysis.syntax);
            let next = match change.range {
                None => {
                    edits.push(Edit::new(TextRange::new(0, current.text.len()), change.text.len()));
                    SyntaxTree::parse(change.text.as_str())
                }
                Some(range) => {
                    // Each change's range is relative to the text the previous ones left.
                    let fresh;
                    let index = match edited {
                        None => &doc.analysis.line_index,
                        Some(_) => {
                            fresh = LineIndex::new(&current.text);
                            &fresh
                        }
                    };
                    let range = converters::text_range(&current.text, index, range)
                        .map_err(|e| DocumentError::OutOfRange(uri.to_string(), e))?;
                    edits.push(Edit::new(range, change.text.len()));
                    current.edit(range, &change.text)
                }
            };
            edited = Some(next);
        }
        let syntax = edited.unwrap_or_else(|| doc.analysis.syntax.clone());
        let analysis = Arc::new(doc.analyzer.analyze(syntax));
        doc.stale = doc.last_good.update(&analysis, &edits);
        doc.version = version;
        doc.analysis = analysis;
        doc.scaling = Default::default();
        Ok(doc.snapshot(uri))
    }

    pub fn close(&self, uri: &Uri) -> bool {
        self.map.remove(uri).is_some() || self.deployments.remove(uri).is_some()
    }

    pub fn snapshot(&self, uri: &Uri) -> Option<Snapshot> {
        self.map.get(uri).map(|d| d.snapshot(uri))
    }

    pub fn version(&self, uri: &Uri) -> Option<i32> {
        self.map.get(uri).map(|d| d.version)
    }

    pub fn text(&self, uri: &Uri) -> Option<String> {
        self.map.get(uri).map(|d| d.analysis.text().to_string())
    }

    /// Every open document (workspace-wide requests).
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.map.iter().map(|d| d.snapshot(d.key())).collect()
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
    fn only_lsp_line_breaks_count_when_editing() {
        let docs = Documents::default();
        let uri: Uri = "file:///t.ded".parse().unwrap();
        // Line 1 holds U+2028, U+2029, U+0085, VT and FF, which are not line breaks in LSP; lines
        // 2 and 3 end with a lone CR and CRLF.
        let text = "component c {\n// a\u{2028}b\u{2029}c\u{85}d\u{b}e\u{c}f\n    table t(x: int)\r    t(1).\r\n}\n";
        docs.open(uri.clone(), 1, text);
        let snap =
            docs.change(&uri, 2, &[edit(Some(((3, 6), (3, 7))), "2"), edit(Some(((2, 99), (3, 0))), "\n")]).unwrap();
        let expected =
            "component c {\n// a\u{2028}b\u{2029}c\u{85}d\u{b}e\u{c}f\n    table t(x: int)\n    t(2).\r\n}\n";
        assert_eq!(snap.analysis.text(), expected);
        assert_eq!(snap.analysis.diagnostics, compart_analysis::analyze(expected).diagnostics);
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

    #[test]
    fn deployment_files_keep_their_text_only() {
        let docs = Documents::default();
        let uri: Uri = "file:///p.toml".parse().unwrap();
        assert!(is_deployment(&uri) && !is_deployment(&"file:///p.ded".parse().unwrap()));
        docs.open_deployment(uri.clone(), 1, "[components]\nc = 1\n");
        docs.change_deployment(&uri, 2, &[edit(Some(((1, 4), (1, 5))), "3"), edit(Some(((2, 0), (2, 0))), "# é\n")])
            .unwrap();
        assert_eq!(docs.deployment(&uri), Some((2, "[components]\nc = 3\n# é\n".to_string())));
        assert!(docs.change_deployment(&uri, 3, &[edit(Some(((9, 0), (9, 1))), "")]).is_err());
        assert!(docs.change_deployment(&uri, 2, &[edit(None, "")]).is_err());
        assert_eq!(docs.deployment(&uri).unwrap().0, 2);
        assert!(docs.snapshot(&uri).is_none(), "not a program");
        assert!(docs.close(&uri) && docs.deployment(&uri).is_none());
    }
}
