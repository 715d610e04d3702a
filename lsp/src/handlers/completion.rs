//! Completion: relation names (the cursor's component first), keywords and built-in functions;
//! inside an atom's parentheses, the relation's columns (the one at the cursor's position first).
//!
//! The context is read from the text rather than the tree because the text being typed rarely
//! parses.

use compart_analysis::model::{AggregateFunc, BodyItem, CompareOp, Function, RelationKind, Type, NODES_RELATION};
use compart_analysis::{lexicon, Analysis};
use tower_lsp_server::ls_types::{CompletionItem, CompletionItemKind, Documentation, MarkupContent, MarkupKind};

use crate::handlers::hover::signature;

const KEYWORDS: &[&str] =
    &["component", "input", "output", "table", "channel", "scratch", "delete", "invariant", "partitioned by", "key"];

/// The relation whose argument list holds `offset`, and the argument index there.
pub(crate) fn enclosing_atom(text: &str, offset: usize) -> Option<(&str, usize)> {
    // Offsets come from the client's positions: never cut a character in two.
    let offset = floor_char_boundary(text, offset);
    let before = &text[..offset];
    let (mut depth, mut commas) = (0i32, 0usize);
    for (i, ch) in before.char_indices().rev() {
        match ch {
            ')' => depth += 1,
            '(' if depth > 0 => depth -= 1,
            '(' => {
                let head = before[..i].trim_end();
                // The name starts after the last character that cannot be part of it, which
                // may be several bytes long (`café(`).
                let start = head
                    .char_indices()
                    .rfind(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '@'))
                    .map_or(0, |(p, c)| p + c.len_utf8());
                // `ballot@p(` names `ballot`.
                let name = head[start..].split('@').next().unwrap_or("");
                return (!name.is_empty()).then_some((name, commas));
            }
            ',' if depth == 0 => commas += 1,
            '.' | '{' | '}' | ';' => return None,
            ':' if before[i..].starts_with(":-") || before[i..].starts_with(":+") || before[i..].starts_with(":~") => {
                return None
            }
            _ => {}
        }
    }
    None
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

pub fn completion(analysis: &Analysis, offset: usize) -> Vec<CompletionItem> {
    let program = &analysis.program;
    let text = analysis.text();
    if let Some(word_start) = destination_word(text, offset) {
        return destinations(analysis, offset, word_start);
    }
    if let Some((name, arg)) = enclosing_atom(text, offset) {
        if Function::from_name(name).is_some() || AggregateFunc::from_name(name).is_some() {
            return variables_at(analysis, offset);
        }
        let Some(rel) = program.relation_by_name(name).map(|r| program.relation(r)) else { return vec![] };
        let mut items: Vec<CompletionItem> = rel
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| CompletionItem {
                label: c.name.clone(),
                kind: Some(CompletionItemKind::FIELD),
                detail: Some(format!("{}: {} (column {} of {})", c.name, c.ty, i + 1, rel.name)),
                sort_text: Some(format!("{}{i:03}", if i == arg { 0 } else { 1 })),
                preselect: (i == arg).then_some(true),
                ..Default::default()
            })
            .collect();
        items.extend(variables_at(analysis, offset));
        return items;
    }
    let here = program.components.iter().position(|c| c.range.contains(offset));
    let mut items: Vec<CompletionItem> = program
        .relations
        .iter()
        .map(|rel| {
            let kind = match rel.kind {
                RelationKind::Table => CompletionItemKind::STRUCT,
                RelationKind::Channel => CompletionItemKind::EVENT,
                RelationKind::Input | RelationKind::Output => CompletionItemKind::INTERFACE,
                _ => CompletionItemKind::FUNCTION,
            };
            let local = rel.name == NODES_RELATION || rel.component.map(|c| c.index()) == here;
            CompletionItem {
                label: rel.name.clone(),
                kind: Some(kind),
                detail: Some(signature(rel)),
                sort_text: Some(format!("{}{}", if local { 0 } else { 1 }, rel.name)),
                ..Default::default()
            }
        })
        .collect();
    items.extend(KEYWORDS.iter().map(|k| CompletionItem {
        label: k.to_string(),
        kind: Some(CompletionItemKind::KEYWORD),
        sort_text: Some(format!("2{k}")),
        documentation: documentation(k.split(' ').next().unwrap_or(k)),
        ..Default::default()
    }));
    let aggregates = lexicon::AGGREGATES.iter().map(|e| e.word);
    items.extend(Function::NAMES.into_iter().chain(aggregates).map(|f| CompletionItem {
        label: f.to_string(),
        kind: Some(CompletionItemKind::FUNCTION),
        detail: Some("built-in".into()),
        sort_text: Some(format!("3{f}")),
        documentation: documentation(f),
        ..Default::default()
    }));
    items.dedup_by(|a, b| a.label == b.label);
    items
}

/// After `rel@` (the destination of an async head): where the partial word after the `@` starts.
fn destination_word(text: &str, offset: usize) -> Option<usize> {
    let offset = floor_char_boundary(text, offset);
    let start = text[..offset]
        .char_indices()
        .rfind(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |(p, c)| p + c.len_utf8());
    text[..start].ends_with('@').then_some(start)
}

/// The destinations a message can go to: variables the rule's body binds, those of type `addr`
/// first, then `self`. A rule whose `@` has nothing after it yet does not parse, so then the
/// rule is read from the text with `self` in that place.
fn destinations(analysis: &Analysis, offset: usize, word_start: usize) -> Vec<CompletionItem> {
    let find_rule = |a: &Analysis| a.program.rules.iter().position(|r| r.range.contains(word_start));
    let patched;
    let (analysis, rule) = match find_rule(analysis) {
        Some(rule) => (analysis, rule),
        None => {
            let range = compart_analysis::TextRange::new(word_start, floor_char_boundary(analysis.text(), offset));
            patched = compart_analysis::analyze_syntax(analysis.syntax.edit(range, "self"));
            match find_rule(&patched) {
                Some(rule) => (&patched, rule),
                None => return vec![self_destination()],
            }
        }
    };
    let rule = &analysis.program.rules[rule];
    let mut bound: Vec<&str> = Vec::new();
    for item in &rule.body {
        match item {
            BodyItem::Atom(atom) if !atom.negated => bound.extend(atom.args.iter().filter_map(|a| a.as_var())),
            BodyItem::Condition(c) if c.op == CompareOp::Assign => bound.extend(c.left.as_var()),
            _ => {}
        }
    }
    let mut items: Vec<CompletionItem> = rule
        .variables
        .iter()
        .filter(|v| bound.contains(&v.name.as_str()))
        .map(|v| CompletionItem {
            label: v.name.clone(),
            kind: Some(CompletionItemKind::VARIABLE),
            detail: Some(format!("{}: {}", v.name, v.ty)),
            sort_text: Some(format!("{}{}", if v.ty == Type::Addr { 0 } else { 1 }, v.name)),
            preselect: (v.ty == Type::Addr).then_some(true),
            ..Default::default()
        })
        .collect();
    items.push(self_destination());
    items
}

fn self_destination() -> CompletionItem {
    CompletionItem {
        label: "self".into(),
        kind: Some(CompletionItemKind::KEYWORD),
        detail: Some("self: addr".into()),
        sort_text: Some("2self".into()),
        documentation: documentation("self"),
        ..Default::default()
    }
}

/// What a keyword or built-in means, as its hover says it.
fn documentation(word: &str) -> Option<Documentation> {
    lexicon::markdown(word)
        .map(|value| Documentation::MarkupContent(MarkupContent { kind: MarkupKind::Markdown, value }))
}

/// Variables already used in the rule around `offset`.
fn variables_at(analysis: &Analysis, offset: usize) -> Vec<CompletionItem> {
    let program = &analysis.program;
    let Some(rule) = program.rules.iter().find(|r| r.range.contains(offset)) else { return vec![] };
    rule.variables
        .iter()
        .filter(|v| !v.first_range.contains(offset))
        .map(|v| CompletionItem {
            label: v.name.clone(),
            kind: Some(CompletionItemKind::VARIABLE),
            detail: Some(format!("{}: {}", v.name, v.ty)),
            sort_text: Some(format!("5{}", v.name)),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_enclosing_atom() {
        let text = "component c { x(a) :- vote_log(id, v";
        assert_eq!(enclosing_atom(text, text.len()), Some(("vote_log", 1)));
        let text = "component c { ballot@p(id, ";
        assert_eq!(enclosing_atom(text, text.len()), Some(("ballot", 1)));
        let text = "component c { x(a) :- f(hash(a), b), ";
        assert_eq!(enclosing_atom(text, text.len()), None);
        let text = "component c { x(a) :- f(hash(a), ";
        assert_eq!(enclosing_atom(text, text.len()), Some(("f", 1)));
    }

    #[test]
    fn destinations_after_the_at_sign() {
        let labels = |text: &str, offset: usize| -> Vec<String> {
            let analysis = compart_analysis::analyze(text);
            let mut items = completion(&analysis, offset);
            items.sort_by(|a, b| a.sort_text.cmp(&b.sort_text));
            items.into_iter().map(|i| i.label).collect()
        };
        let base = "component c {\n    channel m(n: int, from: addr)\n    table peer(a: addr, k: int)\n";
        // A whole rule: the `addr` variables of its body first, then the others, then `self`.
        let text = format!("{base}    m@p(n, self) :~ peer(p, n), q = n + 1.\n}}\n");
        let at = text.find("@p").unwrap() + 1;
        assert_eq!(labels(&text, at), ["p", "n", "q", "self"]);
        // Nothing after the `@` yet (the rule does not parse): the same, read with `self` there.
        let text = format!("{base}    m@(n, self) :~ peer(p, n).\n}}\n");
        assert_eq!(labels(&text, text.find('@').unwrap() + 1), ["p", "n", "self"]);
        // A head being typed, no body yet: only `self`.
        let text = format!("{base}    m@");
        assert_eq!(labels(&text, text.len()), ["self"]);
    }

    #[test]
    fn non_ascii_before_the_parenthesis() {
        // `(` is a trigger character: typed after `é`, the name must not start inside it.
        let text = "// voir café(";
        assert_eq!(enclosing_atom(text, text.len()), None);
        let text = "component c { x(a) :- 𝄞vote(id, ";
        assert_eq!(enclosing_atom(text, text.len()), Some(("vote", 1)));
        // An offset inside a character is taken as the start of that character.
        let text = "t(é";
        assert_eq!(enclosing_atom(text, text.len() - 1), Some(("t", 0)));
        let analysis = compart_analysis::analyze("// café(");
        assert!(completion(&analysis, 9).iter().any(|i| i.label == "component"));
        assert!(completion(&analysis, 7).iter().any(|i| i.label == "component"));
    }
}
