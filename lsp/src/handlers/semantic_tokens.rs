//! Semantic tokens from the concrete tree (same classification as grammar/queries/highlights.scm).

use std::sync::atomic::{AtomicU64, Ordering};

use compart_analysis::model::RelationKind;
use compart_analysis::Analysis;
use dashmap::DashMap;
use tower_lsp_server::ls_types::{
    SemanticToken, SemanticTokenModifier, SemanticTokenType, SemanticTokens, SemanticTokensDelta, SemanticTokensEdit,
    SemanticTokensFullDeltaResult, SemanticTokensLegend, Uri,
};
use tree_sitter::Node;

use crate::converters::Converter;

pub const TYPES: &[SemanticTokenType] = &[
    SemanticTokenType::KEYWORD,
    SemanticTokenType::NAMESPACE,
    SemanticTokenType::FUNCTION,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::TYPE,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::NUMBER,
    SemanticTokenType::STRING,
    SemanticTokenType::COMMENT,
    SemanticTokenType::OPERATOR,
    SemanticTokenType::EVENT,
    SemanticTokenType::STRUCT,
];
pub const MODIFIERS: &[SemanticTokenModifier] =
    &[SemanticTokenModifier::DECLARATION, SemanticTokenModifier::READONLY, SemanticTokenModifier::DEFAULT_LIBRARY];

#[derive(Clone, Copy)]
enum T {
    Keyword = 0,
    Namespace,
    Function,
    Property,
    Type,
    Variable,
    Number,
    String,
    Comment,
    Operator,
    Event,
    Struct,
}
const DECLARATION: u32 = 1;
const READONLY: u32 = 2;
const DEFAULT_LIBRARY: u32 = 4;

pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend { token_types: TYPES.to_vec(), token_modifiers: MODIFIERS.to_vec() }
}

const KEYWORDS: &[&str] = &["component", "partitioned", "by", "key", "invariant"];
const OPERATORS: &[&str] =
    &["=", "==", "!=", "<", "<=", ">", ">=", "+", "-", "++", "*", "/", "%", "&&", "||", "!", "@"];

pub fn tokens(analysis: &Analysis) -> Vec<SemanticToken> {
    let mut raw = Vec::new();
    walk(analysis, analysis.syntax.root(), &mut raw);
    encode(analysis, raw)
}

fn relation_type(analysis: &Analysis, name: &str) -> T {
    let program = &analysis.program;
    match program.relation_by_name(name).map(|r| program.relation(r).kind) {
        Some(RelationKind::Channel) => T::Event,
        Some(RelationKind::Table) => T::Struct,
        _ => T::Function,
    }
}

fn walk(analysis: &Analysis, node: Node<'_>, out: &mut Vec<(usize, usize, u32, u32)>) {
    let kind = node.kind();
    let field = node.parent().and_then(|p| {
        ["name", "relation", "column", "function"]
            .into_iter()
            .find(|f| p.child_by_field_name(f).is_some_and(|c| c.id() == node.id()))
    });
    let parent = node.parent().map(|p| p.kind()).unwrap_or("");
    let class = match kind {
        "line_comment" | "block_comment" => Some((T::Comment, 0)),
        "string" => Some((T::String, 0)),
        "integer" => Some((T::Number, 0)),
        "boolean" | "self" | "wildcard" => Some((T::Variable, READONLY | DEFAULT_LIBRARY)),
        "relation_kind" | "delete" => Some((T::Keyword, 0)),
        "rule_op" => Some((T::Operator, 0)),
        "identifier" => Some(match (parent, field) {
            ("component", Some("name")) => (T::Namespace, DECLARATION),
            ("relation_decl", Some("name")) => (relation_type(analysis, analysis.syntax.node_text(node)), DECLARATION),
            ("invariant", Some("name")) => (T::Function, DECLARATION),
            ("column", Some("name")) => (T::Property, DECLARATION),
            ("type", _) => (T::Type, DEFAULT_LIBRARY),
            ("key_clause", _) | ("partition_key", Some("column")) => (T::Property, 0),
            ("head" | "atom" | "partition_key", Some("relation")) => {
                let name = analysis.syntax.node_text(node);
                if name == compart_analysis::model::NODES_RELATION {
                    (T::Function, DEFAULT_LIBRARY)
                } else {
                    (relation_type(analysis, name), 0)
                }
            }
            ("call", Some("function")) => (T::Function, DEFAULT_LIBRARY),
            _ => (T::Variable, 0),
        }),
        _ if !node.is_named() && KEYWORDS.contains(&kind) => Some((T::Keyword, 0)),
        _ if !node.is_named() && OPERATORS.contains(&kind) => Some((T::Operator, 0)),
        _ => None,
    };
    if let Some((ty, modifiers)) = class {
        if !node.byte_range().is_empty() {
            out.push((node.start_byte(), node.end_byte(), ty as u32, modifiers));
        }
        return;
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        walk(analysis, child, out);
    }
}

/// Delta-encode, splitting tokens that span lines (block comments) since LSP tokens are one-line.
fn encode(analysis: &Analysis, raw: Vec<(usize, usize, u32, u32)>) -> Vec<SemanticToken> {
    let conv = Converter::new(analysis);
    let (text, lines) = (analysis.text(), &analysis.line_index);
    let mut out = Vec::with_capacity(raw.len());
    let (mut last_line, mut last_col) = (0u32, 0u32);
    for (start, end, ty, modifiers) in raw {
        let (first, last) = (conv.position(start).line, conv.position(end).line);
        // One piece per line, cut where the client's lines end (CR, LF or CRLF).
        for line in first..=last {
            let line_start = lines.line_start(line as usize).unwrap_or(text.len());
            let piece_start = start.max(line_start);
            let piece_end = end.min(lines.line_end(text, line as usize));
            if piece_end <= piece_start {
                continue;
            }
            let s = conv.position(piece_start);
            let e = conv.position(piece_end);
            let delta_line = s.line - last_line;
            let delta_start = if delta_line == 0 { s.character - last_col } else { s.character };
            out.push(SemanticToken {
                delta_line,
                delta_start,
                length: e.character - s.character,
                token_type: ty,
                token_modifiers_bitset: modifiers,
            });
            (last_line, last_col) = (s.line, s.character);
        }
    }
    out
}

/// The last tokens sent for each document, under a result id, so that the next request can be
/// answered with the edits from them (`semanticTokens/full/delta`) instead of the whole array.
#[derive(Default)]
pub struct Cache {
    last: DashMap<Uri, (String, Vec<SemanticToken>)>,
    next_id: AtomicU64,
}

impl Cache {
    fn remember(&self, uri: &Uri, data: Vec<SemanticToken>) -> String {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        self.last.insert(uri.clone(), (id.clone(), data));
        id
    }

    /// `semanticTokens/full`: every token, remembered under a new result id.
    pub fn full(&self, uri: &Uri, analysis: &Analysis) -> SemanticTokens {
        let data = tokens(analysis);
        SemanticTokens { result_id: Some(self.remember(uri, data.clone())), data }
    }

    /// `semanticTokens/full/delta`: the edits from the result `previous` if it is the last one
    /// sent for this document, else every token (the client may have asked with an older id).
    pub fn delta(&self, uri: &Uri, analysis: &Analysis, previous: &str) -> SemanticTokensFullDeltaResult {
        let data = tokens(analysis);
        let edit = match self.last.get(uri) {
            Some(last) if last.0 == previous => Some(diff(&last.1, &data)),
            _ => None,
        };
        let result_id = Some(self.remember(uri, data.clone()));
        match edit {
            Some(edit) => SemanticTokensFullDeltaResult::TokensDelta(SemanticTokensDelta {
                result_id,
                edits: edit.into_iter().collect(),
            }),
            None => SemanticTokensFullDeltaResult::Tokens(SemanticTokens { result_id, data }),
        }
    }

    pub fn forget(&self, uri: &Uri) {
        self.last.remove(uri);
    }
}

/// One edit turning `old` into `new`: what lies between their common prefix and common suffix.
/// Edits count integers (five per token), not tokens. None when nothing changed.
fn diff(old: &[SemanticToken], new: &[SemanticToken]) -> Option<SemanticTokensEdit> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..].iter().rev().zip(new[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    let (deleted, inserted) = (&old[prefix..old.len() - suffix], &new[prefix..new.len() - suffix]);
    if deleted.is_empty() && inserted.is_empty() {
        return None;
    }
    Some(SemanticTokensEdit {
        start: 5 * prefix as u32,
        delete_count: 5 * deleted.len() as u32,
        data: (!inserted.is_empty()).then(|| inserted.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_applied_to_the_old_tokens_gives_the_new_ones() {
        let before = compart_analysis::analyze("component c {\n    table t(x: int)\n    t(1).\n}\n");
        let after = compart_analysis::analyze("component c {\n    table t(x: int)\n    t(\"a\").\n    t(2).\n}\n");
        let (old, new) = (tokens(&before), tokens(&after));
        let edit = diff(&old, &new).unwrap();
        let flat = |t: &[SemanticToken]| -> Vec<u32> {
            t.iter()
                .flat_map(|t| [t.delta_line, t.delta_start, t.length, t.token_type, t.token_modifiers_bitset])
                .collect()
        };
        let mut applied = flat(&old);
        let (start, end) = (edit.start as usize, (edit.start + edit.delete_count) as usize);
        applied.splice(start..end, flat(edit.data.as_deref().unwrap_or(&[])));
        assert_eq!(applied, flat(&new));
        // Only the changed middle travels.
        assert!(edit.data.unwrap().len() < new.len() / 2, "{new:?}");
        assert!(diff(&new, &new).is_none());
    }

    #[test]
    fn tokens_are_cut_at_every_line_break() {
        // A block comment over a CR, a CRLF and an LF, with U+2028 inside (not a break).
        let text = "/* a\rb\u{2028}c\r\nd\ne */ component c {}\r";
        let analysis = compart_analysis::analyze(text);
        let tokens = tokens(&analysis);
        let comments: Vec<(u32, u32, u32)> = tokens
            .iter()
            .filter(|t| t.token_type == T::Comment as u32)
            .map(|t| (t.delta_line, t.delta_start, t.length))
            .collect();
        assert_eq!(comments, [(0, 0, 4), (1, 0, 3), (1, 0, 1), (1, 0, 4)]);
        let keyword = tokens.iter().find(|t| t.token_type == T::Keyword as u32).unwrap();
        assert_eq!((keyword.delta_line, keyword.delta_start, keyword.length), (0, 5, 9));
    }
}
