//! Document highlights: every occurrence of the relation, component, column or variable under the
//! cursor, marked as a write (a rule's head; a variable's binding occurrence) or a read (a body
//! atom; any other use of a variable). Declarations are plain text: they neither read nor write.

use std::collections::HashSet;

use compart_analysis::model::{BodyItem, CompareOp};
use compart_analysis::{Program, TextRange};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::{DocumentHighlight, DocumentHighlightKind, Position};

use crate::converters::Converter;
use crate::documents::Snapshot;
use crate::index::{self, ColumnUse, Symbol};
use crate::session::invalid_params;

pub fn document_highlights(snapshot: &Snapshot, position: Position) -> Result<Option<Vec<DocumentHighlight>>> {
    let analysis = &snapshot.analysis;
    let conv = Converter::new(analysis);
    let offset = conv.offset(position).map_err(|e| invalid_params(e.to_string()))?;
    let all = index::occurrences(&analysis.program);
    let Some(found) = index::at(&all, offset) else { return Ok(None) };
    let writes = writes(&analysis.program);
    let mut highlights: Vec<(TextRange, DocumentHighlightKind)> = index::references(&all, &found.symbol)
        .map(|o| {
            let kind = if writes.contains(&o.range) {
                DocumentHighlightKind::WRITE
            } else if o.is_definition && !matches!(o.symbol, Symbol::Variable { .. }) {
                DocumentHighlightKind::TEXT
            } else {
                DocumentHighlightKind::READ
            };
            (o.range, kind)
        })
        .collect();
    if let Symbol::Column { relation, index } = &found.symbol {
        // A column is read or written wherever an atom or head of its relation has an argument there.
        highlights.extend(index::column_uses(analysis, relation, *index).into_iter().map(|(range, used)| {
            let kind = match used {
                ColumnUse::Head => DocumentHighlightKind::WRITE,
                ColumnUse::Body => DocumentHighlightKind::READ,
                ColumnUse::Name => DocumentHighlightKind::TEXT,
            };
            (range, kind)
        }));
        highlights.sort_by_key(|(r, _)| r.start);
    }
    Ok(Some(
        highlights.into_iter().map(|(r, kind)| DocumentHighlight { range: conv.range(r), kind: Some(kind) }).collect(),
    ))
}

/// The ranges that write what they name: heads' relation names, and each variable occurrence that
/// binds it (a bare argument of a positive atom, or the left side of an `=` that nothing else binds).
fn writes(program: &Program) -> HashSet<TextRange> {
    let mut out: HashSet<TextRange> = program.rules.iter().map(|r| r.head.relation_range).collect();
    let bodies = program.rules.iter().map(|r| &r.body).chain(program.invariants.iter().map(|i| &i.body));
    for body in bodies {
        let mut bound = HashSet::new();
        for atom in compart_analysis::model::atoms(body).filter(|a| !a.negated) {
            for arg in &atom.args {
                if let Some(name) = arg.as_var() {
                    bound.insert(name);
                    out.insert(arg.range);
                }
            }
        }
        for item in body {
            if let BodyItem::Condition(c) = item {
                match c.left.as_var() {
                    Some(name) if c.op == CompareOp::Assign && !bound.contains(name) => {
                        out.insert(c.left.range);
                    }
                    _ => {}
                }
            }
        }
    }
    out
}
