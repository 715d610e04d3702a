//! Workspace symbols: the components, relations and invariants of every open document whose
//! name matches the query. The server indexes only open documents (`crate::index` is per
//! document), so files that were never opened are not searched.

use compart_analysis::model::RelationKind;
use tower_lsp_server::ls_types::{Location, OneOf, SymbolKind, WorkspaceSymbol};

use crate::converters::Converter;
use crate::documents::Snapshot;

/// How well `name` matches `query`, best first; None when it does not. Case is ignored; the
/// query's characters may be spread out (`vlog` finds `vote_log`), which ranks below a substring.
fn rank(name: &str, query: &str) -> Option<u8> {
    let (name, query) = (name.to_lowercase(), query.to_lowercase());
    if query.is_empty() {
        return Some(3);
    }
    if name == query {
        return Some(0);
    }
    if name.starts_with(&query) {
        return Some(1);
    }
    if name.contains(&query) {
        return Some(2);
    }
    let mut chars = name.chars();
    query.chars().all(|q| chars.any(|c| c == q)).then_some(4)
}

/// The symbol kind of a relation, as in the document outline.
pub fn relation_symbol_kind(kind: RelationKind) -> SymbolKind {
    match kind {
        RelationKind::Table => SymbolKind::STRUCT,
        RelationKind::Channel => SymbolKind::EVENT,
        RelationKind::Input | RelationKind::Output => SymbolKind::INTERFACE,
        _ => SymbolKind::VARIABLE,
    }
}

pub fn workspace_symbols(snapshots: &[Snapshot], query: &str) -> Vec<WorkspaceSymbol> {
    let mut found: Vec<(u8, WorkspaceSymbol)> = Vec::new();
    for snapshot in snapshots {
        let program = &snapshot.analysis.program;
        let conv = Converter::new(&snapshot.analysis);
        let mut push = |name: &str, kind: SymbolKind, container: Option<&str>, range| {
            if let Some(score) = rank(name, query) {
                let symbol = WorkspaceSymbol {
                    name: name.to_string(),
                    kind,
                    tags: None,
                    container_name: container.map(str::to_string),
                    location: OneOf::Left(Location::new(snapshot.uri.clone(), conv.range(range))),
                    data: None,
                };
                found.push((score, symbol));
            }
        };
        for c in &program.components {
            push(&c.name, SymbolKind::MODULE, None, c.name_range);
        }
        for rel in &program.relations {
            // Built-ins (`nodes`) live in no document.
            let Some(component) = rel.component else { continue };
            let home = &program.component(component).name;
            push(&rel.name, relation_symbol_kind(rel.kind), Some(home), rel.name_range);
        }
        for inv in &program.invariants {
            let home = inv.component.map(|c| program.component(c).name.as_str());
            push(&inv.name, SymbolKind::BOOLEAN, home, inv.name_range);
        }
    }
    found.sort_by(|(a, x), (b, y)| {
        a.cmp(b).then_with(|| x.name.cmp(&y.name)).then_with(|| match (&x.location, &y.location) {
            (OneOf::Left(l), OneOf::Left(m)) => {
                (l.uri.as_str(), l.range.start.line).cmp(&(m.uri.as_str(), m.range.start.line))
            }
            _ => std::cmp::Ordering::Equal,
        })
    });
    found.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn exact_then_prefix_then_substring_then_scattered() {
        assert_eq!(rank("vote_log", "VOTE_LOG"), Some(0));
        assert_eq!(rank("vote_log", "vote"), Some(1));
        assert_eq!(rank("vote_log", "log"), Some(2));
        assert_eq!(rank("vote_log", "vlg"), Some(4));
        assert_eq!(rank("vote_log", "glv"), None);
        assert_eq!(rank("vote_log", ""), Some(3));
    }
}
