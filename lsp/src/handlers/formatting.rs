//! Format Document and Format Selection through compart_analysis::fmt. A whole document is one
//! edit replacing the text; a range reformats only the items it touches: top-level components
//! and invariants, or, within one component's braces, its declarations, rules and invariants.

use compart_analysis::syntax::range_of;
use compart_analysis::{Analysis, SyntaxTree, TextRange};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::TextEdit;
use tree_sitter::Node;

use crate::converters::Converter;
use crate::session::request_failed;

pub fn format(analysis: &Analysis) -> Result<Option<Vec<TextEdit>>> {
    let conv = Converter::new(analysis);
    match compart_analysis::fmt::format_syntax(&analysis.syntax) {
        Ok(formatted) if formatted == analysis.text() => Ok(Some(vec![])),
        Ok(formatted) => Ok(Some(vec![TextEdit {
            range: conv.range(TextRange::new(0, analysis.text().len())),
            new_text: formatted,
        }])),
        Err(e) => Err(refusal(analysis, e)),
    }
}

fn refusal(analysis: &Analysis, e: compart_analysis::fmt::FormatError) -> tower_lsp_server::jsonrpc::Error {
    let at = Converter::new(analysis).position(e.range.start as usize);
    request_failed(format!("{} (line {}, column {})", e.message, at.line + 1, at.character + 1))
}

fn touches(node: Node<'_>, range: TextRange) -> bool {
    node.start_byte() <= range.end as usize && range.start as usize <= node.end_byte()
}

/// `node`'s range, from the start of its line when only indentation precedes it there, so that
/// the indentation is formatted too.
fn with_indentation(text: &str, node: Node<'_>) -> TextRange {
    let start = node.start_byte();
    let line_start = text[..start].rfind(['\n', '\r']).map_or(0, |i| i + 1);
    let from = if text[line_start..start].trim().is_empty() { line_start } else { start };
    TextRange::new(from, node.end_byte())
}

fn component_body(node: Node<'_>) -> Option<Node<'_>> {
    node.child_by_field_name("body").filter(|b| b.kind() == "component_body")
}

fn named_children(node: Node<'_>) -> Vec<Node<'_>> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor).collect()
}

/// Edits formatting the items `range` touches. Each top-level item is formatted on its own (a
/// component alone is a file), which gives the text whole-document formatting gives it; so an
/// error in another item does not stop this one from being formatted, but one in a touched item does.
pub fn format_range(analysis: &Analysis, range: TextRange) -> Result<Option<Vec<TextEdit>>> {
    let conv = Converter::new(analysis);
    let text = analysis.text();
    let mut edits = Vec::new();
    for item in named_children(analysis.syntax.root()).into_iter().filter(|n| touches(*n, range) && !n.is_extra()) {
        if item.has_error() {
            let mut diagnostics = Vec::new();
            compart_analysis::syntax::syntax_diagnostics(&analysis.syntax, &mut diagnostics);
            let at = diagnostics.iter().map(|d| d.range).find(|r| range_of(item).contains(r.start as usize));
            return Err(refusal(
                analysis,
                compart_analysis::fmt::FormatError {
                    range: at.unwrap_or(range_of(item)),
                    message: "the selection has syntax errors; fix them before formatting".into(),
                },
            ));
        }
        let formatted = compart_analysis::fmt::format(&text[item.byte_range()]).map_err(|e| refusal(analysis, e))?;
        let formatted = SyntaxTree::parse(formatted);
        let new_item = named_children(formatted.root()).into_iter().find(|n| !n.is_extra());
        let Some(new_item) = new_item else { continue };
        // Within one component's braces: only the declarations, rules and invariants touched.
        let inside = component_body(item)
            .filter(|b| b.start_byte() < range.start as usize && (range.end as usize) < b.end_byte())
            .zip(component_body(new_item));
        if let Some((old_body, new_body)) = inside {
            let (old, new) = (named_children(old_body), named_children(new_body));
            // Formatting keeps every item and comment in order; if that ever fails, do the whole component.
            if old.len() == new.len() {
                for (o, n) in old.into_iter().zip(new).filter(|(o, _)| touches(*o, range)) {
                    let new_text = &formatted.text[with_indentation(&formatted.text, n).as_range()];
                    edits.push((with_indentation(text, o), new_text.to_string()));
                }
                continue;
            }
        }
        edits.push((with_indentation(text, item), formatted.text.trim_end().to_string()));
    }
    Ok(Some(
        edits
            .into_iter()
            .filter(|(r, new_text)| &text[r.as_range()] != new_text)
            .map(|(r, new_text)| TextEdit { range: conv.range(r), new_text })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, start: &str, end: &str) -> String {
        let analysis = compart_analysis::analyze(text);
        let range = TextRange::new(text.find(start).unwrap(), text.find(end).unwrap());
        let edits = format_range(&analysis, range).unwrap().unwrap();
        let mut out = text.to_string();
        // Edits do not overlap: apply from the last.
        for e in edits.iter().rev() {
            let r = Converter::new(&analysis).text_range(e.range).unwrap();
            out.replace_range(r.as_range(), &e.new_text);
        }
        out
    }

    #[test]
    fn only_the_touched_items_change() {
        let text = "component c {\ntable   t(x:int)\n  t(1).\n      u(x):-t(x).\n}\ncomponent   d {\n}\n";
        // The rule and the fact only; the declaration and `d` keep their looks.
        assert_eq!(
            apply(text, "t(1)", "t(x)."),
            "component c {\ntable   t(x:int)\n    t(1).\n    u(x) :- t(x).\n}\ncomponent   d {\n}\n"
        );
        // A range over the component's header: the whole component.
        assert_eq!(
            apply(text, "component c", "c {"),
            "component c {\n    table t(x: int)\n    t(1).\n    u(x) :- t(x).\n}\ncomponent   d {\n}\n"
        );
    }

    #[test]
    fn errors_in_the_range_refuse_errors_elsewhere_do_not() {
        let text = "component c {\n  t(1).\n}\ncomponent d {\n    u(x :- t(x).\n}\n";
        assert_eq!(apply(text, "t(1)", "t(1)"), "component c {\n    t(1).\n}\ncomponent d {\n    u(x :- t(x).\n}\n");
        let analysis = compart_analysis::analyze(text);
        let range = TextRange::new(text.find("u(x").unwrap(), text.find("u(x").unwrap());
        let error = format_range(&analysis, range).unwrap_err();
        assert!(error.message.contains("syntax errors"), "{error:?}");
    }
}
