//! Canonical formatting (`compart fmt`, the editor's "Format Document"). Works on the concrete tree
//! so comments survive; refuses files with syntax errors rather than guess.

use tree_sitter::Node;

use crate::syntax::SyntaxTree;
use crate::text::{LineIndex, TextRange};

const INDENT: &str = "    ";
/// Rules longer than this put each body item on its own line.
const MAX_WIDTH: usize = 100;
/// The formatter recurses over expressions (see `lower::MAX_EXPR_DEPTH`).
const MAX_FORMAT_DEPTH: usize = 400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub range: TextRange,
    pub message: String,
}

/// Format a whole file.
pub fn format(text: &str) -> Result<String, FormatError> {
    format_syntax(&SyntaxTree::parse(text))
}

pub fn format_syntax(syntax: &SyntaxTree) -> Result<String, FormatError> {
    let root = syntax.root();
    if root.has_error() {
        let mut diagnostics = Vec::new();
        crate::syntax::syntax_diagnostics(syntax, &mut diagnostics);
        let range = diagnostics.first().map_or(TextRange::default(), |d| d.range);
        return Err(FormatError { range, message: "the file has syntax errors; fix them before formatting".into() });
    }
    if crate::syntax::max_depth(root) > MAX_FORMAT_DEPTH {
        return Err(FormatError { range: TextRange::default(), message: "the file nests too deeply to format".into() });
    }
    let lines = LineIndex::new(&syntax.text);
    let mut f = Formatter { text: &syntax.text, lines, out: String::with_capacity(syntax.text.len()) };
    f.items(root, 0);
    let mut out = f.out.trim_end().to_string();
    out.push('\n');
    Ok(out)
}

struct Formatter<'a> {
    text: &'a str,
    /// Lines as editors count them: tree-sitter's rows count only `\n`, not a lone `\r`.
    lines: LineIndex,
    out: String,
}

impl<'a> Formatter<'a> {
    fn src(&self, node: Node<'_>) -> &'a str {
        &self.text[node.byte_range()]
    }

    fn start_line(&self, node: Node<'_>) -> u32 {
        self.lines.line_col(node.start_byte()).line
    }

    fn end_line(&self, node: Node<'_>) -> u32 {
        self.lines.line_col(node.end_byte()).line
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str(INDENT);
        }
    }

    /// The children of a file or component body, one per line, with comments and at most one
    /// blank line kept between them.
    fn items(&mut self, parent: Node<'_>, depth: usize) {
        let mut cursor = parent.walk();
        let children: Vec<Node> = parent.named_children(&mut cursor).collect();
        let mut previous: Option<Node> = None;
        for child in children {
            if let Some(prev) = previous {
                let trailing_comment = child.is_extra() && self.start_line(child) == self.end_line(prev);
                if trailing_comment {
                    self.out.truncate(self.out.trim_end_matches('\n').len());
                    self.out.push_str("  ");
                    self.out.push_str(self.src(child).trim_end());
                    self.out.push('\n');
                    previous = Some(child);
                    continue;
                }
                let blank = self.start_line(child) > self.end_line(prev) + 1;
                let top_level_gap = depth == 0 && !prev.is_extra() && !child.is_extra();
                if blank || top_level_gap {
                    self.out.push('\n');
                }
            }
            self.indent(depth);
            match child.kind() {
                "component" => self.component(child, depth),
                "relation_decl" | "rule" | "invariant" if contains_comment(child) => {
                    // Comments inside a construct: keep its text as written rather than lose them.
                    self.out.push_str(&reindent(self.src(child), depth));
                }
                "relation_decl" => self.relation_decl(child, depth),
                "rule" | "invariant" => self.rule(child, depth),
                _ => self.out.push_str(self.src(child).trim_end()),
            }
            self.out.push('\n');
            previous = Some(child);
        }
    }

    fn component(&mut self, node: Node<'_>, depth: usize) {
        self.out.push_str("component ");
        self.out.push_str(node.child_by_field_name("name").map_or("", |n| self.src(n)));
        if let Some(placement) = node.child_by_field_name("placement") {
            let mut cursor = placement.walk();
            let keys: Vec<String> = placement
                .named_children(&mut cursor)
                .filter(|k| k.kind() == "partition_key")
                .map(|k| self.src(k).split_whitespace().collect())
                .collect();
            self.out.push_str(" partitioned by ");
            self.out.push_str(&keys.join(", "));
        }
        let Some(body) = node.child_by_field_name("body") else { return };
        self.out.push_str(" {\n");
        self.items(body, depth + 1);
        self.indent(depth);
        self.out.push('}');
    }

    fn relation_decl(&mut self, node: Node<'_>, depth: usize) {
        let field = |name| node.child_by_field_name(name).map_or("", |n| self.src(n));
        let mut cursor = node.walk();
        let columns: Vec<String> = node
            .children_by_field_name("column", &mut cursor)
            .map(|c| {
                let name = c.child_by_field_name("name").map_or("", |n| self.src(n));
                let ty = c.child_by_field_name("type").map_or("", |n| self.src(n));
                format!("{name}: {ty}")
            })
            .collect();
        let declaration = format!("{} {}({})", field("kind"), field("name"), columns.join(", "));
        self.out.push_str(&declaration);
        if let Some(key) = node.child_by_field_name("key") {
            let mut cursor = key.walk();
            let cols: Vec<&str> = key.named_children(&mut cursor).map(|c| self.src(c)).collect();
            let key = format!("key({})", cols.join(", "));
            if depth * INDENT.len() + declaration.len() + 1 + key.len() > MAX_WIDTH {
                self.out.push('\n');
                self.indent(depth + 1);
            } else {
                self.out.push(' ');
            }
            self.out.push_str(&key);
        }
    }

    fn rule(&mut self, node: Node<'_>, depth: usize) {
        let mut line = String::new();
        if node.kind() == "invariant" {
            line.push_str("invariant ");
            line.push_str(node.child_by_field_name("name").map_or("", |n| self.src(n)));
            let mut cursor = node.walk();
            let args: Vec<String> =
                node.children_by_field_name("argument", &mut cursor).map(|a| self.expr(a)).collect();
            if !args.is_empty() || self.src(node).split(":-").next().is_some_and(|h| h.contains('(')) {
                line.push_str(&format!("({})", args.join(", ")));
            }
            line.push_str(" :-");
        } else {
            if node.child_by_field_name("delete").is_some() {
                line.push_str("delete ");
            }
            if let Some(head) = node.child_by_field_name("head") {
                line.push_str(&self.head(head));
            }
            if let Some(op) = node.child_by_field_name("op") {
                line.push(' ');
                line.push_str(self.src(op));
            }
        }
        let items: Vec<String> = match node.child_by_field_name("body") {
            Some(body) => {
                let mut cursor = body.walk();
                body.named_children(&mut cursor).map(|item| self.body_item(item)).collect()
            }
            None => Vec::new(),
        };
        let one_line = format!("{line} {}.", items.join(", "));
        if items.is_empty() {
            self.out.push_str(&line);
            self.out.push('.');
        } else if one_line.len() + depth * INDENT.len() <= MAX_WIDTH {
            self.out.push_str(&one_line);
        } else {
            self.out.push_str(&line);
            for (i, item) in items.iter().enumerate() {
                self.out.push('\n');
                self.indent(depth + 1);
                self.out.push_str(item);
                self.out.push(if i + 1 == items.len() { '.' } else { ',' });
            }
        }
    }

    fn head(&self, node: Node<'_>) -> String {
        let relation = node.child_by_field_name("relation").map_or("", |n| self.src(n));
        let destination =
            node.child_by_field_name("destination").map(|d| format!("@{}", self.src(d))).unwrap_or_default();
        let mut cursor = node.walk();
        let args: Vec<String> = node.children_by_field_name("argument", &mut cursor).map(|a| self.expr(a)).collect();
        format!("{relation}{destination}({})", args.join(", "))
    }

    fn body_item(&self, node: Node<'_>) -> String {
        match node.kind() {
            "atom" => self.atom(node),
            "negation" => format!("!{}", node.child_by_field_name("atom").map(|a| self.atom(a)).unwrap_or_default()),
            "condition" => {
                let side = |name| node.child_by_field_name(name).map(|n| self.expr(n)).unwrap_or_default();
                let op = node.child_by_field_name("operator").map_or("", |n| self.src(n));
                format!("{} {op} {}", side("left"), side("right"))
            }
            _ => self.src(node).to_string(),
        }
    }

    fn atom(&self, node: Node<'_>) -> String {
        let relation = node.child_by_field_name("relation").map_or("", |n| self.src(n));
        let mut cursor = node.walk();
        let args: Vec<String> = node.children_by_field_name("argument", &mut cursor).map(|a| self.expr(a)).collect();
        format!("{relation}({})", args.join(", "))
    }

    fn expr(&self, node: Node<'_>) -> String {
        match node.kind() {
            "binary_expression" => {
                let side = |name| node.child_by_field_name(name).map(|n| self.expr(n)).unwrap_or_default();
                let op = node.child_by_field_name("operator").map_or("", |n| self.src(n));
                format!("{} {op} {}", side("left"), side("right"))
            }
            "unary_expression" => {
                format!("-{}", node.child_by_field_name("operand").map(|n| self.expr(n)).unwrap_or_default())
            }
            "parenthesized_expression" => {
                format!("({})", node.named_child(0).map(|n| self.expr(n)).unwrap_or_default())
            }
            "call" => self.atom_like_call(node),
            _ => self.src(node).to_string(),
        }
    }

    fn atom_like_call(&self, node: Node<'_>) -> String {
        let function = node.child_by_field_name("function").map_or("", |n| self.src(n));
        let mut cursor = node.walk();
        let args: Vec<String> = node.children_by_field_name("argument", &mut cursor).map(|a| self.expr(a)).collect();
        format!("{function}({})", args.join(", "))
    }
}

fn contains_comment(node: Node<'_>) -> bool {
    let mut cursor = node.walk();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if n.is_extra() {
            return true;
        }
        stack.extend(n.children(&mut cursor));
    }
    false
}

/// A construct kept verbatim: first line at the current indent, later lines keep their relative indent.
fn reindent(text: &str, depth: usize) -> String {
    // A lone `\r` ends a line too.
    let mut lines = text.lines().flat_map(|l| l.split('\r'));
    let first = lines.next().unwrap_or("").trim().to_string();
    let rest: Vec<&str> = lines.collect();
    let min = rest.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let mut out = first;
    for line in rest {
        out.push('\n');
        if !line.trim().is_empty() {
            out.push_str(&INDENT.repeat(depth + 1));
            out.push_str(line[min.min(line.len())..].trim_end());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_canonically_and_idempotently() {
        let messy = "// head\ncomponent  c{table t(x:int)   key(x)\n t(1).   // one\n\n\n  u(x+1) :-t(x),x<3.}";
        let formatted = format(messy).unwrap();
        assert_eq!(
            formatted,
            "// head\ncomponent c {\n    table t(x: int) key(x)\n    t(1).  // one\n\n    u(x + 1) :- t(x), x < 3.\n}\n"
        );
        assert_eq!(format(&formatted).unwrap(), formatted);
    }

    #[test]
    fn lone_cr_and_crlf_break_lines_like_lf() {
        // Blank lines, trailing comments and comments kept inside a rule, with each line ending.
        let lf =
            "// head\ncomponent c {\n    table t(x: int)\n    t(1).  // one\n\n    u(x) :- // why\n        t(x).\n}\n";
        let expected = format(lf).unwrap();
        for eol in ["\r", "\r\n"] {
            assert_eq!(format(&lf.replace('\n', eol)).unwrap(), expected, "{eol:?}");
        }
    }

    #[test]
    fn refuses_syntax_errors() {
        assert!(format("component c { t(1 }").is_err());
    }
}
