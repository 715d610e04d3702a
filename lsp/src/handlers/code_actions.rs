//! Code actions: quick fixes from the diagnostics' `fix`, then the scaling rewrites.

use std::collections::HashMap;

use compart_analysis::TextRange;
use tower_lsp_server::ls_types::{CodeAction, CodeActionKind, CodeActionOrCommand, TextEdit, WorkspaceEdit};

use crate::converters::Converter;
use crate::documents::Snapshot;
use crate::handlers::diagnostics;
use crate::handlers::scaling::DeploymentTarget;

fn overlaps(a: TextRange, b: TextRange) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// Refused rewrites are listed with `disabled` (and the reason) only for clients that declared
/// `codeAction.disabledSupport`; for the others they are left out, since such a client shows them
/// as choosable. Why a component cannot be partitioned stays in its hover (the scaling verdict).
pub fn code_actions(
    snapshot: &Snapshot,
    range: TextRange,
    disabled_support: bool,
    deploy: &DeploymentTarget,
) -> Vec<CodeActionOrCommand> {
    let analysis = &snapshot.analysis;
    let conv = Converter::new(analysis);
    let mut out = Vec::new();
    for d in analysis.diagnostics.iter().filter(|d| overlaps(d.range, range)) {
        let Some(fix) = &d.fix else { continue };
        let edits =
            fix.edits.iter().map(|e| TextEdit { range: conv.range(e.range), new_text: e.new_text.clone() }).collect();
        out.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: fix.title.clone(),
            kind: Some(CodeActionKind::QUICKFIX),
            diagnostics: Some(vec![diagnostics::convert(snapshot, conv, d)]),
            edit: Some(WorkspaceEdit {
                changes: Some(HashMap::from([(snapshot.uri.clone(), edits)])),
                ..Default::default()
            }),
            is_preferred: Some(true),
            ..Default::default()
        }));
    }
    let rewrites = crate::handlers::scaling::code_actions(snapshot, range, deploy);
    out.extend(rewrites.into_iter().filter(|a| disabled_support || !is_disabled(a)));
    out
}

fn is_disabled(action: &CodeActionOrCommand) -> bool {
    matches!(action, CodeActionOrCommand::CodeAction(CodeAction { disabled: Some(_), .. }))
}
