//! The concrete syntax tree: tree-sitter parsing (incremental when given the previous tree) and
//! syntax-error diagnostics.

use tree_sitter::{InputEdit, Node, Parser, Point, Tree};

use crate::diagnostics::{Code, Diagnostic};
use crate::text::TextRange;

/// A parsed file: its text and tree-sitter tree.
#[derive(Clone)]
pub struct SyntaxTree {
    pub text: String,
    pub tree: Tree,
}

fn new_parser() -> Parser {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_compart::LANGUAGE.into())
        .expect("the committed parser.c matches the tree-sitter runtime's ABI");
    parser
}

thread_local! {
    static PARSER: std::cell::RefCell<Parser> = std::cell::RefCell::new(new_parser());
}

impl SyntaxTree {
    /// Parse from scratch.
    pub fn parse(text: impl Into<String>) -> SyntaxTree {
        Self::reparse(text.into(), None)
    }

    /// Parse reusing `old`, which must already have had the edits applied (see [`SyntaxTree::edit`]).
    pub fn reparse(text: String, old: Option<&Tree>) -> SyntaxTree {
        let tree = PARSER.with(|p| {
            let mut parser = p.borrow_mut();
            parser.reset();
            parser.parse(&text, old)
        });
        // Parsing only fails on cancellation or without a language, neither of which we set.
        let tree = tree.unwrap_or_else(|| new_parser().parse(&text, None).expect("parse without cancellation"));
        SyntaxTree { text, tree }
    }

    /// Replace `range` (bytes of the current text) by `new_text` and re-parse incrementally.
    pub fn edit(&self, range: TextRange, new_text: &str) -> SyntaxTree {
        let start = (range.start as usize).min(self.text.len());
        let old_end = (range.end as usize).clamp(start, self.text.len());
        let mut text = String::with_capacity(self.text.len() + new_text.len());
        text.push_str(&self.text[..start]);
        text.push_str(new_text);
        text.push_str(&self.text[old_end..]);
        let new_end = start + new_text.len();
        let mut tree = self.tree.clone();
        tree.edit(&InputEdit {
            start_byte: start,
            old_end_byte: old_end,
            new_end_byte: new_end,
            start_position: point_at(&self.text, start),
            old_end_position: point_at(&self.text, old_end),
            new_end_position: point_at(&text, new_end),
        });
        SyntaxTree::reparse(text, Some(&tree))
    }

    pub fn root(&self) -> Node<'_> {
        self.tree.root_node()
    }

    pub fn node_text(&self, node: Node<'_>) -> &str {
        &self.text[node.byte_range()]
    }
}

/// The tree-sitter point (row, byte column) of a byte offset.
pub fn point_at(text: &str, offset: usize) -> Point {
    let before = &text.as_bytes()[..offset];
    let row = before.iter().filter(|&&b| b == b'\n').count();
    let column = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Point { row, column }
}

/// The depth of the deepest node, computed without recursion (trees may be arbitrarily deep).
pub fn max_depth(root: Node<'_>) -> usize {
    let mut cursor = root.walk();
    let (mut depth, mut max) = (0usize, 0usize);
    loop {
        if cursor.goto_first_child() {
            depth += 1;
            max = max.max(depth);
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return max;
            }
            depth -= 1;
        }
    }
}

pub fn range_of(node: Node<'_>) -> TextRange {
    TextRange::new(node.start_byte(), node.end_byte())
}

/// Where the first ERROR or MISSING node in `node` is (MISSING: an empty range where the token
/// should be), or `None` if `node` parsed cleanly. Descends only into subtrees holding errors.
pub fn first_syntax_error(node: Node<'_>) -> Option<TextRange> {
    let mut node = node;
    'descend: loop {
        if node.is_missing() {
            return Some(TextRange::empty(node.start_byte()));
        }
        if node.is_error() {
            return Some(range_of(node));
        }
        if !node.has_error() {
            return None;
        }
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            if child.has_error() || child.is_missing() {
                node = child;
                continue 'descend;
            }
        }
        return None;
    }
}

/// Syntax errors: one per ERROR or MISSING node (not descending into errors).
pub fn syntax_diagnostics(syntax: &SyntaxTree, out: &mut Vec<Diagnostic>) {
    if !syntax.root().has_error() {
        return;
    }
    let mut cursor = syntax.root().walk();
    let mut stack = vec![syntax.root()];
    while let Some(node) = stack.pop() {
        if node.is_missing() {
            let token = node.kind();
            let at = TextRange::empty(node.start_byte());
            let message = if node.is_named() {
                format!("expected {}", describe_kind(token))
            } else {
                format!("expected `{token}`")
            };
            let mut diagnostic = Diagnostic::new(Code::MissingToken, at, message);
            if !node.is_named() {
                diagnostic = diagnostic.with_fix(format!("Insert `{token}`"), at, token);
            }
            out.push(diagnostic);
        } else if node.is_error() {
            out.push(error_node_diagnostic(syntax, node));
        } else if node.has_error() {
            let children: Vec<_> = node.children(&mut cursor).collect();
            stack.extend(children.into_iter().rev());
        }
    }
    out.sort_by_key(|d| d.range);
}

fn error_node_diagnostic(syntax: &SyntaxTree, node: Node<'_>) -> Diagnostic {
    // Point at the first unexpected token rather than the whole skipped region.
    let mut first = node;
    while let Some(child) = first.child(0) {
        first = child;
    }
    let text = syntax.node_text(first).trim();
    let range = if first.byte_range().is_empty() { range_of(node) } else { range_of(first) };
    let context = node.parent().map(|p| describe_kind(p.kind())).unwrap_or("the file");
    let message = if text.is_empty() {
        format!("syntax error in {context}")
    } else {
        let shown: String = text.chars().take(24).collect();
        format!("unexpected `{shown}` in {context}")
    };
    Diagnostic::new(Code::SyntaxError, range, message).with_related(range_of(node), "this text was skipped")
}

fn describe_kind(kind: &str) -> &'static str {
    match kind {
        "source_file" => "the file",
        "component" | "component_body" => "a component",
        "relation_decl" => "a relation declaration",
        "column" => "a column",
        "rule" => "a rule",
        "head" => "a rule head",
        "body" => "a rule body",
        "atom" => "an atom",
        "invariant" => "an invariant",
        "placement" | "partition_key" => "a placement",
        "key_clause" => "a key clause",
        "identifier" => "a name",
        "type" => "a type",
        "condition" => "a condition",
        "call" => "a call",
        _ if kind.ends_with("expression") => "an expression",
        _ => "this construct",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_edit_matches_fresh_parse() {
        let syntax = SyntaxTree::parse("component c {\n  table t(x: int)\n  t(1).\n}\n");
        let at = syntax.text.find('1').unwrap();
        let edited = syntax.edit(TextRange::new(at, at + 1), "42");
        let fresh = SyntaxTree::parse(edited.text.clone());
        assert_eq!(edited.root().to_sexp(), fresh.root().to_sexp());
        assert!(edited.text.contains("t(42)."));
    }

    #[test]
    fn missing_period_is_reported_with_fix() {
        let syntax = SyntaxTree::parse("component c { table t(x: int) t(1) }");
        let mut out = Vec::new();
        syntax_diagnostics(&syntax, &mut out);
        assert!(!out.is_empty());
    }
}
