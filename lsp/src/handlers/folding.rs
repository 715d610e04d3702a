//! Folding ranges: the nodes grammar/queries/folds.scm folds (component bodies, rules,
//! invariants, block comments), when they span several lines.

use compart_analysis::Analysis;
use tower_lsp_server::ls_types::{FoldingRange, FoldingRangeKind};

use crate::converters::Converter;

pub fn folding_ranges(analysis: &Analysis) -> Vec<FoldingRange> {
    let conv = Converter::new(analysis);
    let mut out = Vec::new();
    let mut stack = vec![analysis.syntax.root()];
    while let Some(node) = stack.pop() {
        let kind = match node.kind() {
            "component_body" | "rule" | "invariant" => None,
            "block_comment" => Some(FoldingRangeKind::Comment),
            _ => {
                let mut cursor = node.walk();
                stack.extend(node.children(&mut cursor));
                continue;
            }
        };
        let start = conv.position(node.start_byte());
        let end = conv.position(node.end_byte());
        if end.line > start.line {
            out.push(FoldingRange {
                start_line: start.line,
                start_character: Some(start.character),
                end_line: end.line,
                end_character: Some(end.character),
                kind,
                collapsed_text: None,
            });
        }
        if node.kind() == "component_body" {
            let mut cursor = node.walk();
            stack.extend(node.children(&mut cursor));
        }
    }
    out.sort_by_key(|f| (f.start_line, f.end_line));
    out
}
