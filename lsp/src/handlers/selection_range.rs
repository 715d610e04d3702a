//! Selection ranges: from the token under the cursor outwards along the syntax tree (identifier,
//! argument, atom, body, rule, component body, component, file), one step per "expand selection".

use compart_analysis::syntax::range_of;
use compart_analysis::{Analysis, TextRange};
use tower_lsp_server::ls_types::SelectionRange;

use crate::converters::Converter;

/// The ranges around `offset`, innermost first, each strictly larger than the previous one.
fn enclosing(analysis: &Analysis, offset: usize) -> Vec<TextRange> {
    let text = analysis.text();
    // At the end of a word the cursor still means that word, as for hover.
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let offset = if offset > 0
        && text[..offset].chars().next_back().is_some_and(is_word)
        && !text[offset..].chars().next().is_some_and(is_word)
    {
        offset - text[..offset].chars().next_back().map_or(0, char::len_utf8)
    } else {
        offset
    };
    let root = analysis.syntax.root();
    let Some(mut node) = root.descendant_for_byte_range(offset, offset) else { return vec![] };
    let mut out: Vec<TextRange> = Vec::new();
    loop {
        let range = range_of(node);
        // Punctuation alone is not worth a step; named nodes and the word under the cursor are.
        let keep = node.is_named() || node.child_count() == 0 && node.kind().chars().all(is_word);
        if keep && out.last().is_none_or(|last| last.len() < range.len()) && range.contains(offset) {
            out.push(range);
        }
        match node.parent() {
            Some(parent) => node = parent,
            None => break,
        }
    }
    out
}

pub fn selection_range(analysis: &Analysis, offset: usize) -> SelectionRange {
    let conv = Converter::new(analysis);
    let mut ranges = enclosing(analysis, offset);
    if ranges.is_empty() {
        ranges.push(TextRange::empty(offset));
    }
    let mut selection: Option<SelectionRange> = None;
    for range in ranges.into_iter().rev() {
        selection = Some(SelectionRange { range: conv.range(range), parent: selection.map(Box::new) });
    }
    selection.expect("at least one range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_the_word_to_the_component() {
        let text = "component c {\n    table t(x: int)\n    u(x) :- t(x), x > 1.\n}\n";
        let analysis = compart_analysis::analyze(text);
        let at = text.find("x), x >").unwrap();
        let steps: Vec<&str> = enclosing(&analysis, at).iter().map(|r| &text[r.as_range()]).collect();
        assert_eq!(
            steps,
            [
                "x",
                "t(x)",
                "t(x), x > 1",
                "u(x) :- t(x), x > 1.",
                "{\n    table t(x: int)\n    u(x) :- t(x), x > 1.\n}",
                "component c {\n    table t(x: int)\n    u(x) :- t(x), x > 1.\n}",
                text,
            ]
        );
        // At the end of a word, the word.
        assert_eq!(&text[enclosing(&analysis, at + 1)[0].as_range()], "x");
    }
}
