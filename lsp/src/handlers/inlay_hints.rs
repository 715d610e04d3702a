//! Inlay hints: the inferred column types of undeclared (scratch) relations, shown after each
//! argument of the heads that derive them; then the scaling classes (handlers/scaling.rs).

use compart_analysis::model::{HeadArg, RuleKind};
use compart_analysis::{Analysis, TextRange};
use tower_lsp_server::ls_types::{InlayHint, InlayHintKind, InlayHintLabel, InlayHintTooltip};

use crate::converters::Converter;
use crate::documents::Snapshot;

pub fn inlay_hints(snapshot: &Snapshot, within: TextRange) -> Vec<InlayHint> {
    let mut out = type_hints(&snapshot.analysis, within);
    out.extend(crate::handlers::scaling::inlay_hints(snapshot, within));
    out.sort_by_key(|h| (h.position.line, h.position.character));
    out
}

pub fn type_hints(analysis: &Analysis, within: TextRange) -> Vec<InlayHint> {
    let conv = Converter::new(analysis);
    let program = &analysis.program;
    let mut out = Vec::new();
    for rule in &program.rules {
        if !(rule.range.start <= within.end && within.start <= rule.range.end) || rule.kind == RuleKind::Fact {
            continue;
        }
        let Some(rel) = rule.head.relation_id.map(|r| program.relation(r)) else { continue };
        if rel.declared || rel.component.is_none() {
            continue;
        }
        for (arg, column) in rule.head.args.iter().zip(&rel.columns) {
            if !column.ty.is_known() {
                continue;
            }
            let end = match arg {
                HeadArg::Expr(e) => e.range.end,
                HeadArg::Aggregate(a) => a.range.end,
            };
            out.push(InlayHint {
                position: conv.position(end as usize),
                label: InlayHintLabel::String(format!(": {}", column.ty)),
                kind: Some(InlayHintKind::TYPE),
                text_edits: None,
                tooltip: Some(InlayHintTooltip::String(format!(
                    "inferred type of column {} of `{}` (not declared)",
                    column.name, rel.name
                ))),
                padding_left: Some(false),
                padding_right: Some(false),
                data: None,
            });
        }
    }
    out
}
