//! The outline: components with their relations, rules and invariants.

use compart_analysis::model::RuleKind;
use compart_analysis::Analysis;
use tower_lsp_server::ls_types::{DocumentSymbol, SymbolKind};

use crate::converters::Converter;
use crate::documents::Snapshot;
use crate::handlers::hover::signature;
use crate::handlers::workspace_symbols::relation_symbol_kind;

#[allow(deprecated)] // `DocumentSymbol::deprecated` must be written even though it is deprecated.
fn symbol(
    name: String,
    detail: Option<String>,
    kind: SymbolKind,
    range: tower_lsp_server::ls_types::Range,
    selection: tower_lsp_server::ls_types::Range,
    children: Vec<DocumentSymbol>,
) -> DocumentSymbol {
    DocumentSymbol {
        name,
        detail,
        kind,
        tags: None,
        deprecated: None,
        range,
        selection_range: selection,
        children: (!children.is_empty()).then_some(children),
    }
}

pub fn document_symbols(snapshot: &Snapshot) -> Vec<DocumentSymbol> {
    let analysis: &Analysis = &snapshot.analysis;
    let program = &analysis.program;
    let conv = Converter::new(analysis);
    let text = analysis.text();
    let mut out = Vec::new();
    for id in program.component_ids() {
        let c = program.component(id);
        let mut children = Vec::new();
        for &r in &c.relations {
            let rel = program.relation(r);
            if !rel.declared {
                continue; // Scratch relations show up through their rules.
            }
            let kind = relation_symbol_kind(rel.kind);
            children.push(symbol(
                rel.name.clone(),
                Some(signature(rel)),
                kind,
                conv.range(rel.range),
                conv.range(rel.name_range),
                vec![],
            ));
        }
        for &r in &c.rules {
            let rule = program.rule(r);
            let head = &text[rule.head.range.as_range()];
            let detail = match rule.kind {
                RuleKind::SameTick => ":-",
                RuleKind::NextTick => ":+",
                RuleKind::Async => ":~",
                RuleKind::Delete => "delete",
                RuleKind::Fact => "fact",
            };
            let kind = if rule.kind == RuleKind::Fact { SymbolKind::CONSTANT } else { SymbolKind::FUNCTION };
            children.push(symbol(
                head.split_whitespace().collect::<Vec<_>>().join(" "),
                Some(detail.into()),
                kind,
                conv.range(rule.range),
                conv.range(rule.head.relation_range),
                vec![],
            ));
        }
        for &i in &c.invariants {
            let inv = program.invariant(i);
            children.push(invariant_symbol(&conv, inv));
        }
        children.sort_by_key(|s| (s.range.start.line, s.range.start.character));
        out.push(symbol(
            c.name.clone(),
            Some("component".into()),
            SymbolKind::MODULE,
            conv.range(c.range),
            conv.range(c.name_range),
            children,
        ));
    }
    for inv in program.invariants.iter().filter(|i| i.component.is_none()) {
        out.push(invariant_symbol(&conv, inv));
    }
    out.sort_by_key(|s| (s.range.start.line, s.range.start.character));
    out
}

fn invariant_symbol(conv: &Converter<'_>, inv: &compart_analysis::model::Invariant) -> DocumentSymbol {
    symbol(
        inv.name.clone(),
        Some("invariant".into()),
        SymbolKind::BOOLEAN,
        conv.range(inv.range),
        conv.range(inv.name_range),
        vec![],
    )
}
