//! compart's semantic core. Text in, [`Analysis`] out: the typed program model, its diagnostics,
//! and (in later modules) scaling classes and rewrites.
//!
//! Pure and synchronous: no I/O, no threads, no async. Editors call [`analyze_syntax`] after each
//! edit with an incrementally re-parsed [`SyntaxTree`]; the CLI calls [`analyze`].

pub mod check;
pub mod deployment;
pub mod diagnostics;
pub mod fmt;
pub mod graph;
pub mod lexicon;
pub mod lower;
pub mod model;
pub mod optimize;
pub mod rewrite;
pub mod scaling;
pub mod syntax;
pub mod text;

pub use diagnostics::{Code, Diagnostic, Severity};
pub use model::Program;
pub use syntax::SyntaxTree;
pub use text::{LineIndex, TextRange};

/// Everything known about one file.
pub struct Analysis {
    pub syntax: SyntaxTree,
    pub program: Program,
    /// Sorted by range; syntax errors first at equal positions.
    pub diagnostics: Vec<Diagnostic>,
    pub line_index: LineIndex,
}

impl Analysis {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn text(&self) -> &str {
        &self.syntax.text
    }
}

/// Parse and analyse a source text.
pub fn analyze(text: &str) -> Analysis {
    analyze_syntax(SyntaxTree::parse(text))
}

/// Analyse an already parsed file.
pub fn analyze_syntax(syntax: SyntaxTree) -> Analysis {
    Analyzer::default().analyze(syntax)
}

/// Analyses successive versions of one file, reusing what an edit did not touch (components whose
/// text is unchanged are not lowered again). An editor keeps one per open document.
#[derive(Default)]
pub struct Analyzer {
    lower_cache: lower::LowerCache,
}

impl Analyzer {
    pub fn analyze(&mut self, syntax: SyntaxTree) -> Analysis {
        analyze_with(syntax, &mut self.lower_cache)
    }
}

fn analyze_with(syntax: SyntaxTree, lower_cache: &mut lower::LowerCache) -> Analysis {
    let mut diagnostics = Vec::new();
    syntax::syntax_diagnostics(&syntax, &mut diagnostics);
    let mut program = lower::lower_cached(&syntax, &mut diagnostics, lower_cache);
    check::check(&mut program, &mut diagnostics);
    diagnostics.sort_by(|a, b| a.range.start.cmp(&b.range.start).then(a.code.as_str().cmp(b.code.as_str())));
    let line_index = LineIndex::new(&syntax.text);
    Analysis { syntax, program, diagnostics, line_index }
}
